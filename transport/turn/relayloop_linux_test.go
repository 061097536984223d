package turn

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	pturn "github.com/pion/turn/v2"
	"github.com/rs/zerolog"
)

// echoUntilLoop sends through relay to the echo peer until the relay loop
// has relayed both ways (pion's client binds its channel after the first
// packets, which go as Send indications) and returns the loop's count.
func echoUntilLoop(t *testing.T, s *Server, relay net.PacketConn, peer net.Addr) int64 {
	t.Helper()
	for i := 0; i < 200; i++ {
		echo(t, relay, peer, byte(i))
		if n := s.Stats().LoopPackets; n >= 2 {
			return n
		}
	}
	t.Fatalf("the relay loop relayed nothing in 200 round trips: %+v", s.Stats())
	return 0
}

// loopAllocs returns the relay loop's allocations over every listening socket.
func loopAllocs(s *Server) []*loopAlloc {
	var out []*loopAlloc
	for _, u := range s.udp {
		u.loop.amu.RLock()
		for _, a := range u.loop.allocs {
			out = append(out, a)
		}
		u.loop.amu.RUnlock()
	}
	return out
}

// TestRelayLoopLeavesExpiredBindingToPion: once the loop's copy of a binding
// has expired, ChannelData still flows, relayed by pion, which holds the
// binding a margin longer.
func TestRelayLoopLeavesExpiredBindingToPion(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 2})
	if len(s.loops) == 0 {
		t.Fatal("no relay loop")
	}
	_, relay := allocate(t, s)
	defer relay.Close()
	peer := echoPeer(t)
	echoUntilLoop(t, s, relay, peer.LocalAddr())

	allocs := loopAllocs(s)
	if len(allocs) != 1 {
		t.Fatalf("%d allocations in the loop, want 1", len(allocs))
	}
	tbl := allocs[0].binds.cur.Load()
	if tbl == nil || len(tbl.byNumber) != 1 {
		t.Fatalf("bindings %+v", tbl)
	}
	for _, bp := range tbl.byNumber {
		if left := time.Until(bp.expires); left > channelBindLifetime-bindMargin || left < channelBindLifetime-bindMargin-time.Minute {
			t.Fatalf("binding expires in %v", left)
		}
		allocs[0].binds.bind(channelBind{bp.number, bp.peer}, time.Now().Add(-time.Second))
	}

	before := s.Stats().LoopPackets
	for i := 0; i < 5; i++ {
		echo(t, relay, peer.LocalAddr(), byte(100+i))
	}
	if after := s.Stats().LoopPackets; after != before {
		t.Fatalf("the loop relayed %d packets on an expired binding", after-before)
	}
}

// TestRelayLoopForgetsClosedAllocation: an allocation pion deletes (the
// client's Refresh with lifetime 0) leaves the loop with its relay socket.
func TestRelayLoopForgetsClosedAllocation(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 3})
	c, relay := allocate(t, s)
	peer := echoPeer(t)
	echoUntilLoop(t, s, relay, peer.LocalAddr())
	relayAddr := relay.LocalAddr()
	if len(loopAllocs(s)) != 1 {
		t.Fatal("the allocation is not in the loop")
	}
	if err := relay.Close(); err != nil { // Refresh, lifetime 0, not waited for
		t.Fatal(err)
	}
	// pion handles one socket's requests in order, and the same client's
	// come in on the same socket: once a Binding request is answered, the
	// Refresh before it has been handled.
	if _, err := c.SendBindingRequest(); err != nil {
		t.Fatal(err)
	}
	if n := len(loopAllocs(s)); n != 0 {
		t.Fatalf("%d allocations left in the loop", n)
	}
	socks := 0
	for _, l := range s.loops {
		l.mu.RLock()
		socks += len(l.socks)
		l.mu.RUnlock()
	}
	if socks != len(s.udp) {
		t.Fatalf("%d sockets in the loops, want the %d listening ones", socks, len(s.udp))
	}
	if st := s.Stats(); st.Allocations != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The relay port is free again.
	ua := relayAddr.(*net.UDPAddr)
	pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", itoa(ua.Port)))
	if err != nil {
		t.Fatalf("relay port still held: %v", err)
	}
	_ = pc.Close()
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestRelayLoopStopsWithServer: Close ends every loop.
func TestRelayLoopStopsWithServer(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 2})
	loops := append([]*relayLoop(nil), s.loops...)
	if len(loops) == 0 {
		t.Fatal("no relay loop")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, l := range loops {
		select {
		case <-l.done:
		default:
			t.Fatal("a relay loop still runs after Close")
		}
	}
}

