package httpapi_test

// CRM sync end to end: conversation writes -> outbox -> CRM sync actor ->
// signed webhook -> a CRM receiver in the test, and the operator endpoints,
// on SQLite and on MariaDB (docs/crm.md is the contract checked here).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"urva/persistence"
	"urva/transport/crm"
	"urva/transport/whatsapp"
)

// ---- the CRM receiver

// crmEvent is one webhook delivery as the receiver read it.
type crmEvent struct {
	ID         string
	Type       string
	OccurredAt time.Time
	Data       crmData
	DataRaw    json.RawMessage
	Body       []byte
}

// crmData is the union of the documented data objects.
type crmData struct {
	Conversation struct {
		ID             int64  `json:"id"`
		Channel        string `json:"channel"`
		BusinessNumber string `json:"business_number"`
		AssignedRMID   int64  `json:"assigned_rm_id"`
	} `json:"conversation"`
	Contact struct {
		Phone string `json:"phone"`
		Name  string `json:"name"`
	} `json:"contact"`
	Message struct {
		ID                int64           `json:"id"`
		Seq               int64           `json:"seq"`
		Direction         string          `json:"direction"`
		Channel           string          `json:"channel"`
		Type              string          `json:"type"`
		Text              string          `json:"text"`
		Media             json.RawMessage `json:"media"`
		Template          json.RawMessage `json:"template"`
		ProviderMessageID string          `json:"provider_message_id"`
		ClientMsgID       string          `json:"client_msg_id"`
		Status            string          `json:"status"`
		RMID              int64           `json:"rm_id"`
		ProviderTimestamp json.RawMessage `json:"provider_timestamp"`
		CreatedAt         json.RawMessage `json:"created_at"`
	} `json:"message"`
	Status       string          `json:"status"`
	Error        json.RawMessage `json:"error"`
	RMID         int64           `json:"rm_id"`
	PreviousRMID int64           `json:"previous_rm_id"`
}

func (e crmEvent) String() string { return string(e.Body) }

// eventIDPattern is the documented shape of an event id.
var eventIDPattern = regexp.MustCompile(`^evt_[A-Z2-7]{26}$`)

// documentedKeys lists, per event type and object, the keys docs/crm.md says
// are always present.
var documentedKeys = map[string]map[string][]string{
	persistence.OutboxMessageReceived: {
		"":             {"conversation", "contact", "message"},
		"conversation": {"id", "channel", "business_number", "assigned_rm_id"},
		"contact":      {"phone", "name"},
		"message": {"id", "seq", "direction", "channel", "type", "text", "media", "template", "provider_message_id",
			"client_msg_id", "status", "rm_id", "provider_timestamp", "created_at"},
	},
	persistence.OutboxMessageStatus: {
		"":             {"conversation", "contact", "message", "status", "error"},
		"conversation": {"id", "channel", "business_number", "assigned_rm_id"},
		"contact":      {"phone", "name"},
		"message":      {"id", "provider_message_id", "client_msg_id", "direction"},
	},
	persistence.OutboxConversationAssigned: {
		"":             {"conversation", "contact", "rm_id", "previous_rm_id"},
		"conversation": {"id", "channel", "business_number", "assigned_rm_id"},
		"contact":      {"phone", "name"},
	},
}

func init() {
	documentedKeys[persistence.OutboxMessageSent] = documentedKeys[persistence.OutboxMessageReceived]
}

// checkDocumentedKeys reports the documented keys missing from data.
func checkDocumentedKeys(typ string, data []byte) error {
	spec, ok := documentedKeys[typ]
	if !ok {
		return fmt.Errorf("unexpected event type %q", typ)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return fmt.Errorf("data is not an object: %v", err)
	}
	var missing []string
	for obj, keys := range spec {
		m := top
		if obj != "" {
			m = nil
			if err := json.Unmarshal(top[obj], &m); err != nil || m == nil {
				missing = append(missing, obj+" (not an object)")
				continue
			}
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				missing = append(missing, strings.TrimPrefix(obj+"."+k, "."))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s data misses %v", typ, missing)
	}
	return nil
}

// crmReceiver is a CRM in the test process: a real HTTP server that checks
// every delivery as docs/crm.md tells a CRM to (signature, timestamp, event
// id header, envelope, documented keys), answers what answer says and
// records what it accepted.
type crmReceiver struct {
	t      *testing.T
	addr   string // host:port
	url    string // the webhook URL
	srv    *http.Server
	served chan error
	once   sync.Once

	watch                          // guards the fields below
	answer   func(ev crmEvent) int // the status of a well-formed delivery; nil: 200
	accepted []crmEvent            // each accepted event id once, in arrival order
	ids      map[string]int        // accepted deliveries per event id
	dups     int                   // deliveries of an event id already accepted
	rejected []crmEvent            // deliveries answered with a failure, in arrival order
	bodies   map[string][]byte     // the body of each event id seen
	problems []string              // deliveries that broke the contract
}

// newCRMReceiver starts a receiver on addr ("127.0.0.1:0" for a new port);
// it stops when the test ends.
func newCRMReceiver(t *testing.T, addr string, answer func(crmEvent) int) *crmReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("crm receiver: listen on %s: %v", addr, err)
	}
	return newCRMReceiverOn(t, ln, answer)
}

