package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"urva/persistence"
)

// The CRM outbox part of the contract (persistence.Outbox, Config.Outbox).

func outboxOf(t *testing.T, s persistence.Store) persistence.Outbox {
	t.Helper()
	ob, ok := s.(persistence.Outbox)
	if !ok {
		t.Fatalf("store %T does not implement persistence.Outbox", s)
	}
	return ob
}

// openOutbox opens a store that writes outbox rows, with more settings from adjust.
func openOutbox(t *testing.T, open Opener, adjust func(*persistence.Config)) (persistence.Store, persistence.Outbox) {
	t.Helper()
	s := open(t, func(c *persistence.Config) {
		c.Outbox = true
		if adjust != nil {
			adjust(c)
		}
	})
	return s, outboxOf(t, s)
}

func heads(t *testing.T, ob persistence.Outbox, now time.Time, limit int) []persistence.OutboxEvent {
	t.Helper()
	hs, err := ob.OutboxHeads(ctxT(t), now, limit)
	if err != nil {
		t.Fatalf("outbox heads: %v", err)
	}
	return hs
}

func outboxIDs(evs []persistence.OutboxEvent) []int64 {
	ids := make([]int64, len(evs))
	for i, e := range evs {
		ids[i] = e.ID
	}
	return ids
}

func backlog(t *testing.T, ob persistence.Outbox) persistence.OutboxBacklog {
	t.Helper()
	b, err := ob.OutboxBacklog(ctxT(t))
	if err != nil {
		t.Fatalf("outbox backlog: %v", err)
	}
	return b
}

func outboxEvent(t *testing.T, ob persistence.Outbox, id int64) *persistence.OutboxEvent {
	t.Helper()
	e, err := ob.OutboxEventByID(ctxT(t), id)
	if err != nil {
		t.Fatalf("outbox event %d: %v", id, err)
	}
	return e
}

func delivered(t *testing.T, ob persistence.Outbox, id int64, at time.Time) {
	t.Helper()
	if err := ob.OutboxDelivered(ctxT(t), id, at); err != nil {
		t.Fatalf("outbox delivered %d: %v", id, err)
	}
}

// later is a "now" that every row written so far is due at, even with a
// wall clock that steps a little.
func later() time.Time { return time.Now().Add(time.Minute) }

// drain delivers the events of conversation convID one by one, as the CRM
// sync does (always the current head), and returns them in delivery order.
func drain(t *testing.T, ob persistence.Outbox, convID int64) []persistence.OutboxEvent {
	t.Helper()
	var out []persistence.OutboxEvent
	for {
		var head *persistence.OutboxEvent
		for _, h := range heads(t, ob, later(), 1000) {
			if h.ConversationID == convID {
				head = &h
				break
			}
		}
		if head == nil {
			return out
		}
		if len(out) > 0 && head.ID <= out[len(out)-1].ID {
			t.Fatalf("head %d after %d: not in id order", head.ID, out[len(out)-1].ID)
		}
		out = append(out, *head)
		delivered(t, ob, head.ID, time.Time{})
		if len(out) > 1000 {
			t.Fatal("drain does not end")
		}
	}
}

func outboxTypes(evs []persistence.OutboxEvent) []string {
	ts := make([]string, len(evs))
	for i, e := range evs {
		ts[i] = e.Type
	}
	return ts
}

var eventIDPattern = regexp.MustCompile(`^evt_[A-Z2-7]{26}$`)

// testOutboxOff: with Config.Outbox off nothing is written and OnOutbox is
// never called.
func testOutboxOff(t *testing.T, s persistence.Store) {
	ob := outboxOf(t, s)
	rm := createRM(t, s, "off", persistence.RoleRM)
	res := apply(t, s, &persistence.ConversationWrite{Key: key(800), InitialRMID: rm,
		Items: []persistence.WriteItem{inbound("wamid.OFF1", "hi"), outbound("off-1", "hello", rm)}})
	c := res.Conversation
	out := res.Items[1].Message
	apply(t, s, &persistence.ConversationWrite{ConversationID: c.ID, LastSeq: c.LastSeq, Items: []persistence.WriteItem{
		accepted(out.ID, "wamid.OFFOUT"), status("wamid.OFFOUT", persistence.StatusDelivered), assign(0, false)}})
	if b := backlog(t, ob); b != (persistence.OutboxBacklog{}) {
		t.Fatalf("backlog with the outbox off: %+v", b)
	}
	if hs := heads(t, ob, later(), 100); len(hs) != 0 {
		t.Fatalf("heads with the outbox off: %+v", hs)
	}
	if dl, err := ob.OutboxDeadLetters(ctxT(t), 100); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters with the outbox off: %+v %v", dl, err)
	}
	if _, err := ob.OutboxEventByID(ctxT(t), 1); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("event 1 with the outbox off: %v", err)
	}
}

