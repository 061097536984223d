package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"urva/persistence"
)

// Opener opens a fresh, migrated, empty store that is closed when the test
// ends; adjust, when not nil, changes the configuration before it opens.
type Opener func(t *testing.T, adjust func(*persistence.Config)) persistence.Store

// Run is the contract test suite of persistence.Store. open must return a
// fresh, migrated, empty store with the default configuration that is closed
// when the test ends (it is called once per subtest). The tests that need a
// configuration of their own (the CRM outbox) are skipped: RunConfig runs
// every test.
func Run(t *testing.T, open func(t *testing.T) persistence.Store) {
	RunConfig(t, func(t *testing.T, adjust func(*persistence.Config)) persistence.Store {
		if adjust != nil {
			t.Skip("needs its own store configuration: run the suite with storetest.RunConfig")
		}
		return open(t)
	})
}

// RunConfig is Run with an opener that applies a configuration.
func RunConfig(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s persistence.Store) // on a store with the default configuration
		cfg  func(t *testing.T, open Opener)         // opens the store(s) it needs
	}{
		{name: "MigrateIdempotent", fn: testMigrateIdempotent},
		{name: "RMs", fn: testRMs},
		{name: "InboundCreatesConversation", fn: testInboundCreatesConversation},
		{name: "ContactNameAndOwner", fn: testContactNameAndOwner},
		{name: "SMSOptOut", fn: testSMSOptOut},
		{name: "InboundDedupe", fn: testInboundDedupe},
		{name: "SeqContiguousWithDuplicates", fn: testSeqContiguous},
		{name: "SeqTakenChangesNothing", fn: testSeqTaken},
		{name: "InvalidWrites", fn: testInvalidWrites},
		{name: "Outbound", fn: testOutbound},
		{name: "Statuses", fn: testStatuses},
		{name: "Assign", fn: testAssign},
		{name: "InitialAssignment", fn: testInitialAssignment},
		{name: "ListConversations", fn: testListConversations},
		{name: "InboundWindow", fn: testInboundWindow},
		{name: "EventsAfter", fn: testEventsAfter},
		{name: "ConversationEvents", fn: testConversationEvents},
		{name: "Unicode", fn: testUnicode},
		{name: "ManyConversationsInFlight", fn: testManyConversations},
		{name: "FailingWriteFailsAlone", fn: testFailingWriteAlone},
		{name: "SameBatchSeesItsOwnMessages", cfg: testSameBatchMessages},
		{name: "ConcurrentWriters", fn: testConcurrentWriters},
		{name: "ContextCancelled", fn: testContextCancelled},
		{name: "CloseDrains", fn: testCloseDrains},
		{name: "WebhookLog", fn: testWebhookLog},
		{name: "WebhookLogBatch", fn: testWebhookLogBatch},
		{name: "OutboxOffWritesNothing", fn: testOutboxOff},
		{name: "OutboxWrittenWithTheData", cfg: testOutboxWithData},
		{name: "OutboxEventData", cfg: testOutboxEventData},
		{name: "OutboxHeads", cfg: testOutboxHeads},
		{name: "OutboxDeadLettersAndReplay", cfg: testOutboxDeadLetters},
		{name: "OutboxBacklog", cfg: testOutboxBacklog},
		{name: "OutboxNotify", cfg: testOutboxNotify},
		{name: "OutboxGroupCommit", cfg: testOutboxGroupCommit},
		{name: "CallLifecycle", fn: testCallLifecycle},
		{name: "CallOutOfOrder", fn: testCallOutOfOrder},
		{name: "CallMerge", fn: testCallMerge},
		{name: "CallProviderSIDUnique", fn: testCallProviderSIDUnique},
		{name: "UnfinishedCalls", fn: testUnfinishedCalls},
		{name: "CallRecordingPath", fn: testCallRecordingPath},
		{name: "CallInvalid", fn: testCallInvalid},
		{name: "CallOutbox", cfg: testCallOutbox},
		{name: "VideoCallLifecycle", fn: testVideoCallLifecycle},
		{name: "VideoCallRMToRM", fn: testVideoCallRMToRM},
		{name: "VideoCallInvalid", fn: testVideoCallInvalid},
		{name: "UnfinishedVideoCalls", fn: testUnfinishedVideoCalls},
		{name: "VideoCallOutbox", cfg: testVideoCallOutbox},
		{name: "VideoCallGroupCommit", cfg: testVideoCallGroupCommit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg != nil {
				tc.cfg(t, open)
				return
			}
			tc.fn(t, open(t, nil))
		})
	}
}

// Helpers.

const business = "+15550001111"

func key(n int) persistence.ConversationKey {
	return persistence.ConversationKey{
		Channel:        persistence.ChannelWhatsApp,
		BusinessNumber: business,
		ContactPhone:   fmt.Sprintf("+9198%08d", n),
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func inbound(pid, text string) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemInbound, Message: &persistence.Message{
		ProviderMessageID: pid, Type: "text", Text: text,
		Payload: json.RawMessage(fmt.Sprintf(`{"id":%q,"type":"text","text":{"body":%q}}`, pid, text)),
	}}
}

func outbound(clientID, text string, rmID int64) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemOutbound, Message: &persistence.Message{
		ClientMsgID: clientID, Text: text, RMID: rmID,
	}}
}

func status(pid, st string) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemStatus, Status: &persistence.StatusChange{
		ProviderMessageID: pid, Status: st, Raw: json.RawMessage(fmt.Sprintf(`{"id":%q,"status":%q}`, pid, st)),
	}}
}

func accepted(msgID int64, pid string) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemProviderAccepted, Status: &persistence.StatusChange{
		MessageID: msgID, ProviderMessageID: pid,
	}}
}

func assign(rmID int64, onlyIfUnassigned bool) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemAssign, AssignRMID: rmID, OnlyIfUnassigned: onlyIfUnassigned}
}

// apply commits w and fails the test on error.
func apply(t *testing.T, s persistence.Store, w *persistence.ConversationWrite) *persistence.WriteResult {
	t.Helper()
	res, err := s.ApplyConversationWrite(ctxT(t), w)
	if err != nil {
		t.Fatalf("apply write: %v", err)
	}
	if len(res.Items) != len(w.Items) {
		t.Fatalf("write has %d items, result %d", len(w.Items), len(res.Items))
	}
	return res
}

// conv tracks one conversation as a writer does: id and last seq.
type conv struct {
	t    *testing.T
	s    persistence.Store
	key  persistence.ConversationKey
	id   int64
	seq  int64
	last *persistence.WriteResult
}

func newConv(t *testing.T, s persistence.Store, k persistence.ConversationKey) *conv {
	return &conv{t: t, s: s, key: k}
}

func (c *conv) write(items ...persistence.WriteItem) *persistence.WriteResult {
	c.t.Helper()
	res := apply(c.t, c.s, &persistence.ConversationWrite{ConversationID: c.id, Key: c.key, LastSeq: c.seq, Items: items})
	c.id, c.seq, c.last = res.Conversation.ID, res.Conversation.LastSeq, res
	return res
}

func jsonEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

// sameMessage compares a stored message with the one a write returned.
// JSON columns compare by value (MySQL may reformat them).
func sameMessage(t *testing.T, what string, got, want *persistence.Message) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if !jsonEqual(g.Payload, w.Payload) || !jsonEqual(g.Error, w.Error) {
		t.Errorf("%s: payload/error %s %s, want %s %s", what, g.Payload, g.Error, w.Payload, w.Error)
	}
	for _, p := range []struct{ g, w time.Time }{{g.ProviderTimestamp, w.ProviderTimestamp}, {g.CreatedAt, w.CreatedAt}, {g.UpdatedAt, w.UpdatedAt}} {
		if !p.g.Equal(p.w) {
			t.Errorf("%s: time %v, want %v", what, p.g, p.w)
		}
	}
	g.Payload, w.Payload, g.Error, w.Error = nil, nil, nil, nil
	g.ProviderTimestamp, w.ProviderTimestamp, g.CreatedAt, w.CreatedAt, g.UpdatedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sameConversation(t *testing.T, what string, got, want persistence.Conversation) {
	t.Helper()
	for _, p := range []struct{ g, w time.Time }{{got.LastMessageAt, want.LastMessageAt}, {got.LastInboundAt, want.LastInboundAt}, {got.CreatedAt, want.CreatedAt}} {
		if !p.g.Equal(p.w) {
			t.Errorf("%s: time %v, want %v", what, p.g, p.w)
		}
	}
	got.LastMessageAt, got.LastInboundAt, got.CreatedAt = time.Time{}, time.Time{}, time.Time{}
	want.LastMessageAt, want.LastInboundAt, want.CreatedAt = time.Time{}, time.Time{}, time.Time{}
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func events(t *testing.T, s persistence.Store, convID int64) []persistence.EventRecord {
	t.Helper()
	evs, err := s.ConversationEvents(ctxT(t), convID, 0, 10000)
	if err != nil {
		t.Fatalf("conversation events: %v", err)
	}
	return evs
}

// checkSeqs verifies that the events of a conversation are 1..n with no gap
// and that every message event's message carries the event's seq.
func checkSeqs(t *testing.T, s persistence.Store, convID, n int64) {
	t.Helper()
	evs := events(t, s, convID)
	if int64(len(evs)) != n {
		t.Fatalf("conversation %d: %d events, want %d", convID, len(evs), n)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("conversation %d: event %d has seq %d", convID, i, e.Seq)
		}
		if e.Type == persistence.EventMessage && (e.Message == nil || e.Message.Seq != e.Seq) {
			t.Fatalf("conversation %d: message event seq %d carries message %+v", convID, e.Seq, e.Message)
		}
		if i > 0 && e.ID <= evs[i-1].ID {
			t.Fatalf("conversation %d: event ids not increasing with seq", convID)
		}
	}
	c, err := s.ConversationByID(ctxT(t), convID)
	if err != nil {
		t.Fatal(err)
	}
	if c.LastSeq != n {
		t.Fatalf("conversation %d: last_seq %d, want %d", convID, c.LastSeq, n)
	}
}

