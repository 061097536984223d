package actors

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/persistence"
)

// callCmd asks a conversation actor to write call changes (a new call, or
// transitions of an existing one) with the conversation's next seqs. done
// gets the call after the last change.
type callCmd struct {
	p       Principal // for a new call: who places it (checked like a send)
	create  bool
	start   bool // a new call may create the (voice) conversation
	changes []*persistence.CallChange
	done    func(*persistence.Call, error)
}

// Messages of the call actor.
type (
	callBegin struct {
		call *persistence.Call
		key  persistence.ConversationKey
	}
	callCallback struct {
		cb   *DialledCall
		done func(error)
	}
	dialResult struct {
		sid string
		err error
	}
	callWritten struct {
		call *persistence.Call
		err  error
		done func(error)
	}
	reconcileTick   struct{} // routed: from a callback-less restart
	reconcileDue    struct{} // the actor's own timer
	reconcileResult struct {
		dc  *DialledCall
		err error
	}
)

// callActor owns one call: it dials through the dialler, turns callbacks and
// call details into transitions, and writes each transition through the
// call's conversation actor (so it gets the conversation's next seq). Out of
// order or repeated callbacks are harmless: the store never moves a call
// backwards and keeps the first terminal status.
type callActor struct {
	sys   *System
	id    int64
	lease *convLease
	log   zerolog.Logger

	call     *persistence.Call
	key      persistence.ConversationKey
	busy     bool // a dial or a reconciliation lookup is running
	fetching bool // a recording download is running
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func (a *callActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.ctx, a.cancel = context.WithCancel(context.Background())
		ctx.SetReceiveTimeout(a.sys.opts.Tuning.PassivateAfter)
	case *actor.Stopping:
		a.cancel()
		a.wg.Wait()
	case *actor.ReceiveTimeout:
		if !a.busy && !a.fetching && (a.call == nil || persistence.CallTerminal(a.call.Status)) && a.sys.router.calls.release(a.id, a.lease) {
			ctx.Stop(ctx.Self())
		} else {
			rearmIdleTimer(ctx, a.sys.opts.Tuning.PassivateAfter)
		}
	case *callBegin:
		a.lease.received.Add(1)
		a.call, a.key = m.call, m.key
		a.transition(ctx, nil, &persistence.CallChange{CallID: a.id, Status: persistence.CallDialling, At: a.sys.now()})
		a.startDial(ctx)
	case *callCallback:
		a.lease.received.Add(1)
		if !a.load() {
			m.done(fmt.Errorf("%w: call %d not loaded", ErrUnavailable, a.id))
			return
		}
		a.transition(ctx, m.done, a.changesFor(m.cb)...)
	case *reconcileTick:
		a.lease.received.Add(1)
		a.reconcile(ctx)
	case *reconcileDue:
		a.reconcile(ctx)
	case *dialResult:
		a.busy = false
		if m.err != nil {
			a.log.Warn().Err(m.err).Msg("call not placed")
			a.transition(ctx, nil, &persistence.CallChange{CallID: a.id, Status: persistence.CallFailed, At: a.sys.now(), Error: m.err.Error()})
			return
		}
		a.transition(ctx, nil, &persistence.CallChange{CallID: a.id, ProviderCallSID: m.sid})
		a.armReconcile(ctx)
	case *reconcileResult:
		a.busy = false
		a.reconciled(ctx, m)
	case *recordingSaved:
		a.fetching = false
	case *callWritten:
		if m.err == nil && m.call != nil {
			a.call = m.call
			a.maybeFetchRecording(ctx)
		}
		if m.err != nil {
			a.log.Warn().Err(m.err).Msg("call transition not stored")
		}
		if m.done != nil {
			m.done(m.err)
		}
	}
}

type recordingSaved struct{}

