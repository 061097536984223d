package twilio

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"urva/persistence"
)

// sampleInbound is an inbound SMS webhook body as Twilio sends it, with the
// fields of the reference documentation (values made up).
const sampleInbound = "ToCountry=IN&ToState=&SmsMessageSid=SM0123456789abcdef0123456789abcdef&NumMedia=0&ToCity=&FromZip=" +
	"&SmsSid=SM0123456789abcdef0123456789abcdef&FromState=&SmsStatus=received&FromCity=&Body=Hello+%3Cthere%3E+%26+you" +
	"&FromCountry=IN&To=%2B919800000001&MessagingServiceSid=MG0123456789abcdef0123456789abcdef&ToZip=&NumSegments=1" +
	"&MessageSid=SM0123456789abcdef0123456789abcdef&AccountSid=AC00000000000000000000000000000000&From=%2B919811100001&ApiVersion=2010-04-01"

const sampleMMS = "NumMedia=3&MediaUrl0=https%3A%2F%2Fapi.twilio.com%2F2010-04-01%2FAccounts%2FAC1%2FMessages%2FMM1%2FMedia%2FME0" +
	"&MediaContentType0=image%2Fjpeg&MediaUrl2=https%3A%2F%2Fm%2FME2&MediaContentType2=application%2Fpdf" +
	"&MediaUrl10=https%3A%2F%2Fm%2FME10&MediaContentType10=audio%2Fogg" +
	"&MessageSid=MM0123456789abcdef0123456789abcdef&AccountSid=AC1&From=%2B919811100001&To=%2B919800000001&Body=&NumSegments=1"

func mustForm(t testing.TB, body string) map[string][]string {
	t.Helper()
	p, err := ParseForm([]byte(body))
	if err != nil {
		t.Fatalf("ParseForm(%q): %v", body, err)
	}
	return p
}

func TestParseForm(t *testing.T) {
	p := mustForm(t, "a=1&b=two+words&c=%2B91%20x&a=0&&d&e=&f=x%3Dy%26z&g=%E0%A4%A8;h")
	want := map[string][]string{
		"a": {"1", "0"}, "b": {"two words"}, "c": {"+91 x"}, "d": {""}, "e": {""}, "f": {"x=y&z"}, "g": {"न;h"},
	}
	if len(p) != len(want) {
		t.Fatalf("ParseForm = %q, want %q", p, want)
	}
	for k, v := range want {
		if strings.Join(p[k], "|") != strings.Join(v, "|") || len(p[k]) != len(v) {
			t.Errorf("%s = %q, want %q", k, p[k], v)
		}
	}
	if p, err := ParseForm(nil); err != nil || len(p) != 0 {
		t.Fatalf("ParseForm(nil) = %v, %v", p, err)
	}

	for name, body := range map[string]string{
		"bad escape":            "Body=%zz",
		"truncated escape":      "Body=abc%2",
		"bad escape in name":    "B%y=1",
		"invalid UTF-8":         "Body=%E0%A4",
		"invalid UTF-8 in name": "%FF=1",
		"too many parameters":   strings.Repeat("a=1&", maxParams+1),
	} {
		if _, err := ParseForm([]byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseForm error = %v, want ErrMalformed", name, err)
		}
	}
	if _, err := ParseForm([]byte(strings.Repeat("a=1&", maxParams))); err != nil {
		t.Errorf("ParseForm of %d parameters: %v", maxParams, err)
	}
}

