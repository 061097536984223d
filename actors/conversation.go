package actors

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/actors/msg"
	"urva/persistence"
)

// Commands a conversation actor takes from the router. Each carries a done
// callback that is called exactly once: after the commit that carries it
// (on the committer goroutine, so it must not block) or with an error.

type ingestCmd struct {
	in   Inbound
	done func(IngestResult, error)
}

type sendCmd struct {
	p           Principal
	req         SendRequest
	start       bool   // may create the conversation (RM starts it)
	contactName string // with start
	done        func(*persistence.Message, *persistence.Conversation, error)
}

// redriveCmd hands a message left queued by an earlier run to the provider.
type redriveCmd struct{ message *persistence.Message }

// maxWriteItems caps one conversation's share of a batch.
const maxWriteItems = 256

// maxTextLen is the longest text an RM may send (WhatsApp's limit).
const maxTextLen = 4096

// failCommand answers a command that will never be processed.
func failCommand(m any, err error) {
	switch c := m.(type) {
	case *ingestCmd:
		c.done(IngestResult{}, err)
	case *sendCmd:
		c.done(nil, nil, err)
	case *callCmd:
		c.done(nil, err)
	case *videoCallCmd:
		c.done(nil, err)
	case *assignCmd:
		c.done(nil, err)
	}
}

// pendingItem is one write item waiting for the actor's next write.
type pendingItem struct {
	item     persistence.WriteItem
	outbound bool                                                           // send through the provider after commit
	accepted bool                                                           // a provider result (success): re-apply parked statuses after it
	prevRMID int64                                                          // assignments: who had the conversation
	done     func(persistence.ItemResult, *persistence.Conversation, error) // may be nil
}

type writeDone struct {
	batch []pendingItem
	res   *persistence.WriteResult
	err   error
	retry bool // this was already a retry after ErrSeqTaken
}

// How a write's completion reaches its conversation actor (writeState).
// Most writes are inbound messages whose completion changes nothing but the
// actor's copy of the conversation: the committer's completion goroutine
// then leaves it for the actor to apply before its next message, instead
// of waking the actor for it. The actor is woken when it has to act: items
// wait for the next write, the write failed, or an item needs a reaction
// (a send to the provider, a status to park, parked statuses to apply).
const (
	writeIdle     int32 = iota // no write in flight
	writeInFlight              // in flight; its completion may land without waking the actor
	writeWanted                // in flight; its completion is sent to the actor
	writeLanded                // completed, in landed: the actor applies it before anything else
)

// conversationActor owns one conversation: it serialises everything that
// happens to it, gives each visible change the next seq (inside the store's
// transaction), deduplicates through the store's unique keys, and creates
// the conversation on its first message. At most one write is in flight;
// whatever arrives meanwhile goes into the next write.
type conversationActor struct {
	sys   *System
	key   persistence.ConversationKey
	lease *convLease
	log   zerolog.Logger

	loaded  bool
	conv    *persistence.Conversation // nil until it exists
	pending []pendingItem
	// creator says who opens a conversation that does not exist yet: the RM
	// starting it, or 0 for "pick the owner or the least-loaded online RM".
	creatorRMID int64
	pendingName string // contact name reported by the provider, for the next write
	retryNext   bool

	// writeState (writeIdle...) and landed are shared with the completion
	// goroutine of the write in flight: landed is set before writeState
	// becomes writeLanded, and read by the actor only after it sees that.
	// The actor's write is in flight (writing) until it applied the
	// completion, landed or sent.
	writeState atomic.Int32
	landed     atomic.Pointer[writeDone]

	awaitingProvider int                         // sends handed to the provider, no result yet
	parked           []*persistence.StatusChange // statuses for ids the provider has not confirmed to us yet
}

func (a *conversationActor) Receive(ctx actor.Context) {
	if a.writeState.Load() == writeLanded {
		a.applyLanded(ctx)
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.SetReceiveTimeout(a.sys.opts.Tuning.PassivateAfter)
		a.load()
	case *actor.Restarting:
		a.failPending(fmt.Errorf("%w: conversation actor restarted", ErrUnavailable))
	case *actor.ReceiveTimeout:
		a.maybePassivate(ctx)
	case *ingestCmd:
		a.lease.received.Add(1)
		a.ingest(ctx, m)
	case *sendCmd:
		a.lease.received.Add(1)
		a.send(ctx, m)
	case *msg.ProviderResult:
		a.lease.received.Add(1)
		a.providerResult(ctx, m)
	case *msg.AssignIfUnassigned:
		a.lease.received.Add(1)
		a.assign(ctx, m)
	case *redriveCmd:
		a.lease.received.Add(1)
		a.sendToProvider(m.message)
	case *callCmd:
		a.lease.received.Add(1)
		a.callCmd(ctx, m)
	case *videoCallCmd:
		a.lease.received.Add(1)
		a.videoCallCmd(ctx, m)
	case *assignCmd:
		a.lease.received.Add(1)
		a.assignTo(ctx, m)
	case *writeDone:
		a.writeState.Store(writeIdle)
		a.writeDone(ctx, m)
	}
}

