// Package rawconn gives TCP connections reads and writes made as raw system
// calls on Linux.
//
// The standard library makes every read and write of a socket as a
// blocking system call (syscall.Syscall), even though its sockets are
// non-blocking and the calls return at once. Each such call tells the
// runtime that its P may be taken, and the runtime's monitor thread, which
// wakes every 20 µs while it finds such calls to look at, hands the P of a
// call it catches over to another thread. On loopback a write also runs
// the receiver's TCP processing and can take tens of microseconds, so a
// server that answers webhooks, pushes frames and talks to its database
// over loopback keeps the monitor polling, and a call caught in flight
// costs a thread hand-off and a wake-up.
//
// A connection from Wrap makes the same calls through syscall.RawConn with
// syscall.RawSyscall: when the kernel has nothing to read or no room to
// write, the runtime's poller waits for the socket as before, deadlines
// hold, and nothing is taken while a call runs. Elsewhere than on Linux,
// Wrap returns the connection as it is. Under the race detector the calls
// are the syscall package's, whose annotations let the detector see that
// what one goroutine writes to a socket happens before another reads it.
package rawconn
