package httpapi_test

// The real stack (store, actors, HTTP server, sandbox WhatsApp API) over
// real HTTP and a real websocket, on SQLite and on MariaDB.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"urva/actors"
	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/whatsapp"
)

// firstMessage posts a message from a new contact and returns its frame as
// the connected RM's socket ws receives it.
func (s *stack) firstMessage(ws *wsClient, from, name, text string) frame {
	s.t.Helper()
	wamid := s.wamid()
	s.mustWebhook(inboundBody(inbound{From: from, Name: name, WAMID: wamid, Text: text}))
	f := ws.next("message")
	if f.Message == nil || f.Message.ProviderMessageID != wamid || f.ConversationID == 0 {
		s.t.Fatalf("unexpected first frame: %s", f)
	}
	return f
}

// collectUntil reads every frame until done says the last one completes the set.
func collectUntil(ws *wsClient, done func(seen []frame) bool) []frame {
	ws.t.Helper()
	var seen []frame
	for {
		f := ws.read()
		if f.Type == "error" {
			ws.t.Fatalf("socket error frame: %s (after %v)", f, seen)
		}
		seen = append(seen, f)
		if done(seen) {
			return seen
		}
	}
}

// statusesOf lists, in socket order, the statuses reported for messageID.
func statusesOf(frames []frame, messageID int64) []string {
	var out []string
	for _, f := range frames {
		if f.Type == "status" && f.MessageID == messageID {
			out = append(out, f.Status)
		}
	}
	return out
}

func hasStatus(frames []frame, messageID int64, status string) bool {
	for _, f := range frames {
		if f.Type == "status" && f.MessageID == messageID && f.Status == status {
			return true
		}
	}
	return false
}

// checkSeqOrder requires the conversation events among frames to carry
// strictly increasing seqs.
func checkSeqOrder(t *testing.T, frames []frame) {
	t.Helper()
	var last int64
	for _, f := range frames {
		if f.Seq == 0 {
			continue // not a conversation event (send_result, pong)
		}
		if f.Seq <= last {
			t.Fatalf("seq %d after %d: %v", f.Seq, last, frames)
		}
		last = f.Seq
	}
}

// 1. A signed inbound text reaches the assigned RM live and through the events endpoint.
func TestIntegrationInboundReachesRM(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		wamid := s.wamid()
		r := s.signedWebhook(inboundBody(inbound{From: "919811100001", Name: "Contact One", WAMID: wamid, Text: "Hello, I need help"}))
		if r.status != http.StatusOK {
			t.Fatalf("webhook: %v", r)
		}
		f := ws.next("message")
		m := f.Message
		if f.Seq != 1 || f.Cursor == "" || f.ConversationID == 0 || m == nil {
			t.Fatalf("frame: %s", f)
		}
		if m.Direction != "in" || m.Channel != "whatsapp" || m.Type != "text" || m.Text != "Hello, I need help" ||
			m.ProviderMessageID != wamid || m.Contact.Phone != "+919811100001" || m.Contact.Name != "Contact One" || m.ID == 0 {
			t.Fatalf("message: %s", f)
		}

		evs := s.events(tok, f.ConversationID)
		if len(evs) != 1 {
			t.Fatalf("events: %v", evs)
		}
		e := evs[0]
		if e.Type != "message" || e.Seq != 1 || e.Cursor != f.Cursor || e.ConversationID != f.ConversationID ||
			e.Message == nil || e.Message.ID != m.ID || e.Message.Text != m.Text || e.Message.ProviderMessageID != wamid {
			t.Fatalf("event %s does not match frame %s", e, f)
		}

		convs := s.conversations(tok)
		if len(convs) != 1 || convs[0].ID != f.ConversationID || convs[0].AssignedRMID == nil || *convs[0].AssignedRMID != s.rmA.ID ||
			convs[0].LastSeq != 1 || convs[0].Contact.Phone != "+919811100001" || convs[0].Channel != "whatsapp" {
			t.Fatalf("conversations: %+v", convs)
		}
	})
}

