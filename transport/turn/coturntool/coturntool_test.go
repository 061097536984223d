package coturntool

import "testing"

func TestParseReport(t *testing.T) {
	out := "0: start_mclient: msz=2, tot_send_msgs=0, tot_recv_msgs=0\n" +
		"3: start_mclient: tot_send_msgs=40, tot_recv_msgs=38\n" +
		"3: Total lost packets 2 (5.000000%), total send dropped 1 (2.500000%)\n"
	r, ok := ParseReport(out)
	if !ok || r != (Report{Sent: 40, Received: 38, Lost: 2, Dropped: 1, LossPercent: "5.000000"}) {
		t.Fatalf("ParseReport = %+v, %v", r, ok)
	}
	if _, ok := ParseReport("error 400 ()\n"); ok {
		t.Fatal("a run without a report parsed")
	}
}
