package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"urva/actors"
	"urva/persistence"
	"urva/transport/httpapi"
	"urva/transport/turn"
)

func newMetrics(t *testing.T) *Metrics {
	t.Helper()
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	return m
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// series finds the metric of family name whose labels are exactly labels
// (name, value, name, value, ...); nil when absent.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	mf := fams[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := series(fams, name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v", name, labels)
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	t.Fatalf("%s%v is not a counter or gauge", name, labels)
	return 0
}

// compare renders families names of m in the text format and compares
// them with want.
func compare(t *testing.T, m *Metrics, want string, names ...string) error {
	t.Helper()
	fams := gather(t, m)
	var b strings.Builder
	for _, name := range names {
		mf := fams[name]
		if mf == nil {
			return fmt.Errorf("family %s missing", name)
		}
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			return err
		}
	}
	if got := strings.TrimSpace(b.String()); got != want {
		return fmt.Errorf("got\n%s\nwant\n%s", got, want)
	}
	return nil
}

func TestFamilies(t *testing.T) {
	m := newMetrics(t)
	fams := gather(t, m)
	for _, name := range []string{
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_start_time_seconds",
		"urva_webhooks_total", "urva_webhook_duration_seconds",
		"urva_ws_connections", "urva_ws_connections_total", "urva_ws_slow_clients_total",
		"urva_outbound_sends_total",
	} {
		if fams[name] == nil {
			t.Errorf("family %s missing", name)
		}
	}
	// Every known label combination exists at zero from the start.
	for _, p := range httpapi.WebhookProviders {
		for _, o := range httpapi.WebhookOutcomes {
			if v := value(t, fams, "urva_webhooks_total", "outcome", o, "provider", p); v != 0 {
				t.Errorf("webhooks %s/%s = %v before any webhook", p, o, v)
			}
		}
	}
	for _, s := range []string{actors.SocketRM, actors.SocketVideo} {
		value(t, fams, "urva_ws_connections", "socket", s)
		value(t, fams, "urva_ws_slow_clients_total", "socket", s)
	}
	value(t, fams, "urva_outbound_sends_total", "provider", persistence.ChannelWhatsApp, "result", actors.SendRetry)
	// Sources not set: their families are absent. The histograms without
	// labels show once observed.
	for _, name := range []string{"urva_crm_outbox_pending", "urva_turn_allocations", "urva_actors_live"} {
		if fams[name] != nil {
			t.Errorf("family %s present without a source", name)
		}
	}
}

