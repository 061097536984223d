package turn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pturn "github.com/pion/turn/v2"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Options configures the built-in TURN server.
type Options struct {
	// Listen is host:port for both UDP and TCP.
	Listen string
	// PublicIP is the relay address announced to clients; default the listen host.
	PublicIP string
	// Realm is the TURN realm.
	Realm string
	// Secrets are the shared auth secrets: the current one first, then
	// previous ones still accepted during a rotation.
	Secrets []string
	// MaxAllocationsPerUser limits live allocations per user id (the part of
	// the username after ':'); 0 means unlimited.
	MaxAllocationsPerUser int
	// UDPListeners is the number of UDP sockets bound to the listen port with
	// SO_REUSEPORT, each with its own read loop; default 1.
	UDPListeners int
	// RelayPorts, when Min > 0, is the UDP port range relay sockets are
	// opened in (a firewall then opens just that range); default any port
	// the kernel gives.
	RelayPorts PortRange
	// GoroutineRelay relays through pion's own read loops, a goroutine per
	// socket, instead of the relay loop (relayloop_linux.go); the loop runs
	// on Linux only, so elsewhere this is always the case.
	GoroutineRelay bool
	// Log receives the server's log lines.
	Log zerolog.Logger
	// Clock returns the current time; default time.Now.
	Clock func() time.Time
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Min, Max uint16 }

// Stats is a snapshot of the server's counters.
type Stats struct {
	// Allocations is the number of live allocations.
	Allocations int64
	// AllocationsTotal is the number of allocations created since start.
	AllocationsTotal int64
	// AllocationsRefused counts allocations refused by the per-user quota.
	AllocationsRefused int64
	// AuthFailures counts refused credentials (malformed, expired, bad HMAC).
	AuthFailures int64
	// RelayedBytes is the number of bytes sent and received on relay sockets.
	RelayedBytes int64
	// Dropped counts packets the relay loop dropped: a send buffer full, or
	// pion too far behind to take a packet left to it.
	Dropped int64
	// LoopPackets counts the ChannelData packets the relay loop took
	// itself, both ways (a send that failed is also in Dropped); pion
	// relayed the rest.
	LoopPackets int64
}

// Server is a running TURN server.
type Server struct {
	opts   Options
	srv    *pturn.Server
	udp    []*udpConn
	loops  []*relayLoop // with the relay loop: the UDP sockets take turns on them
	tcp    *tcpListener
	relay  net.IP
	host   string
	closed sync.Once

	mu      sync.Mutex
	pending map[string]string // UDP source address -> user, for the request in flight
	perUser map[string]int    // user -> live allocations (UDP relays and authenticated TCP connections)
	tcpUser map[string]string // TCP source address -> user, once counted
	lastMsg map[string][]byte // source address -> STUN request in flight

	allocsTotal  atomic.Int64
	allocsLive   atomic.Int64
	refused      atomic.Int64
	authFailures atomic.Int64
	relayedBytes atomic.Int64
	dropped      atomic.Int64
	loopPackets  atomic.Int64
	// rcvBuf is the smallest receive buffer a UDP listening socket got
	// (bytes, as the kernel reports it); 0 when not known.
	rcvBuf atomic.Int64
}

// listenerBuffer is the receive and send buffer each UDP listening socket
// asks for. Every client's packets arrive on the listening sockets, so when
// the relay falls behind for a few milliseconds (its thread descheduled on
// a busy machine) the packets must wait there: the kernel's default
// (212,992 bytes, about 270 small datagrams with the kernel's overhead of
// each) fills in under 3 ms at 100,000 packets a second, and every packet
// that finds it full is lost. The kernel caps the size at
// net.core.rmem_max (wmem_max for sending) and reports twice what it
// grants; Start logs the size obtained, and warns when the cap left it
// under what was asked. coturn asks its listening sockets for 2 MiB the
// same way.
const listenerBuffer = 4 << 20

// sizeBuffers asks listenerBuffer for the receive and send buffers of the
// UDP socket fd and records the receive buffer obtained.
func (s *Server) sizeBuffers(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, listenerBuffer); err != nil {
		return fmt.Errorf("turn: SO_RCVBUF: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, listenerBuffer); err != nil {
		return fmt.Errorf("turn: SO_SNDBUF: %w", err)
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return fmt.Errorf("turn: SO_RCVBUF: %w", err)
	}
	for {
		old := s.rcvBuf.Load()
		if old != 0 && old <= int64(got) || s.rcvBuf.CompareAndSwap(old, int64(got)) {
			return nil
		}
	}
}

