package persistence

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The CRM outbox table (migration 00003): rows are inserted by conversation
// writes (outbox.go decides which and with what data), drained by the CRM
// sync actor through the Outbox interface. State changes go through the
// committer like every other write, so many deliveries share a transaction.

// maxOutboxError caps last_error (characters; the MySQL column is VARCHAR(1000)).
const maxOutboxError = 1000

// newEventID returns a public event id: "evt_" and 26 random base32
// characters (130 bits from crypto/rand).
func newEventID() string { return "evt_" + rand.Text() }

// insertOutbox inserts one pending outbox row for data, occurring now, due
// now, expiring after the configured maximum age.
func (t *txn) insertOutbox(typ string, conversationID int64, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("outbox %s data: %w", typ, err)
	}
	t.queueOutbox(typ, conversationID, string(b), nil)
	return nil
}

// insertOutboxData is insertOutbox with the data made at the flush (it names
// rows whose ids are set then).
func (t *txn) insertOutboxData(typ string, conversationID int64, data func() any) error {
	t.queueOutbox(typ, conversationID, "", data)
	return nil
}

func (t *txn) queueOutbox(typ string, conversationID int64, data string, lazy func() any) {
	s := t.s
	// Inserted with the batch's other outbox rows at its end (batch.go).
	t.dirty = true
	t.b.outbox = append(t.b.outbox, pendingOutbox{data: lazy, args: []any{newEventID(), typ, conversationID, s.tv(t.now), data, OutboxPending,
		s.tv(t.now), s.tv(t.now.Add(s.cfg.OutboxMaxAge)), s.tv(t.now)}})
	t.outboxRows++
}

// outboxUpdate is the argument of an outbox state change op.
type outboxUpdate struct {
	id        int64     // the row; 0 for "all dead letters" (replay)
	at        time.Time // delivered_at; the replay's now
	next      time.Time // failed: next attempt
	expires   time.Time // replay: new expiry
	lastError string
	dead      bool
}

// applyOutboxUpdate applies an outbox state change and returns the number of
// rows it changed. A change that finds nothing to do (an unknown id)
// changes nothing and fails cleanly, without spoiling the batch.
func (s *store) applyOutboxUpdate(t *txn, kind opKind, u *outboxUpdate) (int64, error) {
	switch kind {
	case opOutboxDelivered:
		at := u.at
		if at.IsZero() {
			at = t.now
		}
		// Delivered wins over any other state: the CRM has the event.
		n, err := t.update(`UPDATE outbox SET state = ?, delivered_at = ? WHERE id = ? AND state <> ?`,
			OutboxDelivered, s.tv(at), u.id, OutboxDelivered)
		if err == nil && n == 0 {
			err = t.outboxExists(u.id)
		}
		return n, err
	case opOutboxFailed:
		state, next := OutboxPending, u.next
		if u.dead {
			state = OutboxDead
		}
		if next.IsZero() {
			next = t.now
		}
		// Only a pending row: a failure reported after another sender
		// delivered the event (or gave up on it) changes nothing.
		n, err := t.update(`UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, state = ?
			WHERE id = ? AND state = ?`,
			truncateError(u.lastError), s.tv(next), state, u.id, OutboxPending)
		if err == nil && n == 0 {
			err = t.outboxExists(u.id)
		}
		return n, err
	case opOutboxReplay:
		now, expires := u.at, u.expires
		if now.IsZero() {
			now = t.now
		}
		if expires.IsZero() {
			expires = now.Add(s.cfg.OutboxMaxAge)
		}
		q := `UPDATE outbox SET state = ?, attempts = 0, next_attempt_at = ?, expires_at = ? WHERE state = ?`
		args := []any{OutboxPending, s.tv(now), s.tv(expires), OutboxDead}
		if u.id > 0 {
			q += ` AND id = ?`
			args = append(args, u.id)
		}
		n, err := t.update(q, args...)
		if err == nil && n == 0 && u.id > 0 {
			err = t.outboxExists(u.id)
		}
		t.outboxRows += int(n)
		return n, err
	}
	return 0, fmt.Errorf("%w: unknown outbox op %d", ErrInvalid, kind)
}

// update runs a statement and returns the rows it changed. A statement that
// changed no row leaves the transaction clean (see txn.dirty).
func (t *txn) update(query string, args ...any) (int64, error) {
	dirty := t.dirty
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if n == 0 {
		t.dirty = dirty
	}
	return n, nil
}

