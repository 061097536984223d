package whatsapp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"urva/persistence"
)

// sampleText is the envelope from the reference documentation.
const sampleText = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"919800000001","phone_number_id":"100000000000001"},
  "contacts":[{"profile":{"name":"Meera Iyer"},"wa_id":"919811100001"}],
  "messages":[{"from":"919811100001","id":"wamid.EXAMPLE1","timestamp":"1767225600","type":"text","text":{"body":"Hello"}}]
}}]}]}`

// sampleStatuses carries a sent status with billing, a failed one and a played one.
const sampleStatuses = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"919800000001","phone_number_id":"100000000000001"},
  "statuses":[
    {"id":"wamid.OUT1","status":"sent","timestamp":"1767225700","recipient_id":"919811100001",
     "conversation":{"id":"c0nv1","expiration_timestamp":"1767312100","origin":{"type":"service"}},
     "pricing":{"billable":true,"pricing_model":"CBP","category":"service"}},
    {"id":"wamid.OUT2","status":"failed","timestamp":"1767225701","recipient_id":"919811100002",
     "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message",
       "error_data":{"details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
       "href":"https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]},
    {"id":"wamid.OUT3","status":"played","timestamp":1767225702,"recipient_id":"919811100003"}
  ]},"field":"messages"}]}]}`

// envelope wraps message objects in one change from one contact.
func envelope(messages ...string) string {
	return `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{` +
		`"messaging_product":"whatsapp","metadata":{"display_phone_number":"919800000001","phone_number_id":"100000000000001"},` +
		`"contacts":[{"profile":{"name":"Meera Iyer"},"wa_id":"919811100001"}],` +
		`"messages":[` + strings.Join(messages, ",") + `]}}]}]}`
}

// message is one message object from the test contact.
func message(id, typ, content string) string {
	s := `{"from":"919811100001","id":"` + id + `","timestamp":"1767225600","type":"` + typ + `"`
	if content != "" {
		s += "," + content
	}
	return s + "}"
}

