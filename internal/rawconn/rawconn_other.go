//go:build !linux

package rawconn

import "net"

// Wrap returns c as it is: the raw calls are made on Linux only.
func Wrap(c net.Conn) net.Conn { return c }