// 2. Redeliveries are answered 200 and produce one row and one socket event.
func TestIntegrationRedeliveryIsExactlyOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		const from = "919811100002"
		wamid := s.wamid()
		body := inboundBody(inbound{From: from, Name: "Contact Two", WAMID: wamid, Text: "only once"})
		s.mustWebhook(body)
		s.mustWebhook(body)

		var wg sync.WaitGroup
		results := make([]string, 10)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.postWebhook(body, whatsapp.Sign(itAppSecret, body))
				if err != nil {
					results[i] = err.Error()
					return
				}
				results[i] = fmt.Sprint(r.status)
			}()
		}
		wg.Wait()
		for i, res := range results {
			if res != "200" {
				t.Fatalf("concurrent redelivery %d: %s", i, res)
			}
		}

		f := ws.next("message")
		if f.Seq != 1 || f.Message == nil || f.Message.ProviderMessageID != wamid {
			t.Fatalf("first frame: %s", f)
		}
		// The next message frame must be a new message, not a repeat.
		marker := s.wamid()
		s.mustWebhook(inboundBody(inbound{From: from, Name: "Contact Two", WAMID: marker, Text: "marker"}))
		g := ws.next("message")
		if g.Message == nil || g.Message.ProviderMessageID != marker || g.Seq != 2 {
			t.Fatalf("frame after the redeliveries is not the marker: %s", g)
		}

		evs := s.events(tok, f.ConversationID)
		if len(evs) != 2 || evs[0].Message == nil || evs[0].Message.ProviderMessageID != wamid ||
			evs[1].Message == nil || evs[1].Message.ProviderMessageID != marker {
			t.Fatalf("events: %v", evs)
		}
	})
}

// 3. A burst from one new contact: one conversation, seqs without gap, socket in seq order.
func TestIntegrationBurstFromNewContact(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		tokS := s.login(s.sup)
		ws := s.dial(tok)
		ws.online()

		const n = 50
		const from = "919811100003"
		bodies := make([][]byte, n)
		for i := range bodies {
			bodies[i] = inboundBody(inbound{From: from, Name: "Burst Contact", WAMID: s.wamid(), Text: fmt.Sprintf("burst %02d", i)})
		}
		results := make([]string, n)
		var wg sync.WaitGroup
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.postWebhook(bodies[i], whatsapp.Sign(itAppSecret, bodies[i]))
				if err != nil {
					results[i] = err.Error()
					return
				}
				results[i] = r.String()
			}()
		}
		wg.Wait()
		for i, res := range results {
			if !strings.HasPrefix(res, "HTTP 200 ") {
				t.Fatalf("message %d: %s", i, res)
			}
		}

		var convID int64
		texts := map[string]bool{}
		for i := 1; i <= n; i++ {
			f := ws.next("message")
			if convID == 0 {
				convID = f.ConversationID
			}
			if f.Seq != int64(i) || f.ConversationID != convID || f.Message == nil {
				t.Fatalf("socket frame %d: %s", i, f)
			}
			texts[f.Message.Text] = true
		}
		if len(texts) != n {
			t.Fatalf("socket carried %d distinct messages, want %d", len(texts), n)
		}

		evs := s.events(tok, convID)
		if len(evs) != n {
			t.Fatalf("%d events, want %d", len(evs), n)
		}
		for i, e := range evs {
			if e.Seq != int64(i+1) || e.Type != "message" {
				t.Fatalf("event %d: %s", i, e)
			}
		}

		convs := s.conversations(tokS)
		if len(convs) != 1 || convs[0].ID != convID || convs[0].LastSeq != n || convs[0].Contact.Phone != "+"+from {
			t.Fatalf("conversations: %+v", convs)
		}
	})
}

