package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"urva/persistence"
	"urva/persistence/storetest"
)

// startVideo starts a system with video calls and returns it with two RMs
// and a channel that receives every video call after each of its writes.
func startVideo(t *testing.T, store persistence.Store, tune func(*VideoOptions)) (*env, chan persistence.VideoCall) {
	t.Helper()
	e := &env{t: t, store: store, prov: newFakeProvider()}
	ctx := context.Background()
	for i, name := range []string{"video-a", "video-b"} {
		id, err := store.CreateRM(ctx, &persistence.RM{Username: name, Name: "RM " + name, Role: persistence.RoleRM, PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			e.rmA = Principal{RMID: id, Role: persistence.RoleRM}
		} else {
			e.rmB = Principal{RMID: id, Role: persistence.RoleRM}
		}
	}
	ended := make(chan persistence.VideoCall, 1000)
	e.restartVideo(tune, ended)
	return e, ended
}

// restartVideo (re)starts the system of e on its store.
func (e *env) restartVideo(tune func(*VideoOptions), writes chan persistence.VideoCall) {
	e.t.Helper()
	vo := &VideoOptions{LinkTTL: time.Hour, RejoinGrace: time.Hour,
		Link: func(id int64, exp time.Time) string {
			return fmt.Sprintf("https://urva.test/v/%d?t=%d.sig", id, exp.Unix())
		}}
	if tune != nil {
		tune(vo)
	}
	sys, err := Start(context.Background(), Options{
		Store:           e.store,
		Providers:       map[string]ProviderClient{persistence.ChannelWhatsApp: e.prov},
		BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business},
		Tuning:          testTuning(),
		Log:             zerolog.Nop(),
		Video:           vo,
		videoWrites:     func(c persistence.VideoCall) { writes <- c },
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.sys = sys
	e.t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
}

// vnext reads the next frame of a signalling socket as a map.
func vnext(t *testing.T, c *fakeConn) map[string]any {
	t.Helper()
	select {
	case b := <-c.frames:
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("bad frame %s: %v", b, err)
		}
		return m
	case <-time.After(wait):
		t.Fatalf("no frame within %s", wait)
		return nil
	}
}

func wantFrame(t *testing.T, c *fakeConn, typ string, fields map[string]any) map[string]any {
	t.Helper()
	m := vnext(t, c)
	if m["type"] != typ {
		t.Fatalf("want a %q frame, got %v", typ, m)
	}
	for k, v := range fields {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			t.Fatalf("%q frame: %s = %v, want %v (%v)", typ, k, m[k], v, m)
		}
	}
	return m
}

func waitClosed(t *testing.T, c *fakeConn) string {
	t.Helper()
	select {
	case r := <-c.closed:
		return r
	case <-time.After(wait):
		t.Fatal("socket not closed")
		return ""
	}
}

// waitStatus waits until a write of call id stored status.
func waitStatus(t *testing.T, writes chan persistence.VideoCall, id int64, status string) {
	t.Helper()
	for {
		select {
		case got := <-writes:
			if got.ID == id && got.Status == status {
				return
			}
		case <-time.After(wait):
			t.Fatalf("video call %d never reached %s", id, status)
		}
	}
}

func waitEnded(t *testing.T, writes chan persistence.VideoCall, id int64) {
	t.Helper()
	waitStatus(t, writes, id, persistence.VideoCallEnded)
}

func join(e *env, id int64, peer string) (*fakeConn, *VideoPeer) {
	c := newFakeConn()
	p := e.sys.JoinVideo(id, peer, 0, c)
	e.t.Cleanup(p.Close)
	return c, p
}

