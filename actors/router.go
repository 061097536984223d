package actors

import (
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"urva/actors/msg"
	"urva/persistence"
)

// Router is the one seam between "where does this actor live" and the code
// that talks to actors. The local implementation keeps a registry in this
// process; a cluster implementation would resolve the same calls to
// Proto.Actor cluster grains. Handlers and actors never know which one runs.
type Router interface {
	// TellConversation delivers m to the conversation actor for key,
	// activating it when it is not running.
	TellConversation(key persistence.ConversationKey, m any)
	// Publish delivers a committed conversation event to the sessions of the
	// RM it is assigned to and to every supervisor session.
	Publish(ev *msg.FeedEvent)
	// NotifyRM delivers a frame to every session of one RM.
	NotifyRM(f *msg.Frame)
	// TellProvider delivers m to the provider actor of a channel.
	TellProvider(channel string, m any) bool
	// AddSession and RemoveSession track live RM sockets.
	AddSession(rmID int64, supervisor bool, pid *actor.PID)
	RemoveSession(rmID int64, pid *actor.PID)
	// OnlineRMs lists RMs (not supervisors) with at least one live socket.
	OnlineRMs() []int64
}

// localRouter is the single-node Router.
type localRouter struct {
	root      *actor.RootContext
	spawnConv func(key persistence.ConversationKey, lease *convLease) *actor.Props
	seed      maphash.Seed
	shards    [64]convShard
	gen       atomic.Uint64

	providers map[string]*actor.PID // fixed after start

	calls  *registry // live call actors
	videos *registry // live video call actors

	mu          sync.RWMutex
	sessions    map[int64]map[*actor.PID]struct{} // rm id -> sessions
	supervisors map[*actor.PID]struct{}
	rmOnly      map[int64]bool // rm id -> true when the sessions are an RM's (not a supervisor's)
}

type convShard struct {
	mu     sync.Mutex
	actors map[persistence.ConversationKey]*convLease
}

// convLease is the router's record of one activation. sent counts messages
// the router delivered; received counts those the actor took out of its
// mailbox. An idle actor may stop only when both are equal, so no message
// is ever left in the mailbox of a stopping actor.
type convLease struct {
	pid      *actor.PID
	sent     uint64 // guarded by the shard lock
	received atomic.Uint64
	act      actorRec // the activation's statistics (stats.go)
}

func newLocalRouter(root *actor.RootContext, spawnConv func(persistence.ConversationKey, *convLease) *actor.Props) *localRouter {
	r := &localRouter{
		root:        root,
		spawnConv:   spawnConv,
		seed:        maphash.MakeSeed(),
		providers:   map[string]*actor.PID{},
		sessions:    map[int64]map[*actor.PID]struct{}{},
		supervisors: map[*actor.PID]struct{}{},
		rmOnly:      map[int64]bool{},
	}
	r.calls = newRegistry(root, "call", &r.gen)
	r.videos = newRegistry(root, "video_call", &r.gen)
	for i := range r.shards {
		r.shards[i].actors = map[persistence.ConversationKey]*convLease{}
	}
	return r
}

func (r *localRouter) shard(key persistence.ConversationKey) *convShard {
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(key.Channel)
	h.WriteString(key.BusinessNumber)
	h.WriteString(key.ContactPhone)
	return &r.shards[h.Sum64()%uint64(len(r.shards))]
}

func (r *localRouter) TellConversation(key persistence.ConversationKey, m any) {
	sh := r.shard(key)
	sh.mu.Lock()
	lease, ok := sh.actors[key]
	if !ok {
		lease = &convLease{}
		name := fmt.Sprintf("conversation/%s#%d", key, r.gen.Add(1))
		pid, err := r.root.SpawnNamed(r.spawnConv(key, lease), name)
		if err != nil {
			sh.mu.Unlock()
			failCommand(m, fmt.Errorf("%w: spawn conversation actor: %v", ErrUnavailable, err))
			return
		}
		lease.pid = pid
		sh.actors[key] = lease
	}
	lease.sent++
	r.root.Send(lease.pid, m)
	sh.mu.Unlock()
}

