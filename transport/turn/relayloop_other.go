//go:build !linux

package turn

import (
	"errors"
	"net"
	"net/netip"
)

// The relay loop (relayloop_linux.go) waits with epoll, so elsewhere pion's
// own read loops relay every packet.
const loopSupported = false

var errNoLoop = errors.New("turn: the relay loop runs on Linux only")

type relayLoop struct{}

func newRelayLoop(*Server) (*relayLoop, error) { return nil, errNoLoop }

func (l *relayLoop) stop() {}

func (l *relayLoop) openListener(string, int) (*loopSock, error) { return nil, errNoLoop }

func (l *relayLoop) openRelay(*loopSock, netip.AddrPort, string, int, PortRange) (*loopSock, error) {
	return nil, errNoLoop
}

type loopSock struct {
	net.PacketConn
	loop *relayLoop
}

type loopAlloc struct{ binds bindings }

func (sk *loopSock) allocFor(netip.AddrPort) *loopAlloc { return nil }
