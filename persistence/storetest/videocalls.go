package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"urva/persistence"
)

// The video call part of the contract (ItemVideoCall, persistence.VideoCalls).
// Every change carries its own time (At), so starts, ends and durations are
// exact.

// videoT0 is the clock of the video call tests.
var videoT0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func newVideoCall(inviterRMID int64, createdAt, expiresAt time.Time) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemVideoCall, VideoCall: &persistence.VideoCallChange{
		New: &persistence.VideoCall{InviterRMID: inviterRMID, CreatedAt: createdAt, ExpiresAt: expiresAt},
	}}
}

func videoChange(callID int64, fill func(*persistence.VideoCallChange)) persistence.WriteItem {
	ch := &persistence.VideoCallChange{CallID: callID}
	fill(ch)
	return persistence.WriteItem{Kind: persistence.ItemVideoCall, VideoCall: ch}
}

func videoJoin(callID int64, peer string, rmID int64, at time.Time) persistence.WriteItem {
	return videoChange(callID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.At = &persistence.VideoJoin{PeerID: peer, RMID: rmID}, at
	})
}

func videoStatus(callID int64, status, reason string, at time.Time) persistence.WriteItem {
	return videoChange(callID, func(ch *persistence.VideoCallChange) { ch.Status, ch.EndReason, ch.At = status, reason, at })
}

// newRMVideoCall creates a call between two RMs.
func newRMVideoCall(t *testing.T, s persistence.Store, inviter, invitee int64, createdAt, expiresAt time.Time) *persistence.VideoCall {
	t.Helper()
	vc, moved, err := s.ApplyVideoCallChange(ctxT(t), &persistence.VideoCallChange{New: &persistence.VideoCall{
		InviterRMID: inviter, InviteeRMID: invitee, CreatedAt: createdAt, ExpiresAt: expiresAt}})
	if err != nil || !moved || vc == nil {
		t.Fatalf("new video call between RMs %d and %d: %+v %v %v", inviter, invitee, vc, moved, err)
	}
	return vc
}

// rmVideoChange applies a change of a call between two RMs and fails the test on error.
func rmVideoChange(t *testing.T, s persistence.Store, callID int64, fill func(*persistence.VideoCallChange)) (*persistence.VideoCall, bool) {
	t.Helper()
	ch := &persistence.VideoCallChange{CallID: callID}
	fill(ch)
	vc, moved, err := s.ApplyVideoCallChange(ctxT(t), ch)
	if err != nil || vc == nil {
		t.Fatalf("change of video call %d: %+v %v", callID, vc, err)
	}
	return vc, moved
}

func videoCallByID(t *testing.T, s persistence.Store, id int64) *persistence.VideoCall {
	t.Helper()
	vc, err := s.VideoCallByID(ctxT(t), id)
	if err != nil {
		t.Fatalf("video call %d: %v", id, err)
	}
	return vc
}

func videoCallJoins(t *testing.T, s persistence.Store, id int64) []persistence.VideoCallJoin {
	t.Helper()
	js, err := s.VideoCallJoins(ctxT(t), id)
	if err != nil {
		t.Fatalf("joins of video call %d: %v", id, err)
	}
	return js
}

// sameVideoCall compares video calls field by field (times by instant).
func sameVideoCall(t *testing.T, what string, got, want *persistence.VideoCall) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Fatalf("%s: got %+v, want %+v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	for _, p := range []struct {
		name string
		g, w time.Time
	}{{"created_at", g.CreatedAt, w.CreatedAt}, {"expires_at", g.ExpiresAt, w.ExpiresAt}, {"started_at", g.StartedAt, w.StartedAt},
		{"ended_at", g.EndedAt, w.EndedAt}, {"updated_at", g.UpdatedAt, w.UpdatedAt}} {
		if !p.g.Equal(p.w) {
			t.Errorf("%s: %s %v, want %v", what, p.name, p.g, p.w)
		}
	}
	g.CreatedAt, g.ExpiresAt, g.StartedAt, g.EndedAt, g.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	w.CreatedAt, w.ExpiresAt, w.StartedAt, w.EndedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if g != w {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

// sameJoins compares a call's joins with the expected ones, in order.
func sameJoins(t *testing.T, what string, got, want []persistence.VideoCallJoin) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d joins %+v, want %d", what, len(got), got, len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.At.Equal(w.At) {
			t.Errorf("%s: join %d at %v, want %v", what, i, g.At, w.At)
		}
		g.At, w.At = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("%s: join %d %+v, want %+v", what, i, g, w)
		}
	}
}