// release removes an idle activation when every message sent to it has been
// received. It returns false when messages are still on their way, in which
// case the actor stays up and handles them.
func (r *localRouter) release(key persistence.ConversationKey, lease *convLease) bool {
	sh := r.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.actors[key]
	if !ok || cur != lease {
		return true // already replaced; nothing routes here any more
	}
	if lease.sent != lease.received.Load() {
		return false
	}
	delete(sh.actors, key)
	return true
}

// registry tracks the live actors of one kind keyed by id (calls, video
// calls), with the same sent/received lease as conversations: an actor
// stops only when every message routed to it was received.
type registry struct {
	root  *actor.RootContext
	kind  string
	gen   *atomic.Uint64
	spawn func(id int64, lease *convLease) *actor.Props

	mu   sync.Mutex
	live map[int64]*convLease
}

func newRegistry(root *actor.RootContext, kind string, gen *atomic.Uint64) *registry {
	return &registry{root: root, kind: kind, gen: gen, live: map[int64]*convLease{}}
}

// tell delivers m to the actor for id, activating it when needed. It
// reports false when the actor could not be spawned.
func (r *registry) tell(id int64, m any) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	lease, ok := r.live[id]
	if !ok {
		lease = &convLease{}
		pid, err := r.root.SpawnNamed(r.spawn(id, lease), fmt.Sprintf("%s/%d#%d", r.kind, id, r.gen.Add(1)))
		if err != nil {
			return false
		}
		lease.pid = pid
		r.live[id] = lease
	}
	lease.sent++
	r.root.Send(lease.pid, m)
	return true
}

// release is localRouter.release for actors of this registry.
func (r *registry) release(id int64, lease *convLease) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.live[id]; !ok || cur != lease {
		return true
	}
	if lease.sent != lease.received.Load() {
		return false
	}
	delete(r.live, id)
	return true
}

// count is the number of live actors.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// liveConversations counts activations (for tests and operators).
func (r *localRouter) liveConversations() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.actors)
		sh.mu.Unlock()
	}
	return n
}

func (r *localRouter) Publish(ev *msg.FeedEvent) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if ev.AssignedRmId != 0 {
		for pid := range r.sessions[ev.AssignedRmId] {
			if _, sup := r.supervisors[pid]; !sup {
				r.root.Send(pid, ev)
			}
		}
	}
	for pid := range r.supervisors {
		r.root.Send(pid, ev)
	}
}

func (r *localRouter) NotifyRM(f *msg.Frame) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for pid := range r.sessions[f.RmId] {
		r.root.Send(pid, f)
	}
}

func (r *localRouter) TellProvider(channel string, m any) bool {
	pid, ok := r.providers[channel]
	if !ok {
		return false
	}
	r.root.Send(pid, m)
	return true
}

func (r *localRouter) AddSession(rmID int64, supervisor bool, pid *actor.PID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.sessions[rmID]
	if set == nil {
		set = map[*actor.PID]struct{}{}
		r.sessions[rmID] = set
	}
	set[pid] = struct{}{}
	if supervisor {
		r.supervisors[pid] = struct{}{}
	} else {
		r.rmOnly[rmID] = true
	}
}

func (r *localRouter) RemoveSession(rmID int64, pid *actor.PID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.supervisors, pid)
	if set := r.sessions[rmID]; set != nil {
		delete(set, pid)
		if len(set) == 0 {
			delete(r.sessions, rmID)
			delete(r.rmOnly, rmID)
		}
	}
}

func (r *localRouter) OnlineRMs() []int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]int64, 0, len(r.rmOnly))
	for id := range r.rmOnly {
		out = append(out, id)
	}
	return out
}

// OnlineSessions reports, per RM or supervisor id, whether it has a live socket.
func (r *localRouter) OnlineSessions() map[int64]bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[int64]bool, len(r.sessions))
	for id := range r.sessions {
		out[id] = true
	}
	return out
}

// tellSessions sends m to every session of one RM and returns how many.
func (r *localRouter) tellSessions(rmID int64, m any) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	for pid := range r.sessions[rmID] {
		r.root.Send(pid, m)
	}
	return len(r.sessions[rmID])
}
