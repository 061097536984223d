package persistence

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Voice calls (migration 00004). A call belongs to a conversation and is
// written by that conversation's writes (ItemCall, see CallChange): its
// creation and every forward move of its status are events with the
// conversation's next seq, in the same transaction as the call row, its
// status history and, for a terminal status, the CRM outbox row. The status
// history's unique (call_id, status) recognises a repeated callback; the
// status rank keeps the status from moving backwards whatever order the
// dialler's callbacks arrive in.

// Column sizes of the calls table (MySQL; checked for both dialects).
const (
	maxCallerIDLen = 64
	maxURLLen      = 2048
	maxPathLen     = 1024
)

func validateCallChange(ch *CallChange) error {
	if ch == nil {
		return invalid("call item without a call change")
	}
	if ch.CallID < 0 {
		return invalid("negative call id")
	}
	if ch.Status != "" && CallStatusRank(ch.Status) == 0 {
		return invalid("unknown call status %q", ch.Status)
	}
	switch n := ch.New; {
	case n != nil:
		if ch.CallID != 0 {
			return invalid("a call change with both a call id and a new call")
		}
		if n.RMID < 0 {
			return invalid("negative RM id")
		}
		if len(n.ContactPhone) > maxPhoneLen || len(n.RMPhone) > maxPhoneLen {
			return invalid("call phone number longer than %d bytes", maxPhoneLen)
		}
		if len(n.CallerID) > maxCallerIDLen {
			return invalid("caller id longer than %d bytes", maxCallerIDLen)
		}
		if n.FirstLeg != "" && n.FirstLeg != CallLegContact && n.FirstLeg != CallLegRM {
			return invalid("first leg %q (valid: %q, %q)", n.FirstLeg, CallLegContact, CallLegRM)
		}
	case ch.CallID == 0 && ch.ProviderCallSID == "":
		return invalid("call change without a call id, a provider call sid or a new call")
	}
	if len(ch.ProviderCallSID) > maxIDLen {
		return invalid("provider call sid longer than %d bytes", maxIDLen)
	}
	if ch.TalkSeconds < 0 {
		return invalid("negative talk seconds")
	}
	if len(ch.RecordingURL) > maxURLLen {
		return invalid("recording URL longer than %d bytes", maxURLLen)
	}
	if err := validJSON("call legs", ch.Legs); err != nil {
		return err
	}
	return validJSON("call raw", ch.Raw)
}

const callCols = `cl.id, cl.conversation_id, cl.rm_id, cl.contact_phone, cl.rm_phone, cl.caller_id, cl.first_leg,
	cl.status, cl.provider_call_sid, cl.requested_at, cl.answered_at, cl.started_at, cl.ended_at, cl.talk_seconds,
	cl.recording_url, cl.recording_path, cl.legs, cl.error, cl.updated_at`

func scanCall(row rowScanner) (*Call, error) {
	var c Call
	var talk int64
	if err := row.Scan(scanInt{&c.ID}, scanInt{&c.ConversationID}, scanInt{&c.RMID}, scanStr{&c.ContactPhone},
		scanStr{&c.RMPhone}, scanStr{&c.CallerID}, scanStr{&c.FirstLeg}, scanStr{&c.Status}, scanStr{&c.ProviderCallSID},
		scanTime{&c.RequestedAt}, scanTime{&c.AnsweredAt}, scanTime{&c.StartedAt}, scanTime{&c.EndedAt}, scanInt{&talk},
		scanStr{&c.RecordingURL}, scanStr{&c.RecordingPath}, scanJSON{(*[]byte)(&c.Legs)}, scanStr{&c.Error},
		scanTime{&c.UpdatedAt}); err != nil {
		return nil, err
	}
	c.TalkSeconds = int(talk)
	return &c, nil
}

