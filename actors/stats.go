package actors

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"urva/persistence"
)

// Actor statistics for operators: per kind of actor, how many are live,
// spawned, stopped and restarted, how many messages they handled and how
// long each took; per live actor, its mailbox depth, messages and last
// activity; and a consistent snapshot of one actor's state, answered by the
// actor itself.
//
// How it is measured:
//
//   - Every actor is wrapped (instrumented) when its props are built: the
//     wrapper sees every message before the actor does. Lifecycle messages
//     (Started, Stopping, Stopped, Restarting) drive the live, spawned,
//     stopped and restarted counters; receive timeouts are neither counted
//     nor timed (they are the absence of messages). Every other message is
//     timed from the call of the actor's Receive to its return, and counted,
//     with atomic adds only: no lock and no allocation per message.
//   - Mailbox depth is the actor's own Proto.Actor mailbox counter of user
//     messages queued and not yet taken (the same counter Proto.Actor's
//     mailbox-length metric reads). The mailbox is captured when the actor
//     is spawned, so reading it costs nothing on the message path. For a
//     routed actor (conversation, call, video call) it covers the router's
//     lease.sent - lease.received (routed messages not yet taken) and the
//     messages the actor sends itself (the result of a write). For an RM
//     session the frames queued for the socket's writer are added:
//     everything on its way to the client.
//   - A routed actor is live while the router holds its lease: a passivating
//     actor leaves the live counts and lists when it releases the lease,
//     before it has finished stopping. Other actors are live from their
//     first Started to their Stopped.
//   - Per-actor counters belong to one activation: a conversation activated
//     again after passivation starts from zero. Per-kind counters are
//     cumulative since the system started.

// Actor kinds, as KindStats.Kind and ActorInfo.Kind name them.
const (
	KindConversation = "conversation" // one per active conversation; id: channel/business/contact
	KindRMSession    = "rm_session"   // one per RM socket; id: rm id / per-socket suffix
	KindCall         = "call"         // one per active click-to-call call; id: the call id
	KindVideoCall    = "video_call"   // one per active video call; id: the video call id
	KindProvider     = "provider"     // one per messaging channel; id: the channel
	KindDialler      = "dialler"      // the dialler's provider actor; id: dialler
	KindCRMSync      = "crm_sync"     // the CRM outbox drainer; id: crm_sync
)

type kindIndex int

const (
	kConversation kindIndex = iota
	kRMSession
	kCall
	kVideoCall
	kProvider
	kDialler
	kCRMSync
	kindCount
)

var kindNames = [kindCount]string{KindConversation, KindRMSession, KindCall, KindVideoCall, KindProvider, KindDialler, KindCRMSync}

// ActorKinds lists every kind of actor, in the order ActorStats reports them.
func ActorKinds() []string { return slices.Clone(kindNames[:]) }

func kindByName(name string) (kindIndex, bool) {
	for i, n := range kindNames {
		if n == name {
			return kindIndex(i), true
		}
	}
	return 0, false
}

// routed kinds are the ones the router activates by key; their live set is
// the router's.
func (k kindIndex) routed() bool { return k == kConversation || k == kCall || k == kVideoCall }

// KindStats are the statistics of one kind of actor. Counters only grow,
// except Live and the mailbox figures, which are current values. Fields
// are read one by one while actors run: they are each exact, but not
// necessarily from the same instant.
type KindStats struct {
	// Kind is one of the Kind* constants.
	Kind string
	// Live is how many actors of the kind run now (for routed kinds: hold a
	// router lease).
	Live int64
	// Spawned counts activations since the system started; Stopped counts
	// those that stopped (passivation included); Restarted counts restarts
	// by the supervisor after a failure (the actor stays live).
	Spawned, Stopped, Restarted int64
	// Received counts messages the actors handled (lifecycle messages and
	// receive timeouts excluded). It equals Latency.Count.
	Received int64
	// MailboxSum is the total mailbox depth of the live actors, MailboxMax
	// the deepest one (see the package notes on what depth means per kind).
	MailboxSum, MailboxMax int64
	// Latency is the time spent in Receive per handled message.
	Latency LatencyHistogram
}