// 4. Webhook authentication and input checks; the verification handshake.
func TestIntegrationWebhookRejections(t *testing.T) {
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

		body := inboundBody(inbound{From: "919811100004", Name: "Contact Four", WAMID: s.wamid(), Text: "hello"})
		good := whatsapp.Sign(itAppSecret, body)
		for name, c := range map[string]struct {
			body []byte
			sig  string
		}{
			"missing signature":   {body, ""},
			"wrong secret":        {body, whatsapp.Sign("another-secret", body)},
			"not hex":             {body, "sha256=" + strings.Repeat("z", 64)},
			"sha1":                {body, "sha1=" + strings.Repeat("0", 40)},
			"tampered body":       {bytes.Replace(body, []byte("hello"), []byte("HELLO"), 1), good},
			"signature truncated": {body, good[:len(good)-2]},
		} {
			r, err := s.postWebhook(c.body, c.sig)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if r.status != http.StatusUnauthorized || r.errorText() == "" {
				t.Fatalf("%s: %v", name, r)
			}
		}
		if convs := s.conversations(tokS); len(convs) != 0 {
			t.Fatalf("rejected webhooks created conversations: %+v", convs)
		}
		noLogRows("after bad signatures")

		for name, b := range map[string][]byte{
			"truncated JSON": []byte(`{"object":"whatsapp_business_account","entry":[`),
			"not an object":  []byte(`[1,2,3]`),
			"other object":   []byte(`{"object":"page","entry":[]}`),
		} {
			r := s.signedWebhook(b)
			if r.status != http.StatusBadRequest || r.errorText() == "" {
				t.Fatalf("%s: %v", name, r)
			}
		}
		big := append(append([]byte(`{"object":"whatsapp_business_account","pad":"`), bytes.Repeat([]byte("a"), itMaxBody)...), `"}`...)
		if r := s.signedWebhook(big); r.status != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversized: %v", r)
		}
		if convs := s.conversations(tokS); len(convs) != 0 {
			t.Fatalf("rejected webhooks created conversations: %+v", convs)
		}
		noLogRows("after malformed and oversized bodies")

		r := s.do("GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token="+itVerifyToken+"&hub.challenge=1158201444", "", nil, nil)
		if r.status != http.StatusOK || string(r.body) != "1158201444" {
			t.Fatalf("verification: %v", r)
		}
		r = s.do("GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444", "", nil, nil)
		if r.status != http.StatusForbidden || bytes.Contains(r.body, []byte("1158201444")) {
			t.Fatalf("verification with a wrong token: %v", r)
		}
		r = s.do("GET", "/webhooks/whatsapp?hub.mode=unsubscribe&hub.verify_token="+itVerifyToken+"&hub.challenge=1158201444", "", nil, nil)
		if r.status != http.StatusForbidden {
			t.Fatalf("verification with a wrong mode: %v", r)
		}

		// Control: the same body, correctly signed, is stored as the first log row.
		s.mustWebhook(body)
		if convs := s.conversations(tokS); len(convs) != 1 {
			t.Fatalf("conversations after a good webhook: %+v", convs)
		}
		ctx, cancel := context.WithTimeout(context.Background(), itGuard)
		defer cancel()
		// The row is stored with the message, its outcome final by the 200.
		l, err := logs.WebhookLogByID(ctx, 1)
		if err != nil || !bytes.Equal(l.Body, body) || l.Provider != "whatsapp" || l.Outcome != "processed" {
			t.Fatalf("first webhook log row: %+v, %v", l, err)
		}
		// A redelivery is logged too, as a duplicate.
		if r := s.signedWebhook(body); r.status != http.StatusOK || !bytes.Contains(r.body, []byte(`"duplicate"`)) {
			t.Fatalf("redelivery: %v", r)
		}
		l, err = logs.WebhookLogByID(ctx, 2)
		if err != nil || !bytes.Equal(l.Body, body) || l.Outcome != "duplicate" {
			t.Fatalf("second webhook log row: %+v, %v", l, err)
		}
	})
}

// 5. The same client_msg_id by REST and by socket sends once; statuses follow in order.
func TestIntegrationReplyOnceByRESTAndSocket(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		in := s.firstMessage(ws, "919811100005", "Contact Five", "can you call me?")
		conv := in.ConversationID

		sub, cancel := s.sb.Subscribe()
		defer cancel()
		m := sent(t, s.sendText(tok, conv, "reply-1", "Calling you in five minutes"))
		if m.Direction != "out" || m.ClientMsgID != "reply-1" || m.Status != "queued" {
			t.Fatalf("REST send: %+v", m)
		}
		ws.send(map[string]any{"type": "send", "conversation_id": conv, "client_msg_id": "reply-1", "text": "Calling you in five minutes"})

		frames := collectUntil(ws, func(seen []frame) bool {
			gotResult := false
			for _, f := range seen {
				gotResult = gotResult || f.Type == "send_result"
			}
			return gotResult && hasStatus(seen, m.ID, "read")
		})
		var messages, results []frame
		for _, f := range frames {
			switch f.Type {
			case "message":
				messages = append(messages, f)
			case "send_result":
				results = append(results, f)
			}
		}
		if len(messages) != 1 || messages[0].Message == nil || messages[0].Message.ID != m.ID || messages[0].Message.Direction != "out" ||
			messages[0].Message.ClientMsgID != "reply-1" || messages[0].ConversationID != conv {
			t.Fatalf("message frames: %v", messages)
		}
		if len(results) != 1 || results[0].ClientMsgID != "reply-1" || results[0].Message == nil || results[0].Message.ID != m.ID {
			t.Fatalf("send results: %v", results)
		}
		if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "sent,delivered,read" {
			t.Fatalf("statuses %v, want sent, delivered, read (frames %v)", got, frames)
		}
		checkSeqOrder(t, frames)

		out := waitSent(t, sub)
		if out.To != "+919811100005" || out.Type != "text" || out.Text != "Calling you in five minutes" {
			t.Fatalf("sandbox received %+v", out)
		}
		if all := s.sb.Sent(); len(all) != 1 {
			t.Fatalf("sandbox received %d messages: %+v", len(all), all)
		}

		// The events endpoint tells the same story.
		evs := s.events(tok, conv)
		var kinds []string
		for _, e := range evs {
			kinds = append(kinds, e.Type+":"+e.Status)
		}
		if strings.Join(kinds, " ") != "message: message: status:sent status:delivered status:read" {
			t.Fatalf("events: %v", kinds)
		}
	})
}

