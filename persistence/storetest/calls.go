package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"urva/persistence"
)

// The voice call part of the contract (ItemCall, persistence.Calls).

func newCall(rmID int64, rmPhone string) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemCall, Call: &persistence.CallChange{
		New: &persistence.Call{RMID: rmID, RMPhone: rmPhone, CallerID: "+918047000000"},
	}}
}

func callStatus(callID int64, status string) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemCall, Call: &persistence.CallChange{
		CallID: callID, Status: status, Raw: json.RawMessage(fmt.Sprintf(`{"Status":%q}`, status)),
	}}
}

// callChange is callStatus with more fields set by fill.
func callChange(callID int64, status string, fill func(*persistence.CallChange)) persistence.WriteItem {
	it := callStatus(callID, status)
	fill(it.Call)
	return it
}

func callByID(t *testing.T, s persistence.Store, id int64) *persistence.Call {
	t.Helper()
	c, err := s.CallByID(ctxT(t), id)
	if err != nil {
		t.Fatalf("call %d: %v", id, err)
	}
	return c
}

// sameCall compares calls field by field (times by instant, legs by JSON value).
func sameCall(t *testing.T, what string, got, want *persistence.Call) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Fatalf("%s: got %+v, want %+v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if !jsonEqual(g.Legs, w.Legs) {
		t.Errorf("%s: legs %s, want %s", what, g.Legs, w.Legs)
	}
	for _, p := range []struct {
		name string
		g, w time.Time
	}{{"requested_at", g.RequestedAt, w.RequestedAt}, {"answered_at", g.AnsweredAt, w.AnsweredAt},
		{"started_at", g.StartedAt, w.StartedAt}, {"ended_at", g.EndedAt, w.EndedAt}, {"updated_at", g.UpdatedAt, w.UpdatedAt}} {
		if !p.g.Equal(p.w) {
			t.Errorf("%s: %s %v, want %v", what, p.name, p.g, p.w)
		}
	}
	g.Legs, w.Legs = nil, nil
	g.RequestedAt, g.AnsweredAt, g.StartedAt, g.EndedAt, g.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	w.RequestedAt, w.AnsweredAt, w.StartedAt, w.EndedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// callJSON is the "call" object the store renders for c.
