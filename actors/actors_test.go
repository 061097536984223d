package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"urva/actors/msg"
	"urva/persistence"
	"urva/persistence/storetest"
)

const business = "+919800000001"

// wait bounds how long a test waits for an event that must come.
const wait = 10 * time.Second

// fakeConn records frames written to an RM socket.
type fakeConn struct {
	frames chan []byte
	closed chan string
	once   sync.Once
}

func newFakeConn() *fakeConn {
	return &fakeConn{frames: make(chan []byte, 10000), closed: make(chan string, 1)}
}

func (c *fakeConn) WriteFrames(frames [][]byte) error {
	for _, f := range frames {
		c.frames <- append([]byte(nil), f...)
	}
	return nil
}

func (c *fakeConn) Close(reason string) { c.once.Do(func() { c.closed <- reason }) }

type frame struct {
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	Cursor         string          `json:"cursor"`
	MessageID      int64           `json:"message_id"`
	Status         string          `json:"status"`
	Error          json.RawMessage `json:"error"`
	RMID           int64           `json:"rm_id"`
	ClientMsgID    string          `json:"client_msg_id"`
	Call           struct {
		ID     int64  `json:"id"`
		Status string `json:"status"`
	} `json:"call"`
	Message struct {
		ID                int64  `json:"id"`
		Direction         string `json:"direction"`
		Text              string `json:"text"`
		Status            string `json:"status"`
		ProviderMessageID string `json:"provider_message_id"`
		ClientMsgID       string `json:"client_msg_id"`
	} `json:"message"`
}

// next reads the next frame, skipping types in skip.
func (c *fakeConn) next(t *testing.T, skip ...string) frame {
	t.Helper()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case b := <-c.frames:
			var f frame
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatalf("bad frame %s: %v", b, err)
			}
			skipped := false
			for _, s := range skip {
				skipped = skipped || f.Type == s
			}
			if !skipped {
				return f
			}
		case <-timer.C:
			t.Fatalf("no frame within %s", wait)
		}
	}
}

// none asserts no frame is queued right now (after the caller has already
// synchronised on a later event, so anything earlier would be there).
func (c *fakeConn) none(t *testing.T) {
	t.Helper()
	select {
	case b := <-c.frames:
		t.Fatalf("unexpected frame %s", b)
	default:
	}
}

// fakeProvider answers sends from a script and counts calls.
type fakeProvider struct {
	mu     sync.Mutex
	calls  []*msg.ProviderSend
	script []error // per call; nil = success; beyond the script: success
	seen   chan *msg.ProviderSend
}

func newFakeProvider(script ...error) *fakeProvider {
	return &fakeProvider{script: script, seen: make(chan *msg.ProviderSend, 1000)}
}

func (p *fakeProvider) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	p.mu.Lock()
	n := len(p.calls)
	p.calls = append(p.calls, req)
	var err error
	if n < len(p.script) {
		err = p.script[n]
	}
	p.mu.Unlock()
	p.seen <- req
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("wamid.OUT%d", n), nil
}

func (p *fakeProvider) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

type env struct {
	t     *testing.T
	store persistence.Store
	sys   *System
	prov  *fakeProvider
	rmA   Principal
	rmB   Principal
	sup   Principal
	now   atomic.Pointer[time.Time]
}

func testTuning() Tuning {
	t := DefaultTuning()
	t.ProviderBackoff = time.Millisecond
	t.ProviderMaxDelay = 5 * time.Millisecond
	t.ProviderAttempts = 4
	return t
}

