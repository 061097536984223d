package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/actors/msg"
	"urva/persistence"
)

// VideoOptions turns on video calls.
type VideoOptions struct {
	// LinkTTL is how long a call's link can be used to join.
	LinkTTL time.Duration
	// MaxDuration ends a call this long after it started.
	MaxDuration time.Duration
	// RejoinGrace: when everyone has left a started call, it ends after
	// this unless a participant comes back (a reload, a network change).
	RejoinGrace time.Duration
	// PeerQueue is how many signalling frames wait for one participant's
	// socket before it is cut as too slow.
	PeerQueue int
	// Link returns the signed link to call id, valid until expires.
	Link func(id int64, expires time.Time) string
	// InviteText is the message that carries the link to a contact.
	InviteText func(link string) string
}

func (o *VideoOptions) defaults() {
	if o.LinkTTL <= 0 {
		o.LinkTTL = time.Hour
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 2 * time.Hour
	}
	if o.RejoinGrace <= 0 {
		o.RejoinGrace = 30 * time.Second
	}
	if o.PeerQueue <= 0 {
		o.PeerQueue = 256
	}
	if o.InviteText == nil {
		o.InviteText = func(link string) string {
			return "Your relationship manager invites you to a video call. Open this link to join: " + link
		}
	}
}

// VideoInvite is a video call just made.
type VideoInvite struct {
	Call *persistence.VideoCall
	Link string
	// Message is the outbound message carrying the link, for a call with the
	// contact of a conversation; nil for a call between two RMs.
	Message *persistence.Message
}

// Why a participant is refused, as the code of the signalling error frame.
const (
	VideoRefusedNotFound    = "not_found"
	VideoRefusedEnded       = "ended"
	VideoRefusedExpired     = "expired"
	VideoRefusedFull        = "full"
	VideoRefusedUnavailable = "unavailable"
)

// videoRefusals are the messages the call page shows.
var videoRefusals = map[string]string{
	VideoRefusedNotFound:    "There is no such video call.",
	VideoRefusedEnded:       "This call has ended; its link can no longer be used.",
	VideoRefusedExpired:     "This call link has expired. Ask for a new one.",
	VideoRefusedFull:        "This call already has two participants.",
	VideoRefusedUnavailable: "The call service is temporarily unavailable. Try again in a moment.",
}

// VideoRefusalMessage is what a participant refused with code is told.
func VideoRefusalMessage(code string) string { return videoRefusals[code] }

// relayedSignals are the frame types relayed to the other participant.
var relayedSignals = map[string]bool{"offer": true, "answer": true, "candidate": true}

// videoCallCmd asks a conversation actor to write video call changes of
// one of its calls (a new call: with the conversation's checks for sending
// the link). done gets the call after the last change.
type videoCallCmd struct {
	p       Principal
	create  bool
	changes []*persistence.VideoCallChange
	done    func(*persistence.VideoCall, error)
}

// Messages of the video call actor. Those that come through the router
// count towards its lease.
type (
	videoCreated struct {
		call *persistence.VideoCall
		key  persistence.ConversationKey
	}
	videoJoin struct {
		peerID string
		rmID   int64
		connID uint64
		conn   Conn
	}
	videoFrame struct {
		connID uint64
		data   []byte
	}
	videoLeave struct{ connID uint64 }
	videoAbort struct{}
	videoWake  struct{}
	videoTimer struct {
		kind int
		gen  uint64
	}
	videoWritten struct { // not routed: the actor's own write finished
		call    *persistence.VideoCall
		failed  []*persistence.VideoCallChange // changes to write again
		err     error
		hasEnd  bool
		written int
	}
)

// Timers of a video call actor.
const (
	timerExpiry = iota // the link expired before the call started
	timerLimit         // the call reached its maximum duration
	timerGrace         // everyone left and nobody came back
	timerRetry         // write again after a failed write
	timerCount
)

// videoPeer is one participant's socket.
type videoPeer struct {
	id     string
	rmID   int64
	connID uint64
	w      *frameWriter
}

