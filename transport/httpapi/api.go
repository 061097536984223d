package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/persistence"
	"urva/transport/auth"
)

// apiTimeout bounds one RM API call.
const apiTimeout = 15 * time.Second

// Page sizes of the list endpoints.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

// authedFunc is a handler that runs for an authenticated RM.
type authedFunc func(c *call, p actors.Principal)

// authed wraps h with the bearer token check.
func (s *Server) authed(h authedFunc) handlerFunc {
	return func(c *call) {
		p, ok := s.principal(c, false)
		if !ok {
			unauthorized(c)
			return
		}
		h(c, p)
	}
}

// principal reads and checks the RM token, from the Authorization header
// or, when allowQuery, from ?token=.
func (s *Server) principal(c *call, allowQuery bool) (actors.Principal, bool) {
	tok := auth.BearerToken(c.ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if tok == "" && allowQuery {
		tok = string(c.ctx.QueryArgs().Peek("token"))
	}
	if tok == "" || s.opts.Tokens == nil {
		return actors.Principal{}, false
	}
	claims, err := s.opts.Tokens.Parse(tok, time.Now())
	if err != nil || claims.RMID <= 0 {
		c.log.Debug().Err(err).Msg("token rejected")
		return actors.Principal{}, false
	}
	return actors.Principal{RMID: claims.RMID, Role: claims.Role}, true
}

func unauthorized(c *call) {
	c.ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, "Bearer")
	writeError(c.ctx, fasthttp.StatusUnauthorized, "unauthorized")
}

// admin wraps h with the operator token check.
func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(c *call) {
		tok := auth.BearerToken(c.ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
		want := s.opts.AdminToken
		if want == "" || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(want)) != 1 {
			unauthorized(c)
			return
		}
		h(c)
	}
}

// apiError answers an error from the actor system with its status.
func apiError(c *call, err error) {
	switch {
	case errors.Is(err, actors.ErrForbidden):
		writeError(c.ctx, fasthttp.StatusForbidden, "forbidden")
	case errors.Is(err, actors.ErrNotFound), errors.Is(err, persistence.ErrNotFound):
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
	case errors.Is(err, actors.ErrBadRequest):
		writeError(c.ctx, fasthttp.StatusBadRequest, err.Error())
	case errors.Is(err, actors.ErrWindowClosed), errors.Is(err, actors.ErrOptedOut):
		writeError(c.ctx, fasthttp.StatusUnprocessableEntity, err.Error())
	default:
		c.log.Error().Err(err).Msg("request failed")
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
	}
}

// badRequest answers 400 with msg.
func badRequest(c *call, msg string) {
	writeError(c.ctx, fasthttp.StatusBadRequest, msg)
}

// decodeJSON decodes the request body into v; it answers 400 and reports
// false when the body is not a JSON object of the right shape.
func decodeJSON(c *call, v any) bool {
	body := c.ctx.Request.Body()
	if len(body) == 0 {
		badRequest(c, "request body required")
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		badRequest(c, "invalid JSON: "+err.Error())
		return false
	}
	return true
}

func (s *Server) ready(c *call) bool {
	if s.actors == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return false
	}
	return true
}

// ---- login

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type rmJSON struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Name     string `json:"name,omitempty"`
	Role     string `json:"role"`
	Online   *bool  `json:"online,omitempty"` // the RM list only
}

type loginResponse struct {
	Token string `json:"token"`
	RM    rmJSON `json:"rm"`
}

// login checks a username and password and issues a session token.
func (s *Server) login(c *call) {
	var req loginRequest
	if !decodeJSON(c, &req) {
		return
	}
	if s.store == nil || s.opts.Tokens == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return
	}
	if req.Username == "" || req.Password == "" {
		writeError(c.ctx, fasthttp.StatusUnauthorized, "invalid username or password")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	rm, err := s.store.RMByUsername(ctx, req.Username)
	switch {
	case errors.Is(err, persistence.ErrNotFound) || (err == nil && rm == nil):
		// An empty hash still costs one comparison, so the answer time does
		// not tell which usernames exist.
		auth.CheckPassword("", req.Password)
		c.log.Warn().Str("username", req.Username).Msg("login refused: unknown user")
		writeError(c.ctx, fasthttp.StatusUnauthorized, "invalid username or password")
		return
	case err != nil:
		c.log.Error().Err(err).Msg("login: user lookup failed")
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return
	}
	if !auth.CheckPassword(rm.PasswordHash, req.Password) {
		c.log.Warn().Str("username", req.Username).Msg("login refused: wrong password")
		writeError(c.ctx, fasthttp.StatusUnauthorized, "invalid username or password")
		return
	}
	tok := s.opts.Tokens.Issue(rm.ID, rm.Role, time.Now())
	c.log.Info().Int64("rm_id", rm.ID).Str("role", rm.Role).Msg("login")
	writeJSON(c.ctx, fasthttp.StatusOK, loginResponse{
		Token: tok,
		RM:    rmJSON{ID: rm.ID, Username: rm.Username, Name: rm.Name, Role: rm.Role},
	})
}