func callJSON(t *testing.T, c *persistence.Call) []byte {
	t.Helper()
	b, err := json.Marshal(persistence.OutboxCallOf(c))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkCallEvent verifies a result that must have written a call event with seq.
func checkCallEvent(t *testing.T, what string, r persistence.ItemResult, seq int64, status string) {
	t.Helper()
	if r.Duplicate || r.Call == nil || r.Event == nil || r.Message != nil {
		t.Fatalf("%s: result %+v", what, r)
	}
	e := r.Event
	if e.Type != persistence.EventCall || e.Seq != seq || e.Status != status || e.MessageID != 0 ||
		e.ConversationID != r.Call.ConversationID || r.Call.Status != status {
		t.Fatalf("%s: event %+v for call %+v, want seq %d status %s", what, e, r.Call, seq, status)
	}
	if !jsonEqual(e.Detail, callJSON(t, r.Call)) {
		t.Fatalf("%s: event detail %s, want %s", what, e.Detail, callJSON(t, r.Call))
	}
}

// checkNoCallEvent verifies a result that changed no status.
func checkNoCallEvent(t *testing.T, what string, r persistence.ItemResult) {
	t.Helper()
	if !r.Duplicate || r.Event != nil {
		t.Fatalf("%s: result %+v, want a duplicate without event", what, r)
	}
}

// testCallLifecycle: a call created and moved through every status, its
// events sharing the conversation's seq with messages, its history, its
// reads, and its events through ConversationEvents and EventsAfter.
func testCallLifecycle(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "caller", persistence.RoleRM)
	k := key(900)
	res := apply(t, s, &persistence.ConversationWrite{Key: k, ContactName: "Kiran", InitialRMID: rm,
		Items: []persistence.WriteItem{inbound("wamid.CALL1", "please call me"), newCall(rm, "+919800000001")}})
	c := &conv{t: t, s: s, key: k, id: res.Conversation.ID, seq: res.Conversation.LastSeq}
	if c.seq != 2 {
		t.Fatalf("seq after a message and a new call: %d", c.seq)
	}
	created := res.Items[1]
	checkCallEvent(t, "create", created, 2, persistence.CallRequested)
	call := created.Call
	if call.ID <= 0 || call.ConversationID != c.id || call.RMID != rm || call.ContactPhone != k.ContactPhone ||
		call.RMPhone != "+919800000001" || call.CallerID != "+918047000000" || call.FirstLeg != persistence.CallLegContact ||
		call.ProviderCallSID != "" || call.RequestedAt.IsZero() || !call.UpdatedAt.Equal(call.RequestedAt) ||
		!call.AnsweredAt.IsZero() || !call.StartedAt.IsZero() || !call.EndedAt.IsZero() || call.TalkSeconds != 0 ||
		call.RecordingURL != "" || call.RecordingPath != "" || call.Legs != nil || call.Error != "" {
		t.Fatalf("new call %+v", call)
	}
	sameCall(t, "CallByID after create", callByID(t, s, call.ID), call)

	// Transitions interleaved with messages: one seq each, no gap.
	answered := time.Date(2026, 1, 2, 3, 4, 10, 250000000, time.UTC)
	started := answered.Add(4 * time.Second)
	ended := started.Add(95 * time.Second)
	legs := json.RawMessage(`[{"party":"contact","status":"completed","duration_seconds":99},{"party":"rm","status":"completed","duration_seconds":95}]`)
	r := c.write(callChange(call.ID, persistence.CallDialling, func(ch *persistence.CallChange) { ch.ProviderCallSID = "CA-LIFE-1" }))
	checkCallEvent(t, "dialling", r.Items[0], 3, persistence.CallDialling)
	if r.Items[0].Call.ProviderCallSID != "CA-LIFE-1" {
		t.Fatalf("sid not stored: %+v", r.Items[0].Call)
	}
	r = c.write(inbound("wamid.CALL2", "ringing"),
		callChange(call.ID, persistence.CallContactAnswered, func(ch *persistence.CallChange) { ch.AnsweredAt = answered }),
		outbound("call-out-1", "you are connected", rm))
	if r.Items[0].Event.Seq != 4 || r.Items[2].Event.Seq != 6 {
		t.Fatalf("messages around the call: %+v", r.Items)
	}
	checkCallEvent(t, "contact answered", r.Items[1], 5, persistence.CallContactAnswered)
	r = c.write(callChange(call.ID, persistence.CallConnected, func(ch *persistence.CallChange) { ch.StartedAt = started }))
	checkCallEvent(t, "connected", r.Items[0], 7, persistence.CallConnected)
	r = c.write(callChange(call.ID, persistence.CallCompleted, func(ch *persistence.CallChange) {
		ch.EndedAt, ch.TalkSeconds, ch.RecordingURL, ch.Legs = ended, 95, "https://recordings.example/CA-LIFE-1.mp3", legs
		ch.At = ended
	}))
	checkCallEvent(t, "completed", r.Items[0], 8, persistence.CallCompleted)
	final := r.Items[0].Call
	want := *call
	want.Status, want.ProviderCallSID, want.AnsweredAt, want.StartedAt, want.EndedAt = persistence.CallCompleted, "CA-LIFE-1", answered, started, ended
	want.TalkSeconds, want.RecordingURL, want.Legs, want.UpdatedAt = 95, "https://recordings.example/CA-LIFE-1.mp3", legs, final.UpdatedAt
	sameCall(t, "completed call", final, &want)
	sameCall(t, "CallByID", callByID(t, s, call.ID), &want)
	bySID, err := s.CallByProviderSID(ctx, "CA-LIFE-1")
	if err != nil {
		t.Fatal(err)
	}
	sameCall(t, "CallByProviderSID", bySID, &want)
	if _, err := s.CallByProviderSID(ctx, "CA-NONE"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown sid: %v", err)
	}
	if _, err := s.CallByProviderSID(ctx, ""); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("empty sid: %v", err)
	}
	if _, err := s.CallByID(ctx, call.ID+1000); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown call: %v", err)
	}
	checkSeqs(t, s, c.id, 8)

	// The history: every status once, with its time and the provider's callback.
	hist, err := s.CallStatusHistory(ctx, call.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantHist := []string{persistence.CallRequested, persistence.CallDialling, persistence.CallContactAnswered,
		persistence.CallConnected, persistence.CallCompleted}
	if len(hist) != len(wantHist) {
		t.Fatalf("history %+v", hist)
	}
	for i, h := range hist {
		if h.CallID != call.ID || h.Status != wantHist[i] || h.At.IsZero() {
			t.Fatalf("history %d: %+v", i, h)
		}
		if i > 0 && !jsonEqual(h.Detail, []byte(fmt.Sprintf(`{"Status":%q}`, h.Status))) {
			t.Fatalf("history %d detail %s", i, h.Detail)
		}
	}
	if hist[0].Detail != nil || !hist[0].At.Equal(call.RequestedAt) || !hist[4].At.Equal(ended) {
		t.Fatalf("history times/detail %+v", hist)
	}
	if h, err := s.CallStatusHistory(ctx, call.ID+1000); err != nil || len(h) != 0 {
		t.Fatalf("history of an unknown call: %+v %v", h, err)
	}

	// Readable through ConversationEvents: Message nil, Status the call's
	// status, Detail the call as it was then.
	evs := events(t, s, c.id)
	var callEvs []persistence.EventRecord
	for _, e := range evs {
		if e.Type == persistence.EventCall {
			callEvs = append(callEvs, e)
		}
	}
	if len(callEvs) != 5 {
		t.Fatalf("call events %d", len(callEvs))
	}
	for i, e := range callEvs {
		var d persistence.OutboxCall
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatalf("event %d detail %s: %v", i, e.Detail, err)
		}
		if e.Message != nil || e.MessageID != 0 || e.Status != wantHist[i] || d.ID != call.ID || d.Status != wantHist[i] ||
			e.ContactPhone != k.ContactPhone || e.Conversation.ID != c.id {
			t.Fatalf("call event %d: %+v detail %+v", i, e, d)
		}
	}
	if d := callEvs[2].Detail; !jsonEqual(d, []byte(fmt.Sprintf(`{"id":%d,"status":"contact_answered","rm_id":%d,`+
		`"contact_phone":%q,"rm_phone":"+919800000001","caller_id":"+918047000000","first_leg":"contact",`+
		`"provider_call_sid":"CA-LIFE-1","requested_at":%q,"answered_at":%q,"started_at":null,"ended_at":null,`+
		`"talk_seconds":0,"recording_url":"","legs":null,"error":""}`,
		call.ID, rm, k.ContactPhone, call.RequestedAt.Format(time.RFC3339Nano), answered.Format(time.RFC3339Nano)))) {
		t.Fatalf("contact_answered detail %s", d)
	}
	if !jsonEqual(callEvs[4].Detail, callJSON(t, &want)) {
		t.Fatalf("completed detail %s, want %s", callEvs[4].Detail, callJSON(t, &want))
	}
	// And through EventsAfter, for the RM holding the conversation, by cursor.
	mine, err := s.EventsAfter(ctx, rm, 0, 100)
	if err != nil || len(mine) != 8 {
		t.Fatalf("EventsAfter: %d %v", len(mine), err)
	}
	rest, err := s.EventsAfter(ctx, rm, callEvs[2].ID, 100)
	if err != nil || len(rest) != 3 || rest[0].Type != persistence.EventMessage || rest[1].ID != callEvs[3].ID ||
		rest[2].ID != callEvs[4].ID || rest[2].Message != nil || !jsonEqual(rest[2].Detail, callEvs[4].Detail) {
		t.Fatalf("EventsAfter the answered event: %+v %v", rest, err)
	}
	other := createRM(t, s, "not-mine", persistence.RoleRM)
	if theirs, err := s.EventsAfter(ctx, other, 0, 100); err != nil || len(theirs) != 0 {
		t.Fatalf("another RM sees %d events (%v)", len(theirs), err)
	}

	// A call created in a write that creates the conversation, with its own
	// first leg, contact phone, time and status.
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	it := newCall(rm, "")
	it.Call.New.FirstLeg, it.Call.New.ContactPhone, it.Call.New.RequestedAt = persistence.CallLegRM, "+919811122233", at
	it.Call.Status, it.Call.ProviderCallSID = persistence.CallDialling, "CA-LIFE-2"
	res = apply(t, s, &persistence.ConversationWrite{Key: key(901), Items: []persistence.WriteItem{it}})
	checkCallEvent(t, "create dialling", res.Items[0], 1, persistence.CallDialling)
	c2 := res.Items[0].Call
	if !res.Created || c2.FirstLeg != persistence.CallLegRM || c2.ContactPhone != "+919811122233" || !c2.RequestedAt.Equal(at) ||
		c2.ProviderCallSID != "CA-LIFE-2" || c2.CallerID != "+918047000000" {
		t.Fatalf("created dialling call %+v", c2)
	}
	if h, err := s.CallStatusHistory(ctx, c2.ID); err != nil || len(h) != 1 || h[0].Status != persistence.CallDialling {
		t.Fatalf("history of a call created dialling: %+v %v", h, err)
	}
	// A change found by the provider's id (CallID 0).
	r = apply(t, s, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: 1, Items: []persistence.WriteItem{
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{ProviderCallSID: "CA-LIFE-2", Status: persistence.CallBusy}}}})
	checkCallEvent(t, "busy by sid", r.Items[0], 2, persistence.CallBusy)
	if r.Items[0].Call.ID != c2.ID {
		t.Fatalf("change by sid reached call %d, want %d", r.Items[0].Call.ID, c2.ID)
	}
	// Unknown calls, and a call of another conversation: nothing happens.
	r = c.write(callStatus(c2.ID+1000, persistence.CallCompleted),
		persistence.WriteItem{Kind: persistence.ItemCall, Call: &persistence.CallChange{ProviderCallSID: "CA-NONE", Status: persistence.CallCompleted}},
		callStatus(c2.ID, persistence.CallCompleted))
	for i, ir := range r.Items {
		if !ir.Duplicate || ir.Event != nil || ir.Call != nil {
			t.Fatalf("change %d of an unknown or foreign call: %+v", i, ir)
		}
	}
	if r.Conversation.LastSeq != 8 || callByID(t, s, c2.ID).Status != persistence.CallBusy {
		t.Fatalf("unknown/foreign changes moved something: seq %d", r.Conversation.LastSeq)
	}
}