// testOutboxWithData: rows are written with the data they describe and only
// with it: none for duplicates, queued sends or refused writes, none left by
// a write that failed half-way.
func testOutboxWithData(t *testing.T, open Opener) {
	const maxAge = 5 * time.Hour
	s, ob := openOutbox(t, open, func(c *persistence.Config) { c.OutboxMaxAge = maxAge })
	ctx := ctxT(t)
	pending := func(want int64) {
		t.Helper()
		if b := backlog(t, ob); b.Pending != want || b.Dead != 0 {
			t.Fatalf("backlog %+v, want %d pending", b, want)
		}
	}
	pending(0)

	// A created conversation without an RM and without items: no event.
	apply(t, s, &persistence.ConversationWrite{Key: key(810), ContactName: "Nobody"})
	pending(0)

	c := newConv(t, s, key(811))
	in := c.write(inbound("wamid.W1", "hello")).Items[0].Message
	pending(1)
	hs := heads(t, ob, later(), 10)
	if len(hs) != 1 {
		t.Fatalf("heads %+v", hs)
	}
	e := hs[0]
	if e.ID <= 0 || !eventIDPattern.MatchString(e.EventID) || e.Type != persistence.OutboxMessageReceived ||
		e.ConversationID != c.id || e.State != persistence.OutboxPending || e.Attempts != 0 || e.LastError != "" ||
		!e.DeliveredAt.IsZero() || len(e.Data) == 0 {
		t.Fatalf("outbox row %+v", e)
	}
	// Stamped with the transaction's time, like the message.
	if !e.OccurredAt.Equal(in.CreatedAt) || !e.CreatedAt.Equal(in.CreatedAt) || !e.NextAttemptAt.Equal(in.CreatedAt) ||
		!e.ExpiresAt.Equal(in.CreatedAt.Add(maxAge)) {
		t.Fatalf("outbox times %+v, message created %v", e, in.CreatedAt)
	}
	got := outboxEvent(t, ob, e.ID)
	if got.EventID != e.EventID || !jsonEqual(got.Data, e.Data) || !got.ExpiresAt.Equal(e.ExpiresAt) {
		t.Fatalf("OutboxEventByID %+v, want %+v", got, e)
	}
	if _, err := ob.OutboxEventByID(ctx, e.ID+1000); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown event: %v", err)
	}

	// A redelivered webhook: no second event.
	if r := c.write(inbound("wamid.W1", "hello again")); !r.Items[0].Duplicate {
		t.Fatal("redelivery not a duplicate")
	}
	pending(1)
	// A queued send is not an event yet; a double click is not one either.
	outs := c.write(outbound("w-1", "one", 0), outbound("w-2", "two", 0), outbound("w-1", "one", 0)).Items
	pending(1)
	// A write that stores a message and then fails (the second message
	// claims the first one's provider id) leaves no event behind.
	c.write(accepted(outs[0].Message.ID, "wamid.WTAKEN"))
	pending(2)
	_, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq,
		Items: []persistence.WriteItem{inbound("wamid.WHALF", "rolled back"), accepted(outs[1].Message.ID, "wamid.WTAKEN")}})
	if err == nil {
		t.Fatal("write with a taken provider id succeeded")
	}
	pending(2)
	// A stale write changes nothing, events included.
	_, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq - 1,
		Items: []persistence.WriteItem{inbound("wamid.WSTALE", "stale")}})
	if !errors.Is(err, persistence.ErrSeqTaken) {
		t.Fatalf("stale write: %v", err)
	}
	pending(2)
	// The provider's id again for the same message: already recorded, no event.
	c.write(accepted(outs[0].Message.ID, "wamid.WTAKEN"))
	pending(2)
	// A status that moves: one event; the same status again, or one that
	// would move backwards, none.
	c.write(status("wamid.WTAKEN", persistence.StatusDelivered))
	pending(3)
	c.write(status("wamid.WTAKEN", persistence.StatusDelivered), status("wamid.WTAKEN", persistence.StatusSent))
	pending(3)
	// A status for an unknown message: none.
	c.write(status("wamid.NOPE", persistence.StatusRead))
	pending(3)
	// An assignment: one; to the same RM again, or only-if-unassigned, none.
	rm := createRM(t, s, "with-data", persistence.RoleRM)
	c.write(assign(rm, false))
	pending(4)
	c.write(assign(rm, false), assign(rm+1, true))
	pending(4)

	evs := drain(t, ob, c.id)
	want := []string{persistence.OutboxMessageReceived, persistence.OutboxMessageSent, persistence.OutboxMessageStatus,
		persistence.OutboxConversationAssigned}
	if fmt.Sprint(outboxTypes(evs)) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", outboxTypes(evs), want)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		if !eventIDPattern.MatchString(e.EventID) || seen[e.EventID] {
			t.Fatalf("event id %q malformed or repeated", e.EventID)
		}
		seen[e.EventID] = true
	}
	pending(0)

	// The default maximum age is 72 hours.
	s2, ob2 := openOutbox(t, open, nil)
	r := apply(t, s2, &persistence.ConversationWrite{Key: key(812), Items: []persistence.WriteItem{inbound("wamid.W72", "x")}})
	hs = heads(t, ob2, later(), 10)
	if len(hs) != 1 || !hs[0].ExpiresAt.Equal(r.Items[0].Message.CreatedAt.Add(72*time.Hour)) {
		t.Fatalf("default max age: %+v", hs)
	}
}

