package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"urva/actors"
)

// clientFrame is one frame as a client sends it: masked, payload under 126 bytes.
func clientFrame(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	f := append([]byte{b0, 0x80 | byte(len(payload))}, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i&3])
	}
	return f
}

// controlClient is a socket whose client records the pongs it receives,
// reading on its own goroutine.
type controlClient struct {
	ws    *websocket.Conn
	pongs chan string
	ended chan error
}

func (e *env) controlClient(t *testing.T) (*controlClient, connected) {
	t.Helper()
	ws, _, err := e.dial(e.token(7, "rm"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &controlClient{ws: ws, pongs: make(chan string, 16), ended: make(chan error, 1)}
	ws.SetPongHandler(func(s string) error { c.pongs <- s; return nil })
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				c.ended <- err
				return
			}
		}
	}()
	return c, e.accepted(t)
}

func (c *controlClient) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := c.ws.NetConn().Write(b); err != nil {
		t.Fatal(err)
	}
}

func (c *controlClient) wantPong(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-c.pongs:
		if got != want {
			t.Fatalf("pong %q, want %q", got, want)
		}
	case err := <-c.ended:
		t.Fatalf("socket ended: %v", err)
	case <-time.After(guard):
		t.Fatalf("no pong %q", want)
	}
}

func wantReceived(t *testing.T, s *fakeSession, want string) {
	t.Helper()
	select {
	case got := <-s.received:
		if string(got) != want {
			t.Fatalf("received %q, want %q", got, want)
		}
	case <-s.closed:
		t.Fatalf("session closed before %q", want)
	case <-time.After(guard):
		t.Fatalf("%q not received", want)
	}
}

// The reader takes pings and pongs between messages itself: whatever way
// the client's bytes are cut into reads, every message arrives whole and
// in order, and every ping is answered with its payload.
func TestSocketControlFramesBetweenMessages(t *testing.T) {
	e := newEnv(t, nil)
	c, srv := e.controlClient(t)

	// Pong, message and ping in one write.
	var b []byte
	b = append(b, clientFrame(true, websocket.PongMessage, "p1")...)
	b = append(b, clientFrame(true, websocket.TextMessage, `{"type":"one"}`)...)
	b = append(b, clientFrame(true, websocket.PingMessage, "ping-1")...)
	c.write(t, b)
	wantReceived(t, srv.sess, `{"type":"one"}`)
	c.wantPong(t, "ping-1")

	// A ping and a message, one byte per write.
	b = append(clientFrame(true, websocket.PingMessage, "ping-2"), clientFrame(true, websocket.TextMessage, `{"type":"two"}`)...)
	for i := range b {
		c.write(t, b[i:i+1])
	}
	c.wantPong(t, "ping-2")
	wantReceived(t, srv.sess, `{"type":"two"}`)

	// A ping inside a message sent in two fragments: the library's read
	// answers it.
	b = append(clientFrame(false, websocket.TextMessage, `{"type":`), clientFrame(true, websocket.PingMessage, "ping-3")...)
	b = append(b, clientFrame(true, 0, `"three"}`)...)
	c.write(t, b)
	c.wantPong(t, "ping-3")
	wantReceived(t, srv.sess, `{"type":"three"}`)

	// An empty ping, then a message after a pause.
	c.write(t, clientFrame(true, websocket.PingMessage, ""))
	c.wantPong(t, "")
	c.write(t, clientFrame(true, websocket.TextMessage, `{"type":"four"}`))
	wantReceived(t, srv.sess, `{"type":"four"}`)

	// A control frame a client must not send (unmasked) is the library's
	// to refuse: the socket ends with a protocol error.
	c.write(t, []byte{0x80 | websocket.PingMessage, 0})
	waitClosed(t, srv.sess)
	select {
	case <-c.ended:
	case <-time.After(guard):
		t.Fatal("client socket not ended")
	}
}

// The server pings; a client that answers every ping stays connected long
// past the read timeout: its pongs, taken by the reader itself, push the
// deadline out.
func TestSocketPongsKeepItOpen(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Socket.PingInterval = 5 * time.Millisecond
		o.Socket.ReadTimeout = time.Second
	})
	client, _, err := e.dial(e.token(7, "rm"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv := e.accepted(t)
	pings := make(chan struct{}, 1024)
	client.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return client.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(guard))
	})
	go func() {
		for {
			if _, _, err := client.ReadMessage(); err != nil {
				return
			}
		}
	}()
	// 400 pings at 5 ms each outlast the one-second read timeout twice over.
	for i := range 400 {
		select {
		case <-pings:
		case <-srv.sess.closed:
			t.Fatalf("socket closed after %d pings", i)
		case <-time.After(guard):
			t.Fatalf("ping %d did not come", i)
		}
	}
	select {
	case <-srv.sess.closed:
		t.Fatal("socket closed")
	default:
	}
	srv.conn.Close("done")
	waitClosed(t, srv.sess)
}

