package twilio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
	"urva/transport/internal/httpx"

	"urva/actors"
	"urva/persistence"
)

// EmptyResponse is the TwiML answer to an inbound message that needs no
// reply; send it with Content-Type text/xml.
const EmptyResponse = "<Response></Response>"

// Message types as stored.
const (
	TypeText = "text"
	TypeMMS  = "mms"
)

// ErrMalformed is wrapped by every ParseForm, ParseInbound and ParseStatus error.
var ErrMalformed = errors.New("twilio: malformed request")

// Limits of what is accepted.
const (
	maxParams   = 1000 // parameters in one form
	maxSIDLen   = 64   // message sids are 34 characters; be liberal
	maxPartyLen = 64   // From and To
	maxMediaIdx = 9999 // MediaUrl{N}
)

// ParseForm decodes an application/x-www-form-urlencoded body into its
// parameters, keeping every value of a repeated name in order. Errors wrap
// ErrMalformed: a bad percent-escape, a name or value that is not UTF-8, or
// more than 1000 parameters.
func ParseForm(body []byte) (map[string][]string, error) {
	params, err := httpx.ParseForm(body, maxParams)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return params, nil
}

// first is the first value of name, "" when absent.
func first(params map[string][]string, name string) string {
	if v := params[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Media is one attachment of an MMS, as Twilio hosts it.
type Media struct {
	URL         string // MediaUrl{N}
	ContentType string // MediaContentType{N}
}

// InboundSMS is an inbound SMS or MMS webhook.
type InboundSMS struct {
	MessageSid          string
	AccountSid          string
	MessagingServiceSid string
	From                string // the contact, as sent (E.164 for phone numbers)
	To                  string // our number, as sent
	Body                string // may be empty for MMS
	NumSegments         int    // 0 when absent or not a number
	NumMedia            int    // as sent; Media holds what was found
	Media               []Media
	// Params is every parameter as received: Twilio adds parameters
	// without notice (geo fields, ...).
	Params map[string][]string
}

// ParseInbound reads an inbound message webhook's parameters. Errors wrap
// ErrMalformed: MessageSid (falling back to SmsMessageSid, then SmsSid),
// From and To are required. MessageSid is normally "SM" or "MM" and 32 hex
// digits; any non-blank id of at most 64 characters without spaces is
// accepted. Media are read from MediaUrl{N} and MediaContentType{N} in
// index order, whatever NumMedia says.
func ParseInbound(params map[string][]string) (*InboundSMS, error) {
	m := &InboundSMS{
		MessageSid:          firstOf(params, "MessageSid", "SmsMessageSid", "SmsSid"),
		AccountSid:          first(params, "AccountSid"),
		MessagingServiceSid: first(params, "MessagingServiceSid"),
		From:                strings.TrimSpace(first(params, "From")),
		To:                  strings.TrimSpace(first(params, "To")),
		Body:                first(params, "Body"),
		NumSegments:         atoi(first(params, "NumSegments")),
		NumMedia:            atoi(first(params, "NumMedia")),
		Params:              params,
	}
	if err := checkSID("MessageSid", m.MessageSid); err != nil {
		return nil, err
	}
	if err := checkParty("From", m.From); err != nil {
		return nil, err
	}
	if err := checkParty("To", m.To); err != nil {
		return nil, err
	}
	m.Media = mediaOf(params)
	return m, nil
}

// firstOf is the first non-empty value among names.
func firstOf(params map[string][]string, names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(first(params, n)); v != "" {
			return v
		}
	}
	return ""
}

func checkSID(name, sid string) error {
	switch {
	case sid == "":
		return fmt.Errorf("%w: %s is required", ErrMalformed, name)
	case len(sid) > maxSIDLen:
		return fmt.Errorf("%w: %s longer than %d characters", ErrMalformed, name, maxSIDLen)
	case strings.ContainsFunc(sid, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("%w: %s %q holds spaces", ErrMalformed, name, sid)
	}
	return nil
}

func checkParty(name, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%w: %s is required", ErrMalformed, name)
	case len(v) > maxPartyLen:
		return fmt.Errorf("%w: %s longer than %d characters", ErrMalformed, name, maxPartyLen)
	}
	return nil
}

// mediaOf collects MediaUrl{N} with MediaContentType{N}, by N.
func mediaOf(params map[string][]string) []Media {
	type indexed struct {
		n      int
		suffix string
	}
	var idx []indexed
	for name := range params {
		suffix, ok := strings.CutPrefix(name, "MediaUrl")
		if !ok || suffix == "" || len(suffix) > 4 {
			continue
		}
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 0 || n > maxMediaIdx || suffix[0] == '+' || suffix[0] == '-' {
			continue
		}
		if first(params, name) == "" {
			continue
		}
		idx = append(idx, indexed{n, suffix})
	}
	if len(idx) == 0 {
		return nil
	}
	slices.SortFunc(idx, func(a, b indexed) int {
		if a.n != b.n {
			return a.n - b.n
		}
		return strings.Compare(a.suffix, b.suffix)
	})
	out := make([]Media, len(idx))
	for i, x := range idx {
		out[i] = Media{URL: first(params, "MediaUrl"+x.suffix), ContentType: first(params, "MediaContentType"+x.suffix)}
	}
	return out
}

func atoi(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// Inbound maps the message to the actors' input: the conversation of our
// number (To) with the contact (From) on the sms channel, a message of type
// "mms" when it has media and "text" otherwise whose text is Body exactly as
// received, and whose payload is every parameter as a JSON object. Twilio
// sends no timestamp: ProviderTimestamp is zero.
func (m *InboundSMS) Inbound() actors.Inbound {
	pm := &persistence.Message{
		Direction:         persistence.DirectionIn,
		Channel:           persistence.ChannelSMS,
		Type:              TypeText,
		Text:              m.Body,
		Payload:           paramsJSON(m.Params),
		ProviderMessageID: m.MessageSid,
		Status:            persistence.StatusReceived,
	}
	if len(m.Media) > 0 {
		pm.Type = TypeMMS
		pm.Media = make([]persistence.Media, len(m.Media))
		for i, md := range m.Media {
			pm.Media[i] = persistence.Media{URL: md.URL, MimeType: md.ContentType}
		}
	}
	in := actors.Inbound{
		Key: persistence.ConversationKey{
			Channel:        persistence.ChannelSMS,
			BusinessNumber: NormalizeNumber(m.To),
			ContactPhone:   NormalizeNumber(m.From),
		},
		Message: pm,
	}
	// STOP and its variants opt the contact out of SMS; START opts back in.
	if IsOptOut(m.Body) {
		out := true
		in.SMSOptOut = &out
	} else if IsOptIn(m.Body) {
		out := false
		in.SMSOptOut = &out
	}
	return in
}

// NormalizeNumber renders a phone number in E.164: '+' and its digits, with
// spaces, dashes, dots and brackets dropped. A number without '+' is taken as
// international when it has at least 8 digits; shorter ones (short codes) keep
// their digits only. Anything else (an alphanumeric sender id, a channel
// address) is returned trimmed.
func NormalizeNumber(s string) string {
	s = strings.TrimSpace(s)
	d := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			d++
		case c == '+' && i == 0, c == ' ', c == '-', c == '.', c == '(', c == ')':
		default:
			return s
		}
	}
	if d == 0 {
		return s
	}
	b := make([]byte, 0, d+1)
	if s[0] == '+' || d >= 8 {
		b = append(b, '+')
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// paramsJSON renders parameters as a JSON object: a string per name, an
// array of strings for a repeated name.
func paramsJSON(params map[string][]string) json.RawMessage {
	obj := make(map[string]any, len(params))
	for k, v := range params {
		if len(v) == 1 {
			obj[k] = v[0]
		} else {
			obj[k] = append([]string{}, v...)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil { // strings only: cannot happen
		return json.RawMessage(`{}`)
	}
	return json.RawMessage(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// Keywords Twilio's default opt-out handling acts on.
var (
	optOutKeywords = []string{"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
	optInKeywords  = []string{"START", "YES", "UNSTOP"}
)

// IsOptOut reports whether body is an opt-out keyword (STOP, STOPALL,
// UNSUBSCRIBE, CANCEL, END, QUIT): the whole message, in any case, once
// surrounding spaces and punctuation are trimmed. Twilio then refuses
// further messages to the contact (error 21610) until it opts in again.
func IsOptOut(body string) bool { return isKeyword(body, optOutKeywords) }

// IsOptIn reports whether body is an opt-in keyword (START, YES, UNSTOP), by
// the same rules as IsOptOut.
func IsOptIn(body string) bool { return isKeyword(body, optInKeywords) }

func isKeyword(body string, keywords []string) bool {
	w := strings.TrimFunc(body, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.Is(unicode.Cf, r)
	})
	for i := 0; i < len(w); i++ {
		if w[i] >= utf8.RuneSelf { // keywords are ASCII; no Unicode case folding
			return false
		}
	}
	for _, k := range keywords {
		if strings.EqualFold(w, k) {
			return true
		}
	}
	return false
}