// testOutboxEventData checks the data object of every event type, key by key.
func testOutboxEventData(t *testing.T, open Opener) {
	s, ob := openOutbox(t, open, nil)
	rm1 := createRM(t, s, "data1", persistence.RoleRM)
	rm2 := createRM(t, s, "data2", persistence.RoleRM)
	k := key(820)
	pts := time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC)
	in := inbound("wamid.D1", "नमस्ते 🙏")
	in.Message.Type = "image"
	in.Message.ProviderTimestamp = pts
	in.Message.Media = []persistence.Media{{ProviderMediaID: "m1", MimeType: "image/jpeg", Caption: "photo"}}
	res := apply(t, s, &persistence.ConversationWrite{Key: k, ContactName: "Ravi", InitialRMID: rm1, Items: []persistence.WriteItem{
		in,
		outbound("d-1", "plain", rm1),
		{Kind: persistence.ItemOutbound, Message: &persistence.Message{ClientMsgID: "d-2", RMID: rm1,
			Template: &persistence.Template{Name: "greet", Language: "en", Params: []string{"Ravi"}}}},
	}})
	c := &conv{t: t, s: s, key: k, id: res.Conversation.ID, seq: res.Conversation.LastSeq}
	inMsg, out1, out2 := res.Items[0].Message, res.Items[1].Message, res.Items[2].Message
	acc := c.write(accepted(out1.ID, "wamid.DOUT1"), accepted(out2.ID, "wamid.DOUT2")).Items
	failure := json.RawMessage(`{"code":"131047","title":"Re-engagement message","message":"more than 24 hours"}`)
	c.write(status("wamid.DOUT1", persistence.StatusDelivered), persistence.WriteItem{Kind: persistence.ItemStatus,
		Status: &persistence.StatusChange{MessageID: out2.ID, Status: persistence.StatusFailed, Error: failure}})
	c.write(assign(rm2, false))

	conversation := func(assigned int64) map[string]any {
		return map[string]any{"id": c.id, "channel": persistence.ChannelWhatsApp, "business_number": business, "assigned_rm_id": assigned}
	}
	contact := map[string]any{"phone": k.ContactPhone, "name": "Ravi"}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	sentMessage := func(m *persistence.Message, pid string, template any) map[string]any {
		typ := "text"
		if template != nil {
			typ = "template"
		}
		return map[string]any{"id": m.ID, "seq": m.Seq, "direction": "out", "channel": persistence.ChannelWhatsApp,
			"type": typ, "text": m.Text, "media": []any{}, "template": template, "provider_message_id": pid,
			"client_msg_id": m.ClientMsgID, "status": persistence.StatusAccepted, "rm_id": rm1, "provider_timestamp": nil,
			"created_at": rfc(m.CreatedAt)}
	}
	want := []struct {
		typ  string
		data map[string]any
	}{
		{persistence.OutboxConversationAssigned, map[string]any{"conversation": conversation(rm1), "contact": contact,
			"rm_id": rm1, "previous_rm_id": 0}},
		{persistence.OutboxMessageReceived, map[string]any{"conversation": conversation(rm1), "contact": contact,
			"message": map[string]any{"id": inMsg.ID, "seq": 1, "direction": "in", "channel": persistence.ChannelWhatsApp,
				"type": "image", "text": "नमस्ते 🙏", "media": []any{map[string]any{"id": "m1", "mime_type": "image/jpeg", "caption": "photo"}},
				"template": nil, "provider_message_id": "wamid.D1", "client_msg_id": "", "status": persistence.StatusReceived,
				"rm_id": 0, "provider_timestamp": rfc(pts), "created_at": rfc(inMsg.CreatedAt)}}},
		{persistence.OutboxMessageSent, map[string]any{"conversation": conversation(rm1), "contact": contact,
			"message": sentMessage(acc[0].Message, "wamid.DOUT1", nil)}},
		{persistence.OutboxMessageSent, map[string]any{"conversation": conversation(rm1), "contact": contact,
			"message": sentMessage(acc[1].Message, "wamid.DOUT2", map[string]any{"name": "greet", "language": "en", "params": []any{"Ravi"}})}},
		{persistence.OutboxMessageStatus, map[string]any{"conversation": conversation(rm1), "contact": contact,
			"message": map[string]any{"id": out1.ID, "provider_message_id": "wamid.DOUT1", "client_msg_id": "d-1", "direction": "out"},
			"status":  persistence.StatusDelivered, "error": nil}},
		{persistence.OutboxMessageStatus, map[string]any{"conversation": conversation(rm1), "contact": contact,
			"message": map[string]any{"id": out2.ID, "provider_message_id": "wamid.DOUT2", "client_msg_id": "d-2", "direction": "out"},
			"status":  persistence.StatusFailed, "error": failure}},
		{persistence.OutboxConversationAssigned, map[string]any{"conversation": conversation(rm2), "contact": contact,
			"rm_id": rm2, "previous_rm_id": rm1}},
	}
	evs := drain(t, ob, c.id)
	if len(evs) != len(want) {
		t.Fatalf("events %v, want %d", outboxTypes(evs), len(want))
	}
	for i, w := range want {
		wantJSON, err := json.Marshal(w.data)
		if err != nil {
			t.Fatal(err)
		}
		if evs[i].Type != w.typ || !jsonEqual(evs[i].Data, wantJSON) {
			t.Errorf("event %d: %s %s\nwant %s %s", i, evs[i].Type, evs[i].Data, w.typ, wantJSON)
		}
	}
}

