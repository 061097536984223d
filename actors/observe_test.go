package actors

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"urva/persistence"
	"urva/persistence/storetest"
)

// newObservedEnv is newEnv with the observation options set by obs.
func newObservedEnv(t *testing.T, store persistence.Store, prov *fakeProvider, tune func(*Tuning), obs func(*Options)) *env {
	t.Helper()
	e := &env{t: t, store: store, prov: prov}
	mk := func(name, role string) Principal {
		id, err := store.CreateRM(context.Background(), &persistence.RM{Username: name, Name: name, Role: role, PasswordHash: "x"})
		if err != nil {
			t.Fatal(err)
		}
		return Principal{RMID: id, Role: role}
	}
	e.rmA, e.rmB, e.sup = mk("rm-a", persistence.RoleRM), mk("rm-b", persistence.RoleRM), mk("sup", persistence.RoleSupervisor)
	tuning := testTuning()
	if tune != nil {
		tune(&tuning)
	}
	o := Options{
		Store:           store,
		Providers:       map[string]ProviderClient{persistence.ChannelWhatsApp: prov},
		BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: business},
		Tuning:          tuning,
		Log:             zerolog.Nop(),
	}
	obs(&o)
	sys, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	e.sys = sys
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	return e
}

type observedSend struct{ channel, result string }

// Each send attempt's result reaches OnSend: a retried failure, then
// success; a refusal for good.
func TestOnSendResults(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		results := make(chan observedSend, 100)
		prov := newFakeProvider(
			&SendError{Code: "131000", Title: "try again", Retry: true},
			nil,
			&SendError{Code: "131026", Title: "undeliverable"},
		)
		e := newObservedEnv(t, store, prov, nil, func(o *Options) {
			o.OnSend = func(channel, result string) { results <- observedSend{channel, result} }
		})
		conn, _ := e.connect(e.rmA, nil)
		e.ingest(inbound("+919811100071", "wamid.OBS1", "hello"))
		conv := conn.next(t).ConversationID
		next := func() observedSend {
			t.Helper()
			select {
			case r := <-results:
				return r
			case <-time.After(wait):
				t.Fatal("no send result")
			}
			return observedSend{}
		}
		for i, want := range [][]observedSend{
			{{"whatsapp", SendRetry}, {"whatsapp", SendSent}},
			{{"whatsapp", SendFailed}},
		} {
			if _, err := e.sys.Send(context.Background(), e.rmA, conv, SendRequest{ClientMsgID: fmt.Sprint("obs-", i), Text: "hi"}); err != nil {
				t.Fatal(err)
			}
			for _, w := range want {
				if got := next(); got != w {
					t.Fatalf("send %d: result %+v, want %+v", i, got, w)
				}
			}
		}
	})
}

// A socket cut as too slow is reported once, as an RM socket.
func TestOnSlowClient(t *testing.T) {
	store := storetest.OpenSQLite(t)
	slow := make(chan string, 100)
	e := newObservedEnv(t, store, newFakeProvider(), func(tu *Tuning) { tu.SessionQueue = 2 }, func(o *Options) {
		o.OnSlowClient = func(socket string) { slow <- socket }
	})
	c := &stuckConn{block: make(chan struct{}), closed: make(chan string, 1), writing: make(chan struct{}, 1)}
	s := e.sys.Connect(e.rmA, c)
	t.Cleanup(s.Close)
	s.Receive([]byte(`{"type":"ping"}`))
	<-c.writing
	for i := range 10 {
		e.ingest(inbound("+919811100072", fmt.Sprintf("wamid.OBSSLOW%d", i), "x"))
	}
	select {
	case reason := <-c.closed:
		if !strings.Contains(reason, "slow consumer") {
			t.Fatalf("reason %q", reason)
		}
	case <-time.After(wait):
		t.Fatal("slow socket was not cut")
	}
	// The hook ran before the socket was closed.
	select {
	case socket := <-slow:
		if socket != SocketRM {
			t.Fatalf("slow client on socket %q", socket)
		}
	default:
		t.Fatal("OnSlowClient not called")
	}
	if n := len(slow); n != 0 {
		t.Fatalf("OnSlowClient called %d more times", n)
	}
}

// With a meter provider, Proto.Actor's instruments record through it.
func TestMeterProvider(t *testing.T) {
	store := storetest.OpenSQLite(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	e := newObservedEnv(t, store, newFakeProvider(), nil, func(o *Options) { o.MeterProvider = mp })
	e.connect(e.rmA, nil)
	for i := range 5 {
		e.ingest(inbound(fmt.Sprintf("+91981110008%d", i), fmt.Sprintf("wamid.OBSMP%d", i), "x"))
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			seen[m.Name] = true
		}
	}
	for _, name := range []string{"protoactor_actor_spawn_count", "protoactor_actor_message_receive_duration_seconds"} {
		if !seen[name] {
			t.Errorf("%s not recorded; got %v", name, seen)
		}
	}
}