// call applies an ItemCall.
func (t *txn) call(conv *Conversation, ch *CallChange) (ItemResult, error) {
	if ch.New != nil {
		return t.createCall(conv, ch)
	}
	var c *Call
	var err error
	if ch.CallID > 0 {
		c, err = scanCall(t.queryRow(`SELECT `+callCols+` FROM calls cl WHERE cl.id = ?`+t.forUpdate(), ch.CallID))
	} else {
		c, err = scanCall(t.queryRow(`SELECT `+callCols+` FROM calls cl WHERE cl.provider_call_sid = ?`+t.forUpdate(),
			ch.ProviderCallSID))
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ItemResult{Duplicate: true}, nil
	}
	if err != nil {
		return ItemResult{}, err
	}
	if c.ConversationID != conv.ID {
		// Its event would carry this conversation's seq.
		t.s.log.Warn().Int64("call_id", c.ID).Int64("call_conversation", c.ConversationID).
			Int64("conversation", conv.ID).Msg("change of a call of another conversation ignored")
		return ItemResult{Duplicate: true}, nil
	}

	moved := false
	if ch.Status != "" {
		var one int64
		err := t.queryRow(`SELECT 1 FROM call_status_history WHERE call_id = ? AND status = ?`, c.ID, ch.Status).
			Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := t.insertCallHistory(c.ID, ch.Status, ch.At, ch.Raw); err != nil {
				return ItemResult{}, err
			}
			moved = CallStatusRank(ch.Status) > CallStatusRank(c.Status)
		case err != nil:
			return ItemResult{}, err
		}
	}
	if moved {
		c.Status = ch.Status
	}
	// The change speaks for the call's current state when its status is the
	// call's status (just moved there, or a repeat of it): its values
	// replace stored ones. Otherwise (a late, lower or losing status, or no
	// status at all) it only fills gaps.
	changed := t.mergeCall(c, ch, ch.Status != "" && ch.Status == c.Status)
	if !moved && !changed {
		return ItemResult{Duplicate: true, Call: c}, nil
	}
	c.UpdatedAt = t.now
	if err := t.updateCall(c); err != nil {
		return ItemResult{}, err
	}
	if !moved {
		return ItemResult{Duplicate: true, Call: c}, nil
	}
	ev, err := t.callEvent(conv, c)
	if err != nil {
		return ItemResult{}, err
	}
	return ItemResult{Call: c, Event: ev}, nil
}

// createCall inserts the call of ch.New, its first status history row and
// its "call" event.
func (t *txn) createCall(conv *Conversation, ch *CallChange) (ItemResult, error) {
	n := ch.New
	c := &Call{
		ConversationID: conv.ID,
		RMID:           n.RMID,
		ContactPhone:   n.ContactPhone,
		RMPhone:        n.RMPhone,
		CallerID:       n.CallerID,
		FirstLeg:       n.FirstLeg,
		Status:         ch.Status,
		RequestedAt:    normTime(n.RequestedAt),
		UpdatedAt:      t.now,
	}
	if c.ContactPhone == "" {
		c.ContactPhone = conv.Key.ContactPhone
	}
	if c.FirstLeg == "" {
		c.FirstLeg = CallLegContact
	}
	if c.Status == "" {
		c.Status = CallRequested
	}
	if c.RequestedAt.IsZero() {
		c.RequestedAt = normTime(ch.At)
	}
	if c.RequestedAt.IsZero() {
		c.RequestedAt = t.now
	}
	t.mergeCall(c, ch, true)
	s := t.s
	var err error
	c.ID, err = t.insert(`INSERT INTO calls (conversation_id, rm_id, contact_phone, rm_phone, caller_id, first_leg, status,
		provider_call_sid, requested_at, answered_at, started_at, ended_at, talk_seconds, recording_url, recording_path,
		legs, error, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?)`,
		c.ConversationID, nullID(c.RMID), c.ContactPhone, c.RMPhone, c.CallerID, c.FirstLeg, c.Status,
		nullStr(c.ProviderCallSID), s.tv(c.RequestedAt), s.tv(c.AnsweredAt), s.tv(c.StartedAt), s.tv(c.EndedAt),
		c.TalkSeconds, c.RecordingURL, jsonArg(c.Legs), c.Error, s.tv(c.UpdatedAt))
	if err != nil {
		return ItemResult{}, sidTaken(err, c.ProviderCallSID)
	}
	at := ch.At
	if at.IsZero() {
		at = c.RequestedAt
	}
	if err := t.insertCallHistory(c.ID, c.Status, at, ch.Raw); err != nil {
		return ItemResult{}, err
	}
	ev, err := t.callEvent(conv, c)
	if err != nil {
		return ItemResult{}, err
	}
	return ItemResult{Call: c, Event: ev}, nil
}