// videoCallJSON is the "video_call" object the store renders for vc.
func videoCallJSON(t *testing.T, vc *persistence.VideoCall) []byte {
	t.Helper()
	b, err := json.Marshal(persistence.OutboxVideoCallOf(vc))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkVideoCallEvent verifies a result that must have written a video_call event with seq.
func checkVideoCallEvent(t *testing.T, what string, r persistence.ItemResult, seq int64, status string) {
	t.Helper()
	if r.Duplicate || r.VideoCall == nil || r.Event == nil || r.Message != nil || r.Call != nil {
		t.Fatalf("%s: result %+v", what, r)
	}
	e := r.Event
	if e.Type != persistence.EventVideoCall || e.Seq != seq || e.Status != status || e.MessageID != 0 ||
		e.ConversationID != r.VideoCall.ConversationID || r.VideoCall.Status != status {
		t.Fatalf("%s: event %+v for video call %+v, want seq %d status %s", what, e, r.VideoCall, seq, status)
	}
	if !jsonEqual(e.Detail, videoCallJSON(t, r.VideoCall)) {
		t.Fatalf("%s: event detail %s, want %s", what, e.Detail, videoCallJSON(t, r.VideoCall))
	}
}

// checkNoVideoCallEvent verifies a result whose status did not move.
func checkNoVideoCallEvent(t *testing.T, what string, r persistence.ItemResult) {
	t.Helper()
	if !r.Duplicate || r.Event != nil || r.VideoCall == nil {
		t.Fatalf("%s: result %+v, want a duplicate with its video call and without event", what, r)
	}
}

// testVideoCallLifecycle: a conversation's video call created, joined,
// started, rejoined and ended through conversation writes; its events share
// the conversation's seq with messages; a status never moves backwards.
func testVideoCallLifecycle(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	rm := createRM(t, s, "video", persistence.RoleRM)
	rm2 := createRM(t, s, "video2", persistence.RoleRM)
	k := key(1000)
	expires := videoT0.Add(30 * time.Minute)
	res := apply(t, s, &persistence.ConversationWrite{Key: k, ContactName: "Nisha", InitialRMID: rm,
		Items: []persistence.WriteItem{inbound("wamid.VID1", "video please"), newVideoCall(rm, videoT0, expires)}})
	c := &conv{t: t, s: s, key: k, id: res.Conversation.ID, seq: res.Conversation.LastSeq}
	if c.seq != 2 {
		t.Fatalf("seq after a message and a new video call: %d", c.seq)
	}
	created := res.Items[1]
	checkVideoCallEvent(t, "create", created, 2, persistence.VideoCallCreated)
	vc := created.VideoCall
	if vc.ID <= 0 || vc.ConversationID != c.id || vc.InviterRMID != rm || vc.InviteeRMID != 0 ||
		vc.ContactPhone != k.ContactPhone || vc.EndReason != "" || !vc.CreatedAt.Equal(videoT0) || !vc.ExpiresAt.Equal(expires) ||
		!vc.StartedAt.IsZero() || !vc.EndedAt.IsZero() || vc.DurationSeconds != 0 || vc.Joins != 0 || vc.UpdatedAt.IsZero() {
		t.Fatalf("new video call %+v", vc)
	}
	sameVideoCall(t, "VideoCallByID after create", videoCallByID(t, s, vc.ID), vc)
	if d := created.Event.Detail; !jsonEqual(d, []byte(fmt.Sprintf(`{"id":%d,"status":"created","end_reason":"",`+
		`"inviter_rm_id":%d,"invitee_rm_id":0,"contact_phone":%q,"created_at":"2026-03-04T10:00:00Z",`+
		`"expires_at":"2026-03-04T10:30:00Z","started_at":null,"ended_at":null,"duration_seconds":0,"joins":0}`,
		vc.ID, rm, k.ContactPhone))) {
		t.Fatalf("created detail %s", d)
	}

	// The RM joins: recorded, not a visible event.
	rmJoined := videoT0.Add(10 * time.Second)
	r := c.write(videoJoin(vc.ID, "peer-rm", rm, rmJoined))
	checkNoVideoCallEvent(t, "RM joins", r.Items[0])
	if got := r.Items[0].VideoCall; got.Joins != 1 || got.Status != persistence.VideoCallCreated || r.Conversation.LastSeq != 2 {
		t.Fatalf("after the RM joined: %+v, seq %d", got, r.Conversation.LastSeq)
	}
	// The contact joins and the call becomes active, in one change.
	started := videoT0.Add(20*time.Second + 250*time.Millisecond)
	r = c.write(videoChange(vc.ID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.Status, ch.At = &persistence.VideoJoin{PeerID: "peer-contact"}, persistence.VideoCallActive, started
	}))
	checkVideoCallEvent(t, "active", r.Items[0], 3, persistence.VideoCallActive)
	if got := r.Items[0].VideoCall; !got.StartedAt.Equal(started) || got.Joins != 2 || !got.EndedAt.IsZero() {
		t.Fatalf("active call %+v", got)
	}
	// The RM reloads the page: a rejoin, between messages.
	r = c.write(videoJoin(vc.ID, "peer-rm", rm, started.Add(time.Minute)), inbound("wamid.VID2", "can you see me"))
	checkNoVideoCallEvent(t, "RM rejoins", r.Items[0])
	if r.Items[0].VideoCall.Joins != 3 || r.Items[1].Event.Seq != 4 {
		t.Fatalf("rejoin %+v, then message seq %d", r.Items[0].VideoCall, r.Items[1].Event.Seq)
	}
	// A hang-up 95.75 s after the start: 95 whole seconds.
	ended := started.Add(95*time.Second + 750*time.Millisecond)
	r = c.write(videoStatus(vc.ID, persistence.VideoCallEnded, persistence.VideoEndHangup, ended))
	checkVideoCallEvent(t, "ended", r.Items[0], 5, persistence.VideoCallEnded)
	want := *vc
	want.Status, want.EndReason, want.StartedAt, want.EndedAt = persistence.VideoCallEnded, persistence.VideoEndHangup, started, ended
	want.DurationSeconds, want.Joins, want.UpdatedAt = 95, 3, r.Items[0].VideoCall.UpdatedAt
	sameVideoCall(t, "ended call", r.Items[0].VideoCall, &want)
	sameVideoCall(t, "VideoCallByID after the end", videoCallByID(t, s, vc.ID), &want)
	endedDetail := r.Items[0].Event.Detail

	// A second end, a start after the end, a status back to created:
	// duplicates that change nothing.
	r = c.write(videoStatus(vc.ID, persistence.VideoCallEnded, persistence.VideoEndLimit, ended.Add(time.Hour)),
		videoStatus(vc.ID, persistence.VideoCallActive, "", ended.Add(2*time.Hour)),
		videoStatus(vc.ID, persistence.VideoCallCreated, "", ended.Add(3*time.Hour)))
	for i, ir := range r.Items {
		checkNoVideoCallEvent(t, fmt.Sprint("status after the end ", i), ir)
		sameVideoCall(t, fmt.Sprint("status after the end ", i), ir.VideoCall, &want)
	}
	sameVideoCall(t, "VideoCallByID after late statuses", videoCallByID(t, s, vc.ID), &want)
	// A join after the end is still recorded (and counted).
	late := ended.Add(time.Minute)
	r = c.write(videoJoin(vc.ID, "peer-late", 0, late))
	checkNoVideoCallEvent(t, "join after the end", r.Items[0])
	want.Joins, want.UpdatedAt = 4, r.Items[0].VideoCall.UpdatedAt
	sameVideoCall(t, "after a late join", videoCallByID(t, s, vc.ID), &want)
	checkSeqs(t, s, c.id, 5)

	// The joins in the order recorded; the store knows which are rejoins.
	sameJoins(t, "joins", videoCallJoins(t, s, vc.ID), []persistence.VideoCallJoin{
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-rm", RMID: rm}, At: rmJoined},
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-contact"}, At: started},
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-rm", RMID: rm, Rejoin: true}, At: started.Add(time.Minute)},
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-late"}, At: late},
	})
	if js := videoCallJoins(t, s, vc.ID+1000); len(js) != 0 {
		t.Fatalf("joins of an unknown call: %+v", js)
	}
	if _, err := s.VideoCallByID(ctx, vc.ID+1000); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("unknown video call: %v", err)
	}

	// Readable through ConversationEvents and EventsAfter: Message nil,
	// Status the call's status, Detail the call as it was then.
	var videoEvs []persistence.EventRecord
	for _, e := range events(t, s, c.id) {
		if e.Type == persistence.EventVideoCall {
			videoEvs = append(videoEvs, e)
		}
	}
	wantStatuses := []string{persistence.VideoCallCreated, persistence.VideoCallActive, persistence.VideoCallEnded}
	if len(videoEvs) != len(wantStatuses) {
		t.Fatalf("video call events %d", len(videoEvs))
	}
	for i, e := range videoEvs {
		var d persistence.OutboxVideoCall
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatalf("event %d detail %s: %v", i, e.Detail, err)
		}
		if e.Message != nil || e.MessageID != 0 || e.Status != wantStatuses[i] || d.ID != vc.ID || d.Status != wantStatuses[i] ||
			e.ContactPhone != k.ContactPhone || e.Conversation.ID != c.id {
			t.Fatalf("video call event %d: %+v detail %+v", i, e, d)
		}
	}
	if !jsonEqual(videoEvs[2].Detail, endedDetail) {
		t.Fatalf("ended detail read back %s, written %s", videoEvs[2].Detail, endedDetail)
	}
	if mine, err := s.EventsAfter(ctx, rm, videoEvs[0].ID, 100); err != nil || len(mine) != 3 || mine[0].ID != videoEvs[1].ID ||
		mine[2].ID != videoEvs[2].ID || mine[2].Message != nil {
		t.Fatalf("EventsAfter the created event: %+v %v", mine, err)
	}

	// Unknown calls, a call of another conversation and a call between two
	// RMs: nothing happens.
	other := newConv(t, s, key(1001))
	ovc := other.write(newVideoCall(rm, videoT0, expires)).Items[0].VideoCall
	rmvc := newRMVideoCall(t, s, rm, rm2, videoT0, expires)
	r = c.write(videoStatus(vc.ID+1000, persistence.VideoCallEnded, persistence.VideoEndHangup, late),
		videoJoin(ovc.ID, "peer-x", 0, late), videoStatus(ovc.ID, persistence.VideoCallActive, "", late),
		videoJoin(rmvc.ID, "peer-y", 0, late), videoStatus(rmvc.ID, persistence.VideoCallActive, "", late))
	for i, ir := range r.Items {
		if !ir.Duplicate || ir.Event != nil || ir.VideoCall != nil {
			t.Fatalf("change %d of an unknown or foreign video call: %+v", i, ir)
		}
	}
	if r.Conversation.LastSeq != 5 {
		t.Fatalf("unknown/foreign changes moved seq to %d", r.Conversation.LastSeq)
	}
	sameVideoCall(t, "another conversation's call", videoCallByID(t, s, ovc.ID), ovc)
	sameVideoCall(t, "a call between RMs", videoCallByID(t, s, rmvc.ID), rmvc)
	if js := videoCallJoins(t, s, ovc.ID); len(js) != 0 {
		t.Fatalf("foreign joins recorded: %+v", js)
	}
	checkSeqs(t, other.s, other.id, 1)

	// A call that never started ends without a start or a duration; its
	// creation time defaults to the change's time.
	x := c.write(videoChange(0, func(ch *persistence.VideoCallChange) {
		ch.New, ch.At = &persistence.VideoCall{InviterRMID: rm, ExpiresAt: expires}, videoT0.Add(time.Hour)
	})).Items[0]
	checkVideoCallEvent(t, "create without a creation time", x, 6, persistence.VideoCallCreated)
	if !x.VideoCall.CreatedAt.Equal(videoT0.Add(time.Hour)) {
		t.Fatalf("created at %v, want the change's time", x.VideoCall.CreatedAt)
	}
	r = c.write(videoStatus(x.VideoCall.ID, persistence.VideoCallEnded, persistence.VideoEndExpired, expires.Add(time.Hour)))
	checkVideoCallEvent(t, "expired", r.Items[0], 7, persistence.VideoCallEnded)
	if got := r.Items[0].VideoCall; !got.StartedAt.IsZero() || got.DurationSeconds != 0 || got.EndReason != persistence.VideoEndExpired ||
		!got.EndedAt.Equal(expires.Add(time.Hour)) || got.Joins != 0 {
		t.Fatalf("expired call %+v", got)
	}
	// Without any time given, the commit time.
	y := c.write(videoChange(0, func(ch *persistence.VideoCallChange) {
		ch.New = &persistence.VideoCall{InviterRMID: rm, ExpiresAt: expires}
	})).Items[0].VideoCall
	if y.CreatedAt.IsZero() || !y.CreatedAt.Equal(y.UpdatedAt) {
		t.Fatalf("created at %v, updated at %v: want the commit time", y.CreatedAt, y.UpdatedAt)
	}
	checkSeqs(t, s, c.id, 8)
}

