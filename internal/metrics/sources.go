package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"urva/persistence"
	"urva/transport/turn"
)

// Scrape-time reads of the CRM outbox: bounded, and shared by scrapes that
// come within outboxCacheFor of each other.
const (
	outboxTimeout  = 2 * time.Second
	outboxCacheFor = time.Second
)

// WatchOutbox sets how the CRM outbox backlog is read at scrape time
// (persistence.Outbox.OutboxBacklog); nil removes the outbox families.
func (m *Metrics) WatchOutbox(read func(context.Context) (persistence.OutboxBacklog, error)) {
	m.outbox.mu.Lock()
	defer m.outbox.mu.Unlock()
	m.outbox.read, m.outbox.at = read, time.Time{}
}

// WatchTURN sets how the built-in TURN server's counters are read at
// scrape time (turn.Server.Stats); nil removes the TURN families.
func (m *Metrics) WatchTURN(stats func() turn.Stats) {
	if stats == nil {
		m.turn.stats.Store(nil)
		return
	}
	m.turn.stats.Store(&stats)
}

// outboxCollector reads the outbox backlog when scraped, at most once per
// outboxCacheFor (a failed read too), so that scrapes do not load the
// database. A failed read makes the scrape report an error for these
// families; the others are still served.
type outboxCollector struct {
	mu   sync.Mutex
	read func(context.Context) (persistence.OutboxBacklog, error)
	at   time.Time // of the cached read; zero: none
	last persistence.OutboxBacklog
	err  error
	now  func() time.Time // tests; nil: time.Now
}