// 6. A retryable provider error is retried; a final one fails with its code.
func TestIntegrationProviderErrors(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, "919811100006", "Contact Six", "status?").ConversationID

		sub, cancel := s.sb.Subscribe()
		defer cancel()
		s.sb.FailNext(1, http.StatusInternalServerError, 131000, "Something went wrong")
		m1 := sent(t, s.sendText(tok, conv, "retry-1", "Sent after a retry"))
		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m1.ID, "read") })
		if got := statusesOf(frames, m1.ID); strings.Join(got, ",") != "sent,delivered,read" {
			t.Fatalf("statuses %v, want sent, delivered, read (frames %v)", got, frames)
		}
		checkSeqOrder(t, frames)
		if out := waitSent(t, sub); out.Text != "Sent after a retry" {
			t.Fatalf("sandbox received %+v", out)
		}
		if all := s.sb.Sent(); len(all) != 1 {
			t.Fatalf("sandbox received %d messages: %+v", len(all), all)
		}

		s.sb.FailNext(1, http.StatusBadRequest, 131047, "Re-engagement message")
		m2 := sent(t, s.sendText(tok, conv, "fail-1", "This one is refused"))
		if f := ws.read(); f.Type != "message" || f.Message == nil || f.Message.ID != m2.ID {
			t.Fatalf("outbound frame: %s", f)
		}
		f := ws.read()
		if f.MessageID != m2.ID || f.Status != "failed" || f.ConversationID != conv {
			t.Fatalf("status frame: %s", f)
		}
		if code := errorCode(f.Error); code != "131047" {
			t.Fatalf("error code %q in %s", code, f)
		}
		if all := s.sb.Sent(); len(all) != 1 {
			t.Fatalf("sandbox received %d messages: %+v", len(all), all)
		}
		evs := s.events(tok, conv)
		last := evs[len(evs)-1]
		if last.Type != "status" || last.MessageID != m2.ID || last.Status != "failed" || errorCode(last.Error) != "131047" {
			t.Fatalf("last event: %s", last)
		}
	})
}

// 7. Free text outside the 24-hour window is refused; a template is sent.
func TestIntegrationWindowClosed(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		s.mustWebhook(inboundBody(inbound{From: "919811100007", Name: "Contact Seven", WAMID: s.wamid(),
			Text: "written long ago", At: time.Now().Add(-25 * time.Hour)}))
		conv := ws.next("message").ConversationID

		sub, cancel := s.sb.Subscribe()
		defer cancel()
		r := s.sendText(tok, conv, "late-1", "Are you still there?")
		if r.status != http.StatusUnprocessableEntity || r.errorText() != actors.ErrWindowClosed.Error() {
			t.Fatalf("text outside the window: %v", r)
		}
		ws.send(map[string]any{"type": "send", "conversation_id": conv, "client_msg_id": "late-2", "text": "Hello?"})
		if e := ws.next("error"); !strings.Contains(string(e.Error), "24-hour window") || e.ClientMsgID != "late-2" {
			t.Fatalf("socket send outside the window: %s", e)
		}

		r = s.postJSON(fmt.Sprintf("/api/conversations/%d/messages", conv), tok, map[string]any{
			"client_msg_id": "tpl-1",
			"template":      map[string]any{"name": "follow_up", "language": "en", "params": []string{"order 42"}},
		})
		m := sent(t, r)
		out := waitSent(t, sub)
		if out.Type != "template" || out.Template == nil || out.Template.Name != "follow_up" || out.Template.Language != "en" ||
			len(out.Template.Params) != 1 || out.Template.Params[0] != "order 42" || out.To != "+919811100007" {
			t.Fatalf("sandbox received %+v", out)
		}
		if all := s.sb.Sent(); len(all) != 1 {
			t.Fatalf("sandbox received %d messages: %+v", len(all), all)
		}
		frames := collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "read") })
		checkSeqOrder(t, frames)
		evs := s.events(tok, conv)
		if len(evs) != 5 { // inbound, template, sent, delivered, read: the refused texts left nothing
			t.Fatalf("events: %v", evs)
		}
	})
}

