package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The relay loop: a goroutine that waits in epoll_wait on UDP listening
// sockets and on the relay sockets of their allocations, and relays
// ChannelData itself, both ways, with one recvfrom and one sendto a packet.
//
// pion/turn reads each relay socket with a goroutine of its own and the
// listening socket with another, through the runtime's poller: at a few
// thousand packets a second nearly every packet wakes a parked goroutine,
// the read that woke it first finds nothing, and the scheduler wakes a
// second thread to look for work. Here epoll_wait is a blocking system
// call: the loop's thread sleeps in it and wakes to the packet, with its P
// still at hand (Server.listenUDP keeps a P idle for that). pion stays the
// authority: it
// authenticates, allocates, grants permissions and binds channels. The loop
// only relays ChannelData on a binding pion has confirmed (bindings in
// chanbind.go), and hands every other packet to pion as it arrives: STUN
// requests, Send and Data indications, ChannelData it cannot place.
//
// The loop's sockets are not in the runtime's poller (they are raw file
// descriptors), so a packet wakes only the loop.

// loopMTU is the largest packet read, as pion's: a packet of this size or
// more from a client is dropped (possibly truncated), one from a peer is
// read truncated to it.
const loopMTU = 1600

// yieldEvery is how often the loop passes through the scheduler (run).
const yieldEvery = 2 * time.Millisecond

// listenerQueue and relayQueue are how many packets a socket holds for
// pion before dropping.
const (
	listenerQueue = 1024
	relayQueue    = 256
)

// relayLoop serves listening sockets and their allocations' relay sockets.
type relayLoop struct {
	s       *Server
	epfd    int
	wake    int // eventfd: Close writes it to stop the loop
	mu      sync.RWMutex
	socks   map[uint32]*loopSock // by epoll id; 0 is the wake fd
	next    uint32
	stopped bool // epfd is closed
	done    chan struct{}
}

// loopSock is one UDP socket the loop reads: a listening socket or a relay
// socket. It is the net.PacketConn pion is given; ReadFrom returns what the
// loop left to pion.
type loopSock struct {
	loop  *relayLoop
	id    uint32
	local *net.UDPAddr
	v4    bool // an AF_INET socket; otherwise AF_INET6

	mu     sync.RWMutex // held for reading around each system call on fd; Close takes it to close fd
	fd     int
	closed bool

	slow      chan datagram
	done      chan struct{}
	closeOnce sync.Once

	// A listening socket's allocations by client address.
	amu    sync.RWMutex
	allocs map[netip.AddrPort]*loopAlloc
	// A relay socket's allocation.
	alloc *loopAlloc
}

// loopAlloc is the loop's view of one UDP allocation.
type loopAlloc struct {
	client   netip.AddrPort // unmapped
	listener *loopSock
	relay    *loopSock
	binds    bindings
}

type datagram struct {
	b    []byte
	from *net.UDPAddr
}

var errLoopClosed = errors.New("turn: relay loop closed")

// newRelayLoop starts a loop with no sockets.
func newRelayLoop(s *Server) (*relayLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("turn: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("turn: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: 0}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil, fmt.Errorf("turn: epoll: %w", err)
	}
	l := &relayLoop{s: s, epfd: epfd, wake: wake, socks: map[uint32]*loopSock{}, done: make(chan struct{})}
	go l.run()
	return l, nil
}

// stop ends the loop and waits for it. The listening sockets are closed
// before; relay sockets still open (pion closes its allocations once its
// read loops have ended) serve pion's reads and writes without the loop
// until then.
func (l *relayLoop) stop() {
	var one = [8]byte{1}
	_, _ = unix.Write(l.wake, one[:])
	<-l.done
}