// testOutboxHeads: one head per conversation, oldest first, due only; a
// head waiting for a retry holds back its own conversation and no other.
func testOutboxHeads(t *testing.T, open Opener) {
	s, ob := openOutbox(t, open, nil)
	ctx := ctxT(t)
	a, b, c := newConv(t, s, key(830)), newConv(t, s, key(831)), newConv(t, s, key(832))
	ids := map[string]int64{}
	for i := 1; i <= 3; i++ {
		for _, x := range []struct {
			name string
			c    *conv
		}{{"A", a}, {"B", b}, {"C", c}} {
			pid := fmt.Sprintf("wamid.H%s%d", x.name, i)
			x.c.write(inbound(pid, pid))
		}
	}
	// Event ids of the rows, from the heads as they advance: collect first.
	first := heads(t, ob, later(), 10)
	if len(first) != 3 || first[0].ConversationID != a.id || first[1].ConversationID != b.id || first[2].ConversationID != c.id {
		t.Fatalf("heads %+v", first)
	}
	ids["A1"], ids["B1"], ids["C1"] = first[0].ID, first[1].ID, first[2].ID
	if !(ids["A1"] < ids["B1"] && ids["B1"] < ids["C1"]) {
		t.Fatalf("heads not oldest first: %v", outboxIDs(first))
	}
	// limit bounds the number of conversations.
	if hs := heads(t, ob, later(), 2); fmt.Sprint(outboxIDs(hs)) != fmt.Sprint([]int64{ids["A1"], ids["B1"]}) {
		t.Fatalf("limit 2: %v", outboxIDs(hs))
	}
	// Not due yet: a head whose next attempt is after now is not returned.
	if hs := heads(t, ob, first[0].NextAttemptAt.Add(-time.Second), 10); len(hs) != 0 {
		t.Fatalf("heads before they are due: %v", outboxIDs(hs))
	}

	// A's head fails, next attempt in an hour: A's later events wait, B's
	// and C's do not.
	now := later()
	retry := now.Add(time.Hour).UTC().Truncate(time.Microsecond)
	if err := ob.OutboxFailed(ctx, ids["A1"], "crm answered 503", retry, false); err != nil {
		t.Fatal(err)
	}
	a1 := outboxEvent(t, ob, ids["A1"])
	if a1.State != persistence.OutboxPending || a1.Attempts != 1 || a1.LastError != "crm answered 503" || !a1.NextAttemptAt.Equal(retry) {
		t.Fatalf("after a failure %+v", a1)
	}
	if hs := heads(t, ob, now, 10); fmt.Sprint(outboxIDs(hs)) != fmt.Sprint([]int64{ids["B1"], ids["C1"]}) {
		t.Fatalf("heads with A waiting: %v (A1 %d)", outboxIDs(hs), ids["A1"])
	}
	// Once due again, A's head is the same event.
	if hs := heads(t, ob, retry, 10); fmt.Sprint(outboxIDs(hs)) != fmt.Sprint([]int64{ids["A1"], ids["B1"], ids["C1"]}) {
		t.Fatalf("heads at the retry time: %v", outboxIDs(hs))
	}

	// B's head delivered: B's next event is its head.
	at := time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)
	delivered(t, ob, ids["B1"], at)
	hs := heads(t, ob, now, 10)
	if len(hs) != 2 || hs[0].ID != ids["C1"] || hs[1].ConversationID != b.id || hs[1].ID <= ids["C1"] {
		t.Fatalf("heads after B1 delivered: %v (C1 %d, B1 %d)", outboxIDs(hs), ids["C1"], ids["B1"])
	}
	b1 := outboxEvent(t, ob, ids["B1"])
	if b1.State != persistence.OutboxDelivered || !b1.DeliveredAt.Equal(at) || b1.Attempts != 0 {
		t.Fatalf("delivered row %+v", b1)
	}
	// Delivered again (a second sender): nothing changes. A failure
	// reported for a delivered event changes nothing either.
	delivered(t, ob, ids["B1"], at.Add(time.Hour))
	if err := ob.OutboxFailed(ctx, ids["B1"], "late failure", now, true); err != nil {
		t.Fatal(err)
	}
	if b1 := outboxEvent(t, ob, ids["B1"]); b1.State != persistence.OutboxDelivered || !b1.DeliveredAt.Equal(at) ||
		b1.Attempts != 0 || b1.LastError != "" {
		t.Fatalf("delivered row changed: %+v", b1)
	}
	// A delivered head that had failed before.
	delivered(t, ob, ids["A1"], time.Time{})
	if a1 := outboxEvent(t, ob, ids["A1"]); a1.State != persistence.OutboxDelivered || a1.DeliveredAt.IsZero() || a1.Attempts != 1 {
		t.Fatalf("A1 after delivery %+v", a1)
	}
	// Unknown ids.
	if err := ob.OutboxDelivered(ctx, 999999, now); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("delivered unknown: %v", err)
	}
	if err := ob.OutboxFailed(ctx, 999999, "x", now, false); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("failed unknown: %v", err)
	}
	if err := ob.OutboxDelivered(ctx, 0, now); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("delivered id 0: %v", err)
	}
	// A long error is cut to 1000 characters.
	long := ""
	for len([]rune(long)) < 1500 {
		long += "दोष "
	}
	c1 := ids["C1"]
	if err := ob.OutboxFailed(ctx, c1, long, now, false); err != nil {
		t.Fatal(err)
	}
	if e := outboxEvent(t, ob, c1); len([]rune(e.LastError)) != 1000 || e.LastError != string([]rune(long)[:1000]) {
		t.Fatalf("last error of %d characters", len([]rune(e.LastError)))
	}
	// Each conversation drains in order.
	for _, x := range []*conv{a, b, c} {
		evs := drain(t, ob, x.id)
		if len(evs) == 0 || len(evs) > 3 {
			t.Fatalf("conversation %d drained %d events", x.id, len(evs))
		}
	}
	if hs := heads(t, ob, later(), 10); len(hs) != 0 {
		t.Fatalf("heads after draining: %+v", hs)
	}
}

