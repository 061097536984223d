package httpapi

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawConnOf is c's raw connection when c is a TCP connection.
func rawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// waitReadable parks until rc has something to read, has ended or failed,
// or its read deadline passes (the error then).
func waitReadable(rc syscall.RawConn) error {
	return rc.Read(socketReadable)
}

// readable reports whether reading rc would not wait.
func readable(rc syscall.RawConn) bool {
	r := true
	if err := rc.Control(func(fd uintptr) { r = socketReadable(fd) }); err != nil {
		return true
	}
	return r
}

// socketReadable peeks at the socket without waiting: bytes, the end of
// the stream or an error all make it readable. The peek is a raw system
// call (see package rawconn): it never blocks.
func socketReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

// sendQueueEmpty reports whether nothing waits in c's send queue
// (SIOCOUTQ), c being a TCP connection (bare or from internal/rawconn).
func sendQueueEmpty(c net.Conn) bool {
	rc := rawConnOf(c)
	if rc == nil {
		return false
	}
	var (
		queued int32
		errno  syscall.Errno
	)
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.RawSyscall(syscall.SYS_IOCTL, fd, unix.SIOCOUTQ, uintptr(unsafe.Pointer(&queued)))
	}); err != nil || errno != 0 {
		return false
	}
	return queued == 0
}
