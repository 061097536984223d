package actors

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"urva/persistence"
)

// appendMessageFrame appends the message frame of r exactly as json.Marshal
// writes messageFrame, without reflection: every webhook a server takes in
// becomes one such frame, and json.Marshal cost a tenth of the ingest path's
// allocations. ok is false (and dst unusable) when r holds something this
// writer leaves to json.Marshal: a time outside the years 0-9999, or a
// payload or error that is not valid JSON. FuzzMessageFrame compares the two.
func appendMessageFrame(dst []byte, r *persistence.EventRecord, cursor string) (_ []byte, ok bool) {
	m := r.Message
	dst = append(dst, `{"type":`...)
	dst = appendJSONString(dst, r.Type)
	dst = append(dst, `,"conversation_id":`...)
	dst = strconv.AppendInt(dst, r.ConversationID, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `,"cursor":`...)
	dst = appendJSONString(dst, cursor)

	dst = append(dst, `,"message":{"id":`...)
	dst = strconv.AppendInt(dst, m.ID, 10)
	dst = append(dst, `,"conversation_id":`...)
	dst = strconv.AppendInt(dst, m.ConversationID, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, m.Seq, 10)
	dst = append(dst, `,"direction":`...)
	dst = appendJSONString(dst, m.Direction)
	dst = append(dst, `,"channel":`...)
	dst = appendJSONString(dst, m.Channel)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, m.Type)
	dst = append(dst, `,"text":`...)
	dst = appendJSONString(dst, m.Text)
	dst = append(dst, `,"status":`...)
	dst = appendJSONString(dst, m.Status)
	dst = append(dst, `,"provider_message_id":`...)
	dst = appendJSONString(dst, m.ProviderMessageID)
	dst = append(dst, `,"client_msg_id":`...)
	dst = appendJSONString(dst, m.ClientMsgID)
	if m.RMID != 0 {
		dst = append(dst, `,"rm_id":`...)
		dst = strconv.AppendInt(dst, m.RMID, 10)
	}
	if len(m.Media) > 0 {
		b, err := json.Marshal(m.Media)
		if err != nil {
			return dst, false
		}
		dst = append(dst, `,"media":`...)
		dst = append(dst, b...)
	}
	if m.Template != nil {
		b, err := json.Marshal(m.Template)
		if err != nil {
			return dst, false
		}
		dst = append(dst, `,"template":`...)
		dst = append(dst, b...)
	}
	if m.Direction == persistence.DirectionIn {
		if p := nonEmptyJSON(m.Payload); len(p) > 0 {
			dst = append(dst, `,"payload":`...)
			if dst, ok = appendRawJSON(dst, p); !ok {
				return dst, false
			}
		}
	}
	if e := nonEmptyJSON(m.Error); len(e) > 0 {
		dst = append(dst, `,"error":`...)
		if dst, ok = appendRawJSON(dst, e); !ok {
			return dst, false
		}
	}
	if !m.ProviderTimestamp.IsZero() {
		dst = append(dst, `,"provider_timestamp":`...)
		if dst, ok = appendJSONTime(dst, m.ProviderTimestamp.UTC()); !ok {
			return dst, false
		}
	}
	dst = append(dst, `,"created_at":`...)
	if dst, ok = appendJSONTime(dst, m.CreatedAt.UTC()); !ok {
		return dst, false
	}
	dst = append(dst, `,"contact":{"phone":`...)
	dst = appendJSONString(dst, r.ContactPhone)
	dst = append(dst, `,"name":`...)
	dst = appendJSONString(dst, r.ContactName)
	dst = append(dst, "}}}"...)
	return dst, true
}

// appendJSONString appends s as json.Marshal writes a string. Text that
// needs no escaping (no quote, backslash, control character, <, > or &, no
// invalid UTF-8 and no U+2028 or U+2029, which json.Marshal escapes) is
// copied; anything else goes through json.Marshal.
func appendJSONString(dst []byte, s string) []byte {
	if plainJSON(s) {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

func plainJSON(s string) bool {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return ascii || utf8.ValidString(s) && !strings.Contains(s, "\u2028") && !strings.Contains(s, "\u2029")
}

// appendRawJSON appends raw as json.Marshal writes a json.RawMessage:
// compacted, with <, >, & and U+2028/U+2029 escaped; false when raw is not
// valid JSON.
func appendRawJSON(dst, raw []byte) ([]byte, bool) {
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, raw); err != nil {
		return dst, false
	}
	out := buf.Bytes()
	if compacted := out[len(dst):]; needsHTMLEscape(compacted) {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, compacted)
		out = append(out[:len(dst)], esc.Bytes()...)
	}
	return out, true
}

// needsHTMLEscape reports whether b holds <, > or &, or a byte that may
// start U+2028 or U+2029 (0xE2 also starts other characters, which
// json.HTMLEscape leaves as they are).
func needsHTMLEscape(b []byte) bool {
	for _, c := range b {
		if c == '<' || c == '>' || c == '&' || c == 0xE2 {
			return true
		}
	}
	return false
}

// appendJSONTime appends t as time.Time's MarshalJSON does; false for years
// it refuses (outside 0-9999).
func appendJSONTime(dst []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return dst, false
	}
	// time.RFC3339Nano alone takes AppendFormat's fast path.
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), true
}
