package actors

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// gateConn is a socket whose writes wait for the test: each WriteFrames
// call reports its frames on writes and returns what release sends.
type gateConn struct {
	writes  chan []string
	release chan error
	closed  chan string
}

func newGateConn() *gateConn {
	return &gateConn{writes: make(chan []string, 100), release: make(chan error), closed: make(chan string, 2)}
}

func (c *gateConn) WriteFrames(frames [][]byte) error {
	var got []string
	for _, f := range frames {
		got = append(got, string(f))
	}
	c.writes <- got
	return <-c.release
}

func (c *gateConn) Close(reason string) { c.closed <- reason }

func (c *gateConn) write(t *testing.T) []string {
	t.Helper()
	select {
	case w := <-c.writes:
		return w
	case <-time.After(wait):
		t.Fatal("no write")
		return nil
	}
}

// expect reads the next write and checks its frames.
func (c *gateConn) expect(t *testing.T, want string) {
	t.Helper()
	if got := fmt.Sprint(c.write(t)); got != want {
		t.Fatalf("write %s, want %s", got, want)
	}
}

// idle waits until the writer has no goroutine and no queue.
func idle(t *testing.T, w *frameWriter) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		w.mu.Lock()
		done := !w.running && w.queue == nil
		w.mu.Unlock()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not go idle")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFrameWriterOrderBoundAndIdle(t *testing.T) {
	c := newGateConn()
	w := newFrameWriter(c, 3, nil)
	idle(t, w) // nothing runs before the first frame
	if !w.enqueue([]byte("a")) {
		t.Fatal("first frame refused")
	}
	c.expect(t, "[a]")
	// While "a" is being written, three more fit and a fourth does not.
	for _, f := range []string{"b", "c", "d"} {
		if !w.enqueue([]byte(f)) {
			t.Fatalf("frame %s refused", f)
		}
	}
	if w.enqueue([]byte("e")) {
		t.Fatal("a fourth queued frame was accepted with capacity 3")
	}
	if w.queued() != 3 {
		t.Fatalf("queued %d", w.queued())
	}
	c.release <- nil
	c.expect(t, "[b c d]")
	c.release <- nil
	idle(t, w)
	// The writer starts again for the next frame.
	w.enqueue([]byte("f"))
	c.expect(t, "[f]")
	c.release <- nil
	idle(t, w)
}

func TestFrameWriterWaitsForRoom(t *testing.T) {
	c := newGateConn()
	w := newFrameWriter(c, 1, nil)
	w.enqueue([]byte("a"))
	c.write(t)
	w.enqueue([]byte("b")) // fills the queue while "a" is written
	done := make(chan bool)
	go func() {
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		done <- w.enqueueWait([]byte("c"), timer)
	}()
	c.release <- nil // "a" written: the writer takes "b", making room for "c"
	c.expect(t, "[b]")
	if !<-done {
		t.Fatal("enqueueWait gave up although room was made")
	}
	c.release <- nil
	c.expect(t, "[c]")
	c.release <- nil
	idle(t, w)
}

func TestFrameWriterCloseAfterLastFrame(t *testing.T) {
	c := newGateConn()
	w := newFrameWriter(c, 8, nil)
	w.enqueue([]byte("a"))
	c.write(t)
	w.enqueue([]byte("b"))
	w.stopAndClose("bye")
	select {
	case r := <-c.closed:
		t.Fatalf("closed (%s) before the queued frames were written", r)
	default:
	}
	c.release <- nil
	c.expect(t, "[b]")
	c.release <- nil
	if r := <-c.closed; r != "bye" {
		t.Fatalf("closed with %q", r)
	}
	idle(t, w)
	if !w.enqueue([]byte("late")) || w.queued() != 0 {
		t.Fatal("a frame after stop was queued")
	}
	// Nothing queued: stopAndClose closes at once.
	c2 := newGateConn()
	newFrameWriter(c2, 8, nil).stopAndClose("now")
	if r := <-c2.closed; r != "now" {
		t.Fatalf("closed with %q", r)
	}
}

func TestFrameWriterFailedWriteClosesAndDrops(t *testing.T) {
	c := newGateConn()
	w := newFrameWriter(c, 8, nil)
	w.enqueue([]byte("a"))
	c.write(t)
	w.enqueue([]byte("b"))
	c.release <- errors.New("broken pipe")
	if r := <-c.closed; r != "write failed" {
		t.Fatalf("closed with %q", r)
	}
	idle(t, w)
	if !w.enqueue([]byte("c")) || w.queued() != 0 {
		t.Fatal("a frame after a failed write was queued")
	}
	select {
	case got := <-c.writes:
		t.Fatalf("written after the failure: %v", got)
	default:
	}
}

// roomConn records writes at once and says whether the socket has room.
type roomConn struct {
	room   bool
	writes [][]string
}

func (c *roomConn) WriteFrames(frames [][]byte) error {
	var got []string
	for _, f := range frames {
		got = append(got, string(f))
	}
	c.writes = append(c.writes, got)
	return nil
}

func (c *roomConn) Close(string)            {}
func (c *roomConn) WritesAtOnce(n int) bool { return c.room }

// A frame for a socket that takes it at once is written by the owner's
// call itself; otherwise a writer is scheduled and the owner returns.
func TestFrameWriterWritesAtOnceWhenTheSocketHasRoom(t *testing.T) {
	var scheduled []func()
	c := &roomConn{room: true}
	w := newFrameWriter(c, 4, func(f func()) { scheduled = append(scheduled, f) })

	w.enqueue([]byte("a"))
	if fmt.Sprint(c.writes) != "[[a]]" || len(scheduled) != 0 {
		t.Fatalf("with room: writes %v, %d writers scheduled; want [[a]] written by enqueue", c.writes, len(scheduled))
	}
	idle(t, w)

	c.room = false
	w.enqueue([]byte("b"))
	w.enqueue([]byte("c"))
	if fmt.Sprint(c.writes) != "[[a]]" || len(scheduled) != 1 {
		t.Fatalf("without room: writes %v, %d writers scheduled; want one writer for [b c]", c.writes, len(scheduled))
	}
	// While that writer is on its way, a frame is queued behind it even
	// if the socket has room: order holds.
	c.room = true
	w.enqueue([]byte("d"))
	if len(c.writes) != 1 || len(scheduled) != 1 {
		t.Fatalf("behind a scheduled writer: writes %v, %d writers", c.writes, len(scheduled))
	}
	scheduled[0]()
	if fmt.Sprint(c.writes) != "[[a] [b c d]]" {
		t.Fatalf("writes %v, want [[a] [b c d]]", c.writes)
	}
	idle(t, w)
}
