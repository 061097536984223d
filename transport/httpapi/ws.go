package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/internal/logfields"
)

// Close codes the server sends on the RM socket.
const (
	// closeSession is used when the session closes the socket (a client too
	// slow to keep up, ...): reconnect and resume with the last cursor.
	closeSession = websocket.CloseTryAgainLater
	// closeGrace is how long the server waits for the client's answer to a
	// close frame before dropping the connection.
	closeGrace = 2 * time.Second
)

// errSocketClosed is returned by WriteFrames after Close.
var errSocketClosed = errors.New("socket closed")

// socket upgrades GET /ws to the RM live socket.
func (s *Server) socket(c *call) {
	p, ok := s.principal(c, true)
	if !ok {
		unauthorized(c)
		return
	}
	if s.isShuttingDown() || s.actors == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return
	}
	// Everything the socket needs is taken here: after Upgrade returns the
	// request context belongs to fasthttp again.
	log := logfields.With(s.log, logfields.Str("request_id", c.id), logfields.Int64("rm_id", p.RMID))
	so := s.opts.Socket
	// ?cursor= resumes at once, without waiting for a resume frame.
	var resume []byte
	if q := c.ctx.QueryArgs(); q.Has("cursor") {
		resume, _ = json.Marshal(map[string]string{"type": "resume", "cursor": string(q.Peek("cursor"))})
	}
	err := s.upgrade(c, func(ws *websocket.Conn, br *bufio.Reader) {
		s.serveSocket(actors.SocketRM, ws, br, so, log, func(w *wsConn) Session { return s.actors.Connect(p, w) }, resume)
	})
	if err != nil {
		log.Warn().Err(err).Msg("socket upgrade failed")
	}
}

// serveSocket runs one upgraded socket (socket names it in metrics) until
// it ends: start makes the session the frames read go to, first (when not
// nil) is handed to it as if the client had sent it. br is the buffer ws
// reads through (nil when not known).
//
// It runs on the goroutine fasthttp hijacked the connection on, and returns
// once the session started: the socket's frames are then read by a goroutine
// of its own, started with a shallow stack, and fasthttp takes back its
// request context (the server keeps hijacked connections open). What an idle
// socket holds is that goroutine, its buffers and its session.
func (s *Server) serveSocket(socket string, ws *websocket.Conn, br *bufio.Reader, so SocketOptions, log zerolog.Logger, start func(*wsConn) Session, first []byte) {
	w := &wsConn{ws: ws, br: br, so: so, closed: make(chan struct{}), log: log}
	// The session's late Close or WriteFrames must not touch a connection
	// that was closed: release first.
	end := func() {
		w.release()
		_ = ws.Close()
	}
	if !s.register(w) {
		w.closeWith(websocket.CloseGoingAway, "server shutting down")
		drain(ws)
		end()
		return
	}
	s.socketOpened(socket)
	sess, err := connect(start, w)
	if err != nil || sess == nil {
		log.Error().Err(err).Msg("socket session not started")
		w.closeWith(websocket.CloseTryAgainLater, "temporarily unavailable")
		drain(ws)
		s.socketClosed(socket)
		s.unregister(w)
		end()
		return
	}
	log.Info().Msg("socket connected")
	if first != nil {
		receive(sess, first, log)
	}
	ws.SetReadLimit(so.MaxFrameBytes)
	w.extendRead()
	ws.SetPongHandler(func(string) error { w.extendRead(); return nil })
	go func() {
		defer end()
		defer s.unregister(w)
		defer s.socketClosed(socket)
		readErr := w.readFrames(sess, log)
		w.markClosed()
		endSession(sess, log)
		log.Info().AnErr("reason", readErr).Msg("socket closed")
	}()
}

// connect calls start, turning a panic into an error.
func connect(start func(*wsConn) Session, w *wsConn) (sess Session, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("connect panicked")
		}
	}()
	return start(w), nil
}

func receive(sess Session, frame []byte, log zerolog.Logger) {
	defer func() {
		if r := recover(); r != nil {
			log.Error().Interface("panic", r).Msg("session receive panicked")
		}
	}()
	sess.Receive(frame)
}

func endSession(sess Session, log zerolog.Logger) {
	defer func() {
		if r := recover(); r != nil {
			log.Error().Interface("panic", r).Msg("session close panicked")
		}
	}()
	sess.Close()
}

// drain reads until the client answers the close frame or the grace period ends.
func drain(ws *websocket.Conn) {
	_ = ws.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}

func (s *Server) register(w *wsConn) bool {
	s.pingOnce.Do(func() { go s.pinger() })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shuttingDown {
		return false
	}
	s.sockets[w] = struct{}{}
	s.socketsWG.Add(1)
	return true
}

func (s *Server) unregister(w *wsConn) {
	s.mu.Lock()
	delete(s.sockets, w)
	s.mu.Unlock()
	s.socketsWG.Done()
}

