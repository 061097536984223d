package main

import (
	"context"
	"math"
	"net"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestLoadWindowIsTheCountedSends: the window the generator tells before
// its first send is the one it counts: every send it counts in its window
// was intended inside the window told, every other acknowledged send
// outside it.
func TestLoadWindowIsTheCountedSends(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.SetStatusCode(fasthttp.StatusOK) }}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Shutdown() }()

	var mu sync.Mutex
	intended := map[int64]time.Time{} // seq -> intended send time
	acked, counted := map[int64]bool{}, map[int64]bool{}
	var from, to time.Time
	windows, sendsBefore := 0, 0
	l := &load{addr: ln.Addr().String(), path: "/webhooks/whatsapp", conns: 4, rate: 2000,
		warmup: 100 * time.Millisecond, duration: 300 * time.Millisecond, contacts: 10}
	l.window = func(f, tt time.Time) {
		mu.Lock()
		defer mu.Unlock()
		windows++
		sendsBefore = len(intended)
		from, to = f, tt
	}
	l.text = func(seq int64, at time.Time) string {
		mu.Lock()
		defer mu.Unlock()
		intended[seq] = at
		return "m"
	}
	l.onAck = func(seq int64) { mu.Lock(); acked[seq] = true; mu.Unlock() }
	l.onOK = func(seq int64) { mu.Lock(); counted[seq] = true; mu.Unlock() }
	r := l.run(context.Background())

	mu.Lock()
	defer mu.Unlock()
	if windows != 1 || sendsBefore != 0 {
		t.Fatalf("window told %d times, after %d sends; want once, before any", windows, sendsBefore)
	}
	if r.ok == 0 || int64(len(counted)) != r.ok || len(acked) <= len(counted) {
		t.Fatalf("%d acknowledged, %d counted, ok %d: want warm-up sends and counted ones", len(acked), len(counted), r.ok)
	}
	for seq := range acked {
		at := intended[seq]
		in := !at.Before(from) && at.Before(to)
		if in != counted[seq] {
			t.Fatalf("send %d intended at %v: in the window told [%v, %v) %v, counted %v", seq, at, from, to, in, counted[seq])
		}
	}
}

func TestQuietCollector(t *testing.T) {
	restore := func() {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	}
	defer restore()

	quietCollector(1 << 30)
	if prev := debug.SetGCPercent(100); prev != -1 {
		t.Errorf("GOGC %d after quietCollector, want off", prev)
	}
	if lim := debug.SetMemoryLimit(-1); lim != 1<<30 {
		t.Errorf("memory limit %d, want %d", lim, 1<<30)
	}
	restore()

	quietCollector(0) // Go's default asked for
	if prev := debug.SetGCPercent(100); prev != 100 {
		t.Errorf("GOGC %d with -gen-memory 0, want 100", prev)
	}
	t.Setenv("GOGC", "200") // the environment's own setting wins
	quietCollector(1 << 30)
	if prev := debug.SetGCPercent(100); prev != 100 {
		t.Errorf("GOGC %d with GOGC in the environment, want it left alone", prev)
	}
}