func (l *relayLoop) run() {
	defer close(l.done)
	defer func() {
		// Sockets still open (pion closes its allocations after its read
		// loops end) no longer touch epfd once stopped is set.
		l.mu.Lock()
		l.stopped = true
		_ = unix.Close(l.epfd)
		_ = unix.Close(l.wake)
		l.mu.Unlock()
	}()
	events := make([]unix.EpollEvent, 64)
	buf := make([]byte, 4+loopMTU+3) // room for a ChannelData header and padding
	var yielded time.Time
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			l.s.opts.Log.Error().Err(err).Msg("turn: relay loop stopped")
			return
		}
		now := time.Now()
		if now.Sub(yielded) > yieldEvery {
			// The runtime's monitor takes a goroutine that has not been
			// through the scheduler for 10 ms for a long-running one: it
			// interrupts it and takes its P at the next wait, and then
			// polls every 20 µs for a while, a wake-up of its thread each
			// time. Passing through the scheduler now and then keeps it
			// asleep: 464 of its sleeps in 8 s of a relay run instead of
			// 7,957.
			runtime.Gosched()
			yielded = now
		}
		for _, ev := range events[:n] {
			id := uint32(ev.Fd)
			if id == 0 {
				return
			}
			l.mu.RLock()
			sk := l.socks[id]
			l.mu.RUnlock()
			if sk == nil {
				continue // closed since epoll_wait returned
			}
			if sk.alloc != nil {
				sk.serveRelay(buf, now)
			} else {
				sk.serveListener(buf, now)
			}
		}
	}
}

// open creates a non-blocking UDP socket bound to host:port, registered
// with the loop. A listening socket (listen) shares its port with the
// others (SO_REUSEPORT) and on a wildcard host takes IPv6 and IPv4; a relay
// socket is IPv4, as pion asks ("udp4").
func (l *relayLoop) open(host string, port int, listen bool, queue int, alloc *loopAlloc) (*loopSock, error) {
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("turn: %q is not an IP address", host)
	}
	ip = ip.Unmap()
	family := unix.AF_INET6
	switch {
	case ip.Is4() && !ip.IsUnspecified():
		family = unix.AF_INET
	case !listen && ip.IsUnspecified():
		family, ip = unix.AF_INET, netip.IPv4Unspecified()
	case !listen:
		return nil, fmt.Errorf("turn: relay address %s is not IPv4", host)
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil && family == unix.AF_INET6 && ip.Is4() {
		family = unix.AF_INET // no IPv6: the IPv4 wildcard alone
		fd, err = unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	}
	if err != nil {
		return nil, fmt.Errorf("turn: socket: %w", err)
	}
	fail := func(err error) (*loopSock, error) {
		_ = unix.Close(fd)
		return nil, err
	}
	if listen {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fail(fmt.Errorf("turn: SO_REUSEADDR: %w", err))
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail(fmt.Errorf("turn: SO_REUSEPORT: %w", err))
		}
		if err := l.s.sizeBuffers(fd); err != nil {
			return fail(err)
		}
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: port, Addr: ip.As4()}
	} else {
		// The IPv6 wildcard also takes IPv4 (IPv4-mapped), as the standard
		// library's "udp" listeners do for 0.0.0.0 and ::.
		if ip.IsUnspecified() {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
				return fail(fmt.Errorf("turn: IPV6_V6ONLY: %w", err))
			}
			ip = netip.IPv6Unspecified()
		}
		sa = &unix.SockaddrInet6{Port: port, Addr: ip.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fail(&net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))), Err: err})
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		return fail(fmt.Errorf("turn: getsockname: %w", err))
	}
	sk := &loopSock{loop: l, fd: fd, v4: family == unix.AF_INET, slow: make(chan datagram, queue), done: make(chan struct{}), alloc: alloc}
	if listen {
		sk.allocs = map[netip.AddrPort]*loopAlloc{}
	}
	switch a := bound.(type) {
	case *unix.SockaddrInet4:
		sk.local = &net.UDPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
	case *unix.SockaddrInet6:
		sk.local = &net.UDPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return fail(errLoopClosed)
	}
	l.next++
	if l.next == 0 {
		l.next++
	}
	sk.id = l.next
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(sk.id)}); err != nil {
		return fail(fmt.Errorf("turn: epoll: %w", err))
	}
	l.socks[sk.id] = sk
	return sk, nil
}

