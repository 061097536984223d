package turn

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun"
)

// channelBindRequest builds a ChannelBind request as a client sends it.
func channelBindRequest(t testing.TB, number uint16, peer *net.UDPAddr, extra ...stun.Setter) *stun.Message {
	t.Helper()
	num := make([]byte, 4)
	binary.BigEndian.PutUint16(num, number)
	setters := []stun.Setter{
		stun.TransactionID,
		stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		stun.RawAttribute{Type: attrChannelNumber, Value: num},
		xorPeer{peer},
	}
	m, err := stun.Build(append(setters, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// xorPeer adds an XOR-PEER-ADDRESS.
type xorPeer struct{ a *net.UDPAddr }

func (x xorPeer) AddTo(m *stun.Message) error {
	return (&stun.XORMappedAddress{IP: x.a.IP, Port: x.a.Port}).AddToAs(m, stun.AttrXORPeerAddress)
}

func TestParseChannelBind(t *testing.T) {
	peer := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	m := channelBindRequest(t, 0x4001, peer, stun.NewUsername("u"), stun.Fingerprint)
	txid, cb, ok := parseChannelBind(m.Raw)
	if !ok {
		t.Fatal("a ChannelBind request not read")
	}
	if txid != m.TransactionID || cb.number != 0x4001 || cb.peer != netip.MustParseAddrPort("192.0.2.7:40000") {
		t.Fatalf("read %x %+v", txid, cb)
	}
	v6 := &net.UDPAddr{IP: net.ParseIP("2001:db8::9"), Port: 3478}
	if _, cb, ok := parseChannelBind(channelBindRequest(t, 0x7FFF, v6).Raw); !ok || cb.peer != netip.MustParseAddrPort("[2001:db8::9]:3478") {
		t.Fatalf("IPv6 peer: %+v %v", cb, ok)
	}

	bad := map[string][]byte{
		"empty":            nil,
		"short":            m.Raw[:10],
		"truncated":        m.Raw[:len(m.Raw)-4],
		"channel too low":  channelBindRequest(t, 0x3FFF, peer).Raw,
		"channel too high": channelBindRequest(t, 0x8000, peer).Raw,
	}
	resp := append([]byte(nil), m.Raw...)
	binary.BigEndian.PutUint16(resp, typeChannelBindSuccess)
	bad["a response"] = resp
	noPeer, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		stun.RawAttribute{Type: attrChannelNumber, Value: []byte{0x40, 0x01, 0, 0}})
	bad["no peer"] = noPeer.Raw
	noNumber, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest), xorPeer{peer})
	bad["no channel number"] = noNumber.Raw
	shortNumber, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassRequest),
		stun.RawAttribute{Type: attrChannelNumber, Value: []byte{0x40, 0x01}}, xorPeer{peer})
	bad["two-byte channel number"] = shortNumber.Raw
	for name, raw := range bad {
		if _, cb, ok := parseChannelBind(raw); ok {
			t.Errorf("%s: read as %+v", name, cb)
		}
	}
	if !isChannelBindSuccess(resp) || isChannelBindSuccess(m.Raw) || isChannelBindSuccess(resp[:19]) {
		t.Error("isChannelBindSuccess")
	}
}

func TestChannelData(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		num  uint16
		data string
		ok   bool
	}{
		{"exact", []byte{0x40, 0x00, 0, 3, 'a', 'b', 'c'}, 0x4000, "abc", true},
		{"padded", []byte{0x7F, 0xFF, 0, 3, 'a', 'b', 'c', 0}, 0x7FFF, "abc", true},
		{"empty", []byte{0x40, 0x01, 0, 0}, 0x4001, "", true},
		{"length past the end", []byte{0x40, 0x00, 0, 4, 'a', 'b', 'c'}, 0, "", false},
		{"header only part", []byte{0x40, 0x00, 0}, 0, "", false},
		{"channel too high", []byte{0x80, 0x00, 0, 0}, 0, "", false},
		{"a STUN message", []byte{0x00, 0x01, 0, 0}, 0, "", false},
	} {
		num, data, ok := channelData(c.b)
		if ok != c.ok || num != c.num || string(data) != c.data {
			t.Errorf("%s: %x %q %v", c.name, num, data, ok)
		}
	}
}

