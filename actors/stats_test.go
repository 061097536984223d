package actors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/actors/msg"
	"urva/persistence"
	"urva/persistence/storetest"
)

func kindStatsOf(t *testing.T, sys *System, kind string) KindStats {
	t.Helper()
	for _, k := range sys.ActorStats() {
		if k.Kind == kind {
			return k
		}
	}
	t.Fatalf("no statistics for kind %q", kind)
	return KindStats{}
}

func snapshotOf(t *testing.T, sys *System, kind, id string) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	st, err := sys.ActorSnapshot(ctx, kind, id)
	if err != nil {
		t.Fatalf("snapshot of %s %s: %v", kind, id, err)
	}
	return st
}

func TestActorStatsCountConversationsAndMessages(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		e.connect(e.rmA, nil)
		before := kindStatsOf(t, e.sys, KindConversation)

		phones := []string{"+919811200001", "+919811200002", "+919811200003"}
		counts := []int{3, 2, 1}
		total := 0
		for i, ph := range phones {
			for j := range counts[i] {
				e.ingest(inbound(ph, fmt.Sprintf("wamid.ST%d-%d", i, j), "hello"))
				total++
			}
		}
		// Each conversation answers its snapshot after everything sent to
		// it before, and reports a write whose completion has landed as
		// done: after these, the counters below are final.
		for i, ph := range phones {
			cs, ok := snapshotOf(t, e.sys, KindConversation, key(ph).String()).(ConversationSnapshot)
			if !ok {
				t.Fatalf("snapshot type %T", cs)
			}
			if cs.Key != key(ph).String() || cs.ConversationID == 0 || cs.LastSeq != int64(counts[i]) || cs.AssignedRMID != e.rmA.RMID ||
				cs.PendingItems != 0 || cs.WriteInFlight || cs.AwaitingProvider != 0 || cs.ParkedStatuses != 0 || cs.Mailbox != 0 {
				t.Fatalf("snapshot of %s: %+v", ph, cs)
			}
			// One routed command per inbound message: the completions of
			// inbound writes land without a message (quietCompletion).
			if cs.Received != int64(counts[i]) || cs.LastActivity == nil {
				t.Fatalf("counters of %s: %+v", ph, cs.ActorCounters)
			}
		}

		after := kindStatsOf(t, e.sys, KindConversation)
		if after.Live-before.Live != 3 || after.Spawned-before.Spawned != 3 || after.Stopped != before.Stopped || after.Restarted != 0 {
			t.Fatalf("lifecycle before %+v after %+v", before, after)
		}
		if got := after.Received - before.Received; got != int64(total) {
			t.Fatalf("received grew by %d, want %d", got, total)
		}
		h := after.Latency
		if h.Count != after.Received || h.Count-before.Latency.Count != int64(total) || len(h.Counts) != len(h.Bounds) ||
			h.Counts[len(h.Counts)-1] > h.Count || h.Sum <= 0 {
			t.Fatalf("latency %+v", h)
		}
		if after.MailboxSum != 0 || after.MailboxMax != 0 {
			t.Fatalf("mailboxes of idle conversations: %+v", after)
		}

		top := e.sys.TopActors(KindConversation, 10)
		if len(top) != 3 {
			t.Fatalf("top %+v", top)
		}
		for i, a := range top { // all mailboxes empty: most messages first
			if a.Kind != KindConversation || a.ID != key(phones[i]).String() || a.Received != int64(counts[i]) || a.LastActivity.IsZero() {
				t.Fatalf("top[%d] = %+v", i, a)
			}
		}
		if top := e.sys.TopActors(KindConversation, 2); len(top) != 2 || top[0].ID != key(phones[0]).String() {
			t.Fatalf("top 2 %+v", top)
		}
		if top := e.sys.TopActors("no_such_kind", 10); len(top) != 0 {
			t.Fatalf("unknown kind: %+v", top)
		}

		// The other kinds: the RM's socket and the two provider actors.
		if k := kindStatsOf(t, e.sys, KindRMSession); k.Live != 1 || k.Spawned != 1 || k.Received == 0 {
			t.Fatalf("rm sessions %+v", k)
		}
		if k := kindStatsOf(t, e.sys, KindProvider); k.Live != 2 {
			t.Fatalf("providers %+v", k)
		}
		ids := map[string]string{}
		for _, a := range e.sys.TopActors("", 0) {
			if a.Kind != KindConversation {
				ids[a.Kind+" "+a.ID] = a.ID
			}
		}
		var sessionID string
		for k, id := range ids {
			if strings.HasPrefix(k, KindRMSession+" "+strconv.FormatInt(e.rmA.RMID, 10)+"/") {
				sessionID = id
			}
		}
		if sessionID == "" || ids[KindProvider+" whatsapp"] == "" || ids[KindProvider+" sms"] == "" || len(ids) != 3 {
			t.Fatalf("other live actors: %v", ids)
		}
		rs, ok := snapshotOf(t, e.sys, KindRMSession, sessionID).(RMSessionSnapshot)
		if !ok || rs.RMID != e.rmA.RMID || rs.Supervisor || rs.AwaitingResume || rs.Closed || rs.QueueCapacity == 0 {
			t.Fatalf("rm session snapshot %+v", rs)
		}
		ps, ok := snapshotOf(t, e.sys, KindProvider, "whatsapp").(ProviderSnapshot)
		if !ok || ps.Channel != "whatsapp" {
			t.Fatalf("provider snapshot %+v", ps)
		}

		// Not live: not found, and asking does not activate anything.
		ctx := context.Background()
		for _, q := range [][2]string{
			{KindConversation, key("+919811299999").String()},
			{KindConversation, "whatsapp/only-two"},
			{KindCall, "12"},
			{KindVideoCall, "x"},
			{KindProvider, "telegram"},
			{"no_such_kind", "1"},
		} {
			if _, err := e.sys.ActorSnapshot(ctx, q[0], q[1]); !errors.Is(err, ErrNotFound) {
				t.Errorf("snapshot of %s %s: %v", q[0], q[1], err)
			}
		}
		if n := e.sys.LiveConversations(); n != 3 {
			t.Fatalf("%d conversations live after asking about an unknown one", n)
		}
	})
}

