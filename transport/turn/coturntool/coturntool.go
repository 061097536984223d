// Package coturntool runs coturn's test programs against a TURN server:
// turnutils_peer as the UDP echo peer behind the relay, and the report of
// turnutils_uclient. The acceptance tests of the built-in TURN server and
// the TURN benchmark share it.
package coturntool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// StartPeer runs turnutils_peer (at path) on 127.0.0.1. It echoes UDP on its
// port and the next one (uclient's RTCP session talks to port+1) and gives
// no sign when it cannot bind, so a free pair of ports is chosen first and
// the running peer must echo on both before its port is returned. out gets
// the peer's output; stop ends it.
func StartPeer(path string, out io.Writer) (port int, stop func(), err error) {
	for try := 0; try < 10; try++ {
		p, perr := freeUDPPair()
		if perr != nil {
			err = perr
			continue
		}
		var buf bytes.Buffer
		cmd := exec.Command(path, "-L", "127.0.0.1", "-p", strconv.Itoa(p))
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&buf, out), io.MultiWriter(&buf, out)
		if err := cmd.Start(); err != nil {
			return 0, nil, fmt.Errorf("turnutils_peer: %w", err)
		}
		stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		if eerr := Echoes(p, p+1); eerr == nil {
			return p, stop, nil
		} else {
			err = fmt.Errorf("turnutils_peer on port %d: %w (output: %q)", p, eerr, buf.String())
		}
		stop()
	}
	return 0, nil, fmt.Errorf("no turnutils_peer: %w", err)
}

// freeUDPPair returns a port p such that p and p+1 are free on 127.0.0.1.
func freeUDPPair() (int, error) {
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer a.Close()
	port := a.LocalAddr().(*net.UDPAddr).Port
	if port >= 65535 {
		return 0, errors.New("port at the top of the range")
	}
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
	if err != nil {
		return 0, err
	}
	_ = b.Close()
	return port, nil
}

// Echoes checks that something echoes a probe on each UDP port of
// 127.0.0.1, resending the probe (it is UDP) until a 3s deadline.
func Echoes(ports ...int) error {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(3 * time.Second)
	buf := make([]byte, 64)
	for _, port := range ports {
		to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		probe := []byte("probe-" + strconv.Itoa(port))
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("no echo on port %d", port)
			}
			if _, err := c.WriteToUDP(probe, to); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := c.ReadFromUDP(buf)
			if err == nil && from.Port == port && bytes.Equal(buf[:n], probe) {
				break
			}
		}
	}
	return nil
}

// Report is the totals of turnutils_uclient's final report.
type Report struct {
	Sent, Received, Lost, Dropped int
	LossPercent                   string // as printed, e.g. "0.000000"
}

var (
	reTotals = regexp.MustCompile(`(?m)start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	reLost   = regexp.MustCompile(`(?m)Total lost packets (\d+) \(([^)%]*)%?\), total send dropped (\d+) `)
)

// ParseReport reads uclient's final report, e.g.
//
//	start_mclient: tot_send_msgs=40, tot_recv_msgs=40
//	Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
//
// ok is false when the output has none.
func ParseReport(out string) (r Report, ok bool) {
	m := reTotals.FindStringSubmatch(out)
	l := reLost.FindStringSubmatch(out)
	if m == nil || l == nil {
		return Report{}, false
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	return Report{Sent: atoi(m[1]), Received: atoi(m[2]), Lost: atoi(l[1]), Dropped: atoi(l[3]), LossPercent: l[2]}, true
}
