package logfields

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
)

func TestFieldsOnEveryEvent(t *testing.T) {
	var buf bytes.Buffer
	parent := zerolog.New(&buf).Level(zerolog.InfoLevel).With().Str("component", "http").Logger()
	child := With(parent, Str("request_id", "r-1"), Int64("rm_id", 42))
	child.Info().Msg("one")
	child.Warn().Int("code", 1013).Msg("two")
	parent.Info().Msg("parent")
	child.Debug().Msg("filtered") // below the level: no event, no fields
	dec := json.NewDecoder(&buf)
	var got []map[string]any
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("%d events: %v", len(got), got)
	}
	for i, m := range got[:2] {
		if m["component"] != "http" || m["request_id"] != "r-1" || m["rm_id"] != float64(42) {
			t.Fatalf("event %d: %v", i, m)
		}
	}
	if got[1]["code"] != float64(1013) {
		t.Fatalf("own field lost: %v", got[1])
	}
	if _, ok := got[2]["rm_id"]; ok {
		t.Fatalf("the parent got the child's fields: %v", got[2])
	}
	if With(parent).GetLevel() != parent.GetLevel() {
		t.Fatal("no fields changed the logger")
	}
}
