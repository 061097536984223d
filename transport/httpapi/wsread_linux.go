package httpapi

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawConnOf is c's raw connection when c is a bare TCP connection.
func rawConnOf(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
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
// the stream or an error all make it readable.
func socketReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		return true
	}
}

// sendQueueEmpty reports whether nothing waits in c's send queue
// (SIOCOUTQ), c being a bare TCP connection.
func sendQueueEmpty(c net.Conn) bool {
	rc := rawConnOf(c)
	if rc == nil {
		return false
	}
	queued, qerr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || qerr != nil {
		return false
	}
	return queued == 0
}
