package httpapi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"urva/actors"
	"urva/persistence"
)

// fakeMetrics records what the server reports; its registry holds one
// counter.
type fakeMetrics struct {
	*prometheus.Registry
	mu       sync.Mutex
	webhooks []string // provider/outcome
	open     map[string]int
	closed   chan string
}

func newFakeMetrics() *fakeMetrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "test_scrapes_total", Help: "A counter."}))
	return &fakeMetrics{Registry: reg, open: map[string]int{}, closed: make(chan string, 10)}
}

func (f *fakeMetrics) Webhook(provider, outcome string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.webhooks = append(f.webhooks, provider+"/"+outcome)
}

func (f *fakeMetrics) SocketOpened(socket string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open[socket]++
}

func (f *fakeMetrics) SocketClosed(socket string) {
	f.mu.Lock()
	f.open[socket]--
	f.mu.Unlock()
	f.closed <- socket
}

// takeWebhooks returns the webhooks recorded since the last call.
func (f *fakeMetrics) takeWebhooks() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.webhooks
	f.webhooks = nil
	return w
}

func TestMetricsPage(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		e := newEnv(t, nil)
		if r := e.do("GET", "/metrics", nil); r.status != 404 {
			t.Fatalf("without metrics: %d %s", r.status, r.body)
		}
	})
	t.Run("open", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Metrics = newFakeMetrics() })
		r := e.do("GET", "/metrics", nil)
		if r.status != 200 || !strings.Contains(string(r.body), "test_scrapes_total 0") {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Fatalf("content type %q", ct)
		}
	})
	t.Run("token", func(t *testing.T) {
		e := newEnv(t, func(o *Options) { o.Metrics, o.MetricsToken = newFakeMetrics(), "scrape-token" })
		for _, h := range [][]string{nil, {"Authorization", "Bearer admin-token"}, {"Authorization", "Bearer scrape-tokenx"}} {
			if r := e.do("GET", "/metrics", nil, h...); r.status != 401 {
				t.Fatalf("%v: %d %s", h, r.status, r.body)
			}
		}
		if r := e.do("GET", "/metrics", nil, "Authorization", "Bearer scrape-token"); r.status != 200 {
			t.Fatalf("right token: %d %s", r.status, r.body)
		}
	})
}

// Each webhook answer is recorded under the outcome it stands for.
func TestWebhookOutcomesRecorded(t *testing.T) {
	m := newFakeMetrics()
	e := newEnv(t, func(o *Options) { o.Metrics = m })
	want := func(what string, status int, r response, outcomes ...string) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d %s", what, r.status, r.body)
		}
		if got := m.takeWebhooks(); strings.Join(got, ",") != strings.Join(outcomes, ",") {
			t.Fatalf("%s: recorded %v, want %v", what, got, outcomes)
		}
	}
	want("processed", 200, e.webhook(notification), "whatsapp/processed")
	e.actors.setIngest(func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
		return []actors.IngestResult{{Duplicate: true}}, nil
	})
	want("duplicate", 200, e.webhook(notification), "whatsapp/duplicate")
	e.actors.setIngest(func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
		return nil, errors.New("database down")
	})
	want("unavailable", 503, e.webhook(notification), "whatsapp/unavailable")
	e.actors.setIngest(func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
		return nil, errors.Join(actors.ErrBadRequest, persistence.ErrInvalid)
	})
	want("refused by the store", 400, e.webhook(notification), "whatsapp/malformed")
	want("malformed", 400, e.webhook("not json"), "whatsapp/malformed")
	want("bad signature", 401, e.do("POST", "/webhooks/whatsapp", strings.NewReader(notification),
		"X-Hub-Signature-256", sign("wrong", []byte(notification))), "whatsapp/bad_signature")
	big := strings.Repeat("x", 65<<10)
	want("too large", 413, e.do("POST", "/webhooks/whatsapp", strings.NewReader(big)), "whatsapp/too_large")
	want("sms off", 401, e.do("POST", "/webhooks/sms", strings.NewReader("From=%2B1")), "sms/bad_signature")
	want("sms status off", 401, e.do("POST", "/webhooks/sms/status", strings.NewReader("From=%2B1")), "sms_status/bad_signature")
	want("dialler token", 404, e.do("POST", "/webhooks/dialler/guess", strings.NewReader("{}")), "dialler/bad_token")
	want("not a webhook", 404, e.do("POST", "/webhooks/other", strings.NewReader("{}")))
	want("verification", 403, e.do("GET", "/webhooks/whatsapp?hub.mode=subscribe", nil))
}

func TestWebhookOutcomeNames(t *testing.T) {
	for _, c := range []struct {
		status    int
		committed string
		want      string
	}{
		{200, outcomeProcessed, WebhookProcessed},
		{200, outcomeDuplicate, WebhookDuplicate},
		{200, outcomeUnknownCall, WebhookUnknownCall},
		{200, outcomeIgnored + "incoming", WebhookIgnored},
		{200, "", WebhookProcessed},
		{401, "", WebhookBadSignature},
		{404, "", WebhookBadToken},
		{400, "", WebhookMalformed},
		{413, "", WebhookTooLarge},
		{503, "", WebhookUnavailable},
		{500, "", WebhookError},
	} {
		if got := webhookOutcome(c.status, c.committed); got != c.want {
			t.Errorf("%d %q: %q, want %q", c.status, c.committed, got, c.want)
		}
	}
}

// An RM socket is counted while it is open.
func TestSocketCounted(t *testing.T) {
	m := newFakeMetrics()
	e := newEnv(t, func(o *Options) { o.Metrics = m })
	c, _, err := e.dial(e.token(7, "rm"), true)
	if err != nil {
		t.Fatal(err)
	}
	e.accepted(t) // the session started: the socket was counted before
	m.mu.Lock()
	open := m.open[actors.SocketRM]
	m.mu.Unlock()
	if open != 1 {
		t.Fatalf("%d RM sockets open, want 1", open)
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.Close()
	select {
	case socket := <-m.closed:
		if socket != actors.SocketRM {
			t.Fatalf("closed socket %q", socket)
		}
	case <-time.After(guard):
		t.Fatal("socket close not counted")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.open[actors.SocketRM] != 0 {
		t.Fatalf("%d RM sockets open after close", m.open[actors.SocketRM])
	}
}
