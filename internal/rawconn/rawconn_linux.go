package rawconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Wrap returns c with raw reads and writes when c is a TCP connection, and
// c itself otherwise. The result is a *Conn, which still answers to
// syscall.Conn and to everything else of net.TCPConn.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{TCPConn: tc, rc: rc}
}

// Conn is a TCP connection whose Read and Write are raw system calls.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
}

// Read reads like net.TCPConn.Read: at least one byte, io.EOF at the end
// of the stream, or an error.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.do("read", b)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of b, or returns how much it wrote and why it stopped.
func (c *Conn) Write(b []byte) (int, error) { return c.do("write", b) }

// do makes a read or a write of b through the raw connection: the poller
// waits for the socket whenever the system call would.
func (c *Conn) do(op string, b []byte) (int, error) {
	k := calls.Get().(*call)
	k.buf, k.n, k.errno = b, 0, 0
	var err error
	if op == "write" {
		err = c.rc.Write(k.write)
	} else {
		err = c.rc.Read(k.read)
	}
	n, errno := k.n, k.errno
	k.buf = nil
	calls.Put(k)
	switch {
	case err != nil:
		return n, c.opError(op, err)
	case errno != 0:
		return n, c.opError(op, os.NewSyscallError(op, errno))
	}
	return n, nil
}

// call is one read or write in flight: what RawConn calls back with the
// descriptor, and what it found. Calls are pooled, their callbacks bound
// once, so that a read or write allocates nothing.
type call struct {
	buf         []byte
	n           int
	errno       syscall.Errno
	read, write func(fd uintptr) bool
}

var calls = sync.Pool{New: func() any {
	k := new(call)
	k.read, k.write = k.readFD, k.writeFD
	return k
}}

// readFD reads once into buf; false asks the poller to wait for the
// socket to become readable and call again.
func (k *call) readFD(fd uintptr) bool {
	for {
		n, e := read(fd, k.buf)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			k.n = n
		default:
			k.errno = e
		}
		return true
	}
}

// writeFD writes what is left of buf; false asks the poller to wait for
// room in the send buffer and call again.
func (k *call) writeFD(fd uintptr) bool {
	for k.n < len(k.buf) {
		n, e := write(fd, k.buf[k.n:])
		switch e {
		case 0:
			k.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			k.errno = e
			return true
		}
	}
	return true
}

// opError is err as net.TCPConn would report it: an *net.OpError naming
// the operation and the addresses, with the poller's errors (a closed
// connection, a deadline passed) inside, so that errors.Is(err,
// net.ErrClosed) and os.ErrDeadlineExceeded hold as they do for the
// standard connection.
func (c *Conn) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err // RawConn names its operation "raw-read" or "raw-write"
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
