package twilio

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"urva/actors"
	"urva/persistence"
)

// Twilio message statuses (MessageStatus).
const (
	MessageQueued      = "queued"
	MessageAccepted    = "accepted"
	MessageScheduled   = "scheduled"
	MessageSending     = "sending"
	MessageSent        = "sent"
	MessageDelivered   = "delivered"
	MessageUndelivered = "undelivered"
	MessageFailed      = "failed"
	MessageRead        = "read"
	MessageCanceled    = "canceled"
	MessageReceived    = "received"
)

// StatusCallback is a message status callback for a message we sent.
type StatusCallback struct {
	MessageSid          string
	MessageStatus       string // Twilio's status, lower case
	AccountSid          string
	MessagingServiceSid string
	From                string // our number
	To                  string // the contact
	ErrorCode           string // on undelivered and failed
	ErrorMessage        string // rarely sent
	// Params is every parameter as received.
	Params map[string][]string
}

// ParseStatus reads a status callback's parameters. Errors wrap
// ErrMalformed: MessageSid (or SmsSid), MessageStatus (or SmsStatus), From
// and To are required.
func ParseStatus(params map[string][]string) (*StatusCallback, error) {
	s := &StatusCallback{
		MessageSid:          firstOf(params, "MessageSid", "SmsSid"),
		MessageStatus:       strings.ToLower(firstOf(params, "MessageStatus", "SmsStatus")),
		AccountSid:          first(params, "AccountSid"),
		MessagingServiceSid: first(params, "MessagingServiceSid"),
		From:                strings.TrimSpace(first(params, "From")),
		To:                  strings.TrimSpace(first(params, "To")),
		ErrorCode:           strings.TrimSpace(first(params, "ErrorCode")),
		ErrorMessage:        strings.TrimSpace(first(params, "ErrorMessage")),
		Params:              params,
	}
	if err := checkSID("MessageSid", s.MessageSid); err != nil {
		return nil, err
	}
	if s.MessageStatus == "" {
		return nil, fmt.Errorf("%w: MessageStatus is required", ErrMalformed)
	}
	if err := checkParty("From", s.From); err != nil {
		return nil, err
	}
	if err := checkParty("To", s.To); err != nil {
		return nil, err
	}
	return s, nil
}

// Status is the stored status the callback reports: sent, delivered, read
// or failed (undelivered, failed and canceled), "" for the intermediate
// statuses (queued, accepted, scheduled, sending) and any status this
// package does not know.
func (s *StatusCallback) Status() string {
	switch s.MessageStatus {
	case MessageSent:
		return persistence.StatusSent
	case MessageDelivered:
		return persistence.StatusDelivered
	case MessageRead:
		return persistence.StatusRead
	case MessageUndelivered, MessageFailed, MessageCanceled:
		return persistence.StatusFailed
	}
	return ""
}

// Relevant reports whether the callback changes a stored message's status;
// callbacks that are not relevant are acknowledged and dropped.
func (s *StatusCallback) Relevant() bool { return s.Status() != "" }

// statusError is the stored shape of a delivery failure.
type statusError struct {
	Code    string `json:"code"`
	Title   string `json:"title"`
	Message string `json:"message,omitempty"`
}

// Inbound maps the callback to the actors' input: the conversation of our
// number (From) with the contact (To), and the status change of the message
// with the callback's MessageSid. A failure carries an error
// {"code","title","message"}; Raw is every parameter as a JSON object. Call
// it only when Relevant.
func (s *StatusCallback) Inbound() actors.Inbound {
	sc := &persistence.StatusChange{
		ProviderMessageID: s.MessageSid,
		Status:            s.Status(),
		Raw:               paramsJSON(s.Params),
	}
	if sc.Status == persistence.StatusFailed {
		e := statusError{Code: s.ErrorCode, Title: ErrorTitle(s.ErrorCode), Message: s.ErrorMessage}
		if e.Title == "" {
			e.Title = "Message " + s.MessageStatus
			if s.ErrorCode != "" {
				e.Title = "Twilio error " + s.ErrorCode + ": message " + s.MessageStatus
			}
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if enc.Encode(e) == nil {
			sc.Error = json.RawMessage(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
		}
	}
	return actors.Inbound{
		Key: persistence.ConversationKey{
			Channel:        persistence.ChannelSMS,
			BusinessNumber: NormalizeNumber(s.From),
			ContactPhone:   NormalizeNumber(s.To),
		},
		Status: sc,
	}
}

// errorTitles explains the Twilio error codes an RM is likely to meet.
var errorTitles = map[string]string{
	"20003": "Twilio rejected the credentials (account SID or auth token)",
	"20404": "Twilio account or resource not found",
	"20429": "Twilio rate limit reached",
	"21211": "Invalid 'To' phone number",
	"21212": "Invalid 'From' phone number",
	"21408": "SMS to this region is not enabled on the Twilio account",
	"21602": "Message body is required",
	"21603": "A 'From' number is required",
	"21604": "A 'To' number is required",
	"21606": "The 'From' number cannot send SMS for this account",
	"21608": "Trial accounts can only send to verified numbers",
	"21610": "The contact has unsubscribed (replied STOP); they must text START before they can be messaged again",
	"21612": "Twilio cannot route a message to this number",
	"21614": "The 'To' number is not a mobile number",
	"21617": "Message body exceeds the 1600 character limit",
	"30001": "Queue overflow: too many messages queued for this number",
	"30002": "Twilio account suspended",
	"30003": "Unreachable destination handset",
	"30004": "Message blocked by the recipient or carrier",
	"30005": "Unknown destination handset",
	"30006": "Landline or unreachable carrier",
	"30007": "Message filtered by the carrier",
	"30008": "Unknown delivery error",
	"30034": "Message from an unregistered number (A2P 10DLC)",
}

// ErrorTitle is a short explanation of a Twilio error code, "" when unknown.
func ErrorTitle(code string) string { return errorTitles[code] }