// listenReusable listens on a free loopback port below the kernel's
// ephemeral range, for a receiver that comes back on the same address: no
// outgoing connection can take such a port meanwhile (nor can a connection
// attempt to it end up connected to itself), so it can be listened on again
// once closed.
func listenReusable(t *testing.T) net.Listener {
	t.Helper()
	const lowest = 10000
	ephemeral := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				ephemeral = n
			}
		}
	}
	if ephemeral > lowest+100 {
		for range 100 {
			port := lowest + rand.IntN(ephemeral-lowest)
			if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				return ln
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("crm receiver: %v", err)
	}
	return ln
}

// newCRMReceiverOn starts a receiver on ln; it stops when the test ends.
func newCRMReceiverOn(t *testing.T, ln net.Listener, answer func(crmEvent) int) *crmReceiver {
	t.Helper()
	r := &crmReceiver{
		t:      t,
		addr:   ln.Addr().String(),
		served: make(chan error, 1),
		watch:  newWatch(),
		answer: answer,
		ids:    map[string]int{},
		bodies: map[string][]byte{},
	}
	r.url = "http://" + r.addr + "/crm/webhook"
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: itGuard}
	go func() { r.served <- r.srv.Serve(ln) }()
	t.Cleanup(func() {
		r.close()
		r.read(func() {
			for _, p := range r.problems {
				t.Errorf("crm receiver %s: %s", r.addr, p)
			}
		})
	})
	return r
}

// close shuts the receiver down: from then on connections to its address
// are refused. Deliveries in progress finish first.
func (r *crmReceiver) close() {
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), itGuard)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			r.t.Errorf("crm receiver shutdown: %v", err)
		}
		if err := <-r.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.t.Errorf("crm receiver: %v", err)
		}
	})
}

// setAnswer replaces the answer function (nil: 200 to everything).
func (r *crmReceiver) setAnswer(f func(crmEvent) int) { r.update(func() { r.answer = f }) }

func (r *crmReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	ev, problem := parseCRMDelivery(req, body)
	if problem != "" {
		r.update(func() { r.problems = append(r.problems, problem) })
		http.Error(w, problem, http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	r.update(func() {
		if prev, ok := r.bodies[ev.ID]; ok && !bytes.Equal(prev, body) {
			r.problems = append(r.problems, fmt.Sprintf("event %s redelivered with another body:\n%s\n%s", ev.ID, prev, body))
		}
		r.bodies[ev.ID] = body
		if r.answer != nil {
			status = r.answer(ev)
		}
		if status < 200 || status > 299 {
			r.rejected = append(r.rejected, ev)
			return
		}
		// Recorded before the answer leaves: once the server knows the
		// event was accepted, the receiver has it.
		r.ids[ev.ID]++
		if r.ids[ev.ID] > 1 {
			r.dups++
			return
		}
		r.accepted = append(r.accepted, ev)
	})
	w.WriteHeader(status)
}

// parseCRMDelivery checks one delivery against the contract; a non-empty
// problem says what is wrong.
func parseCRMDelivery(req *http.Request, body []byte) (ev crmEvent, problem string) {
	if req.Method != http.MethodPost || req.URL.Path != "/crm/webhook" {
		return ev, fmt.Sprintf("request %s %s", req.Method, req.URL.Path)
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		return ev, "Content-Type " + ct
	}
	if ua := req.Header.Get("User-Agent"); ua != "urva-crm/1" {
		return ev, "User-Agent " + ua
	}
	ts := req.Header.Get(crm.HeaderTimestamp)
	if ts == "" {
		return ev, "no " + crm.HeaderTimestamp
	}
	if err := crm.Verify(itCRMSecret, ts, body, req.Header.Get(crm.HeaderSignature), time.Now(), 0); err != nil {
		return ev, fmt.Sprintf("signature: %v (timestamp %q, signature %q)", err, ts, req.Header.Get(crm.HeaderSignature))
	}
	var env struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		OccurredAt string          `json:"occurred_at"`
		Data       json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return ev, fmt.Sprintf("body %s: %v", body, err)
	}
	if hid := req.Header.Get(crm.HeaderEventID); hid != env.ID || !eventIDPattern.MatchString(env.ID) {
		return ev, fmt.Sprintf("%s %q, body id %q: want the same evt_ and 26 base32 characters", crm.HeaderEventID, hid, env.ID)
	}
	at, err := time.Parse(time.RFC3339Nano, env.OccurredAt)
	if err != nil || !strings.HasSuffix(env.OccurredAt, "Z") {
		return ev, fmt.Sprintf("occurred_at %q is not RFC 3339 UTC", env.OccurredAt)
	}
	if err := checkDocumentedKeys(env.Type, env.Data); err != nil {
		return ev, fmt.Sprintf("%v: %s", err, body)
	}
	ev = crmEvent{ID: env.ID, Type: env.Type, OccurredAt: at, DataRaw: env.Data, Body: body}
	if err := json.Unmarshal(env.Data, &ev.Data); err != nil {
		return ev, fmt.Sprintf("data %s: %v", env.Data, err)
	}
	return ev, ""
}

// waitFor waits until cond (called under the receiver's lock) holds; a
// delivery that broke the contract fails the test at once.
func (r *crmReceiver) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	var problems []string
	r.wait(t, what, func() bool {
		problems = r.problems
		return len(problems) > 0 || cond()
	})
	if len(problems) > 0 {
		t.Fatalf("while waiting for %s, the CRM receiver got deliveries that break the contract:\n%s",
			what, strings.Join(problems, "\n"))
	}
}