// testCallOutOfOrder: callbacks in any order end in the same state, and a
// status never moves backwards.
func testCallOutOfOrder(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(910))
	call := c.write(newCall(1, "+919800000002")).Items[0].Call
	started := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	ended := started.Add(time.Minute)
	// The terminal callback overtakes answered and connected.
	r := c.write(callChange(call.ID, persistence.CallCompleted, func(ch *persistence.CallChange) {
		ch.StartedAt, ch.EndedAt, ch.TalkSeconds = started, ended, 60
	}))
	checkCallEvent(t, "completed first", r.Items[0], 2, persistence.CallCompleted)
	done := r.Items[0].Call
	// The late ones: recorded in the history, no event, the status stays.
	r = c.write(callChange(call.ID, persistence.CallContactAnswered, func(ch *persistence.CallChange) {
		ch.StartedAt = started.Add(-time.Hour) // a stale value never replaces a stored one
	}), callStatus(call.ID, persistence.CallDialling), callStatus(call.ID, persistence.CallConnected))
	for i, ir := range r.Items {
		checkNoCallEvent(t, fmt.Sprint("late status ", i), ir)
		if ir.Call == nil || ir.Call.Status != persistence.CallCompleted {
			t.Fatalf("late status %d: call %+v", i, ir.Call)
		}
	}
	if r.Conversation.LastSeq != 2 {
		t.Fatalf("late statuses moved seq to %d", r.Conversation.LastSeq)
	}
	sameCall(t, "after late statuses", callByID(t, s, call.ID), done)
	if h, err := s.CallStatusHistory(ctx, call.ID); err != nil || len(h) != 5 {
		t.Fatalf("history %+v %v", h, err)
	}
	// Within one write, in any order: the highest rank wins, one event per move.
	call2 := c.write(newCall(1, "")).Items[0].Call
	r = c.write(callStatus(call2.ID, persistence.CallConnected), callStatus(call2.ID, persistence.CallDialling),
		callStatus(call2.ID, persistence.CallContactAnswered))
	checkCallEvent(t, "connected first", r.Items[0], 4, persistence.CallConnected)
	checkNoCallEvent(t, "dialling after connected", r.Items[1])
	checkNoCallEvent(t, "answered after connected", r.Items[2])
	// The first terminal status wins; a second one changes nothing.
	r = c.write(callStatus(call2.ID, persistence.CallNoAnswer), callStatus(call2.ID, persistence.CallCompleted))
	checkCallEvent(t, "no answer", r.Items[0], 5, persistence.CallNoAnswer)
	checkNoCallEvent(t, "completed after no answer", r.Items[1])
	if got := callByID(t, s, call2.ID); got.Status != persistence.CallNoAnswer {
		t.Fatalf("status %s after two terminals", got.Status)
	}
	checkSeqs(t, s, c.id, 5)
}

