package persistence

import (
	"database/sql"
	"errors"
	"strconv"
)

// The messages a batch changes: delivery statuses and providers' ids of
// outbound messages, and the client ids of outbound messages it checks.
//
// Each used to cost statements of its own in the middle of the batch (the
// message looked up, its status history looked up, a row inserted, the
// message updated): four requests per status on MySQL. Now the batch's
// first request reads the messages its statuses and provider ids name (by
// id, or by provider id), their status history and, with the locking reads,
// which outbound client ids exist; the writes work on the batch's copies,
// and the history rows and the messages' new state are written with the
// batch's other rows at its end. A message or history the first request did
// not read (a write named by key, a message inserted by this batch) is
// looked up as before.

type histKey struct {
	id     int64
	status string
}

// msgState is the part of batchState about existing messages.
type msgState struct {
	msgs  map[int64]*Message  // read by the batch, as it left them
	byPID map[string]*Message // pidKey(channel, provider id) -> msgs entry
	// pidLooked and idLooked hold what the prefetch looked up, found or not.
	pidLooked map[string]bool
	idLooked  map[int64]bool
	// history holds the (message, status) rows that exist or are pending;
	// histLooked the messages whose rows the batch read in full.
	history    map[histKey]bool
	histLooked map[int64]bool

	changedMsgs []*Message // messages to write back, in first-change order
	isChanged   map[int64]bool
	histories   [][]any // status_history rows to insert

	// clientLooked holds the conversation+client ids the prefetch looked up
	// (or that a cached batch takes as new); clientKnown those that exist
	// (in the database or in this batch).
	clientLooked map[string]bool
	clientKnown  map[string]bool
}

func newMsgState() msgState {
	return msgState{
		msgs: map[int64]*Message{}, byPID: map[string]*Message{},
		pidLooked: map[string]bool{}, idLooked: map[int64]bool{},
		history: map[histKey]bool{}, histLooked: map[int64]bool{},
		isChanged:    map[int64]bool{},
		clientLooked: map[string]bool{}, clientKnown: map[string]bool{},
	}
}

func clientKey(convID int64, clientMsgID string) string {
	return strconv.FormatInt(convID, 10) + "\x00" + clientMsgID
}

// keep records a message read from the database; the batch's own copy wins.
func (b *msgState) keep(m *Message) {
	if b.msgs[m.ID] != nil {
		return
	}
	b.msgs[m.ID] = m
	if m.ProviderMessageID != "" {
		b.byPID[pidKey(m.Channel, m.ProviderMessageID)] = m
	}
}

// messageLookups are the prefetch's reads of the messages that the batch's
// statuses and provider ids name and of their status history; with
// clients, of the outbound client ids of writes to conversations named by
// id.
func messageLookups(b *batchState, ops []*op, clients bool) []lookup {
	var ids, pids, convs, cids []any
	seenID := map[int64]bool{}
	seenPID := map[string]bool{}
	seenConv := map[int64]bool{}
	seenCID := map[string]bool{}
	for _, o := range ops {
		if o.kind != opConversationWrite {
			continue
		}
		for _, it := range o.w.Items {
			switch {
			case (it.Kind == ItemStatus || it.Kind == ItemProviderAccepted) && it.Status != nil:
				if id := it.Status.MessageID; id > 0 {
					if !seenID[id] {
						seenID[id] = true
						ids = append(ids, id)
					}
				} else if pid := it.Status.ProviderMessageID; pid != "" && !seenPID[pid] {
					seenPID[pid] = true
					pids = append(pids, pid)
				}
			case it.Kind == ItemOutbound && it.Message != nil && it.Message.ClientMsgID != "" && o.w.ConversationID > 0:
				if id := o.w.ConversationID; !seenConv[id] {
					seenConv[id] = true
					convs = append(convs, id)
				}
				if cid := it.Message.ClientMsgID; !seenCID[cid] {
					seenCID[cid] = true
					cids = append(cids, cid)
				}
			}
		}
	}
	var lookups []lookup
	scanMsg := func(rows *sql.Rows) error {
		m, err := scanMessage(rows)
		if err != nil {
			return err
		}
		b.keep(m)
		b.histLooked[m.ID] = true
		return nil
	}
	scanHist := func(rows *sql.Rows) error {
		var k histKey
		if err := rows.Scan(&k.id, &k.status); err != nil {
			return err
		}
		b.history[k] = true
		return nil
	}
	for len(ids) > 0 {
		n := min(len(ids), prefetchChunk)
		lookups = append(lookups,
			lookup{query: `SELECT ` + messageCols + ` FROM messages m WHERE m.id IN (` + placeholders(n) + `)`, args: ids[:n], scan: scanMsg},
			lookup{query: `SELECT message_id, status FROM status_history WHERE message_id IN (` + placeholders(n) + `)`, args: ids[:n], scan: scanHist})
		for _, id := range ids[:n] {
			b.idLooked[id.(int64)] = true
		}
		ids = ids[n:]
	}
	for len(pids) > 0 {
		n := min(len(pids), prefetchChunk)
		lookups = append(lookups,
			lookup{query: `SELECT ` + messageCols + ` FROM messages m WHERE m.provider_message_id IN (` + placeholders(n) + `)`, args: pids[:n], scan: scanMsg},
			lookup{query: `SELECT sh.message_id, sh.status FROM status_history sh JOIN messages m ON m.id = sh.message_id
				WHERE m.provider_message_id IN (` + placeholders(n) + `)`, args: pids[:n], scan: scanHist})
		for _, pid := range pids[:n] {
			b.pidLooked[pid.(string)] = true
		}
		pids = pids[n:]
	}
	if clients && len(cids) > 0 && len(convs)+len(cids) <= 2*prefetchChunk {
		lookups = append(lookups, lookup{
			query: `SELECT conversation_id, client_msg_id FROM messages WHERE conversation_id IN (` + placeholders(len(convs)) +
				`) AND client_msg_id IN (` + placeholders(len(cids)) + `)`,
			args: append(convs, cids...),
			scan: func(rows *sql.Rows) error {
				var conv int64
				var cid string
				if err := rows.Scan(&conv, &cid); err != nil {
					return err
				}
				b.clientKnown[clientKey(conv, cid)] = true
				return nil
			},
		})
		markClients(b, ops)
	}
	return lookups
}