func (p *videoPeer) close(reason string) { p.w.stopAndClose(reason) }

// videoActor owns one video call: it admits at most two participants,
// relays their offers, answers and candidates, records joins, the start
// (both present) and the end, and ends the call when a participant hangs
// up, when everyone has left for RejoinGrace, at MaxDuration, or when the
// link expires before the call started. A call of a conversation is written
// through that conversation's actor (the timeline gets its seq); a call
// between RMs is written directly.
type videoActor struct {
	sys   *System
	opts  *VideoOptions
	id    int64
	lease *convLease
	log   zerolog.Logger
	self  *actor.PID

	loaded bool
	call   *persistence.VideoCall // nil: no such call
	key    persistence.ConversationKey
	status string // the status as decided here (writes may still be on their way)
	peers  map[string]*videoPeer
	seen   map[string]bool // peers that joined before: their next join is a rejoin

	queue    []*persistence.VideoCallChange
	writing  bool
	failures int
	ended    bool // the end is committed

	timers [timerCount]*time.Timer
	gens   [timerCount]uint64
}

func (a *videoActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.self = ctx.Self()
		a.peers, a.seen = map[string]*videoPeer{}, map[string]bool{}
		ctx.SetReceiveTimeout(a.sys.opts.Tuning.PassivateAfter)
	case *actor.Stopping:
		for i := range a.timers {
			a.stopTimer(i)
		}
		for _, p := range a.peers {
			p.close("server stopping")
		}
	case *actor.ReceiveTimeout:
		if len(a.peers) == 0 && !a.writing && len(a.queue) == 0 && (a.call == nil || a.ended) &&
			a.sys.router.videos.release(a.id, a.lease) {
			ctx.Stop(ctx.Self())
		} else {
			rearmIdleTimer(ctx, a.sys.opts.Tuning.PassivateAfter)
		}
	case *videoCreated:
		a.lease.received.Add(1)
		if !a.loaded {
			a.call, a.key, a.status, a.loaded = m.call, m.key, m.call.Status, true
			a.armTimers()
		}
	case *videoWake:
		a.lease.received.Add(1)
		a.load()
	case *videoJoin:
		a.lease.received.Add(1)
		a.join(m)
	case *videoFrame:
		a.lease.received.Add(1)
		a.frame(m)
	case *videoLeave:
		a.lease.received.Add(1)
		a.leave(m.connID, "")
	case *videoAbort:
		a.lease.received.Add(1)
		if a.load() && a.call != nil {
			a.end(persistence.VideoEndAborted)
		}
	case *videoTimer:
		a.lease.received.Add(1)
		a.timer(m)
	case *videoWritten:
		a.written(m)
	}
}

