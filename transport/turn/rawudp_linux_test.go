package turn

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func listenRaw(t *testing.T, network, addr string) *rawUDP {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	u, ok := newRawUDP(pc).(*rawUDP)
	if !ok {
		t.Fatalf("%T not wrapped", pc)
	}
	return u
}

// readWithin reads one packet from c, failing the test after a while.
func readWithin(t *testing.T, c net.PacketConn) ([]byte, net.Addr) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

// Packets go both ways between raw sockets, each read reporting the sender,
// and a read that finds nothing waits for the poller until a packet comes.
func TestRawUDPRoundTrip(t *testing.T) {
	a := listenRaw(t, "udp4", "127.0.0.1:0")
	b := listenRaw(t, "udp4", "127.0.0.1:0")

	type read struct {
		p    []byte
		from net.Addr
		err  error
	}
	got := make(chan read, 1)
	go func() {
		// Nothing is queued yet: the first recvfrom finds nothing.
		buf := make([]byte, 1500)
		n, from, err := b.ReadFrom(buf)
		got <- read{buf[:n], from, err}
	}()
	if n, err := a.WriteTo([]byte("channel data"), b.LocalAddr()); err != nil || n != 12 {
		t.Fatalf("write: %d %v", n, err)
	}
	var r read
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing read")
	}
	if r.err != nil || string(r.p) != "channel data" {
		t.Fatalf("read %q: %v", r.p, r.err)
	}
	f := r.from.(*net.UDPAddr)
	if !f.IP.Equal(net.IPv4(127, 0, 0, 1)) || f.Port != a.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("from %v, want %v", f, a.LocalAddr())
	}

	// The answer goes to the address the read reported.
	if _, err := b.WriteTo(bytes.Repeat([]byte{7}, 1200), f); err != nil {
		t.Fatal(err)
	}
	if p, f2 := readWithin(t, a); len(p) != 1200 || f2.String() != b.LocalAddr().String() {
		t.Fatalf("answer: %d bytes from %v", len(p), f2)
	}
}

// A socket listening on every address (dual-stack where the machine has
// IPv6) takes IPv4 clients: their address is reported as IPv4 and written
// back to as such.
func TestRawUDPWildcardSocketTakesIPv4(t *testing.T) {
	srv := listenRaw(t, "udp", ":0")
	client, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srv.LocalAddr().(*net.UDPAddr).Port}
	if _, err := client.WriteTo([]byte("allocate"), to); err != nil {
		t.Fatal(err)
	}
	p, f := readWithin(t, srv)
	fa := f.(*net.UDPAddr)
	if string(p) != "allocate" || fa.IP.To4() == nil || len(fa.IP) != net.IPv4len || fa.Port != client.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("read %q from %#v", p, fa)
	}
	if _, err := srv.WriteTo([]byte("allocated"), f); err != nil {
		t.Fatal(err)
	}
	if p, _ := readWithin(t, client); string(p) != "allocated" {
		t.Fatalf("client read %q", p)
	}
}

// Deadlines, closing and addresses the socket cannot take behave as with
// the standard library's socket.
func TestRawUDPErrors(t *testing.T) {
	u := listenRaw(t, "udp4", "127.0.0.1:0")

	if err := u.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
	// A read that finds nothing waits for the poller, here until its
	// deadline, rather than returning recvfrom's EAGAIN.
	if err := u.SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nothing to read: %v", err)
	}
	if _, err := u.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 3478}); err == nil {
		t.Fatal("IPv6 address on an IPv4 socket accepted")
	}
	if _, err := u.WriteTo([]byte("x"), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}); err == nil {
		t.Fatal("TCP address accepted")
	}
	if _, err := u.WriteTo([]byte("x"), &net.UDPAddr{}); err == nil {
		t.Fatal("empty address accepted")
	}

	done := make(chan error, 1)
	if err := u.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _, err := u.ReadFrom(make([]byte, 10))
		done <- err
	}()
	_ = u.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read not ended by close")
	}
	if _, err := u.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}