// openListener opens a listening socket on host:port (SO_REUSEPORT).
func (l *relayLoop) openListener(host string, port int) (*loopSock, error) {
	return l.open(host, port, true, listenerQueue, nil)
}

// openRelay opens the relay socket of a new allocation of client on
// listener: on port when it is not 0, else in ports when set, else on any
// port.
func (l *relayLoop) openRelay(listener *loopSock, client netip.AddrPort, host string, port int, ports PortRange) (*loopSock, error) {
	// Keys are unmapped and unzoned, as recvfrom's addresses are read.
	client = netip.AddrPortFrom(client.Addr().Unmap().WithZone(""), client.Port())
	a := &loopAlloc{client: client, listener: listener}
	var (
		sk  *loopSock
		err error
	)
	switch {
	case port != 0 || ports.Min == 0:
		sk, err = l.open(host, port, false, relayQueue, a)
	default:
		// A random port of the range, as pion's port-range generator.
		for try := 0; try < 64; try++ {
			p := int(ports.Min) + rand.IntN(int(ports.Max)-int(ports.Min)+1)
			if sk, err = l.open(host, p, false, relayQueue, a); err == nil {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	a.relay = sk
	listener.amu.Lock()
	listener.allocs[a.client] = a
	listener.amu.Unlock()
	return sk, nil
}

// allocFor returns the allocation of client on this listening socket.
func (sk *loopSock) allocFor(client netip.AddrPort) *loopAlloc {
	sk.amu.RLock()
	a := sk.allocs[client]
	sk.amu.RUnlock()
	return a
}

// serveListener reads one packet from a client: ChannelData on a binding it
// knows goes to the peer, anything else to pion.
func (sk *loopSock) serveListener(buf []byte, now time.Time) {
	n, from, ok := sk.recv(buf[:loopMTU])
	if !ok {
		return
	}
	if n >= loopMTU {
		return // possibly truncated: pion drops it too
	}
	b := buf[:n]
	if num, payload, isCD := channelData(b); isCD {
		if a := sk.allocFor(from); a != nil {
			if peer, bound := a.binds.peerOf(num, now); bound {
				// Counted before the send: whoever sees the packet arrive
				// sees it counted.
				sk.loop.s.loopPackets.Add(1)
				sk.loop.s.relayedBytes.Add(int64(len(payload)))
				a.relay.send(payload, peer)
				return
			}
		}
	}
	sk.toPion(b, from)
}

// serveRelay reads one packet from a peer: from a bound peer it goes to the
// client as ChannelData, anything else to pion.
func (sk *loopSock) serveRelay(buf []byte, now time.Time) {
	n, from, ok := sk.recv(buf[4 : 4+loopMTU])
	if !ok {
		return
	}
	a := sk.alloc
	num, bound := a.binds.numberOf(from, now)
	if !bound {
		sk.toPion(buf[4:4+n], from)
		return
	}
	sk.loop.s.relayedBytes.Add(int64(n))
	buf[0], buf[1], buf[2], buf[3] = byte(num>>8), byte(num), byte(n>>8), byte(n)
	end := 4 + n
	for end%4 != 0 { // padded to four bytes, as pion sends it
		buf[end] = 0
		end++
	}
	sk.loop.s.loopPackets.Add(1) // before the send, as in serveListener
	a.listener.send(buf[:end], a.client)
}

// toPion queues a copy of b for pion's read, dropping it when pion is that
// far behind.
func (sk *loopSock) toPion(b []byte, from netip.AddrPort) {
	d := datagram{b: append([]byte(nil), b...), from: net.UDPAddrFromAddrPort(from)}
	select {
	case sk.slow <- d:
	default:
		sk.loop.s.dropped.Add(1)
	}
}

// recv reads one packet without blocking; ok is false when there was none
// or the socket is closed.
func (sk *loopSock) recv(p []byte) (int, netip.AddrPort, bool) {
	var from unix.RawSockaddrAny
	sk.mu.RLock()
	if sk.closed {
		sk.mu.RUnlock()
		return 0, netip.AddrPort{}, false
	}
	var (
		r uintptr
		e syscall.Errno
	)
	for {
		fromLen := uint32(unix.SizeofSockaddrAny)
		r, _, e = unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(sk.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
			0, uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fromLen)))
		if e != unix.EINTR {
			break
		}
	}
	sk.mu.RUnlock()
	if e != 0 {
		return 0, netip.AddrPort{}, false // EAGAIN (nothing after all) or an error: nothing to relay
	}
	ap, ok := addrPortOf(&from)
	return int(r), ap, ok
}

// send sends p to `to` without blocking. A full send buffer drops the
// packet, as a router does; false when it was not sent.
func (sk *loopSock) send(p []byte, to netip.AddrPort) bool {
	var dst rawSockaddr
	sa, sl, ok := dst.set(sk.v4, to)
	if !ok {
		sk.loop.s.dropped.Add(1)
		return false
	}
	sk.mu.RLock()
	if sk.closed {
		sk.mu.RUnlock()
		return false
	}
	var e syscall.Errno
	for {
		_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, uintptr(sk.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), 0, uintptr(sa), sl)
		if e != unix.EINTR {
			break
		}
	}
	sk.mu.RUnlock()
	if e != 0 {
		sk.loop.s.dropped.Add(1)
		return false
	}
	return true
}