// testCallMerge: how the fields of later changes merge into a call.
func testCallMerge(t *testing.T, s persistence.Store) {
	c := newConv(t, s, key(920))
	call := c.write(newCall(3, "+919800000003")).Items[0].Call
	t0 := time.Date(2026, 1, 6, 9, 0, 0, 0, time.UTC)
	// A data-only change (no status) fills empty fields, writes no event.
	r := c.write(persistence.WriteItem{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: call.ID,
		ProviderCallSID: "CA-MERGE", AnsweredAt: t0}})
	checkNoCallEvent(t, "data only", r.Items[0])
	got := r.Items[0].Call
	if got.ProviderCallSID != "CA-MERGE" || !got.AnsweredAt.Equal(t0) || got.Status != persistence.CallRequested ||
		got.UpdatedAt.Before(call.UpdatedAt) {
		t.Fatalf("after data only: %+v", got)
	}
	sameCall(t, "data only read back", callByID(t, s, call.ID), got)
	// A provider id once set is kept.
	r = c.write(callChange(call.ID, persistence.CallDialling, func(ch *persistence.CallChange) { ch.ProviderCallSID = "CA-OTHER" }))
	checkCallEvent(t, "dialling", r.Items[0], 2, persistence.CallDialling)
	if r.Items[0].Call.ProviderCallSID != "CA-MERGE" {
		t.Fatalf("sid replaced: %+v", r.Items[0].Call)
	}
	// The terminal callback, then a repeat with more data: the repeat
	// completes the call (and replaces what it says anew) but is a duplicate.
	partial := json.RawMessage(`[{"party":"contact","status":"completed"}]`)
	full := json.RawMessage(`[{"party":"contact","status":"completed","duration_seconds":42},{"party":"rm","status":"completed","duration_seconds":40}]`)
	r = c.write(callChange(call.ID, persistence.CallCompleted, func(ch *persistence.CallChange) {
		ch.EndedAt, ch.TalkSeconds, ch.Legs = t0.Add(time.Minute), 39, partial
	}))
	checkCallEvent(t, "completed", r.Items[0], 3, persistence.CallCompleted)
	r = c.write(callChange(call.ID, persistence.CallCompleted, func(ch *persistence.CallChange) {
		ch.TalkSeconds, ch.Legs, ch.RecordingURL, ch.StartedAt = 40, full, "https://recordings.example/CA-MERGE.mp3", t0.Add(5*time.Second)
	}))
	checkNoCallEvent(t, "repeated completed", r.Items[0])
	got = r.Items[0].Call
	if got.TalkSeconds != 40 || !jsonEqual(got.Legs, full) || got.RecordingURL != "https://recordings.example/CA-MERGE.mp3" ||
		!got.StartedAt.Equal(t0.Add(5*time.Second)) || !got.EndedAt.Equal(t0.Add(time.Minute)) || !got.AnsweredAt.Equal(t0) {
		t.Fatalf("after the repeated terminal callback: %+v", got)
	}
	sameCall(t, "completed by a repeat", callByID(t, s, call.ID), got)
	// A repeat with nothing new is a plain duplicate: the row is not touched.
	r = c.write(callStatus(call.ID, persistence.CallCompleted))
	checkNoCallEvent(t, "empty repeat", r.Items[0])
	sameCall(t, "after an empty repeat", callByID(t, s, call.ID), got)
	// A late lower status only fills gaps: it replaces nothing set.
	r = c.write(callChange(call.ID, persistence.CallConnected, func(ch *persistence.CallChange) {
		ch.StartedAt, ch.TalkSeconds, ch.Legs = t0.Add(time.Hour), 1, partial
	}))
	checkNoCallEvent(t, "late connected", r.Items[0])
	sameCall(t, "after a late connected", callByID(t, s, call.ID), got)
	// A losing terminal status neither moves the call nor sets its error.
	r = c.write(callChange(call.ID, persistence.CallFailed, func(ch *persistence.CallChange) { ch.Error = "network error" }))
	checkNoCallEvent(t, "failed after completed", r.Items[0])
	if e := callByID(t, s, call.ID); e.Status != persistence.CallCompleted || e.Error != "" {
		t.Fatalf("losing terminal changed the call: %+v", e)
	}
	// The error of the winning failure is kept, cut to 1000 characters.
	call2 := c.write(newCall(3, "")).Items[0].Call
	long := ""
	for len([]rune(long)) < 1200 {
		long += "त्रुटि "
	}
	r = c.write(callChange(call2.ID, persistence.CallFailed, func(ch *persistence.CallChange) { ch.Error = long }))
	checkCallEvent(t, "failed", r.Items[0], c.seq, persistence.CallFailed)
	if e := callByID(t, s, call2.ID).Error; e != string([]rune(long)[:1000]) {
		t.Fatalf("error of %d characters", len([]rune(e)))
	}
}

