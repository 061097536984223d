package persistence

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
)

// batchState is what one attempt of a batch transaction shares between its
// writes, so that a batch costs a few statements per table instead of a few
// per write:
//   - the conversations the batch locked and changed (one SELECT ... FOR
//     UPDATE for all the writes that name their conversation by id, one
//     UPDATE for all the conversations that changed, at the end);
//   - the provider ids of the batch's inbound messages that already exist
//     (one SELECT; a redelivery is then read in full, a new message is not);
//   - messages, events and outbox rows, inserted with one multi-row INSERT
//     each at the end (ids of a multi-row INSERT are consecutive, see
//     seqIDs); a statement a write runs itself first inserts the pending
//     messages (txn.pending), so that its reads see them;
//   - webhook log rows (one multi-row INSERT) and webhook outcomes (one
//     UPDATE per distinct outcome), written after them in that order.
//
// Pending rows are flushed before any op that is neither a conversation
// write nor a webhook log op (it reads the database directly), and before
// COMMIT. A failing flush
// cannot name the write at fault: the batch then falls back to single
// writes, where it can. The state is built again on every attempt.
type batchState struct {
	convs   map[int64]*Conversation // locked conversations, as the batch left them
	byKey   map[ConversationKey]*Conversation
	dirty   []*Conversation // conversations to write back, in first-change order
	isDirty map[int64]bool

	// queried holds the channel+provider id keys looked up before the
	// writes ran; known those that exist (in the database or in this batch).
	queried map[string]bool
	known   map[string]bool

	// messages wait for the flush (ids set then); every other statement of
	// a write flushes them first (txn.pending), so reads see them.
	messages []pendingMessage
	events   []*Event
	// eventMsgs[i] is the pending message of events[i] (nil for none): its
	// id becomes the event's message_id at the flush.
	eventMsgs []*Message
	outbox    []pendingOutbox

	hooks    []pendingHook
	outcomes []pendingOutcome
}

// pendingMessage is a message row waiting for the flush, which sets m.ID.
type pendingMessage struct {
	m    *Message
	args []any
	size int // bytes of its variable-length values
}

// pendingOutbox is an outbox row waiting for the flush. data, when set,
// makes the row's data (args[4]) at the flush: the data of a new message
// carries the message's id, known only then.
type pendingOutbox struct {
	args []any
	data func() any
}

// flushError is a failed flush in the middle of a write: the rows at fault
// may belong to an earlier write of the batch, so the failure is the batch's
// (writeCaused says no), not the current write's.
type flushError struct{ err error }

func (e flushError) Error() string { return "flush: " + e.err.Error() }
func (e flushError) Unwrap() error { return e.err }

// pendingHook is a webhook log row waiting for the flush, which sets *id.
type pendingHook struct {
	args []any // provider, path, headers, body, received_at, outcome
	size int   // bytes of its variable-length values
	id   *int64
}

// pendingOutcome is a webhook outcome update waiting for the flush. before
// counts the log rows the batch had queued (since the last flush) when the
// update was queued: a row queued later did not exist yet when the update
// was due, so the update must not reach it.
type pendingOutcome struct {
	id      int64
	outcome string
	before  int
}

// batched reports ops that queue their rows in the batch state instead of
// reading the database directly (they need no flush before them).
func batched(k opKind) bool {
	return k == opConversationWrite || k == opWebhookLog || k == opWebhookOutcome
}

func newBatchState() *batchState {
	return &batchState{
		convs:   map[int64]*Conversation{},
		byKey:   map[ConversationKey]*Conversation{},
		isDirty: map[int64]bool{},
		queried: map[string]bool{},
		known:   map[string]bool{},
	}
}

func pidKey(channel, pid string) string { return channel + "\x00" + pid }

// forget drops the cached conversations (after a flush, before an op that
// may change conversations behind the cache).
func (b *batchState) forget() {
	clear(b.convs)
	clear(b.byKey)
}

// cache records c (a copy) as the batch's view of its conversation and
// returns the cached pointer.
func (b *batchState) cache(c *Conversation) *Conversation {
	cp := *c
	b.convs[c.ID] = &cp
	b.byKey[c.Key] = &cp
	return &cp
}