// LatencyHistogram is a fixed-bucket histogram of durations, shaped like a
// Prometheus histogram: Counts[i] is the number of observations less than
// or equal to Bounds[i] (cumulative), Count the number of all observations
// (the +Inf bucket), Sum their total.
type LatencyHistogram struct {
	Bounds []time.Duration // upper bounds, ascending: 50µs .. 5s
	Counts []int64         // cumulative, len(Counts) == len(Bounds)
	Count  int64
	Sum    time.Duration
}

// Quantile estimates the q-quantile (0 <= q <= 1) by linear interpolation
// inside the bucket it falls in, as Prometheus's histogram_quantile does.
// It is 0 without observations and the last bound when the quantile lies
// beyond it.
func (h LatencyHistogram) Quantile(q float64) time.Duration {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := q * float64(h.Count)
	var prevBound time.Duration
	var prevCount int64
	for i, b := range h.Bounds {
		c := h.Counts[i]
		if float64(c) >= rank && c > prevCount {
			frac := (rank - float64(prevCount)) / float64(c-prevCount)
			return prevBound + time.Duration(frac*float64(b-prevBound))
		}
		prevBound, prevCount = b, c
	}
	return h.Bounds[len(h.Bounds)-1]
}

// ActorInfo is one live actor.
type ActorInfo struct {
	Kind string
	// ID names the actor within its kind: channel/business/contact for a
	// conversation, the numeric id for a call or a video call, rm id /
	// per-socket suffix for an RM session, the channel for a provider.
	ID string
	// Mailbox is the current mailbox depth, Received the messages handled
	// by this activation.
	Mailbox, Received int64
	// LastActivity is when the actor last began handling a message; zero
	// when it has handled none yet.
	LastActivity time.Time
}

// ActorCounters are the counters of one actor, as part of its snapshot.
type ActorCounters struct {
	Mailbox  int64 `json:"mailbox"`
	Received int64 `json:"received"`
	// LastActivity is nil until the actor handles its first message.
	LastActivity *time.Time `json:"last_activity"`
}

// ConversationSnapshot is a conversation actor's state.
type ConversationSnapshot struct {
	Key              string `json:"key"`             // channel/business/contact
	ConversationID   int64  `json:"conversation_id"` // 0 until the conversation exists
	AssignedRMID     int64  `json:"assigned_rm_id"`
	LastSeq          int64  `json:"last_seq"`
	PendingItems     int    `json:"pending_items"`     // waiting for the next write
	WriteInFlight    bool   `json:"write_in_flight"`   // a write is being committed
	AwaitingProvider int    `json:"awaiting_provider"` // sends handed to the provider, no answer yet
	ParkedStatuses   int    `json:"parked_statuses"`   // statuses that overtook the provider's answer
	ActorCounters
}

// RMSessionSnapshot is an RM socket's session actor's state.
type RMSessionSnapshot struct {
	RMID           int64 `json:"rm_id"`
	Supervisor     bool  `json:"supervisor"`
	AwaitingResume bool  `json:"awaiting_resume"` // no first frame from the client yet
	HeldEvents     int   `json:"held_events"`     // live events held back until the resume
	QueuedFrames   int   `json:"queued_frames"`   // frames waiting for the socket writer
	QueueCapacity  int   `json:"queue_capacity"`  // the socket is cut when the queue is full
	Closed         bool  `json:"closed"`
	ActorCounters
}

// CallSnapshot is a click-to-call call actor's state.
type CallSnapshot struct {
	ID                int64  `json:"id"`
	Loaded            bool   `json:"loaded"` // false until the call is read (after a restart or passivation)
	ConversationID    int64  `json:"conversation_id"`
	Status            string `json:"status"`
	ProviderCallSID   string `json:"provider_call_sid"`
	Busy              bool   `json:"busy"` // a dial or a reconciliation lookup is running
	FetchingRecording bool   `json:"fetching_recording"`
	ActorCounters
}

// VideoParticipant is one participant's socket in a video call.
type VideoParticipant struct {
	PeerID       string `json:"peer_id"`
	RMID         int64  `json:"rm_id"` // 0 for the contact
	QueuedFrames int    `json:"queued_frames"`
}