// testVideoCallRMToRM: a call between two RMs through ApplyVideoCallChange:
// the same lifecycle, no events in any conversation; a conversation's call
// is refused there.
func testVideoCallRMToRM(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	a := createRM(t, s, "video-a", persistence.RoleRM)
	b := createRM(t, s, "video-b", persistence.RoleRM)
	c := newConv(t, s, key(1010))
	c.write(inbound("wamid.VRR1", "a conversation next to the call"))
	expires := videoT0.Add(10 * time.Minute)
	vc := newRMVideoCall(t, s, a, b, videoT0, expires)
	if vc.ID <= 0 || vc.ConversationID != 0 || vc.InviterRMID != a || vc.InviteeRMID != b || vc.ContactPhone != "" ||
		vc.Status != persistence.VideoCallCreated || vc.EndReason != "" || !vc.CreatedAt.Equal(videoT0) || !vc.ExpiresAt.Equal(expires) ||
		!vc.StartedAt.IsZero() || !vc.EndedAt.IsZero() || vc.DurationSeconds != 0 || vc.Joins != 0 {
		t.Fatalf("new video call between RMs %+v", vc)
	}
	sameVideoCall(t, "VideoCallByID after create", videoCallByID(t, s, vc.ID), vc)

	got, moved := rmVideoChange(t, s, vc.ID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.At = &persistence.VideoJoin{PeerID: "peer-a", RMID: a}, videoT0.Add(5*time.Second)
	})
	if moved || got.Joins != 1 || got.Status != persistence.VideoCallCreated {
		t.Fatalf("A joins: %+v moved %v", got, moved)
	}
	started := videoT0.Add(7 * time.Second)
	got, moved = rmVideoChange(t, s, vc.ID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.Status, ch.At = &persistence.VideoJoin{PeerID: "peer-b", RMID: b}, persistence.VideoCallActive, started
	})
	if !moved || got.Joins != 2 || got.Status != persistence.VideoCallActive || !got.StartedAt.Equal(started) {
		t.Fatalf("B joins, active: %+v moved %v", got, moved)
	}
	ended := started.Add(61*time.Second + 900*time.Millisecond)
	got, moved = rmVideoChange(t, s, vc.ID, func(ch *persistence.VideoCallChange) {
		ch.Status, ch.EndReason, ch.At = persistence.VideoCallEnded, persistence.VideoEndLeft, ended
	})
	want := *vc
	want.Status, want.EndReason, want.StartedAt, want.EndedAt = persistence.VideoCallEnded, persistence.VideoEndLeft, started, ended
	want.DurationSeconds, want.Joins, want.UpdatedAt = 61, 2, got.UpdatedAt
	if !moved {
		t.Fatal("end: not moved")
	}
	sameVideoCall(t, "ended", got, &want)
	sameVideoCall(t, "VideoCallByID after the end", videoCallByID(t, s, vc.ID), &want)
	// A second end and a start after the end change nothing.
	for _, st := range []string{persistence.VideoCallEnded, persistence.VideoCallActive} {
		got, moved = rmVideoChange(t, s, vc.ID, func(ch *persistence.VideoCallChange) {
			ch.Status, ch.At = st, ended.Add(time.Hour)
			if st == persistence.VideoCallEnded {
				ch.EndReason = persistence.VideoEndHangup
			}
		})
		if moved {
			t.Fatalf("%s after the end moved", st)
		}
		sameVideoCall(t, st+" after the end", got, &want)
	}
	sameVideoCall(t, "VideoCallByID after late statuses", videoCallByID(t, s, vc.ID), &want)
	// B rejoins after the end: recorded.
	got, moved = rmVideoChange(t, s, vc.ID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.At = &persistence.VideoJoin{PeerID: "peer-b", RMID: b}, ended.Add(time.Second)
	})
	if moved || got.Joins != 3 || got.Status != persistence.VideoCallEnded {
		t.Fatalf("rejoin after the end: %+v moved %v", got, moved)
	}
	sameJoins(t, "joins", videoCallJoins(t, s, vc.ID), []persistence.VideoCallJoin{
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-a", RMID: a}, At: videoT0.Add(5 * time.Second)},
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-b", RMID: b}, At: started},
		{VideoCallID: vc.ID, VideoJoin: persistence.VideoJoin{PeerID: "peer-b", RMID: b, Rejoin: true}, At: ended.Add(time.Second)},
	})

	// No events anywhere: the conversation still has only its message.
	all, err := s.EventsAfter(ctx, 0, 0, 1000)
	if err != nil || len(all) != 1 || all[0].Type != persistence.EventMessage {
		t.Fatalf("events after a call between RMs: %+v %v", all, err)
	}
	checkSeqs(t, s, c.id, 1)

	// An unknown call; a conversation's call: refused, nothing changes.
	if vc, moved, err := s.ApplyVideoCallChange(ctx, &persistence.VideoCallChange{CallID: vc.ID + 1000,
		Status: persistence.VideoCallEnded, EndReason: persistence.VideoEndHangup}); !errors.Is(err, persistence.ErrNotFound) || vc != nil || moved {
		t.Fatalf("unknown call: %+v %v %v, want ErrNotFound", vc, moved, err)
	}
	cvc := c.write(newVideoCall(a, videoT0, expires)).Items[0].VideoCall
	for i, ch := range []*persistence.VideoCallChange{
		{CallID: cvc.ID, Join: &persistence.VideoJoin{PeerID: "peer-a", RMID: a}},
		{CallID: cvc.ID, Status: persistence.VideoCallActive},
		{CallID: cvc.ID, Status: persistence.VideoCallEnded, EndReason: persistence.VideoEndHangup},
	} {
		if vc, moved, err := s.ApplyVideoCallChange(ctx, ch); !errors.Is(err, persistence.ErrInvalid) || vc != nil || moved {
			t.Fatalf("change %d of a conversation's call: %+v %v %v, want ErrInvalid", i, vc, moved, err)
		}
	}
	sameVideoCall(t, "a conversation's call after refused changes", videoCallByID(t, s, cvc.ID), cvc)
	if js := videoCallJoins(t, s, cvc.ID); len(js) != 0 {
		t.Fatalf("refused join recorded: %+v", js)
	}
	checkSeqs(t, s, c.id, 2)
}

