// Package gcpace spaces the garbage collector's cycles out while the server
// is busy, within a bounded amount of extra memory.
//
// Go's collector starts a cycle when the heap has grown by GOGC percent over
// what the last cycle found live. A server whose live heap is small but
// which allocates quickly (every webhook decoded, stored and pushed leaves
// garbage behind) therefore collects several times a second, and each cycle
// takes CPU from the requests in flight: with 17 MB live and 60 MB/s
// allocated, the server collected every 270 ms, and the messages that
// arrived during a cycle were most of the slowest ones.
//
// A Pacer re-reads the heap after every cycle and measures how fast the
// server allocated since the one before. It then sets GOGC so that the next
// goal leaves room for one Interval of allocation at that rate, capped at
// Headroom bytes over the live heap, and never below the percent the process
// started with. An idle server allocates next to nothing, so its goal falls
// back to what GOGC alone gives at the next cycle; a busy one spends at most
// Headroom more memory to collect about once per Interval. While the live
// heap grows (a burst of sockets connecting), until it has been steady at
// two evaluations in a row, and after a forced collection, GOGC applies as
// it was: the runtime keeps the pages it used up to its
// goal, so garbage let in then would stay as resident memory. A memory limit
// (GOMEMLIMIT) still applies over it. It is the dynamic form of a heap
// ballast, paid only under steady load.
package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// The runtime's figures the pacer reads; live, stack and globals are what
// the runtime computes its next goal from.
const (
	liveMetric    = "/gc/heap/live:bytes"
	stackMetric   = "/gc/scan/stack:bytes"
	globalsMetric = "/gc/scan/globals:bytes"
	percentMetric = "/gc/gogc:percent"
	allocsMetric  = "/gc/heap/allocs:bytes"
	forcedMetric  = "/gc/cycles/forced:gc-cycles"
)

// Adjustment is what one re-evaluation found and set.
type Adjustment struct {
	At       time.Time
	Measured bool    // false when no time had passed since the last evaluation: nothing changed
	Forced   bool    // a collection was asked for (runtime.GC, debug.FreeOSMemory): GOGC as it was
	Growing  bool    // the live heap grew by more than a tenth (and 4 MiB) at this evaluation or the one before: GOGC as it was
	Live     uint64  // heap the last cycle marked live
	Rate     float64 // bytes allocated per second since the previous evaluation
	Headroom uint64  // the room the pacer asked for over Live
	Percent  int     // the GOGC percent in force afterwards
}

// Pacer is a running pacer; Stop ends it.
type Pacer struct {
	interval time.Duration
	headroom uint64
	base     int // the GOGC percent the process had when the pacer started
	now      func() time.Time
	onAdjust func(Adjustment) // tests

	mu         sync.Mutex
	stopped    bool
	percent    int // what the pacer last set
	lastAllocs uint64
	lastForced uint64
	lastLive   uint64
	steady     bool // the last evaluation found the live heap steady
	lastAt     time.Time
	samples    []metrics.Sample
}

// Start paces the collector to about one cycle per interval while the
// server allocates, spending at most headroom bytes over the live heap for
// it. It returns nil, changing nothing, when interval or headroom is 0 or
// the collector is off (GOGC=off).
func Start(interval time.Duration, headroom uint64) *Pacer {
	return start(interval, headroom, time.Now, nil)
}

func start(interval time.Duration, headroom uint64, now func() time.Time, onAdjust func(Adjustment)) *Pacer {
	if interval <= 0 || headroom == 0 {
		return nil
	}
	samples := []metrics.Sample{{Name: liveMetric}, {Name: stackMetric}, {Name: globalsMetric}, {Name: percentMetric}, {Name: allocsMetric}, {Name: forcedMetric}}
	metrics.Read(samples)
	if samples[3].Value.Kind() != metrics.KindUint64 {
		return nil // a runtime without the figures the pacer needs
	}
	base := int(samples[3].Value.Uint64()) // GOGC=off reads as -1
	if base <= 0 {
		return nil // GOGC=off: the memory limit alone decides
	}
	p := &Pacer{
		interval: interval, headroom: headroom, base: base, now: now, onAdjust: onAdjust,
		percent: base, lastAllocs: samples[4].Value.Uint64(), lastForced: samples[5].Value.Uint64(), lastAt: now(),
		samples: samples,
	}
	p.arm()
	return p
}

// Stop ends the pacer and gives the collector back its starting percent.
func (p *Pacer) Stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.percent != p.base {
		debug.SetGCPercent(p.base)
		p.percent = p.base
	}
}

// sentinel is a heap object nobody keeps: the cycle that finds it dead runs
// its cleanup, which re-evaluates the pace and leaves a new sentinel for the
// next cycle. It holds a pointer so that the tiny allocator, whose blocks
// die together, does not pack it with other small objects.
type sentinel struct {
	_ *byte
}