// 8. A reconnecting socket resumes from its cursor: the missed events in
// order, then live ones, nothing twice.
func TestIntegrationSocketResume(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		const from = "919811100008"
		first := s.firstMessage(ws, from, "Contact Eight", "first")
		ws.close()

		for i := 1; i <= 20; i++ {
			s.mustWebhook(inboundBody(inbound{From: from, Name: "Contact Eight", WAMID: s.wamid(), Text: fmt.Sprintf("missed %02d", i)}))
		}

		ws2 := s.dial(tok)
		ws2.send(map[string]string{"type": "resume", "cursor": first.Cursor})
		for i := 1; i <= 20; i++ {
			f := ws2.read()
			if f.Type != "message" || f.Seq != int64(1+i) || f.Message == nil || f.Message.Text != fmt.Sprintf("missed %02d", i) ||
				f.ConversationID != first.ConversationID {
				t.Fatalf("replayed frame %d: %s", i, f)
			}
		}
		s.mustWebhook(inboundBody(inbound{From: from, Name: "Contact Eight", WAMID: s.wamid(), Text: "live"}))
		if f := ws2.read(); f.Type != "message" || f.Seq != 22 || f.Message == nil || f.Message.Text != "live" {
			t.Fatalf("live frame: %s", f)
		}
		// The webhook's 200 came after the live event was handed to the
		// session, so a pong now proves nothing else was queued before it.
		ws2.send(map[string]string{"type": "ping"})
		if f := ws2.read(); f.Type != "pong" {
			t.Fatalf("frame after the live one: %s", f)
		}

		// The same resume at connect time: GET /ws?cursor=... with no frame.
		ws2.close()
		s.mustWebhook(inboundBody(inbound{From: from, Name: "Contact Eight", WAMID: s.wamid(), Text: "while away"}))
		ws3 := s.dialQuery(tok, "&cursor="+url.QueryEscape(first.Cursor))
		for want := int64(2); want <= 23; want++ {
			if f := ws3.read(); f.Type != "message" || f.Seq != want {
				t.Fatalf("resume by query: want seq %d, got %s", want, f)
			}
		}
	})
}