// mergeCall copies the change's non-zero fields into c: into empty fields
// always, over stored values only when authoritative. A provider id once
// set is kept. It reports whether c changed.
func (t *txn) mergeCall(c *Call, ch *CallChange, authoritative bool) bool {
	changed := false
	str := func(dst *string, v string) {
		if v != "" && v != *dst && (*dst == "" || authoritative) {
			*dst, changed = v, true
		}
	}
	tm := func(dst *time.Time, v time.Time) {
		v = normTime(v)
		if !v.IsZero() && !v.Equal(*dst) && (dst.IsZero() || authoritative) {
			*dst, changed = v, true
		}
	}
	if ch.ProviderCallSID != "" {
		switch c.ProviderCallSID {
		case "":
			c.ProviderCallSID, changed = ch.ProviderCallSID, true
		case ch.ProviderCallSID:
		default:
			t.s.log.Warn().Int64("call_id", c.ID).Str("stored", c.ProviderCallSID).Str("reported", ch.ProviderCallSID).
				Msg("dialler reported a second id for a call; keeping the first")
		}
	}
	tm(&c.AnsweredAt, ch.AnsweredAt)
	tm(&c.StartedAt, ch.StartedAt)
	tm(&c.EndedAt, ch.EndedAt)
	if ch.TalkSeconds > 0 && ch.TalkSeconds != c.TalkSeconds && (c.TalkSeconds == 0 || authoritative) {
		c.TalkSeconds, changed = ch.TalkSeconds, true
	}
	str(&c.RecordingURL, ch.RecordingURL)
	if len(ch.Legs) > 0 && !bytes.Equal(ch.Legs, c.Legs) && (len(c.Legs) == 0 || authoritative) {
		c.Legs, changed = cloneBytes(ch.Legs), true
	}
	// The error explains the status it came with: only that status sets it.
	if authoritative {
		str(&c.Error, truncateError(ch.Error))
	}
	return changed
}

// updateCall writes c's mutable columns.
func (t *txn) updateCall(c *Call) error {
	s := t.s
	_, err := t.exec(`UPDATE calls SET status = ?, provider_call_sid = ?, answered_at = ?, started_at = ?, ended_at = ?,
		talk_seconds = ?, recording_url = ?, legs = ?, error = ?, updated_at = ? WHERE id = ?`,
		c.Status, nullStr(c.ProviderCallSID), s.tv(c.AnsweredAt), s.tv(c.StartedAt), s.tv(c.EndedAt),
		c.TalkSeconds, c.RecordingURL, jsonArg(c.Legs), c.Error, s.tv(c.UpdatedAt), c.ID)
	return sidTaken(err, c.ProviderCallSID)
}

// sidTaken marks a unique violation (the only unique key a call write can
// break is the provider id) as ErrExists, keeping the driver's error in the
// chain (the committer recognises it as this write's own failure).
func sidTaken(err error, sid string) error {
	if err != nil && uniqueViolation(err) {
		return fmt.Errorf("%w: provider call sid %q belongs to another call: %w", ErrExists, sid, err)
	}
	return err
}

func (t *txn) insertCallHistory(callID int64, status string, at time.Time, raw json.RawMessage) error {
	if at.IsZero() {
		at = t.now
	}
	_, err := t.exec(`INSERT INTO call_status_history (call_id, status, at, detail) VALUES (?, ?, ?, ?)`,
		callID, status, t.s.tv(at), jsonArg(raw))
	return err
}