func createRM(t *testing.T, s persistence.Store, username, role string) int64 {
	t.Helper()
	id, err := s.CreateRM(ctxT(t), &persistence.RM{Username: username, Name: username, Role: role, PasswordHash: "x"})
	if err != nil {
		t.Fatalf("create RM %s: %v", username, err)
	}
	return id
}

// Tests.

func testMigrateIdempotent(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	for i := 0; i < 2; i++ {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate again (%d): %v", i, err)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	c := newConv(t, s, key(1))
	c.write(inbound("wamid.M1", "after migrations"))
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate with data: %v", err)
	}
	checkSeqs(t, s, c.id, 1)
}

func testRMs(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	if n, err := s.CountRMs(ctx); err != nil || n != 0 {
		t.Fatalf("count empty: %d %v", n, err)
	}
	created := time.Date(2024, 5, 1, 10, 30, 0, 123456000, time.UTC)
	id, err := s.CreateRM(ctx, &persistence.RM{Username: "priya", Name: "प्रिया", Phone: "+919800000001",
		Role: persistence.RoleRM, PasswordHash: "$2a$hash", CreatedAt: created})
	if err != nil || id <= 0 {
		t.Fatalf("create: %d %v", id, err)
	}
	sup := createRM(t, s, "admin", persistence.RoleSupervisor)
	if _, err := s.CreateRM(ctx, &persistence.RM{Username: "priya", Role: persistence.RoleRM}); !errors.Is(err, persistence.ErrExists) {
		t.Fatalf("duplicate username: %v, want ErrExists", err)
	}
	if _, err := s.CreateRM(ctx, &persistence.RM{Username: "x", Role: "boss"}); err == nil {
		t.Fatal("unknown role accepted")
	}
	rm, err := s.RMByUsername(ctx, "priya")
	if err != nil {
		t.Fatal(err)
	}
	want := persistence.RM{ID: id, Username: "priya", Name: "प्रिया", Phone: "+919800000001", Role: persistence.RoleRM,
		PasswordHash: "$2a$hash", CreatedAt: created}
	if !rm.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("created_at %v, want %v", rm.CreatedAt, want.CreatedAt)
	}
	rm.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if *rm != want {
		t.Errorf("RMByUsername: %+v, want %+v", *rm, want)
	}
	rm2, err := s.RMByID(ctx, sup)
	if err != nil || rm2.Username != "admin" || rm2.Role != persistence.RoleSupervisor {
		t.Fatalf("RMByID: %+v %v", rm2, err)
	}
	if _, err := s.RMByUsername(ctx, "nobody"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown username: %v", err)
	}
	if _, err := s.RMByID(ctx, 999999); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if n, err := s.CountRMs(ctx); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	if l, err := s.ListRMs(ctx, 10); err != nil || len(l) != 2 || l[0].Username != "admin" || l[1].ID != rm.ID || l[1].Name != rm.Name || l[1].Phone != rm.Phone {
		t.Fatalf("list: %+v %v", l, err)
	}
}

func testInboundCreatesConversation(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "asha", persistence.RoleRM)
	k := key(7)
	pts := time.Date(2025, 1, 2, 3, 4, 5, 678901000, time.UTC)
	item := inbound("wamid.IN1", "hello")
	item.Message.ProviderTimestamp = pts
	item.Message.Type = "image"
	item.Message.Media = []persistence.Media{{ProviderMediaID: "m1", MimeType: "image/jpeg", Caption: "photo"}}
	res := apply(t, s, &persistence.ConversationWrite{Key: k, ContactName: "Ravi", OwnerRMID: rm, InitialRMID: rm,
		Items: []persistence.WriteItem{item}})

	if !res.Created {
		t.Error("Created = false for a new conversation")
	}
	c := res.Conversation
	if c.ID <= 0 || c.ContactID <= 0 || c.Key != k || c.LastSeq != 1 || c.ContactName != "Ravi" ||
		c.AssignedRMID != rm || c.OwnerRMID != rm {
		t.Fatalf("conversation after write: %+v", c)
	}
	if !c.LastInboundAt.Equal(pts) {
		t.Errorf("last_inbound_at %v, want the provider timestamp %v", c.LastInboundAt, pts)
	}
	if c.LastMessageAt.IsZero() || c.CreatedAt.IsZero() {
		t.Errorf("times not set: %+v", c)
	}
	r := res.Items[0]
	m := r.Message
	if r.Duplicate || m == nil || r.Event == nil {
		t.Fatalf("item result %+v", r)
	}
	if m.ID <= 0 || m.ConversationID != c.ID || m.Seq != 1 || m.Direction != persistence.DirectionIn ||
		m.Channel != persistence.ChannelWhatsApp || m.Status != persistence.StatusReceived || m.Type != "image" ||
		m.Text != "hello" || m.ProviderMessageID != "wamid.IN1" || !m.ProviderTimestamp.Equal(pts) || len(m.Media) != 1 ||
		m.Media[0].Caption != "photo" {
		t.Fatalf("message %+v", m)
	}
	e := r.Event
	if e.ID <= 0 || e.ConversationID != c.ID || e.Seq != 1 || e.Type != persistence.EventMessage || e.MessageID != m.ID {
		t.Fatalf("event %+v", e)
	}

	byKey, err := s.ConversationByKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	sameConversation(t, "ConversationByKey", *byKey, c)
	byID, err := s.ConversationByID(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameConversation(t, "ConversationByID", *byID, c)
	if _, err := s.ConversationByKey(ctx, key(8)); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := s.ConversationByID(ctx, c.ID+1000); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	ct, err := s.ContactByPhone(ctx, k.ContactPhone)
	if err != nil || ct.ID != c.ContactID || ct.Name != "Ravi" || ct.OwnerRMID != rm || ct.Phone != k.ContactPhone {
		t.Fatalf("contact %+v %v", ct, err)
	}
	if _, err := s.ContactByPhone(ctx, "+10000000000"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("unknown contact: %v", err)
	}
	got, err := s.MessageByID(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameMessage(t, "MessageByID", got, m)
	got, err = s.MessageByProviderID(ctx, "wamid.IN1")
	if err != nil {
		t.Fatal(err)
	}
	sameMessage(t, "MessageByProviderID", got, m)
	if _, err := s.MessageByProviderID(ctx, "wamid.none"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("unknown provider id: %v", err)
	}
	if _, err := s.MessageByID(ctx, m.ID+1000); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("unknown message id: %v", err)
	}
	evs := events(t, s, c.ID)
	if len(evs) != 1 || evs[0].ID != e.ID || evs[0].ContactPhone != k.ContactPhone || evs[0].ContactName != "Ravi" {
		t.Fatalf("events %+v", evs)
	}
	sameMessage(t, "event message", evs[0].Message, m)
	sameConversation(t, "event conversation", evs[0].Conversation, c)

	// Found by key again (ConversationID 0): not created, seq checked.
	res2 := apply(t, s, &persistence.ConversationWrite{Key: k, LastSeq: 1, Items: []persistence.WriteItem{inbound("wamid.IN2", "again")}})
	if res2.Created || res2.Conversation.ID != c.ID || res2.Conversation.LastSeq != 2 {
		t.Fatalf("second write by key: %+v", res2)
	}
	// And by id.
	res3 := apply(t, s, &persistence.ConversationWrite{ConversationID: c.ID, LastSeq: 2, Items: []persistence.WriteItem{inbound("wamid.IN3", "by id")}})
	if res3.Created || res3.Conversation.LastSeq != 3 || res3.Conversation.Key != k || res3.Conversation.ContactName != "Ravi" {
		t.Fatalf("write by id: %+v", res3.Conversation)
	}
	// A write with no items creates the conversation and nothing else.
	res4 := apply(t, s, &persistence.ConversationWrite{Key: key(9), ContactName: "Empty"})
	if !res4.Created || res4.Conversation.LastSeq != 0 || len(events(t, s, res4.Conversation.ID)) != 0 {
		t.Fatalf("empty write: %+v", res4)
	}
}

