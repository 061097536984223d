//go:build !linux

package turn

import "net"

// newRawUDP returns pc as it is: raw system calls are used on Linux only.
func newRawUDP(pc net.PacketConn) net.PacketConn { return pc }
