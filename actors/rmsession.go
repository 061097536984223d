package actors

import (
	"context"
	"encoding/json"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/rs/zerolog"

	"urva/actors/msg"
	"urva/persistence"
)

// resumeGrace is how long a new socket holds live events back waiting for
// the client's first frame (normally `resume`), so that replayed events are
// never sent after newer live ones.
const resumeGrace = time.Second

// replayWriteTimeout bounds how long a resume waits for a slow socket.
const replayWriteTimeout = 30 * time.Second

// sessionActor is one RM socket. It receives committed events from the
// router, replays missed ones on resume, and hands frames to one writer
// goroutine through a bounded queue; a client that cannot keep up is cut
// with a reason and resumes by cursor.
type sessionActor struct {
	sys  *System
	p    Principal
	conn Conn
	log  zerolog.Logger

	out      *frameWriter
	awaiting bool             // still waiting for the first client frame
	held     []*msg.FeedEvent // live events held while awaiting
	high     int64            // events with id <= high were replayed or were before the cursor
	closed   bool
}

type clientFrame struct{ data []byte }
type socketClosed struct{}
type graceOver struct{}
type sendReply struct {
	clientMsgID string
	m           *persistence.Message
	contact     ContactJSON
	err         error
}

func (s *sessionActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.out = newFrameWriter(s.conn, s.sys.opts.Tuning.SessionQueue, s.sys.dispatch.Schedule)
		s.awaiting = true
		self, root := ctx.Self(), s.sys.root
		time.AfterFunc(resumeGrace, func() { root.Send(self, &graceOver{}) })
	case *msg.FeedEvent:
		if s.awaiting {
			if len(s.held) >= s.out.capacity() {
				s.slow(ctx, "too many events while waiting for resume; reconnect and resume with your last cursor")
				return
			}
			s.held = append(s.held, m)
			return
		}
		if m.EventId > s.high {
			s.enqueue(ctx, m.Frame)
		}
	case *msg.Frame:
		s.enqueue(ctx, m.Frame)
	case *graceOver:
		s.release(ctx)
	case *disconnectCmd:
		s.cut(ctx, m.reason)
	case *clientFrame:
		s.clientFrame(ctx, m.data)
	case *sendReply:
		s.sendReply(ctx, m)
	case *socketClosed:
		s.closed = true
		ctx.Stop(ctx.Self())
	case *actor.Stopped:
		s.sys.router.RemoveSession(s.p.RMID, ctx.Self())
		s.out.stop()
	}
}

func (s *sessionActor) enqueue(ctx actor.Context, frame []byte) {
	if s.closed {
		return
	}
	if !s.out.enqueue(frame) {
		s.slow(ctx, "slow consumer: too many undelivered events; reconnect and resume with your last cursor")
	}
}

// slow cuts a socket whose client cannot keep up.
func (s *sessionActor) slow(ctx actor.Context, reason string) {
	if !s.closed {
		s.sys.observeSlowClient(SocketRM)
	}
	s.cut(ctx, reason)
}

// cut closes a socket that cannot keep up; the client resumes by cursor.
func (s *sessionActor) cut(ctx actor.Context, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	s.log.Info().Str("reason", reason).Msg("socket cut")
	s.conn.Close(reason)
	ctx.Stop(ctx.Self())
}

// release ends the wait for the first frame and sends what was held.
func (s *sessionActor) release(ctx actor.Context) {
	if !s.awaiting {
		return
	}
	s.awaiting = false
	held := s.held
	s.held = nil
	for _, ev := range held {
		if ev.EventId > s.high {
			s.enqueue(ctx, ev.Frame)
		}
	}
}

type clientMessage struct {
	Type           string                `json:"type"`
	Cursor         string                `json:"cursor"`
	ConversationID int64                 `json:"conversation_id"`
	ClientMsgID    string                `json:"client_msg_id"`
	Text           string                `json:"text"`
	Template       *persistence.Template `json:"template"`
}

type errorNotice struct {
	Type        string `json:"type"`
	Error       string `json:"error"`
	ClientMsgID string `json:"client_msg_id,omitempty"`
}

func (s *sessionActor) clientFrame(ctx actor.Context, data []byte) {
	var m clientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		s.enqueue(ctx, noticeFrame(errorNotice{Type: "error", Error: "frame is not a JSON object: " + err.Error()}))
		return
	}
	switch m.Type {
	case "resume":
		if !s.awaiting {
			s.enqueue(ctx, noticeFrame(errorNotice{Type: "error", Error: "resume must be the first frame on a socket"}))
			return
		}
		if m.Cursor == "" { // a client that has seen nothing yet: live events only
			s.release(ctx)
			return
		}
		cursor, err := ParseCursor(m.Cursor)
		if err != nil || cursor < 0 {
			s.enqueue(ctx, noticeFrame(errorNotice{Type: "error", Error: "bad cursor"}))
			s.release(ctx)
			return
		}
		s.replay(ctx, cursor)
		s.release(ctx)
	case "send":
		s.release(ctx)
		self, root := ctx.Self(), s.sys.root
		req := SendRequest{ClientMsgID: m.ClientMsgID, Text: m.Text, Template: m.Template}
		cid := m.ClientMsgID
		go func() {
			msgRow, conv, err := s.sys.send(context.Background(), s.p, m.ConversationID, req)
			reply := &sendReply{clientMsgID: cid, m: msgRow, err: err}
			if conv != nil {
				reply.contact = ContactJSON{Phone: conv.Key.ContactPhone, Name: conv.ContactName}
			}
			root.Send(self, reply)
		}()
	case "ping":
		s.release(ctx)
		s.enqueue(ctx, []byte(`{"type":"pong"}`))
	default:
		s.release(ctx)
		s.enqueue(ctx, noticeFrame(errorNotice{Type: "error", Error: "unknown frame type " + m.Type}))
	}
}

type sendResult struct {
	Type        string      `json:"type"`
	ClientMsgID string      `json:"client_msg_id"`
	Message     MessageJSON `json:"message"`
}

func (s *sessionActor) sendReply(ctx actor.Context, r *sendReply) {
	if r.err != nil {
		s.enqueue(ctx, noticeFrame(errorNotice{Type: "error", Error: r.err.Error(), ClientMsgID: r.clientMsgID}))
		return
	}
	s.enqueue(ctx, noticeFrame(sendResult{Type: "send_result", ClientMsgID: r.clientMsgID, Message: NewMessageJSON(r.m, r.contact)}))
}

// replay sends every event after cursor that this RM may see, in event-id
// order, before any held live event. Live events with an id up to the last
// replayed one are then skipped: they were either replayed or were already
// seen by the client (they are at or before its cursor).
func (s *sessionActor) replay(ctx actor.Context, cursor int64) {
	s.high = cursor
	rmFilter := s.p.RMID
	if s.p.Supervisor() {
		rmFilter = 0
	}
	page := max(1, s.sys.opts.Tuning.ResumePage)
	timer := time.NewTimer(replayWriteTimeout)
	defer timer.Stop()
	for {
		qctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		recs, err := s.sys.opts.Store.EventsAfter(qctx, rmFilter, s.high, page)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Msg("resume query")
			s.cut(ctx, "resume failed: database unavailable; reconnect and resume again")
			return
		}
		for i := range recs {
			frame := EncodeEvent(&recs[i])
			if !s.out.enqueueWait(frame, timer) {
				s.slow(ctx, "slow consumer during resume; reconnect and resume with your last cursor")
				return
			}
			s.high = recs[i].ID
		}
		if len(recs) < page {
			return
		}
	}
}
