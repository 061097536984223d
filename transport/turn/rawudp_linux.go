package turn

import (
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"
)

// rawUDP reads and writes a UDP socket with raw system calls. The socket is
// non-blocking (the runtime's poller waits for it), so recvfrom and sendto
// return at once; the standard library still makes them as blocking calls
// (syscall.Syscall), and each such call wakes the runtime's monitor thread
// whenever the process was idle, which then polls every 20 µs for a
// while. A relay at a few thousand packets a second is idle between
// packets, so that cost came with nearly every packet. These calls never
// block, so the monitor has nothing of theirs to retake; the rest of the
// process still makes the standard library's calls, which wake it for its
// other duties.
type rawUDP struct {
	*net.UDPConn
	rc syscall.RawConn
	v4 bool // an IPv4 socket; otherwise IPv6, dual-stack unless bound to an IPv6 address
}

// newRawUDP wraps pc when it is a UDP socket; anything else is returned as
// it is.
func newRawUDP(pc net.PacketConn) net.PacketConn {
	c, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return pc
	}
	la, ok := c.LocalAddr().(*net.UDPAddr)
	if !ok {
		return pc
	}
	return &rawUDP{UDPConn: c, rc: rc, v4: la.IP.To4() != nil}
}

func (u *rawUDP) ReadFrom(p []byte) (int, net.Addr, error) {
	var (
		n     int
		from  syscall.RawSockaddrAny
		errno syscall.Errno
	)
	err := u.rc.Read(func(fd uintptr) bool {
		for {
			fromLen := uint32(syscall.SizeofSockaddrAny)
			r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
				0, uintptr(unsafe.Pointer(&from)), uintptr(unsafe.Pointer(&fromLen)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for the poller
			}
			n, errno = int(r), e
			return true
		}
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Source: u.LocalAddr(), Err: err}
	}
	if a := udpAddrOf(&from); a != nil {
		return n, a, nil
	}
	return n, nil, nil // not an IP source (cannot happen on a UDP socket)
}

func (u *rawUDP) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok || ua.Zone != "" {
		return u.UDPConn.WriteTo(p, addr)
	}
	ap := ua.AddrPort()
	if !ap.Addr().IsValid() {
		return u.UDPConn.WriteTo(p, addr) // its error
	}
	var dst rawSockaddr
	sa, sl, ok := dst.set(u.v4, ap)
	if !ok {
		return u.UDPConn.WriteTo(p, addr) // its error
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := u.rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
				0, uintptr(sa), sl)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // the send buffer is full: wait for the poller
			}
			n, errno = int(r), e
			return true
		}
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: u.LocalAddr(), Addr: addr, Err: err}
	}
	return n, nil
}

// rawSockaddr is a destination as sendto takes it.
type rawSockaddr struct {
	sa4 syscall.RawSockaddrInet4
	sa6 syscall.RawSockaddrInet6
}

// set fills in ap for a socket of the family v4 tells, as the standard
// library does: an IPv4 socket takes an IPv4 address (ok is false for an
// IPv6 one), an IPv6 socket an IPv6 or IPv4-mapped one. The pointer is into
// r, which must outlive the system call.
func (r *rawSockaddr) set(v4 bool, ap netip.AddrPort) (unsafe.Pointer, uintptr, bool) {
	if v4 {
		a := ap.Addr().Unmap()
		if !a.Is4() {
			return nil, 0, false
		}
		r.sa4.Family = syscall.AF_INET
		putPort(&r.sa4.Port, ap.Port())
		r.sa4.Addr = a.As4()
		return unsafe.Pointer(&r.sa4), syscall.SizeofSockaddrInet4, true
	}
	r.sa6.Family = syscall.AF_INET6
	putPort(&r.sa6.Port, ap.Port())
	r.sa6.Addr = ap.Addr().As16() // an IPv4 address as IPv4-mapped
	return unsafe.Pointer(&r.sa6), syscall.SizeofSockaddrInet6, true
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

func port(src *uint16) int {
	b := (*[2]byte)(unsafe.Pointer(src))
	return int(b[0])<<8 | int(b[1])
}

// udpAddrOf is the address recvfrom filled in, nil when it is not IPv4 or IPv6.
func udpAddrOf(sa *syscall.RawSockaddrAny) *net.UDPAddr {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		in := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(port(&in.Port))))
	case syscall.AF_INET6:
		in := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		a := netip.AddrFrom16(in.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		}
		ua := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(port(&in.Port))))
		if in.Scope_id != 0 {
			ua.Zone = strconv.FormatUint(uint64(in.Scope_id), 10)
		}
		return ua
	}
	return nil
}
