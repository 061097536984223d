package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"urva/transport/httpapi"

	"urva/actors"
	"urva/persistence"
	"urva/persistence/storetest"
)

type (
	actorKindJSON = httpapi.ActorKind
	actorsPage    struct{ httpapi.ActorsPage }
)

func (p actorsPage) kind(name string) actorKindJSON {
	for _, k := range p.Kinds {
		if k.Kind == name {
			return k
		}
	}
	return actorKindJSON{Kind: "missing " + name}
}

// adminActors reads GET /admin/actors with query.
func (s *stack) adminActors(query string) actorsPage {
	s.t.Helper()
	r := s.do("GET", "/admin/actors"+query, itAdminToken, nil, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /admin/actors%s: %v", query, r)
	}
	var p actorsPage
	if err := json.Unmarshal(r.body, &p); err != nil || p.Kinds == nil || p.Top == nil {
		s.t.Fatalf("actors page %s: %v", r.body, err)
	}
	return p
}

type actorStateJSON struct {
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	State struct {
		Key              string     `json:"key"`
		ConversationID   int64      `json:"conversation_id"`
		AssignedRMID     int64      `json:"assigned_rm_id"`
		LastSeq          int64      `json:"last_seq"`
		PendingItems     *int       `json:"pending_items"`
		WriteInFlight    *bool      `json:"write_in_flight"`
		AwaitingProvider *int       `json:"awaiting_provider"`
		ParkedStatuses   *int       `json:"parked_statuses"`
		Mailbox          *int64     `json:"mailbox"`
		Received         int64      `json:"received"`
		LastActivity     *time.Time `json:"last_activity"`
		RMID             int64      `json:"rm_id"`
		AwaitingResume   *bool      `json:"awaiting_resume"`
		QueuedFrames     *int       `json:"queued_frames"`
	} `json:"state"`
}

// adminActor reads GET /admin/actors/{path}; it returns the status too.
func (s *stack) adminActor(path string) (actorStateJSON, response) {
	s.t.Helper()
	r := s.do("GET", "/admin/actors/"+path, itAdminToken, nil, nil)
	var st actorStateJSON
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &st); err != nil {
			s.t.Fatalf("actor state %s: %v", r.body, err)
		}
	}
	return st, r
}