func (a *videoActor) load() bool {
	if a.loaded {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call, err := a.sys.opts.Store.VideoCallByID(ctx, a.id)
	if errors.Is(err, persistence.ErrNotFound) {
		a.loaded = true
		return true
	}
	if err != nil {
		a.log.Warn().Err(err).Msg("load video call")
		return false
	}
	joins, err := a.sys.opts.Store.VideoCallJoins(ctx, a.id)
	if err != nil {
		a.log.Warn().Err(err).Msg("load video call joins")
		return false
	}
	if call.ConversationID != 0 {
		if a.key, err = a.sys.conversationKey(ctx, call.ConversationID); err != nil {
			a.log.Warn().Err(err).Msg("load video call conversation")
			return false
		}
	}
	for _, j := range joins {
		a.seen[j.PeerID] = true
	}
	a.call, a.status, a.ended, a.loaded = call, call.Status, call.Status == persistence.VideoCallEnded, true
	a.armTimers()
	return true
}

// armTimers sets the timers a (re)loaded call needs.
func (a *videoActor) armTimers() {
	now := a.sys.now()
	switch a.status {
	case persistence.VideoCallCreated:
		a.startTimer(timerExpiry, a.call.ExpiresAt.Sub(now))
	case persistence.VideoCallActive:
		a.startTimer(timerLimit, a.call.StartedAt.Add(a.opts.MaxDuration).Sub(now))
		if len(a.peers) == 0 {
			a.startTimer(timerGrace, a.opts.RejoinGrace)
		}
	}
}

func (a *videoActor) startTimer(kind int, d time.Duration) {
	a.stopTimer(kind)
	gen := a.gens[kind]
	id, videos := a.id, a.sys.router.videos
	a.timers[kind] = time.AfterFunc(max(d, 0), func() { videos.tell(id, &videoTimer{kind: kind, gen: gen}) })
}

func (a *videoActor) stopTimer(kind int) {
	a.gens[kind]++
	if t := a.timers[kind]; t != nil {
		t.Stop()
		a.timers[kind] = nil
	}
}

func (a *videoActor) timer(m *videoTimer) {
	if m.gen != a.gens[m.kind] {
		return // stopped or re-armed since
	}
	a.timers[m.kind] = nil
	switch m.kind {
	case timerExpiry:
		if a.status == persistence.VideoCallCreated {
			a.end(persistence.VideoEndExpired)
		}
	case timerLimit:
		if a.status == persistence.VideoCallActive {
			a.end(persistence.VideoEndLimit)
		}
	case timerGrace:
		if a.status == persistence.VideoCallActive && len(a.peers) == 0 {
			a.end(persistence.VideoEndLeft)
		}
	case timerRetry:
		a.flush()
	}
}

// refuse tells a would-be participant why it cannot join and closes its socket.
func refuseVideo(conn Conn, code string) {
	b, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", code, videoRefusals[code]})
	go func() { // the socket's own writer is not started: write from here
		_ = conn.WriteFrames([][]byte{b})
		conn.Close(videoRefusals[code])
	}()
}

func (a *videoActor) join(m *videoJoin) {
	if !a.load() {
		refuseVideo(m.conn, VideoRefusedUnavailable)
		return
	}
	switch {
	case a.call == nil:
		refuseVideo(m.conn, VideoRefusedNotFound)
		return
	case a.status == persistence.VideoCallEnded:
		refuseVideo(m.conn, VideoRefusedEnded)
		return
	case a.status == persistence.VideoCallCreated && !a.sys.now().Before(a.call.ExpiresAt):
		a.end(persistence.VideoEndExpired)
		refuseVideo(m.conn, VideoRefusedExpired)
		return
	}
	old := a.peers[m.peerID]
	if old == nil && len(a.peers) >= 2 {
		refuseVideo(m.conn, VideoRefusedFull)
		return
	}
	if old != nil {
		old.close("the same participant joined again from another connection")
	}
	p := &videoPeer{id: m.peerID, rmID: m.rmID, connID: m.connID, w: newFrameWriter(m.conn, a.opts.PeerQueue, a.sys.dispatch.Schedule)}
	a.peers[m.peerID] = p
	now := a.sys.now()
	rejoin := a.seen[m.peerID]
	a.seen[m.peerID] = true
	a.change(&persistence.VideoCallChange{CallID: a.id, At: now,
		Join: &persistence.VideoJoin{PeerID: m.peerID, RMID: m.rmID, Rejoin: rejoin}})
	a.stopTimer(timerGrace)
	other := a.other(m.peerID)
	others := 0
	if other != nil {
		others = 1
	}
	a.send(p, videoFrameJSON("joined", map[string]any{"peer_id": m.peerID, "others": others}))
	a.log.Info().Str("peer", m.peerID).Bool("rejoin", rejoin).Int("others", others).Msg("video participant joined")
	if other == nil {
		return
	}
	a.send(other, videoFrameJSON("peer_joined", nil))
	if a.status == persistence.VideoCallCreated {
		a.status = persistence.VideoCallActive
		a.stopTimer(timerExpiry)
		a.startTimer(timerLimit, a.opts.MaxDuration)
		a.change(&persistence.VideoCallChange{CallID: a.id, Status: persistence.VideoCallActive, At: now})
	}
}

func (a *videoActor) other(peerID string) *videoPeer {
	for id, p := range a.peers {
		if id != peerID {
			return p
		}
	}
	return nil
}

func (a *videoActor) peerByConn(connID uint64) *videoPeer {
	for _, p := range a.peers {
		if p.connID == connID {
			return p
		}
	}
	return nil
}

// send queues a frame for a participant; one who cannot keep up is cut
// (their page reconnects and rejoins).
func (a *videoActor) send(p *videoPeer, frame []byte) {
	if !p.w.enqueue(frame) {
		a.sys.observeSlowClient(SocketVideo)
		a.leave(p.connID, "too slow: too many signalling frames waiting; reconnect")
	}
}

func (a *videoActor) frame(m *videoFrame) {
	p := a.peerByConn(m.connID)
	if p == nil {
		return // a replaced or closed connection
	}
	var f struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(m.data, &f); err != nil {
		a.send(p, videoFrameJSON("error", map[string]any{"code": "bad_frame", "message": "frames are JSON objects with a type"}))
		return
	}
	switch {
	case relayedSignals[f.Type]:
		if other := a.other(p.id); other != nil {
			a.send(other, m.data)
		}
	case f.Type == "hangup":
		a.end(persistence.VideoEndHangup)
	default:
		a.send(p, videoFrameJSON("error", map[string]any{"code": "bad_frame", "message": fmt.Sprintf("unknown frame type %q", f.Type)}))
	}
}

// leave removes the participant on connID: its socket closed, or it is cut
// (reason not empty).
func (a *videoActor) leave(connID uint64, reason string) {
	p := a.peerByConn(connID)
	if p == nil {
		return
	}
	delete(a.peers, p.id)
	if reason != "" {
		a.log.Info().Str("peer", p.id).Str("reason", reason).Msg("video participant cut")
	}
	p.close(reason)
	if a.status == persistence.VideoCallEnded {
		return
	}
	if other := a.other(p.id); other != nil {
		a.send(other, videoFrameJSON("peer_left", nil))
	}
	if len(a.peers) == 0 && a.status == persistence.VideoCallActive {
		a.startTimer(timerGrace, a.opts.RejoinGrace)
	}
}

// end decides the end of the call; the participants are told once it is committed.
func (a *videoActor) end(reason string) {
	if a.status == persistence.VideoCallEnded {
		return
	}
	a.status = persistence.VideoCallEnded
	for i := range timerRetry {
		a.stopTimer(i)
	}
	a.log.Info().Str("reason", reason).Msg("video call ending")
	a.change(&persistence.VideoCallChange{CallID: a.id, Status: persistence.VideoCallEnded, EndReason: reason, At: a.sys.now()})
}

func (a *videoActor) change(ch *persistence.VideoCallChange) {
	a.queue = append(a.queue, ch)
	a.flush()
}

// flush writes the queued changes, one write at a time.
func (a *videoActor) flush() {
	if a.writing || len(a.queue) == 0 || a.timers[timerRetry] != nil {
		return
	}
	changes := a.queue
	a.queue = nil
	a.writing = true
	hasEnd := false
	for _, ch := range changes {
		hasEnd = hasEnd || ch.Status == persistence.VideoCallEnded
	}
	self, root := a.self, a.sys.root
	reply := func(w *videoWritten) {
		w.hasEnd = hasEnd
		root.Send(self, w)
	}
	if a.call.ConversationID != 0 {
		a.sys.router.TellConversation(a.key, &videoCallCmd{changes: changes, done: func(c *persistence.VideoCall, err error) {
			if err != nil {
				reply(&videoWritten{err: err, failed: changes})
				return
			}
			reply(&videoWritten{call: c, written: len(changes)})
		}})
		return
	}
	store := a.sys.opts.Store
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var last *persistence.VideoCall
		for i, ch := range changes {
			c, _, err := store.ApplyVideoCallChange(ctx, ch)
			if err != nil {
				reply(&videoWritten{call: last, err: err, failed: changes[i:], written: i})
				return
			}
			last = c
		}
		reply(&videoWritten{call: last, written: len(changes)})
	}()
}