// maybeFetchRecording downloads a finished call's recording into the
// recordings directory, once, in the background.
func (a *callActor) maybeFetchRecording(ctx actor.Context) {
	o := a.sys.opts.Calls
	c := a.call
	if o.RecordingsDir == "" || a.fetching || !persistence.CallTerminal(c.Status) || c.RecordingURL == "" || c.RecordingPath != "" {
		return
	}
	f, ok := o.Dialler.(RecordingFetcher)
	if !ok {
		return
	}
	a.fetching = true
	url, id := c.RecordingURL, c.ID
	self, root := ctx.Self(), a.sys.root
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		t := a.sys.opts.Tuning
		for attempt := 1; attempt <= max(1, t.ProviderAttempts); attempt++ {
			path, err := saveRecording(a.ctx, f, o.RecordingsDir, id, url, t.ProviderTimeout)
			if err == nil {
				wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err = a.sys.opts.Store.SetCallRecordingPath(wctx, id, path)
				cancel()
			}
			if err == nil {
				a.log.Info().Str("path", path).Msg("recording saved")
				break
			}
			a.log.Warn().Err(err).Int("attempt", attempt).Msg("recording download failed")
			if !a.sleep(backoff(t.ProviderBackoff, t.ProviderMaxDelay, attempt)) {
				return
			}
		}
		root.Send(self, &recordingSaved{})
	}()
}

// saveRecording downloads url into dir as call-<id>.<ext>, whole or not at
// all (a temporary file renamed at the end).
func saveRecording(ctx context.Context, f RecordingFetcher, dir string, id int64, url string, timeout time.Duration) (string, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, fmt.Sprintf(".call-%d-*", id))
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctype, err := f.FetchRecording(cctx, url, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	ext := ".wav"
	switch {
	case strings.Contains(ctype, "mpeg"), strings.HasSuffix(strings.ToLower(url), ".mp3"):
		ext = ".mp3"
	case strings.Contains(ctype, "ogg"):
		ext = ".ogg"
	}
	path := filepath.Join(dir, fmt.Sprintf("call-%d%s", id, ext))
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// load reads the call after a restart or passivation.
func (a *callActor) load() bool {
	if a.call != nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.sys.opts.Store.CallByID(ctx, a.id)
	if err != nil {
		a.log.Warn().Err(err).Msg("load call")
		return false
	}
	conv, err := a.sys.opts.Store.ConversationByID(ctx, c.ConversationID)
	if err != nil {
		a.log.Warn().Err(err).Msg("load call's conversation")
		return false
	}
	a.call, a.key = c, conv.Key
	return true
}

// transition writes changes through the conversation actor; done (may be
// nil) is called once they are committed.
func (a *callActor) transition(ctx actor.Context, done func(error), changes ...*persistence.CallChange) {
	if len(changes) == 0 {
		if done != nil {
			done(nil)
		}
		return
	}
	self, root := ctx.Self(), a.sys.root
	a.sys.router.TellConversation(a.key, &callCmd{changes: changes, done: func(c *persistence.Call, err error) {
		root.Send(self, &callWritten{call: c, err: err, done: done})
	}})
}

// changesFor turns the dialler's view of the call into transitions.
func (a *callActor) changesFor(dc *DialledCall) []*persistence.CallChange {
	now := a.sys.now()
	base := func(status string) *persistence.CallChange {
		return &persistence.CallChange{CallID: a.id, Status: status, At: now, ProviderCallSID: dc.Sid, Raw: dc.Raw}
	}
	terminal := dc.Event == "terminal" || (dc.Event == "" && diallerFinal(dc.Status))
	if !terminal {
		if dc.Event == "answered" {
			c := base(persistence.CallContactAnswered)
			c.AnsweredAt = now
			return []*persistence.CallChange{c}
		}
		return nil
	}
	end := base(callStatusOf(dc.Status))
	end.StartedAt, end.EndedAt, end.TalkSeconds = dc.StartedAt, dc.EndedAt, dc.TalkSeconds
	end.RecordingURL, end.Legs = dc.RecordingURL, dc.Legs
	if end.Status == persistence.CallCompleted && dc.TalkSeconds > 0 {
		// Both legs talked: the bridge happened before the end.
		conn := base(persistence.CallConnected)
		conn.StartedAt = dc.StartedAt
		return []*persistence.CallChange{conn, end}
	}
	return []*persistence.CallChange{end}
}

// callStatusOf maps the dialler's final status onto ours.
func callStatusOf(s string) string {
	switch s {
	case "completed":
		return persistence.CallCompleted
	case "busy":
		return persistence.CallBusy
	case "no-answer", "no_answer":
		return persistence.CallNoAnswer
	case "canceled", "cancelled":
		return persistence.CallCanceled
	}
	return persistence.CallFailed
}

// diallerFinal reports whether a status from the details API ends the call.
func diallerFinal(s string) bool {
	switch s {
	case "completed", "busy", "no-answer", "no_answer", "failed", "canceled", "cancelled":
		return true
	}
	return false
}

func (a *callActor) dialRequest() DialRequest {
	o := a.sys.opts.Calls
	from, to := a.call.ContactPhone, a.call.RMPhone
	if a.call.FirstLeg == persistence.CallLegRM {
		from, to = to, from
	}
	return DialRequest{From: from, To: to, CallerID: o.CallerID, CustomField: strconv.FormatInt(a.id, 10),
		StatusCallback: o.CallbackURL, Record: o.Record}
}

// startDial hands the call to the dialler provider actor, which answers
// with a dialResult.
func (a *callActor) startDial(ctx actor.Context) {
	a.busy = true
	a.sys.root.Send(a.sys.dialler, &dialCmd{callID: a.id, req: a.dialRequest(), replyTo: ctx.Self()})
}

func (a *callActor) sleep(d time.Duration) bool { return sleepCtx(a.ctx, d) }

func (a *callActor) armReconcile(ctx actor.Context) {
	after := a.sys.opts.Calls.ReconcileAfter
	if after <= 0 {
		after = 10 * time.Minute
	}
	self, root := ctx.Self(), a.sys.root
	time.AfterFunc(after, func() { root.Send(self, &reconcileDue{}) })
}

// reconcile finishes a call the dialler never told us the end of.
func (a *callActor) reconcile(ctx actor.Context) {
	if a.busy || !a.load() {
		return
	}
	if persistence.CallTerminal(a.call.Status) {
		a.maybeFetchRecording(ctx) // a download an earlier run did not finish
		return
	}
	a.busy = true
	sid, req := a.call.ProviderCallSID, a.dialRequest()
	since := a.call.RequestedAt.Add(-time.Minute)
	self, root := ctx.Self(), a.sys.root
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		cctx, cancel := context.WithTimeout(a.ctx, a.sys.opts.Tuning.ProviderTimeout)
		defer cancel()
		var dc *DialledCall
		var err error
		if sid != "" {
			dc, err = a.sys.opts.Calls.Dialler.Details(cctx, sid)
		} else {
			dc, err = a.sys.opts.Calls.Dialler.Find(cctx, req, since)
		}
		if a.ctx.Err() == nil {
			root.Send(self, &reconcileResult{dc: dc, err: err})
		}
	}()
}

