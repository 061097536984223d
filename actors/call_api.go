package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"context"
)

// Dialler places and looks up click-to-call calls (an Exotel-compatible
// dialler; the implementation lives in transport).
type Dialler interface {
	// Connect asks the dialler to ring req.From and then req.To and bridge
	// them. Failures are *DialError.
	Connect(ctx context.Context, req DialRequest) (sid string, err error)
	// Find returns the call placed for req since the given time (by its
	// CustomField, else by its numbers and time), ErrCallNotFound when there
	// is none.
	Find(ctx context.Context, req DialRequest, since time.Time) (*DialledCall, error)
	// Details returns the dialler's record of a call, ErrCallNotFound when it
	// has none.
	Details(ctx context.Context, sid string) (*DialledCall, error)
}

// DialRequest is one connect request.
type DialRequest struct {
	From, To, CallerID string
	CustomField        string // our call id, echoed in callbacks
	StatusCallback     string
	Record             bool
}

// DialError is a failed connect request, classified. Ambiguous means the
// dialler may have placed the call anyway: look it up before any retry.
type DialError struct {
	Message   string
	Retryable bool
	Ambiguous bool
}

func (e *DialError) Error() string {
	return fmt.Sprintf("dialler: %s (retryable %v, ambiguous %v)", e.Message, e.Retryable, e.Ambiguous)
}

// ErrCallNotFound: the dialler has no such call.
var ErrCallNotFound = errors.New("the dialler has no such call")

// DialledCall is the dialler's view of a call, from a status callback or the
// call-details API.
type DialledCall struct {
	Sid         string
	CustomField string
	// Event is "answered" or "terminal" for callbacks, "" from the details
	// API (then Status tells whether the call is over).
	Event        string
	Status       string // the dialler's: completed, failed, busy, no-answer, canceled, in-progress, ringing, ...
	StartedAt    time.Time
	EndedAt      time.Time
	TalkSeconds  int
	RecordingURL string
	Legs         json.RawMessage
	Raw          json.RawMessage
}

// CallOptions turn on click-to-call.
type CallOptions struct {
	Dialler  Dialler
	CallerID string // the number the contact sees (E.164)
	// FirstLeg is who rings first: persistence.CallLegContact (default, as
	// the original flow) or persistence.CallLegRM.
	FirstLeg string
	// CallbackURL is where the dialler posts status callbacks
	// (http.public_url + /webhooks/dialler/{callback_token}).
	CallbackURL string
	// ReconcileAfter: a call with no terminal callback this long after it
	// was placed is finished from the call-details API.
	ReconcileAfter time.Duration
	// LookAgainAfter: after an ambiguous connect failure the call is looked
	// up at once and, when not found, once more this much later (a dialler
	// may not list a call until it has ended) before it is placed again.
	// Default 90s.
	LookAgainAfter time.Duration
	Record         bool
	// RecordingsDir, when set, is where finished calls' recordings are
	// downloaded (the Dialler must implement RecordingFetcher).
	RecordingsDir string
}

// RecordingFetcher downloads a recording the dialler made.
type RecordingFetcher interface {
	// FetchRecording writes the recording at url to w and returns its
	// content type.
	FetchRecording(ctx context.Context, url string, w io.Writer) (contentType string, err error)
}
