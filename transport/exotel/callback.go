package exotel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"urva/transport/internal/httpx"
)

// Callback events. A callback without an EventType comes from a dialler
// (or a request) that subscribed to no events: it is the terminal one.
const (
	EventAnswered = "answered"
	EventTerminal = "terminal"
)

// ErrMalformed is wrapped by every ParseCallback error.
var ErrMalformed = errors.New("exotel: malformed callback")

// Limits of what ParseCallback accepts.
const (
	MaxCallbackBody = 1 << 20 // bytes
	maxParams       = 1000    // form parameters or multipart parts
	maxSidLen       = 128     // call sids are 32 hex digits; be liberal
)

// Callback is a status callback for a call placed by Connect.
type Callback struct {
	CallSid string
	// EventType is answered or terminal (lower case); a callback that names
	// no event is terminal. Other values may appear as the dialler grows
	// events: ignore them.
	EventType string
	// Status is lower case: completed, failed, busy or no-answer on
	// terminal callbacks, in-progress (or ringing) on answered ones.
	Status               string
	RecordingURL         string
	From                 string
	To                   string
	PhoneNumberSid       string // the ExoPhone (caller id)
	Direction            string
	CustomField          string // as given to Connect, byte for byte
	StartTime            time.Time
	EndTime              time.Time
	DateCreated          time.Time
	DateUpdated          time.Time
	ConversationDuration int // seconds both legs talked
	Legs                 []Leg
	// Raw is every parameter as received, as a JSON object: the JSON body
	// itself, or for a form each name with its value (an array when the
	// name repeats).
	Raw json.RawMessage
}

// Terminal reports whether the callback reports the end of the call.
func (c *Callback) Terminal() bool { return c.EventType == EventTerminal }

// Answered reports whether the callback reports the first leg answering.
func (c *Callback) Answered() bool { return c.EventType == EventAnswered }

// ParseCallback reads a status callback, a JSON object or a form, as
// contentType says: application/json, application/x-www-form-urlencoded or
// multipart/form-data; any other or no content type is sniffed (a body
// starting with '{' is JSON). Legs are a JSON array, or in a form
// Legs[<i>][OnCallDuration], Legs[<i>][Status], Legs[<i>][AnsweredBy]
// (or one Legs parameter holding the JSON array). Names are matched without
// regard to case; numbers and times are read liberally, and one that cannot
// be read is left zero. Errors wrap ErrMalformed: a body that is not what it
// claims, larger than MaxCallbackBody, not UTF-8, or without a CallSid.
func ParseCallback(contentType string, body []byte) (*Callback, error) {
	if len(body) > MaxCallbackBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrMalformed, MaxCallbackBody)
	}
	var (
		f   *fields
		raw json.RawMessage
		err error
	)
	switch kind, params := callbackKind(contentType, body); kind {
	case kindJSON:
		f, raw, err = jsonCallback(body)
	case kindMultipart:
		f, raw, err = multipartCallback(body, params["boundary"])
	default:
		f, raw, err = formCallback(body)
	}
	if err != nil {
		return nil, err
	}
	cb := &Callback{
		CallSid:              f.str("CallSid"),
		EventType:            strings.ToLower(f.str("EventType")),
		Status:               strings.ToLower(f.str("Status")),
		RecordingURL:         f.url("RecordingUrl"),
		From:                 f.str("From"),
		To:                   f.str("To"),
		PhoneNumberSid:       f.str("PhoneNumberSid"),
		Direction:            strings.ToLower(f.str("Direction")),
		CustomField:          f.get("CustomField"),
		StartTime:            f.time("StartTime"),
		EndTime:              f.time("EndTime"),
		DateCreated:          f.time("DateCreated"),
		DateUpdated:          f.time("DateUpdated"),
		ConversationDuration: f.integer("ConversationDuration"),
		Legs:                 f.legs,
		Raw:                  raw,
	}
	if cb.CallSid == "" {
		cb.CallSid = f.str("Sid")
	}
	if err := checkSid(cb.CallSid); err != nil {
		return nil, err
	}
	if cb.EventType == "" {
		cb.EventType = EventTerminal
	}
	return cb, nil
}

// checkSid accepts 1 to 128 characters without spaces or control characters.
func checkSid(sid string) error {
	if sid == "" {
		return fmt.Errorf("%w: CallSid is required", ErrMalformed)
	}
	if len(sid) > maxSidLen {
		return fmt.Errorf("%w: CallSid longer than %d bytes", ErrMalformed, maxSidLen)
	}
	if strings.ContainsFunc(sid, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError }) {
		return fmt.Errorf("%w: CallSid %q has spaces or control characters", ErrMalformed, sid)
	}
	return nil
}

