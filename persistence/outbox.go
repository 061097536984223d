package persistence

import (
	"encoding/json"
	"time"
)

// CRM outbox: which changes of a conversation (or of a video call between
// two RMs) become CRM events, and the data object of each event type. This
// file is the one place where domain rows map to the generic event schema
// documented in docs/crm.md; the delivery side sends the data as stored, and
// an adapter for a specific CRM maps these types to that CRM's format.
//
// Conventions of the data objects: every key is always present; ids are
// numbers, 0 when there is none (an unassigned conversation, an inbound
// message's RM); strings are "" when empty; times are RFC 3339 in UTC, null
// when unknown.

// OutboxConversation is the "conversation" object of every event's data.
type OutboxConversation struct {
	ID             int64  `json:"id"`
	Channel        string `json:"channel"`
	BusinessNumber string `json:"business_number"`
	AssignedRMID   int64  `json:"assigned_rm_id"` // at the time of the event; 0 = unassigned
}

// OutboxContact is the "contact" object of every event's data.
type OutboxContact struct {
	Phone string `json:"phone"` // E.164 with '+'
	Name  string `json:"name"`
}

// OutboxMessage is the "message" object of message.received and message.sent.
type OutboxMessage struct {
	ID                int64      `json:"id"`
	Seq               int64      `json:"seq"`
	Direction         string     `json:"direction"`
	Channel           string     `json:"channel"`
	Type              string     `json:"type"`
	Text              string     `json:"text"`
	Media             []Media    `json:"media"`    // [] when none
	Template          *Template  `json:"template"` // null unless a template send
	ProviderMessageID string     `json:"provider_message_id"`
	ClientMsgID       string     `json:"client_msg_id"`
	Status            string     `json:"status"`
	RMID              int64      `json:"rm_id"`
	ProviderTimestamp *time.Time `json:"provider_timestamp"` // null when the provider gave none
	CreatedAt         time.Time  `json:"created_at"`
}

// OutboxMessageData is the data of message.received and message.sent.
type OutboxMessageData struct {
	Conversation OutboxConversation `json:"conversation"`
	Contact      OutboxContact      `json:"contact"`
	Message      OutboxMessage      `json:"message"`
}

// OutboxMessageRef names the message of a message.status event.
type OutboxMessageRef struct {
	ID                int64  `json:"id"`
	ProviderMessageID string `json:"provider_message_id"`
	ClientMsgID       string `json:"client_msg_id"`
	Direction         string `json:"direction"`
}

// OutboxStatusData is the data of message.status.
type OutboxStatusData struct {
	Conversation OutboxConversation `json:"conversation"`
	Contact      OutboxContact      `json:"contact"`
	Message      OutboxMessageRef   `json:"message"`
	Status       string             `json:"status"`
	Error        json.RawMessage    `json:"error"` // {"code","title","message"} for failed, else null
}

// OutboxAssignedData is the data of conversation.assigned.
type OutboxAssignedData struct {
	Conversation OutboxConversation `json:"conversation"`
	Contact      OutboxContact      `json:"contact"`
	RMID         int64              `json:"rm_id"`
	PreviousRMID int64              `json:"previous_rm_id"` // 0 when it was unassigned (or just created)
}

// OutboxCall is the "call" object of call.completed and call.failed, and
// the Detail of every "call" event (the call as it was after the change).
type OutboxCall struct {
	ID              int64           `json:"id"`
	Status          string          `json:"status"`
	RMID            int64           `json:"rm_id"`
	ContactPhone    string          `json:"contact_phone"`
	RMPhone         string          `json:"rm_phone"`
	CallerID        string          `json:"caller_id"`
	FirstLeg        string          `json:"first_leg"` // "contact" or "rm"
	ProviderCallSID string          `json:"provider_call_sid"`
	RequestedAt     time.Time       `json:"requested_at"`
	AnsweredAt      *time.Time      `json:"answered_at"` // null when not known
	StartedAt       *time.Time      `json:"started_at"`
	EndedAt         *time.Time      `json:"ended_at"`
	TalkSeconds     int             `json:"talk_seconds"`
	RecordingURL    string          `json:"recording_url"`
	Legs            json.RawMessage `json:"legs"`  // the dialler's per-leg report, null when not known
	Error           string          `json:"error"` // why the call failed, "" otherwise
}

// OutboxCallData is the data of call.completed and call.failed.
type OutboxCallData struct {
	Conversation OutboxConversation `json:"conversation"`
	Contact      OutboxContact      `json:"contact"`
	Call         OutboxCall         `json:"call"`
}

