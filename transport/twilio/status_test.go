package twilio

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"

	"urva/persistence"
)

// Status callbacks for a message we sent from +919800000001 to +919811100001.
const (
	sampleStatus = "SmsSid=SM0123456789abcdef0123456789abcdef&SmsStatus=delivered&MessageStatus=delivered" +
		"&To=%2B919811100001&MessagingServiceSid=MG0123456789abcdef0123456789abcdef" +
		"&MessageSid=SM0123456789abcdef0123456789abcdef&AccountSid=AC00000000000000000000000000000000" +
		"&From=%2B919800000001&ApiVersion=2010-04-01&RawDlrDoneDate=2601011200"
	sampleFailedStatus = "ErrorCode=30003&SmsSid=SM0123456789abcdef0123456789abcdef&SmsStatus=undelivered" +
		"&MessageStatus=undelivered&To=%2B919811100001&MessageSid=SM0123456789abcdef0123456789abcdef" +
		"&AccountSid=AC00000000000000000000000000000000&From=%2B919800000001&ApiVersion=2010-04-01"
)

func TestParseStatusDelivered(t *testing.T) {
	params := mustForm(t, sampleStatus)
	s, err := ParseStatus(params)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Relevant() || s.Status() != "delivered" || s.MessageSid != "SM0123456789abcdef0123456789abcdef" ||
		s.From != "+919800000001" || s.To != "+919811100001" || s.AccountSid != "AC00000000000000000000000000000000" {
		t.Fatalf("parsed = %+v", s)
	}
	in := s.Inbound()
	if in.Key != (persistence.ConversationKey{Channel: "sms", BusinessNumber: "+919800000001", ContactPhone: "+919811100001"}) {
		t.Fatalf("key = %+v", in.Key)
	}
	st := in.Status
	if in.Message != nil || st == nil || st.ProviderMessageID != s.MessageSid || st.Status != "delivered" || st.Error != nil || !st.At.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	var raw map[string]string
	if err := json.Unmarshal(st.Raw, &raw); err != nil || len(raw) != len(params) || raw["RawDlrDoneDate"] != "2601011200" {
		t.Fatalf("raw = %s (%v)", st.Raw, err)
	}
}

func TestParseStatusFailed(t *testing.T) {
	s, err := ParseStatus(mustForm(t, sampleFailedStatus))
	if err != nil {
		t.Fatal(err)
	}
	st := s.Inbound().Status
	if st.Status != "failed" {
		t.Fatalf("status = %q", st.Status)
	}
	var e map[string]any
	if err := json.Unmarshal(st.Error, &e); err != nil {
		t.Fatal(err)
	}
	if e["code"] != "30003" || e["title"] != "Unreachable destination handset" || len(e) != 2 {
		t.Fatalf("error = %s", st.Error)
	}

	v := mustForm(t, sampleFailedStatus)
	v["MessageStatus"] = []string{"failed"}
	v["ErrorCode"] = []string{"39999"}
	v["ErrorMessage"] = []string{"Carrier said <no>"}
	s, err = ParseStatus(v)
	if err != nil {
		t.Fatal(err)
	}
	st = s.Inbound().Status
	if st.Status != "failed" || string(st.Error) != `{"code":"39999","title":"Twilio error 39999: message failed","message":"Carrier said <no>"}` {
		t.Fatalf("status = %s %s", st.Status, st.Error)
	}
}

func TestStatusMapping(t *testing.T) {
	for twilioStatus, want := range map[string]string{
		"queued": "", "accepted": "", "scheduled": "", "sending": "", "receiving": "", "received": "", "someday": "",
		"sent": "sent", "delivered": "delivered", "read": "read", "READ": "read",
		"undelivered": "failed", "failed": "failed", "canceled": "failed",
	} {
		p := mustForm(t, sampleStatus)
		p["MessageStatus"] = []string{twilioStatus}
		s, err := ParseStatus(p)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status() != want || s.Relevant() != (want != "") {
			t.Errorf("%s: Status = %q, Relevant = %v; want %q", twilioStatus, s.Status(), s.Relevant(), want)
		}
		if want == "failed" {
			var e map[string]string
			if err := json.Unmarshal(s.Inbound().Status.Error, &e); err != nil || e["title"] == "" {
				t.Errorf("%s: error = %s", twilioStatus, s.Inbound().Status.Error)
			}
		}
	}
}

func TestParseStatusErrors(t *testing.T) {
	base := func() url.Values {
		return url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"sent"}, "From": {"+919800000001"}, "To": {"+919811100001"}}
	}
	for name, edit := range map[string]func(v url.Values){
		"no MessageSid":    func(v url.Values) { v.Del("MessageSid") },
		"no MessageStatus": func(v url.Values) { v.Del("MessageStatus") },
		"no From":          func(v url.Values) { v.Del("From") },
		"no To":            func(v url.Values) { v.Set("To", "") },
	} {
		v := base()
		edit(v)
		if _, err := ParseStatus(mustForm(t, v.Encode())); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error = %v, want ErrMalformed", name, err)
		}
	}
	// The older names alone are enough.
	v := base()
	v.Del("MessageSid")
	v.Del("MessageStatus")
	v.Set("SmsSid", "SM2")
	v.Set("SmsStatus", "delivered")
	s, err := ParseStatus(mustForm(t, v.Encode()))
	if err != nil || s.MessageSid != "SM2" || s.Status() != "delivered" {
		t.Fatalf("ParseStatus = %+v, %v", s, err)
	}
}
