package httpapi_test

// What the RM console needs besides the conversation API, over HTTP on
// SQLite and MariaDB: the list's previews and window, older history,
// templates, the RM list, reassignment and an operator's disconnect.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"urva/persistence"
	"urva/persistence/storetest"
)

func TestIntegrationConsoleAPI(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tokA, tokB, tokSup := s.login(s.rmA), s.login(s.rmB), s.login(s.sup)
		wsA := s.dial(tokA)
		wsA.online()
		for i := range 5 {
			s.mustWebhook(inboundBody(inbound{From: "919811100041", Name: "Console Contact", WAMID: s.wamid(), Text: fmt.Sprint("m", i)}))
		}
		var conv int64
		for range 5 {
			conv = wsA.next("message").ConversationID
		}

		// The list: preview, unread count and the window.
		r := s.do("GET", "/api/conversations", tokA, nil, nil)
		var list struct {
			Conversations []struct {
				ID          int64 `json:"id"`
				UnreadCount int64 `json:"unread_count"`
				LastMessage *struct {
					Direction string `json:"direction"`
					Text      string `json:"text"`
				} `json:"last_message"`
				WindowExpiresAt *time.Time `json:"window_expires_at"`
				SMSOptedOut     bool       `json:"sms_opted_out"`
			} `json:"conversations"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &list) != nil || len(list.Conversations) != 1 {
			t.Fatalf("list: %v", r)
		}
		c := list.Conversations[0]
		if c.ID != conv || c.UnreadCount != 5 || c.LastMessage == nil || c.LastMessage.Text != "m4" || c.LastMessage.Direction != "in" ||
			c.WindowExpiresAt == nil || c.WindowExpiresAt.Before(time.Now().Add(23*time.Hour)) {
			t.Fatalf("list entry: %s", r.body)
		}

		// Older history, page by page.
		page := s.do("GET", fmt.Sprintf("/api/conversations/%d/events?before_seq=4&limit=2", conv), tokA, nil, nil)
		var evs struct {
			Events []frame `json:"events"`
		}
		if page.status != http.StatusOK || json.Unmarshal(page.body, &evs) != nil || len(evs.Events) != 2 ||
			evs.Events[0].Seq != 2 || evs.Events[1].Seq != 3 {
			t.Fatalf("before_seq page: %v", page)
		}
		if r := s.do("GET", fmt.Sprintf("/api/conversations/%d/events?before_seq=4&after_seq=1", conv), tokA, nil, nil); r.status != http.StatusBadRequest {
			t.Fatalf("both cursors: %v", r)
		}

		// Templates.
		r = s.do("GET", "/api/templates", tokA, nil, nil)
		var tpl struct {
			Templates []struct {
				Name   string `json:"name"`
				Params int    `json:"params"`
			} `json:"templates"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &tpl) != nil || len(tpl.Templates) != 2 ||
			tpl.Templates[0].Params != 1 || tpl.Templates[1].Params != 2 {
			t.Fatalf("templates: %v", r)
		}

		// The RM list is for supervisors.
		if r := s.do("GET", "/api/rms", tokA, nil, nil); r.status != http.StatusForbidden {
			t.Fatalf("RM reads the RM list: %v", r)
		}
		r = s.do("GET", "/api/rms", tokSup, nil, nil)
		var rms struct {
			RMs []struct {
				ID     int64 `json:"id"`
				Online bool  `json:"online"`
			} `json:"rms"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.body, &rms) != nil || len(rms.RMs) != 3 {
			t.Fatalf("rms: %v", r)
		}
		for _, rm := range rms.RMs {
			if rm.Online != (rm.ID == s.rmA.ID) {
				t.Fatalf("online flags: %s", r.body)
			}
		}

		// Reassignment: only supervisors; the new RM sees the conversation and
		// its events, the old RM is told.
		wsB := s.dial(tokB)
		wsB.online()
		body := map[string]any{"rm_id": s.rmB.ID}
		if r := s.postJSON(fmt.Sprintf("/api/conversations/%d/assign", conv), tokA, body); r.status != http.StatusForbidden {
			t.Fatalf("RM reassigns: %v", r)
		}
		if r := s.postJSON(fmt.Sprintf("/api/conversations/%d/assign", conv), tokSup, map[string]any{"rm_id": s.sup.ID}); r.status != http.StatusBadRequest {
			t.Fatalf("assign to a supervisor: %v", r)
		}
		r = s.postJSON(fmt.Sprintf("/api/conversations/%d/assign", conv), tokSup, body)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), fmt.Sprintf(`"assigned_rm_id":%d`, s.rmB.ID)) {
			t.Fatalf("reassign: %v", r)
		}
		if f := wsA.next("assigned"); !strings.Contains(f.raw, fmt.Sprintf(`"rm_id":%d`, s.rmB.ID)) {
			t.Fatalf("old RM told %s", f)
		}
		if f := wsB.next("assigned"); f.ConversationID != conv {
			t.Fatalf("new RM told %s", f)
		}
		s.mustWebhook(inboundBody(inbound{From: "919811100041", Name: "Console Contact", WAMID: s.wamid(), Text: "after"}))
		if f := wsB.next("message"); f.Message.Text != "after" {
			t.Fatalf("new RM: %s", f)
		}
		if r := s.do("GET", fmt.Sprintf("/api/conversations/%d/events", conv), tokA, nil, nil); r.status != http.StatusForbidden {
			t.Fatalf("old RM still reads the conversation: %v", r)
		}

		// An operator's disconnect closes B's socket with 1013.
		if r := s.do("POST", fmt.Sprintf("/admin/rms/%d/disconnect", s.rmB.ID), "", nil, nil); r.status != http.StatusUnauthorized {
			t.Fatalf("disconnect without the admin token: %v", r)
		}
		r = s.do("POST", fmt.Sprintf("/admin/rms/%d/disconnect", s.rmB.ID), itAdminToken, nil, nil)
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"sockets":1`) {
			t.Fatalf("disconnect: %v", r)
		}
		_ = wsB.c.SetReadDeadline(time.Now().Add(itGuard))
		for {
			if _, _, err := wsB.c.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
					t.Fatalf("socket ended with %v, want close 1013", err)
				}
				break
			}
		}
	})
}

func TestIntegrationOperatorRoutesNeedTheAdminToken(t *testing.T) {
	s := newStack(t, storetest.OpenSQLite(t))
	rmTok := s.login(s.sup)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap", "/admin/crm/backlog"} {
		for _, tok := range []string{"", rmTok, "wrong-admin-token"} {
			if r := s.do("GET", path, tok, nil, nil); r.status != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %v", path, tok, r.status)
			}
		}
	}
	if r := s.do("POST", "/admin/rms/1/disconnect", rmTok, nil, nil); r.status != http.StatusUnauthorized {
		t.Errorf("disconnect with an RM token: %v", r.status)
	}
	r := s.do("GET", "/debug/pprof/goroutine?debug=1", itAdminToken, nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "goroutine profile:") {
		t.Fatalf("goroutine profile with the admin token: %d %.200s", r.status, r.body)
	}
	if r := s.do("GET", "/debug/pprof/", itAdminToken, nil, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), "heap") {
		t.Fatalf("pprof index: %d", r.status)
	}
}
