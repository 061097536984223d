package persistence

import (
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