var typedMessages = []struct {
	name      string
	msg       string
	wantType  string
	wantText  string
	wantMedia *persistence.Media
	check     func(t *testing.T, m *Message)
}{
	{
		name: "text", msg: message("wamid.T", "text", `"text":{"body":"Hello"}`),
		wantType: "text", wantText: "Hello",
	},
	{
		name:     "text reply with context",
		msg:      message("wamid.C", "text", `"context":{"from":"919800000001","id":"wamid.OUT1"},"text":{"body":"Yes"}`),
		wantType: "text", wantText: "Yes",
		check: func(t *testing.T, m *Message) {
			if m.Context == nil || m.Context.ID != "wamid.OUT1" || m.Context.From != "919800000001" {
				t.Errorf("context = %+v", m.Context)
			}
		},
	},
	{
		name: "text from an ad with referral",
		msg: message("wamid.R", "text", `"referral":{"source_url":"https://fb.me/ad","source_id":"120","source_type":"ad",`+
			`"headline":"Gold loan","body":"Low rates","media_type":"image","image_url":"https://x/i.jpg","ctwa_clid":"ARx"},"text":{"body":"Tell me more"}`),
		wantType: "text", wantText: "Tell me more",
		check: func(t *testing.T, m *Message) {
			if m.Referral == nil || m.Referral.SourceType != "ad" || m.Referral.Headline != "Gold loan" || m.Referral.CTWAClid != "ARx" {
				t.Errorf("referral = %+v", m.Referral)
			}
		},
	},
	{
		name:     "image",
		msg:      message("wamid.I", "image", `"image":{"caption":"Receipt","mime_type":"image/jpeg","sha256":"c2hh","id":"m1"}`),
		wantType: "image", wantText: "Receipt",
		wantMedia: &persistence.Media{ProviderMediaID: "m1", MimeType: "image/jpeg", SHA256: "c2hh", Caption: "Receipt"},
	},
	{
		name:     "video",
		msg:      message("wamid.V", "video", `"video":{"mime_type":"video/mp4","sha256":"dg==","id":"m2"}`),
		wantType: "video", wantText: "",
		wantMedia: &persistence.Media{ProviderMediaID: "m2", MimeType: "video/mp4", SHA256: "dg=="},
	},
	{
		name:      "sticker",
		msg:       message("wamid.S", "sticker", `"sticker":{"mime_type":"image/webp","sha256":"cw==","id":"m3","animated":false}`),
		wantType:  "sticker",
		wantMedia: &persistence.Media{ProviderMediaID: "m3", MimeType: "image/webp", SHA256: "cw=="},
	},
	{
		name:     "document",
		msg:      message("wamid.D", "document", `"document":{"caption":"PAN card","filename":"pan.pdf","mime_type":"application/pdf","sha256":"ZA==","id":"m4"}`),
		wantType: "document", wantText: "PAN card",
		wantMedia: &persistence.Media{ProviderMediaID: "m4", MimeType: "application/pdf", SHA256: "ZA==", Filename: "pan.pdf", Caption: "PAN card"},
	},
	{
		name:      "voice note",
		msg:       message("wamid.A", "audio", `"audio":{"mime_type":"audio/ogg; codecs=opus","sha256":"YQ==","id":"m5","voice":true}`),
		wantType:  "audio",
		wantMedia: &persistence.Media{ProviderMediaID: "m5", MimeType: "audio/ogg; codecs=opus", SHA256: "YQ==", Voice: true},
	},
	{
		name:     "location",
		msg:      message("wamid.L", "location", `"location":{"latitude":12.9716,"longitude":77.5946,"name":"MG Road Branch","address":"1 MG Road, Bengaluru"}`),
		wantType: "location", wantText: "MG Road Branch, 1 MG Road, Bengaluru",
		check: func(t *testing.T, m *Message) {
			if m.Location == nil || m.Location.Latitude != 12.9716 || m.Location.Longitude != 77.5946 {
				t.Errorf("location = %+v", m.Location)
			}
		},
	},
	{
		name:     "bare location",
		msg:      message("wamid.L2", "location", `"location":{"latitude":12.5,"longitude":-77.25}`),
		wantType: "location", wantText: "Location 12.500000,-77.250000",
	},
	{
		name: "contacts",
		msg: message("wamid.K", "contacts", `"contacts":[{"addresses":[{"city":"Pune","type":"HOME"}],"emails":[{"email":"r@example.com"}],`+
			`"name":{"formatted_name":"Ravi Kumar","first_name":"Ravi","last_name":"Kumar"},"org":{"company":"Acme"},`+
			`"phones":[{"phone":"+91 98111 00002","wa_id":"919811100002","type":"CELL"}]}]`),
		wantType: "contacts", wantText: "Contact: Ravi Kumar +91 98111 00002",
		check: func(t *testing.T, m *Message) {
			if len(m.Contacts) != 1 || m.Contacts[0].Phones[0].WaID != "919811100002" {
				t.Errorf("contacts = %+v", m.Contacts)
			}
		},
	},
	{
		name: "two contacts",
		msg: message("wamid.K2", "contacts", `"contacts":[{"name":{"first_name":"Asha"},"phones":[{"wa_id":"919811100003"}]},`+
			`{"name":{"formatted_name":"Dev"}}]`),
		wantType: "contacts", wantText: "2 contacts: Asha +919811100003; Dev",
	},
	{
		name:     "interactive button reply",
		msg:      message("wamid.B", "interactive", `"interactive":{"type":"button_reply","button_reply":{"id":"yes","title":"Yes, call me"}}`),
		wantType: "interactive", wantText: "Yes, call me",
		check: func(t *testing.T, m *Message) {
			if m.Interactive.Type != "button_reply" || m.Interactive.ButtonReply.ID != "yes" {
				t.Errorf("interactive = %+v", m.Interactive)
			}
		},
	},
	{
		name:     "interactive list reply",
		msg:      message("wamid.LR", "interactive", `"interactive":{"type":"list_reply","list_reply":{"id":"fd","title":"Fixed deposit","description":"7.1%"}}`),
		wantType: "interactive", wantText: "Fixed deposit",
		check: func(t *testing.T, m *Message) {
			if m.Interactive.ListReply.Description != "7.1%" {
				t.Errorf("list reply = %+v", m.Interactive.ListReply)
			}
		},
	},
	{
		name:     "template quick-reply button",
		msg:      message("wamid.QB", "button", `"context":{"from":"919800000001","id":"wamid.TPL"},"button":{"payload":"CALL_ME","text":"Call me"}`),
		wantType: "button", wantText: "Call me",
		check: func(t *testing.T, m *Message) {
			if m.Button.Payload != "CALL_ME" {
				t.Errorf("button = %+v", m.Button)
			}
		},
	},
	{
		name:     "reaction",
		msg:      message("wamid.RE", "reaction", `"reaction":{"message_id":"wamid.OUT1","emoji":"\ud83d\udc4d"}`),
		wantType: "reaction", wantText: "\U0001F44D",
		check: func(t *testing.T, m *Message) {
			if m.Reaction.MessageID != "wamid.OUT1" {
				t.Errorf("reaction = %+v", m.Reaction)
			}
		},
	},
	{
		name:     "reaction removed",
		msg:      message("wamid.RE2", "reaction", `"reaction":{"message_id":"wamid.OUT1","emoji":""}`),
		wantType: "reaction", wantText: "",
	},
	{
		name:     "unsupported",
		msg:      message("wamid.U", "unsupported", `"errors":[{"code":131051,"details":"Message type is not currently supported","title":"Unsupported message type"}]`),
		wantType: "unsupported", wantText: "Message type is not currently supported",
		check: func(t *testing.T, m *Message) {
			if len(m.Errors) != 1 || m.Errors[0].Code != "131051" {
				t.Errorf("errors = %+v", m.Errors)
			}
		},
	},
	{
		name:     "unknown",
		msg:      message("wamid.UK", "unknown", `"errors":[{"code":131051,"title":"Message type unknown","message":"Message type unknown","error_data":{"details":"Message type is currently not supported."}}]`),
		wantType: "unknown", wantText: "Message type is currently not supported.",
	},
	{
		name:     "system",
		msg:      message("wamid.SY", "system", `"system":{"body":"Meera changed their phone number","new_wa_id":"919811100009","type":"user_changed_number"}`),
		wantType: "system", wantText: "Meera changed their phone number",
	},
	{
		name:     "other type kept",
		msg:      message("wamid.O", "order", `"order":{"catalog_id":"cat1","text":"two please","product_items":[{"product_retailer_id":"p1","quantity":2}]}`),
		wantType: "order", wantText: "",
	},
	{
		name:     "other type reusing a known field with another shape",
		msg:      message("wamid.P", "poll", `"text":"which day?","image":[1,2]`),
		wantType: "poll", wantText: "",
	},
	{
		name:     "no type",
		msg:      `{"from":"919811100001","id":"wamid.NT","timestamp":"1767225600"}`,
		wantType: "unknown", wantText: "",
	},
}