func TestActorStatsForgetPassivatedConversations(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), func(tu *Tuning) { tu.PassivateAfter = 20 * time.Millisecond })
		passivated := make(chan persistence.ConversationKey, 10)
		e.sys.passivated = func(k persistence.ConversationKey) { passivated <- k }
		stopped := make(chan string, 100)
		e.sys.stats.onStopped = func(kind string) { stopped <- kind }

		ph := "+919811200010"
		e.ingest(inbound(ph, "wamid.PS1", "one"))
		select {
		case <-passivated:
		case <-time.After(wait):
			t.Fatal("conversation actor never passivated")
		}
		// Gone from the lists as soon as it released its lease.
		if top := e.sys.TopActors(KindConversation, 10); len(top) != 0 {
			t.Fatalf("passivated conversation still listed: %+v", top)
		}
		if k := kindStatsOf(t, e.sys, KindConversation); k.Live != 0 || k.Spawned != 1 {
			t.Fatalf("after passivation %+v", k)
		}
		if _, err := e.sys.ActorSnapshot(context.Background(), KindConversation, key(ph).String()); !errors.Is(err, ErrNotFound) {
			t.Fatalf("snapshot of a passivated conversation: %v", err)
		}
		select {
		case k := <-stopped:
			if k != KindConversation {
				t.Fatalf("stopped %s", k)
			}
		case <-time.After(wait):
			t.Fatal("conversation actor never stopped")
		}
		if k := kindStatsOf(t, e.sys, KindConversation); k.Stopped != 1 || k.Live != 0 {
			t.Fatalf("after stop %+v", k)
		}

		// Activated again: a fresh activation with its own counters.
		e.ingest(inbound(ph, "wamid.PS2", "two"))
		cs := snapshotOf(t, e.sys, KindConversation, key(ph).String()).(ConversationSnapshot)
		if cs.LastSeq != 2 || cs.Received != 1 || cs.WriteInFlight {
			t.Fatalf("reactivated %+v", cs)
		}
		if k := kindStatsOf(t, e.sys, KindConversation); k.Live != 1 || k.Spawned != 2 {
			t.Fatalf("after reactivation %+v", k)
		}
	})
}

// slowProvider answers every send after hold.
type slowProvider struct {
	hold time.Duration
	*fakeProvider
}

func (p slowProvider) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	time.Sleep(p.hold) // the provider takes its time: not a synchronisation
	return p.fakeProvider.Send(ctx, req)
}