// VideoCallSnapshot is a video call actor's state.
type VideoCallSnapshot struct {
	ID             int64              `json:"id"`
	Loaded         bool               `json:"loaded"`
	Found          bool               `json:"found"`           // the call exists (once loaded)
	ConversationID int64              `json:"conversation_id"` // 0 between two RMs
	Status         string             `json:"status"`
	Ended          bool               `json:"ended"` // the end is committed
	Participants   []VideoParticipant `json:"participants"`
	WriteInFlight  bool               `json:"write_in_flight"`
	QueuedChanges  int                `json:"queued_changes"`
	ActorCounters
}

// ProviderSnapshot is a messaging provider actor's state.
type ProviderSnapshot struct {
	Channel  string `json:"channel"`
	Inflight int    `json:"inflight"` // sends running or waiting for a slot
	ActorCounters
}

// DiallerSnapshot is the dialler actor's state.
type DiallerSnapshot struct {
	Inflight int `json:"inflight"` // calls being placed
	ActorCounters
}

// CRMSyncSnapshot is the CRM sync actor's state.
type CRMSyncSnapshot struct {
	Inflight int `json:"inflight"` // conversations with a delivery running
	ActorCounters
}

// latencyBounds are the histogram's bucket upper bounds.
var latencyBounds = [...]time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

type latencyHist struct {
	counts [len(latencyBounds) + 1]atomic.Int64 // per bucket (not cumulative); the last is above every bound
	sum    atomic.Int64                         // nanoseconds
}

func (h *latencyHist) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *latencyHist) read() LatencyHistogram {
	out := LatencyHistogram{Bounds: slices.Clone(latencyBounds[:]), Counts: make([]int64, len(latencyBounds))}
	var n int64
	for i := range h.counts {
		n += h.counts[i].Load()
		if i < len(out.Counts) {
			out.Counts[i] = n
		}
	}
	out.Count = n
	out.Sum = time.Duration(h.sum.Load())
	return out
}

// kindStats are the counters of one kind.
type kindStats struct {
	spawned, stopped, restarted atomic.Int64
	latency                     latencyHist

	mu   sync.Mutex
	live map[*actorRec]struct{} // non-routed kinds: started, not stopped
}

// actorStats are the statistics of a System.
type actorStats struct {
	kinds     [kindCount]kindStats
	onStopped func(kind string) // tests: called after an actor's Stopped is counted
}

func (st *actorStats) init() {
	for i := range st.kinds {
		st.kinds[i].live = map[*actorRec]struct{}{}
	}
}

// mailboxRef holds a captured mailbox (atomic.Pointer needs a concrete type).
type mailboxRef struct{ mb actor.Mailbox }

// actorRec is one actor's counters. A routed actor's lives in its lease;
// the others' are allocated when their props are built. It outlives
// restarts (the same process, a new actor instance).
type actorRec struct {
	kind    kindIndex
	stats   *kindStats
	started bool // actor goroutine only

	id  string     // non-routed kinds: set at the first Started
	pid *actor.PID // non-routed kinds: set at the first Started

	received atomic.Int64
	last     atomic.Int64 // unix nanoseconds when the last handled message began; 0: none
	mailbox  atomic.Pointer[mailboxRef]
	frames   atomic.Pointer[frameWriter] // RM sessions: the socket's writer queue
}

// depth is the actor's mailbox depth (plus, for an RM session, its socket's queue).
func (r *actorRec) depth() int64 {
	var n int64
	if m := r.mailbox.Load(); m != nil {
		n = int64(m.mb.UserMessageCount())
	}
	if w := r.frames.Load(); w != nil {
		n += int64(w.queued())
	}
	return n
}

func (r *actorRec) counters() ActorCounters {
	c := ActorCounters{Mailbox: r.depth(), Received: r.received.Load()}
	if ns := r.last.Load(); ns != 0 {
		t := time.Unix(0, ns).UTC()
		c.LastActivity = &t
	}
	return c
}

func (r *actorRec) lastActivity() time.Time {
	if ns := r.last.Load(); ns != 0 {
		return time.Unix(0, ns).UTC()
	}
	return time.Time{}
}

var unboundedMailbox = actor.Unbounded()