// changed stores the conversation as a write left it; changedRow says that
// its row must be written back.
func (b *batchState) changed(cached *Conversation, conv *Conversation, changedRow bool) {
	*cached = *conv
	if changedRow && !b.isDirty[conv.ID] {
		b.isDirty[conv.ID] = true
		b.dirty = append(b.dirty, cached)
	}
	// Other conversations of the same contact see its new fields.
	for _, c := range b.convs {
		if c != cached && c.ContactID == conv.ContactID {
			c.ContactName, c.OwnerRMID, c.SMSOptedOut = conv.ContactName, conv.OwnerRMID, conv.SMSOptedOut
		}
	}
}

const prefetchChunk = 500

// prefetch locks the conversations the batch's writes name by id and looks
// up which of their inbound provider ids already exist.
func (s *store) prefetch(ctx context.Context, tx *sql.Tx, b *batchState, ops []*op) error {
	var ids []any
	seen := map[int64]bool{}
	for _, o := range ops {
		if o.kind == opConversationWrite && o.w.ConversationID > 0 && !seen[o.w.ConversationID] {
			seen[o.w.ConversationID] = true
			ids = append(ids, o.w.ConversationID)
		}
	}
	forUpdate := ""
	if s.dialect == dialectMySQL {
		forUpdate = " FOR UPDATE"
	}
	for len(ids) > 0 {
		n := min(len(ids), prefetchChunk)
		rows, err := tx.QueryContext(ctx, `SELECT `+conversationCols+` FROM `+conversationFrom+
			` WHERE c.id IN (`+placeholders(n)+`) ORDER BY c.id`+forUpdate, ids[:n]...)
		if err != nil {
			return err
		}
		for rows.Next() {
			c := &Conversation{}
			if err := rows.Scan(conversationDest(c)...); err != nil {
				rows.Close()
				return err
			}
			b.cache(c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		ids = ids[n:]
	}

	var pids []any
	for _, o := range ops {
		if o.kind != opConversationWrite {
			continue
		}
		channel := o.w.Key.Channel
		if o.w.ConversationID > 0 {
			c, ok := b.convs[o.w.ConversationID]
			if !ok {
				continue
			}
			channel = c.Key.Channel
		}
		for _, it := range o.w.Items {
			if it.Kind != ItemInbound || it.Message == nil || it.Message.ProviderMessageID == "" {
				continue
			}
			k := pidKey(channel, it.Message.ProviderMessageID)
			if !b.queried[k] {
				b.queried[k] = true
				pids = append(pids, it.Message.ProviderMessageID)
			}
		}
	}
	for len(pids) > 0 {
		n := min(len(pids), prefetchChunk)
		rows, err := tx.QueryContext(ctx, `SELECT provider_message_id, channel FROM messages
			WHERE provider_message_id IN (`+placeholders(n)+`)`, pids[:n]...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var pid, channel string
			if err := rows.Scan(&pid, &channel); err != nil {
				rows.Close()
				return err
			}
			b.known[pidKey(channel, pid)] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		pids = pids[n:]
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const flushChunk = 200

// flush writes the batch's pending rows: messages and events (ids set on
// the pending values), outbox rows, the changed conversations, webhook log
// rows and outcomes.
func (s *store) flush(ctx context.Context, tx *sql.Tx, b *batchState) error {
	if err := s.flushMessages(ctx, tx, b); err != nil {
		return err
	}
	for len(b.events) > 0 {
		n := min(len(b.events), flushChunk)
		if !s.seqIDs {
			n = 1
		}
		evs := b.events[:n]
		args := make([]any, 0, 7*n)
		for i, ev := range evs {
			if m := b.eventMsgs[i]; m != nil {
				ev.MessageID = m.ID
			}
			args = append(args, ev.ConversationID, ev.Seq, ev.Type, nullID(ev.MessageID), ev.Status, jsonArg(ev.Detail), s.tv(ev.CreatedAt))
		}
		id, err := s.insertRows(ctx, tx, `INSERT INTO events (conversation_id, seq, type, message_id, status, detail, created_at) VALUES `, 7, n, args)
		if err != nil {
			return err
		}
		for i, ev := range evs {
			ev.ID = id + int64(i)
		}
		b.events = b.events[n:]
		b.eventMsgs = b.eventMsgs[n:]
	}
	for len(b.outbox) > 0 {
		n := min(len(b.outbox), flushChunk)
		args := make([]any, 0, 9*n)
		for _, r := range b.outbox[:n] {
			if r.data != nil {
				data, err := json.Marshal(r.data())
				if err != nil {
					return fmt.Errorf("outbox %v data: %w", r.args[1], err)
				}
				r.args[4] = string(data)
			}
			args = append(args, r.args...)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (event_id, type, conversation_id, occurred_at, data, state, attempts,
			next_attempt_at, expires_at, last_error, created_at)
			VALUES `+strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, 0, ?, ?, '', ?),", n), ","), args...); err != nil {
			return err
		}
		b.outbox = b.outbox[n:]
	}
	for len(b.dirty) > 0 {
		n := min(len(b.dirty), flushChunk)
		cs := b.dirty[:n]
		var q strings.Builder
		args := make([]any, 0, 9*n)
		q.WriteString(`UPDATE conversations SET `)
		for j, col := range []string{"last_seq", "last_message_at", "last_inbound_at", "assigned_rm_id"} {
			if j > 0 {
				q.WriteString(", ")
			}
			q.WriteString(col + ` = CASE id`)
			for _, c := range cs {
				q.WriteString(` WHEN ? THEN ?`)
				var v any
				switch j {
				case 0:
					v = c.LastSeq
				case 1:
					v = s.tv(c.LastMessageAt)
				case 2:
					v = s.tv(c.LastInboundAt)
				case 3:
					v = nullID(c.AssignedRMID)
				}
				args = append(args, c.ID, v)
			}
			q.WriteString(` END`)
		}
		q.WriteString(` WHERE id IN (` + placeholders(n) + `)`)
		for _, c := range cs {
			args = append(args, c.ID)
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return err
		}
		for _, c := range cs {
			delete(b.isDirty, c.ID)
		}
		b.dirty = b.dirty[n:]
	}
	return s.flushWebhooks(ctx, tx, b)
}

// messageInsert starts the multi-row insert of messages (pendingMessage.args in column order).
const messageInsert = `INSERT INTO messages (conversation_id, seq, direction, channel, type, text, media, template, payload,
	provider_message_id, client_msg_id, rm_id, status, error, provider_ts, created_at, updated_at) VALUES `

// flushMessages inserts the pending messages, as many per statement as the
// auto-increment mode and flushBytes allow, and sets their ids.
func (s *store) flushMessages(ctx context.Context, tx *sql.Tx, b *batchState) error {
	for len(b.messages) > 0 {
		ms := b.messages
		n := 1
		if s.seqIDs {
			n = chunk(len(ms), func(i int) int { return ms[i].size })
		}
		args := make([]any, 0, 17*n)
		for _, m := range ms[:n] {
			args = append(args, m.args...)
		}
		id, err := s.insertRows(ctx, tx, messageInsert, 17, n, args)
		if err != nil {
			return err
		}
		for i, m := range ms[:n] {
			m.m.ID = id + int64(i)
		}
		clear(ms[:n])
		b.messages = ms[n:]
	}
	return nil
}

// flushBytes bounds the variable-length values of one multi-row webhook
// statement, well under max_allowed_packet (MySQL 5.7's default is 4 MiB;
// escaping may double a blob). A larger row goes alone.
const flushBytes = 1 << 20

// chunk returns how many of the next rows (sizes by i) go in one statement:
// at least one, at most flushChunk, within flushBytes.
func chunk(n int, size func(i int) int) int {
	k, total := 0, 0
	for k < n && k < flushChunk {
		total += size(k)
		if k > 0 && total > flushBytes {
			break
		}
		k++
	}
	return k
}

// flushWebhooks inserts the pending webhook log rows (ids set through their
// pointers), then applies the pending outcomes with one UPDATE per chunk.
func (s *store) flushWebhooks(ctx context.Context, tx *sql.Tx, b *batchState) error {
	if len(b.hooks) == 0 && len(b.outcomes) == 0 {
		return nil
	}
	// inserted maps the id of each row inserted here to its queue position.
	var inserted map[int64]int
	if len(b.outcomes) > 0 && len(b.hooks) > 0 {
		inserted = make(map[int64]int, len(b.hooks))
	}
	for pos := 0; pos < len(b.hooks); {
		hs := b.hooks[pos:]
		n := 1
		if s.seqIDs {
			n = chunk(len(hs), func(i int) int { return hs[i].size })
		}
		args := make([]any, 0, 6*n)
		for _, h := range hs[:n] {
			args = append(args, h.args...)
		}
		id, err := s.insertRows(ctx, tx, `INSERT INTO webhook_log (provider, path, headers, body, received_at, outcome) VALUES `, 6, n, args)
		if err != nil {
			return err
		}
		for i, h := range hs[:n] {
			*h.id = id + int64(i)
			if inserted != nil {
				inserted[id+int64(i)] = pos + i
			}
		}
		pos += n
	}
	b.hooks = b.hooks[:0]

	// The last update of a row wins; an update queued before the row's
	// insert is dropped (it found no row when it was due).
	last := make(map[int64]int, len(b.outcomes))
	var ups []pendingOutcome
	for _, o := range b.outcomes {
		if at, ok := inserted[o.id]; ok && at >= o.before {
			continue
		}
		if i, ok := last[o.id]; ok {
			ups[i] = o
			continue
		}
		last[o.id] = len(ups)
		ups = append(ups, o)
	}
	b.outcomes = b.outcomes[:0]
	// One UPDATE per outcome (nearly every webhook of a batch ends
	// "processed"), not a CASE over every row.
	var order []string
	byOutcome := map[string][]any{}
	for _, o := range ups {
		if _, ok := byOutcome[o.outcome]; !ok {
			order = append(order, o.outcome)
		}
		byOutcome[o.outcome] = append(byOutcome[o.outcome], o.id)
	}
	for _, outcome := range order {
		ids := byOutcome[outcome]
		for len(ids) > 0 {
			n := min(len(ids), flushChunk)
			args := append([]any{outcome}, ids[:n]...)
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_log SET outcome = ? WHERE id IN (`+placeholders(n)+`)`, args...); err != nil {
				return err
			}
			ids = ids[n:]
		}
	}
	return nil
}

// insertRows runs head (an INSERT ending in VALUES) with n rows of cols
// values and returns the first row's id: the others follow it (seqIDs, or
// n is 1).
func (s *store) insertRows(ctx context.Context, tx *sql.Tx, head string, cols, n int, args []any) (int64, error) {
	res, err := tx.ExecContext(ctx, head+rowsOf(cols, n), args...)
	if err != nil {
		return 0, err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	if s.dialect == dialectSQLite {
		id -= int64(n - 1) // SQLite reports the last row's id, MySQL the first one's
	}
	return id, nil
}

// rowsOf returns n groups of cols placeholders for a multi-row VALUES.
func rowsOf(cols, n int) string {
	row := "(" + placeholders(cols) + ")"
	return strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

// autoincConsecutive reports whether a multi-row INSERT gets consecutive ids
// (InnoDB's "traditional" or "consecutive" lock mode; SQLite always, with its
// single writer).
func (s *store) autoincConsecutive(ctx context.Context) bool {
	if s.dialect == dialectSQLite {
		return true
	}
	var mode, step int
	if err := s.wdb.QueryRowContext(ctx, `SELECT @@innodb_autoinc_lock_mode, @@auto_increment_increment`).Scan(&mode, &step); err != nil {
		s.log.Warn().Err(err).Msg("cannot read innodb_autoinc_lock_mode; events inserted one by one")
		return false
	}
	if (mode != 0 && mode != 1) || step != 1 {
		s.log.Info().Int("innodb_autoinc_lock_mode", mode).Int("auto_increment_increment", step).Msg("interleaved auto-increment; events inserted one by one")
		return false
	}
	return true
}