func (a *videoActor) written(m *videoWritten) {
	a.writing = false
	if m.call != nil {
		a.call = m.call
	}
	if m.err != nil {
		if errors.Is(m.err, persistence.ErrInvalid) || errors.Is(m.err, persistence.ErrNotFound) || errors.Is(m.err, ErrNotFound) {
			a.log.Error().Err(m.err).Msg("video call change refused by the store; dropped")
		} else {
			a.failures++
			a.log.Warn().Err(m.err).Int("attempt", a.failures).Msg("video call change not stored; will retry")
			a.queue = append(m.failed, a.queue...)
			a.startTimer(timerRetry, backoff(200*time.Millisecond, 30*time.Second, a.failures))
			return
		}
	}
	a.failures = 0
	if hook := a.sys.opts.videoWrites; hook != nil && a.call != nil && m.err == nil {
		defer hook(*a.call) // after the participants were told
	}
	if m.hasEnd && m.err == nil && a.call.Status == persistence.VideoCallEnded {
		a.ended = true
		frame := videoFrameJSON("ended", map[string]any{"reason": a.call.EndReason, "duration_seconds": a.call.DurationSeconds})
		for id, p := range a.peers {
			if p.w.enqueue(frame) {
				p.close("call ended")
			} else {
				p.close("too slow")
			}
			delete(a.peers, id)
		}
		a.log.Info().Str("reason", a.call.EndReason).Int64("duration_seconds", a.call.DurationSeconds).Msg("video call ended")
	}
	a.flush()
}

