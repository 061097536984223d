package actors

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hooked returns a dispatcher whose parks and exits are reported on the
// returned channels.
func hooked(maxIdle int, idleFor time.Duration) (*workerDispatcher, chan struct{}, chan struct{}) {
	d := newWorkerDispatcher(mailboxThroughput, maxIdle, idleFor)
	parked, exited := make(chan struct{}, 64), make(chan struct{}, 64)
	d.onPark = func() { parked <- struct{}{} }
	d.onExit = func() { exited <- struct{}{} }
	return d, parked, exited
}

// await receives from ch; a dispatcher that lost the event fails the test
// instead of hanging it.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
	}
}

// deep uses about n KB of stack.
//
//go:noinline
func deep(n int) byte {
	var pad [1024]byte
	pad[n%1024] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[n%1024]
}

func TestWorkerDispatcherReusesParkedWorker(t *testing.T) {
	d, parked, exited := hooked(4, time.Hour)
	var gids sync.Map
	var runs atomic.Int32
	for i := range 3 {
		done := make(chan struct{})
		d.Schedule(func() {
			deep(48) // the stack grows once, on the first run
			runs.Add(1)
			gids.Store(i, struct{}{})
			close(done)
		})
		await(t, done, "run")
		await(t, parked, "park")
	}
	if n := runs.Load(); n != 3 {
		t.Fatalf("%d runs, want 3", n)
	}
	select {
	case <-exited:
		t.Fatal("a worker exited while it could park")
	default:
	}
	if n := d.parkedWorkers(); n != 1 {
		t.Fatalf("%d parked workers after three runs one after another, want 1 (reused)", n)
	}
	if n := d.started.Load(); n != 1 {
		t.Fatalf("%d workers started for three runs one after another, want 1", n)
	}
}

// A scheduled function that blocks does not hold up the next one: each
// gets a worker of its own when none is parked.
func TestWorkerDispatcherNeverQueuesBehindABlockedRun(t *testing.T) {
	d, _, _ := hooked(4, time.Hour)
	release := make(chan struct{})
	finished := make(chan struct{})
	d.Schedule(func() { <-release; close(finished) })
	d.Schedule(func() { close(release) })
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("the second function never ran while the first blocked")
	}
}

// runBlocked schedules n functions that block until the returned release
// is called, and returns once all n run (on n workers, none parked).
func runBlocked(d *workerDispatcher, n int) (release func()) {
	ch := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		d.Schedule(func() { started.Done(); <-ch })
	}
	started.Wait()
	return func() { close(ch) }
}

// Workers beyond maxIdle exit once their run ends; parked ones exit after
// idleFor.
func TestWorkerDispatcherParking(t *testing.T) {
	for _, tc := range []struct {
		name              string
		maxIdle           int
		idleFor           time.Duration
		parks, exits, end int // of five workers; parked at the end
	}{
		{"at most maxIdle parked", 2, time.Hour, 2, 3, 2},
		{"parked workers expire", 8, time.Millisecond, 5, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, parked, exited := hooked(tc.maxIdle, tc.idleFor)
			runBlocked(d, 5)()
			for range tc.parks {
				await(t, parked, "park")
			}
			for range tc.exits {
				await(t, exited, "exit")
			}
			if n := d.parkedWorkers(); n != tc.end {
				t.Fatalf("%d parked workers, want %d", n, tc.end)
			}
			// Still usable.
			done := make(chan struct{})
			d.Schedule(func() { close(done) })
			await(t, done, "run")
		})
	}
}

// Every function scheduled from many goroutines runs exactly once.
func TestWorkerDispatcherRunsEachOnce(t *testing.T) {
	d := newWorkerDispatcher(mailboxThroughput, 8, 50*time.Millisecond)
	const senders, each = 8, 2000
	var ran [senders * each]atomic.Int32
	var wg sync.WaitGroup
	wg.Add(senders * each)
	for s := range senders {
		go func() {
			for i := range each {
				k := s*each + i
				d.Schedule(func() { ran[k].Add(1); wg.Done() })
			}
		}()
	}
	wg.Wait()
	for k := range ran {
		if n := ran[k].Load(); n != 1 {
			t.Fatalf("function %d ran %d times", k, n)
		}
	}
}

func BenchmarkMailboxSchedule(b *testing.B) {
	for _, bc := range []struct {
		name     string
		schedule func(func())
	}{
		{"goroutine", func(f func()) { go f() }},
		{"workers", newWorkerDispatcher(mailboxThroughput, maxParkedWorkers, workerIdleFor).Schedule},
	} {
		b.Run(bc.name, func(b *testing.B) {
			done := make(chan struct{}, 1)
			run := func() { deep(24); done <- struct{}{} }
			for b.Loop() {
				bc.schedule(run)
				<-done
			}
		})
	}
}
