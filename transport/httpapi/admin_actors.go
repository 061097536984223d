package httpapi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
)

// Actor statistics for operators (admin token):
//
//	GET /admin/actors?top=N&kind=K     per-kind statistics and the N live actors with the deepest mailboxes
//	GET /admin/actors/{kind}/{id...}   one live actor's state, as the actor itself reports it

// ActorStatistics is what the actor endpoints ask of the actor system.
// *actors.System satisfies it; the server uses Options.Actors when it
// implements it too, else Options.System.
type ActorStatistics interface {
	// ActorStats returns the statistics of every kind of actor.
	ActorStats() []actors.KindStats
	// TopActors returns up to n live actors of kind ("" = every kind) by mailbox depth.
	TopActors(kind string, n int) []actors.ActorInfo
	// ActorSnapshot asks one live actor for its state; actors.ErrNotFound when it is not live.
	ActorSnapshot(ctx context.Context, kind, id string) (any, error)
}

var _ ActorStatistics = (*actors.System)(nil)

const (
	actorsPath       = "/admin/actors"
	actorsPrefix     = actorsPath + "/"
	defaultTopActors = 20
	maxTopActors     = 1000
)

// ActorLatency is the receive latency of one kind in GET /admin/actors.
type ActorLatency struct {
	Count      int64   `json:"count"`
	SumSeconds float64 `json:"sum_seconds"`
	P50Seconds float64 `json:"p50_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
}

// ActorKind is one kind of actor in GET /admin/actors.
type ActorKind struct {
	Kind           string       `json:"kind"`
	Live           int64        `json:"live"`
	Spawned        int64        `json:"spawned"`
	Stopped        int64        `json:"stopped"`
	Restarted      int64        `json:"restarted"`
	Received       int64        `json:"received"`
	MailboxSum     int64        `json:"mailbox_sum"`
	MailboxMax     int64        `json:"mailbox_max"`
	ReceiveLatency ActorLatency `json:"receive_latency"`
}

// ActorRow is one live actor in the top list of GET /admin/actors.
type ActorRow struct {
	Kind         string     `json:"kind"`
	ID           string     `json:"id"`
	Mailbox      int64      `json:"mailbox"`
	Received     int64      `json:"received"`
	LastActivity *time.Time `json:"last_activity"` // null before the first message
}

type actorStateJSON struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	State any    `json:"state"`
}

// ActorsPage is the answer of GET /admin/actors (urva top reads it too).
type ActorsPage struct {
	Kinds []ActorKind `json:"kinds"`
	Top   []ActorRow  `json:"top"`
}

// actorStatistics is the actor system behind the endpoints, or nil.
func (s *Server) actorStatistics(c *call) ActorStatistics {
	if a, ok := s.actors.(ActorStatistics); ok {
		return a
	}
	if s.opts.System != nil {
		return s.opts.System
	}
	writeError(c.ctx, fasthttp.StatusNotFound, "actor statistics are not available")
	return nil
}

// adminActors serves GET /admin/actors.
func (s *Server) adminActors(c *call) {
	a := s.actorStatistics(c)
	if a == nil {
		return
	}
	top, ok := intParam(c, "top", defaultTopActors, 0, maxTopActors)
	if !ok {
		return
	}
	kind := string(c.ctx.QueryArgs().Peek("kind"))
	if kind != "" && !slices.Contains(actors.ActorKinds(), kind) {
		badRequest(c, "unknown kind "+kind+" (kinds: "+strings.Join(actors.ActorKinds(), ", ")+")")
		return
	}
	out := ActorsPage{Kinds: []ActorKind{}, Top: []ActorRow{}}
	for _, k := range a.ActorStats() {
		if kind != "" && k.Kind != kind {
			continue
		}
		out.Kinds = append(out.Kinds, ActorKind{
			Kind: k.Kind, Live: k.Live, Spawned: k.Spawned, Stopped: k.Stopped, Restarted: k.Restarted,
			Received: k.Received, MailboxSum: k.MailboxSum, MailboxMax: k.MailboxMax,
			ReceiveLatency: ActorLatency{
				Count:      k.Latency.Count,
				SumSeconds: k.Latency.Sum.Seconds(),
				P50Seconds: k.Latency.Quantile(0.5).Seconds(),
				P99Seconds: k.Latency.Quantile(0.99).Seconds(),
			},
		})
	}
	if top > 0 {
		for _, t := range a.TopActors(kind, int(top)) {
			j := ActorRow{Kind: t.Kind, ID: t.ID, Mailbox: t.Mailbox, Received: t.Received}
			if !t.LastActivity.IsZero() {
				at := t.LastActivity.UTC()
				j.LastActivity = &at
			}
			out.Top = append(out.Top, j)
		}
	}
	writeJSON(c.ctx, fasthttp.StatusOK, out)
}

// adminActor serves GET /admin/actors/{kind}/{id...}: the id is the rest
// of the path, unescaped (a conversation's contains '/' and '+').
func (s *Server) adminActor(c *call) {
	a := s.actorStatistics(c)
	if a == nil {
		return
	}
	rest := strings.TrimPrefix(string(c.ctx.Path()), actorsPrefix)
	kind, id, _ := strings.Cut(rest, "/")
	if kind == "" || id == "" {
		writeError(c.ctx, fasthttp.StatusNotFound, "use /admin/actors/{kind}/{id}")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	st, err := a.ActorSnapshot(ctx, kind, id)
	if errors.Is(err, actors.ErrNotFound) {
		writeError(c.ctx, fasthttp.StatusNotFound, "no live "+kind+" actor "+id)
		return
	}
	if err != nil {
		apiError(c, err)
		return
	}
	writeJSON(c.ctx, fasthttp.StatusOK, actorStateJSON{Kind: kind, ID: id, State: st})
}