// Should the library's upgrader refuse a handshake the checks passed, the
// client still gets an HTTP answer with a JSON error, and no socket.
func TestHandshakeRefusedAfterTheChecks(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	br := bufio.NewReaderSize(server, wsReadBufferBytes)
	req := &http.Request{Method: http.MethodGet, Header: http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"},
	}}
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(client), req)
		if err != nil {
			t.Error(err)
		}
		got <- resp
	}()
	ws, err := newUpgrader(1024).Upgrade(&handshakeResponse{conn: server, br: br}, req, nil)
	_ = server.Close() // as upgrade does after a refusal
	if err == nil || ws != nil {
		t.Fatalf("upgraded: %v", err)
	}
	resp := <-got
	if resp == nil {
		t.FailNow()
	}
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 400 ||
		resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(body.Error, "Sec-WebSocket-Key") {
		t.Fatalf("%d %v %q %v", resp.StatusCode, resp.Header, body.Error, err)
	}
}

// An idle socket's reading goroutine waits for the connection to become
// readable, not inside the websocket library's read, also after the
// client has sent messages, pings and pongs.
func TestIdleSocketReaderWaitsOutsideTheLibrary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the shallow wait is built on Linux only")
	}
	e := newEnv(t, func(o *Options) { o.Socket.PingInterval = 5 * time.Millisecond })
	c, srv := e.controlClient(t)
	c.write(t, clientFrame(true, websocket.TextMessage, `{"type":"hello"}`))
	wantReceived(t, srv.sess, `{"type":"hello"}`)
	c.write(t, clientFrame(true, websocket.PingMessage, "x"))
	c.wantPong(t, "x")
	// The client answers the server's pings (its read loop does).
	deadline := time.Now().Add(guard)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var waiting, reading int
		for g := range strings.SplitSeq(stacks, "\n\n") {
			if strings.Contains(g, "(*wsConn).readWhenReadable") {
				waiting++
			}
			if strings.Contains(g, "(*wsConn).readAvailable") {
				reading++
			}
		}
		if waiting == 1 && reading == 0 && strings.Contains(stacks, "httpapi.waitReadable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines waiting for the socket, %d reading it; stacks:\n%s", waiting, reading, stacks)
		}
		runtime.Gosched()
	}
}

// RFC 6455 forbids frames before the 101, but bytes a client sent early
// are not lost: the first message arrives.
func TestSocketFrameSentWithTheHandshake(t *testing.T) {
	e := newEnv(t, nil)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET /ws?token=" + e.token(7, "rm") + " HTTP/1.1\r\nHost: " + e.addr +
		"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), clientFrame(true, websocket.TextMessage, `{"type":"early"}`)...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(guard))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("handshake answer %d %v", resp.StatusCode, resp.Header)
	}
	srv := e.accepted(t)
	wantReceived(t, srv.sess, `{"type":"early"}`)
}

// A bad handshake is refused with the websocket library's status and
// reason, as JSON, before any session exists.
func TestSocketBadHandshakes(t *testing.T) {
	e := newEnv(t, nil)
	good := map[string]string{
		"Connection":            "keep-alive, Upgrade",
		"Upgrade":               "websocket",
		"Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key":     "dGhlIHNhbXBsZSBub25jZQ==",
	}
	for _, tc := range []struct {
		header, value string
		status        int
		reason        string
	}{
		{"Connection", "keep-alive", 400, "'upgrade' token not found in 'Connection' header"},
		{"Upgrade", "h2c", 400, "'websocket' token not found in 'Upgrade' header"},
		{"Sec-WebSocket-Version", "8", 400, "unsupported version"},
		{"Sec-WebSocket-Key", "", 400, "Sec-WebSocket-Key"},
		{"Sec-WebSocket-Key", "c2hvcnQ=", 400, "Sec-WebSocket-Key"},
	} {
		req, _ := http.NewRequest("GET", e.base+"/ws?token="+e.token(7, "rm"), nil)
		for k, v := range good {
			req.Header.Set(k, v)
		}
		req.Header.Set(tc.header, tc.value)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body errorBody
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || err != nil || !strings.Contains(body.Error, tc.reason) {
			t.Errorf("%s: %q: %d %q %v", tc.header, tc.value, resp.StatusCode, body.Error, err)
		}
	}
	select {
	case c := <-e.actors.connections:
		t.Fatalf("Connect called for %+v", c.p)
	default:
	}
}

