package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
)

const (
	defaultListLimit = 100
	maxListLimit     = 10000
)

func listLimit(n int) int {
	switch {
	case n <= 0:
		return defaultListLimit
	case n > maxListLimit:
		return maxListLimit
	}
	return n
}

func notFound(err error, what string) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return err
}

// uniqueViolation reports a duplicate key in either dialect.
func uniqueViolation(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		// SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
		return se.Code() == 2067 || se.Code() == 1555
	}
	return false
}

// RMs. They are few and written rarely: plain statements on the writer, not
// the group commit.

func (s *store) CreateRM(ctx context.Context, rm *RM) (int64, error) {
	if rm == nil || rm.Username == "" || len(rm.Username) > maxIDLen {
		return 0, invalid("RM username must be 1 to %d bytes", maxIDLen)
	}
	role := rm.Role
	if role == "" {
		role = RoleRM
	}
	if role != RoleRM && role != RoleSupervisor {
		return 0, invalid("RM role %q (valid: %q, %q)", role, RoleRM, RoleSupervisor)
	}
	if utf8.RuneCountInString(rm.Name) > maxNameLen || len(rm.Phone) > maxPhoneLen {
		return 0, invalid("RM name or phone too long")
	}
	at := rm.CreatedAt
	if at.IsZero() {
		at = dbNow()
	}
	res, err := s.wdb.ExecContext(ctx, `INSERT INTO rms (username, name, phone, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		rm.Username, rm.Name, rm.Phone, role, rm.PasswordHash, s.tv(at))
	if err != nil {
		if uniqueViolation(err) {
			return 0, fmt.Errorf("RM %q: %w", rm.Username, ErrExists)
		}
		return 0, err
	}
	return res.LastInsertId()
}

const rmCols = `id, username, name, phone, role, password_hash, created_at`

func (s *store) rmWhere(ctx context.Context, what, where string, arg any) (*RM, error) {
	var rm RM
	err := s.rdb.QueryRowContext(ctx, `SELECT `+rmCols+` FROM rms WHERE `+where, arg).Scan(
		&rm.ID, &rm.Username, &rm.Name, &rm.Phone, &rm.Role, &rm.PasswordHash, scanTime{&rm.CreatedAt})
	if err != nil {
		return nil, notFound(err, what)
	}
	return &rm, nil
}

func (s *store) RMByUsername(ctx context.Context, username string) (*RM, error) {
	return s.rmWhere(ctx, "RM "+username, `username = ?`, username)
}

func (s *store) RMByID(ctx context.Context, id int64) (*RM, error) {
	return s.rmWhere(ctx, fmt.Sprintf("RM %d", id), `id = ?`, id)
}

// ListRMs lists every RM and supervisor by username, at most limit
// (default 100, at most 10000).
func (s *store) ListRMs(ctx context.Context, limit int) ([]RM, error) {
	return queryList(ctx, s, func(r rowScanner, rm *RM) error {
		return r.Scan(&rm.ID, &rm.Username, &rm.Name, &rm.Phone, &rm.Role, &rm.PasswordHash, scanTime{&rm.CreatedAt})
	}, `SELECT `+rmCols+` FROM rms ORDER BY username LIMIT ?`, listLimit(limit))
}

func (s *store) CountRMs(ctx context.Context) (int64, error) {
	var n int64
	err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM rms`).Scan(&n)
	return n, err
}

