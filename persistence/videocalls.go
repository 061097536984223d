package persistence

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Video calls (migration 00005). A video call is a room for two browsers:
// an RM invites a second RM (no conversation) or the contact of one of
// their conversations (the call belongs to that conversation). The call
// moves forward only: created (the link exists) -> active (both
// participants were in the room at once) -> ended.
//
// A call of a conversation is written by that conversation's writes
// (ItemVideoCall): its creation and every forward move of its status are
// "video_call" events with the conversation's next seq, so the timeline
// shows them. A call between two RMs is written with ApplyVideoCallChange,
// through the same group commit, without events. Either way the end writes
// the CRM outbox row video_call.ended (conversation_id 0 for RM-to-RM calls)
// in the same transaction, exactly once.

// EventVideoCall is a video call's creation or a move of its status: Status
// is the call's new status and Detail the call after the change (the
// "video_call" object of docs/crm.md, OutboxVideoCall).
const EventVideoCall = "video_call"

// OutboxVideoCallEnded: a video call ended (whatever the reason; the data
// says why and how long it lasted).
const OutboxVideoCallEnded = "video_call.ended"

// Video call statuses, in the only order a call moves through them.
const (
	VideoCallCreated = "created" // the link exists; at most one participant has joined
	VideoCallActive  = "active"  // both participants were in the room at once
	VideoCallEnded   = "ended"   // terminal
)

// Why a video call ended.
const (
	VideoEndHangup  = "hangup"  // a participant hung up
	VideoEndLeft    = "left"    // every participant left and none came back in time
	VideoEndExpired = "expired" // the link expired before both participants joined
	VideoEndLimit   = "limit"   // the call reached the maximum duration
	VideoEndAborted = "aborted" // the server stopped the call (a restart found it unfinished)
)

// VideoCallStatusRank orders video call statuses; 0 for an unknown status.
func VideoCallStatusRank(s string) int {
	switch s {
	case VideoCallCreated:
		return 1
	case VideoCallActive:
		return 2
	case VideoCallEnded:
		return 3
	}
	return 0
}

// VideoCall is one video call.
type VideoCall struct {
	ID              int64
	ConversationID  int64  // 0 for a call between two RMs
	InviterRMID     int64  // the RM who made the call
	InviteeRMID     int64  // the invited RM; 0 when the contact is invited
	ContactPhone    string // the conversation's contact; "" between RMs
	Status          string
	EndReason       string // one of the VideoEnd* values once ended, "" before
	CreatedAt       time.Time
	ExpiresAt       time.Time // the link's expiry
	StartedAt       time.Time // when both participants were first in the room; zero until then
	EndedAt         time.Time // zero until ended
	DurationSeconds int64     // EndedAt - StartedAt in whole seconds; 0 when it never started
	Joins           int       // participants' joins, rejoins included
	UpdatedAt       time.Time
}

// VideoJoin is one participant joining the room (a reload joins again).
type VideoJoin struct {
	PeerID string // the participant's id, chosen by their page
	RMID   int64  // the RM who joined, 0 for the contact (or anyone holding the link)
	Rejoin bool   // the same peer joined this call before; set by the store (a caller's value is ignored)
}

// VideoCallJoin is one recorded join.
type VideoCallJoin struct {
	VideoCallID int64
	VideoJoin
	At time.Time
}

// VideoCallChange is what an ItemVideoCall (or ApplyVideoCallChange) does.
//
// With New set (and CallID 0) it creates a call: New gives InviterRMID
// (required), InviteeRMID (required between two RMs, 0 for a conversation's
// call: its contact is invited), ExpiresAt (required) and CreatedAt
// (default At, else the commit time); ConversationID and ContactPhone come
// from the write's conversation (ApplyVideoCallChange: none, and a New with
// a ConversationID is refused). Status is VideoCallCreated: a creation
// carries no other status, no end reason and no join.
//
// Otherwise it changes call CallID, and carries a Join, a Status or both
// (the join is applied first). Join is recorded (and counted in Joins)
// whatever the status. Status becomes the call's status only when it ranks
// higher. Moving to active sets StartedAt = At; moving to ended sets EndedAt
// = At, EndReason and DurationSeconds (whole seconds from StartedAt, 0 when
// it never started) and writes the video_call.ended outbox row. A status
// that does not move (a second end, active after ended) changes nothing;
// the item is a duplicate (ItemResult.Duplicate, ApplyVideoCallChange's
// moved false), and so is a change with a join only, which is recorded but
// is not a visible event.
//
// Refused with ErrInvalid before anything is written: an unknown status, an
// end reason that is not a VideoEnd* value or comes without status ended (or
// ended without one), a peer id that is empty, longer than 64 bytes or not
// UTF-8, negative ids, a change with neither New nor CallID, or with CallID
// but neither Join nor Status.
type VideoCallChange struct {
	CallID    int64
	New       *VideoCall
	Join      *VideoJoin
	Status    string
	EndReason string    // with Status ended, and only with it
	At        time.Time // when it happened (join, start, end); default the commit time
}

