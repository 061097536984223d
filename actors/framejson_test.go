package actors

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"urva/persistence"
)

// marshalledFrame is the message frame as json.Marshal writes it: what
// appendMessageFrame must reproduce byte for byte.
func marshalledFrame(r *persistence.EventRecord) ([]byte, error) {
	cur := Cursor(r.ID)
	return json.Marshal(messageFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur,
		Message: NewMessageJSON(r.Message, ContactJSON{Phone: r.ContactPhone, Name: r.ContactName})})
}

// sameAsMarshal checks appendMessageFrame against json.Marshal for r: the
// same bytes, or a refusal exactly where json.Marshal fails too.
func sameAsMarshal(t *testing.T, r *persistence.EventRecord) {
	t.Helper()
	want, werr := marshalledFrame(r)
	got, ok := appendMessageFrame(nil, r, Cursor(r.ID))
	if !ok {
		if werr == nil {
			t.Fatalf("appendMessageFrame refused what json.Marshal writes:\n%s", want)
		}
		return
	}
	if werr != nil {
		t.Fatalf("appendMessageFrame wrote %s where json.Marshal fails: %v", got, werr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("frames differ\n got %s\nwant %s", got, want)
	}
	// And what EncodeEvent sends is the same.
	if enc := EncodeEvent(r); !bytes.Equal(enc, want) {
		t.Fatalf("EncodeEvent\n got %s\nwant %s", enc, want)
	}
}

func sampleRecord() *persistence.EventRecord {
	created := time.Date(2026, 11, 24, 9, 30, 15, 123456000, time.UTC)
	return &persistence.EventRecord{
		Event:        persistence.Event{ID: 123456, ConversationID: 42, Seq: 7, Type: persistence.EventMessage, MessageID: 9},
		ContactPhone: "+919811100001", ContactName: "Meera",
		Message: &persistence.Message{
			ID: 9, ConversationID: 42, Seq: 7, Direction: persistence.DirectionIn, Channel: "whatsapp", Type: "text",
			Text: "hello", Status: "received", ProviderMessageID: "wamid.HBgM", CreatedAt: created,
			ProviderTimestamp: created.Add(-time.Second),
			Payload:           json.RawMessage(`{"from":"919811100001","id":"wamid.HBgM","timestamp":"1767225600","type":"text","text":{"body":"hello"}}`),
		},
	}
}

func TestMessageFrameMatchesMarshal(t *testing.T) {
	for name, change := range map[string]func(r *persistence.EventRecord){
		"inbound text": func(*persistence.EventRecord) {},
		"outbound, rm id": func(r *persistence.EventRecord) {
			r.Message.Direction, r.Message.RMID, r.Message.ClientMsgID = "out", 5, "c-1"
		},
		"outbound payload": func(r *persistence.EventRecord) { r.Message.Direction = "out" }, // not sent for outbound
		"html and quotes":  func(r *persistence.EventRecord) { r.Message.Text = `<b>"Tom" & 'Jerry'</b> \ back` },
		"html only":        func(r *persistence.EventRecord) { r.Message.Text, r.ContactName = "a < b > c & d", "A&B" },
		"backslash only":   func(r *persistence.EventRecord) { r.Message.Status = `C:\dir` },
		"control chars":    func(r *persistence.EventRecord) { r.Message.Text = "line\nnext\ttab\r\x00\x1f\b\f" },
		"devanagari": func(r *persistence.EventRecord) {
			r.Message.Text, r.ContactName = "नमस्ते, कैसे हैं?", "मीरा"
		},
		"emoji":           func(r *persistence.EventRecord) { r.Message.Text = "ok 👍🏽" },
		"line separators": func(r *persistence.EventRecord) { r.Message.Text = "a\u2028b\u2029c" },
		"invalid utf-8":   func(r *persistence.EventRecord) { r.Message.Text = "bad \xff\xfe end" },
		"payload spaced": func(r *persistence.EventRecord) {
			r.Message.Payload = json.RawMessage(" {\n \"a\" : [1, 2 ,3],\t\"b\":\"<x>&\u2028\"} ")
		},
		"payload invalid": func(r *persistence.EventRecord) { r.Message.Payload = json.RawMessage(`{"a":`) },
		"payload null":    func(r *persistence.EventRecord) { r.Message.Payload = json.RawMessage(`null`) },
		"error": func(r *persistence.EventRecord) {
			r.Message.Error = json.RawMessage(`{"code": 131047, "title":"Re-engagement <message>"}`)
		},
		"error invalid": func(r *persistence.EventRecord) { r.Message.Error = json.RawMessage(`nope`) },
		"media": func(r *persistence.EventRecord) {
			r.Message.Media = []persistence.Media{{ProviderMediaID: "m1", MimeType: "image/jpeg", Caption: "a & b"}}
		},
		"template": func(r *persistence.EventRecord) {
			r.Message.Template = &persistence.Template{Name: "followup", Language: "en", Params: []string{"Meera <3"}}
		},
		"no provider time": func(r *persistence.EventRecord) { r.Message.ProviderTimestamp = time.Time{} },
		"zone and zeros": func(r *persistence.EventRecord) {
			r.Message.CreatedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("IST", 19800))
		},
		"year 10000":   func(r *persistence.EventRecord) { r.Message.CreatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"zero created": func(r *persistence.EventRecord) { r.Message.CreatedAt = time.Time{} },
		"negative ids": func(r *persistence.EventRecord) { r.ID, r.ConversationID, r.Message.ID = -1, -2, -3 },
		"empty everything": func(r *persistence.EventRecord) {
			*r.Message = persistence.Message{}
			r.ContactName, r.ContactPhone = "", ""
		},
	} {
		t.Run(name, func(t *testing.T) {
			r := sampleRecord()
			change(r)
			sameAsMarshal(t, r)
		})
	}
}

// FuzzMessageFrame: for any texts, payload, error and times, the frame is
// json.Marshal's to the byte, or refused where json.Marshal fails.
func FuzzMessageFrame(f *testing.F) {
	f.Add("hello", "Meera", `{"a":1}`, "", int64(1767225600123456789), int64(5), "in")
	f.Add("<&>\u2028\"\\", "नमस्ते", " [1, {\"x\" : \"<\"} ] ", `{"code":1}`, int64(0), int64(0), "out")
	f.Add("\xff\x00\n", "\u2029", `{"a":`, `null`, int64(-62135596800000000), int64(-1), "in")
	f.Fuzz(func(t *testing.T, text, name, payload, errJSON string, nanos, rmID int64, dir string) {
		r := sampleRecord()
		r.Message.Text, r.ContactName, r.Message.Status = text, name, text
		r.Message.Payload, r.Message.Error = json.RawMessage(payload), json.RawMessage(errJSON)
		r.Message.CreatedAt = time.Unix(0, nanos)
		r.Message.ProviderTimestamp = time.Unix(0, nanos/3)
		r.Message.RMID, r.Message.Direction = rmID, dir
		sameAsMarshal(t, r)
	})
}

// BenchmarkMessageFrame: an inbound text's frame, written by EncodeEvent
// and by json.Marshal.
func BenchmarkMessageFrame(b *testing.B) {
	r := sampleRecord()
	b.Run("EncodeEvent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			EncodeEvent(r)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalledFrame(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