// testCallProviderSIDUnique: a provider id belongs to one call; a write
// that gives it to another fails alone and leaves nothing.
func testCallProviderSIDUnique(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(930))
	a := c.write(newCall(1, "")).Items[0].Call
	b := c.write(newCall(1, "")).Items[0].Call
	c.write(callChange(a.ID, persistence.CallDialling, func(ch *persistence.CallChange) { ch.ProviderCallSID = "CA-UNIQUE" }))
	seq := c.seq
	_, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: seq, Items: []persistence.WriteItem{
		inbound("wamid.SIDHALF", "stored, then rolled back"),
		callChange(b.ID, persistence.CallDialling, func(ch *persistence.CallChange) { ch.ProviderCallSID = "CA-UNIQUE" })}})
	if !errors.Is(err, persistence.ErrExists) {
		t.Fatalf("a second call with the same sid: %v, want ErrExists", err)
	}
	// Creating a call with a taken sid fails the same way.
	it := newCall(1, "")
	it.Call.ProviderCallSID = "CA-UNIQUE"
	if _, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: seq,
		Items: []persistence.WriteItem{it}}); !errors.Is(err, persistence.ErrExists) {
		t.Fatalf("a new call with a taken sid: %v, want ErrExists", err)
	}
	if _, err := s.MessageByProviderID(ctx, "wamid.SIDHALF"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the failed write left its message: %v", err)
	}
	if got := callByID(t, s, b.ID); got.Status != persistence.CallRequested || got.ProviderCallSID != "" {
		t.Fatalf("the failed write changed the call: %+v", got)
	}
	if h, err := s.CallStatusHistory(ctx, b.ID); err != nil || len(h) != 1 {
		t.Fatalf("the failed write left history: %+v %v", h, err)
	}
	checkSeqs(t, s, c.id, seq)
	if got, err := s.CallByProviderSID(ctx, "CA-UNIQUE"); err != nil || got.ID != a.ID {
		t.Fatalf("sid lookup: %+v %v", got, err)
	}
	// The conversation goes on.
	r := c.write(callChange(b.ID, persistence.CallDialling, func(ch *persistence.CallChange) { ch.ProviderCallSID = "CA-UNIQUE-2" }))
	checkCallEvent(t, "b dialling", r.Items[0], seq+1, persistence.CallDialling)
}