func TestNextControlFrame(t *testing.T) {
	ping := clientFrame(true, websocket.PingMessage, "abc")
	pong := clientFrame(true, websocket.PongMessage, "")
	text := clientFrame(true, websocket.TextMessage, "hi")
	for _, tc := range []struct {
		name string
		b    []byte
		n    int
		kind frameKind
	}{
		{"nothing", nil, 0, frameIncomplete},
		{"ping", ping, len(ping), framePing},
		{"ping then text", append(append([]byte{}, ping...), text...), len(ping), framePing},
		{"pong", pong, len(pong), framePong},
		{"first byte of a ping", ping[:1], 0, frameIncomplete},
		{"ping without its payload", ping[:len(ping)-1], 0, frameIncomplete},
		{"text", text, 0, frameOther},
		{"first byte of a text", text[:1], 0, frameOther},
		{"close", clientFrame(true, websocket.CloseMessage, ""), 0, frameOther},
		{"unmasked ping", []byte{0x89, 0}, 0, frameOther},
		{"fragmented ping", clientFrame(false, websocket.PingMessage, ""), 0, frameOther},
		{"ping with an extension bit", append([]byte{0xc9}, ping[1:]...), 0, frameOther},
		{"ping over 125 bytes", []byte{0x89, 0x80 | 126, 0, 200}, 0, frameOther},
	} {
		n, kind := nextControlFrame(tc.b)
		if n != tc.n || kind != tc.kind {
			t.Errorf("%s: %d %d, want %d %d", tc.name, n, kind, tc.n, tc.kind)
		}
	}
	if got := unmaskedPayload(ping); got != "abc" {
		t.Errorf("payload %q", got)
	}
}

func FuzzNextControlFrame(f *testing.F) {
	f.Add(clientFrame(true, websocket.PingMessage, "abc"))
	f.Add(clientFrame(true, websocket.PongMessage, ""))
	f.Add(clientFrame(true, websocket.TextMessage, "hello"))
	f.Add([]byte{0x89})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, kind := nextControlFrame(b)
		switch kind {
		case framePing, framePong:
			if n < 6 || n > len(b) || n > 6+125 {
				t.Fatalf("length %d of %d bytes", n, len(b))
			}
			p := unmaskedPayload(b[:n])
			if len(p) != n-6 {
				t.Fatalf("payload %d bytes of a %d-byte frame", len(p), n)
			}
			// The frame as a client would make it reads the same.
			if op := b[0] & 0x0f; !bytes.Equal(b[:2], clientFrame(true, op, p)[:2]) {
				t.Fatalf("header %x", b[:2])
			}
		default:
			if n != 0 {
				t.Fatalf("length %d for kind %d", n, kind)
			}
		}
	})
}

// A socket says it takes a frame at once while nothing waits in its send
// queue, and not once its client stopped reading and frames pile up.
func TestSocketWritesAtOnceOnlyWithRoom(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the send queue is looked at on Linux only")
	}
	e := newEnv(t, nil)
	ws, _, err := e.dial(e.token(7, "rm"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() }) // the client never reads
	ic, ok := e.accepted(t).conn.(actors.ImmediateConn)
	if !ok {
		t.Fatal("the socket's conn does not tell whether it has room")
	}
	if !ic.WritesAtOnce(100) {
		t.Fatal("a new socket has no room for 100 bytes")
	}
	if ic.WritesAtOnce(immediateFrameMax + 1) {
		t.Fatal("a frame over immediateFrameMax is let through")
	}
	frame := bytes.Repeat([]byte("x"), 8<<10)
	for n := 0; ic.WritesAtOnce(100); n++ {
		if n == 1<<14 { // 128 MiB
			t.Fatal("the send queue never filled")
		}
		if err := ic.WriteFrames([][]byte{frame}); err != nil {
			t.Fatalf("write %d: %v", n, err)
		}
	}
}