// OutboxVideoCall is the "video_call" object of video_call.ended, and the
// Detail of every "video_call" event (the call as it was after the change).
type OutboxVideoCall struct {
	ID              int64      `json:"id"`
	Status          string     `json:"status"`
	EndReason       string     `json:"end_reason"` // "" until ended
	InviterRMID     int64      `json:"inviter_rm_id"`
	InviteeRMID     int64      `json:"invitee_rm_id"` // 0 when the contact was invited
	ContactPhone    string     `json:"contact_phone"` // "" for a call between two RMs
	CreatedAt       time.Time  `json:"created_at"`
	ExpiresAt       time.Time  `json:"expires_at"`
	StartedAt       *time.Time `json:"started_at"` // null until both participants were in the room
	EndedAt         *time.Time `json:"ended_at"`   // null until ended
	DurationSeconds int64      `json:"duration_seconds"`
	Joins           int        `json:"joins"`
}

// OutboxVideoCallData is the data of video_call.ended. For a call between
// two RMs, conversation and contact are the zero objects (id 0, "" strings).
type OutboxVideoCallData struct {
	Conversation OutboxConversation `json:"conversation"`
	Contact      OutboxContact      `json:"contact"`
	VideoCall    OutboxVideoCall    `json:"video_call"`
}

func outboxConversation(c *Conversation) OutboxConversation {
	return OutboxConversation{ID: c.ID, Channel: c.Key.Channel, BusinessNumber: c.Key.BusinessNumber, AssignedRMID: c.AssignedRMID}
}

func outboxContact(c *Conversation) OutboxContact {
	return OutboxContact{Phone: c.Key.ContactPhone, Name: c.ContactName}
}