// testUnfinishedCalls: calls not in a terminal status, oldest first.
func testUnfinishedCalls(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	base := time.Date(2026, 1, 7, 8, 0, 0, 0, time.UTC)
	c := newConv(t, s, key(940))
	at := func(i int) persistence.WriteItem {
		it := newCall(1, "")
		it.Call.New.RequestedAt = base.Add(time.Duration(i) * time.Minute)
		return it
	}
	// Written out of age order.
	ids := map[int]int64{}
	for _, i := range []int{3, 0, 5, 1, 4, 2} {
		ids[i] = c.write(at(i)).Items[0].Call.ID
	}
	c.write(callStatus(ids[1], persistence.CallDialling), callStatus(ids[2], persistence.CallConnected),
		callStatus(ids[3], persistence.CallCompleted), callStatus(ids[4], persistence.CallCanceled))
	list := func(before time.Time, limit int) []int64 {
		t.Helper()
		cs, err := s.UnfinishedCalls(ctx, before, limit)
		if err != nil {
			t.Fatalf("unfinished calls: %v", err)
		}
		out := make([]int64, len(cs))
		for i, x := range cs {
			if persistence.CallTerminal(x.Status) {
				t.Fatalf("terminal call listed: %+v", x)
			}
			out[i] = x.ID
		}
		return out
	}
	if got, want := list(time.Time{}, 100), []int64{ids[0], ids[1], ids[2], ids[5]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("unfinished %v, want %v", got, want)
	}
	if got, want := list(base.Add(2*time.Minute), 100), []int64{ids[0], ids[1]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("requested before +2m: %v, want %v", got, want)
	}
	if got, want := list(time.Time{}, 3), []int64{ids[0], ids[1], ids[2]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("limit 3: %v, want %v", got, want)
	}
	if got := list(base, 100); len(got) != 0 {
		t.Fatalf("requested before the first: %v", got)
	}
}