// testVideoCallInvalid: malformed video call changes are refused, as items
// and through ApplyVideoCallChange, and change nothing.
func testVideoCallInvalid(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(1020))
	expires := videoT0.Add(time.Hour)
	vc := c.write(newVideoCall(1, videoT0, expires)).Items[0].VideoCall
	longPeer := strings.Repeat("p", 65)
	item := func(ch *persistence.VideoCallChange) persistence.WriteItem {
		return persistence.WriteItem{Kind: persistence.ItemVideoCall, VideoCall: ch}
	}
	creation := func(fill func(n *persistence.VideoCall, ch *persistence.VideoCallChange)) *persistence.VideoCallChange {
		ch := &persistence.VideoCallChange{New: &persistence.VideoCall{InviterRMID: 1, ExpiresAt: expires}}
		fill(ch.New, ch)
		return ch
	}
	bad := []persistence.WriteItem{
		{Kind: persistence.ItemVideoCall},
		videoStatus(vc.ID, "ringing", "", videoT0),
		videoStatus(vc.ID, persistence.VideoCallEnded, "", videoT0),
		videoStatus(vc.ID, persistence.VideoCallEnded, "bored", videoT0),
		videoStatus(vc.ID, persistence.VideoCallActive, persistence.VideoEndHangup, videoT0),
		videoJoin(vc.ID, longPeer, 0, videoT0),
		videoJoin(vc.ID, "", 0, videoT0),
		videoJoin(vc.ID, "peer-\xff", 0, videoT0),
		videoJoin(vc.ID, "peer", -1, videoT0),
		item(&persistence.VideoCallChange{CallID: vc.ID}),
		item(&persistence.VideoCallChange{Status: persistence.VideoCallActive}),
		item(&persistence.VideoCallChange{CallID: -1, Status: persistence.VideoCallActive}),
		item(creation(func(_ *persistence.VideoCall, ch *persistence.VideoCallChange) { ch.CallID = vc.ID })),
		item(creation(func(n *persistence.VideoCall, _ *persistence.VideoCallChange) { n.InviterRMID = 0 })),
		item(creation(func(n *persistence.VideoCall, _ *persistence.VideoCallChange) { n.ExpiresAt = time.Time{} })),
		item(creation(func(n *persistence.VideoCall, _ *persistence.VideoCallChange) { n.InviteeRMID = 2 })),
		item(creation(func(n *persistence.VideoCall, _ *persistence.VideoCallChange) { n.InviteeRMID = -2 })),
		item(creation(func(_ *persistence.VideoCall, ch *persistence.VideoCallChange) {
			ch.Status = persistence.VideoCallActive
		})),
		item(creation(func(_ *persistence.VideoCall, ch *persistence.VideoCallChange) {
			ch.Join = &persistence.VideoJoin{PeerID: "peer"}
		})),
	}
	for i, it := range bad {
		_, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: c.id, LastSeq: c.seq,
			Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.VINV", i), "x"), it}})
		if !errors.Is(err, persistence.ErrInvalid) {
			t.Fatalf("bad video call item %d: %v, want ErrInvalid", i, err)
		}
	}
	checkSeqs(t, s, c.id, 1)
	sameVideoCall(t, "after refused items", videoCallByID(t, s, vc.ID), vc)

	// The same through ApplyVideoCallChange, with its own rules for a new call.
	rmvc := newRMVideoCall(t, s, 1, 2, videoT0, expires)
	rmNew := func(fill func(n *persistence.VideoCall)) *persistence.VideoCallChange {
		ch := &persistence.VideoCallChange{New: &persistence.VideoCall{InviterRMID: 1, InviteeRMID: 2, ExpiresAt: expires}}
		fill(ch.New)
		return ch
	}
	for i, ch := range []*persistence.VideoCallChange{
		nil,
		{CallID: rmvc.ID, Join: &persistence.VideoJoin{PeerID: longPeer}},
		{CallID: rmvc.ID, Status: "ringing"},
		{CallID: rmvc.ID, Status: persistence.VideoCallEnded},
		{CallID: rmvc.ID},
		{},
		rmNew(func(n *persistence.VideoCall) { n.InviteeRMID = 0 }),
		rmNew(func(n *persistence.VideoCall) { n.ConversationID = c.id }),
		rmNew(func(n *persistence.VideoCall) { n.ExpiresAt = time.Time{} }),
	} {
		if got, moved, err := s.ApplyVideoCallChange(ctx, ch); !errors.Is(err, persistence.ErrInvalid) || got != nil || moved {
			t.Fatalf("bad change %d: %+v %v %v, want ErrInvalid", i, got, moved, err)
		}
	}
	sameVideoCall(t, "after refused changes", videoCallByID(t, s, rmvc.ID), rmvc)
	if js := videoCallJoins(t, s, rmvc.ID); len(js) != 0 {
		t.Fatalf("refused joins recorded: %+v", js)
	}

	// At the limits: a peer id of 64 bytes, ASCII or not, is stored as given.
	for _, peer := range []string{strings.Repeat("p", 64), strings.Repeat("é", 32)} {
		c.write(videoJoin(vc.ID, peer, 0, videoT0))
		got, _ := rmVideoChange(t, s, rmvc.ID, func(ch *persistence.VideoCallChange) { ch.Join = &persistence.VideoJoin{PeerID: peer} })
		if got.Joins == 0 {
			t.Fatalf("join of %q not counted", peer)
		}
	}
	for _, id := range []int64{vc.ID, rmvc.ID} {
		js := videoCallJoins(t, s, id)
		if len(js) != 2 || js[0].PeerID != strings.Repeat("p", 64) || js[1].PeerID != strings.Repeat("é", 32) {
			t.Fatalf("joins of 64-byte peers of call %d: %+v", id, js)
		}
	}
}

