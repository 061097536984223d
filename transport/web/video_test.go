package web_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/internal/browsertest"
	"urva/transport/turn"
	"urva/transport/web"
)

// The call page is tested against a small stand-in for the server: the
// page, its static files, the ICE servers of a real TURN server and a
// two-peer signalling relay that speaks the page's protocol.

const (
	linkToken  = "link-token"
	turnSecret = "s3cret"
	// waitLong bounds waits on the network and media (ICE through TURN, the
	// first decoded frames); waitShort bounds reactions to a click or a
	// message.
	waitLong  = 30 * time.Second
	waitShort = 10 * time.Second
)

// callServer is the stand-in server.
type callServer struct {
	URL     string
	turnURI string
	// iceStatus, when not 0, makes the ICE servers endpoint fail with it
	// and the body iceError.
	iceStatus int
	iceError  any
	relay     *relay
}

func startCallServer(t *testing.T, iceStatus int, iceError any) *callServer {
	t.Helper()
	ts, err := turn.Start(turn.Options{
		Listen:  "127.0.0.1:0",
		Realm:   "urva",
		Secrets: []string{turnSecret},
		Log:     zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("turn: %v", err)
	}
	t.Cleanup(func() { _ = ts.Close() })

	s := &callServer{
		turnURI:   fmt.Sprintf("turn:%s?transport=udp", ts.Addr()),
		iceStatus: iceStatus,
		iceError:  iceError,
		relay:     &relay{rooms: map[string]*room{}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: s.handle}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		s.relay.closeAll()
		_ = srv.Shutdown()
		// Shutdown misses a listener that Serve has not registered yet.
		_ = ln.Close()
		<-done
	})
	s.URL = "http://" + ln.Addr().String()
	return s
}

func (s *callServer) handle(ctx *fasthttp.RequestCtx) {
	p := string(ctx.Path())
	switch {
	case strings.HasPrefix(p, "/v/"):
		ctx.SetContentType("text/html; charset=utf-8")
		ctx.SetBody(web.VideoPage())
	case strings.HasPrefix(p, "/static/"):
		name := strings.TrimPrefix(p, "/static/")
		b, err := fs.ReadFile(web.StaticFS(), name)
		if err != nil {
			ctx.Error("not found", fasthttp.StatusNotFound)
			return
		}
		ctx.SetContentType(mime.TypeByExtension(path.Ext(name)))
		ctx.SetBody(b)
	case strings.HasPrefix(p, "/api/video-calls/") && strings.HasSuffix(p, "/ice-servers"):
		s.iceServers(ctx, strings.TrimSuffix(strings.TrimPrefix(p, "/api/video-calls/"), "/ice-servers"))
	case strings.HasPrefix(p, "/ws/video/"):
		s.relay.serve(ctx, strings.TrimPrefix(p, "/ws/video/"))
	default:
		ctx.Error("not found", fasthttp.StatusNotFound)
	}
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, _ := json.Marshal(v)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func apiError(code, message string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": message}}
}

func (s *callServer) iceServers(ctx *fasthttp.RequestCtx, id string) {
	if s.iceStatus != 0 {
		writeJSON(ctx, s.iceStatus, s.iceError)
		return
	}
	if string(ctx.QueryArgs().Peek("token")) != linkToken {
		writeJSON(ctx, fasthttp.StatusForbidden, apiError("invalid_link", "This link is not valid."))
		return
	}
	ttl := time.Hour
	user, pass, _ := turn.Credentials(turnSecret, "video-"+id, ttl, time.Now())
	uris := []string{s.turnURI}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{
		"ice_servers":          []map[string]any{{"urls": uris, "username": user, "credential": pass}},
		"ice_transport_policy": "relay",
		"ttl":                  int(ttl.Seconds()),
		"username":             user,
		"password":             pass,
		"uris":                 uris,
	})
}

// relay is a minimal signalling server: two peers per call, offer, answer
// and candidate frames passed to the other peer, a hang-up ends the call
// for both.
type relay struct {
	mu    sync.Mutex
	rooms map[string]*room
	joins int
}

type room struct {
	peers   map[string]*peer
	started time.Time // when both peers were first in the room
	ended   bool
}

type peer struct {
	id   string
	ws   *websocket.Conn
	mu   sync.Mutex // serialises writes
	done bool       // the handler returned: fasthttp has taken the connection back
}

// finish marks the peer's handler as returning: another peer's late write
// must not reach a connection fasthttp has released.
func (p *peer) finish() {
	p.mu.Lock()
	p.done = true
	p.mu.Unlock()
}

func (p *peer) send(v any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		_ = p.ws.WriteJSON(v)
	}
}

func (p *peer) sendRaw(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done {
		_ = p.ws.WriteMessage(websocket.TextMessage, b)
	}
}

