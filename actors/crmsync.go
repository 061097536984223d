package actors

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/persistence"
)

// CRMSender delivers one outbox event to the CRM (an adapter in transport:
// the generic signed webhook today, a specific CRM later). An error means
// "not delivered"; a RetryAfter() time.Duration method on it is honoured.
type CRMSender interface {
	Deliver(ctx context.Context, ev *persistence.OutboxEvent) error
}

// CRMOptions turn on CRM sync.
type CRMOptions struct {
	Sender CRMSender
	Outbox persistence.Outbox
	// MaxAge is how long an event may keep failing before it becomes a dead
	// letter (the store sets each event's expiry; this is used on replay).
	MaxAge time.Duration
	// Backoff is the first retry delay; it doubles per attempt, with jitter,
	// up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// Inflight bounds concurrent deliveries (one per conversation at most).
	Inflight int
	// Poll is how often the outbox is looked at when nothing wakes the actor
	// (retries that came due).
	Poll time.Duration
}

func (o *CRMOptions) defaults() {
	if o.MaxAge <= 0 {
		o.MaxAge = 72 * time.Hour
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	if o.Inflight <= 0 {
		o.Inflight = 32
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
}

type crmWake struct{}

type crmDone struct{ conversationID int64 }

// crmSyncActor drains the outbox to the CRM: the oldest pending event of
// each conversation, one at a time per conversation (order), many
// conversations at once (a failing one holds up only itself). A commit that
// wrote outbox rows wakes it; a poll catches retries that came due.
type crmSyncActor struct {
	sys  *System
	opts CRMOptions
	log  zerolog.Logger
	woke *atomic.Bool // set by the committer's wake, cleared before each look

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	inflight map[int64]bool // conversation ids with a delivery running
	stop     chan struct{}
}

func (a *crmSyncActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.ctx, a.cancel = context.WithCancel(context.Background())
		a.inflight = map[int64]bool{}
		a.stop = make(chan struct{})
		self, root, poll := ctx.Self(), a.sys.root, a.opts.Poll
		go func() {
			t := time.NewTicker(poll)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					// A wake already queued (the committer's, or the last
					// tick's) covers this one: against a database slower
					// than the poll, ticks would otherwise pile up in the
					// mailbox, each a read of the outbox, ahead of the
					// deliveries' completions.
					if a.woke.CompareAndSwap(false, true) {
						root.Send(self, &crmWake{})
					}
				case <-a.stop:
					return
				}
			}
		}()
		a.fill(ctx)
	case *crmWake:
		a.fill(ctx)
	case *crmDone:
		delete(a.inflight, m.conversationID)
		a.fill(ctx)
	case *actor.Stopping:
		close(a.stop)
		a.cancel()
		a.wg.Wait()
	}
}

// fill starts deliveries for due heads of conversations not already busy.
func (a *crmSyncActor) fill(ctx actor.Context) {
	a.woke.Store(false)
	free := a.opts.Inflight - len(a.inflight)
	if free <= 0 {
		return
	}
	qctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	heads, err := a.opts.Outbox.OutboxHeads(qctx, a.sys.now(), free+len(a.inflight))
	cancel()
	if err != nil {
		if a.ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("read outbox")
		}
		return
	}
	self, root := ctx.Self(), a.sys.root
	for i := range heads {
		ev := heads[i]
		if a.inflight[ev.ConversationID] {
			continue
		}
		if free == 0 {
			break
		}
		free--
		a.inflight[ev.ConversationID] = true
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.deliver(&ev)
			root.Send(self, &crmDone{conversationID: ev.ConversationID})
		}()
	}
}

// deliver makes one attempt and records its outcome.
func (a *crmSyncActor) deliver(ev *persistence.OutboxEvent) {
	err := a.opts.Sender.Deliver(a.ctx, ev)
	if a.ctx.Err() != nil {
		return // shutting down: the event stays pending and goes out after the restart
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := a.sys.now()
	log := a.log.With().Str("event_id", ev.EventID).Str("type", ev.Type).Int64("conversation_id", ev.ConversationID).Logger()
	if err == nil {
		if err := a.opts.Outbox.OutboxDelivered(wctx, ev.ID, now); err != nil {
			log.Warn().Err(err).Msg("delivered, but not recorded: it will be delivered again")
		}
		return
	}
	delay := backoff(a.opts.Backoff, a.opts.MaxBackoff, ev.Attempts+1)
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > delay {
		delay = min(ra.RetryAfter(), a.opts.MaxBackoff)
	}
	dead := !ev.ExpiresAt.IsZero() && !now.Before(ev.ExpiresAt)
	if dead {
		log.Error().Err(err).Int("attempts", ev.Attempts+1).Msg("crm event is a dead letter: it kept failing past its maximum age; replay it from /admin/crm")
	} else {
		log.Info().Err(err).Int("attempts", ev.Attempts+1).Dur("retry_in", delay).Msg("crm delivery failed")
	}
	if err := a.opts.Outbox.OutboxFailed(wctx, ev.ID, err.Error(), now.Add(delay), dead); err != nil {
		log.Warn().Err(err).Msg("record failed crm attempt")
	}
}

// WakeCRM tells the CRM sync actor to look at the outbox now (after a
// replay, for instance). It does nothing when CRM sync is off.
func (s *System) WakeCRM() {
	if s.crm != nil && s.crmWoke.CompareAndSwap(false, true) {
		s.root.Send(s.crm, &crmWake{})
	}
}

// CRMMaxAge is the dead-letter age used when replaying.
func (s *System) CRMMaxAge() time.Duration {
	if s.opts.CRM == nil {
		return 72 * time.Hour
	}
	return s.opts.CRM.MaxAge
}
