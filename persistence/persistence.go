// Package persistence owns the server's SQL: the domain rows (RMs, contacts,
// conversations, messages, events, status history, the raw webhook log), the
// embedded migrations, and the Store interface with its MySQL and SQLite
// implementations.
//
// Writes that belong to a conversation are declared, not scripted: a
// ConversationWrite lists what happened (an inbound message, an outbound
// message, a status change, an assignment) and the store applies it inside a
// group-commit transaction shared with writes from many other conversations.
// Deduplication (provider ids, client message ids, status history) and the
// assignment of the next per-conversation seq happen inside that transaction,
// so the database, not any actor, is the source of truth.
//
// Voice calls are conversation writes too: a call is created and moved
// through its states by WriteItems of kind ItemCall, so every transition
// that shows in the conversation's timeline takes the conversation's next seq
// in the same transaction as the call row (calls.go). Video calls of a
// conversation are ItemVideoCall writes the same way; those between two RMs,
// which have no conversation, go through the same group commit without
// events (videocalls.go).
package persistence

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Channels a conversation can run on.
const (
	ChannelWhatsApp = "whatsapp"
	ChannelSMS      = "sms"
	ChannelVoice    = "voice" // calls to a contact placed by phone number
)

// Message directions.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// Message statuses. Rank orders them; a status never moves to a lower rank.
const (
	StatusReceived  = "received" // inbound messages
	StatusQueued    = "queued"   // outbound, stored, not yet accepted by the provider
	StatusAccepted  = "accepted" // outbound, the provider answered with its id
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
)

// StatusRank orders statuses for the "never backwards" rule. failed ranks
// above sent but below delivered: a message already delivered or read does not
// become failed, while a failure after "sent" is recorded.
func StatusRank(s string) int {
	switch s {
	case StatusQueued:
		return 1
	case StatusAccepted:
		return 2
	case StatusSent:
		return 3
	case StatusFailed:
		return 4
	case StatusDelivered:
		return 5
	case StatusRead, "played":
		return 6
	case StatusReceived:
		return 7
	}
	return 0
}

// Event types: every visible change of a conversation is an event with the
// conversation's next seq.
const (
	EventMessage  = "message"
	EventStatus   = "status"
	EventAssigned = "assigned"
	// EventCall is a call's creation or a move of its status: Status is the
	// call's new status and Detail the call as it was after the change (the
	// "call" object of docs/crm.md, OutboxCall).
	EventCall = "call"
)

// RM roles.
const (
	RoleRM         = "rm"
	RoleSupervisor = "supervisor"
)

// Errors the store reports.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrSeqTaken  = errors.New("conversation seq already taken (stale conversation state)")
	ErrClosed    = errors.New("store closed")
	ErrBadDriver = errors.New("unknown database driver")
	// ErrUnavailable wraps the error of a write that failed because the
	// database could not be reached (callers answer 503; the store reconnects
	// by itself).
	ErrUnavailable = errors.New("database unavailable")
	// ErrInvalid wraps the error of a write or a row rejected before it reached
	// the database (missing fields, malformed JSON, over-long identifiers).
	ErrInvalid = errors.New("invalid write")
)

// RM is a relationship manager or a supervisor.
type RM struct {
	ID           int64
	Username     string
	Name         string
	Phone        string
	Role         string
	PasswordHash string
	CreatedAt    time.Time
}

// Contact is one person, one phone number, across channels.
type Contact struct {
	ID        int64
	Phone     string // E.164 with a leading '+'
	Name      string
	OwnerRMID int64 // 0 when nobody owns the contact
	CreatedAt time.Time
}

// ConversationKey identifies a conversation: channel, our business number and
// the contact's number, both E.164 with '+'.
type ConversationKey struct {
	Channel        string
	BusinessNumber string
	ContactPhone   string
}

// String renders the key as channel/business/contact, the conversation actor's name.
func (k ConversationKey) String() string {
	return k.Channel + "/" + k.BusinessNumber + "/" + k.ContactPhone
}

