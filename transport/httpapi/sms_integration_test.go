package httpapi_test

// SMS over the real stack: signed Twilio webhooks and status callbacks into
// the server, RM replies out through the Twilio client to the sandbox
// Twilio, on SQLite and on MariaDB.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/sandbox"
	"urva/transport/twilio"
)

// Twilio webhook paths on the server.
const (
	smsInboundPath = "/webhooks/sms"
	smsStatusPath  = "/webhooks/sms/status"
)

// smsAnswer is the server's answer to a Twilio form post.
type smsAnswer struct {
	status      int
	contentType string
	body        []byte
}

func (a smsAnswer) String() string {
	return fmt.Sprintf("HTTP %d (%s) %s", a.status, a.contentType, a.body)
}

func (a smsAnswer) errorText() string { return response{status: a.status, body: a.body}.errorText() }

// postSMSForm posts body (a form) to path with sig as X-Twilio-Signature (no
// header when sig is empty).
func (s *stack) postSMSForm(path, body, sig string) smsAnswer {
	s.t.Helper()
	req, err := http.NewRequest("POST", s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	if sig != "" {
		req.Header.Set(twilio.SignatureHeader, sig)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("POST %s: %v", path, err)
	}
	return smsAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: b}
}

// smsSign is the X-Twilio-Signature Twilio sends for params posted to path:
// signed over the public URL (http.public_url + path).
func (s *stack) smsSign(path string, params url.Values) string {
	return twilio.Signature(itSMSAuthToken, s.base+path, params)
}

// postSMS posts params to path signed as Twilio signs them.
func (s *stack) postSMS(path string, params url.Values) smsAnswer {
	s.t.Helper()
	return s.postSMSForm(path, params.Encode(), s.smsSign(path, params))
}

// mustSMS posts params signed to path and requires Twilio's empty TwiML answer.
func (s *stack) mustSMS(path string, params url.Values) {
	s.t.Helper()
	requireTwiML(s.t, s.postSMS(path, params))
}

// requireTwiML requires 200 with exactly <Response></Response> as text/xml.
func requireTwiML(t *testing.T, a smsAnswer) {
	t.Helper()
	mt, _, err := mime.ParseMediaType(a.contentType)
	if a.status != http.StatusOK || err != nil || mt != "text/xml" || string(a.body) != "<Response></Response>" {
		t.Fatalf("want 200 <Response></Response> as text/xml, got %v", a)
	}
}

// twilioSID is a new Twilio SID: prefix and 32 hex digits.
func twilioSID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// smsInboundForm is an inbound SMS webhook as Twilio posts it, from the
// contact (E.164) to our SMS number.
func smsInboundForm(sid, from, body string) url.Values {
	return url.Values{
		"ToCountry":           {"IN"},
		"ToState":             {""},
		"SmsMessageSid":       {sid},
		"NumMedia":            {"0"},
		"ToCity":              {""},
		"FromZip":             {""},
		"SmsSid":              {sid},
		"FromState":           {""},
		"SmsStatus":           {"received"},
		"FromCity":            {""},
		"Body":                {body},
		"FromCountry":         {"IN"},
		"To":                  {itSMSNumber},
		"MessagingServiceSid": {"MG00000000000000000000000000000001"},
		"ToZip":               {""},
		"NumSegments":         {fmt.Sprint(twilio.Segments(body))},
		"MessageSid":          {sid},
		"AccountSid":          {itSMSAccountSID},
		"From":                {from},
		"ApiVersion":          {twilio.APIVersion},
	}
}

// smsStatusForm is a status callback for a message we sent to contact.
func smsStatusForm(sid, status, contact string) url.Values {
	return url.Values{
		"MessageSid":    {sid},
		"SmsSid":        {sid},
		"MessageStatus": {status},
		"SmsStatus":     {status},
		"To":            {contact},
		"From":          {itSMSNumber},
		"AccountSid":    {itSMSAccountSID},
		"ApiVersion":    {twilio.APIVersion},
	}
}

// smsFirst posts a signed inbound SMS from a contact and returns its frame as
// the connected RM's socket ws receives it.
func (s *stack) smsFirst(ws *wsClient, from, text string) frame {
	s.t.Helper()
	sid := twilioSID("SM")
	s.mustSMS(smsInboundPath, smsInboundForm(sid, from, text))
	f := ws.next("message")
	if f.Message == nil || f.Message.ProviderMessageID != sid || f.ConversationID == 0 || f.Message.Channel != "sms" {
		s.t.Fatalf("unexpected first frame: %s", f)
	}
	return f
}