// VideoCalls reads video calls and writes those between two RMs. Store
// includes it.
type VideoCalls interface {
	// ApplyVideoCallChange commits a change of a video call that has no
	// conversation (between two RMs) in the next batch and waits for it. It
	// returns the call after the change and whether its status moved (or it
	// was created). ErrNotFound when there is no such call; ErrInvalid for a
	// call that belongs to a conversation (those are conversation writes).
	// When ctx ends first it returns ctx.Err(); the change may still commit.
	ApplyVideoCallChange(ctx context.Context, ch *VideoCallChange) (*VideoCall, bool, error)
	// VideoCallByID reads one video call; ErrNotFound when there is none.
	VideoCallByID(ctx context.Context, id int64) (*VideoCall, error)
	// VideoCallJoins lists a call's joins in the order they were recorded
	// (none for an unknown call).
	VideoCallJoins(ctx context.Context, id int64) ([]VideoCallJoin, error)
	// PendingVideoInvites lists the calls rmID was invited to that nobody
	// has started yet and whose link has not expired at now, oldest first.
	PendingVideoInvites(ctx context.Context, rmID int64, now time.Time, limit int) ([]VideoCall, error)
	// UnfinishedVideoCalls lists calls that are not ended, oldest (by
	// CreatedAt) first, up to limit (default 100, at most 10000); a restart
	// ends them: their rooms were in the stopped process.
	UnfinishedVideoCalls(ctx context.Context, limit int) ([]VideoCall, error)
}

// Column sizes of the video call tables (MySQL; checked for both dialects).
const maxPeerIDLen = 64

// videoEndReason reports whether r is one of the VideoEnd* values.
func videoEndReason(r string) bool {
	switch r {
	case VideoEndHangup, VideoEndLeft, VideoEndExpired, VideoEndLimit, VideoEndAborted:
		return true
	}
	return false
}

// validateVideoCallChange checks a change before it reaches the database:
// of a conversation's call (an ItemVideoCall) or, with rmToRM, of a call
// between two RMs (ApplyVideoCallChange).
func validateVideoCallChange(ch *VideoCallChange, rmToRM bool) error {
	if ch == nil {
		return invalid("video call item without a video call change")
	}
	if ch.CallID < 0 {
		return invalid("negative video call id")
	}
	if ch.Status != "" && VideoCallStatusRank(ch.Status) == 0 {
		return invalid("unknown video call status %q", ch.Status)
	}
	if ch.EndReason != "" && !videoEndReason(ch.EndReason) {
		return invalid("unknown video call end reason %q", ch.EndReason)
	}
	if n := ch.New; n != nil {
		switch {
		case ch.CallID != 0:
			return invalid("a video call change with both a call id and a new call")
		case ch.Join != nil || ch.EndReason != "" || (ch.Status != "" && ch.Status != VideoCallCreated):
			return invalid("a new video call has status %q and no join", VideoCallCreated)
		case n.InviterRMID <= 0:
			return invalid("a new video call without an inviter RM")
		case n.InviteeRMID < 0:
			return invalid("negative invitee RM id")
		case n.ExpiresAt.IsZero():
			return invalid("a new video call without an expiry")
		case rmToRM && n.ConversationID != 0:
			return invalid("a video call of a conversation is created by that conversation's write, not ApplyVideoCallChange")
		case rmToRM && n.InviteeRMID == 0:
			return invalid("a video call between two RMs without an invitee RM")
		case !rmToRM && n.InviteeRMID != 0:
			return invalid("a video call of a conversation invites its contact, not RM %d", n.InviteeRMID)
		}
		return nil
	}
	if ch.CallID == 0 {
		return invalid("video call change without a call id or a new call")
	}
	if ch.Join == nil && ch.Status == "" {
		return invalid("video call change without a join or a status")
	}
	if (ch.Status == VideoCallEnded) != (ch.EndReason != "") {
		return invalid("a video call end reason goes with status %q, and only with it", VideoCallEnded)
	}
	if j := ch.Join; j != nil {
		if j.PeerID == "" || len(j.PeerID) > maxPeerIDLen || !utf8.ValidString(j.PeerID) {
			return invalid("video call peer id empty, longer than %d bytes or not UTF-8", maxPeerIDLen)
		}
		if j.RMID < 0 {
			return invalid("negative RM id")
		}
	}
	return nil
}