// acceptedEvents returns a copy of the accepted events.
func (r *crmReceiver) acceptedEvents() []crmEvent {
	var out []crmEvent
	r.read(func() { out = append(out, r.accepted...) })
	return out
}

// rejectedEvents returns a copy of the rejected deliveries.
func (r *crmReceiver) rejectedEvents() []crmEvent {
	var out []crmEvent
	r.read(func() { out = append(out, r.rejected...) })
	return out
}

func (r *crmReceiver) duplicates() int {
	var n int
	r.read(func() { n = r.dups })
	return n
}

// countWhere counts the events of evs that match.
func countWhere(evs []crmEvent, match func(crmEvent) bool) int {
	n := 0
	for _, e := range evs {
		if match(e) {
			n++
		}
	}
	return n
}

// byWAMID matches the events about the message with provider id wamid.
func byWAMID(wamid string) func(crmEvent) bool {
	return func(e crmEvent) bool { return e.Data.Message.ProviderMessageID == wamid }
}

// ---- operator endpoints

type crmBacklog struct {
	Pending             int64      `json:"pending"`
	Dead                int64      `json:"dead"`
	ConversationsBehind int64      `json:"conversations_behind"`
	OldestPendingAt     *time.Time `json:"oldest_pending_at"`
	OldestPendingAge    float64    `json:"oldest_pending_age_seconds"`
}

type crmDeadLetter struct {
	ID             int64           `json:"id"`
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	OccurredAt     time.Time       `json:"occurred_at"`
	Attempts       int             `json:"attempts"`
	LastError      string          `json:"last_error"`
	ExpiresAt      time.Time       `json:"expires_at"`
	Data           json.RawMessage `json:"data"`
}

// adminJSON calls an operator endpoint with the admin token, requires want
// and decodes the answer into out.
func (s *stack) adminJSON(method, path string, want int, out any) {
	s.t.Helper()
	r := s.do(method, path, itAdminToken, nil, nil)
	if r.status != want {
		s.t.Fatalf("%s %s: %v, want HTTP %d", method, path, r, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, r.body)
		}
	}
}

func (s *stack) crmBacklog() crmBacklog {
	s.t.Helper()
	var b crmBacklog
	s.adminJSON("GET", "/admin/crm/backlog", http.StatusOK, &b)
	return b
}