func TestParseInboundSample(t *testing.T) {
	params := mustForm(t, sampleInbound)
	m, err := ParseInbound(params)
	if err != nil {
		t.Fatal(err)
	}
	if m.MessageSid != "SM0123456789abcdef0123456789abcdef" || m.AccountSid != "AC00000000000000000000000000000000" ||
		m.MessagingServiceSid != "MG0123456789abcdef0123456789abcdef" || m.From != "+919811100001" || m.To != "+919800000001" ||
		m.Body != "Hello <there> & you" || m.NumSegments != 1 || m.NumMedia != 0 || len(m.Media) != 0 {
		t.Fatalf("parsed = %+v", m)
	}
	in := m.Inbound()
	if k := in.Key; k != (persistence.ConversationKey{Channel: "sms", BusinessNumber: "+919800000001", ContactPhone: "+919811100001"}) {
		t.Fatalf("key = %+v", k)
	}
	if in.Status != nil || in.ContactName != "" {
		t.Fatalf("inbound = %+v", in)
	}
	pm := in.Message
	if pm.Direction != "in" || pm.Channel != "sms" || pm.Type != "text" || pm.Text != "Hello <there> & you" ||
		pm.ProviderMessageID != m.MessageSid || pm.Status != "received" || !pm.ProviderTimestamp.IsZero() || pm.Media != nil {
		t.Fatalf("message = %+v", pm)
	}
	var payload map[string]string
	if err := json.Unmarshal(pm.Payload, &payload); err != nil {
		t.Fatalf("payload %s: %v", pm.Payload, err)
	}
	if len(payload) != len(params) {
		t.Fatalf("payload has %d parameters, want %d: %s", len(payload), len(params), pm.Payload)
	}
	for k, v := range params {
		if payload[k] != v[0] {
			t.Errorf("payload[%s] = %q, want %q", k, payload[k], v[0])
		}
	}
	if !strings.Contains(string(pm.Payload), `"Body":"Hello <there> & you"`) {
		t.Errorf("payload escapes HTML: %s", pm.Payload)
	}
}

func TestInboundKeepsBodyExactly(t *testing.T) {
	for _, body := range []string{
		"नमस्ते, मुझे लोन के बारे में जानकारी चाहिए 🙏🏽",
		"  leading and trailing spaces  ",
		"line one\r\nline two\n",
		"👨‍👩‍👧 family & <tags> \"quotes\" +plus %percent",
		"",
	} {
		form := url.Values{"MessageSid": {"SM1"}, "From": {"+919811100001"}, "To": {"+919800000001"}, "Body": {body}}.Encode()
		m, err := ParseInbound(mustForm(t, form))
		if err != nil {
			t.Fatal(err)
		}
		pm := m.Inbound().Message
		if pm.Text != body {
			t.Errorf("text = %q, want %q", pm.Text, body)
		}
		var payload map[string]string
		if err := json.Unmarshal(pm.Payload, &payload); err != nil || payload["Body"] != body {
			t.Errorf("payload %s (%v) does not keep the body", pm.Payload, err)
		}
	}
}

func TestParseInboundMMS(t *testing.T) {
	m, err := ParseInbound(mustForm(t, sampleMMS))
	if err != nil {
		t.Fatal(err)
	}
	if m.NumMedia != 3 || len(m.Media) != 3 {
		t.Fatalf("media = %+v", m.Media)
	}
	want := []Media{
		{"https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME0", "image/jpeg"},
		{"https://m/ME2", "application/pdf"},
		{"https://m/ME10", "audio/ogg"},
	}
	for i := range want {
		if m.Media[i] != want[i] {
			t.Errorf("media[%d] = %+v, want %+v", i, m.Media[i], want[i])
		}
	}
	pm := m.Inbound().Message
	if pm.Type != "mms" || pm.Text != "" || len(pm.Media) != 3 || pm.Media[0].URL != want[0].URL || pm.Media[0].MimeType != "image/jpeg" {
		t.Fatalf("message = %+v", pm)
	}
}

