package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"

	"urva/actors/msg"
	"urva/internal/logfields"
	"urva/persistence"
)

// Options wires a System.
type Options struct {
	Store persistence.Store
	// Providers by channel (persistence.ChannelWhatsApp, ...).
	Providers map[string]ProviderClient
	// BusinessNumbers by channel: our number (E.164 with '+') used in conversation keys.
	BusinessNumbers map[string]string
	Tuning          Tuning
	Log             zerolog.Logger
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// CRM turns on CRM sync (the outbox drained by the CRM sync actor); nil = off.
	CRM *CRMOptions
	// Calls turns on click-to-call; nil = off.
	Calls *CallOptions
	// Video turns on video calls; nil = off.
	Video *VideoOptions

	// Observation (observe.go): Proto.Actor's own metrics go to
	// MeterProvider (nil = off); OnSend is told each outbound send
	// attempt's result, OnSlowClient each socket cut as too slow.
	MeterProvider metric.MeterProvider
	OnSend        func(channel, result string)
	OnSlowClient  func(socket string)

	videoWrites func(persistence.VideoCall) // tests: called with a video call after each of its writes
}

// System is the actor system plus the router: the only thing transport uses.
type System struct {
	opts      Options
	actors    *actor.ActorSystem
	root      *actor.RootContext
	router    *localRouter
	providers []*actor.PID
	crm       *actor.PID
	dialler   *actor.PID
	crmWoke   atomic.Bool
	stopping  atomic.Bool

	convKeys sync.Map // conversation id -> persistence.ConversationKey (immutable)
	stats    actorStats
	dispatch *workerDispatcher // runs every actor's mailbox (dispatch.go)
	load     rmLoad            // open conversations per RM, for initial assignment

	faultHook   func(persistence.ConversationKey) // tests: called before an inbound item is handled
	passivated  func(persistence.ConversationKey) // tests: called when a conversation actor passivates
	videoWrites func(persistence.VideoCall)       // tests: called with a video call after each of its writes
}