// ---- conversations

type contactJSON struct {
	Phone string `json:"phone"`
	Name  string `json:"name"`
}

type conversationJSON struct {
	ID            int64       `json:"id"`
	Channel       string      `json:"channel"`
	Contact       contactJSON `json:"contact"`
	AssignedRMID  *int64      `json:"assigned_rm_id"`
	LastSeq       int64       `json:"last_seq"`
	LastMessageAt *time.Time  `json:"last_message_at"`
	UnreadCount   *int64      `json:"unread_count,omitempty"`
	// LastMessage previews the newest message (conversation lists only).
	LastMessage *lastMessageJSON `json:"last_message,omitempty"`
	// WindowExpiresAt is when the WhatsApp 24-hour window closes; null when
	// it is closed or the channel has none.
	WindowExpiresAt *time.Time `json:"window_expires_at"`
	SMSOptedOut     bool       `json:"sms_opted_out"`
}

// lastMessageJSON is the preview of a conversation's newest message.
type lastMessageJSON struct {
	ID        int64     `json:"id"`
	Direction string    `json:"direction"`
	Type      string    `json:"type"`
	Text      string    `json:"text"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
}

// whatsAppWindow is how long after the contact's last message free text may
// be sent on WhatsApp.
const whatsAppWindow = 24 * time.Hour

func conversationOf(cv *persistence.Conversation, phone string) conversationJSON {
	if phone == "" {
		phone = cv.Key.ContactPhone
	}
	out := conversationJSON{
		ID:      cv.ID,
		Channel: cv.Key.Channel,
		Contact: contactJSON{Phone: phone, Name: cv.ContactName},
		LastSeq: cv.LastSeq,
	}
	if cv.AssignedRMID != 0 {
		id := cv.AssignedRMID
		out.AssignedRMID = &id
	}
	if !cv.LastMessageAt.IsZero() {
		t := cv.LastMessageAt.UTC()
		out.LastMessageAt = &t
	}
	if cv.Key.Channel == persistence.ChannelWhatsApp && !cv.LastInboundAt.IsZero() {
		if t := cv.LastInboundAt.Add(whatsAppWindow).UTC(); t.After(time.Now()) {
			out.WindowExpiresAt = &t
		}
	}
	out.SMSOptedOut = cv.Key.Channel == persistence.ChannelSMS && cv.SMSOptedOut
	return out
}

// messageOf renders a message as the socket does (actors.MessageJSON).
func messageOf(m *persistence.Message) *actors.MessageJSON {
	if m == nil {
		return nil
	}
	out := actors.NewMessageJSON(m, actors.ContactJSON{})
	return &out
}

// listConversations: GET /api/conversations[?limit=N].
func (s *Server) listConversations(c *call, p actors.Principal) {
	if !s.ready(c) {
		return
	}
	limit, ok := intParam(c, "limit", defaultListLimit, 1, maxListLimit)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	list, err := s.actors.Conversations(ctx, p, int(limit))
	if err != nil {
		apiError(c, err)
		return
	}
	out := make([]conversationJSON, 0, len(list))
	for i := range list {
		cv := conversationOf(&list[i].Conversation, list[i].ContactPhone)
		unread := list[i].UnreadCount
		cv.UnreadCount = &unread
		if m := list[i].LastMessage; m != nil {
			text := m.Text
			if text == "" && m.Template != nil {
				text = m.Template.Name
			}
			cv.LastMessage = &lastMessageJSON{ID: m.ID, Direction: m.Direction, Type: m.Type, Text: text, Status: m.Status, CreatedAt: m.CreatedAt.UTC()}
		}
		out = append(out, cv)
	}
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"conversations": out})
}

// conversationSub serves /api/conversations/{id}/events and /messages.
func (s *Server) conversationSub(c *call, p actors.Principal) {
	rest := strings.TrimPrefix(string(c.ctx.Path()), "/api/conversations/")
	idPart, action, found := strings.Cut(rest, "/")
	id, err := strconv.ParseInt(idPart, 10, 64)
	if !found || err != nil || id <= 0 {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	method := string(c.ctx.Method())
	switch action {
	case "events":
		if method != fasthttp.MethodGet {
			methodNotAllowed(c, fasthttp.MethodGet)
			return
		}
		s.conversationEvents(c, p, id)
	case "messages":
		if method != fasthttp.MethodPost {
			methodNotAllowed(c, fasthttp.MethodPost)
			return
		}
		s.sendMessage(c, p, id)
	case "assign":
		if method != fasthttp.MethodPost {
			methodNotAllowed(c, fasthttp.MethodPost)
			return
		}
		s.assignConversation(c, p, id)
	default:
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
	}
}

// conversationEvents: GET /api/conversations/{id}/events?after_seq=N&limit=M
// (events after seq N) or ?before_seq=N&limit=M (the M events before seq N),
// in seq order either way.
// The frames are written as they come, without re-encoding.
func (s *Server) conversationEvents(c *call, p actors.Principal, id int64) {
	if !s.ready(c) {
		return
	}
	after, ok := intParam(c, "after_seq", 0, 0, 1<<62)
	if !ok {
		return
	}
	before, ok := intParam(c, "before_seq", 0, 0, 1<<62)
	if !ok {
		return
	}
	if after > 0 && before > 0 {
		badRequest(c, "after_seq and before_seq are exclusive")
		return
	}
	limit, ok := intParam(c, "limit", defaultListLimit, 1, maxListLimit)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	var frames [][]byte
	var err error
	if before > 0 {
		frames, err = s.actors.EventsBefore(ctx, p, id, before, int(limit))
	} else {
		frames, err = s.actors.Events(ctx, p, id, after, int(limit))
	}
	if err != nil {
		apiError(c, err)
		return
	}
	size := len(`{"events":[]}`) + len(frames)
	for _, f := range frames {
		size += len(f)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, `{"events":[`...)
	for i, f := range frames {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, f...)
	}
	buf = append(buf, "]}"...)
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetContentType("application/json")
	c.ctx.SetBody(buf)
}

// intParam reads an integer query parameter within [lo, hi]; values above hi
// are clamped. It answers 400 and reports false when the value is not a number
// or below lo.
func intParam(c *call, name string, def, lo, hi int64) (int64, bool) {
	raw := c.ctx.QueryArgs().Peek(name)
	if len(raw) == 0 {
		return def, true
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || v < lo {
		badRequest(c, "invalid "+name)
		return 0, false
	}
	return min(v, hi), true
}

type sendBody struct {
	ClientMsgID string                `json:"client_msg_id"`
	Text        string                `json:"text"`
	Template    *persistence.Template `json:"template"`
}

// request checks the text/template part and builds the SendRequest.
func (b *sendBody) request(c *call) (actors.SendRequest, bool) {
	hasText := strings.TrimSpace(b.Text) != ""
	switch {
	case hasText && b.Template != nil:
		badRequest(c, "text and template are exclusive")
		return actors.SendRequest{}, false
	case !hasText && b.Template == nil:
		badRequest(c, "text or template required")
		return actors.SendRequest{}, false
	case b.Template != nil && (b.Template.Name == "" || b.Template.Language == ""):
		badRequest(c, "template name and language required")
		return actors.SendRequest{}, false
	}
	return actors.SendRequest{ClientMsgID: b.ClientMsgID, Text: b.Text, Template: b.Template}, true
}

// sendMessage: POST /api/conversations/{id}/messages.
func (s *Server) sendMessage(c *call, p actors.Principal, id int64) {
	var body sendBody
	if !decodeJSON(c, &body) {
		return
	}
	if strings.TrimSpace(body.ClientMsgID) == "" {
		badRequest(c, "client_msg_id required")
		return
	}
	req, ok := body.request(c)
	if !ok || !s.ready(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	m, err := s.actors.Send(ctx, p, id, req)
	if err != nil {
		apiError(c, err)
		return
	}
	c.log.Info().Int64("rm_id", p.RMID).Int64("conversation_id", id).Int64("message_id", m.ID).Msg("message queued")
	writeJSON(c.ctx, fasthttp.StatusAccepted, map[string]any{"message": messageOf(m)})
}

type startBody struct {
	Channel string `json:"channel"`
	Phone   string `json:"phone"`
	Name    string `json:"name"`
	sendBody
}

// startConversation: POST /api/conversations.
func (s *Server) startConversation(c *call, p actors.Principal) {
	var body startBody
	if !decodeJSON(c, &body) {
		return
	}
	if body.Channel != persistence.ChannelWhatsApp && body.Channel != persistence.ChannelSMS {
		badRequest(c, `channel must be "whatsapp" or "sms"`)
		return
	}
	if strings.TrimSpace(body.Phone) == "" {
		badRequest(c, "phone required")
		return
	}
	if strings.TrimSpace(body.ClientMsgID) == "" {
		body.ClientMsgID = newClientMsgID()
	}
	req, ok := body.request(c)
	if !ok || !s.ready(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	cv, m, err := s.actors.StartConversation(ctx, p, body.Channel, body.Phone, body.Name, req)
	if err != nil {
		apiError(c, err)
		return
	}
	out := map[string]any{"message": messageOf(m)}
	if cv != nil {
		out["conversation"] = conversationOf(cv, "")
	}
	c.log.Info().Int64("rm_id", p.RMID).Str("channel", body.Channel).Msg("conversation started")
	writeJSON(c.ctx, fasthttp.StatusCreated, out)
}

func newClientMsgID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "srv-" + hex.EncodeToString(b[:])
}