func TestLoopSockErrors(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 1})
	l := s.loops[0]
	sk, err := l.open("127.0.0.1", 0, false, 1, &loopAlloc{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sk.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); err == nil {
		t.Error("a TCP address written to")
	}
	if _, err := sk.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 9}); err == nil {
		t.Error("an IPv6 address written to from an IPv4 socket")
	}
	if _, err := sk.WriteTo([]byte("x"), &net.UDPAddr{}); err == nil {
		t.Error("an empty address written to")
	}
	if err := sk.SetReadDeadline(time.Now()); err == nil {
		t.Error("a deadline accepted")
	}
	if _, err := l.open("2001:db8::1", 0, false, 1, &loopAlloc{}); err == nil {
		t.Error("an IPv6 relay socket opened")
	}
	if _, err := l.open("not-an-ip", 0, false, 1, &loopAlloc{}); err == nil {
		t.Error("a relay socket opened on a name")
	}
	_ = sk.Close()
	if _, err := sk.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	if _, _, err := sk.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if err := sk.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// TestRelayLoopConcurrentAllocations: clients allocating, relaying and
// closing at once, on several listening sockets sharing a loop, each get
// their own packets back, and the loop ends with no allocation and only the
// listening sockets (run with -race: the loop reads what pion's goroutines
// write).
func TestRelayLoopConcurrentAllocations(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 4})
	peer := echoPeer(t)
	const clients, rounds, packets = 8, 3, 30
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		go func() { errs <- relayRounds(s, peer.LocalAddr(), c, rounds, packets) }()
	}
	for c := 0; c < clients; c++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st := s.Stats()
	if st.LoopPackets == 0 || st.Dropped != 0 || st.AllocationsTotal != clients*rounds || st.Allocations != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := len(loopAllocs(s)); n != 0 {
		t.Fatalf("%d allocations left in the loop", n)
	}
}

// relayRounds allocates, relays packets to peer and back and deletes the
// allocation, rounds times, as client c.
func relayRounds(s *Server, peer net.Addr, c, rounds, packets int) error {
	u, p, _ := Credentials("cur", fmt.Sprintf("rm-%d", c), time.Hour, time.Now())
	for r := 0; r < rounds; r++ {
		cl, conn, err := dial(s, u, p)
		if err != nil {
			return err
		}
		relay, err := cl.Allocate()
		if err == nil {
			for i := 0; i < packets && err == nil; i++ {
				if err = echoBytes(relay, peer, []byte{byte(c), byte(r), byte(i)}); err != nil {
					err = fmt.Errorf("client %d round %d packet %d: %w", c, r, i, err)
				}
			}
			_ = relay.Close()
			if err == nil {
				_, err = cl.SendBindingRequest() // the Refresh before it is handled
			}
		}
		cl.Close()
		_ = conn.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkRelayRoundTrip: one packet to an echo peer and back through a
// UDP allocation, one at a time, with the relay loop and with pion's
// goroutines relaying. The client, the peer and the server share the
// process; the load suite's TURN scenario measures the server's CPU apart.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, v := range []struct {
		name       string
		goroutines bool
	}{{"loop", false}, {"goroutines", true}} {
		b.Run(v.name, func(b *testing.B) {
			s, err := Start(Options{Listen: "127.0.0.1:0", Realm: realm, Secrets: []string{"cur"},
				GoroutineRelay: v.goroutines, Log: zerolog.Nop()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			u, p, _ := Credentials("cur", "rm-bench", time.Hour, time.Now())
			c, conn, err := dial(s, u, p)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			defer c.Close()
			relay, err := c.Allocate()
			if err != nil {
				b.Fatal(err)
			}
			defer relay.Close()
			peer := echoPeer(b)
			msg := make([]byte, 120)
			// Until the channel is bound, pion's client sends Send indications.
			for i := 0; i < 50; i++ {
				if err := echoBytes(relay, peer.LocalAddr(), msg); err != nil {
					b.Fatal(err)
				}
			}
			before := s.Stats().LoopPackets
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := echoBytes(relay, peer.LocalAddr(), msg); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(s.Stats().LoopPackets-before)/float64(b.N), "loop-packets/op")
		})
	}
}

// TestRelayLoopOnWildcardListener: a server listening on 0.0.0.0 (the
// loop's listening socket is then IPv6 and takes IPv4 clients as
// IPv4-mapped addresses) relays an IPv4 client's ChannelData through the
// loop, both ways.
func TestRelayLoopOnWildcardListener(t *testing.T) {
	s, err := Start(Options{Listen: "0.0.0.0:0", PublicIP: "127.0.0.1", Realm: realm, Secrets: []string{"cur"}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.loops) == 0 {
		t.Fatal("no relay loop")
	}
	if pc, err := net.ListenPacket("udp6", "[::]:0"); err == nil {
		_ = pc.Close()
		if s.udp[0].loop.v4 {
			t.Fatal("the listening socket is IPv4 on a machine with IPv6: want the dual-stack one")
		}
	}
	port := s.Addr().(*net.UDPAddr).Port
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	u, p, _ := Credentials("cur", "rm-1", time.Hour, time.Now())
	c, err := pturn.NewClient(&pturn.ClientConfig{STUNServerAddr: server, TURNServerAddr: server, Conn: conn,
		Username: u, Password: p, Realm: realm, RTO: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	if ra := relay.LocalAddr().(*net.UDPAddr); !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("relay address %v, want the public IP", ra)
	}
	peer := echoPeer(t)
	echoUntilLoop(t, s, relay, peer.LocalAddr())
	if st := s.Stats(); st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}
