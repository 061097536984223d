package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// Observation hooks: Options.OnSend and Options.OnSlowClient, called with
// fixed label values so that the receiver can count without allocating.

// Results of an outbound send attempt (Options.OnSend).
const (
	SendSent   = "sent"   // the provider accepted the message
	SendRetry  = "retry"  // the attempt failed; another follows
	SendFailed = "failed" // refused for good or out of attempts: the message is failed
)

// Sockets a slow client is cut from (Options.OnSlowClient).
const (
	SocketRM    = "rm"
	SocketVideo = "video"
)

func (s *System) observeSend(channel, result string) {
	if f := s.opts.OnSend; f != nil {
		f(channel, result)
	}
}

func (s *System) observeSlowClient(socket string) {
	if f := s.opts.OnSlowClient; f != nil {
		f(socket)
	}
}

// Proto.Actor's metrics. Proto.Actor only checks that a meter provider was
// configured: it creates its instruments from the global OpenTelemetry
// meter provider (otel.Meter("protoactor")) when the actor system is
// created. newActorSystem therefore installs mp as the global provider
// before creating the system, under a lock so that systems started at once
// (tests) each get their own; the global provider is left set afterwards.
//
// Proto.Actor's mailbox length gauge (protoactor_actor_mailbox_length) is
// never reported: the callback it registers per actor names no instrument,
// so the SDK drops it. Mailbox depths come from ActorStats instead.

var globalMeterMu sync.Mutex

// newActorSystem creates the actor system, with Proto.Actor's metrics going
// to mp when it is not nil.
func newActorSystem(mp metric.MeterProvider, opts ...actor.ConfigOption) *actor.ActorSystem {
	if mp == nil {
		return actor.NewActorSystem(opts...)
	}
	globalMeterMu.Lock()
	defer globalMeterMu.Unlock()
	otel.SetMeterProvider(mp)
	return actor.NewActorSystem(append(opts, actor.WithMetricProviders(mp))...)
}