// 9. RMs see only their own conversations; supervisors see all; tokens are checked.
func TestIntegrationAccessControl(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tokA, tokB, tokS := s.login(s.rmA), s.login(s.rmB), s.login(s.sup)
		wsB := s.dial(tokB)
		wsB.online()
		f := s.firstMessage(wsB, "919811100009", "Contact Nine", "for rm b")
		conv := f.ConversationID
		eventsPath := fmt.Sprintf("/api/conversations/%d/events", conv)

		if r := s.do("GET", eventsPath, tokA, nil, nil); r.status != http.StatusForbidden {
			t.Fatalf("rm a reads rm b's events: %v", r)
		}
		if r := s.sendText(tokA, conv, "a-1", "not my conversation"); r.status != http.StatusForbidden {
			t.Fatalf("rm a writes to rm b's conversation: %v", r)
		}
		if convs := s.conversations(tokA); len(convs) != 0 {
			t.Fatalf("rm a lists %+v", convs)
		}
		wsA := s.dial(tokA)
		wsA.send(map[string]any{"type": "send", "conversation_id": conv, "client_msg_id": "a-2", "text": "by socket"})
		if e := wsA.next("error"); !strings.Contains(string(e.Error), "forbidden") || e.ClientMsgID != "a-2" {
			t.Fatalf("rm a's socket send: %s", e)
		}

		if evs := s.events(tokS, conv); len(evs) != 1 || evs[0].Message == nil || evs[0].Message.ID != f.Message.ID {
			t.Fatalf("supervisor events: %v", evs)
		}
		convs := s.conversations(tokS)
		if len(convs) != 1 || convs[0].AssignedRMID == nil || *convs[0].AssignedRMID != s.rmB.ID {
			t.Fatalf("supervisor conversations: %+v", convs)
		}
		if evs := s.events(tokB, conv); len(evs) != 1 {
			t.Fatalf("rm b events (rm a's attempts must have left nothing): %v", evs)
		}

		for _, bad := range []string{"", "garbage", s.tokens.Issue(s.rmA.ID, persistence.RoleRM, time.Now().Add(-2*time.Hour))} {
			if r := s.do("GET", "/api/conversations", bad, nil, nil); r.status != http.StatusUnauthorized {
				t.Fatalf("token %q on REST: %v", bad, r)
			}
			if r := s.do("GET", eventsPath, bad, nil, nil); r.status != http.StatusUnauthorized {
				t.Fatalf("token %q on events: %v", bad, r)
			}
			c, resp, err := s.dialSocket(bad)
			if err == nil {
				c.Close()
				t.Fatalf("token %q: socket upgraded", bad)
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("token %q on /ws: %v %v", bad, err, resp)
			}
		}
	})
}

// 10. A send still queued when the server stops is sent once after the restart.
func TestIntegrationQueuedSendSurvivesRestart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		attempts := make(chan error, 16)
		s := newStack(t, store,
			withAPIBase("http://"+closedAddr(t)+"/v23.0"),
			withClientWrap(func(_ *stack, c actors.ProviderClient) actors.ProviderClient {
				return &observedClient{next: c, attempts: attempts}
			}),
			withTuning(func(tu *actors.Tuning) {
				// After the first failure the send waits in backoff until the stop.
				tu.ProviderBackoff = time.Hour
				tu.ProviderMaxDelay = time.Hour
			}))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, "919811100010", "Contact Ten", "please confirm").ConversationID

		m := sent(t, s.sendText(tok, conv, "durable-1", "Confirmed"))
		out := ws.next("message")
		if out.Message == nil || out.Message.ID != m.ID {
			t.Fatalf("outbound frame: %s", out)
		}
		select {
		case err := <-attempts:
			if err == nil {
				t.Fatal("the first run reached a provider")
			}
		case <-time.After(itGuard):
			t.Fatal("no send attempt in the first run")
		}
		firstSandbox := s.sb

		s.restart()
		if n := len(firstSandbox.Sent()); n != 0 {
			t.Fatalf("the first run's sandbox received %d messages", n)
		}

		ws2 := s.dial(tok)
		ws2.send(map[string]string{"type": "resume", "cursor": out.Cursor})
		frames := collectUntil(ws2, func(seen []frame) bool { return hasStatus(seen, m.ID, "read") })
		if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "sent,delivered,read" {
			t.Fatalf("statuses %v, want sent, delivered, read (frames %v)", got, frames)
		}
		checkSeqOrder(t, frames)
		all := s.sb.Sent()
		if len(all) != 1 || all[0].Text != "Confirmed" || all[0].To != "+919811100010" {
			t.Fatalf("sandbox received %+v", all)
		}
		select {
		case err := <-attempts:
			t.Fatalf("a send attempt of the first run after its stop: %v", err)
		default:
		}
	})
}

