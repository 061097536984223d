package rawconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair is a connected TCP pair on loopback: a from Listener's Accept, b
// from Dial; both wrapped.
func pair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener(inner)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	b, err = Dial(&net.Dialer{})(context.Background(), "tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a = <-accepted
	if a == nil {
		t.FailNow()
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestWrap(t *testing.T) {
	a, b := pair(t)
	for _, c := range []net.Conn{a, b} {
		_, raw := c.(*Conn)
		if raw != (runtime.GOOS == "linux") {
			t.Fatalf("%T: raw %v on %s", c, raw, runtime.GOOS)
		}
		if _, ok := c.(syscall.Conn); !ok {
			t.Fatalf("%T is not a syscall.Conn", c)
		}
	}
	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if w := Wrap(p); w != p {
		t.Fatalf("a pipe came back as %T", w)
	}
}

// TestBulk: a write larger than the socket's buffers completes once the
// peer reads (the raw write waits for the poller in between), and the
// peer reads exactly what was written.
func TestBulk(t *testing.T) {
	a, b := pair(t)
	out := make([]byte, 16<<20)
	if _, err := rand.Read(out); err != nil {
		t.Fatal(err)
	}
	werr := make(chan error, 1)
	go func() {
		n, err := a.Write(out)
		if err == nil && n != len(out) {
			err = io.ErrShortWrite
		}
		werr <- err
		a.Close()
	}()
	in, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, out) {
		t.Fatalf("read %d bytes, not the %d written", len(in), len(out))
	}
}

// TestEndOfStream: the peer's close reads as io.EOF itself, after what it
// sent; a read of nothing returns at once.
func TestEndOfStream(t *testing.T) {
	a, b := pair(t)
	if _, err := a.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if n, err := b.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d %v", n, err)
	}
	buf := make([]byte, 8)
	n, err := io.ReadFull(b, buf[:3])
	if err != nil || string(buf[:n]) != "bye" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	if n, err := b.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d %v, want io.EOF", n, err)
	}
}

// TestDeadlines: a read with nothing to read and a write with no room
// left stop at their deadlines with the standard library's timeout error.
func TestDeadlines(t *testing.T) {
	a, b := pair(t)
	if err := b.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := b.Read(make([]byte, 8))
	checkTimeout(t, "read", err)

	// b never reads: a's write fills both buffers and then waits.
	if err := a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 64<<20)
	n, err := a.Write(big)
	checkTimeout(t, "write", err)
	if n <= 0 || n >= len(big) {
		t.Fatalf("wrote %d of %d before the deadline", n, len(big))
	}
}

func checkTimeout(t *testing.T, op string, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s past its deadline: %v, want a timeout", op, err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op {
		t.Fatalf("%s: %#v, want an *net.OpError of %q", op, err, op)
	}
}

// TestClosed: reading or writing a closed connection is net.ErrClosed.
func TestClosed(t *testing.T) {
	a, _ := pair(t)
	a.Close()
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestBrokenPipe: writing to a connection the peer reset fails with the
// system's error, not a hang or a silent success forever.
func TestBrokenPipe(t *testing.T) {
	a, b := pair(t)
	if tc, ok := b.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0) // close with a reset
	}
	b.Close()
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = a.Write([]byte("after the reset"))
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		t.Fatalf("write to a reset connection: %v", err)
	}
}

// TestConcurrentWrites: writes from several goroutines never interleave
// within one Write, as on the standard connection.
func TestConcurrentWrites(t *testing.T) {
	a, b := pair(t)
	const writers, each, size = 8, 200, 20000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, size)
			for i := range each {
				binary.BigEndian.PutUint32(rec, uint32(w))
				binary.BigEndian.PutUint32(rec[4:], uint32(i))
				for j := 8; j < size; j++ {
					rec[j] = byte(w)
				}
				if _, err := a.Write(rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); a.Close() }()
	next := make([]int, writers)
	rec := make([]byte, size)
	for range writers * each {
		if _, err := io.ReadFull(b, rec); err != nil {
			t.Fatal(err)
		}
		w, i := int(binary.BigEndian.Uint32(rec)), int(binary.BigEndian.Uint32(rec[4:]))
		if w >= writers || i != next[w] || bytes.Count(rec[8:], []byte{byte(w)}) != size-8 {
			t.Fatalf("record %d of writer %d torn or out of order (want %d)", i, w, next[w])
		}
		next[w]++
	}
}

// BenchmarkRoundTrip: a 64-byte request and its answer over loopback, on
// raw connections and on the standard library's.
func BenchmarkRoundTrip(b *testing.B) {
	for _, raw := range []bool{true, false} {
		name := "raw"
		if !raw {
			name = "std"
		}
		b.Run(name, func(b *testing.B) {
			x, y := pair(b)
			if !raw {
				xc, ok := x.(*Conn)
				yc, ok2 := y.(*Conn)
				if !ok || !ok2 {
					b.Skip("the connections are the standard library's on this system")
				}
				x, y = xc.TCPConn, yc.TCPConn
			}
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(y, buf); err != nil {
						return
					}
					if _, err := y.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := x.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(x, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