func (a *callActor) reconciled(ctx actor.Context, r *reconcileResult) {
	switch {
	case errors.Is(r.err, ErrCallNotFound):
		a.log.Warn().Msg("reconciliation: the dialler never heard of the call")
		a.transition(ctx, nil, &persistence.CallChange{CallID: a.id, Status: persistence.CallFailed, At: a.sys.now(),
			Error: "the dialler has no record of this call"})
	case r.err != nil:
		a.log.Warn().Err(r.err).Msg("reconciliation lookup failed; trying again later")
		a.armReconcile(ctx)
	default:
		changes := a.changesFor(r.dc)
		if len(changes) == 0 || !persistence.CallTerminal(changes[len(changes)-1].Status) {
			a.armReconcile(ctx) // still in progress
		}
		a.transition(ctx, nil, changes...)
	}
}

// StartCall places a click-to-call call from p to the contact of a
// conversation (conversationID) or to a phone number (then the call lives in
// the contact's voice conversation). It returns the call, status requested,
// once stored; dialling goes on in the call actor.
func (s *System) StartCall(ctx context.Context, p Principal, conversationID int64, phone string) (*persistence.Call, error) {
	o := s.opts.Calls
	if o == nil {
		return nil, fmt.Errorf("%w: click-to-call is not configured", ErrBadRequest)
	}
	rm, err := s.opts.Store.RMByID(ctx, p.RMID)
	if err != nil {
		return nil, storeError(err)
	}
	if rm.Phone == "" {
		return nil, fmt.Errorf("%w: you have no phone number on record to be called on", ErrBadRequest)
	}
	var key persistence.ConversationKey
	start := false
	if conversationID > 0 {
		if key, err = s.conversationKey(ctx, conversationID); err != nil {
			return nil, err
		}
	} else {
		norm, err := NormalizePhone(phone)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		caller, err := NormalizePhone(o.CallerID)
		if err != nil {
			return nil, fmt.Errorf("%w: caller id: %v", ErrUnavailable, err)
		}
		key = persistence.ConversationKey{Channel: persistence.ChannelVoice, BusinessNumber: caller, ContactPhone: norm}
		start = true
		if err := s.mayReachContact(ctx, p, norm); err != nil {
			return nil, err
		}
	}
	first := o.FirstLeg
	if first == "" {
		first = persistence.CallLegContact
	}
	change := &persistence.CallChange{Status: persistence.CallRequested, At: s.now(), New: &persistence.Call{
		RMID: p.RMID, ContactPhone: key.ContactPhone, RMPhone: rm.Phone, CallerID: o.CallerID, FirstLeg: first}}
	ch := make(chan struct {
		c   *persistence.Call
		err error
	}, 1)
	s.router.TellConversation(key, &callCmd{p: p, create: true, start: start, changes: []*persistence.CallChange{change},
		done: func(c *persistence.Call, err error) {
			ch <- struct {
				c   *persistence.Call
				err error
			}{c, err}
		}})
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		s.router.calls.tell(r.c.ID, &callBegin{call: r.c, key: key})
		return r.c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// mayReachContact refuses an RM a contact whose conversations belong to
// another RM (or who is another RM's contact); supervisors may reach anyone.
func (s *System) mayReachContact(ctx context.Context, p Principal, phone string) error {
	if p.Supervisor() {
		return nil
	}
	c, err := s.opts.Store.ContactByPhone(ctx, phone)
	switch {
	case errors.Is(err, persistence.ErrNotFound):
		return nil
	case err != nil:
		return storeError(err)
	case c.OwnerRMID != 0 && c.OwnerRMID != p.RMID:
		return ErrForbidden
	}
	for channel, business := range s.opts.BusinessNumbers {
		conv, err := s.opts.Store.ConversationByKey(ctx, persistence.ConversationKey{Channel: channel, BusinessNumber: business, ContactPhone: phone})
		if errors.Is(err, persistence.ErrNotFound) {
			continue
		}
		if err != nil {
			return storeError(err)
		}
		if conv.AssignedRMID != 0 && conv.AssignedRMID != p.RMID {
			return ErrForbidden
		}
	}
	return nil
}

// Call returns a call p may see: the RM who placed it, the RM the
// conversation belongs to, or a supervisor.
func (s *System) Call(ctx context.Context, p Principal, id int64) (*persistence.Call, error) {
	c, err := s.opts.Store.CallByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, storeError(err)
	}
	if p.Supervisor() || c.RMID == p.RMID {
		return c, nil
	}
	conv, err := s.opts.Store.ConversationByID(ctx, c.ConversationID)
	if err != nil {
		return nil, storeError(err)
	}
	if conv.AssignedRMID != p.RMID {
		return nil, ErrForbidden
	}
	return c, nil
}

