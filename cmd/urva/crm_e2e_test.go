package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"urva/persistence/storetest"
	"urva/transport/crm"
)

// crmReceiver is a CRM in the test process: it verifies every delivery and
// records each event id with its body.
type crmReceiver struct {
	secret string
	mu     sync.Mutex
	bodies map[string][]byte // event id -> body
	wamids map[string]string // provider message id of message.received -> event id
	bad    []string
	got    chan struct{}
}

func (r *crmReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	ts, sig, id := req.Header.Get("X-Urva-Timestamp"), req.Header.Get("X-Urva-Signature"), req.Header.Get("X-Urva-Event-Id")
	if err := crm.Verify(r.secret, ts, body, sig, time.Now(), time.Hour); err != nil {
		r.mu.Lock()
		r.bad = append(r.bad, err.Error())
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID   string `json:"id"`
		Type string `json:"type"`
		Data struct {
			Message struct {
				ProviderMessageID string `json:"provider_message_id"`
			} `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != id {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	time.Sleep(2 * time.Millisecond) // a CRM that takes a moment: deliveries are in flight at the kill
	r.mu.Lock()
	if prev, ok := r.bodies[id]; ok && !bytes.Equal(prev, body) {
		r.bad = append(r.bad, "event "+id+" redelivered with a different body")
	}
	r.bodies[id] = body
	if ev.Type == "message.received" {
		r.wamids[ev.Data.Message.ProviderMessageID] = id
	}
	r.mu.Unlock()
	select {
	case r.got <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusOK)
}

// TestCRMEventsSurviveKill9 kills the server while CRM deliveries are in
// flight: after the restart every acknowledged message's event arrives, with
// the same id and body if it is delivered twice.
func TestCRMEventsSurviveKill9(t *testing.T) {
	for _, db := range []string{"sqlite", "mysql"} {
		t.Run(db, func(t *testing.T) { testCRMEventsSurviveKill9(t, db) })
	}
}

func testCRMEventsSurviveKill9(t *testing.T, db string) {
	const secret, appSecret = "crm-kill-secret", "crm-kill-app-secret"
	rcv := &crmReceiver{secret: secret, bodies: map[string][]byte{}, wamids: map[string]string{}, got: make(chan struct{}, 1)}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	env := []string{"URVA_WHATSAPP_APP_SECRET=" + appSecret, "URVA_CRM_WEBHOOK_URL=" + srv.URL, "URVA_CRM_SECRET=" + secret}
	if db == "sqlite" {
		env = append(env, "URVA_DATABASE_DRIVER=sqlite", "URVA_DATABASE_DSN="+filepath.Join(t.TempDir(), "urva.db"))
	} else {
		env = append(env, "URVA_DATABASE_DRIVER=mysql", "URVA_DATABASE_DSN="+storetest.DSNForMySQL(t))
	}
	s := startServer(t, env...)

	acked := map[string]bool{}
	for i := range 150 {
		body := webhookBody(i)
		req, _ := http.NewRequest("POST", s.base+"/webhooks/whatsapp", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sign(appSecret, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			acked[fmt.Sprintf("wamid.KILL%d", i)] = true
		}
	}
	<-rcv.got // deliveries have started
	s.kill()

	s2 := startServer(t, env...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		rcv.mu.Lock()
		missing := 0
		for w := range acked {
			if _, ok := rcv.wamids[w]; !ok {
				missing++
			}
		}
		rcv.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged messages never reached the CRM", missing)
		}
		select {
		case <-rcv.got:
		case <-time.After(time.Second):
		}
	}
	// The backlog drains to nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		code, b := s2.do("GET", "/admin/crm/backlog", "urva-sandbox-admin-token", nil)
		var bl struct{ Pending, Dead int64 }
		_ = json.Unmarshal(b, &bl)
		if code == 200 && bl.Pending == 0 && bl.Dead == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("backlog never drained: %d %s", code, b)
		}
		select {
		case <-rcv.got:
		case <-time.After(50 * time.Millisecond):
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Fatalf("bad deliveries: %v", rcv.bad)
	}
	t.Logf("%d acknowledged, %d distinct events received", len(acked), len(rcv.bodies))
}
