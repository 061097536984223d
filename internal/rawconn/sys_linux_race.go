//go:build linux && race

package rawconn

import (
	"errors"
	"syscall"
)

// Under the race detector, read and write are the syscall package's, which
// tell the detector that a write to a descriptor happens before a read of
// one: two goroutines that synchronise only through a socket (a test's
// server handler and the client that calls it) are not reported as
// racing. Everything else about the connection is as in other builds.
func read(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

func write(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO
	}
	return e
}