// instrumentedProps builds the props of an actor of kind k: produce is
// wrapped so that rec counts what the actor does, and the mailbox is
// captured for its depth.
func (s *System) instrumentedProps(k kindIndex, rec *actorRec, produce func() actor.Actor, opts ...actor.PropsOption) *actor.Props {
	rec.kind, rec.stats = k, &s.stats.kinds[k]
	opts = append(opts, actor.WithDispatcher(s.dispatch), actor.WithMailbox(func() actor.Mailbox {
		mb := unboundedMailbox()
		rec.mailbox.Store(&mailboxRef{mb: mb})
		return mb
	}))
	return actor.PropsFromProducer(func() actor.Actor {
		return &instrumented{Actor: produce(), rec: rec, st: &s.stats}
	}, opts...)
}

// instrumented wraps an actor's Receive with the statistics.
type instrumented struct {
	actor.Actor
	rec *actorRec
	st  *actorStats
}

func (w *instrumented) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		w.started(ctx.Self())
		w.Actor.Receive(ctx)
		if q, ok := w.Actor.(socketQueued); ok {
			w.rec.frames.Store(q.socketQueue())
		}
		return
	case *actor.Restarting:
		w.rec.stats.restarted.Add(1)
		w.Actor.Receive(ctx)
		return
	case *actor.Stopped:
		w.Actor.Receive(ctx)
		w.stopped()
		return
	case *actor.Stopping, *actor.ReceiveTimeout:
		w.Actor.Receive(ctx)
		return
	case *snapshotRequest:
		m.reply <- w.snapshot()
		return
	}
	start := time.Now()
	w.Actor.Receive(ctx)
	d := time.Since(start)
	w.rec.received.Add(1)
	w.rec.last.Store(start.UnixNano())
	w.rec.stats.latency.observe(d)
}

// started counts the first Started of an activation (a restart's Started
// is not a spawn).
func (w *instrumented) started(self *actor.PID) {
	r := w.rec
	if r.started {
		return
	}
	r.started = true
	r.stats.spawned.Add(1)
	if !r.kind.routed() {
		id := self.Id
		if i := strings.IndexByte(id, '/'); i >= 0 {
			id = id[i+1:]
		}
		ks := r.stats
		ks.mu.Lock()
		r.id, r.pid = id, self
		ks.live[r] = struct{}{}
		ks.mu.Unlock()
	}
}

func (w *instrumented) stopped() {
	r := w.rec
	r.stats.stopped.Add(1)
	if !r.kind.routed() {
		r.stats.mu.Lock()
		delete(r.stats.live, r)
		r.stats.mu.Unlock()
	}
	if f := w.st.onStopped; f != nil {
		f(kindNames[r.kind])
	}
}

// snapshotRequest asks an actor for its state; the wrapper answers it from
// the actor's goroutine, between two messages, so the state is consistent.
// Like any message it restarts the actor's idle timer. (Proto.Actor's
// NotInfluenceReceiveTimeout would avoid that, but its timer then fires
// while the message is handled, and the library's timeout field is not
// safe for that.)
type snapshotRequest struct{ reply chan any }

// snapshotter is an actor that can describe its state.
type snapshotter interface {
	snapshot(c ActorCounters) any
}

// socketQueued is an actor that writes to a socket through a frameWriter.
type socketQueued interface {
	socketQueue() *frameWriter
}

func (w *instrumented) snapshot() any {
	c := w.rec.counters()
	if s, ok := w.Actor.(snapshotter); ok {
		return s.snapshot(c)
	}
	return c
}

func (a *conversationActor) snapshot(c ActorCounters) any {
	inflight, conv := a.writing(), a.conv
	if a.writeState.Load() == writeLanded {
		// Committed: the actor applies it before its next message.
		inflight, conv = false, &a.landed.Load().res.Conversation
	}
	s := ConversationSnapshot{Key: a.key.String(), PendingItems: len(a.pending), WriteInFlight: inflight,
		AwaitingProvider: a.awaitingProvider, ParkedStatuses: len(a.parked), ActorCounters: c}
	if conv != nil {
		s.ConversationID, s.AssignedRMID, s.LastSeq = conv.ID, conv.AssignedRMID, conv.LastSeq
	}
	return s
}

func (s *sessionActor) socketQueue() *frameWriter { return s.out }

func (s *sessionActor) snapshot(c ActorCounters) any {
	out := RMSessionSnapshot{RMID: s.p.RMID, Supervisor: s.p.Supervisor(), AwaitingResume: s.awaiting,
		HeldEvents: len(s.held), Closed: s.closed, ActorCounters: c}
	if s.out != nil {
		out.QueuedFrames, out.QueueCapacity = s.out.queued(), s.out.capacity()
	}
	return out
}