type bodyKind int

const (
	kindForm bodyKind = iota
	kindJSON
	kindMultipart
)

func callbackKind(contentType string, body []byte) (bodyKind, map[string]string) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err == nil {
		switch {
		case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
			return kindJSON, nil
		case mt == "application/x-www-form-urlencoded":
			return kindForm, nil
		case mt == "multipart/form-data":
			return kindMultipart, params
		}
	}
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) > 0 && b[0] == '{' {
		return kindJSON, nil
	}
	return kindForm, nil
}

func jsonCallback(body []byte) (*fields, json.RawMessage, error) {
	if !utf8.Valid(body) {
		return nil, nil, fmt.Errorf("%w: body is not UTF-8", ErrMalformed)
	}
	f, err := objectFields(body, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, body); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return f, json.RawMessage(buf.Bytes()), nil
}

func formCallback(body []byte) (*fields, json.RawMessage, error) {
	params, err := parseForm(body)
	if err != nil {
		return nil, nil, err
	}
	return formFields(params), paramsJSON(params), nil
}

func multipartCallback(body []byte, boundary string) (*fields, json.RawMessage, error) {
	if boundary == "" {
		return nil, nil, fmt.Errorf("%w: multipart body without a boundary", ErrMalformed)
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	params := make(map[string][]string)
	for count := 0; ; count++ {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: multipart: %v", ErrMalformed, err)
		}
		if count >= maxParams {
			return nil, nil, fmt.Errorf("%w: more than %d parts", ErrMalformed, maxParams)
		}
		name := p.FormName()
		value, err := io.ReadAll(io.LimitReader(p, MaxCallbackBody))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: multipart part %q: %v", ErrMalformed, name, err)
		}
		if name == "" {
			continue
		}
		if !utf8.ValidString(name) || !utf8.Valid(value) {
			return nil, nil, fmt.Errorf("%w: multipart part is not UTF-8", ErrMalformed)
		}
		params[name] = append(params[name], string(value))
	}
	return formFields(params), paramsJSON(params), nil
}

// parseForm decodes an application/x-www-form-urlencoded body, keeping every
// value of a repeated name in order. Errors wrap ErrMalformed: a bad
// percent-escape, a name or value that is not UTF-8, or more than 1000
// parameters.
func parseForm(body []byte) (map[string][]string, error) {
	params, err := httpx.ParseForm(body, maxParams)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return params, nil
}

// formFields maps form parameters to fields: the first value of each name,
// legs from Legs[<i>][<field>] (or a Legs parameter holding a JSON array).
func formFields(params map[string][]string) *fields {
	f := &fields{v: make(map[string]string, len(params))}
	legs := make(map[int]map[string]string)
	for _, name := range sortedNames(params) {
		value := params[name][0]
		if i, field, ok := legParam(name); ok {
			if i < maxLegs {
				if legs[i] == nil {
					legs[i] = make(map[string]string)
				}
				if _, dup := legs[i][field]; !dup {
					legs[i][field] = value
				}
			}
			continue
		}
		ln := strings.ToLower(name)
		if _, dup := f.v[ln]; !dup {
			f.v[ln] = truncateString(value, maxValueLen)
		}
	}
	if len(legs) > 0 {
		idx := make([]int, 0, len(legs))
		for i := range legs {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		for _, i := range idx {
			lf := fields{v: legs[i]}
			f.legs = append(f.legs, lf.leg())
		}
	} else if s := f.v["legs"]; s != "" {
		f.legs = jsonLegs(json.RawMessage(s))
	}
	return f
}

// legParam splits Legs[<i>][<field>] into i and the lower-case field.
func legParam(name string) (i int, field string, ok bool) {
	rest, found := cutPrefixFold(name, "legs[")
	if !found {
		return 0, "", false
	}
	num, rest, found := strings.Cut(rest, "][")
	if !found || len(num) == 0 || len(num) > 4 || !strings.HasSuffix(rest, "]") {
		return 0, "", false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, "", false
	}
	return n, strings.ToLower(strings.TrimSuffix(rest, "]")), true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func sortedNames(params map[string][]string) []string {
	names := make([]string, 0, len(params))
	for name, v := range params {
		if len(v) > 0 {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// paramsJSON renders form parameters as one JSON object: a name's value,
// or all its values as an array when it repeats.
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
