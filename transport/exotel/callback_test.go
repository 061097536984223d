package exotel

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	formType = "application/x-www-form-urlencoded"
	jsonType = "application/json"
)

// sampleTerminalJSON is a terminal callback as PROVIDERS.md and Exotel's
// documentation describe it, with the answered and terminal events subscribed.
const sampleTerminalJSON = `{"CallSid":"80bfbec2d78bbbf10fb851f4fa165211","EventType":"terminal",` +
	`"DateCreated":"2026-01-15 14:25:10","DateUpdated":"2026-01-15 14:30:45","To":"09822200002","From":"09811100001",` +
	`"PhoneNumberSid":"09800000001","StartTime":"2026-01-15 14:25:12","EndTime":"2026-01-15 14:30:45",` +
	`"Status":"completed","ConversationDuration":320,"Direction":"outbound-api","CustomField":"urva:call:42",` +
	`"RecordingUrl":"https://recordings.example.com/80bfbec2d78bbbf10fb851f4fa165211.mp3",` +
	`"Legs":[{"OnCallDuration":333,"Status":"completed","AnsweredBy":"NA"},{"OnCallDuration":320,"Status":"completed","AnsweredBy":"HUMAN"}]}`

// sampleTerminalForm is the same callback form-encoded.
const sampleTerminalForm = "CallSid=80bfbec2d78bbbf10fb851f4fa165211&EventType=terminal&DateCreated=2026-01-15+14%3A25%3A10" +
	"&DateUpdated=2026-01-15+14%3A30%3A45&To=09822200002&From=09811100001&PhoneNumberSid=09800000001" +
	"&StartTime=2026-01-15+14%3A25%3A12&EndTime=2026-01-15+14%3A30%3A45&Status=completed&ConversationDuration=320" +
	"&Direction=outbound-api&CustomField=urva%3Acall%3A42" +
	"&RecordingUrl=https%3A%2F%2Frecordings.example.com%2F80bfbec2d78bbbf10fb851f4fa165211.mp3" +
	"&Legs%5B0%5D%5BOnCallDuration%5D=333&Legs%5B0%5D%5BStatus%5D=completed&Legs%5B0%5D%5BAnsweredBy%5D=NA" +
	"&Legs%5B1%5D%5BOnCallDuration%5D=320&Legs%5B1%5D%5BStatus%5D=completed&Legs%5B1%5D%5BAnsweredBy%5D=HUMAN"

// sampleLegacyForm is a callback of a request that subscribed to no events.
const sampleLegacyForm = "CallSid=80bfbec2d78bbbf10fb851f4fa165211&Status=no-answer&RecordingUrl=&DateUpdated=2026-01-15+14%3A30%3A45"

const sampleAnsweredJSON = `{"CallSid":"80bfbec2d78bbbf10fb851f4fa165211","EventType":"answered","Status":"in-progress",` +
	`"From":"09811100001","To":"09822200002","CustomField":"urva:call:42","StartTime":"2026-01-15 14:25:12",` +
	`"EndTime":null,"RecordingUrl":null,"ConversationDuration":0,"Legs":[{"OnCallDuration":0,"Status":"in-progress","AnsweredBy":"human"}]}`

func multipartBody(t testing.TB, fields [][2]string) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.FormDataContentType(), buf.Bytes()
}

