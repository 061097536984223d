package actors

import (
	"encoding/json"
	"testing"

	"urva/persistence"
)

func TestEncodeEventShapes(t *testing.T) {
	rec := func(e persistence.Event, m *persistence.Message) *persistence.EventRecord {
		return &persistence.EventRecord{Event: e, ContactPhone: "+919811100001", ContactName: "Meera", Message: m}
	}
	for name, tc := range map[string]struct {
		rec  *persistence.EventRecord
		want map[string]any
	}{
		"message": {rec(persistence.Event{ID: 36, ConversationID: 3, Seq: 7, Type: persistence.EventMessage, MessageID: 9},
			&persistence.Message{ID: 9, Direction: "in", Channel: "whatsapp", Type: "text", Text: "hi", Status: "received"}),
			map[string]any{"type": "message", "conversation_id": 3.0, "seq": 7.0, "cursor": "10"}},
		"status": {rec(persistence.Event{ID: 37, ConversationID: 3, Seq: 8, Type: persistence.EventStatus, MessageID: 9, Status: "delivered"}, nil),
			map[string]any{"type": "status", "message_id": 9.0, "status": "delivered", "cursor": "11"}},
		"assigned": {rec(persistence.Event{ID: 38, ConversationID: 3, Seq: 9, Type: persistence.EventAssigned, Detail: json.RawMessage(`{"rm_id":4,"previous_rm_id":2}`)}, nil),
			map[string]any{"type": "assigned", "rm_id": 4.0, "previous_rm_id": 2.0}},
		"call": {rec(persistence.Event{ID: 39, ConversationID: 3, Seq: 10, Type: persistence.EventCall, Status: "dialling", Detail: json.RawMessage(`{"id":5,"status":"dialling"}`)}, nil),
			map[string]any{"type": "call", "seq": 10.0}},
	} {
		var got map[string]any
		if err := json.Unmarshal(EncodeEvent(tc.rec), &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v (frame %v)", name, k, got[k], v, got)
			}
		}
		if name == "call" {
			call, _ := got["call"].(map[string]any)
			if call["id"] != 5.0 || call["status"] != "dialling" {
				t.Errorf("call frame %v", got)
			}
		}
		if name == "message" {
			m, _ := got["message"].(map[string]any)
			c, _ := m["contact"].(map[string]any)
			if m["text"] != "hi" || c["phone"] != "+919811100001" {
				t.Errorf("message frame %v", got)
			}
		}
	}
}