// testOutboxDeadLetters: dead events leave the heads (their conversation
// goes on), are listed oldest first, and replay makes them pending again.
func testOutboxDeadLetters(t *testing.T, open Opener) {
	s, ob := openOutbox(t, open, nil)
	ctx := ctxT(t)
	a, b := newConv(t, s, key(840)), newConv(t, s, key(841))
	a.write(inbound("wamid.DA1", "a1"))
	b.write(inbound("wamid.DB1", "b1"))
	a.write(inbound("wamid.DA2", "a2"))
	hs := heads(t, ob, later(), 10)
	if len(hs) != 2 {
		t.Fatalf("heads %+v", hs)
	}
	a1, b1 := hs[0].ID, hs[1].ID
	now := later()
	if err := ob.OutboxFailed(ctx, a1, "expired: crm answered 500", now, true); err != nil {
		t.Fatal(err)
	}
	e := outboxEvent(t, ob, a1)
	if e.State != persistence.OutboxDead || e.Attempts != 1 || e.LastError != "expired: crm answered 500" {
		t.Fatalf("dead row %+v", e)
	}
	// A's next event is its head now; B is untouched.
	hs = heads(t, ob, now, 10)
	if len(hs) != 2 || hs[0].ID != b1 || hs[1].ConversationID != a.id || hs[1].ID <= a1 {
		t.Fatalf("heads with A1 dead: %+v", hs)
	}
	a2 := hs[1].ID
	if err := ob.OutboxFailed(ctx, b1, "expired", now, true); err != nil {
		t.Fatal(err)
	}
	dl, err := ob.OutboxDeadLetters(ctx, 10)
	if err != nil || fmt.Sprint(outboxIDs(dl)) != fmt.Sprint([]int64{a1, b1}) {
		t.Fatalf("dead letters %v %v", outboxIDs(dl), err)
	}
	if dl[0].EventID != e.EventID || dl[0].Type != persistence.OutboxMessageReceived || len(dl[0].Data) == 0 {
		t.Fatalf("dead letter %+v", dl[0])
	}
	if dl, err := ob.OutboxDeadLetters(ctx, 1); err != nil || len(dl) != 1 || dl[0].ID != a1 {
		t.Fatalf("dead letters, limit 1: %+v %v", dl, err)
	}
	if bl := backlog(t, ob); bl.Dead != 2 || bl.Pending != 1 || bl.ConversationsBehind != 1 {
		t.Fatalf("backlog %+v", bl)
	}

	// Replay one: pending again, from scratch, with a new expiry; it is A's
	// head again (it is older than A2).
	replayAt := time.Now().UTC().Truncate(time.Microsecond)
	expires := replayAt.Add(72 * time.Hour)
	n, err := ob.OutboxReplay(ctx, a1, replayAt, expires)
	if err != nil || n != 1 {
		t.Fatalf("replay one: %d %v", n, err)
	}
	e = outboxEvent(t, ob, a1)
	if e.State != persistence.OutboxPending || e.Attempts != 0 || !e.NextAttemptAt.Equal(replayAt) || !e.ExpiresAt.Equal(expires) {
		t.Fatalf("replayed row %+v", e)
	}
	if hs := heads(t, ob, now, 10); len(hs) != 1 || hs[0].ID != a1 {
		t.Fatalf("heads after replaying A1: %v (want A1 %d before A2 %d)", outboxIDs(hs), a1, a2)
	}
	// Replaying an event that is not dead does nothing; an unknown one is
	// not found.
	if n, err := ob.OutboxReplay(ctx, a1, replayAt, expires); err != nil || n != 0 {
		t.Fatalf("replay of a pending event: %d %v", n, err)
	}
	if _, err := ob.OutboxReplay(ctx, 999999, replayAt, expires); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("replay unknown: %v", err)
	}
	// Replay all.
	if err := ob.OutboxFailed(ctx, a1, "dead again", now, true); err != nil {
		t.Fatal(err)
	}
	n, err = ob.OutboxReplay(ctx, 0, replayAt, expires)
	if err != nil || n != 2 {
		t.Fatalf("replay all: %d %v", n, err)
	}
	if dl, err := ob.OutboxDeadLetters(ctx, 10); err != nil || len(dl) != 0 {
		t.Fatalf("dead letters after replay all: %+v %v", dl, err)
	}
	if n, err := ob.OutboxReplay(ctx, 0, replayAt, expires); err != nil || n != 0 {
		t.Fatalf("replay all with none dead: %d %v", n, err)
	}
	if hs := heads(t, ob, now, 10); fmt.Sprint(outboxIDs(hs)) != fmt.Sprint([]int64{a1, b1}) {
		t.Fatalf("heads after replay all: %v", outboxIDs(hs))
	}
	if bl := backlog(t, ob); bl.Dead != 0 || bl.Pending != 3 || bl.ConversationsBehind != 2 {
		t.Fatalf("backlog after replay %+v", bl)
	}
	// Without times: due at the commit, expiring after the configured
	// maximum age (72h by default).
	if err := ob.OutboxFailed(ctx, b1, "dead once more", now, true); err != nil {
		t.Fatal(err)
	}
	if n, err := ob.OutboxReplay(ctx, b1, time.Time{}, time.Time{}); err != nil || n != 1 {
		t.Fatalf("replay without times: %d %v", n, err)
	}
	e = outboxEvent(t, ob, b1)
	if e.State != persistence.OutboxPending || e.NextAttemptAt.IsZero() || e.NextAttemptAt.After(later()) ||
		!e.ExpiresAt.Equal(e.NextAttemptAt.Add(72*time.Hour)) {
		t.Fatalf("replayed without times: %+v", e)
	}
}