func TestParseCallbackTerminal(t *testing.T) {
	mpType, mpBody := multipartBody(t, [][2]string{
		{"CallSid", "80bfbec2d78bbbf10fb851f4fa165211"}, {"EventType", "terminal"}, {"DateCreated", "2026-01-15 14:25:10"},
		{"DateUpdated", "2026-01-15 14:30:45"}, {"To", "09822200002"}, {"From", "09811100001"}, {"PhoneNumberSid", "09800000001"},
		{"StartTime", "2026-01-15 14:25:12"}, {"EndTime", "2026-01-15 14:30:45"}, {"Status", "completed"},
		{"ConversationDuration", "320"}, {"Direction", "outbound-api"}, {"CustomField", "urva:call:42"},
		{"RecordingUrl", "https://recordings.example.com/80bfbec2d78bbbf10fb851f4fa165211.mp3"},
		{"Legs[0][OnCallDuration]", "333"}, {"Legs[0][Status]", "completed"}, {"Legs[0][AnsweredBy]", "NA"},
		{"Legs[1][OnCallDuration]", "320"}, {"Legs[1][Status]", "completed"}, {"Legs[1][AnsweredBy]", "HUMAN"},
	})
	for _, tt := range []struct {
		name, contentType, body string
	}{
		{"json", jsonType, sampleTerminalJSON},
		{"json with charset", "application/json; charset=utf-8", sampleTerminalJSON},
		{"form", formType, sampleTerminalForm},
		{"form sniffed", "", sampleTerminalForm},
		{"json sniffed", "text/plain", "\n " + sampleTerminalJSON},
		{"multipart", mpType, string(mpBody)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := ParseCallback(tt.contentType, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if cb.CallSid != "80bfbec2d78bbbf10fb851f4fa165211" || cb.EventType != EventTerminal || !cb.Terminal() || cb.Answered() ||
				cb.Status != StatusCompleted || cb.From != "09811100001" || cb.To != "09822200002" ||
				cb.PhoneNumberSid != "09800000001" || cb.Direction != DirectionOutboundAPI || cb.CustomField != "urva:call:42" ||
				cb.RecordingURL != "https://recordings.example.com/80bfbec2d78bbbf10fb851f4fa165211.mp3" ||
				cb.ConversationDuration != 320 {
				t.Fatalf("callback = %+v", cb)
			}
			for _, tm := range []struct {
				got  time.Time
				want string
			}{
				{cb.StartTime, "2026-01-15 14:25:12"}, {cb.EndTime, "2026-01-15 14:30:45"},
				{cb.DateCreated, "2026-01-15 14:25:10"}, {cb.DateUpdated, "2026-01-15 14:30:45"},
			} {
				if !tm.got.Equal(istTime(t, tm.want)) {
					t.Errorf("time %v, want %s IST", tm.got, tm.want)
				}
			}
			want := []Leg{{333, "completed", "NA"}, {320, "completed", "HUMAN"}}
			if len(cb.Legs) != 2 || cb.Legs[0] != want[0] || cb.Legs[1] != want[1] {
				t.Fatalf("legs = %+v", cb.Legs)
			}
			var raw map[string]any
			if err := json.Unmarshal(cb.Raw, &raw); err != nil {
				t.Fatalf("Raw %s: %v", cb.Raw, err)
			}
			if raw["CallSid"] != cb.CallSid || (raw["Legs[1][AnsweredBy]"] != "HUMAN" && raw["Legs"] == nil) {
				t.Fatalf("Raw = %s", cb.Raw)
			}
		})
	}
}