func TestParseMessageTypes(t *testing.T) {
	for _, tt := range typedMessages {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(envelope(tt.msg)))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			m := &n.Entries[0].Changes[0].Value.Messages[0]
			if tt.check != nil {
				tt.check(t, m)
			}
			in := n.Inbound()
			if len(in) != 1 {
				t.Fatalf("Inbound() = %d items, want 1", len(in))
			}
			got := in[0]
			wantKey := persistence.ConversationKey{Channel: "whatsapp", BusinessNumber: "+919800000001", ContactPhone: "+919811100001"}
			if got.Key != wantKey {
				t.Errorf("key = %+v, want %+v", got.Key, wantKey)
			}
			if got.ContactName != "Meera Iyer" {
				t.Errorf("contact name = %q", got.ContactName)
			}
			if got.Status != nil || got.Message == nil {
				t.Fatalf("want a message, got %+v", got)
			}
			pm := got.Message
			if pm.Type != tt.wantType || pm.Text != tt.wantText {
				t.Errorf("type, text = %q, %q; want %q, %q", pm.Type, pm.Text, tt.wantType, tt.wantText)
			}
			if pm.Direction != "in" || pm.Channel != "whatsapp" || pm.Status != "received" {
				t.Errorf("direction, channel, status = %q, %q, %q", pm.Direction, pm.Channel, pm.Status)
			}
			if pm.ProviderMessageID != m.ID || !strings.HasPrefix(pm.ProviderMessageID, "wamid.") {
				t.Errorf("provider id = %q", pm.ProviderMessageID)
			}
			if want := time.Unix(1767225600, 0).UTC(); !pm.ProviderTimestamp.Equal(want) {
				t.Errorf("timestamp = %v, want %v", pm.ProviderTimestamp, want)
			}
			if string(pm.Payload) != tt.msg {
				t.Errorf("payload = %s, want the raw object %s", pm.Payload, tt.msg)
			}
			if !json.Valid(pm.Payload) {
				t.Errorf("payload is not valid JSON")
			}
			switch {
			case tt.wantMedia == nil && len(pm.Media) != 0:
				t.Errorf("media = %+v, want none", pm.Media)
			case tt.wantMedia != nil && (len(pm.Media) != 1 || pm.Media[0] != *tt.wantMedia):
				t.Errorf("media = %+v, want %+v", pm.Media, *tt.wantMedia)
			}
		})
	}
}