func testContactNameAndOwner(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm1 := createRM(t, s, "rm1", persistence.RoleRM)
	rm2 := createRM(t, s, "rm2", persistence.RoleRM)
	k := key(11)
	c := newConv(t, s, k)
	c.write(inbound("wamid.N1", "no name yet"))
	if c.last.Conversation.ContactName != "" || c.last.Conversation.OwnerRMID != 0 {
		t.Fatalf("%+v", c.last.Conversation)
	}
	// Name given: set. Owner given and none yet: set.
	res := apply(t, s, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq, ContactName: "Meera", OwnerRMID: rm1,
		Items: []persistence.WriteItem{inbound("wamid.N2", "x")}})
	c.seq = res.Conversation.LastSeq
	if res.Conversation.ContactName != "Meera" || res.Conversation.OwnerRMID != rm1 {
		t.Fatalf("%+v", res.Conversation)
	}
	// Empty name keeps the name; a second owner does not replace the first.
	res = apply(t, s, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq, OwnerRMID: rm2,
		Items: []persistence.WriteItem{inbound("wamid.N3", "y")}})
	c.seq = res.Conversation.LastSeq
	if res.Conversation.ContactName != "Meera" || res.Conversation.OwnerRMID != rm1 {
		t.Fatalf("%+v", res.Conversation)
	}
	// The same contact on another channel: one contact, two conversations.
	sms := k
	sms.Channel = persistence.ChannelSMS
	res = apply(t, s, &persistence.ConversationWrite{Key: sms, ContactName: "Meera K", OwnerRMID: rm2,
		Items: []persistence.WriteItem{inbound("SM1", "by sms")}})
	if !res.Created || res.Conversation.ContactID != c.last.Conversation.ContactID || res.Conversation.ID == c.id ||
		res.Conversation.ContactName != "Meera K" || res.Conversation.OwnerRMID != rm1 {
		t.Fatalf("sms conversation %+v", res.Conversation)
	}
	ct, err := s.ContactByPhone(ctx, k.ContactPhone)
	if err != nil || ct.Name != "Meera K" || ct.OwnerRMID != rm1 {
		t.Fatalf("contact %+v %v", ct, err)
	}
	wa, err := s.ConversationByID(ctx, c.id)
	if err != nil || wa.ContactName != "Meera K" {
		t.Fatalf("whatsapp conversation sees the contact's name: %+v %v", wa, err)
	}
}

func testSMSOptOut(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	yes, no := true, false
	opt := func(it persistence.WriteItem, v *bool) persistence.WriteItem { it.SMSOptOut = v; return it }
	k := key(12)
	k.Channel = persistence.ChannelSMS
	// A new contact whose first message is STOP is opted out.
	res := apply(t, s, &persistence.ConversationWrite{Key: k, Items: []persistence.WriteItem{opt(inbound("SMOPT1", "STOP"), &yes)}})
	if !res.Conversation.SMSOptedOut {
		t.Fatalf("after STOP: %+v", res.Conversation)
	}
	// The flag belongs to the contact: the WhatsApp conversation sees it too.
	wa := apply(t, s, &persistence.ConversationWrite{Key: key(12), Items: []persistence.WriteItem{inbound("wamid.OPT", "hi")}})
	if !wa.Conversation.SMSOptedOut {
		t.Fatalf("contact flag not shared: %+v", wa.Conversation)
	}
	// START clears it.
	res = apply(t, s, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: res.Conversation.LastSeq,
		Items: []persistence.WriteItem{opt(inbound("SMOPT3", "START"), &no)}})
	if res.Conversation.SMSOptedOut {
		t.Fatalf("after START: %+v", res.Conversation)
	}
	// A redelivered old STOP is a duplicate: it changes nothing.
	res = apply(t, s, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: res.Conversation.LastSeq,
		Items: []persistence.WriteItem{opt(inbound("SMOPT1", "STOP"), &yes)}})
	if !res.Items[0].Duplicate || res.Conversation.SMSOptedOut {
		t.Fatalf("redelivered STOP: %+v", res)
	}
	c, err := s.ConversationByKey(ctx, k)
	if err != nil || c.SMSOptedOut {
		t.Fatalf("read back %+v %v", c, err)
	}
}

func testInboundDedupe(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(20))
	first := c.write(inbound("wamid.D1", "once")).Items[0].Message
	res := c.write(inbound("wamid.D1", "redelivered"))
	r := res.Items[0]
	if !r.Duplicate || r.Event != nil || r.Message == nil || r.Message.ID != first.ID || r.Message.Text != "once" {
		t.Fatalf("redelivery: %+v", r)
	}
	if res.Conversation.LastSeq != 1 {
		t.Fatalf("duplicate advanced seq to %d", res.Conversation.LastSeq)
	}
	// Twice in one write: the second is a duplicate of the first.
	res = c.write(inbound("wamid.D2", "a"), inbound("wamid.D2", "a"), inbound("wamid.D1", "old"))
	if res.Items[0].Duplicate || !res.Items[1].Duplicate || !res.Items[2].Duplicate ||
		res.Items[1].Message.ID != res.Items[0].Message.ID || res.Conversation.LastSeq != 2 {
		t.Fatalf("in-write duplicate: %+v", res.Items)
	}
	checkSeqs(t, s, c.id, 2)
	// The same provider id on another channel is another message.
	k := key(20)
	k.Channel = persistence.ChannelSMS
	res = apply(t, s, &persistence.ConversationWrite{Key: k, Items: []persistence.WriteItem{inbound("wamid.D1", "sms")}})
	if res.Items[0].Duplicate || res.Items[0].Message.ID == first.ID {
		t.Fatalf("other channel treated as duplicate: %+v", res.Items[0])
	}
	// Inbound without a provider id is never deduplicated.
	res = c.write(inbound("", "no id"), inbound("", "no id"))
	if res.Items[0].Duplicate || res.Items[1].Duplicate || res.Conversation.LastSeq != 4 {
		t.Fatalf("no-id inbound: %+v", res.Items)
	}
	if m, err := s.MessageByProviderID(ctx, "wamid.D2"); err != nil || m.Text != "a" {
		t.Fatalf("%+v %v", m, err)
	}
}

func testSeqContiguous(t *testing.T, s persistence.Store) {
	c := newConv(t, s, key(30))
	var want int64
	var firstOut int64
	for i := 0; i < 25; i++ {
		items := []persistence.WriteItem{
			inbound(fmt.Sprintf("wamid.S%d", i), "in"),
			inbound(fmt.Sprintf("wamid.S%d", i/2), "maybe dup"), // duplicate of this or an earlier one
			outbound(fmt.Sprintf("c%d", i), "out", 0),
			outbound(fmt.Sprintf("c%d", i/3), "maybe dup", 0),
		}
		if firstOut != 0 {
			items = append(items, persistence.WriteItem{Kind: persistence.ItemStatus,
				Status: &persistence.StatusChange{MessageID: firstOut, Status: persistence.StatusFailed}}) // moves once
		}
		res := c.write(items...)
		for _, r := range res.Items {
			if !r.Duplicate {
				want++
				if r.Event == nil || r.Event.Seq != want {
					t.Fatalf("write %d: event %+v, want seq %d", i, r.Event, want)
				}
			} else if r.Event != nil {
				t.Fatalf("duplicate with an event: %+v", r)
			}
		}
		if firstOut == 0 {
			firstOut = res.Items[2].Message.ID
		}
		if res.Conversation.LastSeq != want {
			t.Fatalf("write %d: last seq %d, want %d", i, res.Conversation.LastSeq, want)
		}
	}
	checkSeqs(t, s, c.id, want)
}

func testSeqTaken(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "rm", persistence.RoleRM)
	k := key(40)
	c := newConv(t, s, k)
	c.write(inbound("wamid.T1", "one"))
	c.write(inbound("wamid.T2", "two"))
	before, err := s.ConversationByID(ctx, c.id)
	if err != nil {
		t.Fatal(err)
	}
	for _, lastSeq := range []int64{0, 1, 3, 10} {
		for _, id := range []int64{c.id, 0} {
			_, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: id, Key: k, LastSeq: lastSeq,
				ContactName: "Changed", OwnerRMID: rm,
				Items: []persistence.WriteItem{inbound("wamid.T3", "stale"), outbound("c1", "stale", rm), assign(rm, false),
					status("wamid.T1", persistence.StatusRead)}})
			if !errors.Is(err, persistence.ErrSeqTaken) {
				t.Fatalf("LastSeq %d (id %d): %v, want ErrSeqTaken", lastSeq, id, err)
			}
		}
	}
	after, err := s.ConversationByID(ctx, c.id)
	if err != nil {
		t.Fatal(err)
	}
	sameConversation(t, "after stale writes", *after, *before)
	if _, err := s.MessageByProviderID(ctx, "wamid.T3"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("stale write stored its message: %v", err)
	}
	checkSeqs(t, s, c.id, 2)
	if pend, err := s.PendingOutbound(ctx, 10); err != nil || len(pend) != 0 {
		t.Fatalf("stale write queued an outbound message: %+v %v", pend, err)
	}

	// A conversation that does not exist yet is at seq 0: nothing is created.
	_, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(41), LastSeq: 4, ContactName: "Ghost",
		Items: []persistence.WriteItem{inbound("wamid.T4", "x")}})
	if !errors.Is(err, persistence.ErrSeqTaken) {
		t.Fatalf("new conversation with LastSeq 4: %v", err)
	}
	if _, err := s.ContactByPhone(ctx, key(41).ContactPhone); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("stale write created a contact: %v", err)
	}
	// An unknown conversation id is ErrNotFound.
	_, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id + 1000, Items: []persistence.WriteItem{inbound("wamid.T5", "x")}})
	if !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown conversation id: %v", err)
	}
	// The writer that knows the current seq goes on.
	c.write(inbound("wamid.T3", "current"))
	checkSeqs(t, s, c.id, 3)
}