// bufferCapped reports whether a receive buffer the kernel of goos
// reported is less than listenerBuffer granted: Linux reports twice what it
// grants, the BSDs and macOS what they grant.
func bufferCapped(goos string, reported int) bool {
	if goos == "linux" {
		reported /= 2
	}
	return reported < listenerBuffer
}

// UDPReceiveBuffer is the smallest receive buffer, in bytes as the kernel
// reports it, that a UDP listening socket obtained.
func (s *Server) UDPReceiveBuffer() int { return int(s.rcvBuf.Load()) }

var errQuota = errors.New("turn: allocation quota exceeded")

// Start binds the UDP and TCP listeners and starts serving.
func Start(o Options) (*Server, error) {
	if len(o.Secrets) == 0 {
		return nil, errors.New("turn: no auth secret")
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.UDPListeners <= 0 {
		o.UDPListeners = 1
	}
	if r := o.RelayPorts; r.Min > 0 && r.Max < r.Min || r.Min == 0 && r.Max > 0 {
		return nil, fmt.Errorf("turn: relay port range %d-%d", r.Min, r.Max)
	}
	host, port, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("turn: listen address: %w", err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	pub := o.PublicIP
	if pub == "" {
		pub = host
	}
	relayIP := net.ParseIP(pub)
	if relayIP == nil {
		return nil, fmt.Errorf("turn: public ip %q is not an IP address", pub)
	}
	s := &Server{
		opts:    o,
		relay:   relayIP,
		host:    host,
		pending: map[string]string{},
		perUser: map[string]int{},
		tcpUser: map[string]string{},
		lastMsg: map[string][]byte{},
	}

	lc := net.ListenConfig{Control: reusePort}
	ctx := context.Background()
	cfg := pturn.ServerConfig{
		Realm:              o.Realm,
		ChannelBindTimeout: channelBindLifetime, // the relay loop's bindings follow it
		AuthHandler:        s.auth,
		LoggerFactory:      loggerFactory{o.Log},
	}
	// bind opens the TCP listener and the UDP sockets on one port. The TCP
	// listener comes first and does not share its port (SO_REUSEPORT is for
	// the UDP sockets among themselves): with port 0 the kernel then picks
	// a port no other listener holds, where a UDP socket asking for port 0
	// with SO_REUSEPORT may be given one that another server's sockets
	// share, and the kernel would spread packets over both servers. A UDP
	// port taken by someone else fails the bind, and with port 0 another
	// port is tried.
	var ln net.Listener
	bind := func(port string) error {
		s.udp, cfg.PacketConnConfigs = nil, nil
		var err error
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort(host, port)); err != nil {
			return fmt.Errorf("turn: tcp listen: %w", err)
		}
		tcpPort := ln.Addr().(*net.TCPAddr).Port
		port = fmt.Sprint(tcpPort)
		for i := 0; i < o.UDPListeners; i++ {
			u, err := s.listenUDP(ctx, lc, host, tcpPort)
			if err != nil {
				_ = ln.Close()
				s.closeListeners()
				return fmt.Errorf("turn: udp listen: %w", err)
			}
			s.udp = append(s.udp, u)
			cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, pturn.PacketConnConfig{
				PacketConn:            u,
				RelayAddressGenerator: s.newGenerator(u),
			})
		}
		return nil
	}
	err = bind(port)
	for try := 0; err != nil && port == "0" && errors.Is(err, syscall.EADDRINUSE) && try < 10; try++ {
		err = bind(port)
	}
	if err != nil {
		return nil, err
	}
	s.tcp = &tcpListener{Listener: ln, s: s, conns: map[net.Conn]struct{}{}}
	cfg.ListenerConfigs = []pturn.ListenerConfig{{
		Listener:              s.tcp,
		RelayAddressGenerator: s.newGenerator(nil),
	}}
	srv, err := pturn.NewServer(cfg)
	if err != nil {
		s.closeListeners()
		return nil, fmt.Errorf("turn: %w", err)
	}
	s.srv = srv
	o.Log.Info().Str("udp", s.Addr().String()).Str("tcp", ln.Addr().String()).
		Int("udp_listeners", o.UDPListeners).Int("udp_receive_buffer", s.UDPReceiveBuffer()).
		Str("relay_ip", relayIP.String()).Msg("turn server started")
	if got := s.UDPReceiveBuffer(); bufferCapped(runtime.GOOS, got) {
		o.Log.Warn().Int("udp_receive_buffer", got).Int("asked", listenerBuffer).
			Msg("turn: the UDP listening sockets got a smaller receive buffer than asked (net.core.rmem_max caps it): bursts the relay cannot take at once are dropped sooner; raise net.core.rmem_max and net.core.wmem_max, see docs/operations.md")
	}
	return s, nil
}