// Start starts the actor system, spawns the provider actors and re-drives
// outbound messages left queued by a previous run.
func Start(ctx context.Context, opts Options) (*System, error) {
	if opts.Store == nil {
		return nil, errors.New("actors: a store is required")
	}
	if opts.Tuning == (Tuning{}) {
		opts.Tuning = DefaultTuning()
	}
	s := &System{opts: opts, dispatch: newWorkerDispatcher(mailboxThroughput, maxParkedWorkers, workerIdleFor)}
	s.stats.init()
	s.load.counts, s.load.now = opts.Store.OpenConversationCounts, s.now
	plog := opts.Log.With().Str("component", "protoactor").Logger()
	s.actors = newActorSystem(opts.MeterProvider, actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(&zerologHandler{log: plog})
	}))
	s.root = s.actors.Root
	s.router = newLocalRouter(s.root, s.conversationProps)
	s.router.calls.spawn = s.callProps
	s.router.videos.spawn = s.videoProps
	for channel, client := range opts.Providers {
		channel, client := channel, client
		props := s.instrumentedProps(kProvider, &actorRec{}, func() actor.Actor {
			return &providerActor{sys: s, channel: channel, client: client,
				log: opts.Log.With().Str("actor", "provider").Str("channel", channel).Logger()}
		})
		pid, err := s.root.SpawnNamed(props, "provider/"+channel)
		if err != nil {
			return nil, fmt.Errorf("spawn %s provider actor: %w", channel, err)
		}
		s.router.providers[channel] = pid
		s.providers = append(s.providers, pid)
	}
	if c := opts.CRM; c != nil && c.Sender != nil && c.Outbox != nil {
		c.defaults()
		crmOpts := *c
		s.opts.CRM = &crmOpts
		props := s.instrumentedProps(kCRMSync, &actorRec{}, func() actor.Actor {
			return &crmSyncActor{sys: s, opts: crmOpts, woke: &s.crmWoke,
				log: opts.Log.With().Str("actor", "crm_sync").Logger()}
		})
		pid, err := s.root.SpawnNamed(props, "crm_sync")
		if err != nil {
			return nil, fmt.Errorf("spawn crm sync actor: %w", err)
		}
		s.crm = pid
	}
	if err := s.redrive(ctx); err != nil {
		return nil, err
	}
	if opts.Video != nil {
		v := *opts.Video
		v.defaults()
		s.opts.Video = &v
		if err := s.wakeVideoCalls(ctx); err != nil {
			return nil, err
		}
	}
	if opts.Calls != nil && opts.Calls.Dialler != nil {
		d := opts.Calls.Dialler
		pid, err := s.root.SpawnNamed(s.instrumentedProps(kDialler, &actorRec{}, func() actor.Actor {
			return &diallerActor{sys: s, d: d, log: opts.Log.With().Str("actor", "dialler").Logger()}
		}), "provider/dialler")
		if err != nil {
			return nil, fmt.Errorf("spawn dialler actor: %w", err)
		}
		s.dialler = pid
		if err := s.reconcileUnfinished(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// redrive hands outbound messages still queued (a crash or a stop between
// storing and sending) to their provider actors.
func (s *System) redrive(ctx context.Context) error {
	pending, err := s.opts.Store.PendingOutbound(ctx, 100000)
	if err != nil {
		return fmt.Errorf("list queued outbound messages: %w", err)
	}
	for i := range pending {
		p := &pending[i]
		if _, ok := s.router.providers[p.Message.Channel]; !ok {
			s.opts.Log.Warn().Str("channel", p.Message.Channel).Int64("message_id", p.Message.ID).Msg("queued message for a channel without provider")
			continue
		}
		// Through the conversation actor, which then expects the provider's
		// answer and holds back statuses that overtake it.
		m := p.Message
		s.router.TellConversation(p.Conversation.Key, &redriveCmd{message: &m})
	}
	if len(pending) > 0 {
		s.opts.Log.Info().Int("messages", len(pending)).Msg("re-driving queued outbound messages")
	}
	return nil
}

func (s *System) conversationProps(key persistence.ConversationKey, lease *convLease) *actor.Props {
	log := s.opts.Log.With().Str("actor", "conversation").Str("key", key.String()).Logger()
	return s.instrumentedProps(kConversation, &lease.act, func() actor.Actor {
		return &conversationActor{sys: s, key: key, lease: lease, log: log}
	}, actor.WithGuardian(conversationSupervisor))
}

// conversationSupervisor restarts a failing conversation actor (it reloads
// from the store) and answers the message that failed, so its caller is not
// left waiting. Other conversations never notice. It is a pointer because
// Proto.Actor keys guardians by strategy.
var conversationSupervisor actor.SupervisorStrategy = &failingCommandStrategy{
	restart: actor.NewOneForOneStrategy(10, 10*time.Second, actor.DefaultDecider),
}

type failingCommandStrategy struct{ restart actor.SupervisorStrategy }

func (f *failingCommandStrategy) HandleFailure(sys *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	failCommand(message, fmt.Errorf("%w: conversation actor failed: %v", ErrUnavailable, reason))
	f.restart.HandleFailure(sys, sup, child, rs, reason, message)
}

func (s *System) now() time.Time {
	if s.opts.Clock != nil {
		return s.opts.Clock()
	}
	return time.Now()
}

// publishWrite turns a committed write's events into frames for the RM
// sessions. It runs on the store's committer goroutine, in commit order, so
// every session sees events in event-id order.
func (s *System) publishWrite(key persistence.ConversationKey, batch []pendingItem, res *persistence.WriteResult) {
	conv := &res.Conversation
	s.convKeys.Store(conv.ID, key)
	for i := range res.Items {
		r := &res.Items[i]
		if r.Event == nil {
			continue
		}
		rec := persistence.EventRecord{Event: *r.Event, Conversation: *conv, ContactPhone: key.ContactPhone,
			ContactName: conv.ContactName, Message: r.Message}
		frame := EncodeEvent(&rec)
		s.router.Publish(&msg.FeedEvent{EventId: r.Event.ID, ConversationId: conv.ID, Seq: r.Event.Seq,
			AssignedRmId: conv.AssignedRMID, Frame: frame})
		if r.Event.Type == persistence.EventAssigned {
			if prev := batch[i].prevRMID; prev != 0 && prev != conv.AssignedRMID {
				s.router.NotifyRM(&msg.Frame{RmId: prev, Frame: frame})
			}
		}
	}
}

// waitGroup collects done callbacks of many commands.
type waitGroup struct {
	left atomic.Int64
	done chan struct{}
}

func newWaitGroup(n int) *waitGroup {
	w := &waitGroup{done: make(chan struct{})}
	w.left.Store(int64(n))
	if n == 0 {
		close(w.done)
	}
	return w
}

func (w *waitGroup) finish() {
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
}

// Ingest hands provider notifications to their conversation actors and
// returns once every one of them is committed (or failed). Results are in
// the order of items. It does not return before the commit even when ctx
// ends first, unless the wait exceeds ctx: then it reports ErrUnavailable.
func (s *System) Ingest(ctx context.Context, items []Inbound) ([]IngestResult, error) {
	if s.stopping.Load() {
		return nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	results := make([]IngestResult, len(items))
	errs := make([]error, len(items))
	wg := newWaitGroup(len(items))
	for i := range items {
		i := i
		s.router.TellConversation(items[i].Key, &ingestCmd{in: items[i], done: func(r IngestResult, err error) {
			results[i], errs[i] = r, err
			wg.finish()
		}})
	}
	select {
	case <-wg.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
	for _, err := range errs {
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

// conversationKey finds the key of a conversation id (cached: keys never change).
func (s *System) conversationKey(ctx context.Context, id int64) (persistence.ConversationKey, error) {
	if k, ok := s.convKeys.Load(id); ok {
		return k.(persistence.ConversationKey), nil
	}
	c, err := s.opts.Store.ConversationByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return persistence.ConversationKey{}, ErrNotFound
	}
	if err != nil {
		return persistence.ConversationKey{}, storeError(err)
	}
	s.convKeys.Store(id, c.Key)
	return c.Key, nil
}

// Send stores an RM's message (queued) and returns it once committed; the
// provider actor then sends it. The same ClientMsgID returns the same message.
func (s *System) Send(ctx context.Context, p Principal, conversationID int64, req SendRequest) (*persistence.Message, error) {
	m, _, err := s.send(ctx, p, conversationID, req)
	return m, err
}

func (s *System) send(ctx context.Context, p Principal, conversationID int64, req SendRequest) (*persistence.Message, *persistence.Conversation, error) {
	key, err := s.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, nil, err
	}
	return s.sendTo(ctx, key, &sendCmd{p: p, req: req})
}

func (s *System) sendTo(ctx context.Context, key persistence.ConversationKey, cmd *sendCmd) (*persistence.Message, *persistence.Conversation, error) {
	if s.stopping.Load() {
		return nil, nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	type reply struct {
		m    *persistence.Message
		conv *persistence.Conversation
		err  error
	}
	ch := make(chan reply, 1)
	cmd.done = func(m *persistence.Message, c *persistence.Conversation, err error) { ch <- reply{m, c, err} }
	s.router.TellConversation(key, cmd)
	select {
	case r := <-ch:
		return r.m, r.conv, r.err
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// StartConversation opens (or finds) the conversation with phone on channel
// and sends the first message.
func (s *System) StartConversation(ctx context.Context, p Principal, channel, phone, contactName string, req SendRequest) (*persistence.Conversation, *persistence.Message, error) {
	business, ok := s.opts.BusinessNumbers[channel]
	if !ok {
		return nil, nil, fmt.Errorf("%w: unknown channel %q", ErrBadRequest, channel)
	}
	norm, err := NormalizePhone(phone)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	key := persistence.ConversationKey{Channel: channel, BusinessNumber: business, ContactPhone: norm}
	m, conv, err := s.sendTo(ctx, key, &sendCmd{p: p, req: req, start: true, contactName: contactName})
	if err != nil {
		return nil, nil, err
	}
	return conv, m, nil
}

// Conversations lists what p may see.
func (s *System) Conversations(ctx context.Context, p Principal, limit int) ([]persistence.ConversationSummary, error) {
	rm := p.RMID
	if p.Supervisor() {
		rm = 0
	}
	list, err := s.opts.Store.ListConversations(ctx, rm, limit)
	if err != nil {
		return nil, storeError(err)
	}
	return list, nil
}

// Events returns socket frames of one conversation after afterSeq.
func (s *System) Events(ctx context.Context, p Principal, conversationID, afterSeq int64, limit int) ([][]byte, error) {
	return s.events(ctx, p, conversationID, func() ([]persistence.EventRecord, error) {
		return s.opts.Store.ConversationEvents(ctx, conversationID, afterSeq, limit)
	})
}

// EventsBefore returns the socket frames of the last limit events of one
// conversation before beforeSeq, in seq order (older history).
func (s *System) EventsBefore(ctx context.Context, p Principal, conversationID, beforeSeq int64, limit int) ([][]byte, error) {
	return s.events(ctx, p, conversationID, func() ([]persistence.EventRecord, error) {
		return s.opts.Store.ConversationEventsBefore(ctx, conversationID, beforeSeq, limit)
	})
}

func (s *System) events(ctx context.Context, p Principal, conversationID int64, read func() ([]persistence.EventRecord, error)) ([][]byte, error) {
	c, err := s.opts.Store.ConversationByID(ctx, conversationID)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, storeError(err)
	}
	if !p.Supervisor() && c.AssignedRMID != p.RMID {
		return nil, ErrForbidden
	}
	recs, err := read()
	if err != nil {
		return nil, storeError(err)
	}
	frames := make([][]byte, len(recs))
	for i := range recs {
		frames[i] = EncodeEvent(&recs[i])
	}
	return frames, nil
}

// Session is one RM socket's actor, as transport holds it.
type Session struct {
	sys *System
	pid *actor.PID
}

// Connect starts an RM session actor for a socket. The caller feeds frames
// read from the socket to Session.Receive and calls Session.Close when the
// socket ends. An RM coming online takes conversations waiting unassigned.
func (s *System) Connect(p Principal, conn Conn) *Session {
	log := logfields.With(s.opts.Log, logfields.Str("actor", "rm_session"), logfields.Int64("rm_id", p.RMID))
	pid := s.root.SpawnPrefix(s.instrumentedProps(kRMSession, &actorRec{}, func() actor.Actor {
		return &sessionActor{sys: s, p: p, conn: conn, log: log}
	}), fmt.Sprintf("rm_session/%d/", p.RMID))
	// Online from now on: events published meanwhile wait in the mailbox
	// behind Started.
	s.router.AddSession(p.RMID, p.Supervisor(), pid)
	if !p.Supervisor() {
		go s.assignWaiting(p.RMID)
	}
	return &Session{sys: s, pid: pid}
}

// assignWaiting gives conversations that waited for an RM to rmID.
func (s *System) assignWaiting(rmID int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	convs, err := s.opts.Store.UnassignedConversations(ctx, 1000)
	if err != nil {
		s.opts.Log.Warn().Err(err).Msg("list unassigned conversations")
		return
	}
	for _, c := range convs {
		s.convKeys.Store(c.ID, c.Key)
		s.router.TellConversation(c.Key, &msg.AssignIfUnassigned{ConversationId: c.ID, RmId: rmID})
	}
}

// Receive hands a frame read from the socket to the session actor.
func (s *Session) Receive(frame []byte) { s.sys.root.Send(s.pid, &clientFrame{data: frame}) }

// Close tells the session actor the socket is gone.
func (s *Session) Close() { s.sys.root.Send(s.pid, &socketClosed{}) }

// Ready reports whether the actor system runs and the database answers.
func (s *System) Ready(ctx context.Context) error {
	if s.stopping.Load() {
		return fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	if err := s.opts.Store.Ping(ctx); err != nil {
		return fmt.Errorf("%w: database: %v", ErrUnavailable, err)
	}
	return nil
}

// Shutdown stops accepting work and stops the provider actors (sends in
// backoff stay queued in the database and are re-driven at the next start).
// The caller closes the store afterwards, which commits in-flight batches.
func (s *System) Shutdown(ctx context.Context) error {
	s.stopping.Store(true)
	stop := s.providers
	for _, pid := range []*actor.PID{s.crm, s.dialler} {
		if pid != nil {
			stop = append(append([]*actor.PID{}, stop...), pid)
		}
	}
	for _, pid := range stop {
		if err := s.root.StopFuture(pid).Wait(); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// LiveConversations is how many conversation actors are active.
func (s *System) LiveConversations() int { return s.router.liveConversations() }
