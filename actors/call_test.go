package actors

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"urva/persistence"
	"urva/persistence/storetest"
)

// fakeDialler scripts connect answers and records the calls it placed.
type fakeDialler struct {
	mu       sync.Mutex
	connects []DialRequest
	placed   map[string]*DialledCall // custom field -> call
	script   []error                 // per connect; ambiguous errors still place the call when placeAnyway
	anyway   bool
	seen     chan DialRequest
}

func newFakeDialler(script ...error) *fakeDialler {
	return &fakeDialler{placed: map[string]*DialledCall{}, script: script, seen: make(chan DialRequest, 100)}
}

func (d *fakeDialler) Connect(ctx context.Context, req DialRequest) (string, error) {
	d.mu.Lock()
	n := len(d.connects)
	d.connects = append(d.connects, req)
	var err error
	if n < len(d.script) {
		err = d.script[n]
	}
	place := err == nil || d.anyway
	sid := ""
	if place {
		sid = "CA" + req.CustomField
		d.placed[req.CustomField] = &DialledCall{Sid: sid, CustomField: req.CustomField, Status: "in-progress"}
	}
	d.mu.Unlock()
	d.seen <- req
	if err != nil {
		return "", err
	}
	return sid, nil
}

func (d *fakeDialler) Find(ctx context.Context, req DialRequest, since time.Time) (*DialledCall, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.placed[req.CustomField]; ok {
		cp := *c
		return &cp, nil
	}
	return nil, ErrCallNotFound
}

func (d *fakeDialler) Details(ctx context.Context, sid string) (*DialledCall, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.placed {
		if c.Sid == sid {
			cp := *c
			return &cp, nil
		}
	}
	return nil, ErrCallNotFound
}

func (d *fakeDialler) finish(custom string, dc DialledCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.placed[custom] = &dc
}