func testInvalidWrites(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(45))
	c.write(inbound("wamid.V1", "ok"))
	bad := []*persistence.ConversationWrite{
		{Key: persistence.ConversationKey{Channel: persistence.ChannelWhatsApp, BusinessNumber: business, ContactPhone: "98765"}},
		{Key: persistence.ConversationKey{BusinessNumber: business, ContactPhone: "+919876543210"}},
		{ConversationID: c.id, LastSeq: 1, Items: []persistence.WriteItem{{Kind: persistence.ItemInbound}}},
		{ConversationID: c.id, LastSeq: 1, Items: []persistence.WriteItem{{Kind: 99}}},
		{ConversationID: c.id, LastSeq: 1, Items: []persistence.WriteItem{status("wamid.V1", "teleported")}},
		{ConversationID: c.id, LastSeq: 1, Items: []persistence.WriteItem{{Kind: persistence.ItemInbound, Message: &persistence.Message{Text: "x", Payload: json.RawMessage(`{not json`)}}}},
		{ConversationID: c.id, LastSeq: 1, Items: []persistence.WriteItem{inbound("wamid.V2", "valid"), {Kind: persistence.ItemStatus}}},
	}
	for i, w := range bad {
		if _, err := s.ApplyConversationWrite(ctx, w); !errors.Is(err, persistence.ErrInvalid) {
			t.Errorf("bad write %d: %v, want ErrInvalid", i, err)
		}
	}
	if _, err := s.ApplyConversationWrite(ctx, nil); !errors.Is(err, persistence.ErrInvalid) {
		t.Errorf("nil write: %v", err)
	}
	checkSeqs(t, s, c.id, 1)
	if _, err := s.MessageByProviderID(ctx, "wamid.V2"); !errors.Is(err, persistence.ErrNotFound) {
		t.Errorf("a rejected write stored a message: %v", err)
	}
}

func testOutbound(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "sender", persistence.RoleRM)
	k := key(50)
	c := newConv(t, s, k)
	c.write(inbound("wamid.O0", "hi"))
	res := c.write(outbound("click-1", "reply", rm))
	m := res.Items[0].Message
	if res.Items[0].Duplicate || m.Status != persistence.StatusQueued || m.Direction != persistence.DirectionOut ||
		m.ClientMsgID != "click-1" || m.RMID != rm || m.Seq != 2 || m.Type != "text" || m.ProviderMessageID != "" {
		t.Fatalf("outbound %+v", m)
	}
	if !res.Conversation.LastInboundAt.Equal(c.last.Conversation.LastInboundAt) {
		t.Error("an outbound message moved last_inbound_at")
	}
	// Double click: same client_msg_id, same message, no event.
	res = c.write(outbound("click-1", "reply", rm))
	if !res.Items[0].Duplicate || res.Items[0].Message.ID != m.ID || res.Items[0].Event != nil || res.Conversation.LastSeq != 2 {
		t.Fatalf("double click: %+v", res.Items[0])
	}
	// A template send.
	tmpl := &persistence.Template{Name: "follow_up", Language: "hi", Params: []string{"राम", "42"}}
	res = c.write(persistence.WriteItem{Kind: persistence.ItemOutbound, Message: &persistence.Message{ClientMsgID: "click-2", Template: tmpl, RMID: rm}})
	tm := res.Items[0].Message
	if tm.Type != "template" || !reflect.DeepEqual(tm.Template, tmpl) {
		t.Fatalf("template message %+v", tm)
	}
	got, err := s.MessageByID(ctx, tm.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameMessage(t, "template", got, tm)

	pend, err := s.PendingOutbound(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 2 || pend[0].Message.ID != m.ID || pend[1].Message.ID != tm.ID || pend[0].ContactPhone != k.ContactPhone ||
		pend[0].Conversation.ID != c.id || pend[0].Conversation.Key != k {
		t.Fatalf("pending %+v", pend)
	}
	sameMessage(t, "pending", &pend[0].Message, m)
	if pend, _ := s.PendingOutbound(ctx, 1); len(pend) != 1 || pend[0].Message.ID != m.ID {
		t.Fatalf("pending limit 1: %+v", pend)
	}

	// The provider accepted the first: provider id, status accepted, no event.
	res = c.write(accepted(m.ID, "wamid.OUT1"))
	r := res.Items[0]
	if r.Duplicate || r.Event != nil || r.Message.ProviderMessageID != "wamid.OUT1" || r.Message.Status != persistence.StatusAccepted ||
		res.Conversation.LastSeq != 3 {
		t.Fatalf("accepted: %+v last seq %d", r, res.Conversation.LastSeq)
	}
	if got, err := s.MessageByProviderID(ctx, "wamid.OUT1"); err != nil || got.ID != m.ID || got.Status != persistence.StatusAccepted {
		t.Fatalf("by provider id: %+v %v", got, err)
	}
	res = c.write(accepted(m.ID, "wamid.OUT1"))
	if !res.Items[0].Duplicate {
		t.Fatalf("accepted twice: %+v", res.Items[0])
	}
	res = c.write(accepted(m.ID+1000, "wamid.OUTX"))
	if !res.Items[0].Duplicate || res.Items[0].Message != nil {
		t.Fatalf("accepted unknown message: %+v", res.Items[0])
	}
	pend, err = s.PendingOutbound(ctx, 10)
	if err != nil || len(pend) != 1 || pend[0].Message.ID != tm.ID {
		t.Fatalf("pending after accept: %+v %v", pend, err)
	}
	// A failed message is not pending either.
	c.write(persistence.WriteItem{Kind: persistence.ItemStatus, Status: &persistence.StatusChange{MessageID: tm.ID, Status: persistence.StatusFailed,
		Error: json.RawMessage(`{"code":131047,"title":"Re-engagement message"}`)}})
	if pend, err := s.PendingOutbound(ctx, 10); err != nil || len(pend) != 0 {
		t.Fatalf("pending after failure: %+v %v", pend, err)
	}
	checkSeqs(t, s, c.id, 4)
}

func testStatuses(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(60))
	c.write(inbound("wamid.S0", "hi"))
	m1 := c.write(outbound("a", "one", 0), outbound("b", "two", 0)).Items
	id1, id2 := m1[0].Message.ID, m1[1].Message.ID
	c.write(accepted(id1, "wamid.A"), accepted(id2, "wamid.B"))
	if c.seq != 3 {
		t.Fatalf("seq %d", c.seq)
	}

	step := func(item persistence.WriteItem, wantDup bool, wantStatus string) *persistence.WriteResult {
		t.Helper()
		seq := c.seq
		res := c.write(item)
		r := res.Items[0]
		if r.Duplicate != wantDup {
			t.Fatalf("%s: duplicate %v, want %v", item.Status.Status, r.Duplicate, wantDup)
		}
		if wantDup {
			if r.Event != nil || res.Conversation.LastSeq != seq {
				t.Fatalf("%s: duplicate wrote an event", item.Status.Status)
			}
		} else if r.Event == nil || r.Event.Type != persistence.EventStatus || r.Event.Seq != seq+1 ||
			r.Event.Status != item.Status.Status || r.Event.MessageID != r.Message.ID {
			t.Fatalf("%s: event %+v", item.Status.Status, r.Event)
		}
		if r.Message == nil || r.Message.Status != wantStatus {
			t.Fatalf("%s: message %+v, want status %s", item.Status.Status, r.Message, wantStatus)
		}
		got, err := s.MessageByID(ctx, r.Message.ID)
		if err != nil || got.Status != wantStatus {
			t.Fatalf("%s: stored %+v %v", item.Status.Status, got, err)
		}
		return res
	}
	step(status("wamid.A", persistence.StatusSent), false, persistence.StatusSent)
	step(status("wamid.A", persistence.StatusSent), true, persistence.StatusSent)
	// Read before delivered (providers do that): read wins, delivered is kept
	// in the history but changes nothing.
	step(status("wamid.A", persistence.StatusRead), false, persistence.StatusRead)
	step(status("wamid.A", persistence.StatusDelivered), true, persistence.StatusRead)
	step(status("wamid.A", persistence.StatusDelivered), true, persistence.StatusRead)
	step(status("wamid.A", persistence.StatusFailed), true, persistence.StatusRead)
	step(status("wamid.A", persistence.StatusSent), true, persistence.StatusRead)

	// Failure with the provider's reason, by message id.
	errJSON := json.RawMessage(`{"code":131026,"title":"Message undeliverable","message":"receiver incapable"}`)
	fail := persistence.WriteItem{Kind: persistence.ItemStatus, Status: &persistence.StatusChange{MessageID: id2,
		Status: persistence.StatusFailed, Error: errJSON, At: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}}
	res := step(fail, false, persistence.StatusFailed)
	if !jsonEqual(res.Items[0].Message.Error, errJSON) || !jsonEqual(res.Items[0].Event.Detail, errJSON) {
		t.Fatalf("failure: message error %s, event detail %s", res.Items[0].Message.Error, res.Items[0].Event.Detail)
	}
	failSeq := res.Items[0].Event.Seq
	if got, _ := s.MessageByID(ctx, id2); !jsonEqual(got.Error, errJSON) {
		t.Fatalf("stored error %s", got.Error)
	}
	// delivered ranks above failed: a late delivery still shows.
	step(status("wamid.B", persistence.StatusDelivered), false, persistence.StatusDelivered)

	// Unknown provider id: not an error, nothing written.
	seq := c.seq
	res = c.write(status("wamid.UNKNOWN", persistence.StatusDelivered))
	if !res.Items[0].Duplicate || res.Items[0].Message != nil || res.Items[0].Event != nil || res.Conversation.LastSeq != seq {
		t.Fatalf("unknown message: %+v", res.Items[0])
	}
	// The message of another conversation is not this conversation's.
	other := newConv(t, s, key(61))
	other.write(inbound("wamid.OTHER", "x"))
	res = c.write(persistence.WriteItem{Kind: persistence.ItemStatus, Status: &persistence.StatusChange{MessageID: other.last.Items[0].Message.ID, Status: persistence.StatusRead}})
	if !res.Items[0].Duplicate || res.Items[0].Event != nil {
		t.Fatalf("status of another conversation's message: %+v", res.Items[0])
	}

	// The event records join the message as it is now.
	evs := events(t, s, c.id)
	var failRec *persistence.EventRecord
	for i := range evs {
		if evs[i].Seq == failSeq {
			failRec = &evs[i]
		}
	}
	if failRec == nil || failRec.Type != persistence.EventStatus || failRec.Status != persistence.StatusFailed ||
		!jsonEqual(failRec.Detail, errJSON) || failRec.Message == nil || failRec.Message.ID != id2 ||
		failRec.Message.Status != persistence.StatusDelivered {
		t.Fatalf("failure event record %+v", failRec)
	}
	checkSeqs(t, s, c.id, c.seq)
}