func newEnv(t *testing.T, store persistence.Store, prov *fakeProvider, tune func(*Tuning)) *env {
	t.Helper()
	e := &env{t: t, store: store, prov: prov}
	ctx := context.Background()
	mk := func(name, role string) Principal {
		id, err := store.CreateRM(ctx, &persistence.RM{Username: name, Name: name, Role: role, PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return Principal{RMID: id, Role: role}
	}
	e.rmA, e.rmB, e.sup = mk("rm-a", persistence.RoleRM), mk("rm-b", persistence.RoleRM), mk("sup", persistence.RoleSupervisor)
	e.start(tune)
	return e
}

func (e *env) start(tune func(*Tuning)) {
	tuning := testTuning()
	if tune != nil {
		tune(&tuning)
	}
	sys, err := Start(context.Background(), Options{
		Store:           e.store,
		Providers:       map[string]ProviderClient{persistence.ChannelWhatsApp: e.prov, persistence.ChannelSMS: e.prov},
		BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business, persistence.ChannelSMS: business},
		Tuning:          tuning,
		Log:             zerolog.Nop(),
		Clock: func() time.Time {
			if p := e.now.Load(); p != nil {
				return *p
			}
			return time.Now()
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.sys = sys
	e.t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
}

func key(phone string) persistence.ConversationKey {
	return persistence.ConversationKey{Channel: persistence.ChannelWhatsApp, BusinessNumber: business, ContactPhone: phone}
}

func inbound(phone, wamid, text string) Inbound {
	return Inbound{Key: key(phone), ContactName: "Meera", Message: &persistence.Message{
		Type: "text", Text: text, ProviderMessageID: wamid, ProviderTimestamp: time.Now().Truncate(time.Second),
		Payload: json.RawMessage(`{"type":"text"}`),
	}}
}

func (e *env) ingest(items ...Inbound) []IngestResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := e.sys.Ingest(ctx, items)
	if err != nil {
		e.t.Fatalf("ingest: %v", err)
	}
	return res
}

// connect opens a session and waits until the router knows it.
func (e *env) connect(p Principal, resume *string) (*fakeConn, *Session) {
	e.t.Helper()
	c := newFakeConn()
	s := e.sys.Connect(p, c)
	e.t.Cleanup(s.Close)
	if resume != nil {
		b, _ := json.Marshal(map[string]string{"type": "resume", "cursor": *resume})
		s.Receive(b)
	} else {
		s.Receive([]byte(`{"type":"ping"}`))
		if f := c.next(e.t); f.Type != "pong" {
			e.t.Fatalf("want pong, got %+v", f)
		}
	}
	return c, s
}

func TestInboundReachesAssignedRMInOrder(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		conn, _ := e.connect(e.rmA, nil)

		res := e.ingest(inbound("+919811100001", "wamid.A1", "Hello"))
		if res[0].Duplicate || res[0].MessageID == 0 {
			t.Fatalf("result %+v", res[0])
		}
		f := conn.next(t)
		if f.Type != "message" || f.Seq != 1 || f.Message.Text != "Hello" || f.Message.Direction != "in" || f.Cursor == "" {
			t.Fatalf("frame %+v", f)
		}
		// Committed before the ack: the store has it.
		evs, err := e.sys.Events(context.Background(), e.rmA, f.ConversationID, 0, 10)
		if err != nil || len(evs) != 1 {
			t.Fatalf("events %d %v", len(evs), err)
		}
		// Another RM may not read it.
		if _, err := e.sys.Events(context.Background(), e.rmB, f.ConversationID, 0, 10); !errors.Is(err, ErrForbidden) {
			t.Fatalf("rm B read: %v", err)
		}
	})
}

func TestRedeliveryStoredOnce(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		conn, _ := e.connect(e.rmA, nil)
		in := inbound("+919811100002", "wamid.DUP", "once")
		e.ingest(in)
		first := conn.next(t)
		e.ingest(in)
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() { defer wg.Done(); e.ingest(in) }()
		}
		wg.Wait()
		// A marker message after the duplicates: if a duplicate had produced
		// an event it would come before this one.
		e.ingest(inbound("+919811100002", "wamid.MARK", "marker"))
		f := conn.next(t)
		if f.Message.Text != "marker" || f.Seq != first.Seq+1 {
			t.Fatalf("after duplicates got %+v", f)
		}
		evs, _ := e.sys.Events(context.Background(), e.sup, first.ConversationID, 0, 100)
		if len(evs) != 2 {
			t.Fatalf("want 2 events, got %d", len(evs))
		}
	})
}