// Conversation is one thread between a business number and a contact on one channel.
type Conversation struct {
	ID            int64
	Key           ConversationKey
	ContactID     int64
	ContactName   string
	AssignedRMID  int64 // 0 = unassigned
	OwnerRMID     int64 // the contact's owner, 0 when none
	SMSOptedOut   bool  // the contact sent STOP: no SMS until START
	LastSeq       int64
	LastMessageAt time.Time // zero when no message yet
	LastInboundAt time.Time // the contact's last message; drives the WhatsApp 24-hour window
	CreatedAt     time.Time
}

// Media describes an attachment as the provider reported it.
type Media struct {
	ProviderMediaID string `json:"id,omitempty"`
	URL             string `json:"url,omitempty"`
	MimeType        string `json:"mime_type,omitempty"`
	SHA256          string `json:"sha256,omitempty"`
	Filename        string `json:"filename,omitempty"`
	Caption         string `json:"caption,omitempty"`
	Voice           bool   `json:"voice,omitempty"`
}

// Template is an approved WhatsApp template send.
type Template struct {
	Name     string   `json:"name"`
	Language string   `json:"language"`
	Params   []string `json:"params,omitempty"`
}

// Message is one message in a conversation, in either direction.
type Message struct {
	ID                int64
	ConversationID    int64
	Seq               int64 // seq of the event that introduced it
	Direction         string
	Channel           string
	Type              string // text, image, document, audio, video, sticker, location, contacts, interactive, button, reaction, template, unsupported, unknown:<type> ...
	Text              string
	Media             []Media
	Template          *Template
	Payload           json.RawMessage // the provider's object for this message (kept whole: unknown types, locations, reactions, ...)
	ProviderMessageID string          // wamid / MessageSid; empty until the provider accepted an outbound message
	ClientMsgID       string          // outbound only
	RMID              int64           // outbound: the RM who sent it
	Status            string
	Error             json.RawMessage // last failure, as {"code","title","message"}
	ProviderTimestamp time.Time       // when the provider says it happened (zero for outbound until known)
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Event is one visible change of a conversation, in seq order. ID is global
// and increases in commit order; it is the socket cursor.
type Event struct {
	ID             int64
	ConversationID int64
	Seq            int64
	Type           string
	MessageID      int64           // message and status events
	Status         string          // status events: the message's status; call events: the call's status
	Detail         json.RawMessage // status error, assignment details, the call's snapshot, ...
	CreatedAt      time.Time
}

// StatusChange is a delivery status reported by a provider or decided by the server.
type StatusChange struct {
	MessageID         int64  // set when known (server-side failures)
	ProviderMessageID string // or looked up by the provider id
	Status            string
	At                time.Time
	Error             json.RawMessage
	Raw               json.RawMessage // the provider's status object
}

// ItemKind says what a WriteItem carries.
type ItemKind int

const (
	// ItemInbound stores Message as a new inbound message (deduplicated by ProviderMessageID).
	ItemInbound ItemKind = iota + 1
	// ItemOutbound stores Message as a new outbound message with status queued
	// (deduplicated by ConversationID + ClientMsgID).
	ItemOutbound
	// ItemStatus applies Status (deduplicated by message + status; never backwards).
	ItemStatus
	// ItemProviderAccepted records the provider's id for an outbound message
	// (Status.MessageID, Status.ProviderMessageID); it is not a visible event.
	ItemProviderAccepted
	// ItemAssign assigns the conversation to AssignRMID (only when unassigned if OnlyIfUnassigned).
	ItemAssign
	// ItemCall creates a call of this conversation or applies a change to one
	// (see CallChange): a "call" event whenever the call is created or its
	// status moves forward (CallStatusRank); a call.completed or call.failed
	// CRM event when it reaches a terminal status.
	ItemCall
	// ItemVideoCall creates a video call of this conversation or applies a
	// change to one (see VideoCallChange): a "video_call" event whenever the
	// call is created or its status moves forward; the video_call.ended CRM
	// event when it ends.
	ItemVideoCall
)

// WriteItem is one thing that happened to a conversation.
type WriteItem struct {
	Kind             ItemKind
	Message          *Message
	Status           *StatusChange
	AssignRMID       int64
	OnlyIfUnassigned bool
	// SMSOptOut, on an inbound message, records the contact's SMS opt-out
	// (STOP: true) or opt-in (START: false) when, and only when, the message
	// is stored: a redelivered old STOP changes nothing.
	SMSOptOut *bool
	// Call is what an ItemCall does.
	Call *CallChange
	// VideoCall is what an ItemVideoCall does.
	VideoCall *VideoCallChange
	// Log, when set, is the raw webhook that carried the item: its log row
	// goes in the same transaction as the item, with the item's outcome
	// (WebhookProcessed or WebhookDuplicate), and its id in
	// ItemResult.LogID. When the write fails, nothing of it is stored.
	Log *WebhookLog
}

// ConversationWrite is everything one conversation actor commits at once.
// When ConversationID is 0 the conversation (and its contact) is found or
// created by Key inside the transaction.
type ConversationWrite struct {
	ConversationID int64
	Key            ConversationKey
	ContactName    string // updates the contact's name when not empty
	OwnerRMID      int64  // makes this RM the contact's owner when it has none
	// InitialRMID assigns a conversation that this write creates (no event:
	// creation is not a visible change). Ignored for existing conversations.
	InitialRMID int64
	// LastSeq is the conversation's last seq as the writer knows it. Events get
	// LastSeq+1, LastSeq+2, ... If the database already holds a higher seq the
	// write fails with ErrSeqTaken and changes nothing.
	LastSeq int64
	Items   []WriteItem
}

// ItemResult reports what one WriteItem did.
type ItemResult struct {
	// Duplicate is true when the item was already stored (same provider id,
	// same client_msg_id, same status) or changed nothing (a status that would
	// move backwards, an assignment to the same RM). No event was written.
	// For a call change it means the call's status did not move (fields may
	// still have been completed: see Call).
	Duplicate bool
	// Message is the stored message after the item (for duplicates, the row
	// that was already there). Nil for assignments.
	Message *Message
	// Event is the event written, nil when the item was a duplicate or invisible.
	Event *Event
	// Call is the call row after an ItemCall (for duplicates, the row as it
	// is, with any fields the item completed). Nil for other items, and for a
	// change of a call that is not found in this conversation.
	Call *Call
	// VideoCall is the video call after an ItemVideoCall (Duplicate: its
	// status did not move). Nil for other items, and for a change of a video
	// call that is not found in this conversation.
	VideoCall *VideoCall
	// LogID is the webhook log row of WriteItem.Log (0 without one).
	LogID int64
}

// WriteResult reports a committed ConversationWrite.
type WriteResult struct {
	Conversation Conversation // state after the write (LastSeq advanced)
	Created      bool         // the conversation was created by this write
	Items        []ItemResult // one per WriteItem, same order
}

// Call statuses. A call starts requested, moves forward through dialling,
// contact_answered and connected, and ends in exactly one terminal status.
const (
	CallRequested       = "requested"        // stored, not yet handed to the dialler
	CallDialling        = "dialling"         // the dialler accepted it and rings the first leg
	CallContactAnswered = "contact_answered" // the contact picked up
	CallConnected       = "connected"        // both legs bridged
	CallCompleted       = "completed"        // terminal: the call took place
	CallNoAnswer        = "no_answer"        // terminal
	CallBusy            = "busy"             // terminal
	CallFailed          = "failed"           // terminal
	CallCanceled        = "canceled"         // terminal
)

// Which party a click-to-call rings first.
const (
	CallLegContact = "contact"
	CallLegRM      = "rm"
)

// CallStatusRank orders call statuses for the "never backwards" rule:
// requested 1 < dialling 2 < contact_answered 3 < connected 4 < every
// terminal status 5. Terminal statuses share a rank, so the first one stored
// wins and a later one changes nothing. 0 for an unknown status.
func CallStatusRank(s string) int {
	switch s {
	case CallRequested:
		return 1
	case CallDialling:
		return 2
	case CallContactAnswered:
		return 3
	case CallConnected:
		return 4
	case CallCompleted, CallNoAnswer, CallBusy, CallFailed, CallCanceled:
		return 5
	}
	return 0
}

// CallTerminal reports whether s ends a call.
func CallTerminal(s string) bool { return CallStatusRank(s) == 5 }

// Call is one click-to-call between an RM and a contact, in a conversation.
// Zero times are "not known"; Legs is the dialler's per-leg report (JSON, as
// the caller gave it, e.g. [{"party","status","duration_seconds"}]).
type Call struct {
	ID              int64
	ConversationID  int64
	RMID            int64
	ContactPhone    string
	RMPhone         string
	CallerID        string // the number the parties see
	FirstLeg        string // CallLegContact or CallLegRM
	Status          string
	ProviderCallSID string // the dialler's id (Exotel CallSid); "" until it accepted the call
	RequestedAt     time.Time
	AnsweredAt      time.Time // the contact answered
	StartedAt       time.Time // the parties were connected
	EndedAt         time.Time
	TalkSeconds     int
	RecordingURL    string
	RecordingPath   string // the server's downloaded copy, "" when none
	Legs            json.RawMessage
	Error           string // why a call failed, "" otherwise
	UpdatedAt       time.Time
}

// CallChange is what an ItemCall does to a call.
//
// With New set (and CallID 0) it creates a call in the write's conversation
// from New's RMID, ContactPhone (default: the conversation's contact),
// RMPhone, CallerID, FirstLeg (default CallLegContact) and RequestedAt
// (default At, else the commit time), with status Status (default
// CallRequested) and the fields below.
//
// Otherwise it changes the call CallID (or, when CallID is 0, the call whose
// provider id is ProviderCallSID). Status, when set, is recorded once per
// (call, status) in the call's status history (a repeat is a duplicate) and
// becomes the call's status only when it ranks higher (CallStatusRank):
// never backwards, and the first terminal status wins. The other fields are
// merged: a non-zero value fills a field that is empty, and replaces a stored
// value only when the change's status ranks at least as high as the call's
// (a repeated terminal callback with more data completes the call, a late
// intermediate one only fills gaps). A provider id once set is kept (a
// different one is logged, not stored). A "call" event is written only when
// the call is created or its status moved.
type CallChange struct {
	CallID          int64 // 0 = create a new call from New (or find it by ProviderCallSID)
	Status          string
	At              time.Time // when the provider says the status happened; default the commit time
	ProviderCallSID string
	AnsweredAt      time.Time
	StartedAt       time.Time
	EndedAt         time.Time
	TalkSeconds     int
	RecordingURL    string
	Legs            json.RawMessage
	Error           string          // cut to 1000 characters
	Raw             json.RawMessage // the provider's callback, kept in the status history
	New             *Call           // for creation: RMID, phones, caller id, first leg
}

// CallStatusEntry is one row of a call's status history.
type CallStatusEntry struct {
	CallID int64
	Status string
	At     time.Time
	Detail json.RawMessage // the provider's callback (CallChange.Raw), nil when none
}

// Calls reads calls and records their downloaded recordings. Store includes
// it; it is a separate interface so that code needing only calls can say so.
type Calls interface {
	// CallByID reads one call; ErrNotFound when there is none.
	CallByID(ctx context.Context, id int64) (*Call, error)
	// CallByProviderSID reads the call with the dialler's id; ErrNotFound when there is none.
	CallByProviderSID(ctx context.Context, sid string) (*Call, error)
	// UnfinishedCalls lists calls not in a terminal status that were
	// requested before requestedBefore (all when zero), oldest first
	// (reconciliation after a restart or a lost callback).
	UnfinishedCalls(ctx context.Context, requestedBefore time.Time, limit int) ([]Call, error)
	// CallStatusHistory lists every status recorded for a call, in the order
	// they were recorded.
	CallStatusHistory(ctx context.Context, callID int64) ([]CallStatusEntry, error)
	// SetCallRecordingPath records where the server stored the call's
	// recording (through the group commit; not a visible event).
	// ErrNotFound when there is no such call.
	SetCallRecordingPath(ctx context.Context, id int64, path string) error
}

// WebhookLog is one raw provider request as received.
type WebhookLog struct {
	ID         int64
	Provider   string // whatsapp, sms, ...
	Path       string
	Headers    json.RawMessage
	Body       []byte
	ReceivedAt time.Time
	Outcome    string // received, processed, duplicate, failed: ..., ...
}

// Webhook outcomes the store itself writes (WriteItem.Log, LogWebhook
// without an outcome).
const (
	WebhookReceived  = "received"
	WebhookProcessed = "processed"
	WebhookDuplicate = "duplicate"
)

// WebhookLogReader reads back raw webhooks (operations and tests). The stores
// returned by Open implement it; it is kept out of Store so that fakes of
// Store need not.
type WebhookLogReader interface {
	WebhookLogByID(ctx context.Context, id int64) (*WebhookLog, error)
}

// CommitStats counts what the committer did since the store opened
// (operations: read at scrape time).
type CommitStats struct {
	// Requests the committer sent to the database (a MySQL batch is one to
	// three, see script.go).
	Requests int64
	// CachedBatches took every conversation from the committed cache and
	// skipped their reads (MySQL, convcache.go); CacheMisses of them ran
	// again with the reads (a redelivery, a conversation the cache had
	// behind).
	CachedBatches, CacheMisses int64
	// CachedConversations is the cache's size when read.
	CachedConversations int64
}

// CommitStatsReader reads the committer's counters. The stores returned by
// Open implement it.
type CommitStatsReader interface {
	CommitStats() CommitStats
}

// OutboundPending is an outbound message that has not reached the provider yet.
type OutboundPending struct {
	Message      Message
	Conversation Conversation
	ContactPhone string
}

// ConversationSummary is one row of a conversation list.
type ConversationSummary struct {
	Conversation
	ContactPhone string
	UnreadCount  int64
	LastMessage  *Message // the message with the highest seq, nil when none
}

// EventRecord is an event with what a reader needs to render it.
type EventRecord struct {
	Event
	Conversation Conversation
	ContactPhone string
	ContactName  string
	Message      *Message // for message and status events; nil for others (a call or video_call event's call is in Detail)
}

// Store is the database. Writes are group-committed: each call waits for the
// transaction that carries it, and returns only after that commit.
type Store interface {
	// ApplyConversationWrite commits w in the next batch and waits for it.
	ApplyConversationWrite(ctx context.Context, w *ConversationWrite) (*WriteResult, error)
	// SubmitConversationWrite queues w for the next batch and calls done once
	// it is committed or failed. done is called on the committer goroutine, in
	// commit order: it must not block.
	SubmitConversationWrite(w *ConversationWrite, done func(*WriteResult, error))
	// LogWebhook stores a raw webhook in the next batch and waits for the commit; it returns the row id.
	LogWebhook(ctx context.Context, l *WebhookLog) (int64, error)
	// SetWebhookOutcome records how a logged webhook ended (batched, not awaited by callers that pass a nil done).
	// It applies to a row LogWebhook returned (committed before the update is queued).
	SetWebhookOutcome(id int64, outcome string, done func(error))

	// RMs.
	CreateRM(ctx context.Context, rm *RM) (int64, error) // ErrExists when the username is taken
	RMByUsername(ctx context.Context, username string) (*RM, error)
	RMByID(ctx context.Context, id int64) (*RM, error)
	CountRMs(ctx context.Context) (int64, error)
	// ListRMs lists RMs and supervisors by username.
	ListRMs(ctx context.Context, limit int) ([]RM, error)
	// OpenConversationCounts returns, for the given RMs, how many conversations each has assigned.
	OpenConversationCounts(ctx context.Context, rmIDs []int64) (map[int64]int64, error)

	// Conversations.
	ConversationByKey(ctx context.Context, key ConversationKey) (*Conversation, error)
	ConversationByID(ctx context.Context, id int64) (*Conversation, error)
	ContactByPhone(ctx context.Context, phone string) (*Contact, error)
	// ListConversations lists conversations assigned to rmID, or all when rmID is 0, newest activity first.
	ListConversations(ctx context.Context, rmID int64, limit int) ([]ConversationSummary, error)
	// UnassignedConversations lists conversation ids waiting for an RM, oldest first.
	UnassignedConversations(ctx context.Context, limit int) ([]Conversation, error)

	// Messages and events.
	MessageByProviderID(ctx context.Context, providerMessageID string) (*Message, error)
	MessageByID(ctx context.Context, id int64) (*Message, error)
	// ConversationEvents returns events of one conversation with seq > afterSeq, in seq order.
	ConversationEvents(ctx context.Context, conversationID, afterSeq int64, limit int) ([]EventRecord, error)
	// ConversationEventsBefore returns the last limit events of one
	// conversation with seq < beforeSeq, in seq order (older history).
	ConversationEventsBefore(ctx context.Context, conversationID, beforeSeq int64, limit int) ([]EventRecord, error)
	// EventsAfter returns events with ID > afterID of conversations currently
	// assigned to rmID (all conversations when rmID is 0), in ID order.
	EventsAfter(ctx context.Context, rmID, afterID int64, limit int) ([]EventRecord, error)
	// PendingOutbound lists outbound messages still queued (no provider id, not failed), oldest first.
	PendingOutbound(ctx context.Context, limit int) ([]OutboundPending, error)

	// Calls (created and changed by ItemCall writes).
	Calls
	// Video calls (those of a conversation are ItemVideoCall writes).
	VideoCalls

	// Operations.
	Ping(ctx context.Context) error
	Migrate(ctx context.Context) error
	// Close flushes queued writes, waits for the last batch and closes the database.
	Close() error
}

// CRM outbox event types. Each is written in the same transaction as the
// data it describes.
const (
	OutboxMessageReceived      = "message.received"
	OutboxMessageSent          = "message.sent"
	OutboxMessageStatus        = "message.status"
	OutboxConversationAssigned = "conversation.assigned"
	// OutboxCallCompleted: a call ended with status completed.
	OutboxCallCompleted = "call.completed"
	// OutboxCallFailed: a call ended without taking place (no_answer, busy,
	// failed, canceled; the status is in the data).
	OutboxCallFailed = "call.failed"
)

// Outbox states.
const (
	OutboxPending   = "pending"
	OutboxDelivered = "delivered"
	OutboxDead      = "dead"
)

// OutboxEvent is one event for the CRM. EventID is public and stable: every
// delivery attempt of the event carries it.
type OutboxEvent struct {
	ID             int64 // row id; order within a conversation
	EventID        string
	Type           string
	ConversationID int64 // ordering key: 0 for events of no conversation
	OccurredAt     time.Time
	Data           json.RawMessage // the event's data object (docs/crm.md)
	State          string
	Attempts       int
	NextAttemptAt  time.Time
	ExpiresAt      time.Time // still failing after this: dead letter
	LastError      string
	CreatedAt      time.Time
	DeliveredAt    time.Time
}

// OutboxBacklog summarises what waits for the CRM.
type OutboxBacklog struct {
	Pending             int64
	Dead                int64
	OldestPending       time.Time // zero when nothing is pending
	ConversationsBehind int64     // conversations with at least one pending event
}

// Outbox is the CRM outbox as the CRM sync actor drains it. Stores returned
// by Open implement it.
type Outbox interface {
	// OutboxHeads returns, for up to limit conversations, the oldest pending
	// event of each whose next attempt is due at now, oldest first. A
	// conversation whose oldest event waits for a retry holds back its later
	// events, and only those.
	OutboxHeads(ctx context.Context, now time.Time, limit int) ([]OutboxEvent, error)
	// OutboxDelivered marks an event delivered.
	OutboxDelivered(ctx context.Context, id int64, at time.Time) error
	// OutboxFailed records a failed attempt: the next attempt time, or the
	// dead-letter state when dead is true.
	OutboxFailed(ctx context.Context, id int64, lastError string, next time.Time, dead bool) error
	// OutboxDeadLetters lists dead events, oldest first.
	OutboxDeadLetters(ctx context.Context, limit int) ([]OutboxEvent, error)
	// OutboxReplay makes dead events pending again with a new expiry: one
	// event (id > 0) or all of them (id == 0). It returns how many.
	OutboxReplay(ctx context.Context, id int64, now, expiresAt time.Time) (int64, error)
	// OutboxBacklog reports pending and dead counts.
	OutboxBacklog(ctx context.Context) (OutboxBacklog, error)
	// OutboxEventByID reads one event (tests, operators).
	OutboxEventByID(ctx context.Context, id int64) (*OutboxEvent, error)
}