// wsConn is actors.Conn over a websocket.
type wsConn struct {
	ws  *websocket.Conn
	br  *bufio.Reader // what ws reads through; nil when not known
	so  SocketOptions
	log zerolog.Logger

	writeMu sync.Mutex // one data writer at a time

	mu      sync.Mutex // guards closing and read deadline changes
	closing bool
	closed  chan struct{}

	life     sync.RWMutex // held (read) while using ws from outside the handler
	released bool         // the handler returned: ws is no longer ours
}

// use runs f with the connection unless the handler has released it.
func (w *wsConn) use(f func()) bool {
	w.life.RLock()
	defer w.life.RUnlock()
	if w.released {
		return false
	}
	f()
	return true
}

// release marks the connection as given back to the server.
func (w *wsConn) release() {
	w.life.Lock()
	w.released = true
	w.life.Unlock()
}

var _ actors.Conn = (*wsConn)(nil)

// WriteFrames writes each frame as a text message, all within the write timeout.
func (w *wsConn) WriteFrames(frames [][]byte) (err error) {
	if !w.use(func() { err = w.writeFrames(frames) }) {
		return errSocketClosed
	}
	return err
}

func (w *wsConn) writeFrames(frames [][]byte) error {
	w.writeMu.Lock()
	defer w.writeMu.Unlock()
	if w.isClosed() {
		return errSocketClosed
	}
	if err := w.ws.SetWriteDeadline(time.Now().Add(w.so.WriteTimeout)); err != nil {
		return err
	}
	for _, f := range frames {
		if err := w.ws.WriteMessage(websocket.TextMessage, f); err != nil {
			// A failed write leaves the stream unusable: end the socket.
			_ = w.ws.NetConn().Close()
			return err
		}
	}
	return nil
}

// immediateFrameMax bounds the frames WritesAtOnce lets through: an empty
// send queue takes at least this much at once (Linux's smallest TCP send
// buffer is 4 KiB).
const immediateFrameMax = 2048

var _ actors.ImmediateConn = (*wsConn)(nil)

// WritesAtOnce reports whether a frame of n bytes would be written without
// waiting for the client: small enough, and nothing waiting in the
// socket's send queue.
func (w *wsConn) WritesAtOnce(n int) bool {
	if n > immediateFrameMax {
		return false
	}
	ok := false
	w.use(func() { ok = !w.isClosed() && sendQueueEmpty(w.ws.NetConn()) })
	return ok
}

// Close sends a close frame with reason and ends the socket.
func (w *wsConn) Close(reason string) {
	w.use(func() { w.closeWith(closeSession, reason) })
}

// closeWith sends a close frame with code and reason, then gives the client
// closeGrace to answer before the read loop gives up and the connection closes.
func (w *wsConn) closeWith(code int, reason string) {
	w.mu.Lock()
	if w.closing {
		w.mu.Unlock()
		return
	}
	w.closing = true
	close(w.closed)
	w.mu.Unlock()

	w.log.Info().Int("code", code).Str("reason", reason).Msg("closing socket")
	msg := websocket.FormatCloseMessage(code, truncateUTF8(reason, 123))
	if err := w.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		_ = w.ws.NetConn().Close()
		return
	}
	w.mu.Lock()
	_ = w.ws.SetReadDeadline(time.Now().Add(closeGrace))
	w.mu.Unlock()
}

// markClosed records that the socket ended without a close from this side.
func (w *wsConn) markClosed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closing {
		w.closing = true
		close(w.closed)
	}
}

func (w *wsConn) isClosed() bool {
	select {
	case <-w.closed:
		return true
	default:
		return false
	}
}

// extendRead pushes the read deadline out, unless the socket is closing.
func (w *wsConn) extendRead() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closing {
		_ = w.ws.SetReadDeadline(time.Now().Add(w.so.ReadTimeout))
	}
}

// pingWorkers bounds the goroutines writing one round of pings.
const pingWorkers = 32

// pinger pings every live socket each PingInterval from one goroutine for
// the whole server (a goroutine per socket would hold its stack on every
// idle socket). A round's pings are written by at most pingWorkers
// goroutines that last the round: a goroutine per ping would leave, at
// tens of thousands of sockets, as many dead goroutines and their stacks
// to the runtime's caches after every round. A socket that cannot take
// its ping holds up one worker for at most WriteTimeout; a client that
// stops answering is ended by its read deadline.
func (s *Server) pinger() {
	t := time.NewTicker(s.opts.Socket.PingInterval)
	defer t.Stop()
	var socks []*wsConn
	for {
		select {
		case <-s.stopPing:
			return
		case <-t.C:
		}
		s.mu.Lock()
		socks = socks[:0]
		for w := range s.sockets {
			socks = append(socks, w)
		}
		s.mu.Unlock()
		pingAll(socks)
		clear(socks) // hold no closed socket until the next round
	}
}

// pingAll pings each socket, with at most pingWorkers at a time, and
// returns when all are done.
func pingAll(socks []*wsConn) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(socks), pingWorkers) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(socks)) {
					return
				}
				socks[i].ping()
			}
		})
	}
	wg.Wait()
}

// ping writes one ping control frame unless the socket is closing.
func (w *wsConn) ping() {
	w.use(func() {
		if !w.isClosed() {
			_ = w.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(w.so.WriteTimeout))
		}
	})
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
