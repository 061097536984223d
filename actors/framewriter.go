package actors

import "time"

// frameWriter is a socket's only writer: a goroutine that takes queued
// frames in order and writes them in batches. The queue is bounded: an
// owner whose client cannot keep up finds it full and cuts the socket.
type frameWriter struct {
	conn        Conn
	out         chan []byte
	closeReason string // set before out is closed: close the socket after the last frame
	closeAfter  bool
}

func newFrameWriter(conn Conn, queue int) *frameWriter {
	w := &frameWriter{conn: conn, out: make(chan []byte, max(1, queue))}
	go w.run()
	return w
}

// enqueue queues a frame; false when the queue is full.
func (w *frameWriter) enqueue(frame []byte) bool {
	select {
	case w.out <- frame:
		return true
	default:
		return false
	}
}

// enqueueWait queues a frame, waiting for room until timer fires (it is
// reset first to replayWriteTimeout); false when it fired.
func (w *frameWriter) enqueueWait(frame []byte, timer *time.Timer) bool {
	timer.Reset(replayWriteTimeout)
	select {
	case w.out <- frame:
		return true
	case <-timer.C:
		return false
	}
}

// capacity is the queue's size.
func (w *frameWriter) capacity() int { return cap(w.out) }

// stop ends the goroutine once it has written what is queued. The owner
// calls it once, and enqueues nothing after it.
func (w *frameWriter) stop() { close(w.out) }

// stopAndClose is stop, and the socket is closed with reason once what is
// queued has been written.
func (w *frameWriter) stopAndClose(reason string) {
	w.closeReason, w.closeAfter = reason, true
	close(w.out)
}

func (w *frameWriter) run() {
	defer func() {
		if w.closeAfter { // written before out was closed
			w.conn.Close(w.closeReason)
		}
	}()
	batch := make([][]byte, 0, 64)
	for f := range w.out {
		batch = append(batch[:0], f)
	more:
		for len(batch) < cap(batch) {
			select {
			case g, ok := <-w.out:
				if !ok {
					break more
				}
				batch = append(batch, g)
			default:
				break more
			}
		}
		if err := w.conn.WriteFrames(batch); err != nil {
			w.conn.Close("write failed")
			for range w.out { // drain until the owner stops
			}
			return
		}
	}
}
