package gcpace

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

const mb = 1 << 20

func TestPercent(t *testing.T) {
	cases := []struct {
		live, roots, goal uint64
		base, want        int
	}{
		{17 * mb, 0, 256 * mb, 100, 1405},       // small live heap: the goal is the floor
		{17 * mb, 3 * mb, 256 * mb, 100, 1195},  // stacks and globals count: (256-17)/(17+3)
		{2 * mb, 2 * mb, 256 * mb, 100, 6350},   // roots as large as the heap halve it
		{128 * mb, 0, 256 * mb, 100, 100},       // live at half the floor: GOGC as it was
		{100 * mb, 40 * mb, 256 * mb, 100, 111}, // ...unless the roots are large
		{200 * mb, 0, 256 * mb, 100, 100},       // the floor would lower the percent: never
		{300 * mb, 0, 256 * mb, 100, 100},       // live above the floor
		{100 * mb, 0, 256 * mb, 200, 200},       // a higher starting percent stays
		{64 * mb, 0, 256 * mb, 200, 300},        // ...until the floor asks more
		{0, 0, 256 * mb, 100, 6400},             // nothing live yet: the runtime's minimum is the floor
		{1, 0, 1 << 40, 100, 26214400},          // 1 TiB: no overflow
		{mb, 0, 2*mb + mb/2, 100, 100},          // a floor under the runtime's 4 MiB minimum: base
		{mb, 0, 12 * mb, 100, 300},              // 1100 would put the minimum at 44 MiB
		{mb, 0, 50 * mb, 100, 1250},             // min(4900, 5000/4)
		{4 * mb, mb, 20 * mb, 100, 320},         // 16/5*100, under the minimum's 500
		{256 * mb, 0, 256 * mb, 100, 100},       // exactly the floor
		{255 * mb, 0, 256 * mb, 50, 50},         // base below 100 kept too
		{10 * mb, 0, 256 * mb, 50, 2460},        // ...and raised by the floor
		{4 * mb, 0, 4*mb + 1, 100, 100},         // almost equal: base
		{1 * mb, 0, 1000 * mb, 100, 25000},      // 99900 capped by the minimum
		{30 * mb, 0, 1024 * mb, 100, 3313},      // 994/30*100, rounded down
		{12345, 0, 1 << 30, 100, 25600},         // small live in bytes: the minimum
	}
	for _, c := range cases {
		if got := Percent(c.live, c.roots, c.goal, c.base); got != c.want {
			t.Errorf("Percent(%d, %d, %d, %d) = %d, want %d", c.live, c.roots, c.goal, c.base, got, c.want)
		}
	}
}

func TestHeadroom(t *testing.T) {
	cases := []struct {
		rate     float64
		interval time.Duration
		limit    uint64
		want     uint64
	}{
		{60 * mb, 4 * time.Second, 256 * mb, 240 * mb},  // 60 MB/s for 4 s
		{120 * mb, 4 * time.Second, 256 * mb, 256 * mb}, // capped
		{0, 4 * time.Second, 256 * mb, 0},               // idle: nothing
		{-1, 4 * time.Second, 256 * mb, 0},              // a clock that went back
		{math.NaN(), time.Second, 256 * mb, 0},          // no interval measured
		{math.Inf(1), time.Second, 256 * mb, 256 * mb},  // zero time, some bytes
		{1000, 500 * time.Millisecond, 256 * mb, 500},   // fractions of a second
	}
	for _, c := range cases {
		if got := Headroom(c.rate, c.interval, c.limit); got != c.want {
			t.Errorf("Headroom(%v, %v, %d) = %d, want %d", c.rate, c.interval, c.limit, got, c.want)
		}
	}
}

