package httpapi

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/persistence"
	"urva/transport/web"
)

// The RM console and what it needs besides the conversation API:
//
//	GET  /                                   the console page
//	GET  /api/templates                      approved WhatsApp templates
//	GET  /api/rms                            RMs and whether they are online (supervisors)
//	POST /api/conversations/{id}/assign      {"rm_id"} reassign (supervisors)
//	POST /admin/rms/{id}/disconnect          close an RM's sockets (operators)
//	GET  /sandbox/phone                      the sandbox customer phone (sandbox only)

// Supervision is what the HTTP layer asks of the actor system for
// supervisors and operators. *actors.System satisfies it through
// Options.System; tests use fakes.
type Supervision interface {
	// Assign gives a conversation to an RM (supervisors only).
	Assign(ctx context.Context, p actors.Principal, conversationID, rmID int64) (*persistence.Conversation, error)
	// RMs lists RMs with their online state (supervisors only).
	RMs(ctx context.Context, p actors.Principal) ([]actors.RMStatus, error)
	// DisconnectRM closes every live socket of an RM; it returns how many.
	DisconnectRM(rmID int64, reason string) int
}

var _ Supervision = (*actors.System)(nil)

// Template is an approved WhatsApp message template the console offers.
type Template struct {
	Name     string `json:"name"`
	Language string `json:"language"`
	Body     string `json:"body"`
	Params   int    `json:"params"` // how many {{n}} placeholders the body has
}

var placeholder = regexp.MustCompile(`\{\{\s*(\d+)\s*\}\}`)

// TemplateParams counts the parameters of a template body: the highest
// {{n}} in it.
func TemplateParams(body string) int {
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(body, -1) {
		if v, err := strconv.Atoi(m[1]); err == nil && v > n {
			n = v
		}
	}
	return n
}

// consolePage: GET / serves the RM console.
func (s *Server) consolePage(c *call) {
	pageHeaders(c.ctx)
	c.ctx.SetContentType("text/html; charset=utf-8")
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBody(web.ConsolePage())
}

// phonePage: GET /sandbox/phone serves the sandbox customer phone.
func (s *Server) phonePage(c *call) {
	pageHeaders(c.ctx)
	c.ctx.SetContentType("text/html; charset=utf-8")
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBody(web.PhonePage())
}

// templates: GET /api/templates.
func (s *Server) templates(c *call, _ actors.Principal) {
	out := make([]Template, len(s.opts.Templates))
	for i, t := range s.opts.Templates {
		out[i] = t
		out[i].Params = TemplateParams(t.Body)
	}
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"templates": out})
}

func (s *Server) supervisionReady(c *call) bool {
	if s.opts.Supervision == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return false
	}
	return true
}

// listRMs: GET /api/rms (supervisors).
func (s *Server) listRMs(c *call, p actors.Principal) {
	if !s.supervisionReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	list, err := s.opts.Supervision.RMs(ctx, p)
	if err != nil {
		apiError(c, err)
		return
	}
	out := make([]rmJSON, len(list))
	for i, r := range list {
		online := r.Online
		out[i] = rmJSON{ID: r.ID, Username: r.Username, Name: r.Name, Role: r.Role, Online: &online}
	}
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"rms": out})
}

// assignConversation: POST /api/conversations/{id}/assign (supervisors).
func (s *Server) assignConversation(c *call, p actors.Principal, id int64) {
	var body struct {
		RMID int64 `json:"rm_id"`
	}
	if !decodeJSON(c, &body) {
		return
	}
	if body.RMID <= 0 {
		badRequest(c, "rm_id required")
		return
	}
	if !s.supervisionReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	conv, err := s.opts.Supervision.Assign(ctx, p, id, body.RMID)
	if err != nil {
		apiError(c, err)
		return
	}
	c.log.Info().Int64("supervisor_id", p.RMID).Int64("conversation_id", id).Int64("rm_id", body.RMID).Msg("conversation reassigned")
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"conversation": conversationOf(conv, "")})
}

// disconnectRM: POST /admin/rms/{id}/disconnect closes an RM's sockets
// (close code 1013: the client reconnects and resumes by cursor).
func (s *Server) disconnectRM(c *call) {
	rest := strings.TrimPrefix(string(c.ctx.Path()), "/admin/rms/")
	idStr, ok := strings.CutSuffix(rest, "/disconnect")
	id, err := strconv.ParseInt(idStr, 10, 64)
	if !ok || err != nil || id <= 0 {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	if !s.supervisionReady(c) {
		return
	}
	n := s.opts.Supervision.DisconnectRM(id, "disconnected by an operator; reconnect and resume with your last cursor")
	c.log.Info().Int64("rm_id", id).Int("sockets", n).Msg("rm disconnected by an operator")
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"sockets": n})
}
