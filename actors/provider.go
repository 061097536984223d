package actors

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/actors/msg"
)

// providerActor sends stored outbound messages through one provider. Each
// send runs in its own goroutine (bounded by ProviderInflight) with retries
// and backoff chosen by the provider's error; the outcome goes back to the
// conversation actor by key, so a passivated conversation is woken for it.
type providerActor struct {
	sys     *System
	channel string
	client  ProviderClient
	log     zerolog.Logger

	ctx      context.Context
	cancel   context.CancelFunc
	slots    chan struct{}
	wg       sync.WaitGroup
	inflight map[int64]struct{} // message ids being sent: a re-drive never sends twice at once
}

type sendFinished struct{ messageID int64 }

func (a *providerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.ctx, a.cancel = context.WithCancel(context.Background())
		a.slots = make(chan struct{}, max(1, a.sys.opts.Tuning.ProviderInflight))
		a.inflight = map[int64]struct{}{}
	case *msg.ProviderSend:
		if _, busy := a.inflight[m.MessageId]; busy {
			return
		}
		a.inflight[m.MessageId] = struct{}{}
		a.wg.Add(1)
		self, root := ctx.Self(), a.sys.root
		go func() {
			defer a.wg.Done()
			if res := a.deliver(m); res != nil {
				a.sys.router.TellConversation(keyFromMsg(m.Key), res)
			}
			root.Send(self, &sendFinished{messageID: m.MessageId})
		}()
	case *sendFinished:
		delete(a.inflight, m.messageID)
	case *actor.Stopping:
		a.cancel()
		a.wg.Wait()
	}
}

// deliver tries req until it is accepted, refused for good, or attempts run
// out. It returns nil when the server is shutting down: the message stays
// queued in the database and is sent again after the restart.
func (a *providerActor) deliver(req *msg.ProviderSend) *msg.ProviderResult {
	t := a.sys.opts.Tuning
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-a.ctx.Done():
		return nil
	}
	log := a.log.With().Int64("message_id", req.MessageId).Logger()
	var last *SendError
	attempts := max(1, t.ProviderAttempts)
	for attempt := 1; attempt <= attempts; attempt++ {
		cctx, cancel := context.WithTimeout(a.ctx, t.ProviderTimeout)
		id, err := a.client.Send(cctx, req)
		cancel()
		if err == nil {
			a.sys.observeSend(a.channel, SendSent)
			log.Debug().Int("attempt", attempt).Str("provider_message_id", id).Msg("sent")
			return &msg.ProviderResult{MessageId: req.MessageId, ConversationId: req.ConversationId, Key: req.Key,
				ProviderMessageId: id, Attempts: int32(attempt)}
		}
		if a.ctx.Err() != nil {
			return nil
		}
		var se *SendError
		if !errors.As(err, &se) {
			se = &SendError{Code: "network", Title: "provider unreachable", Message: err.Error(), Retry: true}
		}
		last = se
		if se.Alert {
			log.Error().Str("code", se.Code).Str("error", se.Message).Msg("provider refused our credentials or permissions: operator action needed")
		}
		if !se.Retry || attempt == attempts {
			break
		}
		a.sys.observeSend(a.channel, SendRetry)
		delay := backoff(t.ProviderBackoff, t.ProviderMaxDelay, attempt)
		if se.RetryAfter > delay {
			delay = min(se.RetryAfter, t.ProviderMaxDelay)
		}
		log.Info().Str("code", se.Code).Int("attempt", attempt).Dur("retry_in", delay).Msg("send failed, retrying")
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-a.ctx.Done():
			timer.Stop()
			return nil
		}
	}
	a.sys.observeSend(a.channel, SendFailed)
	log.Warn().Str("code", last.Code).Str("error", last.Message).Msg("send failed")
	return &msg.ProviderResult{MessageId: req.MessageId, ConversationId: req.ConversationId, Key: req.Key, Failed: true,
		Error: &msg.ProviderError{Code: last.Code, Title: last.Title, Message: last.Message}}
}

// backoff is base*2^(attempt-1), capped at maxDelay, drawn uniformly from
// its upper half (jitter). Doubling stops at the cap, so nothing overflows.
func backoff(base, maxDelay time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	if d <= 0 || d > maxDelay {
		d = maxDelay
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func providerErrorJSON(e *msg.ProviderError) []byte {
	if e == nil {
		return nil
	}
	return noticeFrame(map[string]string{"code": e.Code, "title": e.Title, "message": e.Message})
}