func TestHooks(t *testing.T) {
	m := newMetrics(t)
	for range 3 {
		m.Webhook(httpapi.WebhookWhatsApp, httpapi.WebhookProcessed, 20*time.Millisecond)
	}
	m.Webhook(httpapi.WebhookWhatsApp, httpapi.WebhookBadSignature, time.Millisecond)
	m.Webhook(httpapi.WebhookDialler, httpapi.WebhookUnknownCall, time.Millisecond)
	m.Batch(10, 3*time.Millisecond, nil)
	m.Batch(5, time.Millisecond, errors.New("deadlock"))
	m.SocketOpened(actors.SocketRM)
	m.SocketOpened(actors.SocketRM)
	m.SocketClosed(actors.SocketRM)
	m.SocketOpened(actors.SocketVideo)
	m.SlowClient(actors.SocketRM)
	m.OutboundSend(persistence.ChannelSMS, actors.SendRetry)
	m.OutboundSend(persistence.ChannelSMS, actors.SendSent)
	m.OutboundSend("voice", actors.SendFailed) // a channel not known in advance

	fams := gather(t, m)
	check := func(want float64, name string, labels ...string) {
		t.Helper()
		if got := value(t, fams, name, labels...); got != want {
			t.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
	}
	check(3, "urva_webhooks_total", "outcome", "processed", "provider", "whatsapp")
	check(1, "urva_webhooks_total", "outcome", "bad_signature", "provider", "whatsapp")
	check(1, "urva_webhooks_total", "outcome", "unknown_call", "provider", "dialler")
	check(0, "urva_webhooks_total", "outcome", "processed", "provider", "sms")
	if h := series(fams, "urva_webhook_duration_seconds", "provider", "whatsapp").GetHistogram(); h.GetSampleCount() != 4 {
		t.Errorf("whatsapp webhook durations: %d samples, want 4", h.GetSampleCount())
	}
	rows := series(fams, "urva_db_batch_rows").GetHistogram()
	if rows.GetSampleCount() != 2 || rows.GetSampleSum() != 15 {
		t.Errorf("batch rows: count %d sum %v, want 2 and 15", rows.GetSampleCount(), rows.GetSampleSum())
	}
	if n := series(fams, "urva_db_commit_seconds").GetHistogram().GetSampleCount(); n != 2 {
		t.Errorf("commit durations: %d samples, want 2", n)
	}
	check(1, "urva_db_commit_errors_total")
	check(1, "urva_ws_connections", "socket", "rm")
	check(2, "urva_ws_connections_total", "socket", "rm")
	check(1, "urva_ws_connections", "socket", "video")
	check(1, "urva_ws_slow_clients_total", "socket", "rm")
	check(0, "urva_ws_slow_clients_total", "socket", "video")
	check(1, "urva_outbound_sends_total", "provider", "sms", "result", "retry")
	check(1, "urva_outbound_sends_total", "provider", "sms", "result", "sent")
	check(1, "urva_outbound_sends_total", "provider", "voice", "result", "failed")
}

// The hooks run on hot paths: once a label pair has been seen they do not
// allocate.
func TestHooksDoNotAllocate(t *testing.T) {
	m := newMetrics(t)
	err := errors.New("x")
	for name, f := range map[string]func(){
		"Webhook":      func() { m.Webhook(httpapi.WebhookSMS, httpapi.WebhookDuplicate, time.Millisecond) },
		"Batch":        func() { m.Batch(7, time.Millisecond, err) },
		"SocketOpened": func() { m.SocketOpened(actors.SocketVideo) },
		"SocketClosed": func() { m.SocketClosed(actors.SocketVideo) },
		"SlowClient":   func() { m.SlowClient(actors.SocketRM) },
		"OutboundSend": func() { m.OutboundSend(persistence.ChannelWhatsApp, actors.SendSent) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
}

func TestOutbox(t *testing.T) {
	m := newMetrics(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	m.outbox.now = func() time.Time { return now }
	reads := 0
	var fail error
	m.WatchOutbox(func(ctx context.Context) (persistence.OutboxBacklog, error) {
		reads++
		if _, ok := ctx.Deadline(); !ok {
			t.Error("outbox read without a deadline")
		}
		return persistence.OutboxBacklog{Pending: 7, Dead: 2, ConversationsBehind: 3,
			OldestPending: now.Add(-90 * time.Second)}, fail
	})
	fams := gather(t, m)
	for name, want := range map[string]float64{
		"urva_crm_outbox_pending": 7, "urva_crm_outbox_dead": 2,
		"urva_crm_outbox_oldest_age_seconds": 90, "urva_crm_outbox_conversations_behind": 3,
	} {
		if got := value(t, fams, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	// Scrapes within a second share one read; the oldest event ages meanwhile.
	now = now.Add(500 * time.Millisecond)
	fams = gather(t, m)
	if reads != 1 {
		t.Errorf("%d outbox reads for two scrapes half a second apart, want 1", reads)
	}
	if got := value(t, fams, "urva_crm_outbox_oldest_age_seconds"); got != 90.5 {
		t.Errorf("oldest age %v from the cached read, want 90.5", got)
	}
	now = now.Add(time.Second)
	gather(t, m)
	if reads != 2 {
		t.Errorf("%d outbox reads after the cache expired, want 2", reads)
	}

	// A failed read fails the outbox families only.
	fail = errors.New("database unavailable")
	now = now.Add(time.Second)
	mfs, err := m.Gather()
	if err == nil || !strings.Contains(err.Error(), "database unavailable") {
		t.Errorf("gather with the outbox unreadable: %v", err)
	}
	if !slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == "urva_webhooks_total" }) {
		t.Error("other families lost with the outbox unreadable")
	}

	m.WatchOutbox(nil)
	if fams := gather(t, m); fams["urva_crm_outbox_pending"] != nil {
		t.Error("outbox families present after WatchOutbox(nil)")
	}
}

func TestTURN(t *testing.T) {
	m := newMetrics(t)
	m.WatchTURN(func() turn.Stats {
		return turn.Stats{Allocations: 2, AllocationsTotal: 9, AllocationsRefused: 1, AuthFailures: 4, RelayedBytes: 12345, LoopPackets: 77, Dropped: 3}
	})
	if err := compare(t, m, strings.TrimSpace(`
# HELP urva_turn_allocations Live allocations on the built-in TURN server.
# TYPE urva_turn_allocations gauge
urva_turn_allocations 2
# HELP urva_turn_allocations_total Allocations created on the built-in TURN server.
# TYPE urva_turn_allocations_total counter
urva_turn_allocations_total 9
# HELP urva_turn_allocations_refused_total Allocations refused by the per-user quota.
# TYPE urva_turn_allocations_refused_total counter
urva_turn_allocations_refused_total 1
# HELP urva_turn_auth_failures_total TURN requests with refused credentials (malformed, expired, wrong HMAC).
# TYPE urva_turn_auth_failures_total counter
urva_turn_auth_failures_total 4
# HELP urva_turn_relayed_bytes_total Bytes sent and received on TURN relay sockets.
# TYPE urva_turn_relayed_bytes_total counter
urva_turn_relayed_bytes_total 12345
# HELP urva_turn_loop_packets_total ChannelData packets the TURN relay loop took itself, both ways (a failed send also counts as dropped); pion relays the rest.
# TYPE urva_turn_loop_packets_total counter
urva_turn_loop_packets_total 77
# HELP urva_turn_dropped_packets_total Packets the TURN relay loop dropped: a full send buffer, or pion too far behind to take one.
# TYPE urva_turn_dropped_packets_total counter
urva_turn_dropped_packets_total 3
`), "urva_turn_allocations", "urva_turn_allocations_total", "urva_turn_allocations_refused_total",
		"urva_turn_auth_failures_total", "urva_turn_relayed_bytes_total", "urva_turn_loop_packets_total",
		"urva_turn_dropped_packets_total"); err != nil {
		t.Error(err)
	}
}

func TestCommits(t *testing.T) {
	m := newMetrics(t)
	m.WatchCommits(func() persistence.CommitStats {
		return persistence.CommitStats{Requests: 120, CachedBatches: 50, CacheMisses: 2, CachedConversations: 31}
	})
	if err := compare(t, m, strings.TrimSpace(`
# HELP urva_db_requests_total Requests the group committer sent to the database.
# TYPE urva_db_requests_total counter
urva_db_requests_total 120
# HELP urva_db_cached_batches_total Group-commit batches that took every conversation from the committed-conversation cache and skipped their reads (MySQL).
# TYPE urva_db_cached_batches_total counter
urva_db_cached_batches_total 50
# HELP urva_db_cache_misses_total Cached batches that ran again with their reads (a redelivered message, a conversation changed behind the committer).
# TYPE urva_db_cache_misses_total counter
urva_db_cache_misses_total 2
# HELP urva_db_cached_conversations Conversations in the committed-conversation cache.
# TYPE urva_db_cached_conversations gauge
urva_db_cached_conversations 31
`), "urva_db_requests_total", "urva_db_cached_batches_total", "urva_db_cache_misses_total", "urva_db_cached_conversations"); err != nil {
		t.Error(err)
	}
	m.WatchCommits(nil)
	if fams := gather(t, m); fams["urva_db_requests_total"] != nil {
		t.Error("commit families present after WatchCommits(nil)")
	}
}

func TestWorkers(t *testing.T) {
	m := newMetrics(t)
	m.WatchWorkers(func() actors.WorkerStats { return actors.WorkerStats{Parked: 7, Started: 42} })
	if err := compare(t, m, strings.TrimSpace(`
# HELP urva_actor_workers_parked Goroutines parked to run the next actor mailbox or socket writer.
# TYPE urva_actor_workers_parked gauge
urva_actor_workers_parked 7
# HELP urva_actor_workers_started_total Goroutines started to run actor mailboxes and socket writers (rises under steady load only when more run at once than can park).
# TYPE urva_actor_workers_started_total counter
urva_actor_workers_started_total 42
`), "urva_actor_workers_parked", "urva_actor_workers_started_total"); err != nil {
		t.Error(err)
	}
	m.WatchWorkers(nil)
	if fams := gather(t, m); fams["urva_actor_workers_parked"] != nil {
		t.Error("worker families present after WatchWorkers(nil)")
	}
}

func TestActors(t *testing.T) {
	m := newMetrics(t)
	m.WatchActors(func() []actors.KindStats {
		return []actors.KindStats{{
			Kind: actors.KindConversation, Live: 3, Spawned: 10, Stopped: 7, Restarted: 1, Received: 6,
			MailboxSum: 4, MailboxMax: 2,
			Latency: actors.LatencyHistogram{
				Bounds: []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond},
				Counts: []int64{3, 5, 5},
				Count:  6,
				Sum:    1500 * time.Millisecond,
			},
		}}
	})
	if err := compare(t, m, strings.TrimSpace(`
# HELP urva_actors_live Running actors, by kind.
# TYPE urva_actors_live gauge
urva_actors_live{kind="conversation"} 3
# HELP urva_actors_restarted_total Actors restarted by their supervisor after a failure, by kind.
# TYPE urva_actors_restarted_total counter
urva_actors_restarted_total{kind="conversation"} 1
# HELP urva_actor_mailbox_depth_max Messages waiting in the fullest mailbox of a running actor of a kind.
# TYPE urva_actor_mailbox_depth_max gauge
urva_actor_mailbox_depth_max{kind="conversation"} 2
# HELP urva_actor_messages_total Messages received by actors, by kind.
# TYPE urva_actor_messages_total counter
urva_actor_messages_total{kind="conversation"} 6
# HELP urva_actor_receive_seconds Time actors of a kind spent handling one message.
# TYPE urva_actor_receive_seconds histogram
urva_actor_receive_seconds_bucket{kind="conversation",le="0.001"} 3
urva_actor_receive_seconds_bucket{kind="conversation",le="0.01"} 5
urva_actor_receive_seconds_bucket{kind="conversation",le="0.1"} 5
urva_actor_receive_seconds_bucket{kind="conversation",le="+Inf"} 6
urva_actor_receive_seconds_sum{kind="conversation"} 1.5
urva_actor_receive_seconds_count{kind="conversation"} 6
`), "urva_actors_live", "urva_actors_restarted_total", "urva_actor_mailbox_depth_max",
		"urva_actor_messages_total", "urva_actor_receive_seconds"); err != nil {
		t.Error(err)
	}
	fams := gather(t, m)
	for _, name := range []string{"urva_actors_spawned_total", "urva_actors_stopped_total", "urva_actor_mailbox_depth_sum"} {
		if series(fams, name, "kind", "conversation") == nil {
			t.Errorf("%s{kind=conversation} missing", name)
		}
	}
}

// Instruments of the meter provider are exported through the registry,
// with Prometheus names.
func TestMeterProvider(t *testing.T) {
	m := newMetrics(t)
	c, err := m.MeterProvider().Meter("protoactor").Int64Counter("protoactor_actor_spawn_count")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 2)
	h, err := m.MeterProvider().Meter("protoactor").Float64Histogram("protoactor_actor_message_receive_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	h.Record(context.Background(), 0.0002)
	fams := gather(t, m)
	if v := value(t, fams, "protoactor_actor_spawn_count_total"); v != 2 {
		t.Errorf("protoactor_actor_spawn_count_total = %v, want 2", v)
	}
	hist := fams["protoactor_actor_message_receive_duration_seconds"]
	if hist == nil || len(hist.GetMetric()) != 1 {
		t.Fatalf("receive duration histogram: %v", hist)
	}
	var bounds []float64
	for _, b := range hist.GetMetric()[0].GetHistogram().GetBucket() {
		bounds = append(bounds, b.GetUpperBound())
	}
	if !slices.Equal(bounds, receiveBuckets) {
		t.Errorf("receive duration buckets %v, want %v", bounds, receiveBuckets)
	}
}
