package httpapi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"
)

// The websocket handshake.
//
// fasthttp reads each connection through a 4 KiB buffer, and a connection it
// hands over keeps reading through that buffer for as long as it lives: at
// tens of thousands of idle RM sockets that buffer is a quarter of what a
// socket costs. So the handshake is checked here, the connection is taken
// over without a response, and the websocket library's net/http upgrader
// writes the 101 and builds the socket on the bare TCP connection, reading
// through a 512-byte buffer this package owns (readFrames looks into it).

// handshakeError is a handshake refused before the connection is taken over.
type handshakeError struct {
	status int
	reason string
}

// checkHandshake applies the websocket library's own checks (RFC 6455
// section 4.2.1), so that a bad handshake is answered by fasthttp like any
// other request, with the same status and reason as the library gives; nil
// when the handshake is good.
func checkHandshake(ctx *fasthttp.RequestCtx) *handshakeError {
	const bad = "websocket: the client is not using the websocket protocol: "
	h := &ctx.Request.Header
	switch {
	case !ctx.IsGet():
		return &handshakeError{fasthttp.StatusMethodNotAllowed, bad + "request method is not GET"}
	case !headerHasToken(h.Peek("Connection"), "upgrade"):
		return &handshakeError{fasthttp.StatusBadRequest, bad + "'upgrade' token not found in 'Connection' header"}
	case !headerHasToken(h.Peek("Upgrade"), "websocket"):
		return &handshakeError{fasthttp.StatusBadRequest, bad + "'websocket' token not found in 'Upgrade' header"}
	case !headerHasToken(h.Peek("Sec-Websocket-Version"), "13"):
		return &handshakeError{fasthttp.StatusBadRequest, "websocket: unsupported version: 13 not found in 'Sec-Websocket-Version' header"}
	}
	key, err := base64.StdEncoding.DecodeString(string(h.Peek("Sec-Websocket-Key")))
	if err != nil || len(key) != 16 {
		return &handshakeError{fasthttp.StatusBadRequest, "websocket: not a websocket handshake: 'Sec-WebSocket-Key' header must be Base64 encoded value of 16-byte in length"}
	}
	return nil
}

// headerHasToken reports whether the comma-separated header value v lists
// token (case-insensitive).
func headerHasToken(v []byte, token string) bool {
	for t := range strings.SplitSeq(string(v), ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// newUpgrader is the websocket library's net/http upgrader the sockets are
// made with: writes take a buffer of writeBytes from a pool for their
// duration; reads go through the buffer upgrade hands it (with
// ReadBufferSize 0 the library reads through the hijacked reader when it
// holds more than 256 bytes; readFrames relies on that, and
// TestSocketControlFramesBetweenMessages loses messages if it changes).
func newUpgrader(writeBytes int) *websocket.Upgrader {
	return &websocket.Upgrader{
		WriteBufferSize: writeBytes,
		WriteBufferPool: &sync.Pool{},
		// Sockets authenticate with a token, not a cookie, so a foreign
		// origin gains nothing: accept any.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			b, _ := json.Marshal(errorBody{Error: reason.Error()})
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(b)
		},
	}
}

// upgrade answers the websocket handshake of c and, once the connection is
// a socket, calls serve on the goroutine fasthttp handed the connection to,
// with the socket and the buffer it reads through. A refused handshake is
// answered with a JSON error and returns it. The headers the handlers set
// (the request id, ...) are sent with the 101.
func (s *Server) upgrade(c *call, serve func(ws *websocket.Conn, br *bufio.Reader)) error {
	if he := checkHandshake(c.ctx); he != nil {
		writeError(c.ctx, he.status, he.reason)
		return errors.New(he.reason)
	}
	req := handshakeRequest(c.ctx)
	respHeader := upgradeResponseHeader(c.ctx)
	log := c.log
	c.ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols) // for the request log
	c.ctx.HijackSetNoResponse(true)
	c.ctx.Hijack(func(hijacked net.Conn) {
		conn := bareConn(hijacked)
		br := bufio.NewReaderSize(conn, wsReadBufferBytes)
		ws, err := s.upgrader.Upgrade(&handshakeResponse{conn: conn, br: br}, req, respHeader)
		if err != nil {
			log.Warn().Err(err).Msg("socket handshake failed after the checks passed")
			_ = conn.Close()
			return
		}
		serve(ws, br)
	})
	return nil
}

// handshakeRequest copies what the upgrader reads of the request: fasthttp
// reuses the request context once the connection is taken over.
func handshakeRequest(ctx *fasthttp.RequestCtx) *http.Request {
	h := make(http.Header)
	for k, v := range ctx.Request.Header.All() {
		h.Add(string(k), string(v))
	}
	return &http.Request{
		Method:     http.MethodGet,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       string(ctx.Host()),
		RequestURI: string(ctx.RequestURI()),
	}
}

// upgradeResponseHeader is what the handlers set on the response (the
// request id, ...) that belongs on the 101 as well.
func upgradeResponseHeader(ctx *fasthttp.RequestCtx) http.Header {
	h := make(http.Header)
	for k, v := range ctx.Response.Header.All() {
		switch http.CanonicalHeaderKey(string(k)) {
		case "Content-Type", "Content-Length", "Connection", "Upgrade", "Transfer-Encoding", "Date", "Server":
			continue
		}
		if strings.HasPrefix(http.CanonicalHeaderKey(string(k)), "Sec-Websocket-") {
			continue
		}
		h.Add(string(k), string(v))
	}
	return h
}

// bareConn returns the TCP connection under the one fasthttp hands over, so
// that fasthttp's read buffer is not kept for the socket's lifetime. A
// client may not send frames before the 101 (RFC 6455 section 4.1); one
// that did has its bytes kept in front of the connection, and keeps the
// handed-over connection with them.
func bareConn(hijacked net.Conn) net.Conn {
	u, ok := hijacked.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return hijacked
	}
	conn := u.UnsafeConn()
	// What fasthttp buffered past the request is read back through the
	// handed-over connection without waiting: an expired deadline makes
	// the read return at once when nothing is there.
	if err := conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return hijacked
	}
	var first [1]byte
	n, _ := hijacked.Read(first[:])
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		return hijacked
	}
	if n == 0 {
		return conn
	}
	return &prefixedConn{Conn: hijacked, prefix: first[:n]}
}

// prefixedConn reads prefix before the connection.
type prefixedConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handshakeResponse is the http.ResponseWriter the upgrader answers
// through: it hands over the connection, or, should the upgrader refuse a
// handshake checkHandshake passed, writes the refusal, after which the
// connection is closed.
type handshakeResponse struct {
	conn   net.Conn
	br     *bufio.Reader
	header http.Header
	status int
}

func (r *handshakeResponse) Header() http.Header {
	if r.header == nil {
		r.header = make(http.Header)
	}
	return r.header
}

func (r *handshakeResponse) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *handshakeResponse) Write(body []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	h := r.Header()
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(r.status) + " " + http.StatusText(r.status) + "\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(body)
	_ = r.conn.SetWriteDeadline(time.Now().Add(closeGrace))
	if _, err := r.conn.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(body), nil
}

// Hijack hands over the connection, the reader the socket reads through
// and a small writer the upgrader writes the 101 with.
func (r *handshakeResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return r.conn, bufio.NewReadWriter(r.br, bufio.NewWriterSize(r.conn, 256)), nil
}
