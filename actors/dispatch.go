package actors

import (
	"sync"
	"sync/atomic"
	"time"
)

// Mailbox runs on goroutines that outlive them.
//
// Proto.Actor's default dispatcher starts a goroutine each time a mailbox
// gets messages after it emptied: nearly every message of a conversation or
// an RM session at ordinary rates. A new goroutine starts with the runtime's
// small starting stack, and an actor's Receive (a write's completion, the
// fan-out to sockets) needs several times that: the stack was copied while
// it grew, about 3 to 5 times per run, a tenth of the server's CPU at 5,000
// messages a second (runtime.newstack in a profile of bin/urva-load e2e).
//
// workerDispatcher runs each scheduled mailbox on a parked worker, whose
// stack has already grown, or on a new goroutine when none is parked, so
// that a mailbox never waits for another (the same as one goroutine per
// run). A worker whose mailbox ran parks, up to maxIdle of them, most
// recently parked first (its stack is warm); workers parked for longer than
// idleFor exit.

// The System's dispatcher: Proto.Actor's default throughput; enough parked
// workers for the mailboxes that run at once under load, whose stacks (tens
// of KB each) are given back within seconds once the load is gone.
const (
	mailboxThroughput = 300
	maxParkedWorkers  = 256
	workerIdleFor     = 2 * time.Second
)

// workerDispatcher is a Proto.Actor dispatcher (Schedule, Throughput) that
// runs what it is given on parked workers (see above).
type workerDispatcher struct {
	throughput int
	maxIdle    int
	idleFor    time.Duration

	mu    sync.Mutex
	idle  []*worker // oldest first
	sweep *time.Timer
	// started counts the workers started: it climbs with the load only
	// while more mailboxes run at once than maxIdle workers can serve.
	started atomic.Int64

	// Tests: called after a worker parked, and as one exits.
	onPark, onExit func()
}

type worker struct {
	run    chan func() // nil received: exit
	parked time.Time
}

func newWorkerDispatcher(throughput, maxIdle int, idleFor time.Duration) *workerDispatcher {
	return &workerDispatcher{throughput: throughput, maxIdle: maxIdle, idleFor: idleFor}
}

// Throughput is how many messages a mailbox handles before it yields.
func (d *workerDispatcher) Throughput() int { return d.throughput }

// Schedule runs fn on a parked worker, or on a new one.
func (d *workerDispatcher) Schedule(fn func()) {
	d.mu.Lock()
	if n := len(d.idle); n > 0 {
		w := d.idle[n-1]
		d.idle[n-1] = nil
		d.idle = d.idle[:n-1]
		d.mu.Unlock()
		w.run <- fn
		return
	}
	d.mu.Unlock()
	d.started.Add(1)
	go d.work(&worker{run: make(chan func(), 1)}, fn)
}

func (d *workerDispatcher) work(w *worker, fn func()) {
	if d.onExit != nil {
		defer d.onExit()
	}
	for fn != nil {
		fn()
		if !d.park(w) {
			return
		}
		if d.onPark != nil {
			d.onPark()
		}
		fn = <-w.run
	}
}

// park adds w to the idle workers; false when there are maxIdle already.
func (d *workerDispatcher) park(w *worker) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.idle) >= d.maxIdle {
		return false
	}
	w.parked = time.Now() // under the lock: idle stays in parking order
	d.idle = append(d.idle, w)
	if d.sweep == nil {
		d.sweep = time.AfterFunc(d.idleFor, d.expire)
	}
	return true
}

// expire stops the workers parked for idleFor or longer, and looks again
// while any are parked.
func (d *workerDispatcher) expire() {
	cutoff := time.Now().Add(-d.idleFor)
	d.mu.Lock()
	n := 0
	for n < len(d.idle) && !d.idle[n].parked.After(cutoff) {
		d.idle[n].run <- nil
		n++
	}
	rest := copy(d.idle, d.idle[n:])
	clear(d.idle[rest:])
	d.idle = d.idle[:rest]
	d.sweep = nil
	if rest > 0 {
		d.sweep = time.AfterFunc(d.idle[0].parked.Sub(cutoff), d.expire)
	}
	d.mu.Unlock()
}

// parkedWorkers reports how many workers are parked.
func (d *workerDispatcher) parkedWorkers() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.idle)
}

// WorkerStats describes the goroutines that run the actors' mailboxes and
// the sockets' frame writers.
type WorkerStats struct {
	// Parked workers wait for the next mailbox to run.
	Parked int64
	// Started counts the workers started since the System started.
	Started int64
}

// WorkerStats reads the dispatcher's figures.
func (s *System) WorkerStats() WorkerStats {
	return WorkerStats{Parked: int64(s.dispatch.parkedWorkers()), Started: s.dispatch.started.Load()}
}
