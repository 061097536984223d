package turn

import (
	"fmt"
	"net"
	"sync"

	pturn "github.com/pion/turn/v2"
)

// Quota accounting. pion/turn/v2 has no allocation hooks, so:
//   - on UDP listeners the relay socket is created in the same read loop
//     right after the request was authenticated, so the generator of that
//     listener attributes it exactly to the user, refuses it over quota and
//     releases the slot when pion closes the relay socket;
//   - on TCP a connection carries at most one allocation, so an
//     authenticated TCP connection takes one slot of its user until it
//     closes (an approximation: it counts even before its Allocate).

func (s *Server) acquire(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.MaxAllocationsPerUser > 0 && s.perUser[user] >= s.opts.MaxAllocationsPerUser {
		return false
	}
	s.perUser[user]++
	return true
}

func (s *Server) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perUser[user] <= 1 {
		delete(s.perUser, user)
	} else {
		s.perUser[user]--
	}
}

func (s *Server) countTCP(src, user string) bool {
	s.mu.Lock()
	_, seen := s.tcpUser[src]
	s.mu.Unlock()
	if seen {
		return true
	}
	if !s.acquire(user) {
		return false
	}
	s.mu.Lock()
	s.tcpUser[src] = user
	s.mu.Unlock()
	return true
}

func (s *Server) tcpClosed(src string) {
	s.mu.Lock()
	user, ok := s.tcpUser[src]
	delete(s.tcpUser, src)
	delete(s.lastMsg, src)
	s.mu.Unlock()
	if ok {
		s.release(user)
	}
}

// generator creates relay sockets on the listen host, announces PublicIP,
// counts allocations and relayed bytes and applies the UDP quota.
type generator struct {
	s      *Server
	udp    *udpConn                    // nil for the TCP listener
	static pturn.RelayAddressGenerator // relay sockets: any port, or Options.RelayPorts
}

func (s *Server) newGenerator(u *udpConn) *generator {
	var base pturn.RelayAddressGenerator = &pturn.RelayAddressGeneratorStatic{RelayAddress: s.relay, Address: s.host}
	if r := s.opts.RelayPorts; r.Min > 0 {
		base = &pturn.RelayAddressGeneratorPortRange{RelayAddress: s.relay, Address: s.host, MinPort: r.Min, MaxPort: r.Max, MaxRetries: 64}
	}
	return &generator{s: s, udp: u, static: base}
}

func (g *generator) Validate() error { return g.static.Validate() }

func (g *generator) AllocateConn(network string, port int) (net.Conn, net.Addr, error) {
	return g.static.AllocateConn(network, port)
}

func (g *generator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	user, counted := "", false
	if g.udp != nil && g.s.opts.MaxAllocationsPerUser > 0 {
		g.s.mu.Lock()
		u, ok := g.s.pending[g.udp.current()]
		g.s.mu.Unlock()
		if ok {
			if !g.s.acquire(u) {
				g.s.refused.Add(1)
				return nil, nil, errQuota
			}
			user, counted = u, true
		}
	}
	pc, addr, err := g.relaySocket(network, port)
	if err != nil {
		if counted {
			g.s.release(user)
		}
		return nil, nil, err
	}
	g.s.allocsTotal.Add(1)
	g.s.allocsLive.Add(1)
	return &relayConn{PacketConn: pc, s: g.s, user: user, counted: counted}, addr, nil
}

// relaySocket opens an allocation's relay socket: on the listener's relay
// loop when it has one, else through pion's generator.
func (g *generator) relaySocket(network string, port int) (net.PacketConn, net.Addr, error) {
	if g.udp == nil || g.udp.loop == nil {
		pc, addr, err := g.static.AllocatePacketConn(network, port)
		if err != nil {
			return nil, nil, err
		}
		return newRawUDP(pc), addr, nil
	}
	if network != "udp4" && network != "udp" {
		return nil, nil, fmt.Errorf("turn: relay network %q", network)
	}
	sk, err := g.udp.loop.loop.openRelay(g.udp.loop, g.udp.currentAddr(), g.s.host, port, g.s.opts.RelayPorts)
	if err != nil {
		return nil, nil, err
	}
	// Announced on the public address, as pion's generators do.
	return sk, &net.UDPAddr{IP: g.s.relay, Port: sk.LocalAddr().(*net.UDPAddr).Port}, nil
}

// relayConn counts relayed bytes and releases the allocation on Close.
type relayConn struct {
	net.PacketConn
	s       *Server
	user    string
	counted bool
	once    sync.Once
}

func (r *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := r.PacketConn.ReadFrom(p)
	r.s.relayedBytes.Add(int64(n))
	return n, a, err
}

func (r *relayConn) WriteTo(p []byte, a net.Addr) (int, error) {
	n, err := r.PacketConn.WriteTo(p, a)
	r.s.relayedBytes.Add(int64(n))
	return n, err
}

func (r *relayConn) Close() error {
	r.once.Do(func() {
		r.s.allocsLive.Add(-1)
		if r.counted {
			r.s.release(r.user)
		}
	})
	return r.PacketConn.Close()
}
