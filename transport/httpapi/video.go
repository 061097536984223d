package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/internal/logfields"
	"urva/persistence"
	"urva/transport/auth"
	"urva/transport/turn"
	"urva/transport/web"
)

// Video call endpoints:
//
//	POST /api/video-calls                        {"invitee_rm_id"} or {"conversation_id"} -> 201 {"video_call":{"id","link","expires_at",...}}
//	GET  /api/video-calls/{id}                   -> 200 {"video_call":{...}} (RM token)
//	GET  /api/video-invites                      -> 200 {"video_invites":[...]} open invitations (RM token)
//	GET  /api/video-calls/{id}/ice-servers?token= the ICE servers and TURN credentials (link token)
//	GET  /v/{id}?t=                              the call page (link token)
//	GET  /ws/video/{id}?token=&peer=             the signalling socket (link token)
//	GET  /static/...                             the pages' scripts and styles

// Video is what the HTTP layer asks of the actor system about video calls.
// *actors.System satisfies it through Options.System; tests use fakes.
type Video interface {
	// StartVideoCall makes a call from p to another RM or to the contact of
	// a conversation and returns it with its link.
	StartVideoCall(ctx context.Context, p actors.Principal, inviteeRMID, conversationID int64) (*actors.VideoInvite, error)
	// VideoCall returns a call p may see.
	VideoCall(ctx context.Context, p actors.Principal, id int64) (*persistence.VideoCall, error)
	// LinkedVideoCall returns a call for someone holding its verified link.
	LinkedVideoCall(ctx context.Context, id int64) (*persistence.VideoCall, error)
	// PendingVideoInvites lists the open invitations of p.
	PendingVideoInvites(ctx context.Context, p actors.Principal) ([]actors.VideoInviteJSON, error)
	// JoinVideo hands a signalling socket to the call.
	JoinVideo(callID int64, peerID string, rmID int64, conn actors.Conn) *actors.VideoPeer
}

var _ Video = (*actors.System)(nil)

const (
	videoAPIPrefix = "/api/video-calls/"
	videoPagePath  = "/v/"
	videoWSPrefix  = "/ws/video/"
	staticPrefix   = "/static/"
)

// peerIDPattern is what a page may call itself (a UUID in practice).
var peerIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Link refusals the transport decides (the actor decides the others).
const (
	linkInvalid = "invalid_link"
)

var linkMessages = map[string]string{
	linkInvalid: "This call link is not valid. Check that you opened the whole link you were sent.",
}

func linkMessage(code string) string {
	if m, ok := linkMessages[code]; ok {
		return m
	}
	return actors.VideoRefusalMessage(code)
}

// videoErrorBody is an error of the link-authenticated endpoints: the
// usual {"error": message} plus a code the call page can act on.
type videoErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

type startVideoBody struct {
	InviteeRMID    int64 `json:"invitee_rm_id"`
	ConversationID int64 `json:"conversation_id"`
}

// videoCallJSON is the video call object of the API.
type videoCallJSON struct {
	persistence.OutboxVideoCall
	ConversationID int64  `json:"conversation_id"`
	Link           string `json:"link,omitempty"`
}

type videoResponse struct {
	VideoCall videoCallJSON       `json:"video_call"`
	Message   *actors.MessageJSON `json:"message,omitempty"`
}

func (s *Server) videoReady(c *call) bool {
	if s.opts.Video == nil || s.opts.Links == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, "video calls are not configured")
		return false
	}
	return true
}

// startVideoCall: POST /api/video-calls.
func (s *Server) startVideoCall(c *call, p actors.Principal) {
	var body startVideoBody
	if !decodeJSON(c, &body) {
		return
	}
	switch {
	case body.InviteeRMID < 0 || body.ConversationID < 0:
		badRequest(c, "invalid invitee_rm_id or conversation_id")
		return
	case (body.InviteeRMID == 0) == (body.ConversationID == 0):
		badRequest(c, "give either invitee_rm_id or conversation_id")
		return
	}
	if !s.videoReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	inv, err := s.opts.Video.StartVideoCall(ctx, p, body.InviteeRMID, body.ConversationID)
	if err != nil {
		apiError(c, err)
		return
	}
	c.log.Info().Int64("rm_id", p.RMID).Int64("video_call_id", inv.Call.ID).
		Int64("invitee_rm_id", body.InviteeRMID).Int64("conversation_id", body.ConversationID).Msg("video call made")
	resp := videoResponse{VideoCall: videoCallJSON{OutboxVideoCall: persistence.OutboxVideoCallOf(inv.Call),
		ConversationID: inv.Call.ConversationID, Link: inv.Link}}
	if inv.Message != nil {
		resp.Message = messageOf(inv.Message)
	}
	writeJSON(c.ctx, fasthttp.StatusCreated, resp)
}