const videoCallCols = `vc.id, vc.conversation_id, vc.inviter_rm_id, vc.invitee_rm_id, vc.contact_phone, vc.status,
	vc.end_reason, vc.created_at, vc.expires_at, vc.started_at, vc.ended_at, vc.duration_seconds, vc.joins, vc.updated_at`

func scanVideoCall(row rowScanner) (*VideoCall, error) {
	var c VideoCall
	var joins int64
	if err := row.Scan(scanInt{&c.ID}, scanInt{&c.ConversationID}, scanInt{&c.InviterRMID}, scanInt{&c.InviteeRMID},
		scanStr{&c.ContactPhone}, scanStr{&c.Status}, scanStr{&c.EndReason}, scanTime{&c.CreatedAt}, scanTime{&c.ExpiresAt},
		scanTime{&c.StartedAt}, scanTime{&c.EndedAt}, scanInt{&c.DurationSeconds}, scanInt{&joins}, scanTime{&c.UpdatedAt}); err != nil {
		return nil, err
	}
	c.Joins = int(joins)
	return &c, nil
}

// changeAt is when a change happened: its At, else the commit time.
func (t *txn) changeAt(ch *VideoCallChange) time.Time {
	if at := normTime(ch.At); !at.IsZero() {
		return at
	}
	return t.now
}

// createVideoCall inserts the call of ch.New in conversation convID (0: none).
func (t *txn) createVideoCall(convID int64, contactPhone string, ch *VideoCallChange) (*VideoCall, error) {
	n := ch.New
	vc := &VideoCall{
		ConversationID: convID,
		InviterRMID:    n.InviterRMID,
		InviteeRMID:    n.InviteeRMID,
		ContactPhone:   contactPhone,
		Status:         VideoCallCreated,
		CreatedAt:      normTime(n.CreatedAt),
		ExpiresAt:      normTime(n.ExpiresAt),
		UpdatedAt:      t.now,
	}
	if vc.CreatedAt.IsZero() {
		vc.CreatedAt = t.changeAt(ch)
	}
	s := t.s
	var err error
	vc.ID, err = t.insert(`INSERT INTO video_calls (conversation_id, inviter_rm_id, invitee_rm_id, contact_phone, status,
		end_reason, created_at, expires_at, started_at, ended_at, duration_seconds, joins, updated_at)
		VALUES (?, ?, ?, ?, ?, '', ?, ?, NULL, NULL, 0, 0, ?)`,
		nullID(vc.ConversationID), vc.InviterRMID, nullID(vc.InviteeRMID), vc.ContactPhone, vc.Status,
		s.tv(vc.CreatedAt), s.tv(vc.ExpiresAt), s.tv(vc.UpdatedAt))
	if err != nil {
		return nil, err
	}
	return vc, nil
}

// lockVideoCall reads call id and locks its row until the end of the
// transaction; sql.ErrNoRows when there is none.
func (t *txn) lockVideoCall(id int64) (*VideoCall, error) {
	return scanVideoCall(t.queryRow(`SELECT `+videoCallCols+` FROM video_calls vc WHERE vc.id = ?`+t.forUpdate(), id))
}