// smsDetail is what frame leaves out of a message frame: media and payload.
type smsDetail struct {
	Media []struct {
		URL      string `json:"url"`
		MimeType string `json:"mime_type"`
	} `json:"media"`
	Payload map[string]any `json:"payload"`
}

func detailOf(t *testing.T, f frame) smsDetail {
	t.Helper()
	var v struct {
		Message *smsDetail `json:"message"`
	}
	if err := json.Unmarshal([]byte(f.raw), &v); err != nil || v.Message == nil {
		t.Fatalf("not a message frame: %s (%v)", f, err)
	}
	return *v.Message
}

// requirePayload requires the payload to hold every parameter posted, each
// with its value.
func requirePayload(t *testing.T, f frame, params url.Values) {
	t.Helper()
	p := detailOf(t, f).Payload
	if len(p) != len(params) {
		t.Fatalf("payload has %d parameters, %d were posted: %s", len(p), len(params), f)
	}
	for name, values := range params {
		if got, ok := p[name].(string); !ok || len(values) != 1 || got != values[0] {
			t.Fatalf("payload %s = %#v, posted %q (frame %s)", name, p[name], values, f)
		}
	}
}

// waitSMS waits for the sandbox Twilio to accept one message.
func waitSMS(t *testing.T, ch <-chan sandbox.SentSMS) sandbox.SentSMS {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("sandbox Twilio subscription closed")
		}
		return m
	case <-time.After(itGuard):
		t.Fatal("nothing reached the sandbox Twilio")
	}
	return sandbox.SentSMS{}
}

// stored returns the message as stored now: a resend with the same
// client_msg_id changes nothing and answers with the stored row.
func (s *stack) stored(tok string, conv int64, m frameMessage) frameMessage {
	s.t.Helper()
	again := sent(s.t, s.sendText(tok, conv, m.ClientMsgID, m.Text))
	if again.ID != m.ID {
		s.t.Fatalf("resend of %q created message %d, want %d", m.ClientMsgID, again.ID, m.ID)
	}
	return again
}

// markerAfter posts an inbound SMS from contact and requires it to be the
// very next frame: nothing else was published before it.
func (s *stack) markerAfter(ws *wsClient, conv int64, contact, text string) frame {
	s.t.Helper()
	sid := twilioSID("SM")
	s.mustSMS(smsInboundPath, smsInboundForm(sid, contact, text))
	f := ws.read()
	if f.Type != "message" || f.Message == nil || f.Message.ProviderMessageID != sid || f.ConversationID != conv {
		s.t.Fatalf("frame before the marker %q: %s", text, f)
	}
	return f
}