// DiallerCallback applies a status callback to its call and returns once the
// transitions it caused are committed. ErrNotFound: no such call.
func (s *System) DiallerCallback(ctx context.Context, cb *DialledCall) error {
	id, err := strconv.ParseInt(cb.CustomField, 10, 64)
	if err != nil || id <= 0 {
		c, err := s.opts.Store.CallByProviderSID(ctx, cb.Sid)
		if errors.Is(err, persistence.ErrNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return storeError(err)
		}
		id = c.ID
	} else if _, err := s.opts.Store.CallByID(ctx, id); errors.Is(err, persistence.ErrNotFound) {
		return ErrNotFound
	}
	ch := make(chan error, 1)
	s.router.calls.tell(id, &callCallback{cb: cb, done: func(err error) { ch <- err }})
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// reconcileUnfinished hands calls left unfinished by an earlier run to their
// actors, which ask the dialler how they ended.
func (s *System) reconcileUnfinished(ctx context.Context) error {
	calls, err := s.opts.Store.UnfinishedCalls(ctx, s.now(), 10000)
	if err != nil {
		return fmt.Errorf("list unfinished calls: %w", err)
	}
	for _, c := range calls {
		s.router.calls.tell(c.ID, &reconcileTick{})
	}
	return nil
}

func (s *System) callProps(id int64, lease *convLease) *actor.Props {
	log := s.opts.Log.With().Str("actor", "call").Int64("call_id", id).Logger()
	return s.instrumentedProps(kCall, &lease.act, func() actor.Actor {
		return &callActor{sys: s, id: id, lease: lease, log: log}
	})
}