func TestAdminActorsCountsListsAndSnapshots(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		ws := s.dial(s.login(s.rmA))
		ws.online()

		for _, path := range []string{"/admin/actors", "/admin/actors/provider/whatsapp"} {
			for _, tok := range []string{"", "wrong-token", s.login(s.sup)} {
				if r := s.do("GET", path, tok, nil, nil); r.status != http.StatusUnauthorized {
					t.Fatalf("GET %s with %q: %v", path, tok, r)
				}
			}
		}

		before := s.adminActors("")
		for _, k := range actors.ActorKinds() {
			if before.kind(k).Kind != k {
				t.Fatalf("kind %s missing from %+v", k, before.Kinds)
			}
		}
		if k := before.kind(actors.KindConversation); k.Live != 0 || k.Received != 0 {
			t.Fatalf("conversations before any message: %+v", k)
		}

		contacts := []string{"919811300001", "919811300002", "919811300003"}
		counts := []int{3, 2, 1}
		ids := make([]string, len(contacts))
		for i, c := range contacts {
			ids[i] = "whatsapp/+" + itBusinessDigits + "/+" + c
			for range counts[i] {
				s.mustWebhook(inboundBody(inbound{From: c, Name: "Contact", WAMID: s.wamid(), Text: "hello"}))
			}
		}

		// Each snapshot is answered after everything sent to that actor
		// before it, and counts a write whose completion has landed as
		// done, so after these the conversations are idle.
		for i, id := range ids {
			st, r := s.adminActor("conversation/" + id)
			if r.status != http.StatusOK || st.Kind != actors.KindConversation || st.ID != id {
				t.Fatalf("snapshot of %s: %v", id, r)
			}
			c := st.State
			if c.Key != id || c.ConversationID == 0 || c.LastSeq != int64(counts[i]) || c.AssignedRMID != s.rmA.ID ||
				c.PendingItems == nil || *c.PendingItems != 0 || c.WriteInFlight == nil || *c.WriteInFlight ||
				c.AwaitingProvider == nil || c.ParkedStatuses == nil || c.Mailbox == nil || c.LastActivity == nil {
				t.Fatalf("state of %s: %s", id, r.body)
			}
		}
		// The same actor with its id escaped.
		if st, r := s.adminActor("conversation/" + url.PathEscape(ids[0])); r.status != http.StatusOK || st.State.LastSeq != 3 {
			t.Fatalf("escaped id: %v", r)
		}

		page := s.adminActors("?top=50")
		conv := page.kind(actors.KindConversation)
		// One routed command per message: the completions of inbound
		// writes land without a message of their own.
		if conv.Live != 3 || conv.Spawned != 3 || conv.Stopped != 0 || conv.Received != 6 ||
			conv.ReceiveLatency.Count != conv.Received || conv.ReceiveLatency.SumSeconds <= 0 || conv.MailboxSum != 0 {
			t.Fatalf("conversations after the burst: %+v", conv)
		}
		if k := page.kind(actors.KindRMSession); k.Live != 1 {
			t.Fatalf("rm sessions: %+v", k)
		}
		if k := page.kind(actors.KindProvider); k.Live != 2 {
			t.Fatalf("providers: %+v", k)
		}
		listed := map[string]httpapi.ActorRow{}
		var sessionID string
		for _, row := range page.Top {
			listed[row.Kind+" "+row.ID] = row
			if row.Kind == actors.KindRMSession {
				sessionID = row.ID
			}
		}
		for i, id := range ids {
			row, ok := listed[actors.KindConversation+" "+id]
			if !ok || row.Received != int64(counts[i]) || row.LastActivity == nil {
				t.Fatalf("conversation %s in top: %+v (%+v)", id, row, page.Top)
			}
		}
		if !strings.HasPrefix(sessionID, fmt.Sprintf("%d/", s.rmA.ID)) {
			t.Fatalf("rm session id %q", sessionID)
		}
		if st, r := s.adminActor("rm_session/" + sessionID); r.status != http.StatusOK || st.State.RMID != s.rmA.ID ||
			st.State.AwaitingResume == nil || *st.State.AwaitingResume || st.State.QueuedFrames == nil {
			t.Fatalf("rm session state: %v", r)
		}

		one := s.adminActors("?kind=conversation&top=1")
		if len(one.Kinds) != 1 || one.Kinds[0].Kind != actors.KindConversation || len(one.Top) != 1 || one.Top[0].ID != ids[0] {
			t.Fatalf("one conversation: %+v", one)
		}
		if none := s.adminActors("?top=0"); len(none.Top) != 0 || len(none.Kinds) != len(actors.ActorKinds()) {
			t.Fatalf("top=0: %+v", none)
		}

		for _, path := range []string{"conversation/whatsapp/+" + itBusinessDigits + "/+919899999999", "conversation/nope",
			"call/1", "nope/1", "conversation", ""} {
			if _, r := s.adminActor(path); r.status != http.StatusNotFound {
				t.Errorf("GET /admin/actors/%s: %v", path, r)
			}
		}
		for _, q := range []string{"?kind=nope", "?top=-1", "?top=x"} {
			if r := s.do("GET", "/admin/actors"+q, itAdminToken, nil, nil); r.status != http.StatusBadRequest {
				t.Errorf("GET /admin/actors%s: %v", q, r)
			}
		}
		if k := s.adminActors("").kind(actors.KindConversation); k.Live != 3 {
			t.Fatalf("asking about unknown conversations activated some: %+v", k)
		}
	})
}

func TestAdminActorsForgetPassivatedConversations(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withTuning(func(tu *actors.Tuning) { tu.PassivateAfter = 50 * time.Millisecond }))
		id := "whatsapp/+" + itBusinessDigits + "/+919811300010"
		s.mustWebhook(inboundBody(inbound{From: "919811300010", Name: "Contact", WAMID: s.wamid(), Text: "hello"}))

		// Passivation has no event of its own over HTTP: ask until the
		// conversation has stopped.
		var conv actorKindJSON
		var page actorsPage
		for deadline := time.Now().Add(itGuard); ; time.Sleep(10 * time.Millisecond) {
			page = s.adminActors("?kind=conversation")
			conv = page.kind(actors.KindConversation)
			if conv.Spawned == 1 && conv.Stopped == 1 || time.Now().After(deadline) {
				break
			}
		}
		if conv.Live != 0 || conv.Spawned != 1 || conv.Stopped != 1 || len(page.Top) != 0 {
			t.Fatalf("after passivation: %+v", page)
		}
		if _, r := s.adminActor("conversation/" + id); r.status != http.StatusNotFound || !strings.Contains(r.errorText(), "no live conversation actor") {
			t.Fatalf("snapshot of a passivated conversation: %v", r)
		}
		if k := s.adminActors("?kind=conversation").kind(actors.KindConversation); k.Spawned != 1 || k.Live != 0 {
			t.Fatalf("asking activated it again: %+v", k)
		}
	})
}