// videoInvites: GET /api/video-invites lists the RM's open invitations
// (the video_invite frames an RM who was offline did not get).
func (s *Server) videoInvites(c *call, p actors.Principal) {
	if !s.videoReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	list, err := s.opts.Video.PendingVideoInvites(ctx, p)
	if err != nil {
		apiError(c, err)
		return
	}
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"video_invites": list})
}

// videoCallSub: GET /api/video-calls/{id} (RM token) and
// GET /api/video-calls/{id}/ice-servers (link token).
func (s *Server) videoCallSub(c *call) {
	rest := strings.TrimPrefix(string(c.ctx.Path()), videoAPIPrefix)
	idStr, sub, _ := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil || id <= 0 || (sub != "" && sub != "ice-servers") {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	if !s.videoReady(c) {
		return
	}
	if sub == "ice-servers" {
		s.iceServers(c, id)
		return
	}
	p, ok := s.principal(c, false)
	if !ok {
		unauthorized(c)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	vc, err := s.opts.Video.VideoCall(ctx, p, id)
	if err != nil {
		apiError(c, err)
		return
	}
	writeJSON(c.ctx, fasthttp.StatusOK, videoResponse{VideoCall: videoCallJSON{
		OutboxVideoCall: persistence.OutboxVideoCallOf(vc), ConversationID: vc.ConversationID}})
}

// checkLink verifies a link token for call id and that the call can still
// be joined. It returns the HTTP status and refusal code when not.
func (s *Server) checkLink(c *call, id int64, token string) (*persistence.VideoCall, int, string) {
	now := time.Now()
	if _, err := s.opts.Links.Verify(id, token, now); err != nil {
		if errors.Is(err, auth.ErrExpiredLink) {
			return nil, fasthttp.StatusGone, actors.VideoRefusedExpired
		}
		return nil, fasthttp.StatusForbidden, linkInvalid
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	vc, err := s.opts.Video.LinkedVideoCall(ctx, id)
	switch {
	case errors.Is(err, actors.ErrNotFound):
		return nil, fasthttp.StatusNotFound, actors.VideoRefusedNotFound
	case err != nil:
		c.log.Warn().Err(err).Int64("video_call_id", id).Msg("video call lookup")
		return nil, fasthttp.StatusServiceUnavailable, actors.VideoRefusedUnavailable
	case vc.Status == persistence.VideoCallEnded:
		return nil, fasthttp.StatusGone, actors.VideoRefusedEnded
	}
	return vc, fasthttp.StatusOK, ""
}

// iceServers answers the ICE servers and TURN credentials for the holder
// of a valid link: the user part of the credentials is the call, so the
// TURN server's per-user quota bounds what one link can allocate.
func (s *Server) iceServers(c *call, id int64) {
	_, status, code := s.checkLink(c, id, string(c.ctx.QueryArgs().Peek("token")))
	if code != "" {
		writeJSON(c.ctx, status, videoErrorBody{Error: linkMessage(code), Code: code})
		return
	}
	noStore(c.ctx)
	if s.opts.ICEServers == nil {
		writeJSON(c.ctx, fasthttp.StatusOK, turn.ICEConfig{ICEServers: []turn.ICEServer{}, URIs: []string{}, ICETransportPolicy: "all"})
		return
	}
	writeJSON(c.ctx, fasthttp.StatusOK, s.opts.ICEServers("video-"+strconv.FormatInt(id, 10)))
}

// videoPage: GET /v/{id}?t= serves the call page, or a page that says why
// the link cannot be used.
func (s *Server) videoPage(c *call) {
	id, err := strconv.ParseInt(strings.TrimPrefix(string(c.ctx.Path()), videoPagePath), 10, 64)
	if err != nil || id <= 0 {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	pageHeaders(c.ctx)
	if !s.videoReady(c) {
		return
	}
	_, status, code := s.checkLink(c, id, string(c.ctx.QueryArgs().Peek("t")))
	c.ctx.SetContentType("text/html; charset=utf-8")
	if code != "" {
		c.ctx.SetStatusCode(status)
		c.ctx.SetBody(web.ErrorPage("This call link cannot be used", linkMessage(code)))
		return
	}
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBody(web.VideoPage())
}

// pageHeaders are the headers of every page: the link token is in the URL,
// so no referrer leaves the page; only this origin's scripts run; camera
// and microphone only for this origin.
func pageHeaders(ctx *fasthttp.RequestCtx) {
	noStore(ctx)
	h := &ctx.Response.Header
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Permissions-Policy", "camera=(self), microphone=(self)")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
}

func noStore(ctx *fasthttp.RequestCtx) { ctx.Response.Header.Set("Cache-Control", "no-store") }

// static: GET /static/{name}, the pages' assets embedded in the binary.
func (s *Server) static(c *call) {
	name := strings.TrimPrefix(string(c.ctx.Path()), staticPrefix)
	if name == "" || strings.Contains(name, "..") {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	b, err := fs.ReadFile(web.StaticFS(), name)
	if err != nil {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	ct := http.DetectContentType(b)
	switch {
	case strings.HasSuffix(name, ".js"):
		ct = "text/javascript; charset=utf-8"
	case strings.HasSuffix(name, ".css"):
		ct = "text/css; charset=utf-8"
	case strings.HasSuffix(name, ".svg"):
		ct = "image/svg+xml"
	case strings.HasSuffix(name, ".html"):
		ct = "text/html; charset=utf-8"
	}
	c.ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	// Assets change with the binary: revalidate rather than cache for long.
	c.ctx.Response.Header.Set("Cache-Control", "no-cache")
	c.ctx.SetContentType(ct)
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBody(b)
}

// videoSocket: GET /ws/video/{id}?token=&peer= upgrades to the signalling
// socket. A bad link is refused on the socket itself (an error frame, then
// close), since a browser cannot read the body of a failed upgrade.
func (s *Server) videoSocket(c *call) {
	id, err := strconv.ParseInt(strings.TrimPrefix(string(c.ctx.Path()), videoWSPrefix), 10, 64)
	if err != nil || id <= 0 {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	q := c.ctx.QueryArgs()
	peer := string(q.Peek("peer"))
	if !peerIDPattern.MatchString(peer) {
		badRequest(c, "peer must be 1 to 64 letters, digits, '-' or '_'")
		return
	}
	if s.isShuttingDown() || s.opts.Video == nil || s.opts.Links == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return
	}
	_, _, code := s.checkLink(c, id, string(q.Peek("token")))
	var rmID int64
	if p, ok := s.principal(c, false); ok {
		rmID = p.RMID
	}
	log := logfields.With(s.log, logfields.Str("request_id", c.id), logfields.Int64("video_call_id", id), logfields.Str("peer", peer))
	so := s.opts.Socket
	err = s.upgrade(c, func(ws *websocket.Conn, br *bufio.Reader) {
		if code != "" {
			refuseSocket(ws, so, code)
			return
		}
		s.serveSocket(actors.SocketVideo, ws, br, so, log, func(w *wsConn) Session { return s.opts.Video.JoinVideo(id, peer, rmID, w) }, nil)
	})
	if err != nil {
		log.Warn().Err(err).Msg("video socket upgrade failed")
	}
}

// refuseSocket sends an error frame with the refusal and closes the socket.
func refuseSocket(ws *websocket.Conn, so SocketOptions, code string) {
	defer ws.Close()
	msg := linkMessage(code)
	_ = ws.SetWriteDeadline(time.Now().Add(so.WriteTimeout))
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", code, msg})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.ClosePolicyViolation, truncateUTF8(msg, 123)), time.Now().Add(time.Second))
	drain(ws)
}