// callEvent writes the "call" event of c's current status with the
// conversation's next seq.
func (t *txn) callEvent(conv *Conversation, c *Call) (*Event, error) {
	detail, err := json.Marshal(OutboxCallOf(c))
	if err != nil {
		return nil, err
	}
	ev, err := t.insertEvent(conv.ID, conv.LastSeq+1, EventCall, 0, c.Status, detail)
	if err != nil {
		return nil, err
	}
	conv.LastSeq = ev.Seq
	return ev, nil
}

// Recording path (its own op: not part of a conversation write).

type callRecordingUpdate struct {
	id   int64
	path string
}

func (s *store) applyCallRecordingPath(t *txn, u *callRecordingUpdate) error {
	n, err := t.update(`UPDATE calls SET recording_path = ?, updated_at = ? WHERE id = ?`, u.path, s.tv(t.now), u.id)
	if err != nil || n > 0 {
		return err
	}
	var one int64
	err = t.queryRow(`SELECT 1 FROM calls WHERE id = ?`, u.id).Scan(&one)
	return notFound(err, fmt.Sprintf("call %d", u.id))
}

// SetCallRecordingPath records where the server stored call id's
// recording, in the next batch, and waits for the commit.
func (s *store) SetCallRecordingPath(ctx context.Context, id int64, path string) error {
	if id <= 0 {
		return invalid("call id %d", id)
	}
	if len(path) > maxPathLen {
		return invalid("recording path longer than %d bytes", maxPathLen)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ch := make(chan error, 1)
	o := &op{kind: opCallRecordingPath, callRec: &callRecordingUpdate{id: id, path: path}, odone: func(err error) { ch <- err }}
	if err := s.c.enqueue(o); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err() // the change may still commit
	}
}

// Reads (the read pool).

func (s *store) callWhere(ctx context.Context, what, where string, arg any) (*Call, error) {
	c, err := scanCall(s.rdb.QueryRowContext(ctx, `SELECT `+callCols+` FROM calls cl WHERE `+where, arg))
	if err != nil {
		return nil, notFound(err, what)
	}
	return c, nil
}

// CallByID reads one call; ErrNotFound when there is none.
func (s *store) CallByID(ctx context.Context, id int64) (*Call, error) {
	return s.callWhere(ctx, fmt.Sprintf("call %d", id), `cl.id = ?`, id)
}

// CallByProviderSID reads the call with the dialler's id; ErrNotFound when there is none.
func (s *store) CallByProviderSID(ctx context.Context, sid string) (*Call, error) {
	if sid == "" {
		return nil, fmt.Errorf("call with an empty provider sid: %w", ErrNotFound)
	}
	return s.callWhere(ctx, "call "+sid, `cl.provider_call_sid = ?`, sid)
}

// UnfinishedCalls lists calls in a non-terminal status requested before
// requestedBefore (every one when zero), oldest first, up to limit (default
// 100, at most 10000). A range scan of calls_status_requested per status.
func (s *store) UnfinishedCalls(ctx context.Context, requestedBefore time.Time, limit int) ([]Call, error) {
	q := `SELECT ` + callCols + ` FROM calls cl WHERE cl.status IN (?, ?, ?, ?)`
	args := []any{CallRequested, CallDialling, CallContactAnswered, CallConnected}
	if !requestedBefore.IsZero() {
		q += ` AND cl.requested_at < ?`
		args = append(args, s.tv(requestedBefore))
	}
	q += ` ORDER BY cl.requested_at, cl.id LIMIT ?`
	args = append(args, listLimit(limit))
	return queryList(ctx, s, into(scanCall), q, args...)
}

// CallStatusHistory lists the statuses recorded for a call in the order
// they were recorded (none for an unknown call).
func (s *store) CallStatusHistory(ctx context.Context, callID int64) ([]CallStatusEntry, error) {
	return queryList(ctx, s, func(r rowScanner, e *CallStatusEntry) error {
		return r.Scan(scanInt{&e.CallID}, scanStr{&e.Status}, scanTime{&e.At}, scanJSON{(*[]byte)(&e.Detail)})
	}, `SELECT call_id, status, at, detail FROM call_status_history WHERE call_id = ? ORDER BY id`, callID)
}
