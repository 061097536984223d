package persistence

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// querier is what reads need: a pool (*sql.DB) or a transaction (*sql.Tx).
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type rowScanner interface {
	Scan(dest ...any) error
}

// sqliteTime is how times are written to SQLite: UTC, microseconds, fixed
// width, so that text order is time order (ORDER BY last_message_at).
const sqliteTime = "2006-01-02 15:04:05.000000"

// dbNow is the store's clock: UTC at the precision both databases keep, so a
// value returned by a write equals the value read back later.
func dbNow() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// tv encodes a time argument; the zero time is NULL.
func (s *store) tv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	t = normTime(t)
	if s.dialect == dialectSQLite {
		return t.Format(sqliteTime)
	}
	return t
}

// nullID encodes an optional reference: 0 is NULL.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// nullStr encodes an optional string: "" is NULL (so that unique keys over
// optional ids ignore rows without one).
func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// jsonArg encodes a JSON column: empty is NULL. It is passed as text, never
// as bytes: MySQL refuses JSON from a binary string.
func jsonArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// scanTime reads a time column of either dialect (time.Time from the
// drivers, or the text SQLite stored when the driver did not convert it).
// NULL is the zero time.
type scanTime struct{ t *time.Time }

func (d scanTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.t = time.Time{}
	case time.Time:
		*d.t = normTime(v)
	case string:
		return d.parse(v)
	case []byte:
		return d.parse(string(v))
	default:
		return fmt.Errorf("persistence: cannot read %T as a time", src)
	}
	return nil
}

func (d scanTime) parse(v string) error {
	for _, layout := range []string{sqliteTime, "2006-01-02 15:04:05.999999999", time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00"} {
		if t, err := time.Parse(layout, v); err == nil {
			*d.t = normTime(t)
			return nil
		}
	}
	return fmt.Errorf("persistence: cannot parse time %q", v)
}

// scanInt reads an integer column; NULL is 0.
type scanInt struct{ p *int64 }

func (d scanInt) Scan(src any) error {
	var n sql.NullInt64
	if err := n.Scan(src); err != nil {
		return err
	}
	*d.p = n.Int64
	return nil
}

// scanStr reads a text column; NULL is "".
type scanStr struct{ p *string }

func (d scanStr) Scan(src any) error {
	var n sql.NullString
	if err := n.Scan(src); err != nil {
		return err
	}
	*d.p = n.String
	return nil
}

// scanJSON reads a JSON column; NULL is nil.
type scanJSON struct{ p *[]byte }

func (d scanJSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.p = nil
	case []byte:
		*d.p = cloneBytes(v)
	case string:
		*d.p = cloneBytes([]byte(v))
	default:
		return fmt.Errorf("persistence: cannot read %T as JSON", src)
	}
	return nil
}

// Column lists and their scanners. Every scanner tolerates NULL, so the same
// code reads LEFT JOINed rows.

const messageCols = `m.id, m.conversation_id, m.seq, m.direction, m.channel, m.type, m.text,
	m.media, m.template, m.payload, m.provider_message_id, m.client_msg_id, m.rm_id, m.status,
	m.error, m.provider_ts, m.created_at, m.updated_at`

type messageRow struct {
	m               Message
	media, template []byte
	payload, errs   []byte
}

func (r *messageRow) dest() []any {
	m := &r.m
	return []any{scanInt{&m.ID}, scanInt{&m.ConversationID}, scanInt{&m.Seq}, scanStr{&m.Direction},
		scanStr{&m.Channel}, scanStr{&m.Type}, scanStr{&m.Text},
		scanJSON{&r.media}, scanJSON{&r.template}, scanJSON{&r.payload},
		scanStr{&m.ProviderMessageID}, scanStr{&m.ClientMsgID}, scanInt{&m.RMID}, scanStr{&m.Status},
		scanJSON{&r.errs}, scanTime{&m.ProviderTimestamp}, scanTime{&m.CreatedAt}, scanTime{&m.UpdatedAt}}
}

