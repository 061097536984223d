package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"urva/persistence"
	"urva/persistence/storetest"
)

// fakeCRM records deliveries; fail decides per event whether it fails.
type fakeCRM struct {
	mu    sync.Mutex
	got   []persistence.OutboxEvent
	fail  func(ev *persistence.OutboxEvent) error
	seen  chan persistence.OutboxEvent
	tries atomic.Int64
}

func newFakeCRM() *fakeCRM { return &fakeCRM{seen: make(chan persistence.OutboxEvent, 10000)} }

func (c *fakeCRM) Deliver(ctx context.Context, ev *persistence.OutboxEvent) error {
	c.tries.Add(1)
	c.mu.Lock()
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		if err := fail(ev); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.got = append(c.got, *ev)
	c.mu.Unlock()
	c.seen <- *ev
	return nil
}

func (c *fakeCRM) setFail(f func(ev *persistence.OutboxEvent) error) {
	c.mu.Lock()
	c.fail = f
	c.mu.Unlock()
}

// forEachOutboxStore runs fn on SQLite and MariaDB stores with the outbox on;
// wake is what the store calls after commits that wrote outbox rows.
func forEachOutboxStore(t *testing.T, fn func(t *testing.T, store persistence.Store, wake *atomic.Pointer[System])) {
	for _, db := range []string{"sqlite", "mysql"} {
		t.Run(db, func(t *testing.T) {
			wake := &atomic.Pointer[System]{}
			adjust := func(c *persistence.Config) {
				c.Outbox = true
				c.OutboxMaxAge = time.Hour
				c.OnOutbox = func() {
					if s := wake.Load(); s != nil {
						s.WakeCRM()
					}
				}
			}
			var store persistence.Store
			if db == "sqlite" {
				store = storetest.OpenSQLiteConfig(t, adjust)
			} else {
				store = storetest.OpenMySQLConfig(t, adjust)
			}
			fn(t, store, wake)
		})
	}
}

