//go:build !linux

package httpapi

import (
	"net"
	"syscall"
)

// rawConnOf is nil: sockets are read with the library's read alone.
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func waitReadable(syscall.RawConn) error { return nil }

func readable(syscall.RawConn) bool { return true }

// sendQueueEmpty is false: the send queue is not looked at, and frames go
// through the frame writer's goroutine.
func sendQueueEmpty(net.Conn) bool { return false }