// addrPortOf is the unmapped address recvfrom filled in.
func addrPortOf(sa *unix.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(port(&in.Port))), true
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom16(in.Addr).Unmap(), uint16(port(&in.Port))), true
	}
	return netip.AddrPort{}, false
}

// ReadFrom returns the next packet the loop left to pion.
func (sk *loopSock) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-sk.slow:
		return copy(p, d.b), d.from, nil
	case <-sk.done:
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: sk.local, Err: net.ErrClosed}
	}
}

// WriteTo sends pion's packet: a STUN response, a Data indication, or data
// to a peer.
func (sk *loopSock) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: sk.local, Addr: addr, Err: syscall.EINVAL}
	}
	ap := ua.AddrPort()
	to := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !to.Addr().IsValid() || sk.v4 && !to.Addr().Is4() {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: sk.local, Addr: addr, Err: syscall.EAFNOSUPPORT}
	}
	select {
	case <-sk.done:
		return 0, &net.OpError{Op: "write", Net: "udp", Source: sk.local, Addr: addr, Err: net.ErrClosed}
	default:
	}
	if !sk.send(p, to) {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: sk.local, Addr: addr, Err: errSendDropped}
	}
	return len(p), nil
}

var errSendDropped = errors.New("packet not sent (send buffer full or socket closed)")

// Close deregisters the socket, closes it and ends ReadFrom. A relay
// socket's allocation leaves its listener first, so the loop stops
// relaying for it before the descriptor can be reused.
func (sk *loopSock) Close() error {
	sk.closeOnce.Do(func() {
		if a := sk.alloc; a != nil && a.listener != nil {
			a.listener.amu.Lock()
			if a.listener.allocs[a.client] == a {
				delete(a.listener.allocs, a.client)
			}
			a.listener.amu.Unlock()
		}
		l := sk.loop
		l.mu.Lock()
		delete(l.socks, sk.id)
		if !l.stopped {
			_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, sk.fd, nil)
		}
		l.mu.Unlock()
		sk.mu.Lock() // waits out a system call of the loop's on fd
		_ = unix.Close(sk.fd)
		sk.closed = true
		sk.mu.Unlock()
		close(sk.done)
	})
	return nil
}

func (sk *loopSock) LocalAddr() net.Addr { return sk.local }

var errNoDeadline = errors.New("turn: relay loop sockets have no deadlines")

func (sk *loopSock) SetDeadline(time.Time) error      { return errNoDeadline }
func (sk *loopSock) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (sk *loopSock) SetWriteDeadline(time.Time) error { return errNoDeadline }

// loopSupported reports that the relay loop runs on this system.
const loopSupported = true

var _ net.PacketConn = (*loopSock)(nil)