// 1. Only a valid X-Twilio-Signature over the public URL is accepted; a
// rejected post leaves nothing behind.
func TestIntegrationSMSSignature(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tokS := s.login(s.sup)
		logs, ok := store.(persistence.WebhookLogReader)
		if !ok {
			t.Fatalf("%T does not implement WebhookLogReader", store)
		}
		noLogRows := func(when string) {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), itGuard)
			defer cancel()
			for id := int64(1); id <= 10; id++ {
				if l, err := logs.WebhookLogByID(ctx, id); !errors.Is(err, persistence.ErrNotFound) {
					t.Fatalf("%s: webhook log %d: %+v, %v", when, id, l, err)
				}
			}
		}

		const contact = "+919811100101"
		params := smsInboundForm(twilioSID("SM"), contact, "hello over SMS")
		body := params.Encode()
		good := s.smsSign(smsInboundPath, params)
		tampered := url.Values{}
		for k, v := range params {
			tampered[k] = v
		}
		tampered.Set("Body", "HELLO over SMS")
		status := smsStatusForm(twilioSID("SM"), "delivered", contact)

		for _, c := range []struct {
			name, path, body, sig, want string
		}{
			{"missing signature", smsInboundPath, body, "", "missing signature"},
			{"wrong auth token", smsInboundPath, body, twilio.Signature("another-token", s.base+smsInboundPath, params), "invalid signature"},
			{"signed over another path", smsInboundPath, body, s.smsSign(smsStatusPath, params), "invalid signature"},
			{"signed over another host", smsInboundPath, body,
				twilio.Signature(itSMSAuthToken, strings.Replace(s.base, "127.0.0.1", "localhost", 1)+smsInboundPath, params), "invalid signature"},
			{"tampered parameter", smsInboundPath, tampered.Encode(), good, "invalid signature"},
			{"not base64", smsInboundPath, body, strings.Repeat("!", len(good)), "invalid signature"},
			{"garbage without signature", smsInboundPath, "%zz=%%", "", "missing signature"},
			{"status: missing signature", smsStatusPath, status.Encode(), "", "missing signature"},
			{"status: wrong auth token", smsStatusPath, status.Encode(),
				twilio.Signature("another-token", s.base+smsStatusPath, status), "invalid signature"},
		} {
			a := s.postSMSForm(c.path, c.body, c.sig)
			if a.status != http.StatusUnauthorized || a.errorText() != c.want {
				t.Fatalf("%s: %v, want 401 %q", c.name, a, c.want)
			}
		}
		// Signed but unusable: 400, and nothing stored either.
		noFrom := url.Values{"MessageSid": {twilioSID("SM")}, "To": {itSMSNumber}, "Body": {"who am I"}}
		if a := s.postSMS(smsInboundPath, noFrom); a.status != http.StatusBadRequest || a.errorText() == "" {
			t.Fatalf("inbound without From: %v", a)
		}
		if convs := s.conversations(tokS); len(convs) != 0 {
			t.Fatalf("rejected posts created conversations: %+v", convs)
		}
		noLogRows("after rejected posts")

		// Control: the same post signed over http.public_url + path.
		requireTwiML(t, s.postSMSForm(smsInboundPath, body, good))
		convs := s.conversations(tokS)
		if len(convs) != 1 || convs[0].Channel != "sms" || convs[0].Contact.Phone != contact {
			t.Fatalf("conversations after a good post: %+v", convs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), itGuard)
		defer cancel()
		l, err := logs.WebhookLogByID(ctx, 1)
		if err != nil || string(l.Body) != body || l.Provider != "sms" || l.Path != smsInboundPath {
			t.Fatalf("first webhook log row: %+v, %v", l, err)
		}
	})
}

// 2. A signed inbound SMS is answered with empty TwiML once committed, keeps
// every parameter, and a redelivery adds nothing.
func TestIntegrationSMSInbound(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		const contact = "+919811100102"
		sid := twilioSID("SM")
		params := smsInboundForm(sid, contact, "Hi, where is my parcel?")
		params.Set("NumSegments", "1")
		params.Set("AddOnsFutureParameter", "kept as sent")
		body := params.Encode()
		requireTwiML(t, s.postSMSForm(smsInboundPath, body, s.smsSign(smsInboundPath, params)))

		// Answered after the commit: the events endpoint already has it.
		convs := s.conversations(tok)
		if len(convs) != 1 || convs[0].Channel != "sms" || convs[0].Contact.Phone != contact || convs[0].LastSeq != 1 ||
			convs[0].AssignedRMID == nil || *convs[0].AssignedRMID != s.rmA.ID {
			t.Fatalf("conversations: %+v", convs)
		}
		conv := convs[0].ID
		evs := s.events(tok, conv)
		if len(evs) != 1 || evs[0].Message == nil || evs[0].Message.ProviderMessageID != sid {
			t.Fatalf("events right after the 200: %v", evs)
		}

		f := ws.next("message")
		m := f.Message
		if f.ConversationID != conv || f.Seq != 1 || f.Cursor != evs[0].Cursor || m == nil || m.Direction != "in" ||
			m.Channel != "sms" || m.Type != "text" || m.Text != "Hi, where is my parcel?" || m.ProviderMessageID != sid ||
			m.Status != "received" || m.Contact.Phone != contact || m.ID != evs[0].Message.ID {
			t.Fatalf("frame: %s", f)
		}
		requirePayload(t, f, params)
		requirePayload(t, evs[0], params)

		logs, ok := store.(persistence.WebhookLogReader)
		if !ok {
			t.Fatalf("%T does not implement WebhookLogReader", store)
		}
		ctx, cancel := context.WithTimeout(context.Background(), itGuard)
		defer cancel()
		if l, err := logs.WebhookLogByID(ctx, 1); err != nil || string(l.Body) != body || l.Provider != "sms" {
			t.Fatalf("raw webhook: %+v, %v", l, err)
		}

		// Twilio posts the same MessageSid again: acknowledged, nothing new.
		requireTwiML(t, s.postSMSForm(smsInboundPath, body, s.smsSign(smsInboundPath, params)))
		requireTwiML(t, s.postSMS(smsInboundPath, params))
		marker := s.markerAfter(ws, conv, contact, "marker")
		if marker.Seq != 2 {
			t.Fatalf("marker: %s", marker)
		}
		if evs := s.events(tok, conv); len(evs) != 2 || evs[1].Message == nil || evs[1].Message.ID != marker.Message.ID {
			t.Fatalf("events after the redelivery: %v", evs)
		}
	})
}

