// Package metrics is the server's Prometheus registry: every metric the
// server exports is defined here, and served by the HTTP layer at
// GET /metrics (see docs/operations.md for the list and their meaning).
//
// The layers that produce the numbers do not import this package. They
// expose hooks and read functions instead, and cmd/urva (serve.go) connects
// them to a Metrics:
//
//   - persistence.Config.OnBatch       -> Metrics.Batch
//   - actors.Options.OnSend            -> Metrics.OutboundSend
//   - actors.Options.OnSlowClient      -> Metrics.SlowClient
//   - actors.Options.MeterProvider     <- Metrics.MeterProvider (Proto.Actor's own metrics)
//   - httpapi.Options.Metrics          <- Metrics (webhooks, sockets, and the page itself)
//   - persistence.Outbox.OutboxBacklog -> Metrics.WatchOutbox (read at scrape time)
//   - turn.Server.Stats                -> Metrics.WatchTURN (read at scrape time)
//   - persistence.CommitStatsReader    -> Metrics.WatchCommits (read at scrape time)
//   - actors.System.ActorStats         -> Metrics.WatchActors (read at scrape time)
//   - actors.System.WorkerStats        -> Metrics.WatchWorkers (read at scrape time)
//
// So this package imports actors, persistence, transport/httpapi and
// transport/turn, for their types and label values only, and none of them
// imports it. Hooks run on hot paths (the
// committer goroutine, provider sends, socket handlers): they look up
// pre-resolved series and do not allocate once a label pair has been seen.
//
// Sources read at scrape time (WatchOutbox, WatchTURN, WatchActors,
// WatchWorkers, WatchCommits) can be
// replaced at any time (a restart in tests); until one is set its families
// are absent.
package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"urva/actors"
	"urva/persistence"
	"urva/transport/httpapi"
)

// Label values are defined where they are produced: the webhook providers
// and outcomes by httpapi, send results and socket names by actors. Every
// known combination exists from the start, at zero.
var (
	sockets     = []string{actors.SocketRM, actors.SocketVideo}
	sendResults = []string{actors.SendSent, actors.SendRetry, actors.SendFailed}
)

// Bucket upper bounds.
var (
	webhookBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15}
	batchBuckets   = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
	commitBuckets  = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	// Proto.Actor records message receive durations in seconds; the
	// OpenTelemetry default buckets are meant for milliseconds.
	receiveBuckets = []float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}
)

// Metrics is the registry and the instruments the hooks update.
type Metrics struct {
	reg   *prometheus.Registry
	meter *sdkmetric.MeterProvider

	webhooks    *prometheus.CounterVec
	webhookTime *prometheus.HistogramVec
	batchRows   prometheus.Histogram
	commitTime  prometheus.Histogram
	commitErrs  prometheus.Counter
	wsLive      *prometheus.GaugeVec
	wsTotal     *prometheus.CounterVec
	wsSlow      *prometheus.CounterVec
	sends       *prometheus.CounterVec

	webhookSeries cache[[2]string, prometheus.Counter]
	webhookTimes  cache[string, prometheus.Observer]
	sendSeries    cache[[2]string, prometheus.Counter]
	liveSeries    cache[string, prometheus.Gauge]
	openedSeries  cache[string, prometheus.Counter]
	slowSeries    cache[string, prometheus.Counter]

	outbox  outboxCollector
	turn    turnCollector
	actors  actorCollector
	commits commitCollector
}