func outboxMessage(m *Message) OutboxMessage {
	om := OutboxMessage{
		ID:                m.ID,
		Seq:               m.Seq,
		Direction:         m.Direction,
		Channel:           m.Channel,
		Type:              m.Type,
		Text:              m.Text,
		Media:             m.Media,
		Template:          m.Template,
		ProviderMessageID: m.ProviderMessageID,
		ClientMsgID:       m.ClientMsgID,
		Status:            m.Status,
		RMID:              m.RMID,
		CreatedAt:         m.CreatedAt.UTC(),
	}
	if om.Media == nil {
		om.Media = []Media{}
	}
	if !m.ProviderTimestamp.IsZero() {
		ts := m.ProviderTimestamp.UTC()
		om.ProviderTimestamp = &ts
	}
	return om
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// OutboxCallOf renders a call as the "call" object (events, CRM data; the
// transport layer can use it for its own call frames too).
func OutboxCallOf(c *Call) OutboxCall {
	oc := OutboxCall{
		ID:              c.ID,
		Status:          c.Status,
		RMID:            c.RMID,
		ContactPhone:    c.ContactPhone,
		RMPhone:         c.RMPhone,
		CallerID:        c.CallerID,
		FirstLeg:        c.FirstLeg,
		ProviderCallSID: c.ProviderCallSID,
		RequestedAt:     c.RequestedAt.UTC(),
		AnsweredAt:      optTime(c.AnsweredAt),
		StartedAt:       optTime(c.StartedAt),
		EndedAt:         optTime(c.EndedAt),
		TalkSeconds:     c.TalkSeconds,
		RecordingURL:    c.RecordingURL,
		Error:           c.Error,
	}
	if len(c.Legs) > 0 {
		oc.Legs = c.Legs
	}
	return oc
}

// callEndedData maps a call that just reached a terminal status.
func callEndedData(c *Conversation, call *Call) OutboxCallData {
	return OutboxCallData{Conversation: outboxConversation(c), Contact: outboxContact(c), Call: OutboxCallOf(call)}
}

// callEndedType is call.completed for a completed call, call.failed for
// every other terminal status.
func callEndedType(status string) string {
	if status == CallCompleted {
		return OutboxCallCompleted
	}
	return OutboxCallFailed
}

// OutboxVideoCallOf renders a video call as the "video_call" object
// (events, CRM data; the transport layer can use it for its own frames too).
func OutboxVideoCallOf(c *VideoCall) OutboxVideoCall {
	return OutboxVideoCall{
		ID:              c.ID,
		Status:          c.Status,
		EndReason:       c.EndReason,
		InviterRMID:     c.InviterRMID,
		InviteeRMID:     c.InviteeRMID,
		ContactPhone:    c.ContactPhone,
		CreatedAt:       c.CreatedAt.UTC(),
		ExpiresAt:       c.ExpiresAt.UTC(),
		StartedAt:       optTime(c.StartedAt),
		EndedAt:         optTime(c.EndedAt),
		DurationSeconds: c.DurationSeconds,
		Joins:           c.Joins,
	}
}

// videoCallEndedData maps a video call that just ended; c is nil for a call
// between two RMs.
func videoCallEndedData(c *Conversation, vc *VideoCall) OutboxVideoCallData {
	d := OutboxVideoCallData{VideoCall: OutboxVideoCallOf(vc)}
	if c != nil {
		d.Conversation, d.Contact = outboxConversation(c), outboxContact(c)
	}
	return d
}

// messageReceivedData maps a stored inbound message.
func messageReceivedData(c *Conversation, m *Message) OutboxMessageData {
	return OutboxMessageData{Conversation: outboxConversation(c), Contact: outboxContact(c), Message: outboxMessage(m)}
}

// messageSentData maps an outbound message the provider just accepted (it
// carries the provider's id and status "accepted" or later).
func messageSentData(c *Conversation, m *Message) OutboxMessageData {
	return OutboxMessageData{Conversation: outboxConversation(c), Contact: outboxContact(c), Message: outboxMessage(m)}
}

// messageStatusData maps a message whose status just moved forward.
func messageStatusData(c *Conversation, m *Message) OutboxStatusData {
	d := OutboxStatusData{
		Conversation: outboxConversation(c),
		Contact:      outboxContact(c),
		Message: OutboxMessageRef{ID: m.ID, ProviderMessageID: m.ProviderMessageID, ClientMsgID: m.ClientMsgID,
			Direction: m.Direction},
		Status: m.Status,
	}
	if m.Status == StatusFailed && len(m.Error) > 0 {
		d.Error = m.Error
	}
	return d
}

// conversationAssignedData maps an assignment (c already shows the new RM).
func conversationAssignedData(c *Conversation, rmID, previousRMID int64) OutboxAssignedData {
	return OutboxAssignedData{Conversation: outboxConversation(c), Contact: outboxContact(c), RMID: rmID, PreviousRMID: previousRMID}
}

// outboxCreated writes the events of a conversation this write created: an
// initial assignment is an assignment for the CRM (from nobody).
func (t *txn) outboxCreated(conv *Conversation) error {
	if conv.AssignedRMID == 0 {
		return nil
	}
	return t.insertOutbox(OutboxConversationAssigned, conv.ID, conversationAssignedData(conv, conv.AssignedRMID, 0))
}

// outboxVideoCall writes video_call.ended for a video call whose status just
// moved (moved) to ended, and nothing otherwise: statuses move only forward,
// so this happens once per call. conv is the call's conversation, nil for a
// call between two RMs (its row has conversation_id 0).
func (t *txn) outboxVideoCall(conv *Conversation, vc *VideoCall, moved bool) error {
	if !moved || vc.Status != VideoCallEnded {
		return nil
	}
	return t.insertOutbox(OutboxVideoCallEnded, vc.ConversationID, videoCallEndedData(conv, vc))
}

// outboxItem writes the event of one applied item, if it is one the CRM
// sees: a new inbound message, an outbound message the provider accepted, a
// status that moved, an assignment, a call that reached a terminal status, a
// video call that ended. Duplicates, queued outbound messages and other call
// and video call changes write nothing. conv is the conversation as the item
// left it, previousRMID the RM it was assigned to before the item.
func (t *txn) outboxItem(conv *Conversation, it WriteItem, r ItemResult, previousRMID int64) error {
	if r.Duplicate {
		return nil
	}
	switch it.Kind {
	case ItemInbound:
		// The message's id is set at the flush: the data is made then.
		c, m := *conv, r.Message
		return t.insertOutboxData(OutboxMessageReceived, conv.ID, func() any { return messageReceivedData(&c, m) })
	case ItemProviderAccepted:
		return t.insertOutbox(OutboxMessageSent, conv.ID, messageSentData(conv, r.Message))
	case ItemStatus:
		if r.Event == nil {
			return nil
		}
		return t.insertOutbox(OutboxMessageStatus, conv.ID, messageStatusData(conv, r.Message))
	case ItemAssign:
		if r.Event == nil {
			return nil
		}
		return t.insertOutbox(OutboxConversationAssigned, conv.ID, conversationAssignedData(conv, conv.AssignedRMID, previousRMID))
	case ItemCall:
		// An event means the call was created or its status moved; terminal
		// statuses share the top rank, so this happens once per call.
		if r.Event == nil || r.Call == nil || !CallTerminal(r.Call.Status) {
			return nil
		}
		return t.insertOutbox(callEndedType(r.Call.Status), conv.ID, callEndedData(conv, r.Call))
	case ItemVideoCall:
		// An event means the video call was created or its status moved.
		if r.VideoCall == nil {
			return nil
		}
		return t.outboxVideoCall(conv, r.VideoCall, r.Event != nil)
	}
	return nil
}