func TestParseInboundRepeatedAndUnknownParams(t *testing.T) {
	params := mustForm(t, sampleInbound+"&AddOns=%7B%22status%22%3A%22successful%22%7D&X=1&X=2")
	m, err := ParseInbound(params)
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(m.Inbound().Message.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload["AddOns"] != `{"status":"successful"}` {
		t.Errorf("AddOns = %#v", payload["AddOns"])
	}
	if x, ok := payload["X"].([]any); !ok || len(x) != 2 || x[0] != "1" || x[1] != "2" {
		t.Errorf("X = %#v, want [1 2]", payload["X"])
	}
}

func TestParseInboundErrors(t *testing.T) {
	base := func() url.Values {
		return url.Values{"MessageSid": {"SM0123456789abcdef0123456789abcdef"}, "From": {"+919811100001"}, "To": {"+919800000001"}, "Body": {"hi"}}
	}
	tests := map[string]func(v url.Values){
		"no MessageSid":    func(v url.Values) { v.Del("MessageSid") },
		"blank MessageSid": func(v url.Values) { v.Set("MessageSid", "   ") },
		"long MessageSid":  func(v url.Values) { v.Set("MessageSid", "SM"+strings.Repeat("0", 63)) },
		"spaced MessageSid": func(v url.Values) {
			v.Set("MessageSid", "SM01 23")
		},
		"no From":   func(v url.Values) { v.Del("From") },
		"blank To":  func(v url.Values) { v.Set("To", " ") },
		"long From": func(v url.Values) { v.Set("From", "+"+strings.Repeat("1", 64)) },
	}
	for name, edit := range tests {
		v := base()
		edit(v)
		if _, err := ParseInbound(mustForm(t, v.Encode())); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error = %v, want ErrMalformed", name, err)
		}
	}
	// Liberal: another id shape, SmsSid only, no AccountSid, no Body.
	v := base()
	v.Del("MessageSid")
	v.Del("Body")
	v.Set("SmsSid", "SMabc")
	m, err := ParseInbound(mustForm(t, v.Encode()))
	if err != nil || m.MessageSid != "SMabc" || m.Inbound().Message.Text != "" {
		t.Fatalf("ParseInbound = %+v, %v", m, err)
	}
}

