package actors

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
)

// dialCmd asks the dialler provider actor to place a call; the result goes
// to replyTo as a dialResult.
type dialCmd struct {
	callID  int64
	req     DialRequest
	replyTo *actor.PID
}

type dialDone struct{ callID int64 }

// diallerActor is the dialler's provider actor: it places calls (each in its
// own goroutine, bounded by ProviderInflight), retrying failures that
// happened before the request was sent and asking the dialler about an
// ambiguous failure before any retry, so one call is never placed twice.
type diallerActor struct {
	sys *System
	d   Dialler
	log zerolog.Logger

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	slots    chan struct{}
	inflight map[int64]bool
}

func (a *diallerActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.ctx, a.cancel = context.WithCancel(context.Background())
		a.slots = make(chan struct{}, max(1, a.sys.opts.Tuning.ProviderInflight))
		a.inflight = map[int64]bool{}
	case *dialCmd:
		if a.inflight[m.callID] {
			return
		}
		a.inflight[m.callID] = true
		self, root := ctx.Self(), a.sys.root
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			select {
			case a.slots <- struct{}{}:
			case <-a.ctx.Done():
				return
			}
			sid, err := a.dial(m.req)
			<-a.slots
			if a.ctx.Err() == nil {
				root.Send(m.replyTo, &dialResult{sid: sid, err: err})
			}
			root.Send(self, &dialDone{callID: m.callID})
		}()
	case *dialDone:
		delete(a.inflight, m.callID)
	case *actor.Stopping:
		a.cancel()
		a.wg.Wait()
	}
}

// dial asks the dialler to connect, never placing two calls: after an
// answer that leaves it unclear whether the call was placed, it asks the
// dialler before trying again.
func (a *diallerActor) dial(req DialRequest) (string, error) {
	d := a.d
	t := a.sys.opts.Tuning
	since := a.sys.now().Add(-time.Minute)
	var last error
	for attempt := 1; attempt <= max(1, t.ProviderAttempts); attempt++ {
		cctx, cancel := context.WithTimeout(a.ctx, t.ProviderTimeout)
		sid, err := d.Connect(cctx, req)
		cancel()
		if err == nil {
			return sid, nil
		}
		if a.ctx.Err() != nil {
			return "", a.ctx.Err()
		}
		last = err
		var de *DialError
		if !errors.As(err, &de) {
			de = &DialError{Message: err.Error(), Retryable: true, Ambiguous: true}
		}
		if de.Ambiguous {
			// Ask now and, if the dialler does not know the call yet, once
			// more when it would have ended: only then place it again.
			again := a.sys.opts.Calls.LookAgainAfter
			if again <= 0 {
				again = 90 * time.Second
			}
			for _, wait := range []time.Duration{0, again} {
				if !a.sleep(wait) {
					return "", a.ctx.Err()
				}
				sid, found, err := a.lookUp(req, since)
				if err != nil {
					return "", err
				}
				if found {
					a.log.Info().Str("sid", sid).Str("custom_field", req.CustomField).Msg("the dialler placed the call despite the error")
					return sid, nil
				}
			}
		} else if !de.Retryable {
			return "", err
		}
		if !a.sleep(backoff(t.ProviderBackoff, t.ProviderMaxDelay, attempt)) {
			return "", a.ctx.Err()
		}
	}
	return "", last
}

// lookUp asks the dialler whether it placed the call; lookups that fail
// themselves are repeated a few times.
func (a *diallerActor) lookUp(req DialRequest, since time.Time) (string, bool, error) {
	t := a.sys.opts.Tuning
	for try := 1; try <= 5; try++ {
		cctx, cancel := context.WithTimeout(a.ctx, t.ProviderTimeout)
		dc, err := a.d.Find(cctx, req, since)
		cancel()
		switch {
		case err == nil:
			return dc.Sid, true, nil
		case errors.Is(err, ErrCallNotFound):
			return "", false, nil
		}
		if !a.sleep(backoff(t.ProviderBackoff, t.ProviderMaxDelay, try)) {
			return "", false, a.ctx.Err()
		}
	}
	return "", false, errors.New("the dialler could not say whether it placed the call; not retrying")
}

func (a *diallerActor) sleep(d time.Duration) bool { return sleepCtx(a.ctx, d) }

// sleepCtx waits d unless ctx ends first; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