// testCallRecordingPath: the downloaded recording's path, through the
// committer, not an event.
func testCallRecordingPath(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(950))
	call := c.write(newCall(1, "")).Items[0].Call
	if err := s.SetCallRecordingPath(ctx, call.ID, "data/recordings/2026/01/call-1.mp3"); err != nil {
		t.Fatal(err)
	}
	got := callByID(t, s, call.ID)
	if got.RecordingPath != "data/recordings/2026/01/call-1.mp3" || got.UpdatedAt.Before(call.UpdatedAt) {
		t.Fatalf("after setting the path: %+v", got)
	}
	// The same path again is fine; an unknown call is not found.
	if err := s.SetCallRecordingPath(ctx, call.ID, "data/recordings/2026/01/call-1.mp3"); err != nil {
		t.Fatalf("same path again: %v", err)
	}
	if err := s.SetCallRecordingPath(ctx, call.ID+1000, "x"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown call: %v", err)
	}
	if err := s.SetCallRecordingPath(ctx, 0, "x"); !errors.Is(err, persistence.ErrInvalid) {
		t.Fatalf("call id 0: %v", err)
	}
	checkSeqs(t, s, c.id, 1)
	// Later changes keep it.
	c.write(callStatus(call.ID, persistence.CallCompleted))
	if got := callByID(t, s, call.ID); got.RecordingPath != "data/recordings/2026/01/call-1.mp3" {
		t.Fatalf("path lost: %+v", got)
	}
}

// testCallInvalid: malformed call items are refused and change nothing.
func testCallInvalid(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(960))
	call := c.write(newCall(1, "")).Items[0].Call
	long := string(make([]byte, 300))
	bad := []persistence.WriteItem{
		{Kind: persistence.ItemCall},
		callStatus(call.ID, "ringing"),
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{Status: persistence.CallCompleted}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: -1}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: call.ID, New: &persistence.Call{}}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{New: &persistence.Call{FirstLeg: "both"}}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{New: &persistence.Call{RMPhone: long}}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{New: &persistence.Call{RMID: -2}}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: call.ID, TalkSeconds: -1}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: call.ID, Legs: json.RawMessage(`[{`)}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: call.ID, Raw: json.RawMessage(`nope`)}},
		{Kind: persistence.ItemCall, Call: &persistence.CallChange{CallID: call.ID, ProviderCallSID: long}},
	}
	for i, it := range bad {
		_, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq,
			Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.CINV", i), "x"), it}})
		if !errors.Is(err, persistence.ErrInvalid) {
			t.Fatalf("bad call item %d: %v, want ErrInvalid", i, err)
		}
	}
	checkSeqs(t, s, c.id, 1)
	sameCall(t, "after refused writes", callByID(t, s, call.ID), call)
}

