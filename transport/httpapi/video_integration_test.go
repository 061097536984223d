package httpapi_test

// Video calls over HTTP and websockets, on SQLite and on MariaDB: the link,
// the invite on the second RM's socket, the link message to a contact, the
// ICE servers, the refusals (tampered, expired, used up, a third
// participant) and the CRM event. The browser half is video_browser_test.go.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"urva/persistence"
	"urva/persistence/storetest"
)

func init() {
	// docs/crm.md: the keys of video_call.ended.
	documentedKeys[persistence.OutboxVideoCallEnded] = map[string][]string{
		"":             {"conversation", "contact", "video_call"},
		"conversation": {"id", "channel", "business_number", "assigned_rm_id"},
		"contact":      {"phone", "name"},
		"video_call": {"id", "status", "end_reason", "inviter_rm_id", "invitee_rm_id", "contact_phone", "created_at",
			"expires_at", "started_at", "ended_at", "duration_seconds", "joins"},
	}
}

// videoCallOut is the video call object of the API.
type videoCallOut struct {
	ID              int64     `json:"id"`
	Link            string    `json:"link"`
	ExpiresAt       time.Time `json:"expires_at"`
	Status          string    `json:"status"`
	EndReason       string    `json:"end_reason"`
	ConversationID  int64     `json:"conversation_id"`
	InviterRMID     int64     `json:"inviter_rm_id"`
	InviteeRMID     int64     `json:"invitee_rm_id"`
	DurationSeconds int64     `json:"duration_seconds"`
	Joins           int       `json:"joins"`
	StartedAt       *string   `json:"started_at"`
}