// gcPercent is the percent the runtime runs with.
func gcPercent() int {
	s := []metrics.Sample{{Name: percentMetric}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

type adjustment struct {
	Adjustment
	goal uint64 // the runtime's heap goal right after the adjustment
}

// garbage allocates n bytes nobody keeps.
func garbage(n int) {
	for range n / (64 << 10) {
		b := make([]byte, 64<<10)
		b[0] = 1
		sink.Store(&b)
	}
}

var sink atomic.Pointer[[]byte]

// TestDecide walks the pacer through a day: steady load, a forced
// collection, sockets connecting, idle.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	// Warmed up: the live heap was 17 MB at two evaluations in a row.
	p := &Pacer{interval: 4 * time.Second, headroom: 256 * mb, base: 100, percent: 100, lastAt: t0, lastLive: 17 * mb, steady: true}
	var allocs, forced uint64
	at := t0
	steps := []struct {
		name        string
		after       time.Duration
		live, alloc uint64
		force       bool
		want        Adjustment // At and Live are filled in
	}{
		{name: "30 MB/s over 20 MB scanned: 120 MB of room", after: time.Second, live: 17 * mb, alloc: 30 * mb,
			want: Adjustment{Measured: true, Rate: 30 * mb, Headroom: 120 * mb, Percent: 600}},
		{name: "a change under 5% is not made", after: time.Second, live: 17*mb + mb/2, alloc: 30 * mb,
			want: Adjustment{Measured: true, Rate: 30 * mb, Headroom: 120 * mb, Percent: 600}},
		{name: "no time passed: nothing measured", after: 0, live: 17 * mb, alloc: mb,
			want: Adjustment{Percent: 600}},
		{name: "...and the bytes count next time", after: time.Second, live: 17 * mb, alloc: 14 * mb,
			want: Adjustment{Measured: true, Rate: 15 * mb, Headroom: 60 * mb, Percent: 300}},
		{name: "forced: GOGC as it was", after: time.Second, live: 17 * mb, alloc: 30 * mb, force: true,
			want: Adjustment{Measured: true, Forced: true, Percent: 100}},
		{name: "after a forced collection, steady first", after: time.Second, live: 17 * mb, alloc: 30 * mb,
			want: Adjustment{Measured: true, Growing: true, Percent: 100}},
		{name: "paced again", after: time.Second, live: 17 * mb, alloc: 30 * mb,
			want: Adjustment{Measured: true, Rate: 30 * mb, Headroom: 120 * mb, Percent: 600}},
		{name: "capped at the headroom and at MaxPercent", after: time.Second, live: 17 * mb, alloc: 100 * mb,
			want: Adjustment{Measured: true, Rate: 100 * mb, Headroom: 256 * mb, Percent: 800}},
		{name: "sockets connecting: live heap up by more than a tenth", after: time.Second, live: 60 * mb, alloc: 100 * mb,
			want: Adjustment{Measured: true, Growing: true, Percent: 100}},
		{name: "steady once after growing is not enough", after: time.Second, live: 62 * mb, alloc: 60 * mb,
			want: Adjustment{Measured: true, Growing: true, Percent: 100}},
		{name: "steady twice: paced", after: time.Second, live: 62 * mb, alloc: 60 * mb,
			want: Adjustment{Measured: true, Rate: 60 * mb, Headroom: 240 * mb, Percent: 369}},
		{name: "idle: 10 KB/s leaves GOGC alone", after: 100 * time.Second, live: 62 * mb, alloc: mb,
			want: Adjustment{Measured: true, Rate: 10485.76, Headroom: 41943, Percent: 100}},
		{name: "a shrinking heap is paced", after: time.Second, live: 20 * mb, alloc: 30 * mb,
			want: Adjustment{Measured: true, Rate: 30 * mb, Headroom: 120 * mb, Percent: 521}},
		{name: "small heaps: growth under 4 MiB is not growth", after: time.Second, live: 23 * mb, alloc: 30 * mb,
			want: Adjustment{Measured: true, Rate: 30 * mb, Headroom: 120 * mb, Percent: 461}},
		{name: "7 MiB on 23 is growth", after: time.Second, live: 30 * mb, alloc: 30 * mb,
			want: Adjustment{Measured: true, Growing: true, Percent: 100}},
	}
	for _, st := range steps {
		at = at.Add(st.after)
		allocs += st.alloc
		if st.force {
			forced++
		}
		got := p.decide(reading{at: at, live: st.live, roots: 3 * mb, allocs: allocs, forced: forced})
		st.want.At, st.want.Live = at, st.live
		if got != st.want {
			t.Fatalf("%s:\n got %+v\nwant %+v", st.name, got, st.want)
		}
		p.percent = got.Percent
	}
}

// TestPacerPacesTheRuntime runs a pacer of one cycle per second with 64 MB
// of headroom on a clock the test moves: after a second with 200 MB
// allocated, a cycle the runtime starts by itself sets GOGC so that the goal
// is the live heap plus 64 MB; a forced collection sets it back; after Stop,
// the starting percent stays whatever the load.
func TestPacerPacesTheRuntime(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skipf("GOGC=%s set for the tests: the pacer starts from it", os.Getenv("GOGC"))
	}
	base := gcPercent()
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	events := make(chan adjustment, 4096)
	p := start(time.Second, 64*mb, now, func(a Adjustment) {
		goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
		metrics.Read(goal)
		select {
		case events <- adjustment{a, goal[0].Value.Uint64()}:
		default:
		}
	})
	if p == nil {
		t.Fatal("start returned nil with the collector on")
	}
	defer p.Stop()
	drain := func() {
		for {
			select {
			case <-events:
			default:
				return
			}
		}
	}
	// next waits for the first evaluation at the clock's time that measured
	// (and, with forced, that a forced collection made), calling nudge
	// (which allocates or collects) until it comes. A cycle the runtime
	// starts by itself between the clock's move and a forced one measures
	// at the same time: a forced collection waits past it.
	next := func(nudge func(), forced bool) adjustment {
		t.Helper()
		at := now()
		nudge()
		again := time.NewTicker(5 * time.Millisecond)
		defer again.Stop()
		deadline := time.After(time.Minute)
		for {
			select {
			case a := <-events:
				if a.Measured && a.At.Equal(at) && (a.Forced || !forced) {
					return a
				}
			case <-again.C:
				nudge()
			case <-deadline:
				t.Fatal("no evaluation a minute after the clock moved")
				return adjustment{}
			}
		}
	}
	// automatic allocates n bytes of garbage with the clock standing still
	// (the cycles the runtime runs meanwhile leave the bytes to the next
	// evaluation), moves the clock by d and allocates until the runtime
	// collects by itself.
	automatic := func(d time.Duration, n int) adjustment {
		t.Helper()
		garbage(n)
		drain()
		clock.Add(int64(d))
		return next(func() { garbage(4 << 20) }, false)
	}

	// Objects allocated while a cycle marks count as live, so amid fast
	// allocation a cycle can find much of the garbage live and see the heap
	// grow: such cycles are set aside (TestDecide covers them).
	var busy adjustment
	for range 20 {
		if busy = automatic(time.Second, 200*mb); !busy.Growing && !busy.Forced {
			break
		}
	}
	if busy.Growing || busy.Rate < 150*mb || busy.Headroom != 64*mb {
		t.Fatalf("busy second: %+v; want a rate about 200 MB/s and 64 MB of headroom", busy.Adjustment)
	}
	if got := gcPercent(); got != busy.Percent {
		t.Fatalf("runtime runs with GOGC %d, the pacer set %d", got, busy.Percent)
	}
	if busy.Live < 32*mb && busy.Percent <= base {
		t.Fatalf("busy: live %d MiB: percent %d, want above %d", busy.Live/mb, busy.Percent, base)
	}
	// The runtime follows the percent: its goal is at least its minimum
	// scaled by the percent, and never beyond the headroom (give or take
	// the 5% the pacer lets pass). With the test's small heap the percent
	// is MaxPercent's.
	if busy.Percent > base {
		lo, hi := uint64(heapMinimum*busy.Percent/100), (busy.Live+64*mb)*106/100
		if busy.goal < lo || busy.goal > hi {
			t.Fatalf("busy: live %d MiB, percent %d: heap goal %d MiB, want %d to %d", busy.Live/mb, busy.Percent, busy.goal/mb, lo/mb, hi/mb)
		}
	}

	drain()
	clock.Add(int64(time.Millisecond))
	if forced := next(runtime.GC, true); !forced.Forced || forced.Percent != base {
		t.Fatalf("forced collection: %+v; want the starting percent %d", forced.Adjustment, base)
	}
	if got := gcPercent(); got != base {
		t.Fatalf("after a forced collection the runtime runs with GOGC %d, want %d", got, base)
	}

	// Stopped: the starting percent stays, whatever the load.
	automatic(time.Second, 200*mb)
	p.Stop()
	if got := gcPercent(); got != base {
		t.Fatalf("after Stop the runtime runs with GOGC %d, want %d", got, base)
	}
	garbage(200 * mb)
	clock.Add(int64(time.Second))
	garbage(200 * mb)
	if got := gcPercent(); got != base {
		t.Fatalf("a cycle after Stop set GOGC %d, want %d", got, base)
	}
}

func TestStartOff(t *testing.T) {
	if p := Start(0, 64*mb); p != nil {
		p.Stop()
		t.Fatal("a zero interval started")
	}
	if p := Start(time.Second, 0); p != nil {
		p.Stop()
		t.Fatal("a zero headroom started")
	}
	old := debug.SetGCPercent(-1) // GOGC=off
	p := Start(time.Second, 64*mb)
	debug.SetGCPercent(old)
	if p != nil {
		p.Stop()
		t.Fatal("started with the collector off")
	}
	p = nil
	p.Stop() // a nil pacer stops quietly
}