func testAssign(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm1 := createRM(t, s, "rm1", persistence.RoleRM)
	rm2 := createRM(t, s, "rm2", persistence.RoleRM)
	c := newConv(t, s, key(70))
	c.write(inbound("wamid.G1", "hi"))
	un, err := s.UnassignedConversations(ctx, 10)
	if err != nil || len(un) != 1 || un[0].ID != c.id {
		t.Fatalf("unassigned %+v %v", un, err)
	}

	detail := func(r persistence.ItemResult) (rm, prev int64) {
		t.Helper()
		var d struct {
			RMID         *int64 `json:"rm_id"`
			PreviousRMID *int64 `json:"previous_rm_id"`
		}
		if r.Event == nil || r.Event.Type != persistence.EventAssigned || json.Unmarshal(r.Event.Detail, &d) != nil || d.RMID == nil || d.PreviousRMID == nil {
			t.Fatalf("assigned event %+v", r.Event)
		}
		return *d.RMID, *d.PreviousRMID
	}
	res := c.write(assign(rm1, true))
	if r := res.Items[0]; r.Duplicate || r.Message != nil || res.Conversation.AssignedRMID != rm1 || r.Event.Seq != 2 {
		t.Fatalf("assign: %+v %+v", r, res.Conversation)
	}
	if rm, prev := detail(res.Items[0]); rm != rm1 || prev != 0 {
		t.Fatalf("detail %d %d", rm, prev)
	}
	for _, it := range []persistence.WriteItem{assign(rm1, false), assign(rm2, true), assign(rm1, true)} {
		res = c.write(it)
		if !res.Items[0].Duplicate || res.Items[0].Event != nil || res.Conversation.AssignedRMID != rm1 || res.Conversation.LastSeq != 2 {
			t.Fatalf("no-op assignment %+v: %+v", it, res)
		}
	}
	res = c.write(assign(rm2, false))
	if rm, prev := detail(res.Items[0]); rm != rm2 || prev != rm1 || res.Conversation.AssignedRMID != rm2 {
		t.Fatalf("reassign: %d %d %+v", rm, prev, res.Conversation)
	}
	got, err := s.ConversationByID(ctx, c.id)
	if err != nil || got.AssignedRMID != rm2 || got.LastSeq != 3 {
		t.Fatalf("stored %+v %v", got, err)
	}
	if un, err := s.UnassignedConversations(ctx, 10); err != nil || len(un) != 0 {
		t.Fatalf("unassigned after assignment %+v %v", un, err)
	}
	counts, err := s.OpenConversationCounts(ctx, []int64{rm1, rm2, 12345})
	if err != nil || !reflect.DeepEqual(counts, map[int64]int64{rm1: 0, rm2: 1, 12345: 0}) {
		t.Fatalf("counts %v %v", counts, err)
	}
	if l, err := s.ListConversations(ctx, rm1, 10); err != nil || len(l) != 0 {
		t.Fatalf("rm1 list %+v %v", l, err)
	}
	if l, err := s.ListConversations(ctx, rm2, 10); err != nil || len(l) != 1 || l[0].ID != c.id {
		t.Fatalf("rm2 list %+v %v", l, err)
	}
	// Unassign (0) is an assignment too.
	res = c.write(assign(0, false))
	if rm, prev := detail(res.Items[0]); rm != 0 || prev != rm2 || res.Conversation.AssignedRMID != 0 {
		t.Fatalf("unassign: %d %d", rm, prev)
	}
	if un, err := s.UnassignedConversations(ctx, 10); err != nil || len(un) != 1 {
		t.Fatalf("unassigned again %+v %v", un, err)
	}
	checkSeqs(t, s, c.id, 4)
	if counts, err := s.OpenConversationCounts(ctx, nil); err != nil || len(counts) != 0 {
		t.Fatalf("counts of nobody %v %v", counts, err)
	}
}

func testInitialAssignment(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "first", persistence.RoleRM)
	res := apply(t, s, &persistence.ConversationWrite{Key: key(75), InitialRMID: rm, Items: []persistence.WriteItem{inbound("wamid.I1", "x")}})
	if res.Conversation.AssignedRMID != rm || res.Conversation.LastSeq != 1 {
		t.Fatalf("initial assignment: %+v", res.Conversation)
	}
	// Ignored once the conversation exists.
	res = apply(t, s, &persistence.ConversationWrite{Key: key(75), LastSeq: 1, InitialRMID: rm + 1, Items: []persistence.WriteItem{inbound("wamid.I2", "x")}})
	if res.Conversation.AssignedRMID != rm {
		t.Fatalf("initial assignment applied to an existing conversation: %+v", res.Conversation)
	}
	if evs, err := s.EventsAfter(ctx, rm, 0, 10); err != nil || len(evs) != 2 {
		t.Fatalf("the first RM sees the conversation from its first event: %+v %v", evs, err)
	}
}

func testListConversations(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "lister", persistence.RoleRM)
	a, b, c := newConv(t, s, key(81)), newConv(t, s, key(82)), newConv(t, s, key(83))
	a.write(inbound("wamid.A1", "1"), assign(rm, false))
	a.write(inbound("wamid.A2", "2"))
	b.write(inbound("wamid.B1", "1"), outbound("b-out", "reply", rm))
	b.write(inbound("wamid.B2", "2"), assign(rm, false))
	c.write(inbound("wamid.C1", "1"), outbound("c-out", "reply", rm))
	// A conversation without messages yet comes last.
	empty := apply(t, s, &persistence.ConversationWrite{Key: key(84)}).Conversation
	a.write(inbound("wamid.A3", "3")) // a is the newest again

	l, err := s.ListConversations(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	unread := map[int64]int64{}
	for _, cs := range l {
		ids = append(ids, cs.ID)
		unread[cs.ID] = cs.UnreadCount
		if cs.ContactPhone != cs.Key.ContactPhone || cs.ContactPhone == "" {
			t.Errorf("summary phone %+v", cs)
		}
	}
	if want := []int64{a.id, c.id, b.id, empty.ID}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("order %v, want %v", ids, want)
	}
	if want := map[int64]int64{a.id: 3, b.id: 1, c.id: 0, empty.ID: 0}; !reflect.DeepEqual(unread, want) {
		t.Fatalf("unread %v, want %v", unread, want)
	}
	sameConversation(t, "summary", l[0].Conversation, a.last.Conversation)
	last := map[int64]string{}
	for _, cs := range l {
		if cs.LastMessage != nil {
			last[cs.ID] = cs.LastMessage.Direction + ":" + cs.LastMessage.Text
		}
	}
	if want := map[int64]string{a.id: "in:3", b.id: "in:2", c.id: "out:reply"}; !reflect.DeepEqual(last, want) {
		t.Fatalf("last messages %v, want %v", last, want)
	}
	if l, err := s.ListConversations(ctx, rm, 10); err != nil || len(l) != 2 || l[0].ID != a.id || l[1].ID != b.id {
		t.Fatalf("rm list %+v %v", l, err)
	}
	if l, err := s.ListConversations(ctx, 0, 2); err != nil || len(l) != 2 {
		t.Fatalf("limit: %d %v", len(l), err)
	}
}

