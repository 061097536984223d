package actors

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"urva/persistence"
	"urva/persistence/storetest"
)

func TestRMLoadSpreadsAndReadsOnce(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var reads [][]int64
	stored := map[int64]int64{1: 5, 2: 0, 3: 2}
	l := &rmLoad{now: func() time.Time { return now }, counts: func(_ context.Context, ids []int64) (map[int64]int64, error) {
		reads = append(reads, slices.Clone(ids))
		out := map[int64]int64{}
		for _, id := range ids {
			out[id] = stored[id]
		}
		return out, nil
	}}
	pick := func(online ...int64) int64 {
		t.Helper()
		id, err := l.pick(context.Background(), online)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if got := pick(); got != 0 {
		t.Fatalf("nobody online: %d", got)
	}
	// 2 has 0, 3 has 2, 1 has 5: 2, 2, then 2 and 3 alternate (lowest id
	// first among equals), 1 only once the others reach 5.
	var got []int64
	for range 9 {
		got = append(got, pick(1, 2, 3))
	}
	want := []int64{2, 2, 2, 3, 2, 3, 2, 3, 1}
	if !slices.Equal(got, want) {
		t.Fatalf("picks %v, want %v", got, want)
	}
	if len(reads) != 1 {
		t.Fatalf("counts read %d times (%v), want once", len(reads), reads)
	}
	// A new RM online is read alone; the others keep their counts.
	stored[4] = 1
	if got := pick(1, 2, 3, 4); got != 4 {
		t.Fatalf("new RM with 1 open: picked %d", got)
	}
	if len(reads) != 2 || !slices.Equal(reads[1], []int64{4}) {
		t.Fatalf("reads %v", reads)
	}
	// After refreshAfter the store is asked again (another node's
	// assignments, reassignments): 3 now has nothing, 2 has three.
	stored[2], stored[3] = 3, 0
	now = now.Add(refreshAfter)
	if got := pick(1, 2, 3, 4); got != 3 {
		t.Fatalf("after refresh: picked %d", got)
	}
	if len(reads) != 3 || len(reads[2]) != 4 {
		t.Fatalf("reads %v", reads)
	}
	// A failed read: unknown RMs count as empty, the error is reported.
	now = now.Add(refreshAfter)
	l.counts = func(context.Context, []int64) (map[int64]int64, error) { return nil, errors.New("db down") }
	if id, err := l.pick(context.Background(), []int64{7, 8}); id != 7 || err == nil {
		t.Fatalf("failed read: %d %v", id, err)
	}
}

// TestBurstOfNewContactsIsSpreadOverOnlineRMs: new contacts arriving
// together are shared out evenly, not all given to the RM that was least
// loaded when the burst began.
func TestBurstOfNewContactsIsSpreadOverOnlineRMs(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e := newEnv(t, store, newFakeProvider(), nil)
		connA, _ := e.connect(e.rmA, nil)
		connB, _ := e.connect(e.rmB, nil)
		const n = 40
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.ingest(inbound(phoneN(i), "wamid.SPREAD"+phoneN(i), "hi"))
			}()
		}
		wg.Wait()
		for _, c := range []*fakeConn{connA, connB} {
			for range n / 2 {
				if f := c.next(t); f.Type != "message" {
					t.Fatalf("frame %+v", f)
				}
			}
			c.none(t)
		}
		for _, p := range []Principal{e.rmA, e.rmB} {
			list, err := e.sys.Conversations(context.Background(), p, 100)
			if err != nil || len(list) != n/2 {
				t.Fatalf("RM %d has %d conversations (%v), want %d", p.RMID, len(list), err, n/2)
			}
		}
	})
}

func phoneN(i int) string {
	return "+9198222" + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "000"
}