func (a *callActor) snapshot(c ActorCounters) any {
	s := CallSnapshot{ID: a.id, Loaded: a.call != nil, Busy: a.busy, FetchingRecording: a.fetching, ActorCounters: c}
	if a.call != nil {
		s.ConversationID, s.Status, s.ProviderCallSID = a.call.ConversationID, a.call.Status, a.call.ProviderCallSID
	}
	return s
}

func (a *videoActor) snapshot(c ActorCounters) any {
	s := VideoCallSnapshot{ID: a.id, Loaded: a.loaded, Found: a.call != nil, Status: a.status, Ended: a.ended,
		Participants: []VideoParticipant{}, WriteInFlight: a.writing, QueuedChanges: len(a.queue), ActorCounters: c}
	if a.call != nil {
		s.ConversationID = a.call.ConversationID
	}
	for _, p := range a.peers {
		s.Participants = append(s.Participants, VideoParticipant{PeerID: p.id, RMID: p.rmID, QueuedFrames: p.w.queued()})
	}
	slices.SortFunc(s.Participants, func(x, y VideoParticipant) int { return cmp.Compare(x.PeerID, y.PeerID) })
	return s
}

func (a *providerActor) snapshot(c ActorCounters) any {
	return ProviderSnapshot{Channel: a.channel, Inflight: len(a.inflight), ActorCounters: c}
}

func (a *diallerActor) snapshot(c ActorCounters) any {
	return DiallerSnapshot{Inflight: len(a.inflight), ActorCounters: c}
}

func (a *crmSyncActor) snapshot(c ActorCounters) any {
	return CRMSyncSnapshot{Inflight: len(a.inflight), ActorCounters: c}
}

// liveActor is one live actor as eachLive finds it; its id is made only
// when needed (key for conversations, num for calls and video calls, rec.id
// for the others).
type liveActor struct {
	kind kindIndex
	key  persistence.ConversationKey
	num  int64
	rec  *actorRec
	pid  *actor.PID
}

func (l *liveActor) id() string {
	switch l.kind {
	case kConversation:
		return l.key.String()
	case kCall, kVideoCall:
		return strconv.FormatInt(l.num, 10)
	}
	return l.rec.id
}

// eachLive calls fn with every live actor of kind k, under the lock that
// guards the actor's registration: fn must be quick and must not call
// into the router.
func (s *System) eachLive(k kindIndex, fn func(l *liveActor)) {
	l := liveActor{kind: k}
	switch k {
	case kConversation:
		for i := range s.router.shards {
			sh := &s.router.shards[i]
			sh.mu.Lock()
			for key, lease := range sh.actors {
				l.key, l.rec, l.pid = key, &lease.act, lease.pid
				fn(&l)
			}
			sh.mu.Unlock()
		}
	case kCall, kVideoCall:
		r := s.router.calls
		if k == kVideoCall {
			r = s.router.videos
		}
		r.mu.Lock()
		for id, lease := range r.live {
			l.num, l.rec, l.pid = id, &lease.act, lease.pid
			fn(&l)
		}
		r.mu.Unlock()
	default:
		ks := &s.stats.kinds[k]
		ks.mu.Lock()
		for rec := range ks.live {
			l.rec, l.pid = rec, rec.pid
			fn(&l)
		}
		ks.mu.Unlock()
	}
}

// ActorStats returns the statistics of every kind of actor, in the order
// of ActorKinds. It walks the live actors for the mailbox figures: cheap
// enough for a scrape or a poll every second, not for a hot path.
func (s *System) ActorStats() []KindStats {
	out := make([]KindStats, kindCount)
	for k := range kindCount {
		ks := &s.stats.kinds[k]
		st := KindStats{
			Kind:      kindNames[k],
			Spawned:   ks.spawned.Load(),
			Stopped:   ks.stopped.Load(),
			Restarted: ks.restarted.Load(),
			Latency:   ks.latency.read(),
		}
		st.Received = st.Latency.Count
		s.eachLive(k, func(l *liveActor) {
			d := l.rec.depth()
			st.Live++
			st.MailboxSum += d
			st.MailboxMax = max(st.MailboxMax, d)
		})
		out[k] = st
	}
	return out
}

