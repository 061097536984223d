package turn

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun"
)

// The relay loop's copy of pion's channel bindings. pion/turn keeps an
// allocation's bindings to itself, and they are all the loop needs to relay
// ChannelData on its own: a binding maps a channel number to a peer and
// back. The loop learns a binding from the ChannelBind request pion has just
// accepted (the success response it writes), and forgets it a margin before
// pion's own timer does, so that it never relays for a binding pion has
// dropped; a packet the copy cannot place goes to pion, which decides.

// channelBindLifetime is the lifetime pion gives a channel binding, set in
// its ServerConfig (RFC 8656 §12: ten minutes, refreshed by a new
// ChannelBind).
const channelBindLifetime = 10 * time.Minute

// bindMargin is how long before pion the copy lets a binding go. pion starts
// its timer while handling the request; the copy's starts when the response
// is written, microseconds later.
const bindMargin = 5 * time.Second

// STUN message types and attributes read here (RFC 8656).
const (
	typeChannelBindRequest = 0x0009
	typeChannelBindSuccess = 0x0109
	attrChannelNumber      = stun.AttrType(0x000C)
	stunHeaderSize         = 20
)

// channelBind is a request to bind channel number to peer.
type channelBind struct {
	number uint16
	peer   netip.AddrPort // unmapped
}

// parseChannelBind reads a ChannelBind request: its transaction id, the
// CHANNEL-NUMBER (0x4000 to 0x7FFF, the range pion accepts) and the
// XOR-PEER-ADDRESS. ok is false for anything else.
func parseChannelBind(raw []byte) (txid [stun.TransactionIDSize]byte, cb channelBind, ok bool) {
	if len(raw) < stunHeaderSize || binary.BigEndian.Uint16(raw[0:2]) != typeChannelBindRequest {
		return txid, cb, false
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		return txid, cb, false
	}
	num, err := m.Get(attrChannelNumber)
	if err != nil || len(num) != 4 {
		return txid, cb, false
	}
	cb.number = binary.BigEndian.Uint16(num)
	if !validChannel(cb.number) {
		return txid, cb, false
	}
	var peer stun.XORMappedAddress
	if err := peer.GetFromAs(m, stun.AttrXORPeerAddress); err != nil {
		return txid, cb, false
	}
	a, ok := netip.AddrFromSlice(peer.IP)
	if !ok || peer.Port <= 0 || peer.Port > 0xFFFF {
		return txid, cb, false
	}
	cb.peer = netip.AddrPortFrom(a.Unmap(), uint16(peer.Port))
	return m.TransactionID, cb, true
}

// validChannel is the channel number range pion accepts.
func validChannel(n uint16) bool { return n >= 0x4000 && n <= 0x7FFF }

// isChannelBindSuccess reports a ChannelBind success response.
func isChannelBindSuccess(b []byte) bool {
	return len(b) >= stunHeaderSize && binary.BigEndian.Uint16(b[0:2]) == typeChannelBindSuccess
}

// channelData reads the header of a ChannelData message: its channel number
// and payload. ok is false when b is not one, or its length runs past b.
func channelData(b []byte) (number uint16, payload []byte, ok bool) {
	if len(b) < 4 {
		return 0, nil, false
	}
	number = binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if !validChannel(number) || 4+n > len(b) {
		return 0, nil, false
	}
	return number, b[4 : 4+n], true
}

// boundPeer is one binding as the loop reads it.
type boundPeer struct {
	number  uint16
	peer    netip.AddrPort
	expires time.Time
}

// bindTable is an allocation's bindings, replaced whole on each change so the
// loop reads it without a lock.
type bindTable struct {
	byNumber map[uint16]boundPeer
	byPeer   map[netip.AddrPort]boundPeer
}

// bindings is an allocation's copy of its channel bindings.
type bindings struct {
	mu  sync.Mutex // serialises writers
	cur atomic.Pointer[bindTable]
}

// bind records cb until expires. pion accepted it, so the number is either
// new and its peer unbound, or already bound to the same peer (a refresh).
func (b *bindings) bind(cb channelBind, expires time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.cur.Load()
	t := &bindTable{byNumber: map[uint16]boundPeer{}, byPeer: map[netip.AddrPort]boundPeer{}}
	if old != nil {
		for k, v := range old.byNumber {
			if v.peer != cb.peer {
				t.byNumber[k] = v
			}
		}
		for k, v := range old.byPeer {
			if v.number != cb.number {
				t.byPeer[k] = v
			}
		}
	}
	bp := boundPeer{number: cb.number, peer: cb.peer, expires: expires}
	t.byNumber[cb.number], t.byPeer[cb.peer] = bp, bp
	b.cur.Store(t)
}

// peerOf returns the peer bound to number, if the binding is still live at now.
func (b *bindings) peerOf(number uint16, now time.Time) (netip.AddrPort, bool) {
	t := b.cur.Load()
	if t == nil {
		return netip.AddrPort{}, false
	}
	bp, ok := t.byNumber[number]
	if !ok || !now.Before(bp.expires) {
		return netip.AddrPort{}, false
	}
	return bp.peer, true
}

// numberOf returns the channel bound to peer, if the binding is still live at now.
func (b *bindings) numberOf(peer netip.AddrPort, now time.Time) (uint16, bool) {
	t := b.cur.Load()
	if t == nil {
		return 0, false
	}
	bp, ok := t.byPeer[peer]
	if !ok || !now.Before(bp.expires) {
		return 0, false
	}
	return bp.number, true
}