// message returns the scanned message, nil when the row had none (LEFT JOIN).
func (r *messageRow) message() (*Message, error) {
	if r.m.ID == 0 {
		return nil, nil
	}
	m := r.m
	if len(r.media) > 0 {
		if err := json.Unmarshal(r.media, &m.Media); err != nil {
			return nil, fmt.Errorf("persistence: message %d media: %w", m.ID, err)
		}
	}
	if len(r.template) > 0 {
		m.Template = new(Template)
		if err := json.Unmarshal(r.template, m.Template); err != nil {
			return nil, fmt.Errorf("persistence: message %d template: %w", m.ID, err)
		}
	}
	m.Payload = r.payload
	m.Error = r.errs
	return &m, nil
}

func scanMessage(row rowScanner) (*Message, error) {
	var r messageRow
	if err := row.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.message()
}

// conversationFrom is the FROM clause every conversation read uses: the
// contact carries the phone of the key, the name and the owner.
const conversationFrom = `conversations c JOIN contacts ct ON ct.id = c.contact_id`

const conversationCols = `c.id, c.channel, c.business_number, c.contact_id, ct.phone, ct.name,
	c.assigned_rm_id, ct.owner_rm_id, ct.sms_opted_out, c.last_seq, c.last_message_at, c.last_inbound_at, c.created_at`

func conversationDest(c *Conversation) []any {
	return []any{scanInt{&c.ID}, scanStr{&c.Key.Channel}, scanStr{&c.Key.BusinessNumber}, scanInt{&c.ContactID},
		scanStr{&c.Key.ContactPhone}, scanStr{&c.ContactName}, scanInt{&c.AssignedRMID}, scanInt{&c.OwnerRMID},
		&c.SMSOptedOut, scanInt{&c.LastSeq}, scanTime{&c.LastMessageAt}, scanTime{&c.LastInboundAt}, scanTime{&c.CreatedAt}}
}

func scanConversation(row rowScanner) (*Conversation, error) {
	var c Conversation
	if err := row.Scan(conversationDest(&c)...); err != nil {
		return nil, err
	}
	return &c, nil
}

const eventCols = `e.id, e.conversation_id, e.seq, e.type, e.message_id, e.status, e.detail, e.created_at`

func eventDest(e *Event) []any {
	return []any{scanInt{&e.ID}, scanInt{&e.ConversationID}, scanInt{&e.Seq}, scanStr{&e.Type},
		scanInt{&e.MessageID}, scanStr{&e.Status}, scanJSON{(*[]byte)(&e.Detail)}, scanTime{&e.CreatedAt}}
}

// eventRecordQuery selects events with their conversation, contact and the
// message's current row; callers add WHERE / ORDER BY / LIMIT.
const eventRecordQuery = `SELECT ` + eventCols + `, ` + conversationCols + `, ` + messageCols + `
	FROM events e
	JOIN conversations c ON c.id = e.conversation_id
	JOIN contacts ct ON ct.id = c.contact_id
	LEFT JOIN messages m ON m.id = e.message_id`

func scanEventRecords(rows *sql.Rows) ([]EventRecord, error) {
	defer rows.Close()
	var out []EventRecord
	for rows.Next() {
		var rec EventRecord
		var mr messageRow
		dest := append(eventDest(&rec.Event), conversationDest(&rec.Conversation)...)
		dest = append(dest, mr.dest()...)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		m, err := mr.message()
		if err != nil {
			return nil, err
		}
		rec.Message = m
		rec.ContactPhone = rec.Conversation.Key.ContactPhone
		rec.ContactName = rec.Conversation.ContactName
		out = append(out, rec)
	}
	return out, rows.Err()
}

// queryList runs a read query on the read pool and scans every row with
// scan (which fills the value it is given from the row).
func queryList[T any](ctx context.Context, s *store, scan func(rowScanner, *T) error, q string, args ...any) ([]T, error) {
	rows, err := s.rdb.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// into adapts a scanner that returns a new value to queryList.
func into[T any](scan func(rowScanner) (*T, error)) func(rowScanner, *T) error {
	return func(r rowScanner, dst *T) error {
		v, err := scan(r)
		if err == nil {
			*dst = *v
		}
		return err
	}
}