// TopActors returns up to n live actors of kind (every kind when kind is
// ""; every actor when n <= 0), deepest mailbox first, then most messages
// received. An unknown kind gives none.
func (s *System) TopActors(kind string, n int) []ActorInfo {
	kinds := make([]kindIndex, 0, kindCount)
	if kind == "" {
		for k := range kindCount {
			kinds = append(kinds, k)
		}
	} else if k, ok := kindByName(kind); ok {
		kinds = append(kinds, k)
	}
	type entry struct {
		l                 liveActor
		mailbox, received int64
		last              time.Time
	}
	var all []entry
	for _, k := range kinds {
		s.eachLive(k, func(l *liveActor) {
			all = append(all, entry{l: *l, mailbox: l.rec.depth(), received: l.rec.received.Load(), last: l.rec.lastActivity()})
		})
	}
	slices.SortFunc(all, func(a, b entry) int {
		if c := cmp.Compare(b.mailbox, a.mailbox); c != 0 {
			return c
		}
		if c := cmp.Compare(b.received, a.received); c != 0 {
			return c
		}
		if c := cmp.Compare(a.l.kind, b.l.kind); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(a.l.key.Channel, b.l.key.Channel), cmp.Compare(a.l.key.BusinessNumber, b.l.key.BusinessNumber),
			cmp.Compare(a.l.key.ContactPhone, b.l.key.ContactPhone), cmp.Compare(a.l.num, b.l.num), cmp.Compare(a.l.rec.id, b.l.rec.id))
	})
	if n > 0 && len(all) > n {
		all = all[:n]
	}
	out := make([]ActorInfo, len(all))
	for i := range all {
		e := &all[i]
		out[i] = ActorInfo{Kind: kindNames[e.l.kind], ID: e.l.id(), Mailbox: e.mailbox, Received: e.received, LastActivity: e.last}
	}
	return out
}

// snapshotTimeout bounds the wait for an actor's answer when ctx has no
// earlier deadline.
const snapshotTimeout = 5 * time.Second

// ActorSnapshot asks one live actor for its state: a ConversationSnapshot,
// RMSessionSnapshot, CallSnapshot, VideoCallSnapshot, ProviderSnapshot,
// DiallerSnapshot or CRMSyncSnapshot by kind. The actor answers between two
// of its messages, so the state is consistent. Asking never activates a
// passivated actor; it restarts a live one's idle timer, as any message
// does. ErrNotFound when no actor of that kind and id is live (or the kind
// is unknown); ErrUnavailable when it does not answer in time.
func (s *System) ActorSnapshot(ctx context.Context, kind, id string) (any, error) {
	k, ok := kindByName(kind)
	if !ok {
		return nil, fmt.Errorf("%w: no actor kind %q", ErrNotFound, kind)
	}
	pid := s.livePID(k, id)
	if pid == nil {
		return nil, ErrNotFound
	}
	req := &snapshotRequest{reply: make(chan any, 1)}
	s.root.Send(pid, req)
	timer := time.NewTimer(snapshotTimeout)
	defer timer.Stop()
	select {
	case st := <-req.reply:
		return st, nil
	case <-ctx.Done():
	case <-timer.C:
	}
	if s.livePID(k, id) != pid {
		return nil, ErrNotFound // it stopped meanwhile
	}
	return nil, fmt.Errorf("%w: the %s actor %s did not answer", ErrUnavailable, kind, id)
}

// livePID finds the live actor of kind k named id, or nil.
func (s *System) livePID(k kindIndex, id string) *actor.PID {
	switch k {
	case kConversation:
		parts := strings.SplitN(id, "/", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return nil
		}
		key := persistence.ConversationKey{Channel: parts[0], BusinessNumber: parts[1], ContactPhone: parts[2]}
		sh := s.router.shard(key)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if lease, ok := sh.actors[key]; ok {
			return lease.pid
		}
		return nil
	case kCall, kVideoCall:
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return nil
		}
		r := s.router.calls
		if k == kVideoCall {
			r = s.router.videos
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if lease, ok := r.live[n]; ok {
			return lease.pid
		}
		return nil
	}
	var pid *actor.PID
	s.eachLive(k, func(l *liveActor) {
		if l.rec.id == id {
			pid = l.pid
		}
	})
	return pid
}