func testInboundWindow(t *testing.T, s persistence.Store) {
	c := newConv(t, s, key(85))
	t1 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	it := inbound("wamid.W1", "x")
	it.Message.ProviderTimestamp = t1
	c.write(it)
	if !c.last.Conversation.LastInboundAt.Equal(t1) {
		t.Fatalf("last inbound %v, want %v", c.last.Conversation.LastInboundAt, t1)
	}
	// An older message arriving late does not move the window back.
	it = inbound("wamid.W0", "late")
	it.Message.ProviderTimestamp = t1.Add(-time.Minute)
	c.write(it)
	if !c.last.Conversation.LastInboundAt.Equal(t1) {
		t.Fatalf("window moved back to %v", c.last.Conversation.LastInboundAt)
	}
	// Without a provider timestamp the arrival time counts.
	before := time.Now().UTC().Add(-time.Second)
	c.write(inbound("wamid.W2", "now"))
	if c.last.Conversation.LastInboundAt.Before(before) {
		t.Fatalf("last inbound %v, want about now", c.last.Conversation.LastInboundAt)
	}
}

func testEventsAfter(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm1 := createRM(t, s, "one", persistence.RoleRM)
	rm2 := createRM(t, s, "two", persistence.RoleRM)
	a := newConv(t, s, key(91))
	b := newConv(t, s, key(92))
	a.write(inbound("wamid.EA1", "a1"), assign(rm1, false))
	b.write(inbound("wamid.EB1", "b1"), assign(rm2, false))
	out := a.write(outbound("ea", "reply", rm1)).Items[0].Message
	b.write(inbound("wamid.EB2", "b2"))
	a.write(accepted(out.ID, "wamid.EAOUT"))
	a.write(status("wamid.EAOUT", persistence.StatusDelivered))

	all, err := s.EventsAfter(ctx, 0, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("all events: %d", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("ids not increasing: %d after %d", all[i].ID, all[i-1].ID)
		}
	}
	mine, err := s.EventsAfter(ctx, rm1, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, e := range mine {
		if e.ConversationID != a.id || e.ContactPhone != a.key.ContactPhone || e.Conversation.ID != a.id {
			t.Fatalf("rm1 got %+v", e)
		}
		seqs = append(seqs, e.Seq)
	}
	if !reflect.DeepEqual(seqs, []int64{1, 2, 3, 4}) {
		t.Fatalf("rm1 seqs %v", seqs)
	}
	// The message event of the outbound message shows its current status.
	if mine[2].Type != persistence.EventMessage || mine[2].Message == nil || mine[2].Message.ID != out.ID ||
		mine[2].Message.Status != persistence.StatusDelivered || mine[2].Message.ProviderMessageID != "wamid.EAOUT" {
		t.Fatalf("joined message %+v", mine[2].Message)
	}
	if mine[3].Type != persistence.EventStatus || mine[3].Status != persistence.StatusDelivered || mine[3].MessageID != out.ID {
		t.Fatalf("status event %+v", mine[3])
	}
	if mine[1].Type != persistence.EventAssigned || mine[1].Message != nil {
		t.Fatalf("assigned event %+v", mine[1])
	}
	// Resume from a cursor: exactly what came after it.
	rest, err := s.EventsAfter(ctx, rm1, mine[1].ID, 100)
	if err != nil || len(rest) != 2 || rest[0].ID != mine[2].ID || rest[1].ID != mine[3].ID {
		t.Fatalf("after cursor: %+v %v", rest, err)
	}
	page, err := s.EventsAfter(ctx, rm1, 0, 3)
	if err != nil || len(page) != 3 || page[2].ID != mine[2].ID {
		t.Fatalf("limit: %+v %v", page, err)
	}
	if none, err := s.EventsAfter(ctx, 0, all[len(all)-1].ID, 100); err != nil || len(none) != 0 {
		t.Fatalf("after the last event: %+v %v", none, err)
	}
	// Conversations move with their assignment, history included.
	b.write(assign(rm1, false))
	mine, err = s.EventsAfter(ctx, rm1, 0, 100)
	if err != nil || len(mine) != 8 {
		t.Fatalf("after reassignment rm1 sees %d events (%v)", len(mine), err)
	}
	if theirs, err := s.EventsAfter(ctx, rm2, 0, 100); err != nil || len(theirs) != 0 {
		t.Fatalf("rm2 still sees %d events (%v)", len(theirs), err)
	}
}

func testConversationEvents(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(95))
	for i := 0; i < 5; i++ {
		c.write(inbound(fmt.Sprintf("wamid.CE%d", i), fmt.Sprint(i)))
	}
	other := newConv(t, s, key(96))
	other.write(inbound("wamid.CEX", "x"))
	evs, err := s.ConversationEvents(ctx, c.id, 2, 2)
	if err != nil || len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 || evs[0].Message.Text != "2" {
		t.Fatalf("events after seq 2, limit 2: %+v %v", evs, err)
	}
	if evs, err := s.ConversationEvents(ctx, c.id, 5, 10); err != nil || len(evs) != 0 {
		t.Fatalf("after the last: %+v %v", evs, err)
	}
	if evs, err := s.ConversationEvents(ctx, c.id+1000, 0, 10); err != nil || len(evs) != 0 {
		t.Fatalf("unknown conversation: %+v %v", evs, err)
	}
	// Older history: the last events before a seq, in seq order.
	evs, err = s.ConversationEventsBefore(ctx, c.id, 5, 2)
	if err != nil || len(evs) != 2 || evs[0].Seq != 3 || evs[1].Seq != 4 || evs[1].Message.Text != "3" {
		t.Fatalf("events before seq 5, limit 2: %+v %v", evs, err)
	}
	if evs, err := s.ConversationEventsBefore(ctx, c.id, 3, 10); err != nil || len(evs) != 2 || evs[0].Seq != 1 || evs[1].Seq != 2 {
		t.Fatalf("events before seq 3: %+v %v", evs, err)
	}
	if evs, err := s.ConversationEventsBefore(ctx, c.id, 1, 10); err != nil || len(evs) != 0 {
		t.Fatalf("before the first: %+v %v", evs, err)
	}
}

func testUnicode(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	const text = "नमस्ते 🙏🏽 आप कैसे हैं? 👨‍👩‍👧‍👦 ठीक है ✅ — ₹500"
	const name = "अनन्या शर्मा 🌸"
	payload := json.RawMessage(`{"text":{"body":"` + text + `"},"from":"919800000097"}`)
	it := inbound("wamid.U1", text)
	it.Message.Payload = payload
	it.Message.Media = []persistence.Media{{Caption: "फोटो 📷", Filename: "तस्वीर.jpg"}}
	res := apply(t, s, &persistence.ConversationWrite{Key: key(97), ContactName: name, Items: []persistence.WriteItem{it,
		{Kind: persistence.ItemOutbound, Message: &persistence.Message{ClientMsgID: "यूनिक-🆔", Template: &persistence.Template{Name: "greet", Language: "hi", Params: []string{name}}}}}})
	m := res.Items[0].Message
	got, err := s.MessageByID(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal([]byte(got.Text), []byte(text)) {
		t.Fatalf("text changed:\n got % x\nwant % x", got.Text, text)
	}
	if !jsonEqual(got.Payload, payload) || got.Media[0].Caption != "फोटो 📷" || got.Media[0].Filename != "तस्वीर.jpg" {
		t.Fatalf("payload/media changed: %s %+v", got.Payload, got.Media)
	}
	var p struct {
		Text struct{ Body string }
	}
	if err := json.Unmarshal(got.Payload, &p); err != nil || p.Text.Body != text {
		t.Fatalf("payload text changed: %q %v", p.Text.Body, err)
	}
	ct, err := s.ContactByPhone(ctx, key(97).ContactPhone)
	if err != nil || !bytes.Equal([]byte(ct.Name), []byte(name)) {
		t.Fatalf("contact name changed: %q %v", ct.Name, err)
	}
	out, err := s.MessageByID(ctx, res.Items[1].Message.ID)
	if err != nil || out.ClientMsgID != "यूनिक-🆔" || out.Template.Params[0] != name {
		t.Fatalf("outbound %+v %v", out, err)
	}
	dup := apply(t, s, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: 2, Items: []persistence.WriteItem{
		outbound("यूनिक-🆔", "again", 0)}})
	if !dup.Items[0].Duplicate {
		t.Fatal("unicode client_msg_id not deduplicated")
	}
	evs := events(t, s, res.Conversation.ID)
	if evs[0].ContactName != name || evs[0].Message.Text != text {
		t.Fatalf("event record %q %q", evs[0].ContactName, evs[0].Message.Text)
	}
	// Unicode ids differ byte for byte, not by some collation.
	res2 := apply(t, s, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: 2, Items: []persistence.WriteItem{
		inbound("wamid.u1", "lower case id")}})
	if res2.Items[0].Duplicate {
		t.Fatal("provider ids compared case-insensitively")
	}
}