func (p *peer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	_ = p.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	// The handler ends when the page answers the close frame, or at this
	// deadline (see closeAll).
	_ = p.ws.SetReadDeadline(time.Now().Add(time.Second))
}

var upgrader = websocket.FastHTTPUpgrader{
	CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
}

func (r *relay) serve(ctx *fasthttp.RequestCtx, callID string) {
	peerID := string(ctx.QueryArgs().Peek("peer"))
	if string(ctx.QueryArgs().Peek("token")) != linkToken || peerID == "" {
		ctx.Error("forbidden", fasthttp.StatusForbidden)
		return
	}
	_ = upgrader.Upgrade(ctx, func(ws *websocket.Conn) {
		me := &peer{id: peerID, ws: ws}
		defer ws.Close()
		defer me.finish()
		if !r.join(callID, me) {
			return
		}
		defer r.leave(callID, me)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m struct {
				Type string `json:"type"`
			}
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			switch m.Type {
			case "offer", "answer", "candidate":
				for _, o := range r.others(callID, me) {
					o.sendRaw(b)
				}
			case "hangup":
				r.end(callID, "hangup")
				return
			}
		}
	})
}

func (r *relay) join(callID string, me *peer) bool {
	r.mu.Lock()
	rm := r.rooms[callID]
	if rm == nil {
		rm = &room{peers: map[string]*peer{}}
		r.rooms[callID] = rm
	}
	var refuse map[string]string
	switch {
	case rm.ended:
		refuse = map[string]string{"type": "error", "code": "ended", "message": "This call has ended."}
	case rm.peers[me.id] == nil && len(rm.peers) >= 2:
		refuse = map[string]string{"type": "error", "code": "full", "message": "This call already has two participants."}
	}
	if refuse != nil {
		r.mu.Unlock()
		me.send(refuse)
		me.close()
		return false
	}
	old := rm.peers[me.id] // the same participant again: replaces the old socket
	rm.peers[me.id] = me
	var others []*peer
	for id, p := range rm.peers {
		if id != me.id {
			others = append(others, p)
		}
	}
	if len(rm.peers) == 2 && rm.started.IsZero() {
		rm.started = time.Now()
	}
	r.joins++
	r.mu.Unlock()

	if old != nil {
		old.close()
	}
	me.send(map[string]any{"type": "joined", "peer_id": me.id, "others": len(others)})
	for _, o := range others {
		o.send(map[string]string{"type": "peer_joined"})
	}
	return true
}

func (r *relay) others(callID string, me *peer) []*peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*peer
	if rm := r.rooms[callID]; rm != nil && rm.peers[me.id] == me {
		for id, p := range rm.peers {
			if id != me.id {
				out = append(out, p)
			}
		}
	}
	return out
}

func (r *relay) leave(callID string, me *peer) {
	r.mu.Lock()
	rm := r.rooms[callID]
	if rm == nil || rm.ended || rm.peers[me.id] != me {
		r.mu.Unlock()
		return
	}
	delete(rm.peers, me.id)
	var others []*peer
	for _, p := range rm.peers {
		others = append(others, p)
	}
	r.mu.Unlock()
	for _, o := range others {
		o.send(map[string]string{"type": "peer_left"})
	}
}

func (r *relay) end(callID, reason string) {
	r.mu.Lock()
	rm := r.rooms[callID]
	if rm == nil || rm.ended {
		r.mu.Unlock()
		return
	}
	rm.ended = true
	var secs int64
	if !rm.started.IsZero() {
		secs = int64(time.Since(rm.started).Seconds())
	}
	peers := rm.peers
	rm.peers = map[string]*peer{}
	r.mu.Unlock()
	for _, p := range peers {
		p.send(map[string]any{"type": "ended", "reason": reason, "duration_seconds": secs})
		p.close()
	}
}

func (r *relay) joinCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.joins
}

// closeAll drops every socket without a word, as a crashed server would.
// Closing a hijacked fasthttp connection is a no-op (fasthttp closes it when
// the handler returns), so the reads are made to fail instead, which ends
// the handlers.
func (r *relay) closeAll() {
	r.mu.Lock()
	var all []*peer
	for _, rm := range r.rooms {
		for _, p := range rm.peers {
			all = append(all, p)
		}
	}
	r.mu.Unlock()
	for _, p := range all {
		p.mu.Lock()
		if !p.done {
			_ = p.ws.SetReadDeadline(time.Now())
		}
		p.mu.Unlock()
	}
}