func TestBurstFromNewContactOneConversationContiguousSeq(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		conn, _ := e.connect(e.rmA, nil)
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.ingest(inbound("+919811100003", fmt.Sprintf("wamid.B%d", i), fmt.Sprint(i)))
			}()
		}
		wg.Wait()
		var conv int64
		for want := int64(1); want <= 50; want++ {
			f := conn.next(t)
			if f.Seq != want {
				t.Fatalf("socket order: want seq %d, got %d", want, f.Seq)
			}
			if conv == 0 {
				conv = f.ConversationID
			} else if f.ConversationID != conv {
				t.Fatalf("two conversations: %d and %d", conv, f.ConversationID)
			}
		}
		list, err := e.sys.Conversations(context.Background(), e.sup, 100)
		if err != nil || len(list) != 1 || list[0].LastSeq != 50 {
			t.Fatalf("conversations %+v %v", list, err)
		}
	})
}

func TestSendOnceStatusesAndRetry(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		prov := newFakeProvider(&SendError{Code: "http_500", Title: "server error", Retry: true})
		e := newEnv(t, store, prov, nil)
		conn, sess := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100004", "wamid.S1", "hi"))
		in := conn.next(t)

		// REST and socket with the same client_msg_id: one message, one send.
		m1, err := e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "c-1", Text: "reply"})
		if err != nil {
			t.Fatal(err)
		}
		sess.Receive([]byte(fmt.Sprintf(`{"type":"send","conversation_id":%d,"client_msg_id":"c-1","text":"reply"}`, in.ConversationID)))
		out := conn.next(t, "send_result")
		if out.Type != "message" || out.Message.Direction != "out" || out.Message.ID != m1.ID || out.Message.Status != "queued" {
			t.Fatalf("outbound frame %+v", out)
		}
		// First attempt 500, second accepted with the fake's second id. The
		// status webhooks may overtake the provider's answer: they still apply.
		<-prov.seen
		<-prov.seen
		acc := "wamid.OUT1"
		for _, st := range []string{"sent", "delivered"} {
			e.ingest(Inbound{Key: key("+919811100004"), Status: &persistence.StatusChange{ProviderMessageID: acc, Status: st, At: time.Now()}})
			f := conn.next(t, "send_result")
			if f.Type != "status" || f.Status != st || f.MessageID != m1.ID {
				t.Fatalf("status frame %+v", f)
			}
		}
		// "sent" after "delivered" changes nothing.
		e.ingest(Inbound{Key: key("+919811100004"), Status: &persistence.StatusChange{ProviderMessageID: acc, Status: "sent", At: time.Now()}})
		if got := prov.count(); got != 2 {
			t.Fatalf("provider calls %d, want 2", got)
		}
		m, _ := store.MessageByID(context.Background(), m1.ID)
		if m.Status != persistence.StatusDelivered {
			t.Fatalf("status %s", m.Status)
		}
	})
}

func TestWindowFailedSendAndTemplates(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		prov := newFakeProvider(&SendError{Code: "131047", Title: "Re-engagement message", Message: "more than 24 hours"})
		e := newEnv(t, store, prov, nil)
		conn, _ := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100005", "wamid.W1", "hi"))
		in := conn.next(t)

		// The provider refuses with 131047: failed, with the reason in the event.
		m, err := e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "w-1", Text: "late"})
		if err != nil {
			t.Fatal(err)
		}
		conn.next(t) // the queued message
		f := conn.next(t)
		if f.Type != "status" || f.Status != "failed" || f.MessageID != m.ID || !json.Valid(f.Error) || len(f.Error) < 10 {
			t.Fatalf("failed frame %+v (%s)", f, f.Error)
		}
		if prov.count() != 1 {
			t.Fatalf("131047 must not be retried: %d calls", prov.count())
		}

		// 25 hours later free text is refused up front, templates go through.
		later := time.Now().Add(25 * time.Hour)
		e.now.Store(&later)
		_, err = e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "w-2", Text: "too late"})
		if !errors.Is(err, ErrWindowClosed) {
			t.Fatalf("want window closed, got %v", err)
		}
		_, err = e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "w-3",
			Template: &persistence.Template{Name: "followup", Language: "en", Params: []string{"Meera"}}})
		if err != nil {
			t.Fatalf("template: %v", err)
		}
		// RM B may not write to RM A's conversation.
		_, err = e.sys.Send(context.Background(), e.rmB, in.ConversationID, SendRequest{ClientMsgID: "b-1",
			Template: &persistence.Template{Name: "followup", Language: "en"}})
		if !errors.Is(err, ErrForbidden) {
			t.Fatalf("rm B send: %v", err)
		}
	})
}