// submitAll submits ws without waiting and returns the outcomes in the order
// the completions ran (commit order).
func submitAll(t *testing.T, s persistence.Store, ws []*persistence.ConversationWrite) (order []int, res []*persistence.WriteResult, errs []error) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	res = make([]*persistence.WriteResult, len(ws))
	errs = make([]error, len(ws))
	wg.Add(len(ws))
	for i, w := range ws {
		s.SubmitConversationWrite(w, func(r *persistence.WriteResult, err error) {
			mu.Lock()
			order = append(order, i)
			res[i], errs[i] = r, err
			mu.Unlock()
			wg.Done()
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return order, res, errs
}

func testManyConversations(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	const n = 300
	ws := make([]*persistence.ConversationWrite, n)
	for i := range ws {
		ws[i] = &persistence.ConversationWrite{Key: key(1000 + i), ContactName: fmt.Sprint("c", i),
			Items: []persistence.WriteItem{inbound(fmt.Sprintf("wamid.MANY%d", i), fmt.Sprint(i))}}
	}
	order, res, errs := submitAll(t, s, ws)
	lastID := int64(0)
	for k, i := range order {
		if errs[i] != nil {
			t.Fatalf("write %d: %v", i, errs[i])
		}
		if k != i {
			t.Fatalf("completion %d was write %d: completions out of queue order", k, i)
		}
		id := res[i].Items[0].Event.ID
		if id <= lastID {
			t.Fatalf("event id %d after %d: ids not in commit order", id, lastID)
		}
		lastID = id
	}
	for i := range ws {
		c, err := s.ConversationByKey(ctx, key(1000+i))
		if err != nil || c.LastSeq != 1 || c.ID != res[i].Conversation.ID {
			t.Fatalf("conversation %d: %+v %v", i, c, err)
		}
	}
	all, err := s.EventsAfter(ctx, 0, 0, 2*n)
	if err != nil || len(all) != n {
		t.Fatalf("events %d %v", len(all), err)
	}
}

// testFailingWriteAlone submits, together, good writes, a write that breaks a
// unique key half-way through (after it stored a message) and a stale write.
// Only the bad ones fail, and the half-done one leaves nothing behind.
func testFailingWriteAlone(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	x := newConv(t, s, key(200))
	msgs := x.write(outbound("x1", "one", 0), outbound("x2", "two", 0)).Items
	x.write(accepted(msgs[0].Message.ID, "wamid.TAKEN"))

	var ws []*persistence.ConversationWrite
	good := func(i int) {
		ws = append(ws, &persistence.ConversationWrite{Key: key(300 + i), Items: []persistence.WriteItem{inbound(fmt.Sprintf("wamid.GOOD%d", i), "ok")}})
	}
	for i := 0; i < 5; i++ {
		good(i)
	}
	badIdx := len(ws)
	ws = append(ws, &persistence.ConversationWrite{ConversationID: x.id, LastSeq: x.seq, ContactName: "Should not stick",
		Items: []persistence.WriteItem{inbound("wamid.HALF", "stored, then rolled back"), accepted(msgs[1].Message.ID, "wamid.TAKEN")}})
	staleIdx := len(ws)
	ws = append(ws, &persistence.ConversationWrite{ConversationID: x.id, LastSeq: 0, Items: []persistence.WriteItem{inbound("wamid.STALE", "x")}})
	for i := 5; i < 10; i++ {
		good(i)
	}
	// The good write after the bad one on the same conversation sees the
	// state without the bad write.
	afterIdx := len(ws)
	ws = append(ws, &persistence.ConversationWrite{ConversationID: x.id, LastSeq: x.seq, Items: []persistence.WriteItem{inbound("wamid.AFTER", "fine")}})

	order, res, errs := submitAll(t, s, ws)
	for k, i := range order {
		if k != i {
			t.Fatalf("completions out of queue order: %v", order)
		}
	}
	for i := range ws {
		switch i {
		case badIdx:
			if errs[i] == nil || errors.Is(errs[i], persistence.ErrSeqTaken) {
				t.Fatalf("bad write: %v, want a constraint error", errs[i])
			}
		case staleIdx:
			if !errors.Is(errs[i], persistence.ErrSeqTaken) {
				t.Fatalf("stale write: %v, want ErrSeqTaken", errs[i])
			}
		default:
			if errs[i] != nil {
				t.Fatalf("good write %d failed: %v", i, errs[i])
			}
		}
	}
	if res[afterIdx].Conversation.LastSeq != x.seq+1 {
		t.Fatalf("write after the bad one: seq %d", res[afterIdx].Conversation.LastSeq)
	}
	if _, err := s.MessageByProviderID(ctx, "wamid.HALF"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the failed write left its message: %v", err)
	}
	got, err := s.MessageByID(ctx, msgs[1].Message.ID)
	if err != nil || got.ProviderMessageID != "" {
		t.Fatalf("the failed write changed a message: %+v %v", got, err)
	}
	c, err := s.ConversationByID(ctx, x.id)
	if err != nil || c.ContactName != "" {
		t.Fatalf("the failed write changed the contact: %+v %v", c, err)
	}
	checkSeqs(t, s, x.id, x.seq+1)
	for i := 0; i < 10; i++ {
		if _, err := s.MessageByProviderID(ctx, fmt.Sprintf("wamid.GOOD%d", i)); err != nil {
			t.Fatalf("good write %d not stored: %v", i, err)
		}
	}
}

// testSameBatchMessages: messages are inserted together at the end of a
// batch, yet a later write of the same batch sees them (a redelivery and a
// double click are duplicates of the message stored a moment before), and
// events and CRM data carry the ids the messages got.
func testSameBatchMessages(t *testing.T, open Opener) {
	type report struct {
		n   int
		err error
	}
	batches := make(chan report, 8)
	s := open(t, func(c *persistence.Config) {
		c.BatchMaxRows = 6
		c.BatchMaxWait = time.Hour // a batch is exactly six writes
		c.BatchWaitFull = true
		c.Outbox = true
		c.OnBatch = func(n int, _ time.Duration, err error) { batches <- report{n, err} }
	})
	ctx := ctxT(t)
	k := key(950)
	ws := []*persistence.ConversationWrite{
		{Key: k, Items: []persistence.WriteItem{inbound("wamid.SB1", "first"), inbound("wamid.SB2", "second")}},
		{Key: k, LastSeq: 2, Items: []persistence.WriteItem{inbound("wamid.SB1", "redelivered")}},
		{Key: k, LastSeq: 2, Items: []persistence.WriteItem{outbound("sb-1", "reply", 0)}},
		{Key: k, LastSeq: 3, Items: []persistence.WriteItem{outbound("sb-1", "double click", 0), inbound("wamid.SB3", "third")}},
		{Key: key(951), Items: []persistence.WriteItem{inbound("wamid.SB2", "same id, other contact"), inbound("wamid.SB5", "new")}},
		{Key: key(952), Items: []persistence.WriteItem{inbound("wamid.SB4", "elsewhere")}},
	}
	_, res, errs := submitAll(t, s, ws)
	// One transaction for all: not a failed batch retried write by write.
	if r := <-batches; r.n != len(ws) || r.err != nil {
		t.Fatalf("the writes went in a batch of %d (error %v), want all %d in one transaction", r.n, r.err, len(ws))
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	first, second := res[0].Items[0].Message, res[0].Items[1].Message
	if first.ID == 0 || second.ID != first.ID+1 {
		t.Fatalf("message ids %d, %d", first.ID, second.ID)
	}
	if r := res[1].Items[0]; !r.Duplicate || r.Message.ID != first.ID || r.Message.Text != "first" {
		t.Fatalf("redelivery in the same batch: %+v %+v", r, r.Message)
	}
	reply := res[2].Items[0].Message
	if r := res[3].Items[0]; !r.Duplicate || r.Message.ID != reply.ID || r.Message.Text != "reply" {
		t.Fatalf("double click in the same batch: %+v %+v", r, r.Message)
	}
	// Provider ids are unique per channel: another contact's copy is one too.
	if r := res[4].Items[0]; !r.Duplicate || r.Message.ID != second.ID {
		t.Fatalf("provider id of the same batch from another contact: %+v %+v", r, r.Message)
	}
	// Each message event names its own message, in seq order.
	evs, err := s.ConversationEvents(ctx, res[0].Conversation.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"first", "second", "reply", "third"}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || ev.Message == nil || ev.MessageID != ev.Message.ID || ev.Message.Text != want[i] {
			t.Fatalf("event %d: seq %d, message id %d, message %+v", i, ev.Seq, ev.MessageID, ev.Message)
		}
		if i < 2 {
			if r := res[0].Items[i]; r.Event.ID != ev.ID || r.Event.MessageID != ev.MessageID {
				t.Fatalf("result event %+v, stored %+v", r.Event, ev.Event)
			}
		}
	}
	for _, pid := range []string{"wamid.SB1", "wamid.SB3", "wamid.SB4", "wamid.SB5"} {
		m, err := s.MessageByProviderID(ctx, pid)
		if err != nil {
			t.Fatalf("%s: %v", pid, err)
		}
		if pid == "wamid.SB1" && m.ID != first.ID {
			t.Fatalf("%s stored as %d, reported %d", pid, m.ID, first.ID)
		}
	}
	// The CRM's message.received rows carry the ids the messages got (the
	// head of each conversation: its oldest row).
	got := map[string]bool{}
	for _, h := range heads(t, outboxOf(t, s), later(), 100) {
		var d struct {
			Message struct {
				ID                int64  `json:"id"`
				Text              string `json:"text"`
				ProviderMessageID string `json:"provider_message_id"`
			} `json:"message"`
		}
		if err := json.Unmarshal(h.Data, &d); err != nil {
			t.Fatal(err)
		}
		m, err := s.MessageByID(ctx, d.Message.ID)
		if h.Type != persistence.OutboxMessageReceived || err != nil || m.Text != d.Message.Text || m.ConversationID != h.ConversationID {
			t.Fatalf("outbox head %s names message %d (%q): %+v %v", h.Type, d.Message.ID, d.Message.Text, m, err)
		}
		got[d.Message.ProviderMessageID] = true
	}
	if len(got) != 3 || !got["wamid.SB1"] || !got["wamid.SB4"] || !got["wamid.SB5"] {
		t.Fatalf("outbox heads for %v, want wamid.SB1, SB4, SB5", got)
	}
}

func testConcurrentWriters(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	const writers, writes = 50, 8
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	ids := make([]int64, writers)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var id, seq int64
			for i := 0; i < writes; i++ {
				items := []persistence.WriteItem{inbound(fmt.Sprintf("wamid.CW%d.%d", g, i), "x")}
				if i > 0 {
					items = append(items, inbound(fmt.Sprintf("wamid.CW%d.%d", g, i-1), "dup"))
				}
				res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: id, Key: key(400 + g), LastSeq: seq, Items: items})
				if err != nil {
					errc <- fmt.Errorf("writer %d write %d: %w", g, i, err)
					return
				}
				id, seq = res.Conversation.ID, res.Conversation.LastSeq
			}
			ids[g] = id
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for g, id := range ids {
		if seen[id] {
			t.Fatalf("writer %d shares conversation %d", g, id)
		}
		seen[id] = true
		checkSeqs(t, s, id, writes)
	}
	all, err := s.EventsAfter(ctx, 0, 0, writers*writes+10)
	if err != nil || len(all) != writers*writes {
		t.Fatalf("events: %d %v", len(all), err)
	}
}

