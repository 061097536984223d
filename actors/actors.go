// Package actors is the behaviour of the server: one actor per conversation,
// per connected RM socket and per provider, wired by a Router. Transport code
// talks to it only through System.
package actors

import (
	"errors"
	"time"

	"urva/persistence"
)

// Errors returned to transport; each maps to one HTTP status.
var (
	// ErrForbidden (403): not this RM's conversation.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound (404).
	ErrNotFound = errors.New("not found")
	// ErrBadRequest (400), wrapped with the reason.
	ErrBadRequest = errors.New("bad request")
	// ErrWindowClosed (422): free text outside the WhatsApp 24-hour window.
	ErrWindowClosed = errors.New("whatsapp 24-hour window closed: the contact has not written in 24 hours; send a template")
	// ErrOptedOut (422): SMS to a contact who replied STOP.
	ErrOptedOut = errors.New("the contact has opted out of SMS (replied STOP); they must text START before they can be sent SMS again")
	// ErrUnavailable (503): database down, shutting down.
	ErrUnavailable = errors.New("temporarily unavailable")
)

// Principal is an authenticated RM.
type Principal struct {
	RMID int64
	Role string // persistence.RoleRM or persistence.RoleSupervisor
}

// Supervisor reports whether p sees every conversation.
func (p Principal) Supervisor() bool { return p.Role == persistence.RoleSupervisor }

// Inbound is one thing a provider reported about a conversation: a new
// message from the contact or a status of a message we sent.
type Inbound struct {
	Key         persistence.ConversationKey
	ContactName string
	Message     *persistence.Message      // inbound message (Direction in), or nil
	Status      *persistence.StatusChange // status update, or nil
	// SMSOptOut, with an inbound message, records that the contact opted out
	// of SMS (true: STOP and its variants) or back in (false: START).
	SMSOptOut *bool
	// Log, when set, is the raw webhook that carried the item, stored with
	// it (persistence.WriteItem.Log).
	Log *persistence.WebhookLog
}

// IngestResult says what became of one Inbound.
type IngestResult struct {
	Duplicate bool
	MessageID int64
	// LogID is the row of Inbound.Log, stored with the item; 0 when the item
	// needed no write (then Log was not stored).
	LogID int64
}

// SendRequest is an RM's outbound message: text or template.
type SendRequest struct {
	ClientMsgID string
	Text        string
	Template    *persistence.Template
}

// Conn is an RM's live socket as the session actor sees it. Implementations
// must be safe for one writer goroutine plus Close from any goroutine.
type Conn interface {
	// WriteFrames writes JSON text frames in order.
	WriteFrames(frames [][]byte) error
	// Close closes the socket, telling the client why.
	Close(reason string)
}

// ImmediateConn is a Conn that can tell whether a frame of n bytes would
// be written at once, without waiting for the client (nothing is waiting
// in the socket's send queue). Its owner then writes a frame that arrives
// with no writer running on its own goroutine instead of waking a writer
// (framewriter.go): one goroutine hand-off less per frame.
type ImmediateConn interface {
	Conn
	WritesAtOnce(n int) bool
}

// Timing and sizing knobs, with production defaults from DefaultTuning.
type Tuning struct {
	PassivateAfter   time.Duration // idle conversation actors stop after this
	SessionQueue     int           // frames queued per RM socket before it is cut as too slow
	ProviderAttempts int           // outbound attempts before a send fails
	ProviderBackoff  time.Duration // first retry delay; doubles per attempt with jitter
	ProviderMaxDelay time.Duration // cap on one retry delay
	ProviderTimeout  time.Duration // one provider HTTP call
	ProviderInflight int           // concurrent provider calls per provider
	WhatsAppWindow   time.Duration // free-text window after the contact's last message
	ResumePage       int           // events read per query when resuming a socket
}

// DefaultTuning is what production runs with.
func DefaultTuning() Tuning {
	return Tuning{
		PassivateAfter:   2 * time.Minute,
		SessionQueue:     1024,
		ProviderAttempts: 8,
		ProviderBackoff:  500 * time.Millisecond,
		ProviderMaxDelay: 60 * time.Second,
		ProviderTimeout:  15 * time.Second,
		ProviderInflight: 64,
		WhatsAppWindow:   24 * time.Hour,
		ResumePage:       500,
	}
}