// earlyStatusChecked finishes the early-status scenarios: m's send reached
// the provider, whose "sent" webhook (for wamid) was acknowledged before the
// provider's answer reached the server. It waits until the provider id is
// stored, then sends a barrier message: the "sent" event must come before it.
func (s *stack) earlyStatusChecked(ws *wsClient, tok string, conv int64, m frameMessage, wamid string) {
	s.t.Helper()
	// Resending with the same client_msg_id changes nothing and returns the
	// stored row: it shows when the provider's answer is committed. Each try
	// is a full round trip through the conversation actor, not a sleep.
	deadline := time.Now().Add(itGuard)
	for {
		again := sent(s.t, s.sendText(tok, conv, m.ClientMsgID, m.Text))
		if again.ID != m.ID {
			s.t.Fatalf("resend created message %d", again.ID)
		}
		if again.ProviderMessageID == wamid {
			break
		}
		if again.ProviderMessageID != "" || time.Now().After(deadline) {
			s.t.Fatalf("provider id %q, want %q", again.ProviderMessageID, wamid)
		}
	}
	// That resend was answered after the conversation actor learnt of the
	// commit, so the barrier is written after anything the commit queued.
	barrier := sent(s.t, s.postJSON(fmt.Sprintf("/api/conversations/%d/messages", conv), tok, map[string]any{
		"client_msg_id": "barrier-" + m.ClientMsgID,
		"template":      map[string]any{"name": "barrier", "language": "en"},
	}))
	frames := collectUntil(ws, func(seen []frame) bool {
		last := seen[len(seen)-1]
		return last.Type == "message" && last.Message != nil && last.Message.ID == barrier.ID
	})
	if got := statusesOf(frames, m.ID); strings.Join(got, ",") != "sent" {
		s.t.Fatalf("statuses of message %d before the barrier: %v, want sent (frames %v)", m.ID, got, frames)
	}
	checkSeqOrder(s.t, frames)
}

// 11. Meta's "sent" webhook may overtake its answer to the send: the status
// is kept until the provider id is stored, then applied.
func TestIntegrationStatusBeforeProviderAnswer(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		early := make(chan earlyStatus, 4)
		// The sandbox's own status webhooks are held back.
		s := newStack(t, store, withStatusDelay(time.Hour), withClientWrap(earlyStatusWrap(early)))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, "919811100011", "Contact Eleven", "any news?").ConversationID

		m := sent(t, s.sendText(tok, conv, "early-1", "Yes, shipped today"))
		if f := ws.next("message"); f.Message == nil || f.Message.ID != m.ID {
			t.Fatalf("outbound frame: %s", f)
		}
		s.earlyStatusChecked(ws, tok, conv, m, waitEarly(t, early))
	})
}

// 12. The same for a send re-driven after a restart.
func TestIntegrationStatusBeforeProviderAnswerAfterRestart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		attempts := make(chan error, 16)
		s := newStack(t, store,
			withAPIBase("http://"+closedAddr(t)+"/v23.0"),
			withClientWrap(func(_ *stack, c actors.ProviderClient) actors.ProviderClient {
				return &observedClient{next: c, attempts: attempts}
			}),
			withTuning(func(tu *actors.Tuning) {
				tu.ProviderBackoff = time.Hour
				tu.ProviderMaxDelay = time.Hour
			}))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, "919811100012", "Contact Twelve", "any news?").ConversationID
		m := sent(t, s.sendText(tok, conv, "early-2", "Yes, shipped today"))
		out := ws.next("message")
		select {
		case err := <-attempts:
			if err == nil {
				t.Fatal("the first run reached a provider")
			}
		case <-time.After(itGuard):
			t.Fatal("no send attempt in the first run")
		}

		early := make(chan earlyStatus, 4)
		s.restart(withStatusDelay(time.Hour), withClientWrap(earlyStatusWrap(early)))
		ws2 := s.dial(tok)
		ws2.send(map[string]string{"type": "resume", "cursor": out.Cursor})
		s.earlyStatusChecked(ws2, tok, conv, m, waitEarly(t, early))
	})
}

// A message type WhatsApp has not documented yet is stored as such, with the
// provider's object kept whole, never dropped.
func TestIntegrationUnknownMessageTypeIsStored(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
			"messaging_product":"whatsapp","metadata":{"display_phone_number":"` + itBusinessDigits + `","phone_number_id":"` + itPhoneNumberID + `"},
			"contacts":[{"profile":{"name":"Future"},"wa_id":"919811100099"}],
			"messages":[{"from":"919811100099","id":"wamid.FUTURE1","timestamp":"1767225600","type":"hologram","hologram":{"id":"h1","depth":3}}]}}]}]}`)
		if r := s.signedWebhook(body); r.status != http.StatusOK {
			t.Fatalf("webhook: %v", r)
		}
		f := ws.next("message")
		if f.Message == nil || f.Message.Type != "hologram" {
			t.Fatalf("frame %s", f)
		}
		if !strings.Contains(f.raw, `"depth":3`) {
			t.Fatalf("the provider's object is not kept: %s", f)
		}
		if evs := s.events(tok, f.ConversationID); len(evs) != 1 || evs[0].Message.Type != "hologram" {
			t.Fatalf("events %v", evs)
		}
	})
}