func (s *stack) mustStartVideo(token string, body any) (videoCallOut, *frameMessage) {
	s.t.Helper()
	r := s.postJSON("/api/video-calls", token, body)
	if r.status != http.StatusCreated {
		s.t.Fatalf("POST /api/video-calls %v: %v", body, r)
	}
	var out struct {
		VideoCall videoCallOut  `json:"video_call"`
		Message   *frameMessage `json:"message"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.VideoCall.ID == 0 || out.VideoCall.Link == "" {
		s.t.Fatalf("POST /api/video-calls answer: %v: %s", err, r.body)
	}
	return out.VideoCall, out.Message
}

func (s *stack) videoCall(token string, id int64) (videoCallOut, response) {
	s.t.Helper()
	r := s.do("GET", fmt.Sprintf("/api/video-calls/%d", id), token, nil, nil)
	var out struct {
		VideoCall videoCallOut `json:"video_call"`
	}
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &out); err != nil {
			s.t.Fatalf("GET video call: %v: %s", err, r.body)
		}
	}
	return out.VideoCall, r
}

// linkToken returns the t parameter of a call link, checking its shape.
func (s *stack) linkToken(link string, id int64) string {
	s.t.Helper()
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, s.base+"/v/") || u.Path != fmt.Sprintf("/v/%d", id) || u.Query().Get("t") == "" {
		s.t.Fatalf("link %q", link)
	}
	return u.Query().Get("t")
}

// signalClient is one participant's signalling socket.
type signalClient struct {
	t *testing.T
	c *websocket.Conn
}

func (s *stack) signal(id int64, token, peer string) *signalClient {
	s.t.Helper()
	d := websocket.Dialer{HandshakeTimeout: itGuard}
	c, resp, err := d.Dial(fmt.Sprintf("ws://%s/ws/video/%d?token=%s&peer=%s", s.addr, id, url.QueryEscape(token), peer), nil)
	if err != nil {
		s.t.Fatalf("dial video socket: %v (%v)", err, resp)
	}
	s.t.Cleanup(func() { c.Close() })
	return &signalClient{t: s.t, c: c}
}

func (sc *signalClient) next() map[string]any {
	sc.t.Helper()
	_ = sc.c.SetReadDeadline(time.Now().Add(itGuard))
	_, data, err := sc.c.ReadMessage()
	if err != nil {
		sc.t.Fatalf("video socket read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		sc.t.Fatalf("video frame %s: %v", data, err)
	}
	return m
}

func (sc *signalClient) want(typ string) map[string]any {
	sc.t.Helper()
	m := sc.next()
	if m["type"] != typ {
		sc.t.Fatalf("want %q, got %v", typ, m)
	}
	return m
}

// refused reads the error frame with code and then the close.
func (sc *signalClient) refused(code string) {
	sc.t.Helper()
	m := sc.want("error")
	if m["code"] != code || m["message"] == "" {
		sc.t.Fatalf("refusal %v, want code %s", m, code)
	}
	if _, _, err := sc.c.ReadMessage(); err == nil {
		sc.t.Fatal("socket still open after the refusal")
	}
}

func (sc *signalClient) send(v string) {
	sc.t.Helper()
	if err := sc.c.WriteMessage(websocket.TextMessage, []byte(v)); err != nil {
		sc.t.Fatal(err)
	}
}

func TestIntegrationVideoCallBetweenRMs(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withVideo(videoConfig{RelayOnly: true}))
		tokA, tokB, tokSup := s.login(s.rmA), s.login(s.rmB), s.login(s.sup)
		wsB := s.dial(tokB)
		wsB.online()

		vc, msg := s.mustStartVideo(tokA, map[string]any{"invitee_rm_id": s.rmB.ID})
		if msg != nil || vc.Status != persistence.VideoCallCreated || vc.InviterRMID != s.rmA.ID || vc.InviteeRMID != s.rmB.ID ||
			vc.ExpiresAt.Before(time.Now().Add(50*time.Minute)) {
			t.Fatalf("video call %+v", vc)
		}
		token := s.linkToken(vc.Link, vc.ID)

		// The invite reaches the second RM's socket.
		inv := wsB.next("video_invite")
		var invite struct {
			VideoCall struct {
				ID       int64  `json:"id"`
				Link     string `json:"link"`
				FromRMID int64  `json:"from_rm_id"`
			} `json:"video_call"`
		}
		if err := json.Unmarshal([]byte(inv.raw), &invite); err != nil || invite.VideoCall.ID != vc.ID ||
			invite.VideoCall.Link != vc.Link || invite.VideoCall.FromRMID != s.rmA.ID {
			t.Fatalf("invite %s (%v)", inv, err)
		}

		// Both RMs and supervisors see the call; another RM does not.
		for _, tok := range []string{tokA, tokB, tokSup} {
			if got, r := s.videoCall(tok, vc.ID); r.status != http.StatusOK || got.ID != vc.ID {
				t.Fatalf("GET video call: %v", r)
			}
		}
		other := s.createUser("rm-c", "pw-c", persistence.RoleRM, "")
		if _, r := s.videoCall(s.login(other), vc.ID); r.status != http.StatusForbidden {
			t.Fatalf("another RM reads the call: %v", r)
		}
		if r := s.do("GET", fmt.Sprintf("/api/video-calls/%d", vc.ID), "", nil, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("no token: %v", r)
		}

		// ICE servers for the link: the built-in TURN server, relay only,
		// credentials in the TURN REST scheme for this call.
		r := s.do("GET", fmt.Sprintf("/api/video-calls/%d/ice-servers?token=%s", vc.ID, url.QueryEscape(token)), "", nil, nil)
		var ice struct {
			Username   string   `json:"username"`
			Password   string   `json:"password"`
			TTL        int64    `json:"ttl"`
			URIs       []string `json:"uris"`
			ICEServers []struct {
				URLs       []string `json:"urls"`
				Username   string   `json:"username"`
				Credential string   `json:"credential"`
			} `json:"ice_servers"`
			Policy string `json:"ice_transport_policy"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &ice) != nil {
			t.Fatalf("ice servers: %v", r)
		}
		port := s.turn.Addr().String()[strings.LastIndexByte(s.turn.Addr().String(), ':')+1:]
		if ice.Policy != "relay" || len(ice.URIs) != 2 || ice.URIs[0] != "turn:127.0.0.1:"+port+"?transport=udp" ||
			!strings.HasSuffix(ice.Username, fmt.Sprintf(":video-%d", vc.ID)) || ice.Password == "" || ice.TTL <= 0 ||
			len(ice.ICEServers) != 1 || ice.ICEServers[0].Credential != ice.Password {
			t.Fatalf("ice servers %s", r.body)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("ice servers may be cached: %v", r.header)
		}

		// Signalling: two participants, a third refused, hang-up ends it for both.
		a := s.signal(vc.ID, token, "peer-a")
		if m := a.want("joined"); m["others"] != float64(0) {
			t.Fatalf("joined %v", m)
		}
		b := s.signal(vc.ID, token, "peer-b")
		if m := b.want("joined"); m["others"] != float64(1) {
			t.Fatalf("joined %v", m)
		}
		a.want("peer_joined")
		a.send(`{"type":"offer","sdp":"v=0"}`)
		if m := b.want("offer"); m["sdp"] != "v=0" {
			t.Fatalf("offer %v", m)
		}
		s.signal(vc.ID, token, "peer-c").refused("full")
		b.send(`{"type":"hangup"}`)
		for _, p := range []*signalClient{a, b} {
			if m := p.want("ended"); m["reason"] != persistence.VideoEndHangup {
				t.Fatalf("ended %v", m)
			}
		}
		got, _ := s.videoCall(tokA, vc.ID)
		if got.Status != persistence.VideoCallEnded || got.EndReason != persistence.VideoEndHangup || got.StartedAt == nil || got.Joins != 2 {
			t.Fatalf("ended call %+v", got)
		}

		// The link is used up: page, ICE servers and socket say so.
		page := s.do("GET", fmt.Sprintf("/v/%d?t=%s", vc.ID, url.QueryEscape(token)), "", nil, nil)
		if page.status != http.StatusGone || !strings.Contains(string(page.body), "This call has ended") ||
			!strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
			t.Fatalf("used-up link page: %v", page)
		}
		if r := s.do("GET", fmt.Sprintf("/api/video-calls/%d/ice-servers?token=%s", vc.ID, url.QueryEscape(token)), "", nil, nil); r.status != http.StatusGone ||
			!strings.Contains(string(r.body), `"code":"ended"`) {
			t.Fatalf("used-up link ICE servers: %v", r)
		}
		s.signal(vc.ID, token, "peer-a").refused("ended")
	})
}