// markClients records the outbound client ids of writes named by id as
// looked up (a cached batch takes them as new: a double send then hits the
// unique key and the batch runs again with its reads).
func markClients(b *batchState, ops []*op) {
	for _, o := range ops {
		if o.kind != opConversationWrite || o.w.ConversationID <= 0 {
			continue
		}
		for _, it := range o.w.Items {
			if it.Kind == ItemOutbound && it.Message != nil && it.Message.ClientMsgID != "" {
				b.clientLooked[clientKey(o.w.ConversationID, it.Message.ClientMsgID)] = true
			}
		}
	}
}

// findMessage looks a status's message up in this conversation: by id, else
// by the provider's id on the conversation's channel. A message of another
// conversation is treated as unknown (its event would carry this
// conversation's seq). The message is the write's copy: saveMessage keeps
// its changes.
func (t *txn) findMessage(conv *Conversation, st *StatusChange) (*Message, error) {
	b := t.b
	var m *Message
	var err error
	if st.MessageID > 0 {
		if m = b.msgs[st.MessageID]; m == nil && !b.idLooked[st.MessageID] {
			m, err = t.messageBy(`m.id = ?`, st.MessageID)
		}
	} else {
		k := pidKey(conv.Key.Channel, st.ProviderMessageID)
		if m = b.byPID[k]; m == nil && !b.pidLooked[st.ProviderMessageID] {
			m, err = t.messageBy(`m.provider_message_id = ? AND m.channel = ?`, st.ProviderMessageID, conv.Key.Channel)
		}
	}
	if errors.Is(err, sql.ErrNoRows) || (err == nil && m == nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	b.keep(m)
	m = b.msgs[m.ID]
	if m.ConversationID != conv.ID {
		t.s.log.Warn().Int64("message_id", m.ID).Int64("message_conversation", m.ConversationID).
			Int64("conversation", conv.ID).Msg("status for a message of another conversation ignored")
		return nil, nil
	}
	cp := *m
	return &cp, nil
}

// saveMessage keeps a write's changes to a message found by findMessage:
// its row is written back at the end of the batch.
func (t *txn) saveMessage(m *Message) {
	b := t.b
	t.dirty = true
	kept := b.msgs[m.ID]
	*kept = *m
	if m.ProviderMessageID != "" {
		b.byPID[pidKey(m.Channel, m.ProviderMessageID)] = kept
	}
	if !b.isChanged[m.ID] {
		b.isChanged[m.ID] = true
		b.changedMsgs = append(b.changedMsgs, kept)
	}
}

// hasHistory reports whether the message already has a status_history row
// for status (stored, or pending in this batch).
func (t *txn) hasHistory(id int64, status string) (bool, error) {
	k := histKey{id, status}
	if t.b.history[k] || t.b.histLooked[id] {
		return t.b.history[k], nil
	}
	var one int64
	err := t.queryRow(`SELECT 1 FROM status_history WHERE message_id = ? AND status = ?`, id, status).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// addHistory queues a status_history row for the end of the batch.
func (t *txn) addHistory(id int64, status string, at any, raw any) {
	t.dirty = true
	t.b.history[histKey{id, status}] = true
	t.b.histories = append(t.b.histories, []any{id, status, at, raw})
}

// messagesUpdate writes back the state of ms in one UPDATE.
func (s *store) messagesUpdate(ms []*Message) (string, []any) {
	return caseUpdate("messages", []string{"status", "error", "updated_at", "provider_message_id"}, len(ms),
		func(i int) int64 { return ms[i].ID },
		func(i, col int) any {
			m := ms[i]
			switch col {
			case 0:
				return m.Status
			case 1:
				return jsonArg(m.Error)
			case 2:
				return s.tv(m.UpdatedAt)
			}
			return nullStr(m.ProviderMessageID)
		})
}

// historyInsert is the multi-row INSERT of status_history rows.
func historyInsert(rows [][]any) (string, []any) {
	args := make([]any, 0, 4*len(rows))
	for _, r := range rows {
		args = append(args, r...)
	}
	return `INSERT INTO status_history (message_id, status, at, raw) VALUES ` + rowsOf(4, len(rows)), args
}

// messageStatements are the statements that write the batch's message
// changes and status_history rows, at most flushChunk rows each; the state
// is cleared.
func (s *store) messageStatements(b *batchState) []statement {
	var sts []statement
	for len(b.changedMsgs) > 0 {
		n := min(len(b.changedMsgs), flushChunk)
		q, args := s.messagesUpdate(b.changedMsgs[:n])
		sts = append(sts, statement{q, args})
		for _, m := range b.changedMsgs[:n] {
			delete(b.isChanged, m.ID)
		}
		b.changedMsgs = b.changedMsgs[n:]
	}
	for len(b.histories) > 0 {
		n := min(len(b.histories), flushChunk)
		q, args := historyInsert(b.histories[:n])
		sts = append(sts, statement{q, args})
		b.histories = b.histories[n:]
	}
	return sts
}
