package httpapi_test

// The database goes away under a running server (MariaDB behind a proxy
// that cuts every connection): /readyz fails and webhooks get 503, so the
// provider keeps the message and retries; nothing is acknowledged. When the
// database is back both recover by themselves, and the retried webhook is
// stored once.

import (
	"net/http"
	"testing"
	"time"

	"urva/persistence"
	"urva/persistence/storetest"
)

func TestIntegrationDatabaseOutageOnMariaDB(t *testing.T) {
	p, cfg := storetest.NewMySQLProxy(t)
	cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 5*time.Second
	store := storetest.OpenMySQLConfig(t, func(c *persistence.Config) { c.DSN = cfg.FormatDSN() })
	s := newStack(t, store)
	tok := s.login(s.sup) // nobody is online: the conversation waits unassigned

	if r := s.do("GET", "/readyz", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("readyz before the outage: %v", r)
	}
	s.mustWebhook(inboundBody(inbound{From: "919811100061", Name: "Outage", WAMID: s.wamid(), Text: "before"}))

	p.Down()
	if r := s.do("GET", "/readyz", "", nil, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz during the outage: %v", r)
	}
	during := inboundBody(inbound{From: "919811100061", Name: "Outage", WAMID: s.wamid(), Text: "during"})
	if r := s.signedWebhook(during); r.status != http.StatusServiceUnavailable {
		t.Fatalf("webhook during the outage: %v (nothing may be acknowledged)", r)
	}

	p.Up()
	// Recovery needs no restart: the next probe and the provider's retry
	// of the same webhook succeed.
	if r := s.do("GET", "/readyz", "", nil, nil); r.status != http.StatusOK {
		t.Fatalf("readyz after the outage: %v", r)
	}
	s.mustWebhook(during)
	s.mustWebhook(during) // a second retry changes nothing
	convs := s.conversations(tok)
	if len(convs) != 1 {
		t.Fatalf("conversations %+v", convs)
	}
	var texts []string
	for _, f := range s.events(tok, convs[0].ID) {
		if f.Type == "message" {
			texts = append(texts, f.Message.Text)
		}
	}
	if len(texts) != 2 || texts[0] != "before" || texts[1] != "during" {
		t.Fatalf("stored messages %v, want [before during]", texts)
	}
}