func TestParseSeveralEntriesAndChanges(t *testing.T) {
	body := `{"object":"whatsapp_business_account","entry":[
	  {"id":"A","changes":[
	    {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"+91 98000 00001","phone_number_id":"1"},
	      "contacts":[{"profile":{"name":"Meera"},"wa_id":"919811100001"},{"profile":{"name":"Ravi"},"wa_id":"919811100002"}],
	      "messages":[` + message("wamid.1", "text", `"text":{"body":"one"}`) + `,
	        {"from":"919811100002","id":"wamid.2","timestamp":"1767225601","type":"text","text":{"body":"two"}}],
	      "statuses":[{"id":"wamid.OUT9","status":"delivered","timestamp":"1767225602","recipient_id":"919811100002"}]}},
	    {"field":"message_template_status_update","value":{"event":"APPROVED","message_template_id":12345,"message_template_name":"followup","reason":null}},
	    {"field":"history","value":{"metadata":"another shape","messages":{"count":3}}}
	  ]},
	  {"id":"B","changes":[
	    {"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"919800000002","phone_number_id":"2"},
	      "contacts":[{"profile":{"name":"Asha"},"wa_id":"919811100003"}],
	      "messages":[{"from":"919811100003","id":"wamid.3","timestamp":"1767225603","type":"text","text":{"body":"three"}}]}}
	  ]}
	]}`
	n, err := Parse([]byte(body))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c := n.Entries[0].Changes[1]; c.Value != nil || c.Field != "message_template_status_update" {
		t.Errorf("template update change = %+v", c)
	}
	if c := n.Entries[0].Changes[2]; c.Value != nil || c.Field != "history" {
		t.Errorf("history change = %+v", c)
	}
	in := n.Inbound()
	type row struct{ business, contact, name, id, text, status string }
	var got []row
	for _, x := range in {
		r := row{business: x.Key.BusinessNumber, contact: x.Key.ContactPhone, name: x.ContactName}
		if x.Message != nil {
			r.id, r.text = x.Message.ProviderMessageID, x.Message.Text
		} else {
			r.id, r.status = x.Status.ProviderMessageID, x.Status.Status
		}
		got = append(got, r)
	}
	want := []row{
		{"+919800000001", "+919811100001", "Meera", "wamid.1", "one", ""},
		{"+919800000001", "+919811100002", "Ravi", "wamid.2", "two", ""},
		{"+919800000001", "+919811100002", "", "wamid.OUT9", "", "delivered"},
		{"+919800000002", "+919811100003", "Asha", "wamid.3", "three", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("Inbound() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseStatuses(t *testing.T) {
	n, err := Parse([]byte(sampleStatuses))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	st := n.Entries[0].Changes[0].Value.Statuses
	if len(st) != 3 {
		t.Fatalf("statuses = %d, want 3", len(st))
	}
	if c := st[0].Conversation; c == nil || c.ID != "c0nv1" || c.ExpirationTimestamp != "1767312100" || c.Origin.Type != "service" {
		t.Errorf("conversation = %+v", c)
	}
	if p := st[0].Pricing; p == nil || !p.Billable || p.PricingModel != "CBP" || p.Category != "service" {
		t.Errorf("pricing = %+v", p)
	}
	in := n.Inbound()
	if len(in) != 3 {
		t.Fatalf("Inbound() = %d items, want 3", len(in))
	}
	for i, want := range []struct{ id, status, contact string }{
		{"wamid.OUT1", "sent", "+919811100001"},
		{"wamid.OUT2", "failed", "+919811100002"},
		{"wamid.OUT3", "read", "+919811100003"}, // played counts as read
	} {
		s := in[i].Status
		if in[i].Message != nil || s == nil {
			t.Fatalf("item %d: want a status, got %+v", i, in[i])
		}
		if s.ProviderMessageID != want.id || s.Status != want.status || in[i].Key.ContactPhone != want.contact || in[i].Key.BusinessNumber != "+919800000001" {
			t.Errorf("item %d = %+v key %+v, want %+v", i, s, in[i].Key, want)
		}
		if !s.At.Equal(time.Unix(int64(1767225700+i), 0)) {
			t.Errorf("item %d at = %v", i, s.At)
		}
		if !json.Valid(s.Raw) || !strings.Contains(string(s.Raw), want.id) {
			t.Errorf("item %d raw = %s", i, s.Raw)
		}
	}
	if in[0].Status.Error != nil {
		t.Errorf("sent status has error %s", in[0].Status.Error)
	}
	var e map[string]string
	if err := json.Unmarshal(in[1].Status.Error, &e); err != nil {
		t.Fatalf("failed status error %s: %v", in[1].Status.Error, err)
	}
	if e["code"] != "131047" || e["title"] != "Re-engagement message" || e["message"] != "Re-engagement message" ||
		!strings.Contains(e["details"], "24 hours") {
		t.Errorf("failed status error = %v", e)
	}
}

func TestParseMalformed(t *testing.T) {
	tests := []struct{ name, body string }{
		{"empty", ``},
		{"not JSON", `hello`},
		{"truncated", sampleText[:len(sampleText)-3]},
		{"array", `[]`},
		{"wrong object", strings.Replace(sampleText, "whatsapp_business_account", "page", 1)},
		{"no object", `{"entry":[]}`},
		{"entry not an array", `{"object":"whatsapp_business_account","entry":{}}`},
		{"messages not an array", `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":{}}}]}]}`},
		{"messages value not an object", `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":[]}]}]}`},
		{"missing id", envelope(`{"from":"919811100001","timestamp":"1767225600","type":"text","text":{"body":"x"}}`)},
		{"missing from", envelope(`{"id":"wamid.X","timestamp":"1767225600","type":"text","text":{"body":"x"}}`)},
		{"from without digits", envelope(`{"from":"abc","id":"wamid.X","timestamp":"1767225600","type":"text"}`)},
		{"missing timestamp", envelope(`{"from":"919811100001","id":"wamid.X","type":"text","text":{"body":"x"}}`)},
		{"bad timestamp", envelope(`{"from":"919811100001","id":"wamid.X","timestamp":"yesterday","type":"text"}`)},
		{"timestamp object", envelope(`{"from":"919811100001","id":"wamid.X","timestamp":{},"type":"text"}`)},
		{"message not an object", envelope(`"hello"`)},
		{"null message", envelope(`null`)},
		{"no business number", strings.Replace(sampleText, `"display_phone_number":"919800000001"`, `"display_phone_number":""`, 1)},
		{"status without id", strings.Replace(sampleStatuses, `"id":"wamid.OUT1",`, ``, 1)},
		{"status without status", strings.Replace(sampleStatuses, `"status":"sent",`, ``, 1)},
		{"status without recipient", strings.Replace(sampleStatuses, `"recipient_id":"919811100001"`, `"recipient_id":""`, 1)},
		{"status without timestamp", strings.Replace(sampleStatuses, `"timestamp":"1767225700",`, ``, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse = %+v, %v; want ErrMalformed", n, err)
			}
		})
	}
}

func TestParseKeepsRawIndependentOfInput(t *testing.T) {
	body := []byte(sampleText)
	n, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	in := n.Inbound()
	if !json.Valid(in[0].Message.Payload) || in[0].Message.Text != "Hello" {
		t.Fatalf("payload %s changed with the input buffer", in[0].Message.Payload)
	}
}

func TestParseEmptyAndOtherChanges(t *testing.T) {
	for _, body := range []string{
		`{"object":"whatsapp_business_account","entry":[]}`,
		`{"object":"whatsapp_business_account"}`,
		`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{}}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"account_update","value":{"phone_number":"x","event":"VERIFIED_ACCOUNT"}}]}]}`,
	} {
		n, err := Parse([]byte(body))
		if err != nil {
			t.Fatalf("Parse(%s): %v", body, err)
		}
		if in := n.Inbound(); len(in) != 0 {
			t.Fatalf("Inbound(%s) = %+v, want none", body, in)
		}
	}
}

func seedBodies() []string {
	seeds := []string{sampleText, sampleStatuses}
	for _, tt := range typedMessages {
		seeds = append(seeds, envelope(tt.msg))
	}
	return seeds
}

func FuzzParse(f *testing.F) {
	for _, s := range seedBodies() {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":null}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		for _, in := range n.Inbound() {
			k := in.Key
			if k.Channel != "whatsapp" || len(k.BusinessNumber) < 2 || len(k.ContactPhone) < 2 ||
				k.BusinessNumber[0] != '+' || k.ContactPhone[0] != '+' {
				t.Fatalf("bad key %+v", k)
			}
			switch {
			case in.Message != nil && in.Status == nil:
				if in.Message.ProviderMessageID == "" || in.Message.Type == "" || !json.Valid(in.Message.Payload) {
					t.Fatalf("bad message %+v", in.Message)
				}
			case in.Status != nil && in.Message == nil:
				if in.Status.ProviderMessageID == "" || in.Status.Status == "" || !json.Valid(in.Status.Raw) {
					t.Fatalf("bad status %+v", in.Status)
				}
				if in.Status.Error != nil && !json.Valid(in.Status.Error) {
					t.Fatalf("bad status error %s", in.Status.Error)
				}
			default:
				t.Fatalf("inbound with neither or both: %+v", in)
			}
		}
	})
}