func TestResumeDeliversExactlyWhatWasMissed(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		conn, sess := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100006", "wamid.R0", "before"))
		last := conn.next(t)
		sess.Close()
		for i := range 20 {
			e.ingest(inbound("+919811100006", fmt.Sprintf("wamid.R%d", i+1), fmt.Sprint(i+1)))
		}
		conn2, _ := e.connect(e.rmA, &last.Cursor)
		for i := range 20 {
			f := conn2.next(t)
			if f.Message.Text != fmt.Sprint(i+1) || f.Seq != last.Seq+int64(i)+1 {
				t.Fatalf("resume %d: %+v", i, f)
			}
		}
		// Live events continue after the replay, none twice.
		e.ingest(inbound("+919811100006", "wamid.R21", "live"))
		if f := conn2.next(t); f.Message.Text != "live" {
			t.Fatalf("live after resume: %+v", f)
		}
		conn2.none(t)

		// A client that has seen nothing yet resumes with "": live events
		// only, no history.
		empty := ""
		conn3, _ := e.connect(e.rmA, &empty)
		e.ingest(inbound("+919811100006", "wamid.R22", "only this"))
		if f := conn3.next(t); f.Message.Text != "only this" {
			t.Fatalf("resume with no cursor: %+v", f)
		}
	})
}

func TestUnassignedUntilAnRMConnects(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		e.ingest(inbound("+919811100007", "wamid.U1", "anyone?"))
		list, _ := e.sys.Conversations(context.Background(), e.sup, 10)
		if len(list) != 1 || list[0].AssignedRMID != 0 {
			t.Fatalf("want one unassigned conversation: %+v", list)
		}
		conn, _ := e.connect(e.rmB, nil)
		f := conn.next(t)
		if f.Type != "assigned" || f.RMID != e.rmB.RMID || f.Seq != 2 {
			t.Fatalf("assigned frame %+v", f)
		}
	})
}

func TestPassivationAndReactivation(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), func(tu *Tuning) { tu.PassivateAfter = 20 * time.Millisecond })
		passivated := make(chan persistence.ConversationKey, 10)
		e.sys.passivated = func(k persistence.ConversationKey) { passivated <- k }
		conn, _ := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100008", "wamid.P1", "one"))
		conn.next(t)
		select {
		case <-passivated:
		case <-time.After(wait):
			t.Fatal("conversation actor never passivated")
		}
		if n := e.sys.LiveConversations(); n != 0 {
			t.Fatalf("%d conversation actors still live", n)
		}
		e.ingest(inbound("+919811100008", "wamid.P1", "one")) // redelivery after passivation
		e.ingest(inbound("+919811100008", "wamid.P2", "two"))
		if f := conn.next(t); f.Seq != 2 || f.Message.Text != "two" {
			t.Fatalf("after reactivation %+v", f)
		}
	})
}