func (p *Pacer) arm() {
	runtime.AddCleanup(&sentinel{}, func(p *Pacer) {
		if p.adjust() {
			p.arm()
		}
	}, p)
}

// adjust reads the runtime's figures, decides and sets the percent; false
// once stopped.
func (p *Pacer) adjust() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return false
	}
	metrics.Read(p.samples)
	a := p.decide(reading{
		at:     p.now(),
		live:   p.samples[0].Value.Uint64(),
		roots:  p.samples[1].Value.Uint64() + p.samples[2].Value.Uint64(),
		allocs: p.samples[4].Value.Uint64(),
		forced: p.samples[5].Value.Uint64(),
	})
	if a.Percent != p.percent {
		debug.SetGCPercent(a.Percent)
		p.percent = a.Percent
	}
	if p.onAdjust != nil {
		p.onAdjust(a)
	}
	return true
}

// reading is what the pacer reads after a cycle.
type reading struct {
	at     time.Time
	live   uint64 // heap the cycle marked
	roots  uint64 // stacks and globals it scanned
	allocs uint64 // bytes allocated since the process started
	forced uint64 // forced cycles since the process started
}

// decide returns the adjustment for r and remembers r for the next one.
func (p *Pacer) decide(r reading) Adjustment {
	a := Adjustment{At: r.at, Live: r.live, Percent: p.percent}
	var pc int
	switch dt := r.at.Sub(p.lastAt); {
	case r.forced != p.lastForced:
		// Whoever forced a collection asked for memory back (an operator's
		// heap profile with gc=1, FreeOSMemory): GOGC as it was until the
		// next cycle measures the rate afresh.
		a.Measured, a.Forced = true, true
		pc = p.base
		p.steady = false
	case dt <= 0:
		// No time to measure a rate over (a clock that stands still):
		// the bytes count towards the next evaluation.
		return a
	case r.live > p.lastLive+max(p.lastLive/10, heapMinimum) || !p.steady:
		// The server is taking on state (sockets connecting, conversations
		// opening), now or at the evaluation before: GOGC's headroom grows
		// with it, and garbage let in now would leave the heap that much
		// larger for good, since the runtime keeps the pages it used up to
		// its next goal. A burst grows the heap unevenly from cycle to
		// cycle, so pacing waits for two steady evaluations in a row.
		a.Measured, a.Growing = true, true
		pc = p.base
		p.steady = r.live <= p.lastLive+max(p.lastLive/10, heapMinimum)
	default:
		a.Measured = true
		a.Rate = float64(r.allocs-p.lastAllocs) / dt.Seconds()
		a.Headroom = Headroom(a.Rate, p.interval, p.headroom)
		pc = min(Percent(r.live, r.roots, r.live+a.Headroom, p.base), max(MaxPercent, p.base))
	}
	p.lastAllocs, p.lastForced, p.lastAt, p.lastLive = r.allocs, r.forced, r.at, r.live
	// A change of a few percent is not worth the runtime's recomputation.
	if pc != p.percent && (pc == p.base || diff(pc, p.percent)*20 > p.percent) {
		a.Percent = pc
	}
	return a
}

// Headroom is the room for one interval of allocation at rate bytes per
// second, at most limit.
func Headroom(rate float64, interval time.Duration, limit uint64) uint64 {
	h := rate * interval.Seconds()
	if !(h > 0) { // also NaN
		return 0
	}
	if h >= float64(limit) {
		return limit
	}
	return uint64(h)
}

// MaxPercent is the most the pacer sets: garbage may take at most eight
// times the live heap (with its roots). A burst that starts from a small
// heap, the first of a morning's thousands of sockets connecting, looks like
// steady churn at its first cycle; the cap keeps its goal near what the heap
// will hold, where the next cycles see the heap grow.
const MaxPercent = 800

// heapMinimum is the runtime's smallest heap goal at GOGC=100; it scales
// with the percent (4 MiB * p/100), so a percent above goal/heapMinimum*100
// would put the runtime's goal above the one asked for whatever the live
// heap.
const heapMinimum = 4 << 20

// Percent is the GOGC percent that puts the runtime's next heap goal at
// goal, and never below base. The runtime's goal is live + (live+roots)*p/100,
// where live is the heap the last cycle marked and roots the stacks and
// globals it scanned (with a large percent the roots weigh as much as the
// heap), and never less than heapMinimum*p/100.
func Percent(live, roots, goal uint64, base int) int {
	if live >= goal {
		return base
	}
	most := goal * 100 / heapMinimum
	scanned := max(live+roots, 1)
	p := most
	if goal/scanned < most { // else (goal-live)*100/scanned is above most anyway
		p = min((goal-live)*100/scanned, most)
	}
	return max(int(p), base)
}

func diff(a, b int) int {
	if a > b {
		return a - b
	}
	return b - a
}