// changeVideoCall applies a change (not a creation) to vc, locked by
// lockVideoCall: the join is recorded and counted whatever the status, and
// the status moves only forward. vc becomes the call after the change. It
// reports whether the status moved. Both write paths (ItemVideoCall and
// ApplyVideoCallChange) go through it.
func (t *txn) changeVideoCall(vc *VideoCall, ch *VideoCallChange) (bool, error) {
	s := t.s
	at := t.changeAt(ch)
	joined := false
	if j := ch.Join; j != nil {
		// The store, not the caller, knows whether this peer joined before.
		var one int64
		err := t.queryRow(`SELECT 1 FROM video_call_joins WHERE video_call_id = ? AND peer_id = ? LIMIT 1`,
			vc.ID, j.PeerID).Scan(&one)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return false, err
		}
		rejoin := err == nil
		if _, err := t.exec(`INSERT INTO video_call_joins (video_call_id, peer_id, rm_id, rejoin, at) VALUES (?, ?, ?, ?, ?)`,
			vc.ID, j.PeerID, nullID(j.RMID), rejoin, s.tv(at)); err != nil {
			return false, err
		}
		vc.Joins++
		joined = true
	}
	moved := VideoCallStatusRank(ch.Status) > VideoCallStatusRank(vc.Status)
	if moved {
		vc.Status = ch.Status
		switch ch.Status {
		case VideoCallActive:
			vc.StartedAt = at
		case VideoCallEnded:
			vc.EndedAt, vc.EndReason, vc.DurationSeconds = at, ch.EndReason, 0
			if !vc.StartedAt.IsZero() && at.After(vc.StartedAt) {
				vc.DurationSeconds = int64(at.Sub(vc.StartedAt) / time.Second)
			}
		}
	}
	if !moved && !joined {
		return false, nil
	}
	vc.UpdatedAt = t.now
	_, err := t.exec(`UPDATE video_calls SET status = ?, end_reason = ?, started_at = ?, ended_at = ?, duration_seconds = ?,
		joins = ?, updated_at = ? WHERE id = ?`,
		vc.Status, vc.EndReason, s.tv(vc.StartedAt), s.tv(vc.EndedAt), vc.DurationSeconds, vc.Joins, s.tv(vc.UpdatedAt), vc.ID)
	return moved, err
}

// videoCall applies an ItemVideoCall (the outbox row of an end is written by
// outboxItem).
func (t *txn) videoCall(conv *Conversation, ch *VideoCallChange) (ItemResult, error) {
	if ch.New != nil {
		vc, err := t.createVideoCall(conv.ID, conv.Key.ContactPhone, ch)
		if err != nil {
			return ItemResult{}, err
		}
		ev, err := t.videoCallEvent(conv, vc)
		if err != nil {
			return ItemResult{}, err
		}
		return ItemResult{VideoCall: vc, Event: ev}, nil
	}
	vc, err := t.lockVideoCall(ch.CallID)
	if errors.Is(err, sql.ErrNoRows) {
		return ItemResult{Duplicate: true}, nil
	}
	if err != nil {
		return ItemResult{}, err
	}
	if vc.ConversationID != conv.ID {
		// Its event would carry this conversation's seq (and a call between
		// two RMs has no events at all).
		t.s.log.Warn().Int64("video_call_id", vc.ID).Int64("video_call_conversation", vc.ConversationID).
			Int64("conversation", conv.ID).Msg("change of a video call of another conversation ignored")
		return ItemResult{Duplicate: true}, nil
	}
	moved, err := t.changeVideoCall(vc, ch)
	if err != nil {
		return ItemResult{}, err
	}
	if !moved {
		return ItemResult{Duplicate: true, VideoCall: vc}, nil
	}
	ev, err := t.videoCallEvent(conv, vc)
	if err != nil {
		return ItemResult{}, err
	}
	return ItemResult{VideoCall: vc, Event: ev}, nil
}

// videoCallEvent writes the "video_call" event of vc's current status with
// the conversation's next seq.
func (t *txn) videoCallEvent(conv *Conversation, vc *VideoCall) (*Event, error) {
	detail, err := json.Marshal(OutboxVideoCallOf(vc))
	if err != nil {
		return nil, err
	}
	ev, err := t.insertEvent(conv.ID, conv.LastSeq+1, EventVideoCall, 0, vc.Status, detail)
	if err != nil {
		return nil, err
	}
	conv.LastSeq = ev.Seq
	return ev, nil
}

// Calls between two RMs (their own op: not part of a conversation write).