func (s *store) OpenConversationCounts(ctx context.Context, rmIDs []int64) (map[int64]int64, error) {
	out := make(map[int64]int64, len(rmIDs))
	for _, id := range rmIDs {
		out[id] = 0
	}
	const chunk = 500
	for len(rmIDs) > 0 {
		n := min(len(rmIDs), chunk)
		part := rmIDs[:n]
		rmIDs = rmIDs[n:]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		rows, err := s.rdb.QueryContext(ctx, `SELECT assigned_rm_id, COUNT(*) FROM conversations
			WHERE assigned_rm_id IN (?`+strings.Repeat(", ?", len(part)-1)+`) GROUP BY assigned_rm_id`, args...)
		if err != nil {
			return nil, err
		}
		if err := scanCounts(rows, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func scanCounts(rows *sql.Rows, out map[int64]int64) error {
	defer rows.Close()
	for rows.Next() {
		var id, count int64
		if err := rows.Scan(&id, &count); err != nil {
			return err
		}
		out[id] = count
	}
	return rows.Err()
}

// Conversations.

func (s *store) ConversationByKey(ctx context.Context, key ConversationKey) (*Conversation, error) {
	c, err := scanConversation(s.rdb.QueryRowContext(ctx, `SELECT `+conversationCols+` FROM `+conversationFrom+`
		WHERE c.channel = ? AND c.business_number = ? AND ct.phone = ?`, key.Channel, key.BusinessNumber, key.ContactPhone))
	if err != nil {
		return nil, notFound(err, "conversation "+key.String())
	}
	return c, nil
}

func (s *store) ConversationByID(ctx context.Context, id int64) (*Conversation, error) {
	c, err := scanConversation(s.rdb.QueryRowContext(ctx, `SELECT `+conversationCols+` FROM `+conversationFrom+` WHERE c.id = ?`, id))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("conversation %d", id))
	}
	return c, nil
}

func (s *store) ContactByPhone(ctx context.Context, phone string) (*Contact, error) {
	var c Contact
	err := s.rdb.QueryRowContext(ctx, `SELECT id, phone, name, owner_rm_id, created_at FROM contacts WHERE phone = ?`, phone).
		Scan(&c.ID, &c.Phone, &c.Name, scanInt{&c.OwnerRMID}, scanTime{&c.CreatedAt})
	if err != nil {
		return nil, notFound(err, "contact "+phone)
	}
	return &c, nil
}

// unreadExpr counts the inbound messages after the latest outbound one (the
// RM's last reply marks everything before it as read). Both subqueries are
// range scans of messages_conversation_dir_seq.
const unreadExpr = `(SELECT COUNT(*) FROM messages mi
	WHERE mi.conversation_id = c.id AND mi.direction = 'in'
	AND mi.seq > COALESCE((SELECT MAX(mo.seq) FROM messages mo WHERE mo.conversation_id = c.id AND mo.direction = 'out'), 0))`

func (s *store) ListConversations(ctx context.Context, rmID int64, limit int) ([]ConversationSummary, error) {
	// The last message: one probe of messages_conversation_seq per row.
	q := `SELECT ` + conversationCols + `, ` + unreadExpr + `, ` + messageCols + ` FROM ` + conversationFrom + `
		LEFT JOIN messages m ON m.id = (SELECT mx.id FROM messages mx WHERE mx.conversation_id = c.id ORDER BY mx.seq DESC LIMIT 1)`
	args := []any{}
	if rmID != 0 {
		q += ` WHERE c.assigned_rm_id = ?`
		args = append(args, rmID)
	}
	// Conversations without a message yet (NULL) come last in both dialects.
	q += ` ORDER BY c.last_message_at DESC, c.id DESC LIMIT ?`
	args = append(args, listLimit(limit))
	return queryList(ctx, s, func(r rowScanner, cs *ConversationSummary) error {
		var mr messageRow
		if err := r.Scan(append(append(conversationDest(&cs.Conversation), &cs.UnreadCount), mr.dest()...)...); err != nil {
			return err
		}
		m, err := mr.message()
		if err != nil {
			return err
		}
		cs.LastMessage = m
		cs.ContactPhone = cs.Key.ContactPhone
		return nil
	}, q, args...)
}

func (s *store) UnassignedConversations(ctx context.Context, limit int) ([]Conversation, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+conversationCols+` FROM `+conversationFrom+`
		WHERE c.assigned_rm_id IS NULL ORDER BY c.id LIMIT ?`, listLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Conversation
	for rows.Next() {
		c, err := scanConversation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	return out, rows.Err()
}

// Messages and events.

func (s *store) MessageByProviderID(ctx context.Context, providerMessageID string) (*Message, error) {
	m, err := scanMessage(s.rdb.QueryRowContext(ctx, `SELECT `+messageCols+` FROM messages m
		WHERE m.provider_message_id = ? ORDER BY m.id LIMIT 1`, providerMessageID))
	if err != nil {
		return nil, notFound(err, "message "+providerMessageID)
	}
	return m, nil
}

func (s *store) MessageByID(ctx context.Context, id int64) (*Message, error) {
	m, err := scanMessage(s.rdb.QueryRowContext(ctx, `SELECT `+messageCols+` FROM messages m WHERE m.id = ?`, id))
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("message %d", id))
	}
	return m, nil
}

