package crm

import (
	"bytes"
	"encoding/json"
	"time"
)

// Delivery is one outbox event (persistence.OutboxEvent's EventID, Type,
// OccurredAt and Data) as the CRM receives it. EventID is stable across
// attempts: the receiver dedupes on it.
type Delivery struct {
	EventID    string
	Type       string
	OccurredAt time.Time
	Data       json.RawMessage // the event's data object, embedded as is
}

// Body renders d as the webhook body:
//
//	{"id":EventID,"type":Type,"occurred_at":"<RFC 3339 UTC, nanoseconds>","data":Data}
//
// Data is embedded byte for byte, not re-encoded, so it must be valid JSON
// (the outbox writes it with encoding/json); empty Data is rendered as {}.
// The same delivery always renders the same bytes.
func Body(d Delivery) []byte {
	data := bytes.TrimSpace(d.Data)
	if len(data) == 0 {
		data = []byte("{}")
	}
	b := make([]byte, 0, 96+len(d.EventID)+len(d.Type)+len(data))
	b = append(b, `{"id":`...)
	b = appendString(b, d.EventID)
	b = append(b, `,"type":`...)
	b = appendString(b, d.Type)
	b = append(b, `,"occurred_at":"`...)
	b = d.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// appendString appends s as a JSON string, without HTML escaping.
func appendString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
