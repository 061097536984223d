package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"urva/actors"
	"urva/internal/metrics"
	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/whatsapp"
)

// forEachMetered is storetest.ForEach with the store's group commits
// reported to a fresh Metrics, as serve.go opens its store (pass it on with
// withMetrics).
func forEachMetered(t *testing.T, fn func(t *testing.T, store persistence.Store, m *metrics.Metrics)) {
	t.Helper()
	run := func(open func(testing.TB, func(*persistence.Config)) persistence.Store) func(*testing.T) {
		return func(t *testing.T) {
			m, err := metrics.New()
			if err != nil {
				t.Fatal(err)
			}
			store := open(t, func(c *persistence.Config) { c.OnBatch = m.Batch })
			fn(t, store, m)
		}
	}
	t.Run("sqlite", run(storetest.OpenSQLiteConfig))
	t.Run("mysql", run(storetest.OpenMySQLConfig))
}

// scrape is GET /metrics, parsed from the Prometheus text format.
type scrape map[string]*dto.MetricFamily

func (s *stack) scrape() scrape {
	s.t.Helper()
	r := s.do("GET", "/metrics", "", nil, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /metrics: %v", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		s.t.Fatalf("GET /metrics: content type %q", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(r.body)))
	if err != nil {
		s.t.Fatalf("GET /metrics: %v\n%s", err, r.body)
	}
	return fams
}

// metric finds the series of family name with exactly labels (name,
// value, ...); nil when absent.
func (sc scrape) metric(name string, labels ...string) *dto.Metric {
	mf := sc[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for _, l := range m.GetLabel() {
			found := false
			for i := 0; i+1 < len(labels); i += 2 {
				found = found || (labels[i] == l.GetName() && labels[i+1] == l.GetValue())
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is the value of a counter or gauge, or the count of a histogram;
// 0 when the series is absent.
func (sc scrape) value(name string, labels ...string) float64 {
	m := sc.metric(name, labels...)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// sum is a histogram's sum; 0 when absent.
func (sc scrape) sum(name string, labels ...string) float64 {
	return sc.metric(name, labels...).GetHistogram().GetSampleSum()
}

// GET /metrics reports a burst of webhooks, their group commits, a refused
// signature, an RM socket, an outbound send, and the actors.
func TestIntegrationMetrics(t *testing.T) {
	forEachMetered(t, func(t *testing.T, store persistence.Store, m *metrics.Metrics) {
		s := newStack(t, store, withMetrics(m))
		before := s.scrape()
		processed := []string{"outcome", "processed", "provider", "whatsapp"}
		whatsApp := []string{"provider", "whatsapp"}
		rmSocket := []string{"socket", "rm"}
		if before.metric("urva_webhooks_total", processed...) == nil {
			t.Fatal("urva_webhooks_total{whatsapp,processed} missing before any webhook")
		}

		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online() // the session answered: the socket is counted

		// A burst of signed webhooks from n contacts, all at once.
		const n = 24
		statuses := make(chan response, n)
		var wg sync.WaitGroup
		for i := range n {
			body := inboundBody(inbound{From: fmt.Sprintf("9198111%05d", i), Name: "Contact", WAMID: s.wamid(), Text: "hello"})
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := s.postWebhook(body, whatsapp.Sign(itAppSecret, body))
				if err != nil {
					r = response{body: []byte(err.Error())}
				}
				statuses <- r
			}()
		}
		wg.Wait()
		close(statuses)
		for r := range statuses {
			if r.status != http.StatusOK {
				t.Fatalf("webhook: %v", r)
			}
		}
		burst := s.scrape()
		delta := func(sc, from scrape, name string, labels ...string) float64 {
			return sc.value(name, labels...) - from.value(name, labels...)
		}
		if d := delta(burst, before, "urva_webhooks_total", processed...); d != n {
			t.Errorf("webhooks processed moved by %v, want %d", d, n)
		}
		if d := delta(burst, before, "urva_webhook_duration_seconds", whatsApp...); d != n {
			t.Errorf("webhook durations moved by %v, want %d", d, n)
		}
		// Each webhook committed its message, with its raw log row, before
		// it was answered: at least n writes went through group commits.
		if d := burst.sum("urva_db_batch_rows") - before.sum("urva_db_batch_rows"); d < n {
			t.Errorf("batch rows moved by %v, want at least %d", d, n)
		}
		if d := delta(burst, before, "urva_db_commit_seconds"); d < 1 {
			t.Errorf("commit durations moved by %v", d)
		}
		if d := delta(burst, before, "urva_db_commit_errors_total"); d != 0 {
			t.Errorf("%v commit errors", d)
		}

		// A refused signature is counted under its outcome, and timed.
		body := inboundBody(inbound{From: "919811199999", Name: "Forger", WAMID: s.wamid(), Text: "x"})
		r, err := s.postWebhook(body, whatsapp.Sign("not-the-app-secret", body))
		if err != nil || r.status != http.StatusUnauthorized {
			t.Fatalf("forged webhook: %v %v", r, err)
		}
		forged := s.scrape()
		if d := delta(forged, burst, "urva_webhooks_total", "outcome", "bad_signature", "provider", "whatsapp"); d != 1 {
			t.Errorf("bad signatures moved by %v, want 1", d)
		}
		if d := delta(forged, burst, "urva_webhooks_total", processed...); d != 0 {
			t.Errorf("webhooks processed moved by %v with a forged one", d)
		}
		if d := delta(forged, burst, "urva_webhook_duration_seconds", whatsApp...); d != 1 {
			t.Errorf("webhook durations moved by %v for the forged one, want 1", d)
		}
		if d := delta(forged, before, "urva_ws_connections", rmSocket...); d != 1 {
			t.Errorf("RM sockets open moved by %v, want 1", d)
		}
		if d := delta(forged, before, "urva_ws_connections_total", rmSocket...); d != 1 {
			t.Errorf("RM sockets opened moved by %v, want 1", d)
		}

		// An RM reply goes out through the provider. Its first status from
		// the provider is held back until the send's result is stored, which
		// is after the send was counted. (Status webhooks follow: webhook
		// counts are not compared from here on.)
		conv := ws.next("message").ConversationID
		msg := sent(t, s.sendText(tok, conv, "metrics-1", "On it"))
		for f := ws.read(); f.Type != "status" || f.MessageID != msg.ID; f = ws.read() {
		}
		after := s.scrape()
		if d := delta(after, before, "urva_outbound_sends_total", "provider", "whatsapp", "result", "sent"); d != 1 {
			t.Errorf("whatsapp sends moved by %v, want 1", d)
		}

		// Actors, per kind.
		for _, kind := range actors.ActorKinds() {
			for _, name := range []string{"urva_actors_live", "urva_actors_spawned_total", "urva_actors_stopped_total",
				"urva_actors_restarted_total", "urva_actor_messages_total", "urva_actor_mailbox_depth_sum",
				"urva_actor_mailbox_depth_max", "urva_actor_receive_seconds"} {
				if after.metric(name, "kind", kind) == nil {
					t.Errorf("%s{kind=%q} missing", name, kind)
				}
			}
		}
		if d := delta(after, before, "urva_actors_spawned_total", "kind", actors.KindConversation); d < n {
			t.Errorf("conversation actors spawned moved by %v, want at least %d", d, n)
		}
		if v := after.value("urva_actors_live", "kind", actors.KindRMSession); v != 1 {
			t.Errorf("live RM sessions %v, want 1", v)
		}
		if d := delta(after, before, "urva_actor_receive_seconds", "kind", actors.KindConversation); d < n {
			t.Errorf("conversation receive durations moved by %v, want at least %d", d, n)
		}

		// Proto.Actor's own metrics, through OpenTelemetry.
		var proto []string
		for name, mf := range after {
			if strings.HasPrefix(name, "protoactor_") && len(mf.GetMetric()) > 0 {
				proto = append(proto, name)
			}
		}
		if after.metric("protoactor_actor_spawn_count_total") == nil && len(proto) == 0 {
			t.Errorf("no protoactor_* series")
		}
		t.Logf("Proto.Actor families: %v", proto)

		// Off until configured: no CRM outbox, no TURN server in this run.
		for _, name := range []string{"urva_crm_outbox_pending", "urva_turn_allocations"} {
			if after[name] != nil {
				t.Errorf("%s present", name)
			}
		}
	})
}
