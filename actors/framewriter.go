package actors

import (
	"sync"
	"time"
)

// frameWriter is a socket's only writer: frames are written in the order
// they were queued, in batches, by a goroutine that runs only while there is
// something to write (an idle socket holds no writer goroutine and no
// queue), or, for a frame that finds no writer running and a socket that
// takes it at once (ImmediateConn), by the owner's enqueue itself. The queue
// is bounded: an owner whose client cannot keep up finds it full and cuts
// the socket.
type frameWriter struct {
	conn Conn
	max  int
	room chan struct{} // capacity 1: "the writer took frames"
	// schedule starts the writer: on a worker of the actors' dispatcher
	// (dispatch.go), whose stack has already grown for a socket write.
	schedule func(func())

	mu          sync.Mutex
	queue       [][]byte
	running     bool // a writer goroutine is on its way
	stopped     bool
	failed      bool   // a write failed: the socket is being closed, frames are dropped
	closeReason string // set with closeAfter: close the socket after the last frame
	closeAfter  bool
}

// writeBatch caps the frames of one WriteFrames call.
const writeBatch = 64

// newFrameWriter makes conn's writer; schedule starts its goroutine (nil:
// a goroutine of its own).
func newFrameWriter(conn Conn, queue int, schedule func(func())) *frameWriter {
	if schedule == nil {
		schedule = func(f func()) { go f() }
	}
	return &frameWriter{conn: conn, max: max(1, queue), room: make(chan struct{}, 1), schedule: schedule}
}

// enqueue queues a frame; false when the queue is full. After a failed
// write (the socket is closing) or stop, frames are accepted and dropped.
func (w *frameWriter) enqueue(frame []byte) bool {
	w.mu.Lock()
	if w.failed || w.stopped {
		w.mu.Unlock()
		return true
	}
	if len(w.queue) >= w.max {
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, frame)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		if ic, ok := w.conn.(ImmediateConn); ok && ic.WritesAtOnce(len(frame)) {
			// The socket takes it at once: write it here rather than
			// wake a writer to do the same. The owner is the only one
			// who queues, so the writer ends after this frame.
			w.run()
		} else {
			w.schedule(w.run)
		}
	}
	return true
}

// enqueueWait queues a frame, waiting for room until timer fires (it is
// reset first to replayWriteTimeout); false when it fired.
func (w *frameWriter) enqueueWait(frame []byte, timer *time.Timer) bool {
	timer.Reset(replayWriteTimeout)
	for !w.enqueue(frame) {
		select {
		case <-w.room:
		case <-timer.C:
			return false
		}
	}
	return true
}

// capacity is the queue's size.
func (w *frameWriter) capacity() int { return w.max }

// queued is the number of frames waiting to be written.
func (w *frameWriter) queued() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.queue)
}

// stop lets the writer finish what is queued. The owner calls it (or
// stopAndClose) once, and enqueues nothing after it.
func (w *frameWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// stopAndClose is stop, and the socket is closed with reason once what is
// queued has been written.
func (w *frameWriter) stopAndClose(reason string) {
	w.mu.Lock()
	w.stopped, w.closeReason, w.closeAfter = true, reason, true
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		w.schedule(w.run) // nothing queued: it closes at once, off the owner's goroutine
	}
}

func (w *frameWriter) run() {
	for {
		w.mu.Lock()
		if len(w.queue) == 0 || w.failed {
			w.queue = nil // an idle socket keeps no queue
			w.running = false
			closeNow := w.closeAfter && !w.failed
			w.closeAfter = false
			w.mu.Unlock()
			if closeNow {
				w.conn.Close(w.closeReason)
			}
			return
		}
		n := min(len(w.queue), writeBatch)
		batch := w.queue[:n:n]
		w.queue = w.queue[n:]
		w.mu.Unlock()
		select {
		case w.room <- struct{}{}:
		default:
		}
		if err := w.conn.WriteFrames(batch); err != nil {
			w.conn.Close("write failed")
			w.mu.Lock()
			w.failed = true
			w.mu.Unlock()
		}
	}
}