func TestFailingConversationDoesNotAffectOthers(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		bad := key("+919811100666")
		e.sys.faultHook = func(k persistence.ConversationKey) {
			if k == bad {
				panic("injected failure")
			}
		}
		conn, _ := e.connect(e.rmA, nil)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := e.sys.Ingest(ctx, []Inbound{inbound("+919811100666", "wamid.X", "boom")}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("failing conversation: %v", err)
		}
		e.ingest(inbound("+919811100009", "wamid.OK", "fine"))
		if f := conn.next(t); f.Message.Text != "fine" {
			t.Fatalf("other conversation %+v", f)
		}
	})
}

func TestQueuedSendsAreSentAfterRestart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		// The first run's provider never answers in time: every attempt times out.
		block := make(chan struct{})
		t.Cleanup(func() { close(block) })
		stuck := &blockingProvider{block: block, called: make(chan struct{}, 10)}
		e := &env{t: t, store: store, prov: newFakeProvider()}
		ctx := context.Background()
		id, _ := store.CreateRM(ctx, &persistence.RM{Username: "r", Role: persistence.RoleRM, PasswordHash: "x"})
		rm := Principal{RMID: id, Role: persistence.RoleRM}
		sys1, err := Start(ctx, Options{Store: store, Providers: map[string]ProviderClient{persistence.ChannelWhatsApp: stuck},
			BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business}, Tuning: testTuning(), Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		c1 := newFakeConn()
		s1 := sys1.Connect(rm, c1)
		s1.Receive([]byte(`{"type":"ping"}`))
		<-c1.frames
		if _, err := sys1.Ingest(ctx, []Inbound{inbound("+919811100010", "wamid.Q1", "hi")}); err != nil {
			t.Fatal(err)
		}
		list, _ := sys1.Conversations(ctx, rm, 1)
		m, err := sys1.Send(ctx, rm, list[0].ID, SendRequest{ClientMsgID: "q-1", Text: "queued"})
		if err != nil {
			t.Fatal(err)
		}
		<-stuck.called
		_ = sys1.Shutdown(ctx) // cancels the attempt; the message stays queued

		e.start(nil) // a new run with a working provider
		got := <-e.prov.seen
		if got.MessageId != m.ID || got.Text != "queued" {
			t.Fatalf("re-driven %+v", got)
		}
	})
}

type blockingProvider struct {
	block  chan struct{}
	called chan struct{}
}

func (p *blockingProvider) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	p.called <- struct{}{}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-p.block:
		return "", errors.New("closed")
	}
}

func TestSMSOptOutRefusesSendsUntilStart(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		conn, _ := e.connect(e.rmA, nil)
		smsKey := persistence.ConversationKey{Channel: persistence.ChannelSMS, BusinessNumber: business, ContactPhone: "+919811100011"}
		sms := func(sid, text string, opt *bool) Inbound {
			return Inbound{Key: smsKey, SMSOptOut: opt, Message: &persistence.Message{Type: "text", Text: text, ProviderMessageID: sid}}
		}
		yes, no := true, false
		e.ingest(sms("SM1", "STOP", &yes))
		in := conn.next(t)
		_, err := e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "o-1", Text: "hello?"})
		if !errors.Is(err, ErrOptedOut) {
			t.Fatalf("send after STOP: %v", err)
		}
		e.ingest(sms("SM2", "START", &no))
		conn.next(t)
		if _, err := e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "o-2", Text: "welcome back"}); err != nil {
			t.Fatalf("send after START: %v", err)
		}
		got := <-e.prov.seen
		if got.Text != "welcome back" || e.prov.count() != 1 {
			t.Fatalf("provider got %+v (%d calls)", got, e.prov.count())
		}
	})
}

// stuckConn never finishes a write, like a client that stopped reading.
type stuckConn struct {
	block   chan struct{}
	closed  chan string
	writing chan struct{}
	once    sync.Once
}

func (c *stuckConn) WriteFrames([][]byte) error {
	select {
	case c.writing <- struct{}{}:
	default:
	}
	<-c.block
	return errors.New("closed")
}
func (c *stuckConn) Close(reason string) {
	c.once.Do(func() { c.closed <- reason; close(c.block) })
}