func TestParseCallbackVariants(t *testing.T) {
	const sid = "80bfbec2d78bbbf10fb851f4fa165211"
	tests := []struct {
		name, contentType, body string
		check                   func(t *testing.T, cb *Callback)
	}{
		{"answered json", jsonType, sampleAnsweredJSON, func(t *testing.T, cb *Callback) {
			if !cb.Answered() || cb.Status != StatusInProgress || cb.RecordingURL != "" || !cb.EndTime.IsZero() ||
				len(cb.Legs) != 1 || cb.Legs[0] != (Leg{0, "in-progress", "human"}) || cb.CustomField != "urva:call:42" {
				t.Fatalf("%+v", cb)
			}
		}},
		{"answered form", formType, "CallSid=" + sid + "&EventType=Answered&Status=in-progress&CustomField=%20x%20", func(t *testing.T, cb *Callback) {
			if cb.EventType != EventAnswered || cb.CustomField != " x " || cb.Legs != nil {
				t.Fatalf("%+v", cb)
			}
		}},
		{"no event type is terminal", formType, sampleLegacyForm, func(t *testing.T, cb *Callback) {
			if !cb.Terminal() || cb.Status != StatusNoAnswer || cb.RecordingURL != "" || cb.DateUpdated.IsZero() {
				t.Fatalf("%+v", cb)
			}
		}},
		{"unknown event kept", jsonType, `{"CallSid":"` + sid + `","EventType":"Ringing"}`, func(t *testing.T, cb *Callback) {
			if cb.EventType != "ringing" || cb.Terminal() || cb.Answered() {
				t.Fatalf("%+v", cb)
			}
		}},
		{"numbers as strings, names in other cases", jsonType,
			`{"callsid":"` + sid + `","STATUS":"Busy","conversationDuration":"12.0","Legs":[{"oncallduration":"4","status":"BUSY"}]}`,
			func(t *testing.T, cb *Callback) {
				if cb.CallSid != sid || cb.Status != StatusBusy || cb.ConversationDuration != 12 || len(cb.Legs) != 1 || cb.Legs[0] != (Leg{4, "busy", ""}) {
					t.Fatalf("%+v", cb)
				}
			}},
		{"unreadable numbers and times are zero", jsonType,
			`{"CallSid":"` + sid + `","ConversationDuration":"-3","StartTime":"yesterday","EndTime":17,"Legs":"junk","DateUpdated":{"a":1}}`,
			func(t *testing.T, cb *Callback) {
				if cb.ConversationDuration != 0 || !cb.StartTime.IsZero() || !cb.EndTime.IsZero() || cb.Legs != nil {
					t.Fatalf("%+v", cb)
				}
			}},
		{"legs as a JSON string", jsonType, `{"CallSid":"` + sid + `","Legs":"[{\"OnCallDuration\":5,\"Status\":\"completed\"}]"}`,
			func(t *testing.T, cb *Callback) {
				if len(cb.Legs) != 1 || cb.Legs[0].OnCallDuration != 5 {
					t.Fatalf("%+v", cb)
				}
			}},
		{"form legs as one JSON parameter", formType, "CallSid=" + sid + "&Legs=" + url.QueryEscape(`[{"OnCallDuration":5,"Status":"busy"},{"Leg":{"OnCallDuration":0}}]`),
			func(t *testing.T, cb *Callback) {
				if len(cb.Legs) != 2 || cb.Legs[0] != (Leg{5, "busy", ""}) || cb.Legs[1] != (Leg{}) {
					t.Fatalf("%+v", cb)
				}
			}},
		{"sparse and out of range form legs", formType,
			"CallSid=" + sid + "&legs[3][status]=failed&Legs[1][Status]=busy&Legs[99][Status]=x&Legs[a][Status]=y&Legs[1]=z",
			func(t *testing.T, cb *Callback) {
				if len(cb.Legs) != 2 || cb.Legs[0].Status != "busy" || cb.Legs[1].Status != "failed" {
					t.Fatalf("%+v", cb.Legs)
				}
			}},
		{"repeated parameters keep the first, Raw keeps all", formType, "CallSid=" + sid + "&Status=busy&Status=completed",
			func(t *testing.T, cb *Callback) {
				if cb.Status != StatusBusy || string(cb.Raw) != `{"CallSid":"`+sid+`","Status":["busy","completed"]}` {
					t.Fatalf("%+v %s", cb, cb.Raw)
				}
			}},
		{"Sid instead of CallSid", jsonType, `{"Sid":"` + sid + `"}`, func(t *testing.T, cb *Callback) {
			if cb.CallSid != sid || string(cb.Raw) != `{"Sid":"`+sid+`"}` {
				t.Fatalf("%+v", cb)
			}
		}},
		{"RecordingUrl null in a form", formType, "CallSid=" + sid + "&RecordingUrl=null", func(t *testing.T, cb *Callback) {
			if cb.RecordingURL != "" {
				t.Fatalf("%+v", cb)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := ParseCallback(tt.contentType, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(cb.Raw) {
				t.Fatalf("Raw %s", cb.Raw)
			}
			tt.check(t, cb)
		})
	}
}

func TestParseCallbackRejects(t *testing.T) {
	mpType, mpBody := multipartBody(t, [][2]string{{"Status", "completed"}})
	for _, tt := range []struct {
		name, contentType, body string
	}{
		{"empty json", jsonType, ``},
		{"empty form", formType, ``},
		{"no CallSid json", jsonType, `{"Status":"completed"}`},
		{"no CallSid form", formType, `Status=completed`},
		{"blank CallSid", formType, `CallSid=+++&Status=completed`},
		{"CallSid with a space", jsonType, `{"CallSid":"a b"}`},
		{"CallSid with a control character", jsonType, `{"CallSid":"a\u0000b"}`},
		{"CallSid too long", jsonType, `{"CallSid":"` + strings.Repeat("a", 129) + `"}`},
		{"CallSid an object", jsonType, `{"CallSid":{"x":1}}`},
		{"json array", jsonType, `[{"CallSid":"a"}]`},
		{"json null", jsonType, `null`},
		{"json trailing junk", jsonType, `{"CallSid":"a"} x`},
		{"form as json", jsonType, sampleTerminalForm},
		{"bad escape", formType, `CallSid=%zz`},
		{"not UTF-8 form", formType, `CallSid=%ff`},
		{"not UTF-8 json", jsonType, "{\"CallSid\":\"a\xff\"}"},
		{"multipart without boundary", "multipart/form-data", string(mpBody)},
		{"multipart without CallSid", mpType, string(mpBody)},
		{"multipart junk", mpType, "junk"},
		{"too many parameters", formType, strings.Repeat("a=1&", 1001) + "CallSid=x"},
		{"too large", jsonType, `{"CallSid":"a","x":"` + strings.Repeat("x", MaxCallbackBody) + `"}`},
		{"html", "text/html", "<html>hello</html>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := ParseCallback(tt.contentType, []byte(tt.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseCallback = %+v, %v; want ErrMalformed", cb, err)
			}
		})
	}
}

