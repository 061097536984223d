package exotel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"urva/actors"
)

// Dialler is the actor system's dialler (actors.Dialler) over a Client:
// connect requests, lookups by CustomField and call details, with the
// client's errors translated to the actor system's (*actors.DialError,
// actors.ErrCallNotFound).
type Dialler struct {
	Client *Client
	// TimeLimit caps each call and TimeOut the ringing of each leg, in
	// seconds; not sent when 0 (the dialler's defaults).
	TimeLimit, TimeOut int
}

var _ actors.Dialler = (*Dialler)(nil)

// Connect asks the dialler to ring req.From, then req.To, and to bridge
// them, with answered and terminal callbacks to req.StatusCallback. A
// failure is an *actors.DialError classified as the client classified it:
// Ambiguous when the call may have been placed all the same.
func (d *Dialler) Connect(ctx context.Context, req actors.DialRequest) (string, error) {
	call, err := d.Client.Connect(ctx, ConnectRequest{
		From:           req.From,
		To:             req.To,
		CallerID:       req.CallerID,
		Record:         req.Record,
		TimeLimit:      d.TimeLimit,
		TimeOut:        d.TimeOut,
		CustomField:    req.CustomField,
		StatusCallback: req.StatusCallback,
	})
	if err != nil {
		return "", diallerError(err, true)
	}
	return call.Sid, nil
}

// Find returns the newest call placed for req since since (less a couple of
// minutes for clock skew): by its CustomField, else by its numbers and time
// (Exotel's bulk listing does not document CustomField), or
// actors.ErrCallNotFound. A dialler may not list a call until it has ended;
// the caller looks again later before placing the call a second time.
func (d *Dialler) Find(ctx context.Context, req actors.DialRequest, since time.Time) (*actors.DialledCall, error) {
	call, err := d.Client.FindByCustomField(ctx, req.CustomField, since)
	if err == nil {
		return call.Dialled(), nil
	}
	if !errors.Is(err, ErrCallNotFound) {
		return nil, diallerError(err, false)
	}
	if req.From == "" || req.To == "" {
		return nil, diallerError(ErrCallNotFound, false)
	}
	calls, err := d.Client.FindCalls(ctx, CallFilter{From: req.From, To: req.To, Since: since})
	if err != nil {
		return nil, diallerError(err, false)
	}
	for _, c := range calls { // newest first
		// A call that carries another CustomField is another call to the
		// same numbers; one that carries none may be ours.
		if c.CustomField == "" || c.CustomField == req.CustomField {
			return c.Dialled(), nil
		}
	}
	return nil, diallerError(ErrCallNotFound, false)
}

// Details returns the dialler's record of the call sid (with its legs),
// actors.ErrCallNotFound when the dialler does not know it.
func (d *Dialler) Details(ctx context.Context, sid string) (*actors.DialledCall, error) {
	call, err := d.Client.CallDetails(ctx, sid)
	if err != nil {
		return nil, diallerError(err, false)
	}
	return call.Dialled(), nil
}