// testOutboxBacklog: counts, the oldest pending event, conversations behind.
func testOutboxBacklog(t *testing.T, open Opener) {
	s, ob := openOutbox(t, open, nil)
	ctx := ctxT(t)
	if b := backlog(t, ob); b != (persistence.OutboxBacklog{}) {
		t.Fatalf("empty backlog %+v", b)
	}
	a, b := newConv(t, s, key(850)), newConv(t, s, key(851))
	first := a.write(inbound("wamid.BA1", "x")).Items[0].Message
	a.write(inbound("wamid.BA2", "x"))
	b.write(inbound("wamid.BB1", "x"))
	b.write(inbound("wamid.BB2", "x"))
	bl := backlog(t, ob)
	if bl.Pending != 4 || bl.Dead != 0 || bl.ConversationsBehind != 2 || !bl.OldestPending.Equal(first.CreatedAt) {
		t.Fatalf("backlog %+v (oldest want %v)", bl, first.CreatedAt)
	}
	evs := drain(t, ob, a.id)
	if len(evs) != 2 {
		t.Fatalf("drained %d", len(evs))
	}
	hs := heads(t, ob, later(), 10)
	if len(hs) != 1 {
		t.Fatalf("heads %+v", hs)
	}
	if err := ob.OutboxFailed(ctx, hs[0].ID, "gone", later(), true); err != nil {
		t.Fatal(err)
	}
	bl = backlog(t, ob)
	if bl.Pending != 1 || bl.Dead != 1 || bl.ConversationsBehind != 1 || bl.OldestPending.IsZero() ||
		bl.OldestPending.Before(first.CreatedAt) {
		t.Fatalf("backlog after draining A, B1 dead: %+v", bl)
	}
	drain(t, ob, b.id)
	if bl := backlog(t, ob); bl != (persistence.OutboxBacklog{Dead: 1}) {
		t.Fatalf("backlog with only a dead letter: %+v", bl)
	}
}