func TestIntegrationVideoInvitesWhileOffline(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withVideo(videoConfig{}))
		tokA, tokB := s.login(s.rmA), s.login(s.rmB)
		// B is offline: no socket gets the video_invite frame.
		vc, _ := s.mustStartVideo(tokA, map[string]any{"invitee_rm_id": s.rmB.ID})
		invites := func(tok string) []map[string]any {
			t.Helper()
			r := s.do("GET", "/api/video-invites", tok, nil, nil)
			var out struct {
				Invites []map[string]any `json:"video_invites"`
			}
			if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
				t.Fatalf("GET /api/video-invites: %v", r)
			}
			return out.Invites
		}
		// When B comes back, the invitation is there, with its link.
		got := invites(tokB)
		if len(got) != 1 || got[0]["link"] != vc.Link || got[0]["from_rm_id"] != float64(s.rmA.ID) || got[0]["from_name"] == "" {
			t.Fatalf("B's invitations %v", got)
		}
		if got := invites(tokA); len(got) != 0 {
			t.Fatalf("the inviter's invitations %v", got)
		}
		// Once the call started, it is no longer an open invitation.
		token := s.linkToken(vc.Link, vc.ID)
		a := s.signal(vc.ID, token, "peer-a")
		a.want("joined")
		b := s.signal(vc.ID, token, "peer-b")
		b.want("joined")
		a.want("peer_joined")
		a.send(`{"type":"hangup"}`)
		a.want("ended")
		if got := invites(tokB); len(got) != 0 {
			t.Fatalf("invitations after the call %v", got)
		}
		if r := s.do("GET", "/api/video-invites", "", nil, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("no token: %v", r)
		}
	})
}