// 3. A three-segment UCS-2 body (Devanagari, emoji, line breaks) is stored
// and shown byte for byte.
func TestIntegrationSMSUnicodeBody(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		const text = "नमस्ते 🙏 मेरा पार्सल अभी तक नहीं आया।\r\nकृपया जाँच करें 📦🚚 — ऑर्डर #४२, धन्यवाद ❤️ 👩\u200d💻 👍🏽\n" +
			"क्षमा करें, दोबारा लिख रहा हूँ: पार्सल कहाँ है? 🤔"
		if n := twilio.Segments(text); n != 3 || twilio.GSM7(text) {
			t.Fatalf("test text is %d segments (GSM-7 %v), want 3 UCS-2", n, twilio.GSM7(text))
		}
		sid := twilioSID("SM")
		params := smsInboundForm(sid, "+919811100103", text)
		params.Set("NumSegments", "3")
		s.mustSMS(smsInboundPath, params)

		f := ws.next("message")
		if f.Message == nil || f.Message.ProviderMessageID != sid {
			t.Fatalf("frame: %s", f)
		}
		if got := f.Message.Text; got != text {
			t.Fatalf("socket text differs:\n got %q\nwant %q", got, text)
		}
		evs := s.events(tok, f.ConversationID)
		if len(evs) != 1 || evs[0].Message == nil {
			t.Fatalf("events: %v", evs)
		}
		if got := evs[0].Message.Text; got != text {
			t.Fatalf("stored text differs:\n got %q\nwant %q", got, text)
		}
		if p := detailOf(t, evs[0]).Payload; p["Body"] != text || p["NumSegments"] != "3" {
			t.Fatalf("payload: %v", p)
		}
	})
}

// 4. An MMS is stored as type mms with its media in order.
func TestIntegrationSMSMMS(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		sid := twilioSID("MM")
		media := func(n int) string {
			return "https://api.twilio.com/2010-04-01/Accounts/" + itSMSAccountSID + "/Messages/" + sid + "/Media/ME" +
				strings.Repeat(fmt.Sprint(n), 32)
		}
		params := smsInboundForm(sid, "+919811100104", "Photos of the damaged box")
		params.Set("NumMedia", "2")
		params.Set("MediaUrl0", media(0))
		params.Set("MediaContentType0", "image/jpeg")
		params.Set("MediaUrl1", media(1))
		params.Set("MediaContentType1", "application/pdf")
		s.mustSMS(smsInboundPath, params)

		f := ws.next("message")
		evs := s.events(tok, f.ConversationID)
		if len(evs) != 1 {
			t.Fatalf("events: %v", evs)
		}
		for _, g := range []frame{f, evs[0]} {
			if g.Message == nil || g.Message.ProviderMessageID != sid || g.Message.Type != "mms" ||
				g.Message.Channel != "sms" || g.Message.Text != "Photos of the damaged box" {
				t.Fatalf("frame: %s", g)
			}
			d := detailOf(t, g)
			if len(d.Media) != 2 || d.Media[0].URL != media(0) || d.Media[0].MimeType != "image/jpeg" ||
				d.Media[1].URL != media(1) || d.Media[1].MimeType != "application/pdf" {
				t.Fatalf("media: %+v in %s", d.Media, g)
			}
			requirePayload(t, g, params)
		}
	})
}

