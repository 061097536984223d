package actors

import (
	"context"
	"testing"
	"time"

	"urva/persistence"
	"urva/persistence/storetest"
)

// gatedStore hands the test each conversation write's completion, to run
// when the test chooses: the write is committed, its completion held.
type gatedStore struct {
	persistence.Store
	completions chan func()
}

func newGatedStore(s persistence.Store) *gatedStore {
	return &gatedStore{Store: s, completions: make(chan func())}
}

func (g *gatedStore) SubmitConversationWrite(w *persistence.ConversationWrite, done func(*persistence.WriteResult, error)) {
	g.Store.SubmitConversationWrite(w, func(res *persistence.WriteResult, err error) {
		ran := make(chan struct{})
		g.completions <- func() { done(res, err); close(ran) }
		<-ran
	})
}

// next is the completion of the next committed write.
func (g *gatedStore) next(t *testing.T) func() {
	t.Helper()
	select {
	case f := <-g.completions:
		return f
	case <-time.After(wait):
		t.Fatal("no conversation write was committed")
		return nil
	}
}

// ingestAsync ingests in on a goroutine of its own; the result comes on the channel.
func (e *env) ingestAsync(in Inbound) <-chan error {
	ch := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		_, err := e.sys.Ingest(ctx, []Inbound{in})
		ch <- err
	}()
	return ch
}

func acked(t *testing.T, what string, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(wait):
		t.Fatalf("%s: never acknowledged", what)
	}
}

// The completion of a write of inbound messages lands for the actor to
// apply before its next message, without a message of its own, unless
// items wait for it: then it wakes the actor, which writes them next.
func TestQuietCompletionWakesTheActorWhenItemsWait(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		g := newGatedStore(store)
		e := newEnv(t, g, newFakeProvider(), nil)
		k := key("+919811300001")
		handling := make(chan struct{}, 1)
		e.sys.faultHook = func(persistence.ConversationKey) {
			select {
			case handling <- struct{}{}:
			default:
			}
		}

		first := e.ingestAsync(inbound(k.ContactPhone, "wamid.QC1", "one"))
		<-handling
		c1 := g.next(t)
		second := e.ingestAsync(inbound(k.ContactPhone, "wamid.QC2", "two"))
		<-handling
		// Answered after the second message was handled: it waits for the
		// first write, which is committed and not yet completed.
		cs := snapshotOf(t, e.sys, KindConversation, k.String()).(ConversationSnapshot)
		if cs.PendingItems != 1 || !cs.WriteInFlight || cs.LastSeq != 0 {
			t.Fatalf("while the first write is held: %+v", cs)
		}
		c1()
		acked(t, "first", first)
		g.next(t)()
		acked(t, "second", second)

		cs = snapshotOf(t, e.sys, KindConversation, k.String()).(ConversationSnapshot)
		// Two commands and the first write's completion, sent because the
		// second message waited for it; the second's landed quietly.
		if cs.LastSeq != 2 || cs.PendingItems != 0 || cs.WriteInFlight || cs.Received != 3 {
			t.Fatalf("after both writes: %+v", cs)
		}
		assertSeqs(t, store, k, "wamid.QC1", "wamid.QC2")
	})
}

// A completion that lands while the actor handles its next message (after
// the actor looked for one) is applied before that message is written: the
// message is not left waiting for a wake-up that will not come.
func TestCompletionLandingDuringTheNextMessageIsApplied(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		g := newGatedStore(store)
		e := newEnv(t, g, newFakeProvider(), nil)
		k := key("+919811300002")
		first := e.ingestAsync(inbound(k.ContactPhone, "wamid.QL1", "one"))
		c1 := g.next(t)
		// The second message's handling starts with the first write still
		// in flight; its completion lands before the message is queued.
		landed := make(chan struct{})
		e.sys.faultHook = func(persistence.ConversationKey) {
			select {
			case <-landed:
			default:
				c1()
				close(landed)
			}
		}
		second := e.ingestAsync(inbound(k.ContactPhone, "wamid.QL2", "two"))
		acked(t, "first", first)
		g.next(t)()
		acked(t, "second", second)

		cs := snapshotOf(t, e.sys, KindConversation, k.String()).(ConversationSnapshot)
		if cs.LastSeq != 2 || cs.PendingItems != 0 || cs.WriteInFlight || cs.Received != 2 {
			t.Fatalf("after both writes: %+v", cs)
		}
		assertSeqs(t, store, k, "wamid.QL1", "wamid.QL2")
	})
}

// assertSeqs checks that the conversation's events are the messages of the
// provider ids given, at seqs 1, 2, ... in that order.
func assertSeqs(t *testing.T, store persistence.Store, k persistence.ConversationKey, wamids ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conv, err := store.ConversationByKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := store.ConversationEvents(ctx, conv.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(wamids) {
		t.Fatalf("%d events, want %d", len(evs), len(wamids))
	}
	for i, ev := range evs {
		if ev.Message == nil || ev.Message.ProviderMessageID != wamids[i] || ev.Seq != int64(i+1) || ev.Message.Seq != ev.Seq {
			t.Fatalf("event %d: %+v, want %s at seq %d", i, ev, wamids[i], i+1)
		}
	}
}