func (s *store) ConversationEvents(ctx context.Context, conversationID, afterSeq int64, limit int) ([]EventRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, eventRecordQuery+`
		WHERE e.conversation_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?`, conversationID, afterSeq, listLimit(limit))
	if err != nil {
		return nil, err
	}
	return scanEventRecords(rows)
}

func (s *store) ConversationEventsBefore(ctx context.Context, conversationID, beforeSeq int64, limit int) ([]EventRecord, error) {
	rows, err := s.rdb.QueryContext(ctx, eventRecordQuery+`
		WHERE e.conversation_id = ? AND e.seq < ? ORDER BY e.seq DESC LIMIT ?`, conversationID, beforeSeq, listLimit(limit))
	if err != nil {
		return nil, err
	}
	recs, err := scanEventRecords(rows)
	slices.Reverse(recs)
	return recs, err
}

func (s *store) EventsAfter(ctx context.Context, rmID, afterID int64, limit int) ([]EventRecord, error) {
	q := eventRecordQuery + ` WHERE e.id > ?`
	args := []any{afterID}
	if rmID != 0 {
		// Assignment as it is now: an RM resuming sees the whole history of
		// the conversations it holds, none of those it no longer holds.
		q += ` AND c.assigned_rm_id = ?`
		args = append(args, rmID)
	}
	q += ` ORDER BY e.id LIMIT ?`
	args = append(args, listLimit(limit))
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return scanEventRecords(rows)
}

func (s *store) PendingOutbound(ctx context.Context, limit int) ([]OutboundPending, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+messageCols+`, `+conversationCols+`
		FROM messages m
		JOIN conversations c ON c.id = m.conversation_id
		JOIN contacts ct ON ct.id = c.contact_id
		WHERE m.status = ? AND m.direction = ? AND m.provider_message_id IS NULL
		ORDER BY m.id LIMIT ?`, StatusQueued, DirectionOut, listLimit(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []OutboundPending
	for rows.Next() {
		var p OutboundPending
		var mr messageRow
		if err := rows.Scan(append(mr.dest(), conversationDest(&p.Conversation)...)...); err != nil {
			return nil, err
		}
		m, err := mr.message()
		if err != nil {
			return nil, err
		}
		p.Message = *m
		p.ContactPhone = p.Conversation.Key.ContactPhone
		out = append(out, p)
	}
	return out, rows.Err()
}

// Webhook log.

func (s *store) WebhookLogByID(ctx context.Context, id int64) (*WebhookLog, error) {
	var l WebhookLog
	err := s.rdb.QueryRowContext(ctx, `SELECT id, provider, path, headers, body, received_at, outcome FROM webhook_log WHERE id = ?`, id).
		Scan(&l.ID, &l.Provider, &l.Path, scanJSON{(*[]byte)(&l.Headers)}, scanJSON{&l.Body}, scanTime{&l.ReceivedAt}, &l.Outcome)
	if err != nil {
		return nil, notFound(err, fmt.Sprintf("webhook log %d", id))
	}
	return &l, nil
}
