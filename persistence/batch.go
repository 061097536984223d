package persistence

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// batchState is what one attempt of a batch transaction shares between its
// writes, so that a batch costs a few statements per table instead of a few
// per write:
//   - the conversations the batch locked and changed (one SELECT ... FOR
//     UPDATE for all the writes that name their conversation by id, or none
//     when they all come from the committed cache, convcache.go; one UPDATE
//     for all the conversations that changed, at the end);
//   - the provider ids of the batch's inbound messages that already exist
//     (one SELECT; a redelivery is then read in full, a new message is not);
//   - messages, events and outbox rows, inserted with one multi-row INSERT
//     each at the end (ids of a multi-row INSERT are consecutive, see
//     seqIDs); a statement a write runs itself first inserts the pending
//     messages (txn.pending), so that its reads see them;
//   - webhook outcomes (one UPDATE per distinct outcome) and webhook log
//     rows (one multi-row INSERT), written after them in that order.
//
// Pending rows are flushed before any op that is neither a conversation
// write nor a webhook log op (it reads the database directly), and before
// COMMIT. A failing flush
// cannot name the write at fault: the batch then falls back to single
// writes, where it can. The state is built again on every attempt.
type batchState struct {
	convs map[int64]*Conversation // locked conversations, as the batch left them
	byKey map[ConversationKey]*Conversation
	// absent holds the keys the prefetch looked up and did not find (the
	// write creates the conversation without looking again).
	absent map[ConversationKey]bool
	// contacts holds the contacts of the phones the prefetch looked up, as
	// the database had them (nil: no such contact); a phone that is not a
	// key was not looked up, or its contact changed since.
	contacts map[string]*contactRow
	dirty    []*Conversation // conversations to write back, in first-change order
	isDirty  map[int64]bool

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

	// forgotten holds the conversations forget dropped: they leave the
	// committed cache when the batch commits.
	forgotten []int64

	// The existing messages the batch changes (msgbatch.go).
	msgState
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

// pendingOutcome is a webhook outcome update waiting for the flush. It is
// for a row committed before it was queued (a caller learns a row's id once
// its batch committed): the flush applies outcomes before it inserts the
// batch's own log rows.
type pendingOutcome struct {
	id      int64
	outcome string
}

// batched reports ops that queue their rows in the batch state instead of
// reading the database directly (they need no flush before them).
func batched(k opKind) bool {
	return k == opConversationWrite || k == opWebhookLog || k == opWebhookOutcome
}

// contactRow is a contact as createConversation needs it.
type contactRow struct {
	id, ownerRMID int64
	name          string
	smsOptedOut   bool
}

func newBatchState() *batchState {
	return &batchState{
		convs:    map[int64]*Conversation{},
		byKey:    map[ConversationKey]*Conversation{},
		absent:   map[ConversationKey]bool{},
		contacts: map[string]*contactRow{},
		isDirty:  map[int64]bool{},
		queried:  map[string]bool{},
		known:    map[string]bool{},
		msgState: newMsgState(),
	}
}

func pidKey(channel, pid string) string { return channel + "\x00" + pid }

// forget drops the cached conversations (after a flush, before an op that
// may change conversations behind the cache).
func (b *batchState) forget() {
	for id := range b.convs {
		b.forgotten = append(b.forgotten, id)
	}
	clear(b.convs)
	clear(b.byKey)
	clear(b.absent)
	clear(b.contacts)
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
// up which of their inbound provider ids already exist. A scripted
// transaction sends BEGIN and both lookups in one request. With fromCache
// (every conversation is in the committed cache, convcache.go) it reads
// nothing: the conversations come from the cache and every provider id
// counts as new.
func (s *store) prefetch(ctx context.Context, tx *batchTx, b *batchState, ops []*op, fromCache bool) error {
	var ids, pids, phones []any
	seen := map[int64]bool{}
	seenPID := map[string]bool{}
	keys := map[ConversationKey]bool{}
	seenPhone := map[string]bool{}
	for _, o := range ops {
		if o.kind != opConversationWrite {
			continue
		}
		if id := o.w.ConversationID; id > 0 && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		if o.w.ConversationID == 0 && validateWrite(o.w) == nil {
			keys[o.w.Key] = true
			if p := o.w.Key.ContactPhone; !seenPhone[p] {
				seenPhone[p] = true
				phones = append(phones, p)
			}
		}
		for _, it := range o.w.Items {
			if pid := inboundPID(it); pid != "" && !seenPID[pid] {
				seenPID[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	if fromCache {
		for _, id := range ids {
			b.cache(s.convs.get(id.(int64)))
		}
		ids, pids = nil, nil
	}
	forUpdate := ""
	if s.dialect == dialectMySQL {
		forUpdate = " FOR UPDATE"
	}
	var lookups []lookup
	for len(ids) > 0 {
		n := min(len(ids), prefetchChunk)
		lookups = append(lookups, lookup{
			query: `SELECT ` + conversationCols + ` FROM ` + conversationFrom + ` WHERE c.id IN (` + placeholders(n) + `) ORDER BY c.id` + forUpdate,
			args:  ids[:n],
			scan: func(rows *sql.Rows) error {
				c := &Conversation{}
				if err := rows.Scan(conversationDest(c)...); err != nil {
					return err
				}
				b.cache(c)
				return nil
			},
		})
		ids = ids[n:]
	}
	// The conversations the writes name by key, and their contacts: a new
	// contact's first message then costs its two inserts only.
	for len(phones) > 0 {
		n := min(len(phones), prefetchChunk)
		lookups = append(lookups, lookup{
			query: `SELECT ` + conversationCols + ` FROM ` + conversationFrom + ` WHERE ct.phone IN (` + placeholders(n) + `) ORDER BY c.id` + forUpdate,
			args:  phones[:n],
			scan: func(rows *sql.Rows) error {
				c := &Conversation{}
				if err := rows.Scan(conversationDest(c)...); err != nil {
					return err
				}
				if keys[c.Key] && b.convs[c.ID] == nil {
					b.cache(c)
				}
				return nil
			},
		}, lookup{
			query: `SELECT id, phone, name, owner_rm_id, sms_opted_out FROM contacts WHERE phone IN (` + placeholders(n) + `)` + forUpdate,
			args:  phones[:n],
			scan: func(rows *sql.Rows) error {
				var c contactRow
				var phone string
				if err := rows.Scan(scanInt{&c.id}, &phone, scanStr{&c.name}, scanInt{&c.ownerRMID}, &c.smsOptedOut); err != nil {
					return err
				}
				b.contacts[phone] = &c
				return nil
			},
		})
		for _, p := range phones[:n] {
			b.contacts[p.(string)] = nil // the scan fills those that exist
		}
		phones = phones[n:]
	}
	for len(pids) > 0 {
		n := min(len(pids), prefetchChunk)
		lookups = append(lookups, lookup{
			query: `SELECT provider_message_id, channel FROM messages WHERE provider_message_id IN (` + placeholders(n) + `)`,
			args:  pids[:n],
			scan: func(rows *sql.Rows) error {
				var pid, channel string
				if err := rows.Scan(&pid, &channel); err != nil {
					return err
				}
				b.known[pidKey(channel, pid)] = true
				return nil
			},
		})
		pids = pids[n:]
	}
	lookups = append(lookups, messageLookups(b, ops, !fromCache)...)
	if fromCache {
		markClients(b, ops)
	}
	if err := runLookups(ctx, tx, lookups); err != nil {
		return err
	}
	for k := range keys {
		if b.byKey[k] == nil {
			b.absent[k] = true
		}
	}
	// The ids looked up, by the channel of the conversation they go to.
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
			if pid := inboundPID(it); pid != "" {
				b.queried[pidKey(channel, pid)] = true
			}
		}
	}
	return nil
}

// inboundPID is the provider id an item's dedupe looks up ("" for none).
func inboundPID(it WriteItem) string {
	if it.Kind != ItemInbound || it.Message == nil {
		return ""
	}
	return it.Message.ProviderMessageID
}

// lookup is one SELECT of the prefetch and what reads each of its rows.
type lookup struct {
	query string
	args  []any
	scan  func(*sql.Rows) error
}

// runLookups runs the lookups: in one request (after BEGIN) when tx is
// scripted, one by one otherwise.
func runLookups(ctx context.Context, tx *batchTx, lookups []lookup) error {
	if len(lookups) == 0 {
		return nil
	}
	if !tx.scripted() {
		for _, l := range lookups {
			if err := readRows(ctx, tx, l.query, l.args, l.scan); err != nil {
				return err
			}
		}
		return nil
	}
	q := []byte(tx.lead())
	for i, l := range lookups {
		if i > 0 {
			q = append(q, ";\n"...)
		}
		var err error
		if q, err = interpolate(q, l.query, l.args); err != nil {
			return err
		}
	}
	tx.requests.Add(1)
	rows, err := tx.conn.QueryContext(ctx, string(q))
	if err != nil {
		return err
	}
	defer rows.Close()
	for i, l := range lookups {
		if i > 0 && !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return err
			}
			return fmt.Errorf("prefetch: result %d of %d missing", i+1, len(lookups))
		}
		for rows.Next() {
			if err := l.scan(rows); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
	}
	return rows.Close()
}

func readRows(ctx context.Context, tx *batchTx, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

const flushChunk = 200

// flush writes the batch's pending rows: messages and events (ids set on
// the pending values), outbox rows, the changed conversations, webhook log
// rows and outcomes. A scripted transaction sends them in one request
// (script.go), with COMMIT when commit is set; otherwise commit is the
// caller's (batchTx.commit).
func (s *store) flush(ctx context.Context, tx *batchTx, b *batchState, commit bool) error {
	if tx.scripted() {
		return s.flushScript(ctx, tx, b, commit)
	}
	if err := s.flushMessages(ctx, tx, b); err != nil {
		return err
	}
	for len(b.events) > 0 {
		n := min(len(b.events), flushChunk)
		if !s.seqIDs {
			n = 1
		}
		evs := b.events[:n]
		for i, ev := range evs {
			if m := b.eventMsgs[i]; m != nil {
				ev.MessageID = m.ID
			}
		}
		query, args := s.eventsInsert(evs, nil, nil)
		id, err := s.insertRows(ctx, tx, query, args, n)
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
		query, args, _, err := outboxInsert(b.outbox[:n])
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return err
		}
		b.outbox = b.outbox[n:]
	}
	for len(b.dirty) > 0 {
		n := min(len(b.dirty), flushChunk)
		query, args := s.conversationsUpdate(b.dirty[:n])
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return err
		}
		b.clean(n)
	}
	for _, st := range s.messageStatements(b) {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return err
		}
	}
	return s.flushWebhooks(ctx, tx, b)
}

// flushScript is flush in one request (two when outbox rows need the ids of
// new messages first), more when the rows exceed flushBytes.
func (s *store) flushScript(ctx context.Context, tx *batchTx, b *batchState, commit bool) error {
	sc := &s.sc
	sc.reset()
	sc.vars = 0
	// add sends what the script holds first when st would take it over
	// flushBytes (one statement alone may: chunk bounds it).
	add := func(size int, st func()) error {
		if !sc.empty() && sc.size+size > flushBytes {
			if err := sc.run(ctx, tx, false); err != nil {
				return err
			}
		}
		st()
		return nil
	}
	// inScript maps a message inserted by the script to its INSERT and its
	// row in it.
	type scriptRow struct {
		insert *scriptID
		row    int
	}
	inScript := map[*Message]scriptRow{}
	for len(b.messages) > 0 {
		ms := b.messages
		n, args, size := nextRows(ms, true, s.rowArgs)
		s.rowArgs = args
		msgs := make([]*Message, n)
		for i, m := range ms[:n] {
			msgs[i] = m.m
		}
		if err := add(size, func() {
			v := sc.insert(messageInsert+rowsOf(17, n), size, args, func(first int64) {
				for i, m := range msgs {
					m.ID = first + int64(i)
				}
			})
			for i, m := range msgs {
				inScript[m] = scriptRow{v, i}
			}
		}); err != nil {
			return err
		}
		clear(ms[:n])
		b.messages = ms[n:]
	}
	for len(b.events) > 0 {
		n := min(len(b.events), flushChunk)
		evs, msgs := b.events[:n], b.eventMsgs[:n]
		query, args := s.eventsInsert(evs, msgs, func(m *Message) (string, bool) {
			r, ok := inScript[m]
			if !ok {
				return "", false
			}
			return r.insert.idExpr() + "+" + strconv.Itoa(r.row), true
		})
		if err := add(0, func() {
			sc.insert(query, 0, args, func(first int64) {
				for i, ev := range evs {
					ev.ID = first + int64(i)
					if m := msgs[i]; m != nil {
						ev.MessageID = m.ID
					}
				}
			})
		}); err != nil {
			return err
		}
		b.events = b.events[n:]
		b.eventMsgs = b.eventMsgs[n:]
	}
	if len(b.outbox) > 0 && len(sc.ids) > 0 {
		// The data of a new message's outbox row carries the message's id:
		// the ids first.
		if err := sc.run(ctx, tx, false); err != nil {
			return err
		}
	}
	for len(b.outbox) > 0 {
		n := min(len(b.outbox), flushChunk)
		query, args, size, err := outboxInsert(b.outbox[:n])
		if err != nil {
			return err
		}
		if err := add(size, func() { sc.add(query, size, args...) }); err != nil {
			return err
		}
		b.outbox = b.outbox[n:]
	}
	for len(b.dirty) > 0 {
		n := min(len(b.dirty), flushChunk)
		query, args := s.conversationsUpdate(b.dirty[:n])
		if err := add(0, func() { sc.add(query, 0, args...) }); err != nil {
			return err
		}
		b.clean(n)
	}
	for _, st := range s.messageStatements(b) {
		if err := add(0, func() { sc.add(st.query, 0, st.args...) }); err != nil {
			return err
		}
	}
	// Outcomes before the log rows (pendingOutcome).
	for _, st := range outcomeUpdates(b.outcomes) {
		if err := add(0, func() { sc.add(st.query, 0, st.args...) }); err != nil {
			return err
		}
	}
	b.outcomes = b.outcomes[:0]
	for pos := 0; pos < len(b.hooks); {
		hs := b.hooks[pos:]
		n, args, size := nextRows(hs, true, s.rowArgs)
		s.rowArgs = args
		ptrs := make([]*int64, n)
		for i, h := range hs[:n] {
			ptrs[i] = h.id
		}
		if err := add(size, func() {
			sc.insert(webhookLogInsert+rowsOf(6, n), size, args, func(first int64) {
				for i, p := range ptrs {
					*p = first + int64(i)
				}
			})
		}); err != nil {
			return err
		}
		pos += n
	}
	b.hooks = b.hooks[:0]
	return sc.run(ctx, tx, commit)
}

// clean drops the first n conversations to write back (written).
func (b *batchState) clean(n int) {
	for _, c := range b.dirty[:n] {
		delete(b.isDirty, c.ID)
	}
	b.dirty = b.dirty[n:]
}

// eventsInsert is the multi-row INSERT of evs. In a script, the message of
// evs[i] (msgs[i]) may be one the script inserts: its id is then the SQL
// idSQL gives.
func (s *store) eventsInsert(evs []*Event, msgs []*Message, idSQL func(*Message) (string, bool)) (string, []any) {
	var q strings.Builder
	q.WriteString(`INSERT INTO events (conversation_id, seq, type, message_id, status, detail, created_at) VALUES `)
	args := make([]any, 0, 7*len(evs))
	for i, ev := range evs {
		if i > 0 {
			q.WriteString(",")
		}
		msgID := nullID(ev.MessageID)
		if msgs != nil && msgs[i] != nil {
			msgID = nullID(msgs[i].ID)
			if v, ok := idSQL(msgs[i]); ok {
				q.WriteString("(?, ?, ?, " + v + ", ?, ?, ?)")
				args = append(args, ev.ConversationID, ev.Seq, ev.Type, ev.Status, jsonArg(ev.Detail), s.tv(ev.CreatedAt))
				continue
			}
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		args = append(args, ev.ConversationID, ev.Seq, ev.Type, msgID, ev.Status, jsonArg(ev.Detail), s.tv(ev.CreatedAt))
	}
	return q.String(), args
}

// outboxInsert is the multi-row INSERT of rs, whose lazy data is made now,
// and the bytes of that data.
func outboxInsert(rs []pendingOutbox) (string, []any, int, error) {
	args := make([]any, 0, 9*len(rs))
	size := 0
	for _, r := range rs {
		if r.data != nil {
			data, err := json.Marshal(r.data())
			if err != nil {
				return "", nil, 0, fmt.Errorf("outbox %v data: %w", r.args[1], err)
			}
			r.args[4] = string(data)
		}
		if d, ok := r.args[4].(string); ok {
			size += len(d)
		}
		args = append(args, r.args...)
	}
	return `INSERT INTO outbox (event_id, type, conversation_id, occurred_at, data, state, attempts,
			next_attempt_at, expires_at, last_error, created_at)
			VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, 0, ?, ?, '', ?),", len(rs)), ","), args, size, nil
}

// conversationsUpdate writes back the state of cs in one UPDATE.
func (s *store) conversationsUpdate(cs []*Conversation) (string, []any) {
	return caseUpdate("conversations", []string{"last_seq", "last_message_at", "last_inbound_at", "assigned_rm_id"}, len(cs),
		func(i int) int64 { return cs[i].ID },
		func(i, col int) any {
			c := cs[i]
			switch col {
			case 0:
				return c.LastSeq
			case 1:
				return s.tv(c.LastMessageAt)
			case 2:
				return s.tv(c.LastInboundAt)
			}
			return nullID(c.AssignedRMID)
		})
}

// caseUpdate is one UPDATE of n rows of table, by id: each of cols set to
// value(row, col) through a CASE on the id.
func caseUpdate(table string, cols []string, n int, id func(row int) int64, value func(row, col int) any) (string, []any) {
	var q strings.Builder
	args := make([]any, 0, (2*len(cols)+1)*n)
	q.WriteString(`UPDATE ` + table + ` SET `)
	for j, col := range cols {
		if j > 0 {
			q.WriteString(", ")
		}
		q.WriteString(col + ` = CASE id`)
		for i := range n {
			q.WriteString(` WHEN ? THEN ?`)
			args = append(args, id(i), value(i, j))
		}
		q.WriteString(` END`)
	}
	q.WriteString(` WHERE id IN (` + placeholders(n) + `)`)
	for i := range n {
		args = append(args, id(i))
	}
	return q.String(), args
}

// messageInsert starts the multi-row insert of messages (pendingMessage.args in column order).
const messageInsert = `INSERT INTO messages (conversation_id, seq, direction, channel, type, text, media, template, payload,
	provider_message_id, client_msg_id, rm_id, status, error, provider_ts, created_at, updated_at) VALUES `

// webhookLogInsert starts the multi-row insert of webhook log rows (pendingHook.args).
const webhookLogInsert = `INSERT INTO webhook_log (provider, path, headers, body, received_at, outcome) VALUES `

// flushMessages inserts the pending messages, as many per statement as the
// auto-increment mode and flushBytes allow, and sets their ids.
func (s *store) flushMessages(ctx context.Context, tx *batchTx, b *batchState) error {
	for len(b.messages) > 0 {
		ms := b.messages
		n, args, _ := nextRows(ms, s.seqIDs, s.rowArgs)
		s.rowArgs = args
		id, err := s.insertRows(ctx, tx, messageInsert+rowsOf(17, n), args, n)
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
// statement, and of one script, well under max_allowed_packet (MySQL 5.7's
// default is 4 MiB; escaping may double a blob). A larger row goes alone.
const flushBytes = 1 << 20

// pendingRow is a row waiting for a multi-row INSERT: its values and the
// bytes of its variable-length ones.
type pendingRow interface{ values() ([]any, int) }

func (m pendingMessage) values() ([]any, int) { return m.args, m.size }
func (h pendingHook) values() ([]any, int)    { return h.args, h.size }

// nextRows returns how many of rows go in the next multi-row INSERT (one
// unless many; otherwise at least one, at most flushChunk, within
// flushBytes), their values (appended to buf[:0]: the committer reuses
// it) and the bytes of their variable-length ones.
func nextRows[T pendingRow](rows []T, many bool, buf []any) (n int, args []any, size int) {
	clear(buf)
	args = buf[:0]
	for n < len(rows) && n < flushChunk && (n == 0 || many) {
		a, sz := rows[n].values()
		if n > 0 && size+sz > flushBytes {
			break
		}
		args = append(args, a...)
		size += sz
		n++
	}
	return n, args, size
}

// flushWebhooks applies the pending outcomes (one UPDATE per outcome and
// chunk), then inserts the pending webhook log rows (ids set through their
// pointers).
func (s *store) flushWebhooks(ctx context.Context, tx *batchTx, b *batchState) error {
	for _, st := range outcomeUpdates(b.outcomes) {
		if _, err := tx.ExecContext(ctx, st.query, st.args...); err != nil {
			return err
		}
	}
	b.outcomes = b.outcomes[:0]
	for pos := 0; pos < len(b.hooks); {
		hs := b.hooks[pos:]
		n, args, _ := nextRows(hs, s.seqIDs, s.rowArgs)
		s.rowArgs = args
		id, err := s.insertRows(ctx, tx, webhookLogInsert+rowsOf(6, n), args, n)
		if err != nil {
			return err
		}
		for i, h := range hs[:n] {
			*h.id = id + int64(i)
		}
		pos += n
	}
	b.hooks = b.hooks[:0]
	return nil
}

// statement is one SQL statement and its arguments.
type statement struct {
	query string
	args  []any
}

// outcomeUpdates is one UPDATE per outcome and chunk of rows (nearly every
// webhook of a batch ends "processed"), not a CASE over every row; of two
// outcomes queued for a row, the last wins.
func outcomeUpdates(outcomes []pendingOutcome) []statement {
	last := make(map[int64]int, len(outcomes))
	var ups []pendingOutcome
	for _, o := range outcomes {
		if i, ok := last[o.id]; ok {
			ups[i] = o
			continue
		}
		last[o.id] = len(ups)
		ups = append(ups, o)
	}
	var order []string
	byOutcome := map[string][]any{}
	for _, o := range ups {
		if _, ok := byOutcome[o.outcome]; !ok {
			order = append(order, o.outcome)
		}
		byOutcome[o.outcome] = append(byOutcome[o.outcome], o.id)
	}
	var sts []statement
	for _, outcome := range order {
		ids := byOutcome[outcome]
		for len(ids) > 0 {
			n := min(len(ids), flushChunk)
			sts = append(sts, statement{
				query: `UPDATE webhook_log SET outcome = ? WHERE id IN (` + placeholders(n) + `)`,
				args:  append([]any{outcome}, ids[:n]...),
			})
			ids = ids[n:]
		}
	}
	return sts
}

// insertRows runs query (a multi-row INSERT of n rows) and returns the
// first row's id: the others follow it (seqIDs, or n is 1).
func (s *store) insertRows(ctx context.Context, tx *batchTx, query string, args []any, n int) (int64, error) {
	res, err := tx.ExecContext(ctx, query, args...)
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
// MinRedoLog is the InnoDB redo log below which Open warns: about 2 KB of
// redo a message (with its event and raw log row), so a smaller log fills
// in under a minute at a few thousand messages a second, and near full
// InnoDB flushes pages in haste while commits wait.
const MinRedoLog = 512 << 20

// redoLog returns the InnoDB redo log's capacity in bytes: MySQL 8.0.30's
// innodb_redo_log_capacity, else innodb_log_file_size times the number of
// files (one on MariaDB 10.5 and later, which has no such variable).
func (s *store) redoLog(ctx context.Context) (int64, error) {
	var n int64
	if err := s.wdb.QueryRowContext(ctx, `SELECT @@innodb_redo_log_capacity`).Scan(&n); err == nil {
		return n, nil
	}
	if err := s.wdb.QueryRowContext(ctx, `SELECT @@innodb_log_file_size`).Scan(&n); err != nil {
		return 0, err
	}
	var files int64
	if err := s.wdb.QueryRowContext(ctx, `SELECT @@innodb_log_files_in_group`).Scan(&files); err == nil && files > 1 {
		n *= files
	}
	return n, nil
}

// warnSmallRedoLog logs a warning when the redo log is under MinRedoLog
// (docs/operations.md).
func (s *store) warnSmallRedoLog(ctx context.Context) {
	if s.dialect != dialectMySQL {
		return
	}
	n, err := s.redoLog(ctx)
	switch {
	case err != nil:
		s.log.Info().Err(err).Msg("cannot read the InnoDB redo log size")
	case n < MinRedoLog:
		s.log.Warn().Int64("redo_log_bytes", n).Int64("recommended_bytes", 1<<30).
			Msg("InnoDB redo log under 512 MiB: under sustained load it fills within a minute and commits stall while InnoDB flushes pages; raise innodb_log_file_size (innodb_redo_log_capacity on MySQL 8.0.30+), see docs/operations.md")
	}
}

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
