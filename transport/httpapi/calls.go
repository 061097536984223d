package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/persistence"
	"urva/transport/exotel"
)

// Click-to-call endpoints:
//
//	POST /api/calls                            {"conversation_id"} or {"phone"} -> 201 {"call":{...}}
//	GET  /api/calls/{id}                       -> 200 {"call":{...}}
//	POST /webhooks/dialler/{callback_token}    the dialler's status callbacks (form or JSON)

// Calls is what the HTTP layer asks of the actor system about click-to-call.
// *actors.System satisfies it through Options.System; tests use fakes.
type Calls interface {
	// StartCall creates a call from p to the contact of a conversation (or
	// to a phone number) and returns it, status requested, once stored.
	StartCall(ctx context.Context, p actors.Principal, conversationID int64, phone string) (*persistence.Call, error)
	// Call returns a call p may see.
	Call(ctx context.Context, p actors.Principal, id int64) (*persistence.Call, error)
	// DiallerCallback applies a status callback and returns once what it
	// changed is committed; actors.ErrNotFound when no call matches it.
	DiallerCallback(ctx context.Context, cb *actors.DialledCall) error
}

var _ Calls = (*actors.System)(nil)

// diallerWebhookPrefix is where the dialler posts status callbacks: the rest
// of the path is the callback token.
const diallerWebhookPrefix = "/webhooks/dialler/"

// Webhook outcomes of dialler callbacks, besides processed and failed.
const (
	outcomeUnknownCall = "unknown call"
	outcomeIgnored     = "ignored: event "
)

type startCallBody struct {
	ConversationID int64  `json:"conversation_id"`
	Phone          string `json:"phone"`
}

// callResponse is the answer of both call endpoints: the call object of
// socket frames and CRM events.
type callResponse struct {
	Call persistence.OutboxCall `json:"call"`
}

func (s *Server) callsReady(c *call) bool {
	if s.opts.Calls == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return false
	}
	return true
}

// startCall: POST /api/calls.
func (s *Server) startCall(c *call, p actors.Principal) {
	var body startCallBody
	if !decodeJSON(c, &body) {
		return
	}
	phone := strings.TrimSpace(body.Phone)
	switch {
	case body.ConversationID < 0:
		badRequest(c, "invalid conversation_id")
		return
	case body.ConversationID != 0 && phone != "":
		badRequest(c, "conversation_id and phone are exclusive")
		return
	case body.ConversationID == 0 && phone == "":
		badRequest(c, "conversation_id or phone required")
		return
	}
	if !s.callsReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	cl, err := s.opts.Calls.StartCall(ctx, p, body.ConversationID, phone)
	if err != nil {
		apiError(c, err)
		return
	}
	c.log.Info().Int64("rm_id", p.RMID).Int64("conversation_id", cl.ConversationID).Int64("call_id", cl.ID).Msg("call requested")
	writeJSON(c.ctx, fasthttp.StatusCreated, callResponse{Call: persistence.OutboxCallOf(cl)})
}