func startCalls(t *testing.T, store persistence.Store, d *fakeDialler, reconcile time.Duration) (*env, Principal) {
	t.Helper()
	e := &env{t: t, store: store, prov: newFakeProvider()}
	id, err := store.CreateRM(context.Background(), &persistence.RM{Username: "caller", Role: persistence.RoleRM, Phone: "+919800000101", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	rm := Principal{RMID: id, Role: persistence.RoleRM}
	sys, err := Start(context.Background(), Options{
		Store:           store,
		Providers:       map[string]ProviderClient{persistence.ChannelWhatsApp: e.prov},
		BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business},
		Tuning:          testTuning(),
		Log:             zerolog.Nop(),
		Calls: &CallOptions{Dialler: d, CallerID: "+919800000001", CallbackURL: "http://127.0.0.1/webhooks/dialler/t",
			ReconcileAfter: reconcile, LookAgainAfter: time.Millisecond, Record: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.sys = sys
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	return e, rm
}

func TestCallLifecycleThroughCallbacks(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		d := newFakeDialler(&DialError{Message: "500", Retryable: true, Ambiguous: true})
		d.anyway = true // the 500 came after the dialler placed the call
		e, rm := startCalls(t, store, d, time.Hour)
		conn, _ := e.connect(rm, nil)
		call, err := e.sys.StartCall(context.Background(), rm, 0, "+919811100060")
		if err != nil {
			t.Fatal(err)
		}
		if call.Status != persistence.CallRequested {
			t.Fatalf("new call %+v", call)
		}
		req := <-d.seen
		if req.From != "+919811100060" || req.To != "+919800000101" || req.CustomField == "" || !req.Record {
			t.Fatalf("connect request %+v", req)
		}
		// The ambiguous 500 was followed by a lookup that found the call: no second connect.
		for _, w := range []string{persistence.CallRequested, persistence.CallDialling} {
			if f := conn.next(t); f.Type != "call" || f.Call.Status != w || f.Call.ID != call.ID {
				t.Fatalf("want call frame %s, got %+v", w, f)
			}
		}
		cb := func(dc DialledCall) {
			dc.CustomField = req.CustomField
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := e.sys.DiallerCallback(ctx, &dc); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Now().UTC().Truncate(time.Second)
		terminal := DialledCall{Sid: "CA" + req.CustomField, Event: "terminal", Status: "completed", StartedAt: now, EndedAt: now.Add(42 * time.Second),
			TalkSeconds: 40, RecordingURL: "https://dialler.example/rec.wav", Legs: json.RawMessage(`[{"OnCallDuration":42,"Status":"completed"}]`)}
		cb(terminal) // before answered
		cb(terminal) // twice
		cb(DialledCall{Sid: "CA" + req.CustomField, Event: "answered", Status: "in-progress"})
		got, err := e.sys.Call(context.Background(), rm, call.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != persistence.CallCompleted || got.TalkSeconds != 40 || got.RecordingURL == "" || got.ContactPhone != "+919811100060" ||
			got.RMPhone != "+919800000101" || got.ProviderCallSID == "" {
			t.Fatalf("finished call %+v", got)
		}
		d.mu.Lock()
		n := len(d.connects)
		d.mu.Unlock()
		if n != 1 {
			t.Fatalf("%d connect requests, want exactly 1", n)
		}
		// Then connected and completed, once each, in seq order; the late
		// "answered" and the repeated terminal changed nothing.
		prev := int64(0)
		for _, w := range []string{persistence.CallConnected, persistence.CallCompleted} {
			f := conn.next(t)
			if f.Type != "call" || f.Call.Status != w || f.Seq <= prev {
				t.Fatalf("want call frame %s, got %+v", w, f)
			}
			prev = f.Seq
		}
		conn.none(t)
	})
}

func TestCallReconciledWithoutCallbacks(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		d := newFakeDialler()
		e, rm := startCalls(t, store, d, 20*time.Millisecond)
		conn, _ := e.connect(rm, nil)
		call, err := e.sys.StartCall(context.Background(), rm, 0, "+919811100061")
		if err != nil {
			t.Fatal(err)
		}
		req := <-d.seen
		d.finish(req.CustomField, DialledCall{Sid: "CA" + req.CustomField, CustomField: req.CustomField, Status: "busy"})
		for {
			f := conn.next(t)
			if f.Type == "call" && f.Call.ID == call.ID && persistence.CallTerminal(f.Call.Status) {
				if f.Call.Status != persistence.CallBusy {
					t.Fatalf("reconciled to %+v, want busy", f)
				}
				break
			}
		}
	})
}

func TestCallForbiddenAndNeedsPhone(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		d := newFakeDialler()
		e, rm := startCalls(t, store, d, time.Hour)
		other, _ := store.CreateRM(context.Background(), &persistence.RM{Username: "other", Role: persistence.RoleRM, Phone: "+919800000102", PasswordHash: "x"})
		call, err := e.sys.StartCall(context.Background(), rm, 0, "+919811100062")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.sys.StartCall(context.Background(), Principal{RMID: other, Role: persistence.RoleRM}, call.ConversationID, ""); !errors.Is(err, ErrForbidden) {
			t.Fatalf("other RM calling: %v", err)
		}
		// By phone: a contact whose conversation belongs to another RM is off limits.
		if _, _, err := e.sys.StartConversation(context.Background(), Principal{RMID: other, Role: persistence.RoleRM},
			persistence.ChannelWhatsApp, "+919811100064", "Theirs",
			SendRequest{ClientMsgID: "theirs-1", Template: &persistence.Template{Name: "hello", Language: "en"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.sys.StartCall(context.Background(), rm, 0, "+919811100064"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("calling another RM's contact by phone: %v", err)
		}
		nophone, _ := store.CreateRM(context.Background(), &persistence.RM{Username: "nophone", Role: persistence.RoleRM, PasswordHash: "x"})
		if _, err := e.sys.StartCall(context.Background(), Principal{RMID: nophone, Role: persistence.RoleRM}, 0, "+919811100063"); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("RM without phone: %v", err)
		}
		if err := e.sys.DiallerCallback(context.Background(), &DialledCall{CustomField: "999999", Sid: "CAX", Event: "terminal", Status: "completed"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown call: %v", err)
		}
	})
}

func TestCallTheDiallerNeverHeardOfFails(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		d := newFakeDialler()
		e, rm := startCalls(t, store, d, 20*time.Millisecond)
		conn, _ := e.connect(rm, nil)
		call, err := e.sys.StartCall(context.Background(), rm, 0, "+919811100065")
		if err != nil {
			t.Fatal(err)
		}
		req := <-d.seen
		d.mu.Lock()
		delete(d.placed, req.CustomField) // the dialler lost it: details and lookups find nothing
		d.mu.Unlock()
		for {
			f := conn.next(t)
			if f.Type == "call" && f.Call.ID == call.ID && persistence.CallTerminal(f.Call.Status) {
				if f.Call.Status != persistence.CallFailed {
					t.Fatalf("want failed, got %+v", f)
				}
				break
			}
		}
		got, err := e.sys.Call(context.Background(), rm, call.ID)
		if err != nil || got.Status != persistence.CallFailed || got.Error == "" {
			t.Fatalf("call %+v %v", got, err)
		}
	})
}