// testUnfinishedVideoCalls: calls not ended, of conversations and between
// RMs, oldest first.
func testUnfinishedVideoCalls(t *testing.T, s persistence.Store) {
	ctx := ctxT(t)
	c := newConv(t, s, key(1025))
	at := func(i int) time.Time { return videoT0.Add(time.Duration(i) * time.Minute) }
	expires := videoT0.Add(time.Hour)
	// Written out of age order; even ones in the conversation, odd ones
	// between RMs; 6 has the age of 0 and a higher id.
	ids := map[int]int64{}
	for _, i := range []int{3, 0, 5, 1, 4, 2, 6} {
		switch {
		case i == 6:
			ids[i] = c.write(newVideoCall(1, at(0), expires)).Items[0].VideoCall.ID
		case i%2 == 0:
			ids[i] = c.write(newVideoCall(1, at(i), expires)).Items[0].VideoCall.ID
		default:
			ids[i] = newRMVideoCall(t, s, 1, 2, at(i), expires).ID
		}
	}
	c.write(videoStatus(ids[2], persistence.VideoCallEnded, persistence.VideoEndExpired, at(10)),
		videoStatus(ids[4], persistence.VideoCallActive, "", at(10)))
	rmVideoChange(t, s, ids[1], func(ch *persistence.VideoCallChange) { ch.Status, ch.At = persistence.VideoCallActive, at(10) })
	rmVideoChange(t, s, ids[3], func(ch *persistence.VideoCallChange) {
		ch.Status, ch.EndReason, ch.At = persistence.VideoCallEnded, persistence.VideoEndHangup, at(10)
	})
	list := func(limit int) []int64 {
		t.Helper()
		vcs, err := s.UnfinishedVideoCalls(ctx, limit)
		if err != nil {
			t.Fatalf("unfinished video calls: %v", err)
		}
		out := make([]int64, len(vcs))
		for i, x := range vcs {
			if x.Status == persistence.VideoCallEnded {
				t.Fatalf("ended call listed: %+v", x)
			}
			out[i] = x.ID
		}
		return out
	}
	if got, want := list(100), []int64{ids[0], ids[6], ids[1], ids[4], ids[5]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("unfinished %v, want %v", got, want)
	}
	if got, want := list(2), []int64{ids[0], ids[6]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("limit 2: %v, want %v", got, want)
	}
	vcs, err := s.UnfinishedVideoCalls(ctx, 0)
	if err != nil || len(vcs) != 5 {
		t.Fatalf("default limit: %d %v", len(vcs), err)
	}
	sameVideoCall(t, "listed call", &vcs[3], videoCallByID(t, s, ids[4]))

	// Pending invitations of RM 2: the RM-to-RM calls not started (5; 1 is
	// active, 3 ended), while their links are valid.
	pending := func(rmID int64, now time.Time) []int64 {
		t.Helper()
		vcs, err := s.PendingVideoInvites(ctx, rmID, now, 100)
		if err != nil {
			t.Fatalf("pending invites: %v", err)
		}
		out := make([]int64, len(vcs))
		for i, x := range vcs {
			out[i] = x.ID
		}
		return out
	}
	if got, want := pending(2, at(20)), []int64{ids[5]}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pending invites of RM 2: %v, want %v", got, want)
	}
	if got := pending(2, expires); len(got) != 0 {
		t.Fatalf("pending invites at the links' expiry: %v", got)
	}
	if got := pending(1, at(20)); len(got) != 0 {
		t.Fatalf("pending invites of the inviter: %v", got)
	}
}