func TestVideoCallBetweenRMs(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e, ended := startVideo(t, store, nil)
		invitee, _ := e.connect(e.rmB, nil)
		ctx := context.Background()
		inv, err := e.sys.StartVideoCall(ctx, e.rmA, e.rmB.RMID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Call.Status != persistence.VideoCallCreated || inv.Call.ConversationID != 0 || !strings.Contains(inv.Link, fmt.Sprintf("/v/%d?", inv.Call.ID)) {
			t.Fatalf("invite %+v %q", inv.Call, inv.Link)
		}
		f := wantFrame(t, invitee, "video_invite", nil)
		vc := f["video_call"].(map[string]any)
		if vc["link"] != inv.Link || fmt.Sprint(vc["from_rm_id"]) != fmt.Sprint(e.rmA.RMID) || vc["from_name"] != "RM video-a" {
			t.Fatalf("invite frame %v", f)
		}

		id := inv.Call.ID
		a, pa := join(e, id, "peer-a")
		wantFrame(t, a, "joined", map[string]any{"peer_id": "peer-a", "others": 0})
		b, pb := join(e, id, "peer-b")
		wantFrame(t, b, "joined", map[string]any{"peer_id": "peer-b", "others": 1})
		wantFrame(t, a, "peer_joined", nil)

		// Offer, answer and candidates go to the other side as they were sent.
		offer := `{"type":"offer","sdp":"v=0 offer"}`
		pa.Receive([]byte(offer))
		if got := <-b.frames; string(got) != offer {
			t.Fatalf("relayed %s, want %s", got, offer)
		}
		pb.Receive([]byte(`{"type":"answer","sdp":"v=0 answer"}`))
		wantFrame(t, a, "answer", map[string]any{"sdp": "v=0 answer"})
		pb.Receive([]byte(`{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ relay"}}`))
		wantFrame(t, a, "candidate", nil)
		pa.Receive([]byte(`{"type":"ended","reason":"forged"}`))
		wantFrame(t, a, "error", map[string]any{"code": "bad_frame"})

		// A third participant is refused.
		c, _ := join(e, id, "peer-c")
		wantFrame(t, c, "error", map[string]any{"code": VideoRefusedFull})
		waitClosed(t, c)

		pa.Receive([]byte(`{"type":"hangup"}`))
		for _, s := range []*fakeConn{a, b} {
			wantFrame(t, s, "ended", map[string]any{"reason": persistence.VideoEndHangup})
			waitClosed(t, s)
		}
		waitEnded(t, ended, id)
		got, err := store.VideoCallByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != persistence.VideoCallEnded || got.EndReason != persistence.VideoEndHangup || got.StartedAt.IsZero() ||
			got.EndedAt.Before(got.StartedAt) || got.Joins != 2 || got.InviterRMID != e.rmA.RMID || got.InviteeRMID != e.rmB.RMID {
			t.Fatalf("stored call %+v", got)
		}
		// The link is used up.
		d, _ := join(e, id, "peer-a")
		wantFrame(t, d, "error", map[string]any{"code": VideoRefusedEnded})

		if _, err := e.sys.StartVideoCall(ctx, e.rmA, e.rmA.RMID, 0); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("self invite: %v", err)
		}
		if _, err := e.sys.StartVideoCall(ctx, e.rmA, 999999, 0); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("unknown invitee: %v", err)
		}
		if _, err := e.sys.VideoCall(ctx, Principal{RMID: 999999, Role: persistence.RoleRM}, id); !errors.Is(err, ErrForbidden) {
			t.Fatalf("a stranger reads the call: %v", err)
		}
	})
}

func TestVideoCallWithAContact(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e, _ := startVideo(t, store, nil)
		rmSock, _ := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100070", "wamid.V1", "can we talk?"))
		first := rmSock.next(t)
		convID := first.ConversationID
		inv, err := e.sys.StartVideoCall(context.Background(), e.rmA, 0, convID)
		if err != nil {
			t.Fatal(err)
		}
		if inv.Call.ConversationID != convID || inv.Call.ContactPhone != "+919811100070" || inv.Message == nil || !strings.Contains(inv.Message.Text, inv.Link) {
			t.Fatalf("invite %+v message %+v", inv.Call, inv.Message)
		}
		// One outbound message carries the link, through the provider.
		sent := <-e.prov.seen
		if !strings.Contains(sent.Text, inv.Link) || sent.Key.GetContactPhone() != "+919811100070" {
			t.Fatalf("provider send %+v", sent)
		}
		// The timeline: the video call, then the message, in seq order.
		if f := rmSock.next(t); f.Type != persistence.EventVideoCall || f.Seq != first.Seq+1 {
			t.Fatalf("want video_call frame, got %+v", f)
		}
		if f := rmSock.next(t, "status"); f.Type != "message" || f.Message.Text != inv.Message.Text {
			t.Fatalf("want the link message, got %+v", f)
		}
		if e.prov.count() != 1 {
			t.Fatalf("%d sends, want 1", e.prov.count())
		}
		// Another RM may not call this contact.
		if _, err := e.sys.StartVideoCall(context.Background(), e.rmB, 0, convID); !errors.Is(err, ErrForbidden) {
			t.Fatalf("other RM: %v", err)
		}
	})
}

func TestVideoCallOutsideTheWindowIsRefused(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e, _ := startVideo(t, store, nil)
		rmSock, _ := e.connect(e.rmA, nil)
		in := inbound("+919811100071", "wamid.V2", "old")
		e.ingest(in)
		convID := rmSock.next(t).ConversationID
		later := time.Now().Add(25 * time.Hour)
		e.sys.opts.Clock = func() time.Time { return later }
		if _, err := e.sys.StartVideoCall(context.Background(), e.rmA, 0, convID); !errors.Is(err, ErrWindowClosed) {
			t.Fatalf("outside the window: %v", err)
		}
		if n := e.prov.count(); n != 0 {
			t.Fatalf("%d sends", n)
		}
		left, err := store.UnfinishedVideoCalls(context.Background(), 10)
		if err != nil || len(left) != 0 {
			t.Fatalf("calls made: %v %v", left, err)
		}
	})
}

