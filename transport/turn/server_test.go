package turn

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pturn "github.com/pion/turn/v2"
	"github.com/rs/zerolog"
)

const realm = "urva.test"

func TestCredentialsVector(t *testing.T) {
	now := time.Unix(1700000000, 0)
	u, p, exp := Credentials("s3cret", "rm-42", time.Hour, now)
	if u != "1700003600:rm-42" || !exp.Equal(time.Unix(1700003600, 0)) {
		t.Fatalf("username %q expires %v", u, exp)
	}
	m := hmac.New(sha1.New, []byte("s3cret"))
	m.Write([]byte("1700003600:rm-42"))
	if want := base64.StdEncoding.EncodeToString(m.Sum(nil)); p != want {
		t.Fatalf("password %q want %q", p, want)
	}
}

func start(t *testing.T, o Options) *Server {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	o.Realm = realm
	o.Log = zerolog.Nop()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func client(t *testing.T, s *Server, user, pass string) *pturn.Client {
	t.Helper()
	c, conn, err := dial(s, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	return c
}

// dial returns a listening TURN client of s over a UDP socket of its own.
func dial(s *Server, user, pass string) (*pturn.Client, net.PacketConn, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: s.Addr().String(),
		TURNServerAddr: s.Addr().String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          realm,
		RTO:            100 * time.Millisecond,
	})
	if err == nil {
		if err = c.Listen(); err != nil {
			c.Close()
		}
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return c, conn, nil
}

func echoPeer(t testing.TB) net.PacketConn {
	t.Helper()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = peer.WriteTo(buf[:n], from)
		}
	}()
	return peer
}

// allocate allocates a UDP relay for rm-1 on s, whose secret is "cur".
func allocate(t *testing.T, s *Server) (*pturn.Client, net.PacketConn) {
	t.Helper()
	u, p, _ := Credentials("cur", "rm-1", time.Hour, time.Now())
	c := client(t, s, u, p)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	return c, relay
}

func TestRelayEcho(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 3})
	_, relay := allocate(t, s)
	defer relay.Close()
	peer := echoPeer(t)
	for i := 0; i < 20; i++ {
		echo(t, relay, peer.LocalAddr(), byte(i))
	}
	st := s.Stats()
	if st.Allocations != 1 || st.AllocationsTotal != 1 || st.RelayedBytes < 100 {
		t.Fatalf("stats %+v", st)
	}
}

// echo sends one packet to peer through relay and reads it back.
func echo(t *testing.T, relay net.PacketConn, peer net.Addr, i byte) {
	t.Helper()
	if err := echoBytes(relay, peer, []byte{i, 'p', 'i', 'n', 'g'}); err != nil {
		t.Fatalf("packet %d: %v", i, err)
	}
}

// echoBytes sends msg to peer through relay and reads it back.
func echoBytes(relay net.PacketConn, peer net.Addr, msg []byte) error {
	if _, err := relay.WriteTo(msg, peer); err != nil {
		return err
	}
	buf := make([]byte, 1500)
	_ = relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := relay.ReadFrom(buf)
	if err != nil {
		return err
	}
	if !bytes.Equal(buf[:n], msg) {
		return fmt.Errorf("got %q, want %q", buf[:n], msg)
	}
	return nil
}

func TestRefused(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}})
	now := time.Now()
	cases := map[string][2]string{}
	u, p, _ := Credentials("cur", "rm-1", -time.Minute, now)
	cases["expired"] = [2]string{u, p}
	u, p, _ = Credentials("wrong", "rm-1", time.Hour, now)
	cases["wrong secret"] = [2]string{u, p}
	cases["not numeric"] = [2]string{"abc:rm-1", computePassword("cur", "abc:rm-1")}
	for name, cr := range cases {
		c := client(t, s, cr[0], cr[1])
		if relay, err := c.Allocate(); err == nil {
			_ = relay.Close()
			t.Fatalf("%s: allocation accepted", name)
		}
	}
	// Each kind counts, the wrong secret too (with a single secret as well).
	if n := s.Stats().AuthFailures; n < int64(len(cases)) {
		t.Fatalf("%d auth failures counted, want at least %d", n, len(cases))
	}
}

func TestRotation(t *testing.T) {
	s := start(t, Options{Secrets: []string{"new", "old"}})
	for _, secret := range []string{"new", "old"} {
		u, p, _ := Credentials(secret, "rm-1", time.Hour, time.Now())
		relay, err := client(t, s, u, p).Allocate()
		if err != nil {
			t.Fatalf("secret %s: %v", secret, err)
		}
		_ = relay.Close()
	}
	u, p, _ := Credentials("other", "rm-1", time.Hour, time.Now())
	if relay, err := client(t, s, u, p).Allocate(); err == nil {
		_ = relay.Close()
		t.Fatal("unknown secret accepted")
	}
}