// listenUDP opens one UDP listening socket on host:port, served by a relay
// loop unless Options.GoroutineRelay (or the system) says not.
//
// There are at most GOMAXPROCS-1 loops, and sockets beyond take turns on
// them: a loop waits in epoll_wait as a system call that holds its P, and
// with every P in such a call the runtime takes them back every 20 µs,
// so that each packet would then wait for a P and wake a thread to get it.
// With a P left idle the runtime leaves a waiting loop its P for 10 ms.
func (s *Server) listenUDP(ctx context.Context, lc net.ListenConfig, host string, port int) (*udpConn, error) {
	if loopSupported && !s.opts.GoroutineRelay {
		var l *relayLoop
		if max := max(1, runtime.GOMAXPROCS(0)-1); len(s.loops) < max {
			var err error
			if l, err = newRelayLoop(s); err != nil {
				return nil, err
			}
			s.loops = append(s.loops, l)
		} else {
			l = s.loops[len(s.udp)%len(s.loops)]
		}
		sk, err := l.openListener(host, port)
		if err != nil {
			return nil, err
		}
		return &udpConn{PacketConn: sk, s: s, loop: sk}, nil
	}
	pc, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err != nil {
		return nil, err
	}
	if err := s.sizePacketConn(pc); err != nil {
		_ = pc.Close()
		return nil, err
	}
	return &udpConn{PacketConn: newRawUDP(pc), s: s}, nil
}

// sizePacketConn sizes the buffers of a listening socket the standard
// library opened (sizeBuffers).
func (s *Server) sizePacketConn(pc net.PacketConn) error {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = s.sizeBuffers(int(fd)) }); err != nil {
		return err
	}
	return serr
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Addr is the UDP address actually bound.
func (s *Server) Addr() net.Addr { return s.udp[0].LocalAddr() }

// TCPAddr is the TCP address actually bound.
func (s *Server) TCPAddr() net.Addr { return s.tcp.Addr() }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Allocations:        s.allocsLive.Load(),
		AllocationsTotal:   s.allocsTotal.Load(),
		AllocationsRefused: s.refused.Load(),
		AuthFailures:       s.authFailures.Load(),
		RelayedBytes:       s.relayedBytes.Load(),
		Dropped:            s.dropped.Load(),
		LoopPackets:        s.loopPackets.Load(),
	}
}

// Close stops the server and releases every socket and allocation.
func (s *Server) Close() error {
	var err error
	s.closed.Do(func() {
		err = s.srv.Close()
		s.tcp.closeConns()
		s.stopLoops()
	})
	return err
}

func (s *Server) closeListeners() {
	for _, u := range s.udp {
		_ = u.Close()
	}
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	s.stopLoops()
}

// stopLoops ends the relay loops once pion has closed their sockets.
func (s *Server) stopLoops() {
	for _, l := range s.loops {
		l.stop()
	}
	s.loops = nil
}

// auth checks TURN REST credentials: the expiry before the first ':' must be
// in the future and the password must be the HMAC of one of the secrets.
func (s *Server) auth(username, realm string, src net.Addr) ([]byte, bool) {
	expiry, user, ok := parseUsername(username)
	if !ok || !expiry.After(s.opts.Clock()) {
		s.authFailures.Add(1)
		s.opts.Log.Debug().Str("username", username).Str("src", src.String()).Msg("turn: malformed or expired username")
		return nil, false
	}
	// pion takes one key per request; with several secrets keyFor returns
	// the one that verifies the request's MESSAGE-INTEGRITY.
	key, ok := s.keyFor(username, realm, src)
	if !ok {
		s.authFailures.Add(1)
		return nil, false
	}
	if s.opts.MaxAllocationsPerUser > 0 {
		if _, tcp := src.(*net.TCPAddr); tcp {
			if !s.countTCP(src.String(), user) {
				s.refused.Add(1)
				return nil, false
			}
		} else {
			s.mu.Lock()
			s.pending[src.String()] = user
			s.mu.Unlock()
		}
	}
	return key, true
}