// videoFrameJSON renders a signalling frame {"type":typ, fields...}.
func videoFrameJSON(typ string, fields map[string]any) []byte {
	m := make(map[string]any, len(fields)+1)
	for k, v := range fields {
		m[k] = v
	}
	m["type"] = typ
	b, _ := json.Marshal(m)
	return b
}

// videoCallCmd writes video call changes with the conversation's next seqs.
func (a *conversationActor) videoCallCmd(ctx actor.Context, c *videoCallCmd) {
	if !a.load() {
		c.done(nil, fmt.Errorf("%w: database unavailable", ErrUnavailable))
		return
	}
	if a.conv == nil {
		c.done(nil, ErrNotFound)
		return
	}
	if c.create {
		// The link goes out as a message: the conversation must take one now.
		if err := a.checkSend(&sendCmd{p: c.p, req: SendRequest{ClientMsgID: "video-call", Text: "video call link"}}); err != nil {
			c.done(nil, err)
			return
		}
	}
	items := make([]persistence.WriteItem, len(c.changes))
	for i, ch := range c.changes {
		items[i] = persistence.WriteItem{Kind: persistence.ItemVideoCall, VideoCall: ch}
	}
	a.enqueueItems(ctx, items, func(r persistence.ItemResult, _ *persistence.Conversation, err error) {
		if err == nil && r.VideoCall == nil {
			err = ErrNotFound
		}
		c.done(r.VideoCall, err)
	})
}

// VideoInviteJSON is an invitation to a video call as the invited RM sees
// it: in the video_invite frame and in the list of pending invitations.
type VideoInviteJSON struct {
	ID        int64     `json:"id"`
	Link      string    `json:"link"`
	FromRMID  int64     `json:"from_rm_id"`
	FromName  string    `json:"from_name"`
	ExpiresAt time.Time `json:"expires_at"`
}

// videoInviteFrame is what an invited RM's socket gets.
type videoInviteFrame struct {
	Type      string          `json:"type"`
	VideoCall VideoInviteJSON `json:"video_call"`
}

// rmName is what an RM is called in invitations.
func rmName(rm *persistence.RM) string {
	if rm.Name != "" {
		return rm.Name
	}
	return rm.Username
}