func TestIntegrationVideoLinkRefusals(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withVideo(videoConfig{}))
		tokA := s.login(s.rmA)
		vc, _ := s.mustStartVideo(tokA, map[string]any{"invitee_rm_id": s.rmB.ID})
		token := s.linkToken(vc.Link, vc.ID)

		// A good link serves the call page, with headers that keep the token in.
		page := s.do("GET", fmt.Sprintf("/v/%d?t=%s", vc.ID, url.QueryEscape(token)), "", nil, nil)
		if page.status != http.StatusOK || !strings.Contains(string(page.body), "/static/video.js") ||
			page.header.Get("Referrer-Policy") != "no-referrer" || page.header.Get("Content-Security-Policy") == "" {
			t.Fatalf("call page: %v %v", page.status, page.header)
		}
		if js := s.do("GET", "/static/video.js", "", nil, nil); js.status != http.StatusOK || !strings.HasPrefix(js.header.Get("Content-Type"), "text/javascript") {
			t.Fatalf("script: %v", js.status)
		}

		expired := s.links.Sign(vc.ID, time.Now().Add(-time.Minute)) // a real signature, in the past
		tampered := strings.Replace(token, token[:3], "999", 1)
		otherCall := s.links.Sign(vc.ID+1, vc.ExpiresAt)
		for _, c := range []struct {
			name, token, code, text string
			status                  int
		}{
			{"expired", expired, "expired", "has expired", http.StatusGone},
			{"tampered", tampered, "invalid_link", "not valid", http.StatusForbidden},
			{"another call's", otherCall, "invalid_link", "not valid", http.StatusForbidden},
			{"missing", "", "invalid_link", "not valid", http.StatusForbidden},
		} {
			q := url.QueryEscape(c.token)
			if r := s.do("GET", fmt.Sprintf("/v/%d?t=%s", vc.ID, q), "", nil, nil); r.status != c.status || !strings.Contains(string(r.body), c.text) {
				t.Errorf("%s link page: %v", c.name, r)
			}
			r := s.do("GET", fmt.Sprintf("/api/video-calls/%d/ice-servers?token=%s", vc.ID, q), "", nil, nil)
			var body struct{ Error, Code string }
			if r.status != c.status || json.Unmarshal(r.body, &body) != nil || body.Code != c.code || !strings.Contains(body.Error, c.text) {
				t.Errorf("%s link ICE servers: %v", c.name, r)
			}
			s.signal(vc.ID, c.token, "peer-x").refused(c.code)
		}
		if r := s.do("GET", "/v/999999?t="+url.QueryEscape(s.links.Sign(999999, vc.ExpiresAt)), "", nil, nil); r.status != http.StatusNotFound {
			t.Errorf("unknown call page: %v", r)
		}
		// Bad requests.
		for _, body := range []any{
			map[string]any{},
			map[string]any{"invitee_rm_id": s.rmB.ID, "conversation_id": 1},
			map[string]any{"invitee_rm_id": s.rmA.ID},
			map[string]any{"invitee_rm_id": 999999},
		} {
			if r := s.postJSON("/api/video-calls", tokA, body); r.status != http.StatusBadRequest {
				t.Errorf("POST %v: %v", body, r)
			}
		}
		if r := s.postJSON("/api/video-calls", tokA, map[string]any{"conversation_id": 999999}); r.status != http.StatusNotFound {
			t.Errorf("unknown conversation: %v", r)
		}
		if r := s.postJSON("/api/video-calls", "", map[string]any{"invitee_rm_id": s.rmB.ID}); r.status != http.StatusUnauthorized {
			t.Errorf("no token: %v", r)
		}
		bad := websocket.Dialer{HandshakeTimeout: itGuard}
		if _, resp, err := bad.Dial(fmt.Sprintf("ws://%s/ws/video/%d?token=%s&peer=%s", s.addr, vc.ID, url.QueryEscape(token), "bad%20peer"), nil); err == nil ||
			resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("bad peer id: %v %v", err, resp)
		}
	})
}

