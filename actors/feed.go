package actors

import (
	"encoding/json"
	"strconv"
	"time"

	"urva/persistence"
)

// Socket frames. The same objects are sent live, replayed on resume and
// returned by the events endpoint, so a client renders them one way.

// ContactJSON is a contact as clients see it.
type ContactJSON struct {
	Phone string `json:"phone"`
	Name  string `json:"name"`
}

// MessageJSON is a message as clients see it.
type MessageJSON struct {
	ID                int64                 `json:"id"`
	ConversationID    int64                 `json:"conversation_id"`
	Seq               int64                 `json:"seq"`
	Direction         string                `json:"direction"`
	Channel           string                `json:"channel"`
	Type              string                `json:"type"`
	Text              string                `json:"text"`
	Status            string                `json:"status"`
	ProviderMessageID string                `json:"provider_message_id"`
	ClientMsgID       string                `json:"client_msg_id"`
	RMID              int64                 `json:"rm_id,omitempty"`
	Media             []persistence.Media   `json:"media,omitempty"`
	Template          *persistence.Template `json:"template,omitempty"`
	Payload           json.RawMessage       `json:"payload,omitempty"`
	Error             json.RawMessage       `json:"error,omitempty"`
	ProviderTimestamp *time.Time            `json:"provider_timestamp,omitempty"`
	CreatedAt         time.Time             `json:"created_at"`
	Contact           ContactJSON           `json:"contact"`
}

// NewMessageJSON renders m for clients.
func NewMessageJSON(m *persistence.Message, contact ContactJSON) MessageJSON {
	out := MessageJSON{
		ID:                m.ID,
		ConversationID:    m.ConversationID,
		Seq:               m.Seq,
		Direction:         m.Direction,
		Channel:           m.Channel,
		Type:              m.Type,
		Text:              m.Text,
		Status:            m.Status,
		ProviderMessageID: m.ProviderMessageID,
		ClientMsgID:       m.ClientMsgID,
		RMID:              m.RMID,
		Media:             m.Media,
		Template:          m.Template,
		Error:             nonEmptyJSON(m.Error),
		CreatedAt:         m.CreatedAt.UTC(),
		Contact:           contact,
	}
	if m.Direction == persistence.DirectionIn {
		out.Payload = nonEmptyJSON(m.Payload)
	}
	if !m.ProviderTimestamp.IsZero() {
		ts := m.ProviderTimestamp.UTC()
		out.ProviderTimestamp = &ts
	}
	return out
}

func nonEmptyJSON(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return b
}

// Cursor renders an event id as the opaque socket cursor.
func Cursor(eventID int64) string { return strconv.FormatInt(eventID, 36) }

// ParseCursor reads a cursor made by Cursor. The empty cursor is 0.
func ParseCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	return strconv.ParseInt(c, 36, 64)
}

type messageFrame struct {
	Type           string      `json:"type"`
	ConversationID int64       `json:"conversation_id"`
	Seq            int64       `json:"seq"`
	Cursor         string      `json:"cursor"`
	Message        MessageJSON `json:"message"`
}

type statusFrame struct {
	Type              string          `json:"type"`
	ConversationID    int64           `json:"conversation_id"`
	Seq               int64           `json:"seq"`
	Cursor            string          `json:"cursor"`
	MessageID         int64           `json:"message_id"`
	ProviderMessageID string          `json:"provider_message_id,omitempty"`
	ClientMsgID       string          `json:"client_msg_id,omitempty"`
	Status            string          `json:"status"`
	Error             json.RawMessage `json:"error,omitempty"`
}

type assignedFrame struct {
	Type           string `json:"type"`
	ConversationID int64  `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	Cursor         string `json:"cursor"`
	RMID           int64  `json:"rm_id"`
	PreviousRMID   int64  `json:"previous_rm_id"`
}

// callFrame is a call's transition: {"type":"call","call":{"id","status",...}}.
type callFrame struct {
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	Cursor         string          `json:"cursor"`
	Call           json.RawMessage `json:"call"`
}

// videoCallFrame is a video call's creation or status move in the
// conversation's timeline: {"type":"video_call","video_call":{"id","status",...}}.
type videoCallFrame struct {
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	Cursor         string          `json:"cursor"`
	VideoCall      json.RawMessage `json:"video_call"`
}

type genericFrame struct {
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	Cursor         string          `json:"cursor"`
	Detail         json.RawMessage `json:"detail,omitempty"`
}

// messageFrameSize is room for a typical message frame: an inbound text
// with the provider's payload is 600 to 900 bytes.
const messageFrameSize = 1024

// EncodeEvent renders one event as a socket frame.
func EncodeEvent(r *persistence.EventRecord) []byte {
	cur := Cursor(r.ID)
	var v any
	switch r.Type {
	case persistence.EventMessage:
		if r.Message != nil {
			if b, ok := appendMessageFrame(make([]byte, 0, messageFrameSize), r, cur); ok {
				return b
			}
			v = messageFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur,
				Message: NewMessageJSON(r.Message, ContactJSON{Phone: r.ContactPhone, Name: r.ContactName})}
		}
	case persistence.EventStatus:
		f := statusFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur,
			MessageID: r.MessageID, Status: r.Status, Error: nonEmptyJSON(r.Detail)}
		if r.Message != nil {
			f.ProviderMessageID = r.Message.ProviderMessageID
			f.ClientMsgID = r.Message.ClientMsgID
		}
		v = f
	case persistence.EventAssigned:
		var d struct {
			RMID         int64 `json:"rm_id"`
			PreviousRMID int64 `json:"previous_rm_id"`
		}
		_ = json.Unmarshal(r.Detail, &d)
		v = assignedFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur,
			RMID: d.RMID, PreviousRMID: d.PreviousRMID}
	}
	if r.Type == persistence.EventCall && len(nonEmptyJSON(r.Detail)) > 0 {
		v = callFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur, Call: r.Detail}
	}
	if r.Type == persistence.EventVideoCall && len(nonEmptyJSON(r.Detail)) > 0 {
		v = videoCallFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur, VideoCall: r.Detail}
	}
	if v == nil {
		v = genericFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur, Detail: nonEmptyJSON(r.Detail)}
	}
	b, err := json.Marshal(v)
	if err != nil { // only possible with invalid stored JSON; keep the event visible
		b, _ = json.Marshal(genericFrame{Type: r.Type, ConversationID: r.ConversationID, Seq: r.Seq, Cursor: cur})
	}
	return b
}

// noticeFrame is a frame that is not a conversation event (errors, send results).
func noticeFrame(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
