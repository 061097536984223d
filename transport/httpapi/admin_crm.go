package httpapi

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// CRM operator endpoints (admin token):
//
//	GET  /admin/crm/backlog                     pending and dead counts, oldest pending age
//	GET  /admin/crm/dead-letters?limit=N        dead letters, oldest first
//	POST /admin/crm/dead-letters/replay         replay every dead letter
//	POST /admin/crm/dead-letters/{id}/replay    replay one

type outboxEventJSON struct {
	ID             int64           `json:"id"`
	EventID        string          `json:"event_id"`
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	OccurredAt     time.Time       `json:"occurred_at"`
	Attempts       int             `json:"attempts"`
	LastError      string          `json:"last_error"`
	ExpiresAt      time.Time       `json:"expires_at"`
	Data           json.RawMessage `json:"data"`
}

func (s *Server) crmReady(c *call) bool {
	if s.opts.Outbox == nil {
		writeError(c.ctx, fasthttp.StatusNotFound, "crm sync is off (crm.webhook_url is not set)")
		return false
	}
	return true
}

func (s *Server) crmBacklog(c *call) {
	if !s.crmReady(c) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	b, err := s.opts.Outbox.OutboxBacklog(ctx)
	if err != nil {
		apiError(c, err)
		return
	}
	out := map[string]any{"pending": b.Pending, "dead": b.Dead, "conversations_behind": b.ConversationsBehind,
		"oldest_pending_at": nil, "oldest_pending_age_seconds": 0}
	if !b.OldestPending.IsZero() {
		out["oldest_pending_at"] = b.OldestPending.UTC()
		out["oldest_pending_age_seconds"] = time.Since(b.OldestPending).Seconds()
	}
	writeJSON(c.ctx, fasthttp.StatusOK, out)
}

func (s *Server) crmDeadLetters(c *call) {
	if !s.crmReady(c) {
		return
	}
	limit, ok := intParam(c, "limit", defaultListLimit, 1, maxListLimit)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	evs, err := s.opts.Outbox.OutboxDeadLetters(ctx, int(limit))
	if err != nil {
		apiError(c, err)
		return
	}
	out := make([]outboxEventJSON, len(evs))
	for i, e := range evs {
		out[i] = outboxEventJSON{ID: e.ID, EventID: e.EventID, Type: e.Type, ConversationID: e.ConversationID,
			OccurredAt: e.OccurredAt.UTC(), Attempts: e.Attempts, LastError: e.LastError, ExpiresAt: e.ExpiresAt.UTC(), Data: e.Data}
	}
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]any{"dead_letters": out})
}

// crmReplay serves both replay routes under /admin/crm/dead-letters/.
func (s *Server) crmReplay(c *call) {
	if !s.crmReady(c) {
		return
	}
	rest := strings.TrimPrefix(string(c.ctx.Path()), "/admin/crm/dead-letters/")
	var id int64
	switch {
	case rest == "replay":
	case strings.HasSuffix(rest, "/replay"):
		n, err := strconv.ParseInt(strings.TrimSuffix(rest, "/replay"), 10, 64)
		if err != nil || n <= 0 {
			writeError(c.ctx, fasthttp.StatusNotFound, "not found")
			return
		}
		id = n
	default:
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	maxAge := s.opts.CRMMaxAge
	if maxAge <= 0 {
		maxAge = 72 * time.Hour
	}
	now := time.Now()
	n, err := s.opts.Outbox.OutboxReplay(ctx, id, now, now.Add(maxAge))
	if err != nil {
		apiError(c, err)
		return
	}
	if id > 0 && n == 0 {
		writeError(c.ctx, fasthttp.StatusNotFound, "no dead letter with that id")
		return
	}
	if s.opts.CRMWake != nil {
		s.opts.CRMWake()
	}
	c.log.Info().Int64("id", id).Int64("replayed", n).Msg("crm dead letters replayed")
	writeJSON(c.ctx, fasthttp.StatusOK, map[string]int64{"replayed": n})
}