func TestVideoCallThroughTURN(t *testing.T) {
	begin := time.Now()
	b := browsertest.Start(t)
	srv := startCallServer(t, 0, nil)
	link := srv.URL + "/v/42?t=" + linkToken

	alice := b.Open(t, link)
	alice.WaitFor(t, `window.urvaCall.state === "waiting"`, waitShort)
	bob := b.Open(t, link)
	browsertest.CheckVideoRelayed(t, alice)
	browsertest.CheckVideoRelayed(t, bob)

	var alicePeer, bobPeer string
	alice.Eval(t, `window.urvaCall.peerId`, &alicePeer)
	bob.Eval(t, `window.urvaCall.peerId`, &bobPeer)
	if alicePeer == "" || bobPeer == "" || alicePeer == bobPeer {
		t.Fatalf("peer ids %q and %q", alicePeer, bobPeer)
	}

	// Mute and unmute: the audio track the connection sends is disabled.
	const audioEnabled = `window.urvaCall.pc.getSenders().find((s) => s.track && s.track.kind === "audio").track.enabled`
	alice.Click(t, "#mute")
	var enabled bool
	alice.Eval(t, audioEnabled, &enabled)
	if enabled {
		t.Fatal("audio track still enabled after #mute")
	}
	if got := alice.Text(t, "#mute"); got != "Unmute" {
		t.Fatalf("#mute label %q after muting, want Unmute", got)
	}
	alice.WaitFor(t, `document.getElementById("mute").getAttribute("aria-pressed") === "true"`, waitShort)
	alice.Click(t, "#mute")
	alice.Eval(t, audioEnabled, &enabled)
	if !enabled {
		t.Fatal("audio track disabled after unmuting")
	}

	// The camera button disables the video track.
	bob.Click(t, "#camera")
	bob.WaitFor(t, `!window.urvaCall.pc.getSenders().find((s) => s.track && s.track.kind === "video").track.enabled`, waitShort)
	if got := bob.Text(t, "#camera"); got != "Camera on" {
		t.Fatalf("#camera label %q after turning it off, want Camera on", got)
	}
	bob.Click(t, "#camera")

	// A reload rejoins as the same participant and the call resumes.
	bob.Reload(t)
	bob.WaitFor(t, `window.urvaCall.peerId !== ""`, waitShort)
	var again string
	bob.Eval(t, `window.urvaCall.peerId`, &again)
	if again != bobPeer {
		t.Fatalf("peer id after reload %q, want %q", again, bobPeer)
	}
	browsertest.CheckVideoRelayed(t, bob)
	browsertest.CheckVideoRelayed(t, alice)

	// Signalling sockets lost without "ended" (a server restart) are
	// reopened by both pages as the same participants, and the call resumes
	// on new connections.
	for _, p := range []*browsertest.Page{alice, bob} {
		p.Eval(t, `window.urvaCall.pc.beforeDrop = true`, nil)
	}
	srv.relay.closeAll()
	for _, p := range []*browsertest.Page{alice, bob} {
		p.WaitFor(t, `window.urvaCall.pc !== null && !window.urvaCall.pc.beforeDrop`, waitLong)
		browsertest.CheckVideoRelayed(t, p)
	}

	// A third participant is turned away with the server's message.
	third := b.Open(t, link)
	third.WaitFor(t, `window.urvaCall.state === "error"`, waitShort)
	if got := third.Text(t, "#message"); got != "This call already has two participants." {
		t.Fatalf("third participant's message %q", got)
	}
	third.Close()

	// Hanging up ends the call on both pages.
	alice.Click(t, "#hangup")
	for _, p := range []*browsertest.Page{alice, bob} {
		p.WaitFor(t, `window.urvaCall.state === "ended"`, waitShort)
		if msg := p.Text(t, "#message"); !strings.Contains(msg, "The call has ended") || !strings.Contains(msg, "Duration") {
			t.Fatalf("%s: end message %q", p.Name, msg)
		}
		p.WaitFor(t, `window.urvaCall.pc === null && document.getElementById("local").srcObject === null`, waitShort)
	}
	t.Logf("browser test took %s", time.Since(begin).Round(time.Millisecond))
}

func TestVideoPageShowsLinkError(t *testing.T) {
	const msg = "This call link has expired. Ask for a new one."
	for _, tc := range []struct {
		name string
		body any
	}{
		{"nested", apiError("expired", msg)},
		// The flat form {"error":message,"code":...} is accepted too.
		{"flat", map[string]string{"error": msg, "code": "expired"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := browsertest.Start(t)
			srv := startCallServer(t, fasthttp.StatusGone, tc.body)

			p := b.Open(t, srv.URL+"/v/7?t="+linkToken)
			p.WaitFor(t, `window.urvaCall.state === "error"`, waitShort)
			if got := p.Text(t, "#message"); got != msg {
				t.Fatalf("#message %q, want %q", got, msg)
			}
			var message string
			p.Eval(t, `window.urvaCall.message`, &message)
			if message != msg {
				t.Fatalf("urvaCall.message %q, want %q", message, msg)
			}
			if n := srv.relay.joinCount(); n != 0 {
				t.Fatalf("%d signalling joins after a failed link check, want 0", n)
			}
		})
	}
}