// A conversation whose idle timer fires while it still waits for the
// provider passivates once the answer is in: the timer is armed again.
func TestConversationPassivatesAfterASlowSend(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := &env{t: t, store: store, prov: newFakeProvider()}
		ctx := context.Background()
		id, err := store.CreateRM(ctx, &persistence.RM{Username: "sup", Role: persistence.RoleSupervisor, PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		sup := Principal{RMID: id, Role: persistence.RoleSupervisor}
		tuning := testTuning()
		tuning.PassivateAfter = 20 * time.Millisecond
		sys, err := Start(ctx, Options{Store: store, Tuning: tuning, Log: zerolog.Nop(),
			Providers:       map[string]ProviderClient{persistence.ChannelWhatsApp: slowProvider{hold: 200 * time.Millisecond, fakeProvider: e.prov}},
			BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
		e.sys = sys
		passivated := make(chan persistence.ConversationKey, 10)
		sys.passivated = func(k persistence.ConversationKey) { passivated <- k }

		res := e.ingest(inbound("+919811200020", "wamid.SL1", "hello"))
		m, err := sys.Message(ctx, sup, res[0].MessageID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sys.Send(ctx, sup, m.ConversationID, SendRequest{ClientMsgID: "slow-1", Text: "hi"}); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the first activation, and the one woken by the provider's answer if it had passivated before
			select {
			case <-passivated:
			case <-time.After(wait):
				t.Fatal("conversation actor never passivated")
			}
			if sys.LiveConversations() == 0 && e.prov.count() == 1 {
				return
			}
		}
		t.Fatalf("%d conversations live, %d sends", sys.LiveConversations(), e.prov.count())
	})
}

func TestActorStatsCountRestarts(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		bad := key("+919811200666")
		e.sys.faultHook = func(k persistence.ConversationKey) {
			if k == bad {
				panic("injected failure")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := e.sys.Ingest(ctx, []Inbound{inbound(bad.ContactPhone, "wamid.R1", "boom")}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("failing conversation: %v", err)
		}
		// The snapshot is answered after the restart (the mailbox is
		// suspended until then).
		snapshotOf(t, e.sys, KindConversation, bad.String())
		if k := kindStatsOf(t, e.sys, KindConversation); k.Restarted != 1 || k.Live != 1 || k.Spawned != 1 || k.Stopped != 0 {
			t.Fatalf("after a restart %+v", k)
		}
	})
}

func TestLatencyHistogram(t *testing.T) {
	var h latencyHist
	if got := h.read(); got.Count != 0 || got.Quantile(0.99) != 0 || len(got.Counts) != len(got.Bounds) {
		t.Fatalf("empty %+v", got)
	}
	for _, d := range []time.Duration{10 * time.Microsecond, 50 * time.Microsecond, 75 * time.Microsecond, 3 * time.Millisecond, 10 * time.Second} {
		h.observe(d)
	}
	got := h.read()
	if got.Count != 5 || got.Sum != 10*time.Second+3*time.Millisecond+135*time.Microsecond {
		t.Fatalf("count %d sum %s", got.Count, got.Sum)
	}
	idx := func(b time.Duration) int {
		for i, x := range got.Bounds {
			if x == b {
				return i
			}
		}
		t.Fatalf("no bound %s", b)
		return -1
	}
	for b, want := range map[time.Duration]int64{50 * time.Microsecond: 2, 100 * time.Microsecond: 3, 2500 * time.Microsecond: 3,
		5 * time.Millisecond: 4, 5 * time.Second: 4} {
		if c := got.Counts[idx(b)]; c != want {
			t.Errorf("count <= %s: %d, want %d", b, c, want)
		}
	}
	for q, want := range map[float64]time.Duration{
		0.2: 25 * time.Microsecond,  // rank 1 of the 2 in (0, 50µs]
		0.4: 50 * time.Microsecond,  // rank 2: the top of the first bucket
		0.6: 100 * time.Microsecond, // rank 3: all of (50µs, 100µs]
		1:   5 * time.Second,        // beyond the last bound
	} {
		if d := got.Quantile(q); d != want {
			t.Errorf("quantile %.1f = %s, want %s", q, d, want)
		}
	}
}

// msgCtx is an actor context that only knows its message.
type msgCtx struct {
	actor.Context
	m any
}

func (c *msgCtx) Message() any { return c.m }

type nopActor struct{}

func (nopActor) Receive(actor.Context) {}

// The wrapper every actor runs behind adds no allocation per message.
func TestInstrumentedReceiveDoesNotAllocate(t *testing.T) {
	var st actorStats
	st.init()
	rec := &actorRec{kind: kConversation, stats: &st.kinds[kConversation]}
	w := &instrumented{Actor: nopActor{}, rec: rec, st: &st}
	ctx := &msgCtx{m: &ingestCmd{}}
	if n := testing.AllocsPerRun(1000, func() { w.Receive(ctx) }); n != 0 {
		t.Fatalf("%.1f allocations per message", n)
	}
	if got := rec.received.Load(); got != 1001 { // AllocsPerRun runs once more to warm up
		t.Fatalf("received %d", got)
	}
	if h := st.kinds[kConversation].latency.read(); h.Count != 1001 {
		t.Fatalf("latency count %d", h.Count)
	}
}

func BenchmarkInstrumentedReceive(b *testing.B) {
	var st actorStats
	st.init()
	rec := &actorRec{kind: kConversation, stats: &st.kinds[kConversation]}
	w := &instrumented{Actor: nopActor{}, rec: rec, st: &st}
	ctx := &msgCtx{m: &ingestCmd{}}
	b.ReportAllocs()
	for b.Loop() {
		w.Receive(ctx)
	}
}