// PendingVideoInvites lists the video calls p was invited to that nobody
// has started and whose link is still valid (an RM who was offline when
// invited finds them here).
func (s *System) PendingVideoInvites(ctx context.Context, p Principal) ([]VideoInviteJSON, error) {
	o := s.opts.Video
	if o == nil {
		return []VideoInviteJSON{}, nil
	}
	calls, err := s.opts.Store.PendingVideoInvites(ctx, p.RMID, s.now(), 100)
	if err != nil {
		return nil, storeError(err)
	}
	out := make([]VideoInviteJSON, 0, len(calls))
	names := map[int64]string{}
	for _, c := range calls {
		name, ok := names[c.InviterRMID]
		if !ok {
			if rm, err := s.opts.Store.RMByID(ctx, c.InviterRMID); err == nil {
				name = rmName(rm)
			}
			names[c.InviterRMID] = name
		}
		out = append(out, VideoInviteJSON{ID: c.ID, Link: o.Link(c.ID, c.ExpiresAt), FromRMID: c.InviterRMID,
			FromName: name, ExpiresAt: c.ExpiresAt.UTC()})
	}
	return out, nil
}

// StartVideoCall makes a video call from p to another RM (inviteeRMID) or
// to the contact of a conversation (conversationID), and its link. The
// invited RM's sockets get a video_invite frame; the contact gets the link
// as a message in the conversation, through the normal outbound path.
func (s *System) StartVideoCall(ctx context.Context, p Principal, inviteeRMID, conversationID int64) (*VideoInvite, error) {
	o := s.opts.Video
	switch {
	case o == nil:
		return nil, fmt.Errorf("%w: video calls are not configured", ErrBadRequest)
	case (inviteeRMID == 0) == (conversationID == 0):
		return nil, fmt.Errorf("%w: give either invitee_rm_id or conversation_id", ErrBadRequest)
	case inviteeRMID == p.RMID:
		return nil, fmt.Errorf("%w: you cannot invite yourself", ErrBadRequest)
	case s.stopping.Load():
		return nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	now := s.now()
	change := &persistence.VideoCallChange{At: now, New: &persistence.VideoCall{
		InviterRMID: p.RMID, InviteeRMID: inviteeRMID, CreatedAt: now,
		// The link carries whole seconds; so does the call's expiry.
		ExpiresAt: now.Add(o.LinkTTL).Truncate(time.Second),
	}}
	if inviteeRMID != 0 {
		return s.inviteRM(ctx, p, inviteeRMID, change)
	}
	key, err := s.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	if key.Channel != persistence.ChannelWhatsApp && key.Channel != persistence.ChannelSMS {
		return nil, fmt.Errorf("%w: a video link goes to the contact by WhatsApp or SMS; this is a %s conversation", ErrBadRequest, key.Channel)
	}
	type reply struct {
		c   *persistence.VideoCall
		err error
	}
	ch := make(chan reply, 1)
	s.router.TellConversation(key, &videoCallCmd{p: p, create: true, changes: []*persistence.VideoCallChange{change},
		done: func(c *persistence.VideoCall, err error) { ch <- reply{c, err} }})
	var call *persistence.VideoCall
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		call = r.c
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
	s.router.videos.tell(call.ID, &videoCreated{call: call, key: key})
	link := o.Link(call.ID, call.ExpiresAt)
	m, err := s.Send(ctx, p, conversationID, SendRequest{ClientMsgID: "video-call-" + strconv.FormatInt(call.ID, 10), Text: o.InviteText(link)})
	if err != nil {
		s.router.videos.tell(call.ID, &videoAbort{})
		return nil, err
	}
	return &VideoInvite{Call: call, Link: link, Message: m}, nil
}

func (s *System) inviteRM(ctx context.Context, p Principal, inviteeRMID int64, change *persistence.VideoCallChange) (*VideoInvite, error) {
	if _, err := s.opts.Store.RMByID(ctx, inviteeRMID); errors.Is(err, persistence.ErrNotFound) {
		return nil, fmt.Errorf("%w: there is no RM with id %d", ErrBadRequest, inviteeRMID)
	} else if err != nil {
		return nil, storeError(err)
	}
	inviter, err := s.opts.Store.RMByID(ctx, p.RMID)
	if err != nil {
		return nil, storeError(err)
	}
	call, _, err := s.opts.Store.ApplyVideoCallChange(ctx, change)
	if err != nil {
		return nil, storeError(err)
	}
	s.router.videos.tell(call.ID, &videoCreated{call: call})
	link := s.opts.Video.Link(call.ID, call.ExpiresAt)
	frame, _ := json.Marshal(videoInviteFrame{Type: "video_invite", VideoCall: VideoInviteJSON{ID: call.ID, Link: link,
		FromRMID: p.RMID, FromName: rmName(inviter), ExpiresAt: call.ExpiresAt.UTC()}})
	s.router.NotifyRM(&msg.Frame{RmId: inviteeRMID, Frame: frame})
	return &VideoInvite{Call: call, Link: link}, nil
}

// VideoCall returns a video call p may see: its inviter, the invited RM,
// the RM of its conversation, or a supervisor.
func (s *System) VideoCall(ctx context.Context, p Principal, id int64) (*persistence.VideoCall, error) {
	c, err := s.LinkedVideoCall(ctx, id)
	if err != nil {
		return nil, err
	}
	if p.Supervisor() || c.InviterRMID == p.RMID || c.InviteeRMID == p.RMID {
		return c, nil
	}
	if c.ConversationID != 0 {
		conv, err := s.opts.Store.ConversationByID(ctx, c.ConversationID)
		if err != nil {
			return nil, storeError(err)
		}
		if conv.AssignedRMID == p.RMID {
			return c, nil
		}
	}
	return nil, ErrForbidden
}

// LinkedVideoCall reads a call for someone holding its (verified) link.
func (s *System) LinkedVideoCall(ctx context.Context, id int64) (*persistence.VideoCall, error) {
	c, err := s.opts.Store.VideoCallByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, storeError(err)
	}
	return c, nil
}