// outboxExists reports ErrNotFound when there is no row id (nil otherwise).
func (t *txn) outboxExists(id int64) error {
	var one int64
	err := t.queryRow(`SELECT 1 FROM outbox WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("outbox event %d: %w", id, ErrNotFound)
	}
	return err
}

// truncateError keeps the first maxOutboxError characters of valid UTF-8.
func truncateError(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) <= maxOutboxError {
		return s
	}
	n := 0
	for i := range s {
		if n == maxOutboxError {
			return s[:i]
		}
		n++
	}
	return s
}

type outboxOutcome struct {
	n   int64
	err error
}

// outboxOp queues an outbox state change and waits for its commit.
func (s *store) outboxOp(ctx context.Context, kind opKind, u *outboxUpdate) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	ch := make(chan outboxOutcome, 1)
	o := &op{kind: kind, ob: u, obdone: func(n int64, err error) { ch <- outboxOutcome{n, err} }}
	if err := s.c.enqueue(o); err != nil {
		return 0, err
	}
	select {
	case r := <-ch:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err() // the change may still commit
	}
}

// OutboxDelivered marks event id delivered at at (the commit time when
// zero). Marking a delivered event again changes nothing; an unknown id is
// ErrNotFound.
func (s *store) OutboxDelivered(ctx context.Context, id int64, at time.Time) error {
	if id <= 0 {
		return invalid("outbox event id %d", id)
	}
	_, err := s.outboxOp(ctx, opOutboxDelivered, &outboxUpdate{id: id, at: at})
	return err
}

// OutboxFailed records a failed attempt of a pending event: attempts + 1,
// lastError (cut to 1000 characters), and the next attempt at next, or the
// dead state when dead. An event that is no longer pending is left alone;
// an unknown id is ErrNotFound.
func (s *store) OutboxFailed(ctx context.Context, id int64, lastError string, next time.Time, dead bool) error {
	if id <= 0 {
		return invalid("outbox event id %d", id)
	}
	_, err := s.outboxOp(ctx, opOutboxFailed, &outboxUpdate{id: id, lastError: lastError, next: next, dead: dead})
	return err
}

// OutboxReplay makes dead events pending again: attempts 0, next attempt at
// now (the commit time when zero), expiring at expiresAt (now plus
// Config.OutboxMaxAge when zero); last_error is kept until the next failure.
// id > 0 replays that event (0 when it is not dead, ErrNotFound when there
// is no such event); id == 0 replays every dead event.
func (s *store) OutboxReplay(ctx context.Context, id int64, now, expiresAt time.Time) (int64, error) {
	if id < 0 {
		return 0, invalid("outbox event id %d", id)
	}
	return s.outboxOp(ctx, opOutboxReplay, &outboxUpdate{id: id, at: now, expires: expiresAt})
}

// Reads (the read pool).

const outboxCols = `o.id, o.event_id, o.type, o.conversation_id, o.occurred_at, o.data, o.state, o.attempts,
	o.next_attempt_at, o.expires_at, o.last_error, o.created_at, o.delivered_at`

func outboxDest(e *OutboxEvent, attempts *int64) []any {
	return []any{scanInt{&e.ID}, scanStr{&e.EventID}, scanStr{&e.Type}, scanInt{&e.ConversationID}, scanTime{&e.OccurredAt},
		scanJSON{(*[]byte)(&e.Data)}, scanStr{&e.State}, scanInt{attempts}, scanTime{&e.NextAttemptAt}, scanTime{&e.ExpiresAt},
		scanStr{&e.LastError}, scanTime{&e.CreatedAt}, scanTime{&e.DeliveredAt}}
}

func scanOutboxEvents(rows *sql.Rows) ([]OutboxEvent, error) {
	defer rows.Close()
	var out []OutboxEvent
	for rows.Next() {
		var e OutboxEvent
		var attempts int64
		if err := rows.Scan(outboxDest(&e, &attempts)...); err != nil {
			return nil, err
		}
		e.Attempts = int(attempts)
		out = append(out, e)
	}
	return out, rows.Err()
}

// OutboxHeads returns the oldest pending event of each conversation, when it
// is due at now (the current time when zero), for up to limit conversations
// (default 100, at most 10000), oldest first. Events of no
// conversation (conversation_id 0) form one ordered stream of their own.
//
// One statement on both dialects: the derived table takes MIN(id) per
// conversation from the pending range of outbox_heads (state,
// conversation_id, id), read from the index alone (delivered rows are never
// touched; the cost follows the pending backlog); the heads are then
// filtered by due time, so a conversation whose head waits for a retry holds
// back its own later events and no one else's.
func (s *store) OutboxHeads(ctx context.Context, now time.Time, limit int) ([]OutboxEvent, error) {
	if now.IsZero() {
		now = dbNow()
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+outboxCols+`
		FROM (SELECT MIN(id) AS id FROM outbox WHERE state = ? GROUP BY conversation_id) h
		JOIN outbox o ON o.id = h.id
		WHERE o.next_attempt_at <= ?
		ORDER BY o.id LIMIT ?`, OutboxPending, s.tv(now), listLimit(limit))
	if err != nil {
		return nil, err
	}
	return scanOutboxEvents(rows)
}

// OutboxDeadLetters lists dead events, oldest (lowest id) first.
func (s *store) OutboxDeadLetters(ctx context.Context, limit int) ([]OutboxEvent, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+outboxCols+` FROM outbox o WHERE o.state = ? ORDER BY o.id LIMIT ?`,
		OutboxDead, listLimit(limit))
	if err != nil {
		return nil, err
	}
	return scanOutboxEvents(rows)
}

// OutboxBacklog counts pending and dead events, in one statement (one
// snapshot). ConversationsBehind counts the events of no conversation as one.
func (s *store) OutboxBacklog(ctx context.Context) (OutboxBacklog, error) {
	var b OutboxBacklog
	err := s.rdb.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM outbox WHERE state = ?),
		(SELECT COUNT(*) FROM outbox WHERE state = ?),
		(SELECT MIN(occurred_at) FROM outbox WHERE state = ?),
		(SELECT COUNT(DISTINCT conversation_id) FROM outbox WHERE state = ?)`,
		OutboxPending, OutboxDead, OutboxPending, OutboxPending).
		Scan(&b.Pending, &b.Dead, scanTime{&b.OldestPending}, &b.ConversationsBehind)
	return b, err
}

// OutboxEventByID reads one event; ErrNotFound when there is none.
func (s *store) OutboxEventByID(ctx context.Context, id int64) (*OutboxEvent, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+outboxCols+` FROM outbox o WHERE o.id = ?`, id)
	if err != nil {
		return nil, err
	}
	evs, err := scanOutboxEvents(rows)
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("outbox event %d: %w", id, ErrNotFound)
	}
	return &evs[0], nil
}
