package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"urva/actors"
)

// WatchActors sets how the actor statistics are read at scrape time
// (actors.System.ActorStats); nil removes the actor families.
func (m *Metrics) WatchActors(stats func() []actors.KindStats) {
	if stats == nil {
		m.actors.stats.Store(nil)
		return
	}
	m.actors.stats.Store(&stats)
}

// WatchWorkers sets how the figures of the goroutines that run the actors'
// mailboxes are read at scrape time (actors.System.WorkerStats); nil
// removes those families.
func (m *Metrics) WatchWorkers(stats func() actors.WorkerStats) {
	if stats == nil {
		m.actors.workers.Store(nil)
		return
	}
	m.actors.workers.Store(&stats)
}

// actorCollector turns the actor statistics, per kind of actor, into
// series labelled kind, and the dispatcher's figures into two series.
type actorCollector struct {
	stats   atomic.Pointer[func() []actors.KindStats]
	workers atomic.Pointer[func() actors.WorkerStats]
}

var (
	actorsLiveDesc = prometheus.NewDesc("urva_actors_live",
		"Running actors, by kind.", []string{"kind"}, nil)
	actorsSpawnedDesc = prometheus.NewDesc("urva_actors_spawned_total",
		"Actors started, by kind.", []string{"kind"}, nil)
	actorsStoppedDesc = prometheus.NewDesc("urva_actors_stopped_total",
		"Actors stopped (conversations passivated, sockets closed, calls ended), by kind.", []string{"kind"}, nil)
	actorsRestartedDesc = prometheus.NewDesc("urva_actors_restarted_total",
		"Actors restarted by their supervisor after a failure, by kind.", []string{"kind"}, nil)
	actorMessagesDesc = prometheus.NewDesc("urva_actor_messages_total",
		"Messages received by actors, by kind.", []string{"kind"}, nil)
	actorMailboxSumDesc = prometheus.NewDesc("urva_actor_mailbox_depth_sum",
		"Messages waiting in the mailboxes of the running actors of a kind, summed.", []string{"kind"}, nil)
	actorMailboxMaxDesc = prometheus.NewDesc("urva_actor_mailbox_depth_max",
		"Messages waiting in the fullest mailbox of a running actor of a kind.", []string{"kind"}, nil)
	actorReceiveDesc = prometheus.NewDesc("urva_actor_receive_seconds",
		"Time actors of a kind spent handling one message.", []string{"kind"}, nil)
	workersParkedDesc = prometheus.NewDesc("urva_actor_workers_parked",
		"Goroutines parked to run the next actor mailbox or socket writer.", nil, nil)
	workersStartedDesc = prometheus.NewDesc("urva_actor_workers_started_total",
		"Goroutines started to run actor mailboxes and socket writers (rises under steady load only when more run at once than can park).", nil, nil)
)

func (c *actorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{actorsLiveDesc, actorsSpawnedDesc, actorsStoppedDesc, actorsRestartedDesc,
		actorMessagesDesc, actorMailboxSumDesc, actorMailboxMaxDesc, actorReceiveDesc, workersParkedDesc, workersStartedDesc} {
		ch <- d
	}
}

func (c *actorCollector) Collect(ch chan<- prometheus.Metric) {
	if w := c.workers.Load(); w != nil {
		st := (*w)()
		ch <- prometheus.MustNewConstMetric(workersParkedDesc, prometheus.GaugeValue, float64(st.Parked))
		ch <- prometheus.MustNewConstMetric(workersStartedDesc, prometheus.CounterValue, float64(st.Started))
	}
	f := c.stats.Load()
	if f == nil {
		return
	}
	for _, k := range (*f)() {
		gauge := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), k.Kind)
		}
		counter := func(d *prometheus.Desc, v int64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), k.Kind)
		}
		gauge(actorsLiveDesc, k.Live)
		counter(actorsSpawnedDesc, k.Spawned)
		counter(actorsStoppedDesc, k.Stopped)
		counter(actorsRestartedDesc, k.Restarted)
		counter(actorMessagesDesc, k.Received)
		gauge(actorMailboxSumDesc, k.MailboxSum)
		gauge(actorMailboxMaxDesc, k.MailboxMax)
		h := k.Latency
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, le := range h.Bounds {
			if i < len(h.Counts) {
				buckets[le.Seconds()] = uint64(h.Counts[i])
			}
		}
		ch <- prometheus.MustNewConstHistogram(actorReceiveDesc, uint64(h.Count), h.Sum.Seconds(), buckets, k.Kind)
	}
}