// 5. An RM's reply reaches Twilio; its status callbacks reach the socket in
// order; a late "sent" after "delivered" changes nothing.
func TestIntegrationSMSReplyAndStatuses(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		const contact = "+919811100105"
		conv := s.smsFirst(ws, contact, "can you call me?").ConversationID

		sub, cancel := s.tw.Subscribe()
		defer cancel()
		m := sent(t, s.sendText(tok, conv, "sms-reply-1", "Calling you in five minutes"))
		if m.Direction != "out" || m.Channel != "sms" || m.Status != "queued" {
			t.Fatalf("REST send: %+v", m)
		}
		out := waitSMS(t, sub)
		if out.To != contact || out.From != itSMSNumber || out.Body != "Calling you in five minutes" ||
			out.StatusCallback != s.base+smsStatusPath || !twilio.LooksLikeSID(out.SID, "SM") || out.NumSegments != 1 {
			t.Fatalf("sandbox Twilio received %+v", out)
		}

		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "delivered") })
		if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "sent,delivered" {
			t.Fatalf("statuses %v, want sent, delivered (frames %v)", got, frames)
		}
		if frames[0].Type != "message" || frames[0].Message == nil || frames[0].Message.ID != m.ID {
			t.Fatalf("first frame after the send: %s", frames[0])
		}
		checkSeqOrder(t, frames)

		// Twilio's late "sent" for the same message, after "delivered".
		s.mustSMS(smsStatusPath, smsStatusForm(out.SID, "sent", contact))
		s.markerAfter(ws, conv, contact, "marker")

		if got := s.stored(tok, conv, m); got.Status != "delivered" || got.ProviderMessageID != out.SID {
			t.Fatalf("stored message: %+v", got)
		}
		var kinds []string
		for _, e := range s.events(tok, conv) {
			kinds = append(kinds, e.Type+":"+e.Status)
		}
		if strings.Join(kinds, " ") != "message: message: status:sent status:delivered message:" {
			t.Fatalf("events: %v", kinds)
		}
		if all := s.tw.Sent(); len(all) != 1 {
			t.Fatalf("sandbox Twilio received %d messages: %+v", len(all), all)
		}
	})
}

// 6. "delivered" before "sent": one delivered event; the message ends delivered.
func TestIntegrationSMSDeliveredBeforeSent(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		// The sandbox's own callbacks are held back: the test posts them.
		s := newStack(t, store, withSMSStatusDelay(time.Hour))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		const contact = "+919811100106"
		conv := s.smsFirst(ws, contact, "status?").ConversationID

		sub, cancel := s.tw.Subscribe()
		defer cancel()
		m := sent(t, s.sendText(tok, conv, "sms-reply-2", "On its way"))
		out := waitSMS(t, sub)

		s.mustSMS(smsStatusPath, smsStatusForm(out.SID, "delivered", contact))
		s.mustSMS(smsStatusPath, smsStatusForm(out.SID, "sent", contact))
		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "delivered") })
		marker := s.markerAfter(ws, conv, contact, "marker")
		frames = append(frames, marker)
		if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "delivered" {
			t.Fatalf("statuses %v, want delivered only (frames %v)", got, frames)
		}
		checkSeqOrder(t, frames)

		if got := s.stored(tok, conv, m); got.Status != "delivered" || got.ProviderMessageID != out.SID {
			t.Fatalf("stored message: %+v", got)
		}
		if got := statusesOf(s.events(tok, conv), m.ID); strings.Join(got, ",") != "delivered" {
			t.Fatalf("status events %v, want delivered only", got)
		}
	})
}

// 7. An undelivered callback is a failed status with Twilio's error code.
func TestIntegrationSMSUndelivered(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withSMSStatusDelay(time.Hour))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		const contact = "+919811100107"
		conv := s.smsFirst(ws, contact, "hello").ConversationID

		sub, cancel := s.tw.Subscribe()
		defer cancel()
		m := sent(t, s.sendText(tok, conv, "sms-reply-3", "Your refund is processed"))
		out := waitSMS(t, sub)

		s.mustSMS(smsStatusPath, smsStatusForm(out.SID, "sent", contact))
		failed := smsStatusForm(out.SID, "undelivered", contact)
		failed.Set("ErrorCode", "30003")
		s.mustSMS(smsStatusPath, failed)

		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "failed") })
		if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "sent,failed" {
			t.Fatalf("statuses %v, want sent, failed (frames %v)", got, frames)
		}
		f := frames[len(frames)-1]
		if f.ConversationID != conv || errorCode(f.Error) != "30003" || !bytes.Contains(f.Error, []byte("Unreachable destination handset")) {
			t.Fatalf("failed status frame: %s", f)
		}
		evs := s.events(tok, conv)
		last := evs[len(evs)-1]
		if last.Type != "status" || last.MessageID != m.ID || last.Status != "failed" || errorCode(last.Error) != "30003" {
			t.Fatalf("last event: %s", last)
		}
		if got := s.stored(tok, conv, m); got.Status != "failed" {
			t.Fatalf("stored message: %+v", got)
		}
	})
}

