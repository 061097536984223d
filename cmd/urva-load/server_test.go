package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// metricsText is /metrics as the server writes it, with the committer's
// and the webhooks' figures (after is 100 batches and 1,000 webhooks later).
func metricsText(after bool) string {
	batches, in5, in10, hooks, hooksIn10 := 200, 190, 199, 2000, 1990
	if after {
		batches, in5, in10, hooks, hooksIn10 = 300, 283, 296, 3000, 2970
	}
	return fmt.Sprintf(`# HELP urva_db_commit_seconds Group commit time.
# TYPE urva_db_commit_seconds histogram
urva_db_commit_seconds_bucket{le="0.001"} 50
urva_db_commit_seconds_bucket{le="0.005"} %d
urva_db_commit_seconds_bucket{le="0.01"} %d
urva_db_commit_seconds_bucket{le="+Inf"} %d
urva_db_commit_seconds_sum %g
urva_db_commit_seconds_count %d
urva_db_batch_rows_sum %d
urva_db_batch_rows_count %d
urva_db_requests_total %d
urva_webhook_duration_seconds_bucket{provider="sms",le="0.01"} 7
urva_webhook_duration_seconds_count{provider="sms"} 7
urva_webhook_duration_seconds_bucket{provider="whatsapp",le="0.005"} 10
urva_webhook_duration_seconds_bucket{provider="whatsapp",le="0.01"} %d
urva_webhook_duration_seconds_count{provider="whatsapp"} %d
`, in5, in10, batches, float64(batches)*0.002, batches, batches*10, batches, batches, hooksIn10, hooks)
}

// TestBatchStatsNote: the committer's and the webhooks' figures are read
// from /metrics and told as the difference over the measured window.
func TestBatchStatsNote(t *testing.T) {
	after := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(metricsText(after)))
	}))
	defer srv.Close()
	c := &child{addr: strings.TrimPrefix(srv.URL, "http://")}
	s0, err := c.batchStats()
	if err != nil {
		t.Fatal(err)
	}
	after = true
	s1, err := c.batchStats()
	if err != nil {
		t.Fatal(err)
	}
	got := s1.note(s0, time.Second)
	for _, want := range []string{
		"batches: 10 writes, 2.00 ms each, committer busy 20%, 1.0 requests each",
		"; 7 commits over 5 ms (3 over 10 ms)",
		"; the server took over 10 ms for 2.00% of the webhooks",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("note %q lacks %q", got, want)
		}
	}
}