func startCRM(t *testing.T, store persistence.Store, wake *atomic.Pointer[System], crm *fakeCRM, prov *fakeProvider) *env {
	t.Helper()
	e := &env{t: t, store: store, prov: prov}
	ctx := context.Background()
	id, err := store.CreateRM(ctx, &persistence.RM{Username: "crm-rm", Role: persistence.RoleRM, PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	e.rmA = Principal{RMID: id, Role: persistence.RoleRM}
	sys, err := Start(ctx, Options{
		Store:           store,
		Providers:       map[string]ProviderClient{persistence.ChannelWhatsApp: prov},
		BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business},
		Tuning:          testTuning(),
		Log:             zerolog.Nop(),
		CRM: &CRMOptions{Sender: crm, Outbox: store.(persistence.Outbox), Backoff: time.Millisecond,
			MaxBackoff: 5 * time.Millisecond, Poll: 5 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	wake.Store(sys)
	e.sys = sys
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	return e
}

func (c *fakeCRM) next(t *testing.T) persistence.OutboxEvent {
	t.Helper()
	select {
	case ev := <-c.seen:
		return ev
	case <-time.After(wait):
		t.Fatal("no CRM delivery")
		return persistence.OutboxEvent{}
	}
}

func TestCRMGetsEachEventOnce(t *testing.T) {
	forEachOutboxStore(t, func(t *testing.T, store persistence.Store, wake *atomic.Pointer[System]) {
		crm := newFakeCRM()
		e := startCRM(t, store, wake, crm, newFakeProvider())
		conn, _ := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100021", "wamid.C1", "hello crm"))
		in := conn.next(t)
		if ev := crm.next(t); ev.Type != persistence.OutboxConversationAssigned || ev.ConversationID != in.ConversationID {
			t.Fatalf("first event (the new conversation's assignment) %+v", ev)
		}
		if ev := crm.next(t); ev.Type != persistence.OutboxMessageReceived || ev.ConversationID != in.ConversationID {
			t.Fatalf("second event %+v", ev)
		}
		e.ingest(inbound("+919811100021", "wamid.C1", "hello crm")) // redelivery: no event
		if _, err := e.sys.Send(context.Background(), e.rmA, in.ConversationID, SendRequest{ClientMsgID: "crm-1", Text: "reply"}); err != nil {
			t.Fatal(err)
		}
		sent := crm.next(t)
		if sent.Type != persistence.OutboxMessageSent {
			t.Fatalf("want message.sent, got %+v", sent)
		}
		var data struct {
			Message struct {
				ProviderMessageID string `json:"provider_message_id"`
				Text              string `json:"text"`
			} `json:"message"`
		}
		if err := json.Unmarshal(sent.Data, &data); err != nil || data.Message.Text != "reply" || data.Message.ProviderMessageID == "" {
			t.Fatalf("message.sent data %s (%v)", sent.Data, err)
		}
		e.ingest(Inbound{Key: key("+919811100021"), Status: &persistence.StatusChange{ProviderMessageID: data.Message.ProviderMessageID, Status: "delivered", At: time.Now()}})
		if st := crm.next(t); st.Type != persistence.OutboxMessageStatus {
			t.Fatalf("want message.status, got %+v", st)
		}
		// A marker: had the redelivery made an event, it would come first.
		e.ingest(inbound("+919811100021", "wamid.C2", "marker"))
		if ev := crm.next(t); ev.Type != persistence.OutboxMessageReceived || !json.Valid(ev.Data) {
			t.Fatalf("marker %+v", ev)
		}
		ids := map[string]bool{}
		crm.mu.Lock()
		for _, ev := range crm.got {
			if ids[ev.EventID] {
				t.Errorf("event %s delivered twice", ev.EventID)
			}
			ids[ev.EventID] = true
		}
		crm.mu.Unlock()
	})
}

func TestCRMBacklogAfterOutageInOrder(t *testing.T) {
	forEachOutboxStore(t, func(t *testing.T, store persistence.Store, wake *atomic.Pointer[System]) {
		crm := newFakeCRM()
		crm.setFail(func(*persistence.OutboxEvent) error { return errors.New("503 service unavailable") })
		e := startCRM(t, store, wake, crm, newFakeProvider())
		const convs, per = 10, 20
		var wg sync.WaitGroup
		for c := range convs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					e.ingest(inbound(fmt.Sprintf("+9198111002%02d", c), fmt.Sprintf("wamid.O%d-%d", c, i), fmt.Sprint(i)))
				}
			}()
		}
		wg.Wait()
		if crm.tries.Load() == 0 {
			t.Fatal("no delivery was attempted while the CRM was down")
		}
		crm.setFail(nil)
		last := map[int64]int64{} // conversation -> last outbox id delivered
		ids := map[string]bool{}
		for range convs * per {
			ev := crm.next(t)
			if ev.ID <= last[ev.ConversationID] {
				t.Fatalf("conversation %d: event %d after %d", ev.ConversationID, ev.ID, last[ev.ConversationID])
			}
			last[ev.ConversationID] = ev.ID
			if ids[ev.EventID] {
				t.Fatalf("event id %s twice", ev.EventID)
			}
			ids[ev.EventID] = true
		}
	})
}

func TestCRMFailingConversationDoesNotHoldOthers(t *testing.T) {
	forEachOutboxStore(t, func(t *testing.T, store persistence.Store, wake *atomic.Pointer[System]) {
		crm := newFakeCRM()
		e := startCRM(t, store, wake, crm, newFakeProvider())
		e.ingest(inbound("+919811100031", "wamid.B1", "bad"))
		bad := crm.next(t).ConversationID
		crm.setFail(func(ev *persistence.OutboxEvent) error {
			if ev.ConversationID == bad {
				return errors.New("400 bad request")
			}
			return nil
		})
		e.ingest(inbound("+919811100031", "wamid.B2", "stuck"))
		for i := range 5 {
			e.ingest(inbound("+919811100032", fmt.Sprintf("wamid.G%d", i), "good"))
			if ev := crm.next(t); ev.ConversationID == bad {
				t.Fatalf("failing conversation delivered: %+v", ev)
			}
		}
	})
}

func TestCRMDeadLetterAndReplay(t *testing.T) {
	for _, db := range []string{"sqlite", "mysql"} {
		t.Run(db, func(t *testing.T) {
			wake := &atomic.Pointer[System]{}
			adjust := func(c *persistence.Config) {
				c.Outbox, c.OutboxMaxAge = true, time.Millisecond
				c.OnOutbox = func() {
					if s := wake.Load(); s != nil {
						s.WakeCRM()
					}
				}
			}
			var store persistence.Store
			if db == "sqlite" {
				store = storetest.OpenSQLiteConfig(t, adjust)
			} else {
				store = storetest.OpenMySQLConfig(t, adjust)
			}
			crm := newFakeCRM()
			failed := make(chan struct{}, 100)
			crm.setFail(func(*persistence.OutboxEvent) error {
				failed <- struct{}{}
				return errors.New("503")
			})
			e := startCRM(t, store, wake, crm, newFakeProvider())
			e.ingest(inbound("+919811100041", "wamid.D1", "too old"))
			ob := store.(persistence.Outbox)
			select {
			case <-failed:
			case <-time.After(wait):
				t.Fatal("no failed attempt")
			}
			// The attempt that finds the event past its age records it dead;
			// that write has no event of its own, so look until it is there.
			var dead []persistence.OutboxEvent
			for deadline := time.Now().Add(wait); len(dead) == 0; time.Sleep(2 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("event never became a dead letter")
				}
				var err error
				if dead, err = ob.OutboxDeadLetters(context.Background(), 10); err != nil {
					t.Fatal(err)
				}
			}
			crm.setFail(nil)
			n, err := ob.OutboxReplay(context.Background(), dead[0].ID, time.Now(), time.Now().Add(time.Hour))
			if err != nil || n != 1 {
				t.Fatalf("replay %d %v", n, err)
			}
			e.sys.WakeCRM()
			if ev := crm.next(t); ev.EventID != dead[0].EventID {
				t.Fatalf("replayed %+v, want %s", ev, dead[0].EventID)
			}
		})
	}
}