func TestBindings(t *testing.T) {
	var b bindings
	now := time.Now()
	p1, p2 := netip.MustParseAddrPort("192.0.2.1:1000"), netip.MustParseAddrPort("192.0.2.2:2000")
	if _, ok := b.peerOf(0x4000, now); ok {
		t.Fatal("a binding before any")
	}
	b.bind(channelBind{0x4000, p1}, now.Add(time.Minute))
	b.bind(channelBind{0x4001, p2}, now.Add(2*time.Minute))
	if p, ok := b.peerOf(0x4000, now); !ok || p != p1 {
		t.Fatalf("peerOf 0x4000: %v %v", p, ok)
	}
	if n, ok := b.numberOf(p2, now); !ok || n != 0x4001 {
		t.Fatalf("numberOf p2: %x %v", n, ok)
	}
	// A binding ends at its expiry, not after.
	at := now.Add(time.Minute)
	if _, ok := b.peerOf(0x4000, at); ok {
		t.Error("0x4000 live at its expiry")
	}
	if _, ok := b.numberOf(p1, at); ok {
		t.Error("p1 live at its expiry")
	}
	if _, ok := b.peerOf(0x4001, at); !ok {
		t.Error("0x4001 expired with the other")
	}
	// A refresh moves the expiry.
	b.bind(channelBind{0x4000, p1}, now.Add(3*time.Minute))
	if p, ok := b.peerOf(0x4000, at); !ok || p != p1 {
		t.Errorf("refreshed binding: %v %v", p, ok)
	}
	if len(b.cur.Load().byNumber) != 2 || len(b.cur.Load().byPeer) != 2 {
		t.Errorf("table %+v", b.cur.Load())
	}
}

// FuzzParseChannelBind feeds the parser of clients' ChannelBind requests: it
// never panics, and what it accepts is a ChannelBind request whose channel is
// in range and whose fields read back the same when built again.
func FuzzParseChannelBind(f *testing.F) {
	f.Add(channelBindRequest(f, 0x4001, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}).Raw)
	f.Add(channelBindRequest(f, 0x7FFF, &net.UDPAddr{IP: net.ParseIP("::1"), Port: 65535}, stun.Fingerprint).Raw)
	f.Add([]byte{0, 9, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := append([]byte(nil), raw...)
		txid, cb, ok := parseChannelBind(raw)
		if !bytes.Equal(in, raw) {
			t.Fatal("parseChannelBind changed its input")
		}
		if !ok {
			return
		}
		if !validChannel(cb.number) || !cb.peer.IsValid() || binary.BigEndian.Uint16(raw[0:2]) != typeChannelBindRequest {
			t.Fatalf("accepted %+v from %x", cb, raw)
		}
		again := channelBindRequest(t, cb.number, net.UDPAddrFromAddrPort(cb.peer))
		_, cb2, ok := parseChannelBind(again.Raw)
		if !ok || cb2 != cb {
			t.Fatalf("%+v built again read %+v %v", cb, cb2, ok)
		}
		if !bytes.Equal(txid[:], raw[8:20]) {
			t.Fatalf("transaction id %x, header %x", txid, raw[8:20])
		}
	})
}

// FuzzChannelData feeds the reader of ChannelData headers: it never panics,
// and what it accepts has a channel in range and a payload inside b.
func FuzzChannelData(f *testing.F) {
	f.Add([]byte{0x40, 0x00, 0, 3, 'a', 'b', 'c', 0})
	f.Add([]byte{0x7F, 0xFF, 0xFF, 0xFF})
	f.Add([]byte{0x00, 0x01, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		num, data, ok := channelData(b)
		if !ok {
			return
		}
		if !validChannel(num) || 4+len(data) > len(b) || int(binary.BigEndian.Uint16(b[2:4])) != len(data) {
			t.Fatalf("accepted %x with %d bytes from %d", num, len(data), len(b))
		}
		if len(data) > 0 && &data[0] != &b[4] {
			t.Fatal("payload is not the bytes after the header")
		}
	})
}