// New builds the registry: Go runtime and process collectors, the server's
// metrics, and an OpenTelemetry meter provider exporting into the same
// registry (MeterProvider, for Proto.Actor).
func New() (*Metrics, error) {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.webhooks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "urva_webhooks_total",
		Help: "Provider webhooks answered, by provider and outcome.",
	}, []string{"provider", "outcome"})
	m.webhookTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "urva_webhook_duration_seconds",
		Help:    "Time to answer a provider webhook (verification, parsing, commit), by provider.",
		Buckets: webhookBuckets,
	}, []string{"provider"})
	m.batchRows = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "urva_db_batch_rows",
		Help:    "Writes per group-commit batch.",
		Buckets: batchBuckets,
	})
	m.commitTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "urva_db_commit_seconds",
		Help:    "Time to apply one group-commit batch, from BEGIN to the end of COMMIT (retries included).",
		Buckets: commitBuckets,
	})
	m.commitErrs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "urva_db_commit_errors_total",
		Help: "Group-commit batches whose transaction failed (their writes were then retried or failed individually).",
	})
	m.wsLive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "urva_ws_connections",
		Help: "Open websockets, by socket (rm: RM live socket, video: video call signalling).",
	}, []string{"socket"})
	m.wsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "urva_ws_connections_total",
		Help: "Websockets opened, by socket.",
	}, []string{"socket"})
	m.wsSlow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "urva_ws_slow_clients_total",
		Help: "Websockets cut because their client could not keep up, by socket.",
	}, []string{"socket"})
	m.sends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "urva_outbound_sends_total",
		Help: "Outbound provider send attempts, by provider and result (sent, retry, failed).",
	}, []string{"provider", "result"})

	m.webhookSeries.resolve = func(k [2]string) prometheus.Counter { return m.webhooks.WithLabelValues(k[0], k[1]) }
	m.webhookTimes.resolve = func(p string) prometheus.Observer { return m.webhookTime.WithLabelValues(p) }
	m.sendSeries.resolve = func(k [2]string) prometheus.Counter { return m.sends.WithLabelValues(k[0], k[1]) }
	m.liveSeries.resolve = func(s string) prometheus.Gauge { return m.wsLive.WithLabelValues(s) }
	m.openedSeries.resolve = func(s string) prometheus.Counter { return m.wsTotal.WithLabelValues(s) }
	m.slowSeries.resolve = func(s string) prometheus.Counter { return m.wsSlow.WithLabelValues(s) }
	// Every known series exists from the start (at zero), so rates and
	// alerts see them before the first event.
	for _, p := range httpapi.WebhookProviders {
		m.webhookTimes.get(p)
		for _, o := range httpapi.WebhookOutcomes {
			m.webhookSeries.get([2]string{p, o})
		}
	}
	for _, ch := range []string{persistence.ChannelWhatsApp, persistence.ChannelSMS} {
		for _, r := range sendResults {
			m.sendSeries.get([2]string{ch, r})
		}
	}
	for _, s := range sockets {
		m.liveSeries.get(s)
		m.openedSeries.get(s)
		m.slowSeries.get(s)
	}

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.webhooks, m.webhookTime, m.batchRows, m.commitTime, m.commitErrs,
		m.wsLive, m.wsTotal, m.wsSlow, m.sends,
		&m.outbox, &m.turn, &m.actors, &m.commits,
	)

	exp, err := otelprom.New(
		otelprom.WithRegisterer(m.reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
		otelprom.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, err
	}
	m.meter = sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: "protoactor_actor_message_receive_duration_seconds"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: receiveBuckets}},
		)),
	)
	return m, nil
}

// Registry is the registry behind Gather, for registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Gather collects every family (prometheus.Gatherer).
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.reg.Gather() }

// MeterProvider is an OpenTelemetry meter provider whose instruments are
// exported through this registry (Proto.Actor's protoactor_* metrics).
func (m *Metrics) MeterProvider() metric.MeterProvider { return m.meter }

// Shutdown stops the meter provider.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.meter.Shutdown(ctx) }

// Webhook counts one answered provider webhook and its duration
// (httpapi.Metrics).
func (m *Metrics) Webhook(provider, outcome string, d time.Duration) {
	m.webhookSeries.get([2]string{provider, outcome}).Inc()
	m.webhookTimes.get(provider).Observe(d.Seconds())
}

// Batch records one group commit (persistence.Config.OnBatch): its writes,
// its duration, and whether its transaction failed.
func (m *Metrics) Batch(rows int, commit time.Duration, err error) {
	m.batchRows.Observe(float64(rows))
	m.commitTime.Observe(commit.Seconds())
	if err != nil {
		m.commitErrs.Inc()
	}
}

// SocketOpened counts a websocket that started (httpapi.Metrics).
func (m *Metrics) SocketOpened(socket string) {
	m.liveSeries.get(socket).Inc()
	m.openedSeries.get(socket).Inc()
}

// SocketClosed counts a websocket that ended (httpapi.Metrics).
func (m *Metrics) SocketClosed(socket string) { m.liveSeries.get(socket).Dec() }

// SlowClient counts a websocket cut because its client could not keep up
// (actors.Options.OnSlowClient).
func (m *Metrics) SlowClient(socket string) { m.slowSeries.get(socket).Inc() }

// OutboundSend counts one outbound send attempt's result on a provider
// channel (actors.Options.OnSend).
func (m *Metrics) OutboundSend(provider, result string) {
	m.sendSeries.get([2]string{provider, result}).Inc()
}

// cache maps label values to their resolved series. Reads are one atomic
// load and a map lookup, without locks or allocations; a miss copies the
// map under a mutex (label values are a small fixed set, so misses stop
// after the first of each).
type cache[K comparable, V any] struct {
	resolve func(K) V
	m       atomic.Pointer[map[K]V]
	mu      sync.Mutex
}

func (c *cache[K, V]) get(k K) V {
	if p := c.m.Load(); p != nil {
		if v, ok := (*p)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil {
		if v, ok := (*old)[k]; ok {
			return v
		}
	}
	next := make(map[K]V, 1+lenOf(old))
	if old != nil {
		for k2, v2 := range *old {
			next[k2] = v2
		}
	}
	v := c.resolve(k)
	next[k] = v
	c.m.Store(&next)
	return v
}

func lenOf[K comparable, V any](p *map[K]V) int {
	if p == nil {
		return 0
	}
	return len(*p)
}