func FuzzParseCallback(f *testing.F) {
	for _, s := range []string{sampleTerminalJSON, sampleAnsweredJSON, sampleTerminalForm, sampleLegacyForm,
		`{"CallSid":"x","Legs":"[{\"Leg\":{\"OnCallDuration\":1}}]","Details":{"Legs":[]}}`,
		"CallSid=x&Legs%5B0%5D%5BStatus%5D=busy&Legs[9999][x]=1&Legs=%5B%5D",
		`{"CallSid":"x","ConversationDuration":1e300,"StartTime":"2026-13-45 99:99:99"}`,
		"%zz", "{", "CallSid=%F0%9F%99%8F",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, asJSON bool) {
		contentType := formType
		if asJSON {
			contentType = jsonType
		}
		cb, err := ParseCallback(contentType, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if cb.CallSid == "" || checkSid(cb.CallSid) != nil {
			t.Fatalf("accepted CallSid %q", cb.CallSid)
		}
		if cb.EventType == "" || cb.EventType != strings.ToLower(cb.EventType) || cb.Status != strings.ToLower(cb.Status) {
			t.Fatalf("event %q status %q", cb.EventType, cb.Status)
		}
		if !json.Valid(cb.Raw) || len(cb.Raw) == 0 || cb.Raw[0] != '{' {
			t.Fatalf("Raw %q", cb.Raw)
		}
		if len(cb.Legs) > maxLegs || cb.ConversationDuration < 0 {
			t.Fatalf("legs %d, conversation %d", len(cb.Legs), cb.ConversationDuration)
		}
		for _, l := range cb.Legs {
			if l.OnCallDuration < 0 {
				t.Fatalf("leg %+v", l)
			}
		}
	})
}
