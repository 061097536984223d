package turn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun"
	pturn "github.com/pion/turn/v2"
)

// keyFor returns the long-term key for username: the key of the secret
// whose HMAC verifies the MESSAGE-INTEGRITY of the request in flight from src,
// which the listener wrappers record. Checking here rather than leaving it to
// pion lets a wrong password count as an auth failure, and with several
// secrets picks the one that was used.
func (s *Server) keyFor(username, realm string, src net.Addr) ([]byte, bool) {
	s.mu.Lock()
	raw := s.lastMsg[src.String()]
	s.mu.Unlock()
	if raw == nil && len(s.opts.Secrets) == 1 {
		// Nothing recorded (cannot happen with the wrappers): pion checks.
		return pturn.GenerateAuthKey(username, realm, computePassword(s.opts.Secrets[0], username)), true
	}
	msg := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := msg.Decode(); err != nil {
		return nil, false
	}
	for _, secret := range s.opts.Secrets {
		key := pturn.GenerateAuthKey(username, realm, computePassword(secret, username))
		if stun.MessageIntegrity(key).Check(msg) == nil {
			return key, true
		}
	}
	return nil, false
}

// recordMsg keeps the STUN request just read from src for keyFor. Only
// requests are authenticated, so indications (Send) and ChannelData, the bulk
// of the traffic, are not copied.
func (s *Server) recordMsg(src string, b []byte) {
	if !isRequest(b) {
		return
	}
	s.mu.Lock()
	s.lastMsg[src] = append([]byte(nil), b...)
	s.mu.Unlock()
}

// isRequest reports a STUN request (not an indication, a response or
// ChannelData).
func isRequest(b []byte) bool {
	return stun.IsMessage(b) && binary.BigEndian.Uint16(b[0:2])&classMask == 0
}

// classMask selects the two class bits of a STUN message type; both are 0 in
// a request.
const classMask = 0x0110

// udpConn is one UDP listening socket. pion handles each socket's requests
// in one read loop, so the source of the request in flight is the address
// the last ReadFrom returned.
type udpConn struct {
	net.PacketConn
	s     *Server
	loop  *loopSock // the socket, when the relay loop serves it
	mu    sync.Mutex
	cur   string
	curAP netip.AddrPort
}

// ReadFrom reads the next packet. Only a STUN request is remembered (its
// source and bytes, for keyFor and the quota); relayed data, nearly every
// packet, costs no more than pion's own read.
func (u *udpConn) ReadFrom(p []byte) (int, net.Addr, error) {
	u.mu.Lock()
	prev := u.cur
	u.cur = ""
	u.mu.Unlock()
	if prev != "" {
		u.s.mu.Lock()
		delete(u.s.pending, prev)
		delete(u.s.lastMsg, prev)
		u.s.mu.Unlock()
	}
	n, addr, err := u.PacketConn.ReadFrom(p)
	if err == nil && isRequest(p[:n]) {
		src := addr.String()
		var ap netip.AddrPort
		if ua, ok := addr.(*net.UDPAddr); ok {
			ap = ua.AddrPort()
		}
		u.mu.Lock()
		u.cur, u.curAP = src, ap
		u.mu.Unlock()
		u.s.recordMsg(src, p[:n])
	}
	return n, addr, err
}

func (u *udpConn) current() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cur
}

// currentAddr is the source of the request in flight.
func (u *udpConn) currentAddr() netip.AddrPort {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.curAP
}

// WriteTo sends pion's packet. When the relay loop serves this socket, a
// ChannelBind success response tells it the binding pion has just made: the
// request in flight names the channel and the peer.
func (u *udpConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if u.loop != nil && isChannelBindSuccess(p) {
		u.noteChannelBind(p, addr)
	}
	return u.PacketConn.WriteTo(p, addr)
}

// noteChannelBind gives the allocation of addr the binding of the request
// in flight from addr, when the response p answers it.
func (u *udpConn) noteChannelBind(p []byte, addr net.Addr) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return
	}
	u.s.mu.Lock()
	raw := u.s.lastMsg[addr.String()]
	u.s.mu.Unlock()
	txid, cb, ok := parseChannelBind(raw)
	if !ok || string(txid[:]) != string(p[8:stunHeaderSize]) {
		return
	}
	ap := ua.AddrPort()
	a := u.loop.allocFor(netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()))
	if a == nil {
		return
	}
	a.binds.bind(cb, time.Now().Add(channelBindLifetime-bindMargin))
}

// tcpListener hands pion connections that return one TURN frame per Read,
// so the STUN message being handled is the last one read.
type tcpListener struct {
	net.Listener
	s     *Server
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *tcpListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fc := &framedConn{Conn: c, r: bufio.NewReaderSize(c, 4096), l: l}
	l.mu.Lock()
	l.conns[fc] = struct{}{}
	l.mu.Unlock()
	return fc, nil
}

func (l *tcpListener) closeConns() {
	l.mu.Lock()
	cs := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

type framedConn struct {
	net.Conn
	r    *bufio.Reader
	l    *tcpListener
	once sync.Once
}

var errFrame = errors.New("turn: invalid tcp frame")

func (c *framedConn) Read(p []byte) (int, error) {
	hdr, err := c.r.Peek(4)
	if err != nil {
		return 0, err
	}
	size := int(binary.BigEndian.Uint16(hdr[2:4]))
	switch {
	case hdr[0]>>6 == 0: // STUN
		size += 20
	case hdr[0]>>6 == 1: // ChannelData, padded to 4 bytes over TCP
		size = 4 + (size+3)&^3
	default:
		return 0, errFrame
	}
	if size > len(p) {
		return 0, errFrame
	}
	if _, err := io.ReadFull(c.r, p[:size]); err != nil {
		return 0, err
	}
	if isRequest(p[:size]) {
		c.l.s.recordMsg(c.RemoteAddr().String(), p[:size])
	}
	return size, nil
}

func (c *framedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.s.tcpClosed(c.RemoteAddr().String())
	})
	return c.Conn.Close()
}
