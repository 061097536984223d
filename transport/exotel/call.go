package exotel

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Call statuses. A call ends completed (both legs talked), no-answer, busy,
// failed or canceled; queued, ringing and in-progress are the statuses of a
// call that is still running.
const (
	StatusQueued     = "queued"
	StatusRinging    = "ringing"
	StatusInProgress = "in-progress"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
	StatusBusy       = "busy"
	StatusNoAnswer   = "no-answer"
	StatusCanceled   = "canceled"
)

// Final reports whether status is the status of a call that has ended.
func Final(status string) bool {
	switch status {
	case StatusCompleted, StatusFailed, StatusBusy, StatusNoAnswer, StatusCanceled:
		return true
	}
	return false
}

// Call directions.
const (
	DirectionInbound      = "inbound"
	DirectionOutboundDial = "outbound-dial"
	DirectionOutboundAPI  = "outbound-api"
)

// TimeLayout is how the dialler writes times, in IST.
const TimeLayout = "2006-01-02 15:04:05"

// ist is the zone of times written without one.
var ist = time.FixedZone("IST", 5*60*60+30*60)

// FormatTime writes t as the dialler does: TimeLayout in IST; "" for the
// zero time.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(ist).Format(TimeLayout)
}

// ParseTime reads a time as the dialler writes it (TimeLayout, IST) or as
// RFC 3339 (with its own offset); ok is false for anything else, including
// "", "null" and Exotel's "0000-00-00 00:00:00".
func ParseTime(s string) (t time.Time, ok bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return time.Time{}, false
	}
	for _, layout := range []string{TimeLayout, "2006-01-02T15:04:05", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, ist); err == nil {
			return t, true
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.Parse("2006-01-02 15:04:05Z07:00", s); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// Call is a call as the dialler reports it.
type Call struct {
	Sid          string
	Status       string // lower case; see the Status constants
	From         string // dialled first
	To           string // dialled once From answered
	Direction    string // outbound-api for calls placed by Connect
	CustomField  string // as given to Connect, when the dialler reports it
	RecordingURL string // "" when the call was not recorded (or not yet)
	StartTime    time.Time
	EndTime      time.Time // zero while the call runs
	DateCreated  time.Time
	DateUpdated  time.Time
	Duration     int // seconds, the whole call
	// ConversationDuration is how long, in seconds, both legs talked.
	ConversationDuration int
	Legs                 []Leg // in dialling order: Legs[0] is From, Legs[1] is To
}

// Leg is one dialled number of a call.
type Leg struct {
	OnCallDuration int    // seconds this leg was on the call
	Status         string // lower case: completed, no-answer, busy, failed, ...
	AnsweredBy     string // as sent (human, machine, NA, ...)
}

// Limits of what is read.
const (
	maxLegs     = 16 // legs kept per call
	maxValueLen = 4096
)

// fields holds the scalar values of one object, keyed by lower-case name,
// with the raw legs and details beside them.
type fields struct {
	v       map[string]string
	legs    []Leg
	details *fields
}

func (f *fields) get(name string) string { return f.v[strings.ToLower(name)] }

func (f *fields) str(name string) string { return strings.TrimSpace(f.get(name)) }

// url is a URL value; "null", which some senders write for none, is "".
func (f *fields) url(name string) string {
	if s := f.str(name); !strings.EqualFold(s, "null") {
		return s
	}
	return ""
}

func (f *fields) integer(name string) int { return parseInt(f.get(name)) }

func (f *fields) time(name string) time.Time {
	t, _ := ParseTime(f.get(name))
	return t
}

// parseInt reads a count of seconds liberally: "12", 12, 12.0, " 12 ";
// anything else, negative or absurd is 0.
func parseInt(s string) int {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return max(int(n), 0)
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && f >= 0 && f <= math.MaxInt32 {
		return int(f)
	}
	return 0
}

// scalar renders a JSON scalar as a string: strings as they are, numbers
// and booleans as written, null as "". ok is false for objects and arrays.
func scalar(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", true
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	case '{', '[':
		return "", false
	}
	if string(raw) == "null" {
		return "", true
	}
	return string(raw), true
}