func TestVideoRejoinAndEveryoneLeaving(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e, ended := startVideo(t, store, func(o *VideoOptions) { o.RejoinGrace = 50 * time.Millisecond })
		inv, err := e.sys.StartVideoCall(context.Background(), e.rmA, e.rmB.RMID, 0)
		if err != nil {
			t.Fatal(err)
		}
		id := inv.Call.ID
		a, pa := join(e, id, "peer-a")
		wantFrame(t, a, "joined", nil)
		b, pb := join(e, id, "peer-b")
		wantFrame(t, b, "joined", map[string]any{"others": 1})
		wantFrame(t, a, "peer_joined", nil)

		// B reloads: its socket goes, the same peer comes back.
		pb.Close()
		wantFrame(t, a, "peer_left", nil)
		b2, pb2 := join(e, id, "peer-b")
		wantFrame(t, b2, "joined", map[string]any{"others": 1})
		wantFrame(t, a, "peer_joined", nil)
		// A connects again without closing its old socket: the old one is replaced.
		a2, pa2 := join(e, id, "peer-a")
		wantFrame(t, a2, "joined", map[string]any{"others": 1})
		waitClosed(t, a)
		wantFrame(t, b2, "peer_joined", nil)
		pa.Receive([]byte(`{"type":"offer","sdp":"stale"}`)) // from the replaced socket: dropped
		pa2.Receive([]byte(`{"type":"offer","sdp":"fresh"}`))
		wantFrame(t, b2, "offer", map[string]any{"sdp": "fresh"})

		pa2.Close()
		pb2.Close()
		waitEnded(t, ended, id)
		got, err := store.VideoCallByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got.EndReason != persistence.VideoEndLeft || got.Joins != 4 {
			t.Fatalf("call %+v", got)
		}
		joins, err := store.VideoCallJoins(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		var rejoins []string
		for _, j := range joins {
			if j.Rejoin {
				rejoins = append(rejoins, j.PeerID)
			}
		}
		if strings.Join(rejoins, ",") != "peer-b,peer-a" {
			t.Fatalf("rejoins %v in %+v", rejoins, joins)
		}
	})
}

func TestVideoLinkExpiryAndLimit(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		e, ended := startVideo(t, store, func(o *VideoOptions) { o.LinkTTL = 1500 * time.Millisecond; o.MaxDuration = 100 * time.Millisecond })
		// Nobody else comes: the link expires and the waiting participant is told.
		inv, err := e.sys.StartVideoCall(context.Background(), e.rmA, e.rmB.RMID, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := join(e, inv.Call.ID, "peer-a")
		wantFrame(t, a, "joined", nil)
		wantFrame(t, a, "ended", map[string]any{"reason": persistence.VideoEndExpired, "duration_seconds": 0})
		waitEnded(t, ended, inv.Call.ID)

		// Both come: the call ends at its maximum duration.
		inv, err = e.sys.StartVideoCall(context.Background(), e.rmA, e.rmB.RMID, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, _ = join(e, inv.Call.ID, "peer-a")
		b, _ := join(e, inv.Call.ID, "peer-b")
		for _, s := range []*fakeConn{a, b} {
			wantFrame(t, s, "joined", nil)
		}
		wantFrame(t, a, "peer_joined", nil)
		for _, s := range []*fakeConn{a, b} {
			wantFrame(t, s, "ended", map[string]any{"reason": persistence.VideoEndLimit})
		}
	})
}

func TestVideoCallLeftByARestartEnds(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		grace := func(o *VideoOptions) { o.RejoinGrace = 50 * time.Millisecond }
		e, ended := startVideo(t, store, func(o *VideoOptions) {})
		inv, err := e.sys.StartVideoCall(context.Background(), e.rmA, e.rmB.RMID, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := join(e, inv.Call.ID, "peer-a")
		b, _ := join(e, inv.Call.ID, "peer-b")
		wantFrame(t, a, "joined", nil)
		wantFrame(t, b, "joined", nil)
		wantFrame(t, a, "peer_joined", nil)
		waitStatus(t, ended, inv.Call.ID, persistence.VideoCallActive)
		if err := e.sys.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Nobody comes back to the call after the restart: it ends.
		e.restartVideo(grace, ended)
		waitEnded(t, ended, inv.Call.ID)
		got, err := store.VideoCallByID(context.Background(), inv.Call.ID)
		if err != nil || got.EndReason != persistence.VideoEndLeft {
			t.Fatalf("call %+v %v", got, err)
		}
	})
}