func TestIntegrationVideoCallWithAContact(t *testing.T) {
	forEachCRM(t, time.Hour, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		rcv := newCRMReceiver(t, "127.0.0.1:0", nil)
		s := newStack(t, store, withVideo(videoConfig{}), withCRM(rcv.url, time.Hour, wake))
		tokA := s.login(s.rmA)
		ws := s.dial(tokA)
		ws.online()
		s.mustWebhook(inboundBody(inbound{From: "919811100031", Name: "Video Contact", WAMID: s.wamid(), Text: "can we see each other?"}))
		first := ws.next("message")
		before := len(s.sb.Sent())

		vc, msg := s.mustStartVideo(tokA, map[string]any{"conversation_id": first.ConversationID})
		if vc.ConversationID != first.ConversationID || msg == nil || !strings.Contains(msg.Text, vc.Link) || msg.Direction != "out" {
			t.Fatalf("video call %+v, message %+v", vc, msg)
		}
		// The conversation's timeline: the video call, then the message with the link.
		if f := ws.next("video_call", "message"); f.Type != "video_call" || f.Seq != first.Seq+1 {
			t.Fatalf("want the video_call event, got %s", f)
		}
		if f := ws.next("message"); f.Message.Text != msg.Text || f.Seq != first.Seq+2 {
			t.Fatalf("want the link message, got %s", f)
		}
		ws.next("status") // sent: the provider took it
		sentNow := s.sb.Sent()[before:]
		if len(sentNow) != 1 || !strings.Contains(sentNow[0].Text, vc.Link) || sentNow[0].To != "+919811100031" {
			t.Fatalf("provider sends %+v", sentNow)
		}

		// The contact and the RM meet; the RM leaves for good, the contact hangs up.
		token := s.linkToken(vc.Link, vc.ID)
		rm := s.signal(vc.ID, token, "rm")
		rm.want("joined")
		contact := s.signal(vc.ID, token, "contact")
		contact.want("joined")
		rm.want("peer_joined")
		contact.send(`{"type":"hangup"}`)
		rm.want("ended")
		contact.want("ended")
		// The timeline shows the start and the end (statuses of the link
		// message may come in between).
		for _, want := range []string{`"status":"active"`, `"status":"ended","end_reason":"hangup"`} {
			if f := ws.next("video_call"); !strings.Contains(f.raw, want) {
				t.Fatalf("video_call event %s, want %s", f, want)
			}
		}

		// video_call.ended reaches the CRM, once, with the call's data.
		var ev crmEvent
		rcv.waitFor(t, "video_call.ended", func() bool {
			for _, e := range rcv.accepted {
				if e.Type == persistence.OutboxVideoCallEnded {
					ev = e
					return true
				}
			}
			return false
		})
		for _, e := range rcv.acceptedEvents() {
			if e.Type == persistence.OutboxVideoCallEnded && e.ID != ev.ID {
				t.Fatalf("a second video_call.ended: %s", e.Body)
			}
		}
		var data struct {
			Conversation struct {
				ID int64 `json:"id"`
			} `json:"conversation"`
			VideoCall struct {
				ID        int64  `json:"id"`
				EndReason string `json:"end_reason"`
				Joins     int    `json:"joins"`
			} `json:"video_call"`
		}
		if err := json.Unmarshal(ev.DataRaw, &data); err != nil || data.Conversation.ID != first.ConversationID ||
			data.VideoCall.ID != vc.ID || data.VideoCall.EndReason != persistence.VideoEndHangup || data.VideoCall.Joins != 2 {
			t.Fatalf("video_call.ended %s (%v)", ev.DataRaw, err)
		}
	})
}