func TestNormalizeNumber(t *testing.T) {
	for in, want := range map[string]string{
		"+919811100001":      "+919811100001",
		" +91 98111-00001 ":  "+919811100001",
		"+1 (415) 867-5309":  "+14158675309",
		"919811100001":       "+919811100001",
		"12345":              "12345",
		"HDFCBK":             "HDFCBK",
		"VM-HDFCBK":          "VM-HDFCBK",
		"whatsapp:+14155238": "whatsapp:+14155238",
		"+":                  "+",
		"":                   "",
		"9+1":                "9+1",
	} {
		if got := NormalizeNumber(in); got != want {
			t.Errorf("NormalizeNumber(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOptOutAndOptIn(t *testing.T) {
	for _, s := range []string{"STOP", "stop", " Stop. ", "STOPALL", "unsubscribe!", "Cancel", "END", "quit", "\u200bSTOP\n", "¡stop!"} {
		if !IsOptOut(s) {
			t.Errorf("IsOptOut(%q) = false", s)
		}
		if IsOptIn(s) {
			t.Errorf("IsOptIn(%q) = true", s)
		}
	}
	for _, s := range []string{"", "please stop", "STOP it", "stopp", "S T O P", "ſtop", "stop 🙏", "STOP STOP", "start"} {
		if IsOptOut(s) {
			t.Errorf("IsOptOut(%q) = true", s)
		}
	}
	for _, s := range []string{"START", "start", "Yes!", "unstop", " YES "} {
		if !IsOptIn(s) {
			t.Errorf("IsOptIn(%q) = false", s)
		}
	}
	for _, s := range []string{"yes please", "restart", "ok"} {
		if IsOptIn(s) {
			t.Errorf("IsOptIn(%q) = true", s)
		}
	}
}

func TestSegments(t *testing.T) {
	rep := strings.Repeat
	tests := []struct {
		name string
		body string
		gsm  bool
		want int
	}{
		{"empty", "", true, 1},
		{"short", "Hello", true, 1},
		{"160 GSM", rep("a", 160), true, 1},
		{"161 GSM", rep("a", 161), true, 2},
		{"306 GSM", rep("a", 306), true, 2},
		{"307 GSM", rep("a", 307), true, 3},
		{"GSM accents", rep("é", 160), true, 1},
		{"80 extension characters", rep("{", 80), true, 1},
		{"81 extension characters", rep("€", 81), true, 2},
		{"extension never split", rep("a", 152) + "[" + rep("a", 10), true, 2},
		{"backtick forces UCS-2", rep("a", 70) + "`", false, 2},
		{"70 UCS-2", rep("न", 70), false, 1},
		{"71 UCS-2", rep("न", 71), false, 2},
		{"134 UCS-2", rep("न", 134), false, 2},
		{"135 UCS-2", rep("न", 135), false, 3},
		{"35 emoji", rep("🙏", 35), false, 1},
		{"36 emoji", rep("🙏", 36), false, 2},
		{"surrogates never split", rep("a", 66) + "🙏" + rep("a", 10), false, 2},
		{"69 then emoji", rep("a", 69) + "🙏", false, 2},
		{"68 then emoji", rep("a", 68) + "🙏", false, 1},
	}
	for _, tt := range tests {
		if got := GSM7(tt.body); got != tt.gsm {
			t.Errorf("%s: GSM7 = %v, want %v", tt.name, got, tt.gsm)
		}
		if got := Segments(tt.body); got != tt.want {
			t.Errorf("%s: Segments = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func FuzzParseForm(f *testing.F) {
	f.Add([]byte(sampleInbound))
	f.Add([]byte(sampleMMS))
	f.Add([]byte(sampleStatus))
	f.Add([]byte(sampleFailedStatus))
	f.Add([]byte("MessageSid=SM1&From=%2B1&To=2&Body=%F0%9F%99%8F&MediaUrl00=x&MediaUrl0=y"))
	f.Add([]byte("MessageSid=%20&From=&To="))
	f.Add([]byte("%zz"))
	f.Fuzz(func(t *testing.T, body []byte) {
		params, err := ParseForm(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if m, err := ParseInbound(params); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseInbound error does not wrap ErrMalformed: %v", err)
			}
		} else {
			in := m.Inbound()
			k := in.Key
			if k.Channel != "sms" || k.BusinessNumber == "" || k.ContactPhone == "" {
				t.Fatalf("bad key %+v", k)
			}
			pm := in.Message
			if pm == nil || in.Status != nil || pm.ProviderMessageID == "" || pm.Type == "" || !json.Valid(pm.Payload) {
				t.Fatalf("bad message %+v", pm)
			}
			if pm.Text != first(params, "Body") {
				t.Fatalf("text %q is not the body %q", pm.Text, first(params, "Body"))
			}
			if (pm.Type == TypeMMS) != (len(pm.Media) > 0) {
				t.Fatalf("type %s with %d media", pm.Type, len(pm.Media))
			}
		}
		if s, err := ParseStatus(params); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseStatus error does not wrap ErrMalformed: %v", err)
			}
		} else if s.Relevant() {
			in := s.Inbound()
			if k := in.Key; k.Channel != "sms" || k.BusinessNumber == "" || k.ContactPhone == "" {
				t.Fatalf("bad key %+v", k)
			}
			st := in.Status
			if st == nil || in.Message != nil || st.ProviderMessageID == "" || st.Status == "" || !json.Valid(st.Raw) {
				t.Fatalf("bad status %+v", st)
			}
			if (st.Status == "failed") != (st.Error != nil) || (st.Error != nil && !json.Valid(st.Error)) {
				t.Fatalf("bad status error %s for %s", st.Error, st.Status)
			}
		}
		// What the form holds survives a round trip through the encoder.
		v := url.Values(params)
		again, err := ParseForm([]byte(v.Encode()))
		if err != nil || len(again) != len(params) {
			t.Fatalf("round trip: %v, %d != %d parameters", err, len(again), len(params))
		}
		for k, vs := range params {
			if strconv.Quote(strings.Join(again[k], "\x00")) != strconv.Quote(strings.Join(vs, "\x00")) {
				t.Fatalf("round trip of %q: %q != %q", k, again[k], vs)
			}
		}
	})
}