func TestSlowSocketIsCutWithAReason(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), func(tu *Tuning) { tu.SessionQueue = 2 })
		c := &stuckConn{block: make(chan struct{}), closed: make(chan string, 1), writing: make(chan struct{}, 1)}
		s := e.sys.Connect(e.rmA, c)
		t.Cleanup(s.Close)
		s.Receive([]byte(`{"type":"ping"}`)) // ends the wait for resume
		<-c.writing                          // the pong is stuck in the writer: the session is registered
		for i := range 10 {
			e.ingest(inbound("+919811100012", fmt.Sprintf("wamid.SLOW%d", i), "x"))
		}
		select {
		case reason := <-c.closed:
			if !strings.Contains(reason, "slow consumer") || !strings.Contains(reason, "resume") {
				t.Fatalf("reason %q", reason)
			}
		case <-time.After(wait):
			t.Fatal("slow socket was not cut")
		}
	})
}

func TestNewContactGoesToLeastLoadedOnlineRM(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		connA, _ := e.connect(e.rmA, nil)
		connB, _ := e.connect(e.rmB, nil)
		// Whoever gets the first contact, the second goes to the other RM.
		e.ingest(inbound("+919811100013", "wamid.L1", "first"))
		var first, second *fakeConn
		select {
		case b := <-connA.frames:
			connA.frames <- b
			first, second = connA, connB
		case b := <-connB.frames:
			connB.frames <- b
			first, second = connB, connA
		case <-time.After(wait):
			t.Fatal("nobody got the first contact")
		}
		first.next(t)
		e.ingest(inbound("+919811100014", "wamid.L2", "second"))
		if f := second.next(t); f.Message.Text != "second" {
			t.Fatalf("second contact %+v", f)
		}
		// The contact's owner wins over load: an RM who started a conversation owns the contact.
		_, _, err := e.sys.StartConversation(context.Background(), e.rmA, persistence.ChannelWhatsApp, "+919811100015", "Owner Test",
			SendRequest{ClientMsgID: "own-1", Template: &persistence.Template{Name: "hello", Language: "en"}})
		if err != nil {
			t.Fatal(err)
		}
		list, _ := e.sys.Conversations(context.Background(), e.rmA, 10)
		found := false
		for _, c := range list {
			found = found || c.Key.ContactPhone == "+919811100015"
		}
		if !found {
			t.Fatalf("started conversation not assigned to its RM: %+v", list)
		}
		sms := persistence.ConversationKey{Channel: persistence.ChannelSMS, BusinessNumber: business, ContactPhone: "+919811100015"}
		e.ingest(Inbound{Key: sms, Message: &persistence.Message{Type: "text", Text: "by sms", ProviderMessageID: "SMOWN"}})
		c, err := store.ConversationByKey(context.Background(), sms)
		if err != nil || c.AssignedRMID != e.rmA.RMID {
			t.Fatalf("owner's contact on another channel: %+v %v", c, err)
		}
	})
}

func TestBackoffStaysWithinBounds(t *testing.T) {
	for _, base := range []time.Duration{time.Millisecond, time.Second, 17179869185, 3 * time.Hour} {
		for attempt := 1; attempt <= 100; attempt++ {
			maxDelay := 10 * time.Minute
			d := backoff(base, maxDelay, attempt)
			exp := base
			for i := 1; i < attempt && exp < maxDelay; i++ {
				exp *= 2
			}
			exp = min(exp, maxDelay)
			if d < exp/2 || d > exp {
				t.Fatalf("backoff(%s, attempt %d) = %s, want within [%s, %s]", base, attempt, d, exp/2, exp)
			}
		}
	}
}

func TestInputTheStoreRefusesIsABadRequest(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		in := inbound("+919811100050", "wamid.BIG", "x")
		in.Message.Type = strings.Repeat("t", 1000) // longer than any message type
		_, err := e.sys.Ingest(context.Background(), []Inbound{in})
		if !errors.Is(err, ErrBadRequest) {
			t.Fatalf("want a bad request, got %v", err)
		}
	})
}