// 8. STOP opts the contact out of SMS until START; WhatsApp with the same
// number is another conversation of the same contact, not affected.
func TestIntegrationSMSOptOut(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		tokS := s.login(s.sup)
		ws := s.dial(tok)
		ws.online()
		const contact = "+919811100108"
		sub, cancel := s.tw.Subscribe()
		defer cancel()

		stop := s.smsFirst(ws, contact, "STOP")
		conv := stop.ConversationID
		if stop.Message.Text != "STOP" {
			t.Fatalf("STOP frame: %s", stop)
		}
		r := s.sendText(tok, conv, "opted-out-1", "We miss you")
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.errorText(), "STOP") ||
			!strings.Contains(r.errorText(), "opted out") {
			t.Fatalf("send to an opted-out contact: %v", r)
		}
		ws.send(map[string]any{"type": "send", "conversation_id": conv, "client_msg_id": "opted-out-2", "text": "Hello?"})
		if e := ws.next("error"); !strings.Contains(string(e.Error), "opted out") || e.ClientMsgID != "opted-out-2" {
			t.Fatalf("socket send to an opted-out contact: %s", e)
		}
		r = s.postJSON("/api/conversations", tok, map[string]string{
			"channel": "sms", "phone": "+91 98111 00108", "client_msg_id": "opted-out-3", "text": "Starting over",
		})
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.errorText(), "opted out") {
			t.Fatalf("starting an SMS conversation with an opted-out contact: %v", r)
		}

		// The same number on WhatsApp: a second conversation, same contact,
		// and the SMS opt-out does not stop WhatsApp replies.
		s.mustWebhook(inboundBody(inbound{From: strings.TrimPrefix(contact, "+"), Name: "Contact Eight", WAMID: s.wamid(), Text: "hi on WhatsApp"}))
		wa := ws.next("message")
		if wa.Message == nil || wa.Message.Channel != "whatsapp" || wa.ConversationID == conv || wa.Message.Contact.Phone != stop.Message.Contact.Phone {
			t.Fatalf("WhatsApp frame: %s (SMS frame %s)", wa, stop)
		}
		waReply := sent(t, s.sendText(tok, wa.ConversationID, "wa-1", "Replying on WhatsApp"))
		collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, waReply.ID, "read") })

		start := s.markerAfter(ws, conv, contact, "START")
		if start.Message.Text != "START" {
			t.Fatalf("START frame: %s", start)
		}
		m := sent(t, s.sendText(tok, conv, "opted-in-1", "Welcome back"))
		// The first SMS ever to reach the sandbox: the refused ones never did.
		if out := waitSMS(t, sub); out.Body != "Welcome back" || out.To != contact || out.From != itSMSNumber {
			t.Fatalf("sandbox Twilio received %+v", out)
		}
		collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "delivered") })
		if all := s.tw.Sent(); len(all) != 1 {
			t.Fatalf("sandbox Twilio received %d messages: %+v", len(all), all)
		}

		convs := s.conversations(tokS)
		var channels []string
		for _, c := range convs {
			channels = append(channels, c.Channel)
			if c.Contact.Phone != contact {
				t.Fatalf("conversation %d contact %q, want %q", c.ID, c.Contact.Phone, contact)
			}
		}
		slices.Sort(channels)
		if len(convs) != 2 || strings.Join(channels, ",") != "sms,whatsapp" || convs[0].ID == convs[1].ID {
			t.Fatalf("conversations: %+v", convs)
		}
	})
}