// getCall: GET /api/calls/{id} and GET /api/calls/{id}/recording.
func (s *Server) getCall(c *call, p actors.Principal) {
	rest := strings.TrimPrefix(string(c.ctx.Path()), "/api/calls/")
	recording := strings.HasSuffix(rest, "/recording")
	id, err := strconv.ParseInt(strings.TrimSuffix(rest, "/recording"), 10, 64)
	if err != nil || id <= 0 {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	if !s.callsReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	cl, err := s.opts.Calls.Call(ctx, p, id)
	if err != nil {
		apiError(c, err)
		return
	}
	if recording {
		s.serveRecording(c, cl)
		return
	}
	writeJSON(c.ctx, fasthttp.StatusOK, callResponse{Call: persistence.OutboxCallOf(cl)})
}

// serveRecording sends a downloaded recording to an RM allowed to see the
// call (checked by the caller).
func (s *Server) serveRecording(c *call, cl *persistence.Call) {
	if cl.RecordingPath == "" {
		writeError(c.ctx, fasthttp.StatusNotFound, "no downloaded recording for this call (see recording_url)")
		return
	}
	ctype := "audio/wav"
	switch strings.ToLower(filepath.Ext(cl.RecordingPath)) {
	case ".mp3":
		ctype = "audio/mpeg"
	case ".ogg":
		ctype = "audio/ogg"
	}
	f, err := os.Open(cl.RecordingPath)
	if err != nil {
		c.log.Error().Err(err).Int64("call_id", cl.ID).Msg("recording file")
		writeError(c.ctx, fasthttp.StatusNotFound, "recording file missing")
		return
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		writeError(c.ctx, fasthttp.StatusNotFound, "recording file missing")
		return
	}
	// Streamed as it is: no compressed copies beside the recording.
	c.ctx.Response.Header.Set("Cache-Control", "private, no-store")
	c.ctx.SetContentType(ctype)
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBodyStream(f, int(st.Size())) // fasthttp closes f once sent
}

// diallerTokenOK compares the path's token with the configured one in
// constant time (over digests, so the length does not show either). No
// configured token accepts nothing.
func (s *Server) diallerTokenOK(token string) bool {
	want := s.opts.DiallerCallbackToken
	if want == "" || token == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// diallerWebhook: POST /webhooks/dialler/{callback_token}. The dialler signs
// nothing, so the secret token in the path is the authentication: a wrong
// or missing one is a 404 and nothing is stored. The callback is then
// parsed, logged raw and handed to the call it is about, both at once;
// 200 once both are committed.
func (s *Server) diallerWebhook(c *call) {
	defer s.webhookDone(c, WebhookDialler, time.Now())
	token := strings.TrimPrefix(string(c.ctx.Path()), diallerWebhookPrefix)
	if !s.diallerTokenOK(token) {
		c.log.Warn().Msg("dialler callback refused: wrong callback token")
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	body := c.ctx.Request.Body()
	if len(body) > exotel.MaxCallbackBody {
		writeError(c.ctx, fasthttp.StatusRequestEntityTooLarge, "callback larger than "+strconv.Itoa(exotel.MaxCallbackBody)+" bytes")
		return
	}
	contentType := string(c.ctx.Request.Header.ContentType())
	cb, err := exotel.ParseCallback(contentType, body)
	if err != nil {
		c.log.Warn().Err(err).Msg("dialler callback malformed")
		writeError(c.ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	headers := headersJSON(
		"Content-Type", contentType,
		"User-Agent", string(c.ctx.Request.Header.UserAgent()),
		"X-Request-Id", c.id)
	var dialled *actors.DialledCall
	if cb.Answered() || cb.Terminal() {
		dialled = cb.Dialled()
	}
	outcome, ok := s.commitDiallerCallback(c, headers, body, cb.EventType, dialled)
	if !ok {
		return
	}
	c.log.Info().Str("call_sid", cb.CallSid).Str("custom_field", cb.CustomField).Str("event", cb.EventType).
		Str("status", cb.Status).Str("outcome", outcome).Msg("dialler callback")
	writeStatus(c.ctx, outcome)
}

// commitDiallerCallback stores the raw callback (provider "dialler", the
// path without its secret token) and applies cb to its call, both at once;
// cb nil (an event we do not act on) is only stored. A callback about a
// call we do not know is answered 200 all the same: the dialler retries
// only twice, and an unknown call will not become known.
func (s *Server) commitDiallerCallback(c *call, headers, body []byte, event string, cb *actors.DialledCall) (string, bool) {
	if s.opts.Calls == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return "", false
	}
	raw := rawWebhook{provider: "dialler", path: diallerWebhookPrefix + "{callback_token}", headers: headers, body: body}
	return s.commitWebhook(c, raw, func(ctx context.Context) (string, error) {
		if cb == nil {
			return outcomeIgnored + event, nil
		}
		err := s.applyDiallerCallback(ctx, cb)
		if errors.Is(err, actors.ErrNotFound) {
			c.log.Warn().Str("call_sid", cb.Sid).Str("custom_field", cb.CustomField).Msg("dialler callback for a call we do not know")
			return outcomeUnknownCall, nil
		}
		return outcomeProcessed, err
	})
}

// applyDiallerCallback calls Calls.DiallerCallback, turning a panic into an
// error so that the dialler gets a 503 and retries.
func (s *Server) applyDiallerCallback(ctx context.Context, cb *actors.DialledCall) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dialler callback panicked: %v", r)
		}
	}()
	return s.opts.Calls.DiallerCallback(ctx, cb)
}
