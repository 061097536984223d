package persistence

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Limits that keep both dialects alike (MySQL columns have these sizes;
// SQLite would accept anything). Checked before a write touches the database.
const (
	maxIDLen      = 191 // provider_message_id, client_msg_id, username
	maxTypeLen    = 64
	maxNameLen    = 255
	maxPhoneLen   = 32
	maxChannelLen = 16
	maxBusinessNo = 64
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func isE164(s string) bool {
	if len(s) < 4 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func validJSON(what string, b []byte) error {
	if len(b) > 0 && !json.Valid(b) {
		return invalid("%s is not valid JSON", what)
	}
	return nil
}

func validateWrite(w *ConversationWrite) error {
	if w.ConversationID < 0 || w.LastSeq < 0 {
		return invalid("negative conversation id or seq")
	}
	if w.ConversationID == 0 {
		k := w.Key
		if k.Channel == "" || len(k.Channel) > maxChannelLen {
			return invalid("conversation key %q: bad channel", k.String())
		}
		if k.BusinessNumber == "" || len(k.BusinessNumber) > maxBusinessNo {
			return invalid("conversation key %q: bad business number", k.String())
		}
		if !isE164(k.ContactPhone) {
			return invalid("conversation key %q: contact phone is not E.164 (+ and digits)", k.String())
		}
	}
	if utf8.RuneCountInString(w.ContactName) > maxNameLen {
		return invalid("contact name longer than %d characters", maxNameLen)
	}
	if w.OwnerRMID < 0 || w.InitialRMID < 0 {
		return invalid("negative RM id")
	}
	for i, it := range w.Items {
		if err := validateItem(it); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

func validateItem(it WriteItem) error {
	switch it.Kind {
	case ItemInbound, ItemOutbound:
		m := it.Message
		if m == nil {
			return invalid("message item without a message")
		}
		if len(m.ProviderMessageID) > maxIDLen || len(m.ClientMsgID) > maxIDLen {
			return invalid("message id longer than %d bytes", maxIDLen)
		}
		if len(m.Type) > maxTypeLen {
			return invalid("message type longer than %d bytes", maxTypeLen)
		}
		if m.RMID < 0 {
			return invalid("negative RM id")
		}
		if err := validJSON("payload", m.Payload); err != nil {
			return err
		}
		return validJSON("error", m.Error)
	case ItemStatus, ItemProviderAccepted:
		st := it.Status
		if st == nil {
			return invalid("status item without a status")
		}
		if len(st.ProviderMessageID) > maxIDLen {
			return invalid("provider message id longer than %d bytes", maxIDLen)
		}
		if it.Kind == ItemStatus {
			if StatusRank(st.Status) == 0 {
				return invalid("unknown status %q", st.Status)
			}
			if st.MessageID <= 0 && st.ProviderMessageID == "" {
				return invalid("status without a message id or provider message id")
			}
		} else if st.MessageID <= 0 || st.ProviderMessageID == "" {
			return invalid("provider accepted needs the message id and the provider's id")
		}
		if err := validJSON("status error", st.Error); err != nil {
			return err
		}
		return validJSON("status raw", st.Raw)
	case ItemAssign:
		if it.AssignRMID < 0 {
			return invalid("negative RM id")
		}
		return nil
	case ItemCall:
		return validateCallChange(it.Call)
	case ItemVideoCall:
		return validateVideoCallChange(it.VideoCall, false)
	}
	return invalid("unknown item kind %d", it.Kind)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// applyConversationWrite applies w inside t (see ConversationWrite and
// ItemKind for the semantics). Everything that can fail without a database
// error (validation, unknown conversation, stale seq) is decided before the
// first change, so such a failure leaves the batch usable.
func (s *store) applyConversationWrite(t *txn, w *ConversationWrite) (*WriteResult, error) {
	if err := validateWrite(w); err != nil {
		return nil, err
	}
	res := &WriteResult{Items: make([]ItemResult, len(w.Items))}
	var conv, cached *Conversation
	var err error
	if w.ConversationID > 0 {
		if cached = t.b.convs[w.ConversationID]; cached == nil {
			conv, err = scanConversation(t.queryRow(
				`SELECT `+conversationCols+` FROM `+conversationFrom+` WHERE c.id = ?`+t.forUpdate(), w.ConversationID))
			if errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("conversation %d: %w", w.ConversationID, ErrNotFound)
			}
		}
	} else if cached = t.b.byKey[w.Key]; cached == nil {
		if t.b.absent[w.Key] {
			err = sql.ErrNoRows // the prefetch looked
		} else {
			conv, err = scanConversation(t.queryRow(
				`SELECT `+conversationCols+` FROM `+conversationFrom+`
				WHERE c.channel = ? AND c.business_number = ? AND ct.phone = ?`+t.forUpdate(),
				w.Key.Channel, w.Key.BusinessNumber, w.Key.ContactPhone))
		}
		if errors.Is(err, sql.ErrNoRows) {
			if w.LastSeq != 0 {
				return nil, fmt.Errorf("%w: conversation %s does not exist, the write expected seq %d", ErrSeqTaken, w.Key, w.LastSeq)
			}
			conv, err = t.createConversation(w)
			res.Created = true
		}
	}
	if err != nil {
		return nil, err
	}
	if cached != nil {
		// The batch already locked (and maybe changed) the conversation:
		// work on a copy of the batch's view, stored back on success.
		cp := *cached
		conv = &cp
	} else {
		cached = t.b.cache(conv)
	}
	if conv.LastSeq != w.LastSeq {
		return nil, fmt.Errorf("%w: conversation %d is at seq %d, the write expected %d", ErrSeqTaken, conv.ID, conv.LastSeq, w.LastSeq)
	}
	if !res.Created {
		if err := t.updateContact(conv, w); err != nil {
			return nil, err
		}
	}

	if res.Created && s.cfg.Outbox {
		if err := t.outboxCreated(conv); err != nil {
			return nil, err
		}
	}

	before := *conv
	for i, it := range w.Items {
		var r ItemResult
		previousRMID := conv.AssignedRMID
		switch it.Kind {
		case ItemInbound:
			r, err = t.inbound(conv, it.Message)
			if err == nil && !r.Duplicate && it.SMSOptOut != nil {
				err = t.setSMSOptOut(conv, *it.SMSOptOut)
			}
		case ItemOutbound:
			r, err = t.outbound(conv, it.Message)
		case ItemStatus:
			r, err = t.status(conv, it.Status)
		case ItemProviderAccepted:
			r, err = t.providerAccepted(conv, it.Status)
		case ItemAssign:
			r, err = t.assign(conv, it)
		case ItemCall:
			r, err = t.call(conv, it.Call)
		case ItemVideoCall:
			r, err = t.videoCall(conv, it.VideoCall)
		}
		if err == nil && s.cfg.Outbox {
			// The CRM event goes in the same transaction as the change.
			err = t.outboxItem(conv, it, r, previousRMID)
		}
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		res.Items[i] = r
		if it.Log != nil {
			l := *it.Log
			l.Outcome = WebhookProcessed
			if r.Duplicate {
				l.Outcome = WebhookDuplicate
			}
			if err := s.insertWebhookLog(t, &l, &res.Items[i].LogID); err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
		}
	}
	// The row is locked (MySQL FOR UPDATE / SQLite write lock) since the
	// read above, and events carry a unique (conversation_id, seq): a second
	// writer of the same conversation cannot slip in between. The batch
	// writes the row back once, at its end.
	changedRow := *conv != before
	if changedRow {
		t.dirty = true
	}
	t.b.changed(cached, conv, changedRow)
	res.Conversation = *conv
	return res, nil
}

// createConversation finds or creates the contact of w.Key and creates the
// conversation (assigned to w.InitialRMID).
func (t *txn) createConversation(w *ConversationWrite) (*Conversation, error) {
	s := t.s
	phone := w.Key.ContactPhone
	conv := &Conversation{Key: w.Key, AssignedRMID: w.InitialRMID, CreatedAt: t.now}
	var err error
	if c, looked := t.b.contacts[phone]; looked {
		// The prefetch read (and locked) it, or found none.
		if c == nil {
			err = sql.ErrNoRows
		} else {
			conv.ContactID, conv.ContactName, conv.OwnerRMID, conv.SMSOptedOut = c.id, c.name, c.ownerRMID, c.smsOptedOut
		}
	} else {
		err = t.queryRow(`SELECT id, name, owner_rm_id, sms_opted_out FROM contacts WHERE phone = ?`+t.forUpdate(), phone).
			Scan(scanInt{&conv.ContactID}, scanStr{&conv.ContactName}, scanInt{&conv.OwnerRMID}, &conv.SMSOptedOut)
	}
	// Inserts into contacts and conversations read no message: the batch's
	// pending messages need not go first (insertDirect).
	const contactInsert = `INSERT INTO contacts (phone, name, owner_rm_id, created_at) VALUES (?, ?, ?, ?)`
	const conversationInsert = `INSERT INTO conversations (channel, business_number, contact_id, assigned_rm_id, last_seq, created_at) VALUES `
	contactArgs := []any{phone, w.ContactName, nullID(w.OwnerRMID), s.tv(t.now)}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		conv.ContactName, conv.OwnerRMID = w.ContactName, w.OwnerRMID
		conv.ContactID, err = t.insertDirect(contactInsert, contactArgs...)
		if err != nil {
			return nil, err
		}
		t.b.contacts[phone] = &contactRow{id: conv.ContactID, name: conv.ContactName, ownerRMID: conv.OwnerRMID}
	case err != nil:
		return nil, err
	default:
		if err := t.updateContact(conv, w); err != nil {
			return nil, err
		}
	}
	conv.ID, err = t.insertDirect(conversationInsert+`(?, ?, ?, ?, 0, ?)`,
		w.Key.Channel, w.Key.BusinessNumber, conv.ContactID, nullID(w.InitialRMID), s.tv(t.now))
	if err != nil {
		return nil, err
	}
	delete(t.b.absent, w.Key)
	return conv, nil
}

// updateContact sets the contact's name (when w carries one) and its owner
// (when w names one and the contact has none).
func (t *txn) updateContact(conv *Conversation, w *ConversationWrite) error {
	if (w.ContactName != "" && w.ContactName != conv.ContactName) || (w.OwnerRMID > 0 && conv.OwnerRMID == 0) {
		delete(t.b.contacts, conv.Key.ContactPhone) // read again if needed
	}
	if w.ContactName != "" && w.ContactName != conv.ContactName {
		if _, err := t.exec(`UPDATE contacts SET name = ? WHERE id = ?`, w.ContactName, conv.ContactID); err != nil {
			return err
		}
		conv.ContactName = w.ContactName
	}
	if w.OwnerRMID > 0 && conv.OwnerRMID == 0 {
		if _, err := t.exec(`UPDATE contacts SET owner_rm_id = ? WHERE id = ? AND owner_rm_id IS NULL`, w.OwnerRMID, conv.ContactID); err != nil {
			return err
		}
		conv.OwnerRMID = w.OwnerRMID
	}
	return nil
}

// setSMSOptOut records the contact's SMS opt-out or opt-in.
func (t *txn) setSMSOptOut(conv *Conversation, out bool) error {
	if out == conv.SMSOptedOut {
		return nil
	}
	delete(t.b.contacts, conv.Key.ContactPhone) // read again if needed
	if _, err := t.exec(`UPDATE contacts SET sms_opted_out = ? WHERE id = ?`, out, conv.ContactID); err != nil {
		return err
	}
	conv.SMSOptedOut = out
	return nil
}

// messageBy reads a message inside the write; one the batch changed comes
// as the batch left it.
func (t *txn) messageBy(where string, args ...any) (*Message, error) {
	m, err := scanMessage(t.queryRow(`SELECT `+messageCols+` FROM messages m WHERE `+where, args...))
	if err == nil {
		if kept := t.b.msgs[m.ID]; kept != nil {
			cp := *kept
			return &cp, nil
		}
	}
	return m, err
}

// insertMessage queues m (its ID is set at the flush, batch.go) and the
// "message" event that introduces it, with seq m.Seq.
func (t *txn) insertMessage(m *Message) (*Event, error) {
	s := t.s
	var media, tmpl []byte
	var err error
	if len(m.Media) > 0 {
		if media, err = json.Marshal(m.Media); err != nil {
			return nil, err
		}
	}
	if m.Template != nil {
		if tmpl, err = json.Marshal(m.Template); err != nil {
			return nil, err
		}
	}
	t.dirty = true
	t.b.messages = append(t.b.messages, pendingMessage{m: m,
		args: []any{m.ConversationID, m.Seq, m.Direction, m.Channel, m.Type, m.Text, jsonArg(media), jsonArg(tmpl), jsonArg(m.Payload),
			nullStr(m.ProviderMessageID), nullStr(m.ClientMsgID), nullID(m.RMID), m.Status, jsonArg(m.Error),
			s.tv(m.ProviderTimestamp), s.tv(m.CreatedAt), s.tv(m.UpdatedAt)},
		size: len(m.Text) + len(media) + len(tmpl) + len(m.Payload) + len(m.Error) + len(m.ProviderMessageID) + len(m.ClientMsgID),
	})
	if m.ProviderMessageID != "" {
		t.b.known[pidKey(m.Channel, m.ProviderMessageID)] = true
	}
	if m.ClientMsgID != "" {
		t.b.clientKnown[clientKey(m.ConversationID, m.ClientMsgID)] = true
	}
	ev, err := t.insertEvent(m.ConversationID, m.Seq, EventMessage, 0, "", nil)
	if err == nil {
		t.b.eventMsgs[len(t.b.eventMsgs)-1] = m
	}
	return ev, err
}

func (t *txn) insertEvent(convID, seq int64, typ string, messageID int64, status string, detail []byte) (*Event, error) {
	// Inserted with the batch's other events at its end (ID set then).
	t.dirty = true
	ev := &Event{ConversationID: convID, Seq: seq, Type: typ, MessageID: messageID, Status: status,
		Detail: cloneBytes(detail), CreatedAt: t.now}
	t.b.events = append(t.b.events, ev)
	t.b.eventMsgs = append(t.b.eventMsgs, nil)
	return ev, nil
}

// newMessage copies what the caller gave into the row the store keeps.
func (t *txn) newMessage(conv *Conversation, in *Message, direction, status string) *Message {
	m := &Message{
		ConversationID:    conv.ID,
		Seq:               conv.LastSeq + 1,
		Direction:         direction,
		Channel:           conv.Key.Channel,
		Type:              in.Type,
		Text:              in.Text,
		Media:             append([]Media(nil), in.Media...),
		Payload:           cloneBytes(in.Payload),
		ProviderMessageID: in.ProviderMessageID,
		ClientMsgID:       in.ClientMsgID,
		RMID:              in.RMID,
		Status:            status,
		Error:             cloneBytes(in.Error),
		ProviderTimestamp: normTime(in.ProviderTimestamp),
		CreatedAt:         t.now,
		UpdatedAt:         t.now,
	}
	if len(m.Media) == 0 {
		m.Media = nil
	}
	if in.Template != nil {
		tm := *in.Template
		tm.Params = append([]string(nil), in.Template.Params...)
		if len(tm.Params) == 0 {
			tm.Params = nil
		}
		m.Template = &tm
	}
	if m.Type == "" {
		m.Type = "text"
		if m.Template != nil {
			m.Type = "template"
		}
	}
	return m
}

// inbound stores a message from the contact unless its provider id is
// already known on this channel.
func (t *txn) inbound(conv *Conversation, in *Message) (ItemResult, error) {
	k := pidKey(conv.Key.Channel, in.ProviderMessageID)
	if old := t.b.byPID[k]; in.ProviderMessageID != "" && old != nil {
		// A message this batch read or gave the id to.
		cp := *old
		return ItemResult{Duplicate: true, Message: &cp}, nil
	}
	if in.ProviderMessageID != "" && (!t.b.queried[k] || t.b.known[k]) {
		// Looked up unless the batch knows it is new.
		old, err := t.messageBy(`m.provider_message_id = ? AND m.channel = ?`, in.ProviderMessageID, conv.Key.Channel)
		if err == nil {
			return ItemResult{Duplicate: true, Message: old}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return ItemResult{}, err
		}
	}
	m := t.newMessage(conv, in, DirectionIn, StatusReceived)
	ev, err := t.insertMessage(m)
	if err != nil {
		return ItemResult{}, err
	}
	conv.LastSeq = m.Seq
	conv.LastMessageAt = maxTime(conv.LastMessageAt, t.now)
	at := m.ProviderTimestamp
	if at.IsZero() {
		at = t.now
	}
	conv.LastInboundAt = maxTime(conv.LastInboundAt, at)
	return ItemResult{Message: m, Event: ev}, nil
}

// outbound stores an RM's message as queued unless its client_msg_id is
// already known in this conversation (a double click).
func (t *txn) outbound(conv *Conversation, in *Message) (ItemResult, error) {
	ck := clientKey(conv.ID, in.ClientMsgID)
	if in.ClientMsgID != "" && (!t.b.clientLooked[ck] || t.b.clientKnown[ck]) {
		// Looked up unless the batch knows it is new.
		old, err := t.messageBy(`m.conversation_id = ? AND m.client_msg_id = ?`, conv.ID, in.ClientMsgID)
		if err == nil {
			return ItemResult{Duplicate: true, Message: old}, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return ItemResult{}, err
		}
	}
	m := t.newMessage(conv, in, DirectionOut, StatusQueued)
	ev, err := t.insertMessage(m)
	if err != nil {
		return ItemResult{}, err
	}
	conv.LastSeq = m.Seq
	conv.LastMessageAt = maxTime(conv.LastMessageAt, t.now)
	return ItemResult{Message: m, Event: ev}, nil
}

// status records a delivery status once per (message, status) and moves the
// message's status only forward (StatusRank); an event only when it moved.
func (t *txn) status(conv *Conversation, st *StatusChange) (ItemResult, error) {
	m, err := t.findMessage(conv, st)
	if err != nil || m == nil {
		return ItemResult{Duplicate: true}, err
	}
	if seen, err := t.hasHistory(m.ID, st.Status); err != nil || seen {
		return ItemResult{Duplicate: true, Message: m}, err
	}
	at := st.At
	if at.IsZero() {
		at = t.now
	}
	t.addHistory(m.ID, st.Status, t.s.tv(at), jsonArg(st.Raw))
	if StatusRank(st.Status) <= StatusRank(m.Status) {
		// Recorded in the history, but the message already is at or past
		// this status (read arrived before delivered, failed after read...).
		return ItemResult{Duplicate: true, Message: m}, nil
	}
	m.Status, m.UpdatedAt = st.Status, t.now
	var detail []byte
	if st.Status == StatusFailed && len(st.Error) > 0 {
		m.Error = cloneBytes(st.Error)
		detail = st.Error
	}
	t.saveMessage(m)
	ev, err := t.insertEvent(conv.ID, conv.LastSeq+1, EventStatus, m.ID, m.Status, detail)
	if err != nil {
		return ItemResult{}, err
	}
	conv.LastSeq = ev.Seq
	return ItemResult{Message: m, Event: ev}, nil
}

// providerAccepted records the provider's id of an outbound message (not a
// visible event). The first id recorded stays.
func (t *txn) providerAccepted(conv *Conversation, st *StatusChange) (ItemResult, error) {
	m, err := t.findMessage(conv, &StatusChange{MessageID: st.MessageID})
	if err != nil || m == nil {
		return ItemResult{Duplicate: true}, err
	}
	if m.ProviderMessageID != "" {
		if m.ProviderMessageID != st.ProviderMessageID {
			t.s.log.Warn().Int64("message_id", m.ID).Str("stored", m.ProviderMessageID).
				Str("reported", st.ProviderMessageID).Msg("provider reported a second id for a message; keeping the first")
		}
		return ItemResult{Duplicate: true, Message: m}, nil
	}
	m.ProviderMessageID, m.UpdatedAt = st.ProviderMessageID, t.now
	if StatusRank(m.Status) < StatusRank(StatusAccepted) {
		m.Status = StatusAccepted
	}
	t.saveMessage(m)
	t.b.known[pidKey(m.Channel, m.ProviderMessageID)] = true
	return ItemResult{Message: m}, nil
}

// assign moves the conversation to another RM (the conversation row itself is
// updated once at the end of the write).
func (t *txn) assign(conv *Conversation, it WriteItem) (ItemResult, error) {
	prev := conv.AssignedRMID
	if it.AssignRMID == prev || (it.OnlyIfUnassigned && prev != 0) {
		return ItemResult{Duplicate: true}, nil
	}
	detail := []byte(`{"rm_id":` + strconv.FormatInt(it.AssignRMID, 10) + `,"previous_rm_id":` + strconv.FormatInt(prev, 10) + `}`)
	ev, err := t.insertEvent(conv.ID, conv.LastSeq+1, EventAssigned, 0, "", detail)
	if err != nil {
		return ItemResult{}, err
	}
	conv.LastSeq = ev.Seq
	conv.AssignedRMID = it.AssignRMID
	return ItemResult{Event: ev}, nil
}

// Webhook log.

func (s *store) insertWebhookLog(t *txn, l *WebhookLog, id *int64) error {
	if l.Provider == "" || len(l.Provider) > 32 {
		return invalid("webhook log: bad provider %q", l.Provider)
	}
	if len(l.Path) > 2048 {
		return invalid("webhook log: path longer than 2048 bytes")
	}
	if err := validJSON("webhook headers", l.Headers); err != nil {
		return err
	}
	at := l.ReceivedAt
	if at.IsZero() {
		at = t.now
	}
	outcome := l.Outcome
	if outcome == "" {
		outcome = WebhookReceived
	}
	body := l.Body
	if body == nil {
		body = []byte{}
	}
	// Inserted with the batch's other log rows at its end (*id set then).
	t.dirty = true
	t.b.hooks = append(t.b.hooks, pendingHook{
		args: []any{l.Provider, l.Path, jsonArg(l.Headers), body, s.tv(at), outcome},
		size: len(l.Path) + len(l.Headers) + len(body) + len(outcome),
		id:   id,
	})
	return nil
}

// updateWebhookOutcome queues the update for the end of the batch, before
// the log rows the batch inserts (pendingOutcome).
func (s *store) updateWebhookOutcome(t *txn, id int64, outcome string) error {
	t.dirty = true
	t.b.outcomes = append(t.b.outcomes, pendingOutcome{id: id, outcome: outcome})
	return nil
}