// writing reports a write whose completion the actor has not applied yet.
func (a *conversationActor) writing() bool { return a.writeState.Load() != writeIdle }

// applyLanded applies the completion the committer left in landed.
func (a *conversationActor) applyLanded(ctx actor.Context) {
	d := a.landed.Swap(nil)
	a.writeState.Store(writeIdle)
	a.writeDone(ctx, d)
}

// quietCompletion reports whether the completion of a write of batch can
// wait for the actor's next message: only inbound messages, whose
// completion sets the actor's copy of the conversation and nothing else
// (writeDone).
func quietCompletion(batch []pendingItem) bool {
	for _, p := range batch {
		if p.item.Kind != persistence.ItemInbound || p.outbound || p.accepted {
			return false
		}
	}
	return true
}

func (a *conversationActor) load() bool {
	if a.loaded {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.sys.opts.Store.ConversationByKey(ctx, a.key)
	switch {
	case err == nil:
		a.conv = c
	case errors.Is(err, persistence.ErrNotFound):
		a.conv = nil
	default:
		a.log.Warn().Err(err).Msg("load conversation")
		return false
	}
	a.loaded = true
	return true
}

func (a *conversationActor) ingest(ctx actor.Context, c *ingestCmd) {
	if a.sys.faultHook != nil {
		a.sys.faultHook(a.key)
	}
	if !a.load() {
		c.done(IngestResult{}, fmt.Errorf("%w: database unavailable", ErrUnavailable))
		return
	}
	var item persistence.WriteItem
	switch {
	case c.in.Message != nil:
		m := *c.in.Message
		m.Direction = persistence.DirectionIn
		m.Channel = a.key.Channel
		if m.Status == "" {
			m.Status = persistence.StatusReceived
		}
		item = persistence.WriteItem{Kind: persistence.ItemInbound, Message: &m, SMSOptOut: c.in.SMSOptOut}
	case c.in.Status != nil:
		if a.conv == nil && a.awaitingProvider == 0 {
			// A status for a conversation we never had: nothing to update.
			c.done(IngestResult{Duplicate: true}, nil)
			return
		}
		st := *c.in.Status
		item = persistence.WriteItem{Kind: persistence.ItemStatus, Status: &st}
	default:
		c.done(IngestResult{}, fmt.Errorf("%w: empty inbound item", ErrBadRequest))
		return
	}
	item.Log = c.in.Log
	done := c.done
	a.enqueue(ctx, pendingItem{item: item, done: func(r persistence.ItemResult, _ *persistence.Conversation, err error) {
		res := IngestResult{Duplicate: r.Duplicate, LogID: r.LogID}
		if r.Message != nil {
			res.MessageID = r.Message.ID
		}
		done(res, err)
	}}, c.in.ContactName)
}

func (a *conversationActor) send(ctx actor.Context, c *sendCmd) {
	if !a.load() {
		c.done(nil, nil, fmt.Errorf("%w: database unavailable", ErrUnavailable))
		return
	}
	if err := a.checkSend(c); err != nil {
		c.done(nil, nil, err)
		return
	}
	m := &persistence.Message{
		Direction:   persistence.DirectionOut,
		Channel:     a.key.Channel,
		Type:        "text",
		Text:        c.req.Text,
		ClientMsgID: c.req.ClientMsgID,
		RMID:        c.p.RMID,
		Status:      persistence.StatusQueued,
	}
	if c.req.Template != nil {
		t := *c.req.Template
		m.Type, m.Template, m.Text = "template", &t, ""
	}
	if a.conv == nil {
		a.creatorRMID = c.p.RMID
	}
	done := c.done
	a.enqueue(ctx, pendingItem{
		item:     persistence.WriteItem{Kind: persistence.ItemOutbound, Message: m},
		outbound: true,
		done: func(r persistence.ItemResult, conv *persistence.Conversation, err error) {
			done(r.Message, conv, err)
		},
	}, c.contactName)
}

// checkSend applies the rules an outbound message must pass before it is stored.
func (a *conversationActor) checkSend(c *sendCmd) error {
	req := c.req
	switch {
	case req.ClientMsgID == "":
		return fmt.Errorf("%w: client_msg_id is required", ErrBadRequest)
	case len(req.ClientMsgID) > 128:
		return fmt.Errorf("%w: client_msg_id is longer than 128 bytes", ErrBadRequest)
	case req.Template == nil && req.Text == "":
		return fmt.Errorf("%w: text or template is required", ErrBadRequest)
	case req.Template != nil && req.Text != "":
		return fmt.Errorf("%w: send text or a template, not both", ErrBadRequest)
	case req.Template != nil && (req.Template.Name == "" || req.Template.Language == ""):
		return fmt.Errorf("%w: template needs a name and a language", ErrBadRequest)
	case utf8.RuneCountInString(req.Text) > maxTextLen:
		return fmt.Errorf("%w: text is longer than %d characters", ErrBadRequest, maxTextLen)
	}
	if a.conv == nil {
		if !c.start {
			return ErrNotFound
		}
	} else if !c.p.Supervisor() && a.conv.AssignedRMID != c.p.RMID {
		return ErrForbidden
	}
	if a.key.Channel == persistence.ChannelSMS && a.conv != nil && a.conv.SMSOptedOut {
		return ErrOptedOut
	}
	if a.key.Channel == persistence.ChannelWhatsApp && req.Template == nil {
		var last time.Time
		if a.conv != nil {
			last = a.conv.LastInboundAt
		}
		if last.IsZero() || a.sys.now().Sub(last) > a.sys.opts.Tuning.WhatsAppWindow {
			return ErrWindowClosed
		}
	}
	return nil
}

// callCmd writes a new call or a call's transitions, each with the
// conversation's next seq.
func (a *conversationActor) callCmd(ctx actor.Context, c *callCmd) {
	if !a.load() {
		c.done(nil, fmt.Errorf("%w: database unavailable", ErrUnavailable))
		return
	}
	switch {
	case c.create && a.conv == nil && !c.start:
		c.done(nil, ErrNotFound)
		return
	case c.create && a.conv == nil:
		a.creatorRMID = c.p.RMID
	case c.create && !c.p.Supervisor() && a.conv.AssignedRMID != c.p.RMID:
		c.done(nil, ErrForbidden)
		return
	case !c.create && a.conv == nil && !a.writing():
		c.done(nil, ErrNotFound)
		return
	}
	items := make([]persistence.WriteItem, len(c.changes))
	for i, ch := range c.changes {
		items[i] = persistence.WriteItem{Kind: persistence.ItemCall, Call: ch}
	}
	a.enqueueItems(ctx, items, func(r persistence.ItemResult, _ *persistence.Conversation, err error) { c.done(r.Call, err) })
}

// enqueueItems queues items for the next write; done gets the result of
// the last one (the write carries them all, so it succeeds or fails with
// the others). done runs on the store's committer goroutine: it must not
// touch the actor's state.
func (a *conversationActor) enqueueItems(ctx actor.Context, items []persistence.WriteItem,
	done func(persistence.ItemResult, *persistence.Conversation, error)) {
	for i, it := range items {
		p := pendingItem{item: it}
		if i == len(items)-1 {
			p.done = done
		}
		a.pending = append(a.pending, p)
	}
	a.flush(ctx)
}

func (a *conversationActor) providerResult(ctx actor.Context, r *msg.ProviderResult) {
	if a.awaitingProvider > 0 {
		a.awaitingProvider--
	}
	if !a.load() {
		// The message stays queued in the database and is re-driven at the next start.
		a.log.Warn().Int64("message_id", r.MessageId).Msg("provider result not stored: database unavailable")
		return
	}
	if r.Failed {
		errJSON := providerErrorJSON(r.Error)
		a.enqueue(ctx, pendingItem{item: persistence.WriteItem{Kind: persistence.ItemStatus, Status: &persistence.StatusChange{
			MessageID: r.MessageId, Status: persistence.StatusFailed, At: a.sys.now(), Error: errJSON,
		}}}, "")
		return
	}
	a.enqueue(ctx, pendingItem{accepted: true, item: persistence.WriteItem{Kind: persistence.ItemProviderAccepted, Status: &persistence.StatusChange{
		MessageID: r.MessageId, ProviderMessageID: r.ProviderMessageId, Status: persistence.StatusAccepted, At: a.sys.now(),
	}}}, "")
}

func (a *conversationActor) assign(ctx actor.Context, m *msg.AssignIfUnassigned) {
	if !a.load() || a.conv == nil || a.conv.AssignedRMID != 0 {
		return
	}
	a.enqueue(ctx, pendingItem{item: persistence.WriteItem{Kind: persistence.ItemAssign, AssignRMID: m.RmId, OnlyIfUnassigned: true}}, "")
}

func (a *conversationActor) enqueue(ctx actor.Context, p pendingItem, contactName string) {
	if contactName != "" {
		a.pendingName = contactName
	}
	a.pending = append(a.pending, p)
	a.flush(ctx)
}

// flush starts the next write when none is in flight. With one in flight,
// the pending items need its completion: the actor asks to be woken for
// it, or applies it now when it has already landed.
func (a *conversationActor) flush(ctx actor.Context) {
	if len(a.pending) == 0 {
		return
	}
	if a.writing() {
		if !a.writeState.CompareAndSwap(writeInFlight, writeWanted) && a.writeState.Load() == writeLanded {
			a.applyLanded(ctx) // flushes
		}
		return
	}
	n := min(len(a.pending), maxWriteItems)
	batch := a.pending[:n:n]
	a.pending = a.pending[n:]
	if len(a.pending) == 0 {
		a.pending = nil
	}
	w := &persistence.ConversationWrite{Key: a.key, ContactName: a.pendingName}
	a.pendingName = ""
	if a.conv != nil {
		w.ConversationID, w.LastSeq = a.conv.ID, a.conv.LastSeq
		for i := range batch {
			if batch[i].item.Kind == persistence.ItemAssign {
				batch[i].prevRMID = a.conv.AssignedRMID
			}
		}
	} else {
		w.InitialRMID = a.initialAssignee()
		w.OwnerRMID = a.creatorRMID
	}
	w.Items = make([]persistence.WriteItem, len(batch))
	for i := range batch {
		w.Items[i] = batch[i].item
	}
	retry := a.retryNext
	a.retryNext = false
	if quietCompletion(batch) {
		a.writeState.Store(writeInFlight)
	} else {
		a.writeState.Store(writeWanted)
	}
	self, root, sys := ctx.Self(), a.sys.root, a.sys
	sys.opts.Store.SubmitConversationWrite(w, func(res *persistence.WriteResult, err error) {
		// Committer goroutine. The actor hears of the commit first, so that
		// anything done in reaction to the events below (an RM replying to a
		// message it just saw) reaches the actor after its state is current:
		// either the completion lands for the actor to apply before that
		// next message, or it is sent ahead of it. Then publish in commit
		// order and answer the waiters. Nothing here touches actor state
		// but writeState and landed; batch and res are read-only from now on.
		d := &writeDone{batch: batch, res: res, err: err, retry: retry}
		landed := false
		if err == nil {
			a.landed.Store(d)
			if landed = a.writeState.CompareAndSwap(writeInFlight, writeLanded); !landed {
				a.landed.Store(nil)
			}
		}
		if !landed {
			root.Send(self, d)
		}
		if err == nil {
			sys.publishWrite(a.key, batch, res)
			for i := range batch {
				if batch[i].done != nil {
					batch[i].done(res.Items[i], &res.Conversation, nil)
				}
			}
		} else if !errors.Is(err, persistence.ErrSeqTaken) || retry {
			for i := range batch {
				if batch[i].done != nil {
					batch[i].done(persistence.ItemResult{}, nil, storeError(err))
				}
			}
		}
	})
}

// initialAssignee picks the RM for a conversation this actor is about to
// create: the RM starting it, else the contact's owner, else the online RM
// with the fewest open conversations, else nobody (it waits unassigned).
func (a *conversationActor) initialAssignee() int64 {
	if a.creatorRMID != 0 {
		return a.creatorRMID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store := a.sys.opts.Store
	if c, err := store.ContactByPhone(ctx, a.key.ContactPhone); err == nil && c.OwnerRMID != 0 {
		return c.OwnerRMID
	}
	best, err := a.sys.load.pick(ctx, a.sys.router.OnlineRMs())
	if err != nil {
		a.log.Warn().Err(err).Msg("open conversation counts")
	}
	return best
}

// writeDone applies a write's completion; writeState is writeIdle again.
func (a *conversationActor) writeDone(ctx actor.Context, d *writeDone) {
	if d.err != nil {
		if errors.Is(d.err, persistence.ErrSeqTaken) && !d.retry {
			// Another activation wrote to this conversation (possible in a
			// cluster or right after passivation): reload and write again.
			a.loaded = false
			if a.load() {
				a.pending = append(append([]pendingItem{}, d.batch...), a.pending...)
				a.retryNext = true
			} else {
				for _, p := range d.batch {
					if p.done != nil {
						p.done(persistence.ItemResult{}, nil, fmt.Errorf("%w: database unavailable", ErrUnavailable))
					}
				}
			}
		} else {
			a.log.Warn().Err(d.err).Int("items", len(d.batch)).Msg("conversation write failed")
		}
		a.flush(ctx)
		return
	}
	conv := d.res.Conversation
	a.conv = &conv
	a.loaded = true
	a.creatorRMID = 0
	reapply, batchAccepted := false, false
	for _, p := range d.batch {
		batchAccepted = batchAccepted || p.accepted
	}
	for i, p := range d.batch {
		r := d.res.Items[i]
		switch {
		case p.outbound && !r.Duplicate && r.Message != nil:
			a.sendToProvider(r.Message)
		case p.item.Kind == persistence.ItemStatus && r.Message == nil && p.item.Status.ProviderMessageID != "" &&
			(a.awaitingProvider > 0 || a.acceptPending() || batchAccepted):
			// The provider reported a status before its answer to our send
			// reached us: keep it until the provider id is stored.
			if len(a.parked) < 1024 {
				a.parked = append(a.parked, p.item.Status)
			}
		case p.accepted:
			reapply = true
		}
	}
	if reapply && len(a.parked) > 0 {
		// Ahead of anything queued meanwhile: an early "sent" applies before
		// a later "delivered", so the RM sees both.
		again := make([]pendingItem, 0, len(a.parked)+len(a.pending))
		for _, st := range a.parked {
			again = append(again, pendingItem{item: persistence.WriteItem{Kind: persistence.ItemStatus, Status: st}})
		}
		a.pending = append(again, a.pending...)
		a.parked = nil
	}
	a.flush(ctx)
}

// acceptPending reports whether a provider's answer waits in the queue.
func (a *conversationActor) acceptPending() bool {
	for _, p := range a.pending {
		if p.accepted {
			return true
		}
	}
	return false
}

func (a *conversationActor) sendToProvider(m *persistence.Message) {
	req := &msg.ProviderSend{
		MessageId:      m.ID,
		ConversationId: m.ConversationID,
		Key:            keyToMsg(a.key),
		Text:           m.Text,
		ClientMsgId:    m.ClientMsgID,
	}
	if m.Template != nil {
		req.Template = &msg.Template{Name: m.Template.Name, Language: m.Template.Language, Params: m.Template.Params}
	}
	if !a.sys.router.TellProvider(a.key.Channel, req) {
		a.log.Error().Str("channel", a.key.Channel).Msg("no provider for channel; message stays queued")
		return
	}
	a.awaitingProvider++
}

func (a *conversationActor) maybePassivate(ctx actor.Context) {
	if !a.writing() && len(a.pending) == 0 && a.awaitingProvider == 0 && a.sys.router.release(a.key, a.lease) {
		ctx.Stop(ctx.Self())
		if a.sys.passivated != nil {
			a.sys.passivated(a.key)
		}
		return
	}
	rearmIdleTimer(ctx, a.sys.opts.Tuning.PassivateAfter)
}

// rearmIdleTimer arms an actor's idle timer again after it fired without
// the actor stopping: Proto.Actor cancels the timer when it fires, and
// later messages do not re-arm it, so the actor would never passivate.
func rearmIdleTimer(ctx actor.Context, d time.Duration) { ctx.SetReceiveTimeout(d) }

func (a *conversationActor) failPending(err error) {
	for _, p := range a.pending {
		if p.done != nil {
			p.done(persistence.ItemResult{}, nil, err)
		}
	}
	a.pending = nil
}

// storeError maps a store failure for transport: input the store refused
// is a bad request (retrying cannot help), anything else is unavailable.
func storeError(err error) error {
	switch {
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrBadRequest):
		return err
	case errors.Is(err, persistence.ErrInvalid):
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func keyToMsg(k persistence.ConversationKey) *msg.ConversationKey {
	return &msg.ConversationKey{Channel: k.Channel, BusinessNumber: k.BusinessNumber, ContactPhone: k.ContactPhone}
}

func keyFromMsg(k *msg.ConversationKey) persistence.ConversationKey {
	if k == nil {
		return persistence.ConversationKey{}
	}
	return persistence.ConversationKey{Channel: k.Channel, BusinessNumber: k.BusinessNumber, ContactPhone: k.ContactPhone}
}