// 9. Twilio errors: a 500 is retried and the message delivered once; an
// unsubscribed recipient (21610) fails with Twilio's code and message.
func TestIntegrationSMSProviderErrors(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		const contact = "+919811100109"
		conv := s.smsFirst(ws, contact, "any update?").ConversationID

		sub, cancel := s.tw.Subscribe()
		defer cancel()
		s.tw.FailNext(1, http.StatusInternalServerError, 20500, "Internal Server Error")
		m1 := sent(t, s.sendText(tok, conv, "sms-retry-1", "Sent after a retry"))
		if out := waitSMS(t, sub); out.Body != "Sent after a retry" || out.To != contact {
			t.Fatalf("sandbox Twilio received %+v", out)
		}
		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m1.ID, "delivered") })
		if got := statusesOf(frames, m1.ID); strings.Join(got, ",") != "sent,delivered" {
			t.Fatalf("statuses %v, want sent, delivered (frames %v)", got, frames)
		}
		checkSeqOrder(t, frames)
		if all := s.tw.Sent(); len(all) != 1 {
			t.Fatalf("sandbox Twilio received %d messages: %+v", len(all), all)
		}

		s.tw.FailNext(1, http.StatusBadRequest, 21610, "Attempt to send to unsubscribed recipient")
		m2 := sent(t, s.sendText(tok, conv, "sms-fail-1", "This one is refused"))
		if f := ws.read(); f.Type != "message" || f.Message == nil || f.Message.ID != m2.ID {
			t.Fatalf("outbound frame: %s", f)
		}
		f := ws.read()
		if f.Type != "status" || f.MessageID != m2.ID || f.Status != "failed" || f.ConversationID != conv {
			t.Fatalf("status frame: %s", f)
		}
		var e struct {
			Code    string `json:"code"`
			Title   string `json:"title"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(f.Error, &e); err != nil || e.Code != "21610" ||
			e.Message != "Attempt to send to unsubscribed recipient" || !strings.Contains(e.Title, "START") {
			t.Fatalf("error %s (%v)", f.Error, err)
		}
		if got := s.stored(tok, conv, m2); got.Status != "failed" {
			t.Fatalf("stored message: %+v", got)
		}
		if all := s.tw.Sent(); len(all) != 1 {
			t.Fatalf("sandbox Twilio received %d messages: %+v", len(all), all)
		}
	})
}

// 10. An RM starts an SMS conversation; the contact's answer, sent by the
// sandbox phone as Twilio would, lands in the same conversation.
func TestIntegrationSMSStartConversation(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		const contact = "+919811100110"

		sub, cancel := s.tw.Subscribe()
		defer cancel()
		r := s.postJSON("/api/conversations", tok, map[string]string{
			"channel": "sms", "phone": "+91 98111 00110", "client_msg_id": "start-sms-1", "text": "Your appointment is at 4 pm",
		})
		if r.status != http.StatusCreated {
			t.Fatalf("start: %v", r)
		}
		var started struct {
			Message      frameMessage `json:"message"`
			Conversation struct {
				ID int64 `json:"id"`
			} `json:"conversation"`
		}
		if err := json.Unmarshal(r.body, &started); err != nil || started.Message.ID == 0 || started.Conversation.ID == 0 {
			t.Fatalf("start answer: %v (%v)", r, err)
		}
		conv, m := started.Conversation.ID, started.Message
		if out := waitSMS(t, sub); out.To != contact || out.From != itSMSNumber || out.Body != "Your appointment is at 4 pm" {
			t.Fatalf("sandbox Twilio received %+v", out)
		}
		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "delivered") })
		if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "sent,delivered" {
			t.Fatalf("statuses %v, want sent, delivered (frames %v)", got, frames)
		}

		// The contact answers from the sandbox phone: a signed webhook over
		// the public URL, acknowledged before the sandbox answers.
		r = s.postJSON("/sandbox/sms/inbound", "", map[string]string{"from": contact, "text": "Thanks, see you"})
		var injected struct {
			SID string `json:"sid"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &injected) != nil || !twilio.LooksLikeSID(injected.SID, "SM") {
			t.Fatalf("sandbox inbound: %v", r)
		}
		f := ws.read()
		if f.Type != "message" || f.ConversationID != conv || f.Message == nil || f.Message.ProviderMessageID != injected.SID ||
			f.Message.Text != "Thanks, see you" || f.Message.Direction != "in" || f.Message.Contact.Phone != contact {
			t.Fatalf("answer frame: %s", f)
		}
		convs := s.conversations(tok)
		if len(convs) != 1 || convs[0].ID != conv || convs[0].Channel != "sms" || convs[0].Contact.Phone != contact {
			t.Fatalf("conversations: %+v", convs)
		}
	})
}