func testContextCancelled(t *testing.T, s persistence.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(500), Items: []persistence.WriteItem{inbound("wamid.CX", "x")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("apply with a cancelled context: %v", err)
	}
	if _, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("log with a cancelled context: %v", err)
	}
	// The store goes on.
	c := newConv(t, s, key(500))
	c.write(inbound("wamid.CX", "x"))
}

func testCloseDrains(t *testing.T, s persistence.Store) {
	const n = 200
	var mu sync.Mutex
	var done, failed int
	for i := 0; i < n; i++ {
		s.SubmitConversationWrite(&persistence.ConversationWrite{Key: key(600 + i), Items: []persistence.WriteItem{inbound(fmt.Sprintf("wamid.CL%d", i), "x")}},
			func(_ *persistence.WriteResult, err error) {
				mu.Lock()
				defer mu.Unlock()
				done++
				if err != nil {
					failed++
				}
			})
	}
	var outcome error = errors.New("not called")
	s.SetWebhookOutcome(1, "processed", func(err error) { outcome = err })
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	mu.Lock()
	if done != n || failed != 0 {
		t.Fatalf("after Close: %d of %d writes completed, %d failed", done, n, failed)
	}
	mu.Unlock()
	if outcome != nil {
		t.Fatalf("queued outcome update: %v", outcome)
	}
	var after error
	s.SubmitConversationWrite(&persistence.ConversationWrite{Key: key(599)}, func(_ *persistence.WriteResult, err error) { after = err })
	if !errors.Is(after, persistence.ErrClosed) {
		t.Fatalf("submit after close: %v", after)
	}
	if _, err := s.ApplyConversationWrite(context.Background(), &persistence.ConversationWrite{Key: key(599)}); !errors.Is(err, persistence.ErrClosed) {
		t.Fatalf("apply after close: %v", err)
	}
	if _, err := s.LogWebhook(context.Background(), &persistence.WebhookLog{Provider: "sms"}); !errors.Is(err, persistence.ErrClosed) {
		t.Fatalf("log after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

// testWebhookLogBatch: many webhook log rows (some larger than one
// statement should carry together), their outcomes (set twice: the second
// wins) and conversation writes share batches; every row reads back as
// written.
func testWebhookLogBatch(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	const n = 60
	bodies := make([][]byte, n)
	ids := make([]int64, n)
	errs := make([]error, n+n/4)
	var wg sync.WaitGroup
	for i := range n {
		size := 16
		if i%10 == 3 {
			size = 300 << 10
		}
		bodies[i] = bytes.Repeat([]byte{byte(i), 0x00, 0xff, '\''}, size/4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp", Path: fmt.Sprintf("/webhooks/%d", i),
				Headers: json.RawMessage(fmt.Sprintf(`{"N":["%d"]}`, i)), Body: bodies[i]})
		}()
		if i%4 == 0 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[n+i/4] = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(710 + i),
					Items: []persistence.WriteItem{inbound(fmt.Sprintf("wamid.WB%d", i), "x")}})
			}()
		}
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if i < n {
			if ids[i] <= 0 || seen[ids[i]] {
				t.Fatalf("log %d: id %d (duplicate or not set)", i, ids[i])
			}
			seen[ids[i]] = true
		}
	}
	// Outcomes queued back to back (one batch or a few), each row twice;
	// new rows are logged meanwhile.
	for i := range n {
		s.SetWebhookOutcome(ids[i], "first", nil)
	}
	late := make([]int64, 8)
	for j := range late {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if late[j], err = s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "sms", Body: []byte{byte(j)}}); err != nil {
				t.Errorf("late log %d: %v", j, err)
			}
		}()
	}
	outc := make(chan error, 1)
	for i := range n {
		var done func(error)
		if i == n-1 {
			done = func(err error) { outc <- err }
		}
		s.SetWebhookOutcome(ids[i], fmt.Sprintf("processed %d", i), done)
	}
	if err := <-outc; err != nil {
		t.Fatalf("outcome: %v", err)
	}
	wg.Wait()
	r, ok := s.(persistence.WebhookLogReader)
	if !ok {
		t.Skip("store does not implement WebhookLogReader")
	}
	for i := range n {
		l, err := r.WebhookLogByID(ctx, ids[i])
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		if l.Path != fmt.Sprintf("/webhooks/%d", i) || !bytes.Equal(l.Body, bodies[i]) || l.Outcome != fmt.Sprintf("processed %d", i) ||
			!jsonEqual(l.Headers, json.RawMessage(fmt.Sprintf(`{"N":["%d"]}`, i))) {
			t.Fatalf("row %d read back: path %q, body %d bytes, outcome %q, headers %s", i, l.Path, len(l.Body), l.Outcome, l.Headers)
		}
	}
	for j, id := range late {
		l, err := r.WebhookLogByID(ctx, id)
		if err != nil || seen[id] || l.Provider != "sms" || !bytes.Equal(l.Body, []byte{byte(j)}) || l.Outcome != "received" {
			t.Fatalf("late row %d (id %d): %+v %v", j, id, l, err)
		}
	}
}

func testWebhookLog(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	body := append([]byte(`{"entry":[{"text":"नमस्ते 🙏"}]}`), 0x00, 0xff, 0xfe, '\n')
	headers := json.RawMessage(`{"X-Hub-Signature-256":["sha256=abc"],"Content-Type":["application/json"]}`)
	at := time.Date(2025, 6, 7, 8, 9, 10, 111222000, time.UTC)
	id, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp", Path: "/webhooks/whatsapp", Headers: headers, Body: body, ReceivedAt: at})
	if err != nil || id <= 0 {
		t.Fatalf("log: %d %v", id, err)
	}
	id2, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "sms", Path: "/webhooks/sms"})
	if err != nil || id2 <= id {
		t.Fatalf("second log: %d %v", id2, err)
	}
	if _, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "sms", Headers: json.RawMessage(`{bad`)}); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("bad headers: %v", err)
	}
	outc := make(chan error, 1)
	s.SetWebhookOutcome(id, "processed", func(err error) { outc <- err })
	if err := <-outc; err != nil {
		t.Fatalf("outcome: %v", err)
	}
	s.SetWebhookOutcome(id2, "failed: signature mismatch", nil) // nobody waits
	r, ok := s.(persistence.WebhookLogReader)
	if !ok {
		t.Skip("store does not implement WebhookLogReader")
	}
	l, err := r.WebhookLogByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != id || l.Provider != "whatsapp" || l.Path != "/webhooks/whatsapp" || !bytes.Equal(l.Body, body) ||
		!jsonEqual(l.Headers, headers) || !l.ReceivedAt.Equal(at) || l.Outcome != "processed" {
		t.Fatalf("read back %+v", l)
	}
	// Writes are applied in order: the unawaited outcome is visible once a
	// later write committed.
	c := newConv(t, s, key(700))
	c.write(inbound("wamid.WH", "x"))
	l2, err := r.WebhookLogByID(ctx, id2)
	if err != nil || l2.Outcome != "failed: signature mismatch" || l2.Outcome == "" || len(l2.Body) != 0 || l2.ReceivedAt.IsZero() {
		t.Fatalf("second row %+v %v", l2, err)
	}
	if _, err := r.WebhookLogByID(ctx, id2+100); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown row: %v", err)
	}
}
