package httpapi

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"urva/persistence"
)

// dial opens a socket; token goes in the query when inQuery, else in the header.
func (e *env) dial(token string, inQuery bool) (*websocket.Conn, *http.Response, error) {
	u := "ws://" + e.addr + "/ws"
	h := http.Header{}
	if inQuery {
		u += "?token=" + token
	} else if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	d := websocket.Dialer{HandshakeTimeout: guard}
	return d.Dial(u, h)
}

func (e *env) accepted(t *testing.T) connected {
	t.Helper()
	select {
	case c := <-e.actors.connections:
		return c
	case <-time.After(guard):
		t.Fatal("Connect not called")
	}
	return connected{}
}

func waitClosed(t *testing.T, s *fakeSession) {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(guard):
		t.Fatal("Session.Close not called")
	}
}

func TestSocketRejectsBadToken(t *testing.T) {
	e := newEnv(t, nil)
	for name, tok := range map[string]string{
		"missing": "",
		"garbage": "garbage",
		"expired": e.tokens.Issue(7, "rm", time.Now().Add(-2*time.Hour)),
	} {
		for _, inQuery := range []bool{true, false} {
			c, resp, err := e.dial(tok, inQuery)
			if err == nil {
				c.Close()
				t.Fatalf("%s: upgraded", name)
			}
			if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != 401 {
				t.Fatalf("%s: %v %v", name, err, resp)
			}
		}
	}
	// A valid token on a plain GET: the upgrade fails with a JSON error.
	r := e.api("GET", "/ws", e.token(7, "rm"), "")
	if r.status != 400 || r.errorText(t) == "" {
		t.Fatalf("plain GET: %d %q", r.status, r.body)
	}
	select {
	case c := <-e.actors.connections:
		t.Fatalf("Connect called for %+v", c.p)
	default:
	}
}

func TestSocketFramesBothWays(t *testing.T) {
	for _, inQuery := range []bool{true, false} {
		e := newEnv(t, nil)
		client, resp, err := e.dial(e.token(7, persistence.RoleRM), inQuery)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Fatal("no request id on the upgrade")
		}
		srv := e.accepted(t)
		if srv.p.RMID != 7 || srv.p.Role != persistence.RoleRM {
			t.Fatalf("principal %+v", srv.p)
		}

		// Server to client, in order.
		frames := [][]byte{
			[]byte(`{"type":"message","conversation_id":3,"seq":1,"cursor":"1"}`),
			[]byte(`{"type":"status","conversation_id":3,"seq":2,"cursor":"2"}`),
		}
		if err := srv.conn.WriteFrames(frames); err != nil {
			t.Fatal(err)
		}
		if err := client.SetReadDeadline(time.Now().Add(guard)); err != nil {
			t.Fatal(err)
		}
		for _, want := range frames {
			mt, got, err := client.ReadMessage()
			if err != nil || mt != websocket.TextMessage || string(got) != string(want) {
				t.Fatalf("read %d %q %v", mt, got, err)
			}
		}

		// Client to server.
		resume := `{"type":"resume","cursor":"41"}`
		if err := client.WriteMessage(websocket.TextMessage, []byte(resume)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-srv.sess.received:
			if string(got) != resume {
				t.Fatalf("received %q", got)
			}
		case <-time.After(guard):
			t.Fatal("frame not received")
		}

		// The client leaves: the session is closed.
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
		if err := client.WriteControl(websocket.CloseMessage, msg, time.Now().Add(guard)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, srv.sess)
		client.Close()
		if err := srv.conn.WriteFrames(frames); err == nil {
			t.Fatal("write after close succeeded")
		}
	}
}

func TestSocketServerClose(t *testing.T) {
	e := newEnv(t, nil)
	client, _, err := e.dial(e.token(7, "rm"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv := e.accepted(t)
	srv.conn.Close("too slow: resume from your last cursor")
	if err := client.SetReadDeadline(time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	_, _, err = client.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater || ce.Text != "too slow: resume from your last cursor" {
		t.Fatalf("close: %v", err)
	}
	waitClosed(t, srv.sess)
	if err := srv.conn.WriteFrames([][]byte{[]byte(`{}`)}); err == nil {
		t.Fatal("write after close succeeded")
	}
	srv.conn.Close("again") // idempotent
}

func TestShutdownClosesSockets(t *testing.T) {
	e := newEnv(t, nil)
	client, _, err := e.dial(e.token(7, "rm"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv := e.accepted(t)
	readDone := make(chan error, 1)
	go func() {
		_, _, err := client.ReadMessage()
		readDone <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, srv.sess)
	var ce *websocket.CloseError
	if err := <-readDone; !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("client saw %v", err)
	}
}