// VideoPeer is one participant's signalling socket as the transport sees
// it: it feeds the frames it reads to Receive and calls Close when the
// socket ends.
type VideoPeer struct {
	sys    *System
	callID int64
	connID uint64
}

var videoConnIDs atomic.Uint64

// JoinVideo hands a signalling socket to the call's actor. The actor
// answers on conn: a "joined" frame, or an "error" frame (refusal) after
// which it closes conn. rmID is the RM behind the socket when known, else 0.
func (s *System) JoinVideo(callID int64, peerID string, rmID int64, conn Conn) *VideoPeer {
	v := &VideoPeer{sys: s, callID: callID, connID: videoConnIDs.Add(1)}
	if s.opts.Video == nil || s.stopping.Load() || !s.router.videos.tell(callID, &videoJoin{peerID: peerID, rmID: rmID, connID: v.connID, conn: conn}) {
		refuseVideo(conn, VideoRefusedUnavailable)
	}
	return v
}

// Receive hands a frame read from the socket to the call's actor.
func (v *VideoPeer) Receive(frame []byte) {
	v.sys.router.videos.tell(v.callID, &videoFrame{connID: v.connID, data: frame})
}

// Close tells the call's actor the socket is gone.
func (v *VideoPeer) Close() { v.sys.router.videos.tell(v.callID, &videoLeave{connID: v.connID}) }

// wakeVideoCalls activates the actors of calls an earlier run left
// unfinished, so that their timers run again: a started call whose
// participants do not come back ends after RejoinGrace, a link that
// expired ends its call.
func (s *System) wakeVideoCalls(ctx context.Context) error {
	calls, err := s.opts.Store.UnfinishedVideoCalls(ctx, 10000)
	if err != nil {
		return fmt.Errorf("list unfinished video calls: %w", err)
	}
	for _, c := range calls {
		s.router.videos.tell(c.ID, &videoWake{})
	}
	return nil
}

// LiveVideoCalls counts video call actors (tests and operators).
func (s *System) LiveVideoCalls() int { return s.router.videos.count() }

func (s *System) videoProps(id int64, lease *convLease) *actor.Props {
	log := s.opts.Log.With().Str("actor", "video_call").Int64("video_call_id", id).Logger()
	return s.instrumentedProps(kVideoCall, &lease.act, func() actor.Actor {
		return &videoActor{sys: s, opts: s.opts.Video, id: id, lease: lease, log: log}
	})
}