// objectFields reads a JSON object's scalars, legs and details. It fails
// only for something that is not a JSON object. depth is how deep the
// object sits: details are read only at the top (0), legs only there and
// in details (1), so that nested input costs no repeated decoding.
func objectFields(raw json.RawMessage, depth int) (*fields, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errNotObject
	}
	f := &fields{v: make(map[string]string, len(obj))}
	// Sorted, so that of names differing only in case the first in byte
	// order (the capitalised one Exotel sends) wins, every time.
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		v, lk := obj[k], strings.ToLower(k)
		switch lk {
		case "legs":
			if f.legs == nil && depth <= 1 {
				f.legs = jsonLegs(v)
			}
			continue
		case "details":
			if depth > 0 || f.details != nil {
				continue
			}
			if d, err := objectFields(v, depth+1); err == nil {
				f.details = d
			}
			continue
		}
		if s, ok := scalar(v); ok {
			if _, dup := f.v[lk]; !dup {
				f.v[lk] = truncateString(s, maxValueLen)
			}
		}
	}
	return f, nil
}

var errNotObject = errors.New("not a JSON object")

// jsonLegs reads legs liberally: an array of {"OnCallDuration","Status",
// "AnsweredBy"} objects or of {"Leg":{...}} wrappers, or such an array
// encoded as a JSON string. Anything else yields no legs.
func jsonLegs(raw json.RawMessage) []Leg {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		raw = json.RawMessage(s)
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	var legs []Leg
	for _, item := range items {
		if len(legs) == maxLegs {
			break
		}
		f, err := objectFields(item, 2)
		if err != nil {
			continue
		}
		if inner, ok := legWrapper(item); ok {
			f = inner
		}
		legs = append(legs, f.leg())
	}
	return legs
}

// legWrapper unwraps {"Leg":{...}}, the call details API's shape.
func legWrapper(raw json.RawMessage) (*fields, bool) {
	var w map[string]json.RawMessage
	if json.Unmarshal(raw, &w) != nil || len(w) != 1 {
		return nil, false
	}
	for k, v := range w {
		if strings.EqualFold(k, "leg") {
			if f, err := objectFields(v, 2); err == nil {
				return f, true
			}
		}
	}
	return nil, false
}

func (f *fields) leg() Leg {
	return Leg{
		OnCallDuration: f.integer("OnCallDuration"),
		Status:         strings.ToLower(f.str("Status")),
		AnsweredBy:     f.str("AnsweredBy"),
	}
}

// call maps a call resource (call details, bulk call details or the
// connect answer) to a Call. Details, when present, supply the
// conversation duration and legs the resource itself lacks.
func (f *fields) call() Call {
	c := Call{
		Sid:                  f.str("Sid"),
		Status:               strings.ToLower(f.str("Status")),
		From:                 f.str("From"),
		To:                   f.str("To"),
		Direction:            strings.ToLower(f.str("Direction")),
		CustomField:          f.get("CustomField"),
		RecordingURL:         f.url("RecordingUrl"),
		StartTime:            f.time("StartTime"),
		EndTime:              f.time("EndTime"),
		DateCreated:          f.time("DateCreated"),
		DateUpdated:          f.time("DateUpdated"),
		Duration:             f.integer("Duration"),
		ConversationDuration: f.integer("ConversationDuration"),
		Legs:                 f.legs,
	}
	if c.Sid == "" {
		c.Sid = f.str("CallSid")
	}
	if d := f.details; d != nil {
		if c.ConversationDuration == 0 {
			c.ConversationDuration = d.integer("ConversationDuration")
		}
		if len(c.Legs) == 0 {
			c.Legs = d.legs
		}
		c.Legs = withLegStatus(c.Legs, 0, d.str("Leg1Status"))
		c.Legs = withLegStatus(c.Legs, 1, d.str("Leg2Status"))
	}
	return c
}

// withLegStatus sets leg i's status when it has none, adding the leg if
// needed.
func withLegStatus(legs []Leg, i int, status string) []Leg {
	if status == "" {
		return legs
	}
	for len(legs) <= i {
		legs = append(legs, Leg{})
	}
	if legs[i].Status == "" {
		legs[i].Status = strings.ToLower(status)
	}
	return legs
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