// testOutboxNotify: OnOutbox runs after commits that wrote outbox rows (or
// replayed dead ones), before the writer hears back, and not otherwise.
func testOutboxNotify(t *testing.T, open Opener) {
	var calls atomic.Int64
	s, ob := openOutbox(t, open, func(c *persistence.Config) { c.OnOutbox = func() { calls.Add(1) } })
	ctx := ctxT(t)
	expect := func(want int64, what string) {
		t.Helper()
		if n := calls.Load(); n != want {
			t.Fatalf("%s: OnOutbox called %d times, want %d", what, n, want)
		}
	}
	c := newConv(t, s, key(860))
	c.write(inbound("wamid.N1", "x"))
	expect(1, "inbound")
	c.write(inbound("wamid.N1", "x"))
	expect(1, "duplicate")
	out := c.write(outbound("n-1", "queued", 0)).Items[0].Message
	expect(1, "queued send")
	if _, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp"}); err != nil {
		t.Fatal(err)
	}
	expect(1, "webhook log")
	_, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq,
		Items: []persistence.WriteItem{inbound("wamid.NFAIL", "x"), {Kind: persistence.ItemStatus, Status: &persistence.StatusChange{
			MessageID: out.ID, Status: persistence.StatusRead, Raw: json.RawMessage(`{bad`)}}}})
	if !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("invalid write: %v", err)
	}
	expect(1, "refused write")
	c.write(accepted(out.ID, "wamid.NOUT"), status("wamid.NOUT", persistence.StatusSent))
	expect(2, "sent and status in one write")
	hs := heads(t, ob, later(), 10)
	if len(hs) != 1 {
		t.Fatalf("heads %+v", hs)
	}
	delivered(t, ob, hs[0].ID, time.Time{})
	expect(2, "delivered")
	hs = heads(t, ob, later(), 10)
	if err := ob.OutboxFailed(ctx, hs[0].ID, "x", later(), true); err != nil {
		t.Fatal(err)
	}
	expect(2, "failed")
	if n, err := ob.OutboxReplay(ctx, 0, time.Time{}, later().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	expect(3, "replay")
	if n, err := ob.OutboxReplay(ctx, 0, time.Time{}, later().Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("replay of nothing: %d %v", n, err)
	}
	expect(3, "replay of nothing")
}