// testVideoCallOutbox: an end writes exactly one video_call.ended with the
// documented data (conversation_id 0 and empty conversation and contact
// between RMs); nothing else about video calls reaches the CRM, and
// nothing at all with the outbox off.
func testVideoCallOutbox(t *testing.T, open Opener) {
	s, ob := openOutbox(t, open, nil)
	ctx := ctxT(t)
	rm := createRM(t, s, "video-crm", persistence.RoleRM)
	rm2 := createRM(t, s, "video-crm2", persistence.RoleRM)
	k := key(1030)
	expires := videoT0.Add(15 * time.Minute)
	res := apply(t, s, &persistence.ConversationWrite{Key: k, ContactName: "Zoya", InitialRMID: rm,
		Items: []persistence.WriteItem{newVideoCall(rm, videoT0, expires)}})
	c := &conv{t: t, s: s, key: k, id: res.Conversation.ID, seq: res.Conversation.LastSeq}
	vc := res.Items[0].VideoCall
	drain(t, ob, c.id) // the initial assignment
	started := videoT0.Add(30 * time.Second)
	ended := started.Add(42*time.Second + 500*time.Millisecond)
	c.write(videoJoin(vc.ID, "peer-rm", rm, videoT0.Add(time.Second)), videoChange(vc.ID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.Status, ch.At = &persistence.VideoJoin{PeerID: "peer-contact"}, persistence.VideoCallActive, started
	}))
	if b := backlog(t, ob); b.Pending != 0 {
		t.Fatalf("creation, joins and start wrote %d events", b.Pending)
	}
	done := c.write(videoStatus(vc.ID, persistence.VideoCallEnded, persistence.VideoEndHangup, ended)).Items[0]
	checkVideoCallEvent(t, "ended", done, 3, persistence.VideoCallEnded)
	// A second end, a start after it and a late join: no second event.
	c.write(videoStatus(vc.ID, persistence.VideoCallEnded, persistence.VideoEndLimit, ended.Add(time.Minute)),
		videoStatus(vc.ID, persistence.VideoCallActive, "", ended.Add(time.Minute)), videoJoin(vc.ID, "peer-rm", rm, ended.Add(time.Minute)))

	rfc := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	evs := drain(t, ob, c.id)
	if len(evs) != 1 || evs[0].Type != persistence.OutboxVideoCallEnded || evs[0].ConversationID != c.id {
		t.Fatalf("events %v, want one video_call.ended", outboxTypes(evs))
	}
	want, _ := json.Marshal(map[string]any{
		"conversation": map[string]any{"id": c.id, "channel": persistence.ChannelWhatsApp, "business_number": business, "assigned_rm_id": rm},
		"contact":      map[string]any{"phone": k.ContactPhone, "name": "Zoya"},
		"video_call": map[string]any{"id": vc.ID, "status": "ended", "end_reason": "hangup", "inviter_rm_id": rm, "invitee_rm_id": 0,
			"contact_phone": k.ContactPhone, "created_at": rfc(videoT0), "expires_at": rfc(expires), "started_at": rfc(started),
			"ended_at": rfc(ended), "duration_seconds": 42, "joins": 2}})
	if !jsonEqual(evs[0].Data, want) {
		t.Fatalf("video_call.ended data\n got %s\nwant %s", evs[0].Data, want)
	}
	if !evs[0].OccurredAt.Equal(done.VideoCall.UpdatedAt) {
		t.Fatalf("occurred at %v, call updated %v", evs[0].OccurredAt, done.VideoCall.UpdatedAt)
	}
	var data persistence.OutboxVideoCallData
	if err := json.Unmarshal(evs[0].Data, &data); err != nil || data.Conversation.ID != c.id || data.Contact.Phone != k.ContactPhone ||
		!jsonEqual(mustJSON(t, data.VideoCall), mustJSON(t, persistence.OutboxVideoCallOf(done.VideoCall))) {
		t.Fatalf("data decoded %+v %v", data, err)
	}

	// Between two RMs: conversation_id 0, the zero conversation and contact;
	// a call that never started.
	rv := newRMVideoCall(t, s, rm, rm2, videoT0, expires)
	rmVideoChange(t, s, rv.ID, func(ch *persistence.VideoCallChange) {
		ch.Join, ch.At = &persistence.VideoJoin{PeerID: "peer-a", RMID: rm}, videoT0.Add(time.Second)
	})
	if b := backlog(t, ob); b.Pending != 0 {
		t.Fatalf("a call between RMs wrote %d events before its end", b.Pending)
	}
	end := func(id int64, reason string, at time.Time) (*persistence.VideoCall, bool) {
		return rmVideoChange(t, s, id, func(ch *persistence.VideoCallChange) {
			ch.Status, ch.EndReason, ch.At = persistence.VideoCallEnded, reason, at
		})
	}
	if _, moved := end(rv.ID, persistence.VideoEndExpired, expires); !moved {
		t.Fatal("end between RMs: not moved")
	}
	if _, moved := end(rv.ID, persistence.VideoEndHangup, expires.Add(time.Minute)); moved {
		t.Fatal("second end between RMs moved")
	}
	evs = drain(t, ob, 0)
	if len(evs) != 1 || evs[0].Type != persistence.OutboxVideoCallEnded || evs[0].ConversationID != 0 {
		t.Fatalf("events of no conversation %v, want one video_call.ended", outboxTypes(evs))
	}
	want, _ = json.Marshal(map[string]any{
		"conversation": map[string]any{"id": 0, "channel": "", "business_number": "", "assigned_rm_id": 0},
		"contact":      map[string]any{"phone": "", "name": ""},
		"video_call": map[string]any{"id": rv.ID, "status": "ended", "end_reason": "expired", "inviter_rm_id": rm, "invitee_rm_id": rm2,
			"contact_phone": "", "created_at": rfc(videoT0), "expires_at": rfc(expires), "started_at": nil,
			"ended_at": rfc(expires), "duration_seconds": 0, "joins": 1}})
	if !jsonEqual(evs[0].Data, want) {
		t.Fatalf("video_call.ended data between RMs\n got %s\nwant %s", evs[0].Data, want)
	}

	// Both sides end at once: one end moves the call, one event.
	rv2 := newRMVideoCall(t, s, rm, rm2, videoT0, expires)
	type outcome struct {
		vc    *persistence.VideoCall
		moved bool
		err   error
	}
	outs := make([]outcome, 8)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reason := persistence.VideoEndHangup
			if i%2 == 1 {
				reason = persistence.VideoEndLeft
			}
			vc, moved, err := s.ApplyVideoCallChange(ctx, &persistence.VideoCallChange{CallID: rv2.ID,
				Status: persistence.VideoCallEnded, EndReason: reason, At: expires})
			outs[i] = outcome{vc, moved, err}
		}()
	}
	wg.Wait()
	var winner *persistence.VideoCall
	for i, o := range outs {
		if o.err != nil || o.vc == nil || o.vc.Status != persistence.VideoCallEnded {
			t.Fatalf("concurrent end %d: %+v", i, o)
		}
		if o.moved {
			if winner != nil {
				t.Fatalf("two ends moved the call: %+v and %+v", winner, o.vc)
			}
			winner = o.vc
		}
	}
	if winner == nil {
		t.Fatal("no end moved the call")
	}
	for i, o := range outs {
		if o.vc.EndReason != winner.EndReason {
			t.Fatalf("concurrent end %d saw reason %q, the winner %q", i, o.vc.EndReason, winner.EndReason)
		}
	}
	evs = drain(t, ob, 0)
	if len(evs) != 1 || !jsonEqual(evs[0].Data, mustJSON(t, map[string]any{
		"conversation": map[string]any{"id": 0, "channel": "", "business_number": "", "assigned_rm_id": 0},
		"contact":      map[string]any{"phone": "", "name": ""},
		"video_call":   persistence.OutboxVideoCallOf(winner)})) {
		t.Fatalf("concurrent ends: %d events %v", len(evs), outboxTypes(evs))
	}
	if b := backlog(t, ob); b.Pending != 0 {
		t.Fatalf("backlog %+v", b)
	}

	// With the outbox off: no rows.
	off := open(t, nil)
	offOB := outboxOf(t, off)
	oc := newConv(t, off, key(1031))
	x := oc.write(newVideoCall(1, videoT0, expires)).Items[0].VideoCall
	oc.write(videoStatus(x.ID, persistence.VideoCallEnded, persistence.VideoEndHangup, expires))
	y := newRMVideoCall(t, off, 1, 2, videoT0, expires)
	rmVideoChange(t, off, y.ID, func(ch *persistence.VideoCallChange) {
		ch.Status, ch.EndReason = persistence.VideoCallEnded, persistence.VideoEndAborted
	})
	if b := backlog(t, offOB); b != (persistence.OutboxBacklog{}) {
		t.Fatalf("outbox off: %+v", b)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testVideoCallGroupCommit: changes of calls between RMs share batches with
// conversation writes; a refused change fails alone without spoiling the
// batch, and a batch retried without a bad write applies them once.
func testVideoCallGroupCommit(t *testing.T, open Opener) {
	const rows = 4
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
	ctx := ctxT(t)
	expect := func(wantErr bool) {
		t.Helper()
		r := <-reports
		if r.n != rows || (r.err != nil) != wantErr {
			t.Fatalf("batch %+v, want %d writes, error %v", r, rows, wantErr)
		}
	}
	type outcome struct {
		vc    *persistence.VideoCall
		moved bool
		res   *persistence.WriteResult
		err   error
	}
	// run submits the writes and the changes (one batch) and waits for all.
	run := func(ws []*persistence.ConversationWrite, chs []*persistence.VideoCallChange) ([]outcome, []outcome) {
		t.Helper()
		wo, co := make([]outcome, len(ws)), make([]outcome, len(chs))
		var wg sync.WaitGroup
		for i, w := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := s.ApplyConversationWrite(ctx, w)
				wo[i] = outcome{res: res, err: err}
			}()
		}
		for i, ch := range chs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vc, moved, err := s.ApplyVideoCallChange(ctx, ch)
				co[i] = outcome{vc: vc, moved: moved, err: err}
			}()
		}
		wg.Wait()
		return wo, co
	}
	expires := videoT0.Add(time.Hour)
	rmNew := &persistence.VideoCallChange{New: &persistence.VideoCall{InviterRMID: 1, InviteeRMID: 2, CreatedAt: videoT0, ExpiresAt: expires}}

	// Round 1: a conversation with two queued sends and a video call, and
	// three calls between RMs.
	k := key(1040)
	wo, co := run([]*persistence.ConversationWrite{{Key: k, Items: []persistence.WriteItem{
		outbound("vg-1", "one", 1), outbound("vg-2", "two", 1), newVideoCall(1, videoT0, expires)}}},
		[]*persistence.VideoCallChange{rmNew, rmNew, rmNew})
	expect(false)
	if wo[0].err != nil {
		t.Fatal(wo[0].err)
	}
	cres := wo[0].res
	convCall, msgs := cres.Items[2].VideoCall, cres.Items
	var rmCalls []*persistence.VideoCall
	for i, o := range co {
		if o.err != nil || !o.moved {
			t.Fatalf("round 1 creation %d: %+v", i, o)
		}
		rmCalls = append(rmCalls, o.vc)
	}

	// Round 2: two refused changes (a conversation's call, an unknown call)
	// and two good writes in one batch that commits as one.
	wo, co = run([]*persistence.ConversationWrite{{ConversationID: cres.Conversation.ID, LastSeq: cres.Conversation.LastSeq,
		Items: []persistence.WriteItem{accepted(msgs[0].Message.ID, "wamid.VGTAKEN"),
			videoStatus(convCall.ID, persistence.VideoCallEnded, persistence.VideoEndHangup, expires)}}},
		[]*persistence.VideoCallChange{
			{CallID: convCall.ID, Status: persistence.VideoCallActive},
			{CallID: rmCalls[2].ID + 1000, Status: persistence.VideoCallActive},
			{CallID: rmCalls[0].ID, Status: persistence.VideoCallEnded, EndReason: persistence.VideoEndLeft, At: expires},
		})
	expect(false)
	if wo[0].err != nil || wo[0].res.Items[1].Event == nil {
		t.Fatalf("round 2 conversation write: %+v", wo[0])
	}
	if !errors.Is(co[0].err, persistence.ErrInvalid) || !errors.Is(co[1].err, persistence.ErrNotFound) || co[2].err != nil ||
		!co[2].moved || co[2].vc.Status != persistence.VideoCallEnded {
		t.Fatalf("round 2 changes: %+v", co)
	}
	if b := backlog(t, ob); b.Pending != 3 { // message.sent and two video_call.ended
		t.Fatalf("backlog after round 2 %+v", b)
	}

	// Round 3: a conversation write that records a join, then fails (a taken
	// provider id): the batch is rolled back and retried without it; the
	// changes between RMs are applied once.
	c2 := wo[0].res.Conversation
	wo, co = run([]*persistence.ConversationWrite{{ConversationID: c2.ID, LastSeq: c2.LastSeq, Items: []persistence.WriteItem{
		videoJoin(convCall.ID, "peer-rolled-back", 0, expires), accepted(msgs[1].Message.ID, "wamid.VGTAKEN")}}},
		[]*persistence.VideoCallChange{
			{CallID: rmCalls[1].ID, Join: &persistence.VideoJoin{PeerID: "peer-b", RMID: 2}, Status: persistence.VideoCallActive, At: videoT0},
			{CallID: rmCalls[2].ID, Status: persistence.VideoCallEnded, EndReason: persistence.VideoEndExpired, At: expires},
			{CallID: rmCalls[0].ID, Join: &persistence.VideoJoin{PeerID: "peer-a", RMID: 1}, At: expires},
		})
	expect(true)
	if wo[0].err == nil {
		t.Fatal("round 3: the write with a taken provider id succeeded")
	}
	for i, o := range co {
		if o.err != nil || o.vc == nil {
			t.Fatalf("round 3 change %d: %+v", i, o)
		}
	}
	if !co[0].moved || co[0].vc.Joins != 1 || co[0].vc.Status != persistence.VideoCallActive || !co[1].moved || co[2].moved ||
		co[2].vc.Joins != 1 {
		t.Fatalf("round 3 changes: %+v %+v %+v", co[0].vc, co[1].vc, co[2].vc)
	}
	for i, want := range []*persistence.VideoCall{co[0].vc, co[1].vc, co[2].vc} {
		sameVideoCall(t, fmt.Sprint("round 3 call ", i), videoCallByID(t, s, want.ID), want)
	}
	if js := videoCallJoins(t, s, rmCalls[1].ID); len(js) != 1 {
		t.Fatalf("a retried join recorded %d times", len(js))
	}
	if js := videoCallJoins(t, s, convCall.ID); len(js) != 0 {
		t.Fatalf("the failed write left its join: %+v", js)
	}
	if got := videoCallByID(t, s, convCall.ID); got.Joins != 0 {
		t.Fatalf("the failed write counted its join: %+v", got)
	}
	if b := backlog(t, ob); b.Pending != 4 {
		t.Fatalf("backlog after round 3 %+v", b)
	}
}