func TestQuota(t *testing.T) {
	const n = 2
	s := start(t, Options{Secrets: []string{"cur"}, MaxAllocationsPerUser: n})
	u, p, _ := Credentials("cur", "rm-1", time.Hour, time.Now())
	var relays []net.PacketConn
	for i := 0; i < n; i++ {
		r, err := client(t, s, u, p).Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		relays = append(relays, r)
	}
	if r, err := client(t, s, u, p).Allocate(); err == nil {
		_ = r.Close()
		t.Fatal("allocation over quota accepted")
	}
	// Another user is not affected.
	u2, p2, _ := Credentials("cur", "rm-2", time.Hour, time.Now())
	r2, err := client(t, s, u2, p2).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	_ = r2.Close()
	// Releasing an allocation frees a slot.
	if err := relays[0].Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		r, err := client(t, s, u, p).Allocate()
		if err == nil {
			_ = r.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not released: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.Stats().AllocationsRefused == 0 {
		t.Fatal("refusal not counted")
	}
}

func TestRelayEchoOverTCP(t *testing.T) {
	s := start(t, Options{Secrets: []string{"cur"}})
	u, p, _ := Credentials("cur", "rm-tcp", time.Hour, time.Now())
	tcp, err := net.Dial("tcp", s.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := pturn.NewSTUNConn(tcp)
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: s.TCPAddr().String(),
		TURNServerAddr: s.TCPAddr().String(),
		Conn:           conn,
		Username:       u,
		Password:       p,
		Realm:          realm,
		RTO:            100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); _ = conn.Close() })
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	peer := echoPeer(t)
	for i := 0; i < 10; i++ {
		echo(t, relay, peer.LocalAddr(), byte(i))
	}
}

func TestRelayPortRange(t *testing.T) {
	// A range of free ports: ask the kernel for one and use it and the next few.
	probe, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lo := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
	_ = probe.Close()
	s := start(t, Options{Secrets: []string{"cur"}, RelayPorts: PortRange{Min: lo, Max: lo + 3}})
	u, p, _ := Credentials("cur", "rm-range", time.Hour, time.Now())
	for i := 0; i < 2; i++ {
		relay, err := client(t, s, u, p).Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		port := uint16(relay.LocalAddr().(*net.UDPAddr).Port)
		if port < lo || port > lo+3 {
			t.Fatalf("relay port %d outside %d-%d", port, lo, lo+3)
		}
	}
	if _, err := Start(Options{Listen: "127.0.0.1:0", Secrets: []string{"x"}, RelayPorts: PortRange{Min: 10, Max: 5}}); err == nil {
		t.Fatal("an empty port range was accepted")
	}
}

// A second server on a port another holds is refused, rather than sharing
// it (the UDP sockets use SO_REUSEPORT among themselves), and servers
// asking for port 0 each get a port of their own.
func TestPortNotShared(t *testing.T) {
	a := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 4})
	port := a.TCPAddr().(*net.TCPAddr).Port
	if got := a.Addr().(*net.UDPAddr).Port; got != port {
		t.Fatalf("udp port %d, tcp port %d", got, port)
	}
	b, err := Start(Options{Listen: net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), Realm: realm, Secrets: []string{"cur"}, UDPListeners: 4, Log: zerolog.Nop()})
	if err == nil {
		_ = b.Close()
		t.Fatalf("a second server bound port %d", port)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second server: %v, want address in use", err)
	}
	seen := map[int]bool{port: true}
	for range 20 {
		s := start(t, Options{Secrets: []string{"cur"}, UDPListeners: 4})
		p := s.Addr().(*net.UDPAddr).Port
		if seen[p] {
			t.Fatalf("port %d given to two servers", p)
		}
		seen[p] = true
	}
}

// TestListenerBuffers: every UDP listening socket, on the relay loop or on
// pion's goroutines, asks for listenerBuffer, which the kernel grants up to
// net.core.rmem_max and reports doubled.
func TestListenerBuffers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel's accounting of socket buffers is Linux's")
	}
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skipf("net.core.rmem_max unreadable: %v", err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := 2 * min(listenerBuffer, rmemMax)
	for _, goroutines := range []bool{false, true} {
		s := start(t, Options{Secrets: []string{"s"}, UDPListeners: 2, GoroutineRelay: goroutines})
		if got := s.UDPReceiveBuffer(); got != want {
			t.Errorf("goroutine relay %v: receive buffer %d, want %d (2 x min(%d, rmem_max %d))", goroutines, got, want, listenerBuffer, rmemMax)
		}
	}
}

// TestBufferCapped: Linux reports the buffer it grants doubled, so a
// grant of exactly what was asked reads as twice listenerBuffer there.
func TestBufferCapped(t *testing.T) {
	for _, c := range []struct {
		goos     string
		reported int
		capped   bool
	}{
		{"linux", 2 * listenerBuffer, false},
		{"linux", listenerBuffer, true}, // rmem_max at half of what was asked
		{"linux", 425984, true},         // the kernel's default cap, 212,992
		{"darwin", listenerBuffer, false},
		{"darwin", listenerBuffer / 2, true},
	} {
		if got := bufferCapped(c.goos, c.reported); got != c.capped {
			t.Errorf("bufferCapped(%s, %d) = %v, want %v", c.goos, c.reported, got, c.capped)
		}
	}
}
