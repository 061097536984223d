package httpapi

import (
	"syscall"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
)

// Reading an RM socket.
//
// An idle socket's cost is mostly what its reading goroutine holds: a
// goroutine parked inside the websocket library's read is deep enough that
// its stack grows to 4 KiB and, parked there, never shrinks back. So on a
// TCP connection the reading goroutine only waits for the connection to
// become readable, in a few frames that fit the smallest stack (2 KiB), and
// each time the client sends something a short-lived goroutine reads it.
// Pings and pongs, which is all an idle client sends, are taken from the
// read buffer between messages without entering the library's read, which
// would otherwise park in it waiting for the next message.

// readFrames hands the client's text frames to sess until the socket ends.
func (w *wsConn) readFrames(sess Session, log zerolog.Logger) error {
	if w.br != nil {
		if rc := rawConnOf(w.ws.NetConn()); rc != nil {
			return w.readWhenReadable(sess, log, rc)
		}
	}
	for {
		mt, data, err := w.ws.ReadMessage()
		if err != nil {
			return err
		}
		w.delivered(sess, log, mt, data)
	}
}

// delivered handles one message the client sent.
func (w *wsConn) delivered(sess Session, log zerolog.Logger, mt int, data []byte) {
	w.extendRead()
	if mt != websocket.TextMessage || w.isClosed() {
		return
	}
	receive(sess, data, log)
}

// readWhenReadable is readFrames on a TCP connection: wait until the
// connection is readable (or its read deadline passes, or it is closed),
// then have a new goroutine read what is there, and wait for it.
func (w *wsConn) readWhenReadable(sess Session, log zerolog.Logger, rc syscall.RawConn) error {
	done := make(chan error, 1)
	for {
		waitErr := waitReadable(rc)
		go func(failed bool) { done <- w.readAvailable(sess, log, rc, failed) }(waitErr != nil)
		if err := <-done; err != nil {
			return err
		}
	}
}

// readAvailable reads what the client has sent until nothing whole is left
// in the read buffer and the connection has nothing more to read: nil
// means wait for more. A message still arriving is read to its end. With
// failed (the wait ended in an error) the library's read reports it.
func (w *wsConn) readAvailable(sess Session, log zerolog.Logger, rc syscall.RawConn, failed bool) error {
	for {
		if !failed {
			b, _ := w.br.Peek(w.br.Buffered())
			n, kind := nextControlFrame(b)
			switch kind {
			case framePing, framePong:
				payload := unmaskedPayload(b[:n])
				_, _ = w.br.Discard(n)
				h := w.ws.PongHandler()
				if kind == framePing {
					h = w.ws.PingHandler()
				}
				if err := h(payload); err != nil {
					return err
				}
				continue
			case frameIncomplete:
				if !readable(rc) {
					return nil
				}
				// Something is there: take it into the buffer. An error
				// (end of stream, deadline) is reported by the library's read.
				if _, err := w.br.Peek(len(b) + 1); err != nil {
					failed = true
				}
				continue
			}
		}
		failed = false
		mt, data, err := w.ws.ReadMessage()
		if err != nil {
			return err
		}
		w.delivered(sess, log, mt, data)
	}
}

// frameKind is what nextControlFrame found at the start of the bytes read.
type frameKind int

const (
	frameOther      frameKind = iota // a message, a close or anything for the library to judge
	frameIncomplete                  // nothing yet, or the start of a ping or pong
	framePing                        // a whole ping
	framePong                        // a whole pong
)

// nextControlFrame looks at b, the bytes the client sent after its last
// whole message, for a whole ping or pong the way a client must send it
// (RFC 6455 section 5: final, no extension bits, masked, at most 125
// bytes) and returns its length. Anything else is left to the library.
func nextControlFrame(b []byte) (int, frameKind) {
	if len(b) == 0 {
		return 0, frameIncomplete
	}
	if op := b[0]; op != 0x80|websocket.PingMessage && op != 0x80|websocket.PongMessage {
		return 0, frameOther
	}
	if len(b) < 2 {
		return 0, frameIncomplete
	}
	if b[1]&0x80 == 0 || b[1]&0x7f > 125 {
		return 0, frameOther
	}
	n := 2 + 4 + int(b[1]&0x7f)
	if len(b) < n {
		return 0, frameIncomplete
	}
	if b[0]&0x0f == websocket.PingMessage {
		return n, framePing
	}
	return n, framePong
}

// unmaskedPayload is the payload of the whole masked control frame f.
func unmaskedPayload(f []byte) string {
	key, p := f[2:6], f[6:]
	out := make([]byte, len(p))
	for i := range p {
		out[i] = p[i] ^ key[i&3]
	}
	return string(out)
}