// waitBacklog polls GET /admin/crm/backlog until cond holds (bounded by
// itGuard): the outbox records a delivery just after the CRM answered it.
func (s *stack) waitBacklog(what string, cond func(crmBacklog) bool) crmBacklog {
	s.t.Helper()
	deadline := time.Now().Add(itGuard)
	for {
		b := s.crmBacklog()
		if cond(b) {
			return b
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("backlog never reached %s: %+v", what, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *stack) deadLetters() []crmDeadLetter {
	s.t.Helper()
	var out struct {
		DeadLetters []crmDeadLetter `json:"dead_letters"`
	}
	s.adminJSON("GET", "/admin/crm/dead-letters", http.StatusOK, &out)
	return out.DeadLetters
}

func (s *stack) replay(path string) int64 {
	s.t.Helper()
	var out struct {
		Replayed *int64 `json:"replayed"`
	}
	s.adminJSON("POST", path, http.StatusOK, &out)
	if out.Replayed == nil {
		s.t.Fatalf("POST %s: no replayed count", path)
	}
	return *out.Replayed
}

// postInbound posts one signed inbound text and returns its wamid; safe from
// any goroutine.
func (s *stack) postInbound(from, name, text string) (string, error) {
	wamid := s.wamid()
	body := inboundBody(inbound{From: from, Name: name, WAMID: wamid, Text: text})
	r, err := s.postWebhook(body, whatsapp.Sign(itAppSecret, body))
	if err == nil && r.status != http.StatusOK {
		err = fmt.Errorf("webhook from %s: %v", from, r)
	}
	return wamid, err
}

// mustInbound is postInbound on the test goroutine.
func (s *stack) mustInbound(from, name, text string) string {
	s.t.Helper()
	wamid, err := s.postInbound(from, name, text)
	if err != nil {
		s.t.Fatal(err)
	}
	return wamid
}

// ---- tests

// 1. An inbound message, an RM's reply and its statuses reach the CRM as
// exactly the documented events, each once, signed.
func TestCRMConversationEvents(t *testing.T) {
	forEachCRM(t, time.Hour, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		rcv := newCRMReceiver(t, "127.0.0.1:0", nil)
		s := newStack(t, store, withCRM(rcv.url, time.Hour, wake))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		inWAMID := s.wamid()
		inBody := inboundBody(inbound{From: "919811100001", Name: "Meera Iyer", WAMID: inWAMID, Text: "Is my policy renewed?"})
		s.mustWebhook(inBody)
		in := ws.next("message")
		if in.Message == nil || in.Message.ProviderMessageID != inWAMID {
			t.Fatalf("first frame: %s", in)
		}
		conv := in.ConversationID

		sub, cancel := s.sb.Subscribe()
		defer cancel()
		m := sent(t, s.sendText(tok, conv, "c-7f3a", "Yes, renewed today."))
		outWAMID := waitSent(t, sub).WAMID
		collectUntil(ws, func(seen []frame) bool { return hasStatus(seen, m.ID, "read") })

		rcv.waitFor(t, "six events", func() bool { return len(rcv.accepted) >= 6 })
		// Redelivered provider webhooks (the inbound message, statuses
		// already applied) change nothing and write no event. Each is
		// answered once committed, so an event they wrote would be pending
		// or delivered by the time the backlog is empty.
		s.mustWebhook(inBody)
		s.mustWebhook(statusBody(outWAMID, "delivered", "919811100001", time.Now()))
		s.mustWebhook(statusBody(outWAMID, "read", "919811100001", time.Now()))
		s.waitBacklog("pending 0", func(b crmBacklog) bool { return b.Pending == 0 })
		if b := s.crmBacklog(); b.Pending != 0 || b.Dead != 0 || b.ConversationsBehind != 0 || b.OldestPendingAt != nil {
			t.Fatalf("backlog after delivery: %+v", b)
		}
		evs := rcv.acceptedEvents()
		if len(evs) != 6 || rcv.duplicates() != 0 || len(rcv.rejectedEvents()) != 0 {
			t.Fatalf("CRM received %d events (%d duplicates, %d rejected), want 6 once each: %v",
				len(evs), rcv.duplicates(), len(rcv.rejectedEvents()), evs)
		}

		pos := map[string]int{} // "type" or "message.status:<status>" -> arrival index
		for i, e := range evs {
			k := e.Type
			if e.Type == persistence.OutboxMessageStatus {
				k += ":" + e.Data.Status
			}
			if _, dup := pos[k]; dup {
				t.Fatalf("two %s events: %v", k, evs)
			}
			pos[k] = i
			c := e.Data.Conversation
			if c.ID != conv || c.Channel != "whatsapp" || c.BusinessNumber != "+"+itBusinessDigits || c.AssignedRMID != s.rmA.ID ||
				e.Data.Contact.Phone != "+919811100001" || e.Data.Contact.Name != "Meera Iyer" {
				t.Errorf("%s: conversation or contact: %s", k, e)
			}
		}
		for _, k := range []string{"conversation.assigned", "message.received", "message.sent",
			"message.status:sent", "message.status:delivered", "message.status:read"} {
			if _, ok := pos[k]; !ok {
				t.Fatalf("no %s event among %v", k, evs)
			}
		}
		// In order within the conversation: the assignment and the inbound
		// message before the reply; the statuses as they moved.
		if !(pos["conversation.assigned"] < pos["message.received"] && pos["message.received"] < pos["message.sent"] &&
			pos["message.received"] < pos["message.status:sent"] &&
			pos["message.status:sent"] < pos["message.status:delivered"] && pos["message.status:delivered"] < pos["message.status:read"]) {
			t.Errorf("events out of order: %v", evs)
		}

		a := evs[pos["conversation.assigned"]].Data
		if a.RMID != s.rmA.ID || a.PreviousRMID != 0 {
			t.Errorf("conversation.assigned: rm_id %d previous_rm_id %d, want %d and 0", a.RMID, a.PreviousRMID, s.rmA.ID)
		}

		rx := evs[pos["message.received"]]
		rm := rx.Data.Message
		if rm.ID != in.Message.ID || rm.Seq != in.Seq || rm.Direction != "in" || rm.Channel != "whatsapp" || rm.Type != "text" ||
			rm.Text != "Is my policy renewed?" || rm.ProviderMessageID != inWAMID || rm.ClientMsgID != "" || rm.Status != "received" ||
			rm.RMID != 0 || string(rm.Media) != "[]" || string(rm.Template) != "null" ||
			string(rm.ProviderTimestamp) == "null" || string(rm.CreatedAt) == "null" {
			t.Errorf("message.received: %s", rx)
		}

		tx := evs[pos["message.sent"]]
		sm := tx.Data.Message
		if sm.ID != m.ID || sm.Seq <= rm.Seq || sm.Direction != "out" || sm.Type != "text" || sm.Text != "Yes, renewed today." ||
			sm.ProviderMessageID != outWAMID || sm.ClientMsgID != "c-7f3a" || sm.RMID != s.rmA.ID ||
			string(sm.ProviderTimestamp) != "null" || string(sm.Media) != "[]" || string(sm.Template) != "null" {
			t.Errorf("message.sent: %s", tx)
		}
		switch sm.Status {
		case "accepted", "sent", "delivered", "read":
		default:
			t.Errorf("message.sent status %q", sm.Status)
		}

		for _, st := range []string{"sent", "delivered", "read"} {
			e := evs[pos["message.status:"+st]]
			ref := e.Data.Message
			if ref.ID != m.ID || ref.ProviderMessageID != outWAMID || ref.ClientMsgID != "c-7f3a" || ref.Direction != "out" ||
				e.Data.Status != st || string(e.Data.Error) != "null" {
				t.Errorf("message.status %s: %s", st, e)
			}
		}
	})
}

// 2. A CRM outage (503s, then connection refused) loses nothing: once a
// receiver is back on the same address, every event arrives once, in order
// within each conversation, and the backlog drains.
func TestCRMOutageLosesNothing(t *testing.T) {
	const contacts, perContact = 10, 20
	forEachCRM(t, time.Hour, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		down := newCRMReceiverOn(t, listenReusable(t), func(crmEvent) int { return http.StatusServiceUnavailable })
		s := newStack(t, store, withCRM(down.url, time.Hour, wake))

		phone := func(c int) string { return fmt.Sprintf("9198111002%02d", c) }
		text := func(c, i int) string { return fmt.Sprintf("contact %02d message %02d", c, i) }
		// produce posts messages [from, to) of every contact: contacts in
		// parallel, each contact's messages one after another.
		produce := func(from, to int) {
			t.Helper()
			errs := make(chan error, contacts)
			var wg sync.WaitGroup
			for c := range contacts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := from; i < to; i++ {
						if _, err := s.postInbound(phone(c), fmt.Sprintf("Contact %02d", c), text(c, i)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		}

		// The CRM answers 503 for a while...
		produce(0, perContact/2)
		down.waitFor(t, "503 answers", func() bool { return len(down.rejected) >= 2*contacts })
		// ...then is gone: connections are refused.
		down.close()
		refused := func(c crmOutcome) bool { return strings.Contains(c.LastError, "connection refused") }
		mark := 0
		s.crmOut.read(func() { mark = len(s.crmOut.list) })
		produce(perContact/2, perContact)
		s.crmOut.wait(t, "refused deliveries", func() bool {
			n := 0
			for _, c := range s.crmOut.list[mark:] {
				if refused(c) {
					n++
				}
			}
			return n >= contacts
		})
		if b := s.crmBacklog(); b.Pending != contacts*perContact || b.Dead != 0 || b.ConversationsBehind != contacts ||
			b.OldestPendingAt == nil || b.OldestPendingAge <= 0 || b.OldestPendingAge > itGuard.Seconds() {
			t.Fatalf("backlog during the outage: %+v, want %d pending in %d conversations", b, contacts*perContact, contacts)
		}

		// The CRM is back on the same address.
		up := newCRMReceiver(t, down.addr, nil)
		up.waitFor(t, "every event", func() bool { return len(up.accepted) >= contacts*perContact })
		s.waitBacklog("pending 0", func(b crmBacklog) bool { return b.Pending == 0 })
		if b := s.crmBacklog(); b.Dead != 0 || b.ConversationsBehind != 0 {
			t.Fatalf("backlog after the outage: %+v", b)
		}

		evs := up.acceptedEvents()
		if len(evs) != contacts*perContact || up.duplicates() != 0 || len(down.acceptedEvents()) != 0 {
			t.Fatalf("CRM received %d events, %d duplicates (want %d once each)", len(evs), up.duplicates(), contacts*perContact)
		}
		type convState struct {
			phone string
			seqs  []int64
			texts []string
		}
		convs := map[int64]*convState{}
		ids := map[string]bool{}
		for _, e := range evs {
			if e.Type != persistence.OutboxMessageReceived {
				t.Fatalf("unexpected event %s", e)
			}
			if ids[e.ID] {
				t.Fatalf("event id %s twice", e.ID)
			}
			ids[e.ID] = true
			cs := convs[e.Data.Conversation.ID]
			if cs == nil {
				cs = &convState{phone: e.Data.Contact.Phone}
				convs[e.Data.Conversation.ID] = cs
			}
			if e.Data.Contact.Phone != cs.phone {
				t.Fatalf("conversation %d: contacts %s and %s", e.Data.Conversation.ID, cs.phone, e.Data.Contact.Phone)
			}
			cs.seqs = append(cs.seqs, e.Data.Message.Seq)
			cs.texts = append(cs.texts, e.Data.Message.Text)
		}
		if len(convs) != contacts {
			t.Fatalf("events of %d conversations, want %d", len(convs), contacts)
		}
		seen := map[string]bool{}
		for id, cs := range convs {
			if seen[cs.phone] {
				t.Fatalf("contact %s in two conversations", cs.phone)
			}
			seen[cs.phone] = true
			var c int
			if _, err := fmt.Sscanf(cs.phone, "+9198111002%02d", &c); err != nil || len(cs.texts) != perContact {
				t.Fatalf("conversation %d (%s): %d events", id, cs.phone, len(cs.texts))
			}
			for i := range cs.texts {
				if cs.texts[i] != text(c, i) || (i > 0 && cs.seqs[i] <= cs.seqs[i-1]) {
					t.Fatalf("conversation %d arrived out of order: seqs %v texts %q", id, cs.seqs, cs.texts)
				}
			}
		}
	})
}

// 3. An event still failing past its maximum age becomes a dead letter; an
// operator replays it (one, or all) and it arrives with its id; the operator
// endpoints need the admin token.
func TestCRMDeadLetterReplay(t *testing.T) {
	const maxAge = time.Millisecond
	unavailable := func(crmEvent) int { return http.StatusServiceUnavailable }
	forEachCRM(t, maxAge, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		rcv := newCRMReceiver(t, "127.0.0.1:0", unavailable)
		s := newStack(t, store, withCRM(rcv.url, maxAge, wake))

		// The admin token is required.
		rmTok := s.login(s.rmA)
		for _, ep := range [][2]string{
			{"GET", "/admin/crm/backlog"},
			{"GET", "/admin/crm/dead-letters"},
			{"POST", "/admin/crm/dead-letters/replay"},
			{"POST", "/admin/crm/dead-letters/1/replay"},
		} {
			for _, tok := range []string{"", "wrong-token", rmTok} {
				if r := s.do(ep[0], ep[1], tok, nil, nil); r.status != http.StatusUnauthorized {
					t.Errorf("%s %s with token %q: %v, want 401", ep[0], ep[1], tok, r)
				}
			}
		}

		dead := func(c crmOutcome) bool { return c.Dead }
		wamid := s.mustInbound("919811100301", "Dead Letter", "hello?")
		s.crmOut.waitCount(t, "a dead letter", 1, dead)

		if b := s.crmBacklog(); b.Pending != 0 || b.Dead != 1 || b.OldestPendingAt != nil {
			t.Fatalf("backlog with one dead letter: %+v", b)
		}
		dls := s.deadLetters()
		if len(dls) != 1 {
			t.Fatalf("dead letters: %+v", dls)
		}
		dl := dls[0]
		var dlData crmData
		if err := json.Unmarshal(dl.Data, &dlData); err != nil {
			t.Fatalf("dead letter data %s: %v", dl.Data, err)
		}
		if dl.ID <= 0 || !eventIDPattern.MatchString(dl.EventID) || dl.Type != persistence.OutboxMessageReceived ||
			dl.ConversationID == 0 || dl.ConversationID != dlData.Conversation.ID || dl.Attempts < 1 ||
			!strings.Contains(dl.LastError, "503") || dlData.Message.ProviderMessageID != wamid ||
			dl.ExpiresAt.Sub(dl.OccurredAt) != maxAge {
			t.Fatalf("dead letter: %+v", dl)
		}
		rej := rcv.rejectedEvents()
		if len(rej) != dl.Attempts || countWhere(rej, func(e crmEvent) bool { return e.ID == dl.EventID }) != len(rej) {
			t.Fatalf("%d attempts recorded; the CRM saw %d: %v", dl.Attempts, len(rej), rej)
		}

		// Unknown ids and ids that are not dead letters.
		for _, p := range []string{"/admin/crm/dead-letters/999999999/replay", "/admin/crm/dead-letters/0/replay",
			"/admin/crm/dead-letters/abc/replay", "/admin/crm/dead-letters/-1/replay"} {
			if r := s.do("POST", p, itAdminToken, nil, nil); r.status != http.StatusNotFound {
				t.Errorf("POST %s: %v, want 404", p, r)
			}
		}

		// Replay one, to a healthy CRM: the same event arrives.
		rcv.setAnswer(nil)
		if n := s.replay(fmt.Sprintf("/admin/crm/dead-letters/%d/replay", dl.ID)); n != 1 {
			t.Fatalf("replayed %d, want 1", n)
		}
		rcv.waitFor(t, "the replayed event", func() bool { return len(rcv.accepted) >= 1 })
		got := rcv.acceptedEvents()[0]
		if got.ID != dl.EventID || got.Type != dl.Type || !got.OccurredAt.Equal(dl.OccurredAt) || !sameJSON(got.DataRaw, dl.Data) {
			t.Fatalf("replayed event %s differs from the dead letter %+v", got, dl)
		}
		if r := s.do("POST", fmt.Sprintf("/admin/crm/dead-letters/%d/replay", dl.ID), itAdminToken, nil, nil); r.status != http.StatusNotFound {
			t.Errorf("replay of an event no longer dead: %v, want 404", r)
		}

		// Replay all.
		rcv.setAnswer(unavailable)
		wamids := []string{
			s.mustInbound("919811100302", "Dead Letter Two", "first"),
			s.mustInbound("919811100303", "Dead Letter Three", "second"),
		}
		s.crmOut.waitCount(t, "two more dead letters", 3, dead)
		dls = s.deadLetters()
		if len(dls) != 2 || dls[0].ID >= dls[1].ID {
			t.Fatalf("dead letters: %+v", dls)
		}
		want := map[string]string{} // event id -> wamid
		for i, d := range dls {
			var dd crmData
			if err := json.Unmarshal(d.Data, &dd); err != nil {
				t.Fatal(err)
			}
			if dd.Message.ProviderMessageID != wamids[i] {
				t.Fatalf("dead letter %d is about %s, want %s", i, dd.Message.ProviderMessageID, wamids[i])
			}
			want[d.EventID] = dd.Message.ProviderMessageID
		}
		rcv.setAnswer(nil)
		if n := s.replay("/admin/crm/dead-letters/replay"); n != 2 {
			t.Fatalf("replayed %d, want 2", n)
		}
		rcv.waitFor(t, "the replayed events", func() bool { return len(rcv.accepted) >= 3 })
		for _, e := range rcv.acceptedEvents()[1:] {
			if w, ok := want[e.ID]; !ok || w != e.Data.Message.ProviderMessageID {
				t.Fatalf("replayed event %s is not one of the dead letters %v", e, want)
			}
			delete(want, e.ID)
		}
		if len(want) != 0 {
			t.Fatalf("not replayed: %v", want)
		}
		s.waitBacklog("nothing pending", func(b crmBacklog) bool { return b.Pending == 0 })
		if b := s.crmBacklog(); b.Dead != 0 {
			t.Fatalf("backlog after replay: %+v", b)
		}
		if n := s.replay("/admin/crm/dead-letters/replay"); n != 0 {
			t.Fatalf("second replay of all: %d, want 0", n)
		}
		if len(rcv.acceptedEvents()) != 3 || rcv.duplicates() != 0 {
			t.Fatalf("CRM received %v (%d duplicates)", rcv.acceptedEvents(), rcv.duplicates())
		}
	})
}

// sameJSON reports whether a and b are the same JSON text up to
// insignificant white space.
func sameJSON(a, b []byte) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// 4. A conversation whose event the CRM keeps rejecting holds back only its
// own events: another conversation's keep arriving meanwhile.
func TestCRMFailingConversationDoesNotBlockOthers(t *testing.T) {
	forEachCRM(t, time.Hour, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		var bad atomic.Int64
		rcv := newCRMReceiver(t, "127.0.0.1:0", func(e crmEvent) int {
			if id := bad.Load(); id != 0 && e.Data.Conversation.ID == id {
				return http.StatusBadRequest
			}
			return http.StatusOK
		})
		s := newStack(t, store, withCRM(rcv.url, time.Hour, wake))
		const badPhone, goodPhone = "919811100401", "919811100402"

		b0 := s.mustInbound(badPhone, "Rejected", "b0")
		rcv.waitFor(t, "the first event of the bad conversation", func() bool { return countWhere(rcv.accepted, byWAMID(b0)) == 1 })
		badConv := rcv.acceptedEvents()[0].Data.Conversation.ID
		bad.Store(badConv)
		isBad := func(e crmEvent) bool { return e.Data.Conversation.ID == badConv }

		b1 := s.mustInbound(badPhone, "Rejected", "b1")
		b2 := s.mustInbound(badPhone, "Rejected", "b2")
		rcv.waitFor(t, "the bad conversation's head failing", func() bool { return countWhere(rcv.rejected, isBad) >= 2 })

		var good []string
		for i := range 10 {
			var before int
			rcv.read(func() { before = countWhere(rcv.rejected, isBad) })
			w := s.mustInbound(goodPhone, "Accepted", fmt.Sprintf("a%d", i))
			good = append(good, w)
			rcv.waitFor(t, "a good conversation's event", func() bool { return countWhere(rcv.accepted, byWAMID(w)) == 1 })
			// ...while the bad conversation's head is still being retried.
			rcv.waitFor(t, "another rejected attempt", func() bool { return countWhere(rcv.rejected, isBad) > before })
		}
		if n := countWhere(rcv.acceptedEvents(), isBad); n != 1 {
			t.Fatalf("%d events of the failing conversation were accepted, want 1 (its first)", n)
		}
		for _, e := range rcv.rejectedEvents() {
			if !isBad(e) || e.Data.Message.ProviderMessageID != b1 {
				t.Fatalf("rejected %s; only the bad conversation's head (%s) should be attempted", e, b1)
			}
		}
		s.waitBacklog("the bad conversation's two events pending", func(b crmBacklog) bool {
			return b.Pending == 2 && b.ConversationsBehind == 1
		})
		var rejected400 int
		s.crmOut.read(func() {
			for _, c := range s.crmOut.list {
				if strings.Contains(c.LastError, "400") {
					rejected400++
				}
			}
		})
		if rejected400 < 2 {
			t.Fatalf("%d failed attempts recorded with the 400", rejected400)
		}

		// The CRM accepts the bad conversation again: its events follow, in order.
		bad.Store(0)
		rcv.waitFor(t, "the held events", func() bool {
			return countWhere(rcv.accepted, byWAMID(b1))+countWhere(rcv.accepted, byWAMID(b2)) == 2
		})
		s.waitBacklog("pending 0", func(b crmBacklog) bool { return b.Pending == 0 })

		evs := rcv.acceptedEvents()
		if len(evs) != 13 || rcv.duplicates() != 0 {
			t.Fatalf("CRM received %d events (%d duplicates), want 13: %v", len(evs), rcv.duplicates(), evs)
		}
		var badOrder, goodOrder []string
		for _, e := range evs {
			if isBad(e) {
				badOrder = append(badOrder, e.Data.Message.ProviderMessageID)
			} else {
				goodOrder = append(goodOrder, e.Data.Message.ProviderMessageID)
			}
		}
		if strings.Join(badOrder, ",") != strings.Join([]string{b0, b1, b2}, ",") || strings.Join(goodOrder, ",") != strings.Join(good, ",") {
			t.Fatalf("order: bad %v (want %v %v %v), good %v (want %v)", badOrder, b0, b1, b2, goodOrder, good)
		}
	})
}