// testOutboxGroupCommit: deliveries share transactions like every other
// write, and a batch retried without a bad write keeps exactly the good
// writes' events.
func testOutboxGroupCommit(t *testing.T, open Opener) {
	const rows = 8
	type report struct {
		n   int
		err error
	}
	reports := make(chan report, 16)
	s, ob := openOutbox(t, open, func(c *persistence.Config) {
		c.BatchMaxRows = rows
		c.BatchMaxWait = time.Hour // a batch is exactly rows writes
		c.BatchWaitFull = true
		c.OnBatch = func(n int, _ time.Duration, err error) { reports <- report{n, err} }
	})
	expect := func(wantErr bool) {
		t.Helper()
		r := <-reports
		if r.n != rows || (r.err != nil) != wantErr {
			t.Fatalf("batch %+v, want %d writes, error %v", r, rows, wantErr)
		}
	}
	// Round 1: eight conversations, one queued send in the first.
	ws := make([]*persistence.ConversationWrite, rows)
	for i := range ws {
		ws[i] = &persistence.ConversationWrite{Key: key(870 + i), Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.G", i), "x")}}
	}
	ws[0].Items = append(ws[0].Items, outbound("g-1", "queued", 0), outbound("g-2", "queued", 0))
	_, res, errs := submitAll(t, s, ws)
	expect(false)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if b := backlog(t, ob); b.Pending != rows {
		t.Fatalf("backlog after round 1 %+v", b)
	}
	// Round 2: seven good writes and one that fails half-way.
	c0 := res[0].Conversation
	ws = []*persistence.ConversationWrite{{ConversationID: c0.ID, LastSeq: c0.LastSeq, Items: []persistence.WriteItem{
		accepted(res[0].Items[1].Message.ID, "wamid.GTAKEN")}}}
	for i := 1; i < rows; i++ {
		if i == 4 {
			ws = append(ws, &persistence.ConversationWrite{ConversationID: c0.ID, LastSeq: c0.LastSeq + 100, Items: []persistence.WriteItem{
				inbound("wamid.GSTALE", "x")}})
			continue
		}
		c := res[i].Conversation
		ws = append(ws, &persistence.ConversationWrite{ConversationID: c.ID, LastSeq: c.LastSeq, Items: []persistence.WriteItem{
			inbound(fmt.Sprint("wamid.G2.", i), "x")}})
	}
	_, _, errs = submitAll(t, s, ws)
	expect(false)
	for i, err := range errs {
		if (err != nil) != (i == 4) {
			t.Fatalf("round 2 write %d: %v", i, err)
		}
	}
	if b := backlog(t, ob); b.Pending != 2*rows-1 {
		t.Fatalf("backlog after round 2 %+v", b)
	}
	// Round 3: a write that stores a message, then fails (taken provider id),
	// in a batch with seven good ones: rolled back, retried without it.
	ws = []*persistence.ConversationWrite{{ConversationID: c0.ID, LastSeq: c0.LastSeq, Items: []persistence.WriteItem{
		inbound("wamid.GHALF", "x"), accepted(res[0].Items[2].Message.ID, "wamid.GTAKEN")}}}
	for i := 0; i < rows-1; i++ {
		ws = append(ws, &persistence.ConversationWrite{Key: key(890 + i), Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.G3.", i), "x")}})
	}
	_, _, errs = submitAll(t, s, ws)
	expect(true)
	for i, err := range errs {
		if (err != nil) != (i == 0) {
			t.Fatalf("round 3 write %d: %v", i, err)
		}
	}
	if b := backlog(t, ob); b.Pending != 3*rows-2 {
		t.Fatalf("backlog after round 3 %+v, want %d pending", b, 3*rows-2)
	}
	// Round 4: eight deliveries in one transaction.
	hs := heads(t, ob, later(), rows)
	if len(hs) != rows {
		t.Fatalf("heads %d", len(hs))
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	derrs := make([]error, rows)
	for i, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			derrs[i] = ob.OutboxDelivered(ctx, h.ID, time.Time{})
		}()
	}
	wg.Wait()
	expect(false)
	for i, err := range derrs {
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if e := outboxEvent(t, ob, hs[i].ID); e.State != persistence.OutboxDelivered {
			t.Fatalf("delivery %d: %+v", i, e)
		}
	}
	if b := backlog(t, ob); b.Pending != 3*rows-2-rows {
		t.Fatalf("backlog after deliveries %+v", b)
	}
}