// diallerError translates a Client error: ErrCallNotFound becomes
// actors.ErrCallNotFound (wrapped with the dialler's message), an *Error an
// *actors.DialError. Ambiguity only exists for connect requests; anything
// else a Client should not return counts, for a connect request, as
// ambiguous, so that the call is looked up before it is placed again.
func diallerError(err error, connect bool) error {
	if errors.Is(err, ErrCallNotFound) {
		return fmt.Errorf("%w: %v", actors.ErrCallNotFound, err)
	}
	var e *Error
	if !errors.As(err, &e) {
		return &actors.DialError{Message: err.Error(), Retryable: true, Ambiguous: connect}
	}
	msg := e.Op
	if e.HTTPStatus != 0 {
		msg += fmt.Sprintf(": HTTP %d", e.HTTPStatus)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return &actors.DialError{Message: msg, Retryable: e.Retryable, Ambiguous: e.Ambiguous && connect}
}

// Dialled is the callback as the actor system takes it: Event answered or
// terminal (other event types are passed through as they came), times (see
// connectedAt), talk duration, recording, legs (see LegsJSON) and the raw
// parameters.
func (cb *Callback) Dialled() *actors.DialledCall {
	return &actors.DialledCall{
		Sid:          cb.CallSid,
		CustomField:  cb.CustomField,
		Event:        cb.EventType,
		Status:       cb.Status,
		StartedAt:    connectedAt(cb.EndTime, cb.ConversationDuration),
		EndedAt:      cb.EndTime,
		TalkSeconds:  cb.ConversationDuration,
		RecordingURL: cb.RecordingURL,
		Legs:         LegsJSON(cb.Legs, cb.From, cb.To),
		Raw:          cb.Raw,
	}
}

// Dialled is the call as the actor system takes it from the call-details
// API or a lookup: no Event (Status tells whether the call is over).
func (c *Call) Dialled() *actors.DialledCall {
	raw, err := json.Marshal(c)
	if err != nil { // strings, ints, times and legs: cannot happen
		raw = nil
	}
	return &actors.DialledCall{
		Sid:          c.Sid,
		CustomField:  c.CustomField,
		Status:       c.Status,
		StartedAt:    connectedAt(c.EndTime, c.ConversationDuration),
		EndedAt:      c.EndTime,
		TalkSeconds:  c.ConversationDuration,
		RecordingURL: c.RecordingURL,
		Legs:         LegsJSON(c.Legs, c.From, c.To),
		Raw:          raw,
	}
}

// connectedAt is when the two parties were bridged: the end less the time
// they talked; zero while that is not known (the call runs, or never
// connected). The dialler's StartTime is not it: that is when the call was
// placed, before either leg answered.
func connectedAt(end time.Time, talkSeconds int) time.Time {
	if end.IsZero() || talkSeconds <= 0 {
		return time.Time{}
	}
	return end.Add(-time.Duration(talkSeconds) * time.Second)
}

// Leg parties in LegsJSON: the dialler's names for the number rung first
// and the one rung once it answered.
const (
	PartyFrom = "from"
	PartyTo   = "to"
)

// legJSON is one leg as LegsJSON renders it.
type legJSON struct {
	Party           string `json:"party"`            // PartyFrom or PartyTo (a third leg and later: "")
	Number          string `json:"number,omitempty"` // the leg's number, when known
	Status          string `json:"status"`
	DurationSeconds int    `json:"duration_seconds"`
	AnsweredBy      string `json:"answered_by,omitempty"`
}

// LegsJSON renders legs, in dialling order, as
// [{"party","number","status","duration_seconds","answered_by"}]: party is
// PartyFrom for the first leg (the number given as From, rung first) and
// PartyTo for the second; from and to are those numbers. Nil when there are
// no legs.
func LegsJSON(legs []Leg, from, to string) json.RawMessage {
	if len(legs) == 0 {
		return nil
	}
	out := make([]legJSON, len(legs))
	for i, l := range legs {
		out[i] = legJSON{Status: l.Status, DurationSeconds: l.OnCallDuration, AnsweredBy: l.AnsweredBy}
		switch i {
		case 0:
			out[i].Party, out[i].Number = PartyFrom, from
		case 1:
			out[i].Party, out[i].Number = PartyTo, to
		}
	}
	b, err := json.Marshal(out)
	if err != nil { // strings and ints: cannot happen
		return nil
	}
	return b
}

// maxRecording bounds one downloaded recording.
const maxRecording = 512 << 20

// FetchRecording downloads a call's recording into w (streamed, so long
// calls do not sit in memory). The dialler's credentials go only to the
// dialler's own host, never to a storage host a recording URL points at.
func (d *Dialler) FetchRecording(ctx context.Context, recordingURL string, w io.Writer) (string, error) {
	u, err := url.Parse(recordingURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("recording url %q is not an http(s) url", recordingURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, recordingURL, nil)
	if err != nil {
		return "", err
	}
	if api, err := url.Parse(d.Client.account); err == nil && api.Host == u.Host {
		req.Header.Set("Authorization", d.Client.auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("recording download: HTTP %d", resp.StatusCode)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, maxRecording+1))
	if err != nil {
		return "", err
	}
	if n > maxRecording {
		return "", fmt.Errorf("recording larger than %d bytes", maxRecording)
	}
	return resp.Header.Get("Content-Type"), nil
}