var (
	outboxPendingDesc = prometheus.NewDesc("urva_crm_outbox_pending",
		"CRM outbox events waiting to be delivered.", nil, nil)
	outboxDeadDesc = prometheus.NewDesc("urva_crm_outbox_dead",
		"CRM outbox events that expired undelivered (dead letters, replayable by operators).", nil, nil)
	outboxOldestDesc = prometheus.NewDesc("urva_crm_outbox_oldest_age_seconds",
		"Age of the oldest pending CRM outbox event; 0 when nothing is pending.", nil, nil)
	outboxBehindDesc = prometheus.NewDesc("urva_crm_outbox_conversations_behind",
		"Conversations with at least one pending CRM outbox event.", nil, nil)
)

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxPendingDesc
	ch <- outboxDeadDesc
	ch <- outboxOldestDesc
	ch <- outboxBehindDesc
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock() // concurrent scrapes wait for one read and share it
	if c.read == nil {
		return
	}
	clock := c.now
	if clock == nil {
		clock = time.Now
	}
	now := clock()
	if c.at.IsZero() || now.Sub(c.at) >= outboxCacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), outboxTimeout)
		c.last, c.err = c.read(ctx)
		cancel()
		c.at = now
	}
	if c.err != nil {
		ch <- prometheus.NewInvalidMetric(outboxPendingDesc, c.err)
		return
	}
	b := c.last
	age := 0.0
	if !b.OldestPending.IsZero() {
		age = max(0, now.Sub(b.OldestPending).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(outboxPendingDesc, prometheus.GaugeValue, float64(b.Pending))
	ch <- prometheus.MustNewConstMetric(outboxDeadDesc, prometheus.GaugeValue, float64(b.Dead))
	ch <- prometheus.MustNewConstMetric(outboxOldestDesc, prometheus.GaugeValue, age)
	ch <- prometheus.MustNewConstMetric(outboxBehindDesc, prometheus.GaugeValue, float64(b.ConversationsBehind))
}

// turnCollector reads the TURN server's counters when scraped.
type turnCollector struct {
	stats atomic.Pointer[func() turn.Stats]
}

var (
	turnAllocsDesc = prometheus.NewDesc("urva_turn_allocations",
		"Live allocations on the built-in TURN server.", nil, nil)
	turnAllocsTotalDesc = prometheus.NewDesc("urva_turn_allocations_total",
		"Allocations created on the built-in TURN server.", nil, nil)
	turnRefusedDesc = prometheus.NewDesc("urva_turn_allocations_refused_total",
		"Allocations refused by the per-user quota.", nil, nil)
	turnAuthDesc = prometheus.NewDesc("urva_turn_auth_failures_total",
		"TURN requests with refused credentials (malformed, expired, wrong HMAC).", nil, nil)
	turnBytesDesc = prometheus.NewDesc("urva_turn_relayed_bytes_total",
		"Bytes sent and received on TURN relay sockets.", nil, nil)
	turnLoopDesc = prometheus.NewDesc("urva_turn_loop_packets_total",
		"ChannelData packets the TURN relay loop took itself, both ways (a failed send also counts as dropped); pion relays the rest.", nil, nil)
	turnDroppedDesc = prometheus.NewDesc("urva_turn_dropped_packets_total",
		"Packets the TURN relay loop dropped: a full send buffer, or pion too far behind to take one.", nil, nil)
)

func (c *turnCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- turnAllocsDesc
	ch <- turnAllocsTotalDesc
	ch <- turnRefusedDesc
	ch <- turnAuthDesc
	ch <- turnBytesDesc
	ch <- turnLoopDesc
	ch <- turnDroppedDesc
}

func (c *turnCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.stats.Load()
	if f == nil {
		return
	}
	st := (*f)()
	ch <- prometheus.MustNewConstMetric(turnAllocsDesc, prometheus.GaugeValue, float64(st.Allocations))
	ch <- prometheus.MustNewConstMetric(turnAllocsTotalDesc, prometheus.CounterValue, float64(st.AllocationsTotal))
	ch <- prometheus.MustNewConstMetric(turnRefusedDesc, prometheus.CounterValue, float64(st.AllocationsRefused))
	ch <- prometheus.MustNewConstMetric(turnAuthDesc, prometheus.CounterValue, float64(st.AuthFailures))
	ch <- prometheus.MustNewConstMetric(turnBytesDesc, prometheus.CounterValue, float64(st.RelayedBytes))
	ch <- prometheus.MustNewConstMetric(turnLoopDesc, prometheus.CounterValue, float64(st.LoopPackets))
	ch <- prometheus.MustNewConstMetric(turnDroppedDesc, prometheus.CounterValue, float64(st.Dropped))
}

// WatchCommits sets how the committer's counters are read at scrape time
// (persistence.CommitStatsReader); nil removes the families.
func (m *Metrics) WatchCommits(stats func() persistence.CommitStats) {
	if stats == nil {
		m.commits.stats.Store(nil)
		return
	}
	m.commits.stats.Store(&stats)
}

// commitCollector reads the committer's counters when scraped.
type commitCollector struct {
	stats atomic.Pointer[func() persistence.CommitStats]
}

var (
	dbRequestsDesc = prometheus.NewDesc("urva_db_requests_total",
		"Requests the group committer sent to the database.", nil, nil)
	dbCachedBatchesDesc = prometheus.NewDesc("urva_db_cached_batches_total",
		"Group-commit batches that took every conversation from the committed-conversation cache and skipped their reads (MySQL).", nil, nil)
	dbCacheMissesDesc = prometheus.NewDesc("urva_db_cache_misses_total",
		"Cached batches that ran again with their reads (a redelivered message, a conversation changed behind the committer).", nil, nil)
	dbCachedConvsDesc = prometheus.NewDesc("urva_db_cached_conversations",
		"Conversations in the committed-conversation cache.", nil, nil)
)

func (c *commitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dbRequestsDesc
	ch <- dbCachedBatchesDesc
	ch <- dbCacheMissesDesc
	ch <- dbCachedConvsDesc
}

func (c *commitCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.stats.Load()
	if f == nil {
		return
	}
	st := (*f)()
	ch <- prometheus.MustNewConstMetric(dbRequestsDesc, prometheus.CounterValue, float64(st.Requests))
	ch <- prometheus.MustNewConstMetric(dbCachedBatchesDesc, prometheus.CounterValue, float64(st.CachedBatches))
	ch <- prometheus.MustNewConstMetric(dbCacheMissesDesc, prometheus.CounterValue, float64(st.CacheMisses))
	ch <- prometheus.MustNewConstMetric(dbCachedConvsDesc, prometheus.GaugeValue, float64(st.CachedConversations))
}