// testCallOutbox: a terminal status writes one call.completed or call.failed
// with the documented data; nothing else about calls reaches the CRM, and
// nothing at all with the outbox off.
func testCallOutbox(t *testing.T, open Opener) {
	s, ob := openOutbox(t, open, nil)
	rm := createRM(t, s, "call-crm", persistence.RoleRM)
	k := key(970)
	res := apply(t, s, &persistence.ConversationWrite{Key: k, ContactName: "Lata", InitialRMID: rm,
		Items: []persistence.WriteItem{newCall(rm, "+919800000004")}})
	c := &conv{t: t, s: s, key: k, id: res.Conversation.ID, seq: res.Conversation.LastSeq}
	call := res.Items[0].Call
	drain(t, ob, c.id) // the initial assignment
	answered := time.Date(2026, 1, 8, 11, 0, 0, 0, time.UTC)
	started, ended := answered.Add(3*time.Second), answered.Add(123*time.Second)
	legs := json.RawMessage(`[{"party":"contact","status":"completed","duration_seconds":123},{"party":"rm","status":"completed","duration_seconds":120}]`)
	c.write(callChange(call.ID, persistence.CallDialling, func(ch *persistence.CallChange) { ch.ProviderCallSID = "CA-CRM-1" }),
		callChange(call.ID, persistence.CallContactAnswered, func(ch *persistence.CallChange) { ch.AnsweredAt = answered }),
		callChange(call.ID, persistence.CallConnected, func(ch *persistence.CallChange) { ch.StartedAt = started }))
	if b := backlog(t, ob); b.Pending != 0 {
		t.Fatalf("non-terminal call statuses wrote %d events", b.Pending)
	}
	done := c.write(callChange(call.ID, persistence.CallCompleted, func(ch *persistence.CallChange) {
		ch.EndedAt, ch.TalkSeconds, ch.RecordingURL, ch.Legs = ended, 120, "https://recordings.example/CA-CRM-1.mp3", legs
	})).Items[0]
	// A repeated terminal callback (with more data) and a losing one: no event.
	c.write(callChange(call.ID, persistence.CallCompleted, func(ch *persistence.CallChange) { ch.RecordingURL = "https://other" }),
		callStatus(call.ID, persistence.CallFailed))

	conversation := map[string]any{"id": c.id, "channel": persistence.ChannelWhatsApp, "business_number": business, "assigned_rm_id": rm}
	contact := map[string]any{"phone": k.ContactPhone, "name": "Lata"}
	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	var legsAny any
	if err := json.Unmarshal(legs, &legsAny); err != nil {
		t.Fatal(err)
	}
	wantCompleted := map[string]any{"conversation": conversation, "contact": contact, "call": map[string]any{
		"id": call.ID, "status": "completed", "rm_id": rm, "contact_phone": k.ContactPhone, "rm_phone": "+919800000004",
		"caller_id": "+918047000000", "first_leg": "contact", "provider_call_sid": "CA-CRM-1",
		"requested_at": rfc(call.RequestedAt), "answered_at": rfc(answered), "started_at": rfc(started), "ended_at": rfc(ended),
		"talk_seconds": 120, "recording_url": "https://recordings.example/CA-CRM-1.mp3", "legs": legsAny, "error": ""}}
	evs := drain(t, ob, c.id)
	if len(evs) != 1 || evs[0].Type != persistence.OutboxCallCompleted {
		t.Fatalf("events %v, want one call.completed", outboxTypes(evs))
	}
	wantJSON, _ := json.Marshal(wantCompleted)
	if !jsonEqual(evs[0].Data, wantJSON) {
		t.Fatalf("call.completed data\n got %s\nwant %s", evs[0].Data, wantJSON)
	}
	if !evs[0].OccurredAt.Equal(done.Call.UpdatedAt) {
		t.Fatalf("occurred at %v, call updated %v", evs[0].OccurredAt, done.Call.UpdatedAt)
	}

	// Every other terminal status is a call.failed carrying it.
	for _, st := range []string{persistence.CallNoAnswer, persistence.CallBusy, persistence.CallFailed, persistence.CallCanceled} {
		x := c.write(newCall(rm, "+919800000004")).Items[0].Call
		c.write(callChange(x.ID, st, func(ch *persistence.CallChange) {
			ch.ProviderCallSID = "CA-CRM-" + st
			if st == persistence.CallFailed {
				ch.Error = "dialler: invalid number"
			}
		}))
		c.write(callStatus(x.ID, st), callStatus(x.ID, persistence.CallCompleted)) // repeats: no event
		evs := drain(t, ob, c.id)
		if len(evs) != 1 || evs[0].Type != persistence.OutboxCallFailed {
			t.Fatalf("%s: events %v, want one call.failed", st, outboxTypes(evs))
		}
		errText := ""
		if st == persistence.CallFailed {
			errText = "dialler: invalid number"
		}
		want, _ := json.Marshal(map[string]any{"conversation": conversation, "contact": contact, "call": map[string]any{
			"id": x.ID, "status": st, "rm_id": rm, "contact_phone": k.ContactPhone, "rm_phone": "+919800000004",
			"caller_id": "+918047000000", "first_leg": "contact", "provider_call_sid": "CA-CRM-" + st,
			"requested_at": rfc(x.RequestedAt), "answered_at": nil, "started_at": nil, "ended_at": nil,
			"talk_seconds": 0, "recording_url": "", "legs": nil, "error": errText}})
		if !jsonEqual(evs[0].Data, want) {
			t.Fatalf("%s data\n got %s\nwant %s", st, evs[0].Data, want)
		}
	}
	// A call created already terminal is one event too.
	it := newCall(rm, "")
	it.Call.Status = persistence.CallCanceled
	c.write(it)
	if evs := drain(t, ob, c.id); len(evs) != 1 || evs[0].Type != persistence.OutboxCallFailed {
		t.Fatalf("created canceled: %v", outboxTypes(evs))
	}
	if b := backlog(t, ob); b.Pending != 0 {
		t.Fatalf("backlog %+v", b)
	}

	// With the outbox off: no rows.
	off := open(t, nil)
	offOB := outboxOf(t, off)
	oc := newConv(t, off, key(971))
	x := oc.write(newCall(1, "")).Items[0].Call
	oc.write(callStatus(x.ID, persistence.CallCompleted))
	if b := backlog(t, offOB); b != (persistence.OutboxBacklog{}) {
		t.Fatalf("outbox off: %+v", b)
	}
}