// applyVideoCallOp applies a change of a call between two RMs: the same
// creation and change as ItemVideoCall, without events. Everything that
// fails without a database error (validation, unknown call, a
// conversation's call) is decided before the first change.
func (s *store) applyVideoCallOp(t *txn, ch *VideoCallChange) (*VideoCall, bool, error) {
	if err := validateVideoCallChange(ch, true); err != nil {
		return nil, false, err
	}
	if ch.New != nil {
		vc, err := t.createVideoCall(0, "", ch)
		if err != nil {
			return nil, false, err
		}
		return vc, true, nil
	}
	vc, err := t.lockVideoCall(ch.CallID)
	if err != nil {
		return nil, false, notFound(err, fmt.Sprintf("video call %d", ch.CallID))
	}
	if vc.ConversationID != 0 {
		return nil, false, invalid("video call %d belongs to conversation %d: it is changed by that conversation's writes",
			vc.ID, vc.ConversationID)
	}
	moved, err := t.changeVideoCall(vc, ch)
	if err == nil && s.cfg.Outbox {
		err = t.outboxVideoCall(nil, vc, moved)
	}
	if err != nil {
		return nil, false, err
	}
	return vc, moved, nil
}

type videoCallOutcome struct {
	vc    *VideoCall
	moved bool
	err   error
}

// ApplyVideoCallChange commits a change of a call between two RMs in the
// next batch and waits for it (see VideoCalls). When ctx ends first it
// returns ctx.Err(); the change may still commit.
func (s *store) ApplyVideoCallChange(ctx context.Context, ch *VideoCallChange) (*VideoCall, bool, error) {
	if err := validateVideoCallChange(ch, true); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	// The committer may read the change after a cancelled caller returned
	// (and again on a retry): it gets its own copy.
	c := *ch
	if ch.New != nil {
		n := *ch.New
		c.New = &n
	}
	if ch.Join != nil {
		j := *ch.Join
		c.Join = &j
	}
	done := make(chan videoCallOutcome, 1)
	o := &op{kind: opVideoCall, vc: &c, vcdone: func(vc *VideoCall, moved bool, err error) { done <- videoCallOutcome{vc, moved, err} }}
	if err := s.c.enqueue(o); err != nil {
		return nil, false, err
	}
	select {
	case r := <-done:
		return r.vc, r.moved, r.err
	case <-ctx.Done():
		return nil, false, ctx.Err() // the change may still commit
	}
}

// Reads (the read pool).

// VideoCallByID reads one video call; ErrNotFound when there is none.
func (s *store) VideoCallByID(ctx context.Context, id int64) (*VideoCall, error) {
	vc, err := scanVideoCall(s.rdb.QueryRowContext(ctx, `SELECT `+videoCallCols+` FROM video_calls vc WHERE vc.id = ?`, id))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("video call %d", id))
	}
	return vc, nil
}

// VideoCallJoins lists a call's joins in the order they were recorded (none
// for an unknown call).
func (s *store) VideoCallJoins(ctx context.Context, id int64) ([]VideoCallJoin, error) {
	return queryList(ctx, s, func(r rowScanner, j *VideoCallJoin) error {
		return r.Scan(scanInt{&j.VideoCallID}, scanStr{&j.PeerID}, scanInt{&j.RMID}, &j.Rejoin, scanTime{&j.At})
	}, `SELECT video_call_id, peer_id, rm_id, rejoin, at FROM video_call_joins WHERE video_call_id = ? ORDER BY id`, id)
}

// PendingVideoInvites lists rmID's invitations still open at now: a range
// scan of video_calls_status_created over the created calls.
func (s *store) PendingVideoInvites(ctx context.Context, rmID int64, now time.Time, limit int) ([]VideoCall, error) {
	return queryList(ctx, s, into(scanVideoCall),
		`SELECT `+videoCallCols+` FROM video_calls vc WHERE vc.status = ? AND vc.invitee_rm_id = ? AND vc.expires_at > ?
		ORDER BY vc.created_at, vc.id LIMIT ?`, VideoCallCreated, rmID, s.tv(now), listLimit(limit))
}

// UnfinishedVideoCalls lists calls not ended, oldest first (by creation),
// up to limit (default 100, at most 10000). A range scan of
// video_calls_status_created per status.
func (s *store) UnfinishedVideoCalls(ctx context.Context, limit int) ([]VideoCall, error) {
	return queryList(ctx, s, into(scanVideoCall),
		`SELECT `+videoCallCols+` FROM video_calls vc WHERE vc.status IN (?, ?) ORDER BY vc.created_at, vc.id LIMIT ?`,
		VideoCallCreated, VideoCallActive, listLimit(limit))
}
