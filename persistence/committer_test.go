package persistence

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestBatchCloseAt: a batch closes at its deadline, or once no write has
// come for four times the writes' mean spacing (at least 25 µs each).
func TestBatchCloseAt(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	deadline := t0.Add(2 * time.Millisecond)
	at := func(offsets ...time.Duration) []*op {
		q := make([]*op, len(offsets))
		for i, d := range offsets {
			q[i] = &op{enqueued: t0.Add(d)}
		}
		return q
	}
	us := time.Microsecond
	burst := make([]time.Duration, 10)
	for i := range burst {
		burst[i] = time.Duration(i) * 16 * us
	}
	cases := []struct {
		name     string
		queue    []*op
		waitFull bool
		want     time.Time
	}{
		{"one write: the deadline", at(0), false, deadline},
		{"a burst 16 µs apart: 4 x 25 µs after the last", at(burst...), false, t0.Add(144*us + 100*us)},
		{"200 µs apart: 800 µs after the last", at(0, 200*us, 400*us), false, t0.Add(1200 * us)},
		{"600 µs apart: the deadline comes first", at(0, 600*us, 1200*us), false, deadline},
		{"two at the same instant: 100 µs later", at(0, 0), false, t0.Add(100 * us)},
		{"BatchWaitFull: the deadline", at(burst...), true, deadline},
	}
	for _, c := range cases {
		cm := &committer{s: &store{cfg: Config{BatchWaitFull: c.waitFull}}, queue: c.queue}
		if got := cm.closeAtLocked(deadline); !got.Equal(c.want) {
			t.Errorf("%s: closes at +%v, want +%v", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
}

// TestHeldConn: the committer's connection is the same batch after batch
// for connHold, and then goes back to the pool for another.
func TestHeldConn(t *testing.T) {
	db, err := sql.Open("sqlite", "file::memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	var h heldConn
	c1, err := h.get(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := h.get(ctx, db); err != nil || c2 != c1 {
		t.Fatalf("second get: %p %v, want the held %p", c2, err, c1)
	}
	h.since = h.since.Add(-connHold)
	c3, err := h.get(ctx, db)
	if err != nil || c3 == c1 {
		t.Fatalf("get after connHold: %p %v, want another than %p", c3, err, c1)
	}
	// The old one was given back, and the pool handed it out again
	// (checking it on the way): one connection open, in use.
	if st := db.Stats(); st.InUse != 1 || st.OpenConnections != 1 {
		t.Fatalf("pool after the change: %d in use, %d open; want the one connection taken again", st.InUse, st.OpenConnections)
	}
	h.release()
	if st := db.Stats(); st.InUse != 0 || h.conn != nil {
		t.Fatalf("after release: %d in use, held %v", st.InUse, h.conn)
	}
}