// FuzzParseMatchesStdlib holds Parse, which decodes on the json/v2 engine,
// to what it gives with encoding/json's own decoder: the same notification,
// or an error from both.
func FuzzParseMatchesStdlib(f *testing.F) {
	for _, s := range seedBodies() {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		// Names match case-insensitively in encoding/json; the last of
		// duplicate names wins.
		`{"OBJECT":"whatsapp_business_account","Entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w1","type":"text","text":{"body":"a"}}]}}]}]}`,
		`{"object":"x","object":"whatsapp_business_account","entry":[]}`,
		// Invalid UTF-8, escapes and lone surrogates in strings.
		"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"metadata\":{\"display_phone_number\":\"91\xff\"},\"messages\":[{\"from\":\"9\\u00e9\",\"id\":\"w\\ud800\",\"type\":\"text\",\"text\":{\"body\":\"\xc3\"}}]}}]}]}",
		// Numbers where strings go, nulls, unknown fields, trailing data.
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"statuses":[{"id":"w2","status":"read","timestamp":1767225600,"recipient_id":"9","errors":[{"code":131047,"title":null}]}],"extra":{"a":[1,2]}}}]}]}`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":1,"id":"w3","type":"text"}]}}]}]}`,
		`{"object":"whatsapp_business_account","entry":null} x`,
		`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"1","id":"w4","type":"image","image":"not an object"}]}}]}]}`,
		` `, `null`, `[]`, `{"object":1e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gotErr := Parse(body)
		defer func(u func([]byte, any) error) { unmarshal = u }(unmarshal)
		unmarshal = json.Unmarshal
		want, wantErr := Parse(body)
		if (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("json/v2 engine: %v; encoding/json: %v", gotErr, wantErr)
		}
		if gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("json/v2 engine gave\n%+v\nencoding/json gave\n%+v", got, want)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	body := []byte(sampleText)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		n, err := Parse(body)
		if err != nil {
			b.Fatal(err)
		}
		if in := n.Inbound(); len(in) != 1 {
			b.Fatal(len(in))
		}
	}
}
