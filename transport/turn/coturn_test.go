package turn

// Acceptance test against coturn's own test client: turnutils_uclient
// allocates relays on the built-in server with TURN REST credentials it
// derives from the shared secret (-W), binds channels to a turnutils_peer
// echo server and counts the packets that come back through the relays.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

const (
	coturnSecret   = "coturn-acceptance-secret"
	coturnPrevious = "coturn-acceptance-previous"
	// uclient's -W credentials expire one day after it starts
	// (time(NULL) + 3600*24 in coturn's uclient).
	uclientCredentialTTL = 24 * time.Hour

	uclientMessages = 20  // -n: messages per session
	uclientClients  = 2   // -m: sessions (one client's RTP and RTCP)
	uclientLength   = 120 // -l: message length in bytes
)

// coturnTools returns the paths of turnutils_uclient and turnutils_peer. It
// skips the test when they are missing, or fails it when CI=true.
func coturnTools(t *testing.T) (uclient, peer string) {
	t.Helper()
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		p := filepath.Join("/usr/bin", name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
		return ""
	}
	uclient, peer = find("turnutils_uclient"), find("turnutils_peer")
	if uclient == "" || peer == "" {
		const msg = "turnutils_uclient and turnutils_peer not found on PATH or in /usr/bin: install Debian package coturn"
		if os.Getenv("CI") == "true" {
			t.Fatal("COTURN TESTS FAILED (CI=true): " + msg)
		}
		t.Skip("COTURN TESTS SKIPPED: " + msg)
	}
	return uclient, peer
}

// startCoturnPeer runs turnutils_peer on 127.0.0.1. It echoes UDP on its port
// and the next one (uclient's RTCP session talks to port+1), and gives no
// sign when it cannot bind, so a free pair of ports is chosen first and the
// running peer is asked for an echo on both before its port is returned.
func startCoturnPeer(t *testing.T, path string) int {
	t.Helper()
	var lastErr error
	for try := 0; try < 10; try++ {
		port, err := freeUDPPair()
		if err != nil {
			lastErr = err
			continue
		}
		var out bytes.Buffer
		cmd := exec.Command(path, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("turnutils_peer: %v", err)
		}
		stop := func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if err = echoes(port, port+1); err == nil {
			t.Cleanup(stop)
			return port
		}
		stop()
		lastErr = fmt.Errorf("turnutils_peer on port %d: %w (output: %q)", port, err, out.String())
	}
	t.Fatalf("no turnutils_peer: %v", lastErr)
	return 0
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

// echoes checks that something echoes a probe on each UDP port of
// 127.0.0.1, resending the probe (it is UDP) until a 3s deadline.
func echoes(ports ...int) error {
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

type uclientRun struct {
	name    string
	tcp     bool
	secret  string        // -W
	secrets []string      // the server's secrets
	skew    time.Duration // how far the server's clock is ahead
}

type uclientResult struct {
	args  string
	out   string
	err   error // the exit status
	took  time.Duration
	stats Stats // the server's, after uclient exited
}

// runUClients starts a server per run (four UDP sockets on one port each),
// runs every uclient at once against its server and the peer, and returns
// their outputs and exit statuses once all have exited. Running them
// together keeps the test short: uclient waits a random 1 to 6 seconds
// before a session starts sending.
func runUClients(t *testing.T, uclient string, peerPort int, runs []uclientRun) []uclientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	results := make([]uclientResult, len(runs))
	done := make(chan int, len(runs))
	for i, r := range runs {
		s, err := Start(Options{
			Listen:                "127.0.0.1:0",
			Realm:                 realm,
			Secrets:               r.secrets,
			MaxAllocationsPerUser: 10,
			UDPListeners:          4,
			Log:                   zerolog.Nop(),
			Clock:                 func() time.Time { return time.Now().Add(r.skew) },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		port := s.Addr().(*net.UDPAddr).Port
		if r.tcp {
			port = s.TCPAddr().(*net.TCPAddr).Port
		}
		args := []string{
			"-u", "rm-coturn", "-W", r.secret,
			"-n", strconv.Itoa(uclientMessages), "-m", strconv.Itoa(uclientClients),
			"-l", strconv.Itoa(uclientLength), "-z", "5",
			"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort),
			"-p", strconv.Itoa(port),
		}
		if r.tcp {
			args = append(args, "-t")
		}
		args = append(args, "127.0.0.1")
		cmd := exec.CommandContext(ctx, uclient, args...)
		results[i].args = strings.Join(args, " ")
		go func() {
			begin := time.Now()
			out, err := cmd.CombinedOutput()
			results[i].out, results[i].err, results[i].took = string(out), err, time.Since(begin)
			results[i].stats = s.Stats()
			done <- i
		}()
	}
	for range runs {
		<-done
	}
	if ctx.Err() != nil {
		t.Fatalf("turnutils_uclient runs did not finish in 30s: %+v", results)
	}
	return results
}

var (
	reTotals = regexp.MustCompile(`(?m)start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	reLost   = regexp.MustCompile(`(?m)Total lost packets (\d+) \([^)]*\), total send dropped (\d+) `)
)

// uclientReport reads the totals of uclient's final report, e.g.
//
//	start_mclient: tot_send_msgs=40, tot_recv_msgs=40
//	Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
func uclientReport(out string) (sent, recv, lost, dropped int, ok bool) {
	m := reTotals.FindStringSubmatch(out)
	l := reLost.FindStringSubmatch(out)
	if m == nil || l == nil {
		return 0, 0, 0, 0, false
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	return atoi(m[1]), atoi(m[2]), atoi(l[1]), atoi(l[2]), true
}

func TestCoturnUClient(t *testing.T) {
	uclient, peerPath := coturnTools(t)
	peer := startCoturnPeer(t, peerPath)
	current := []string{coturnSecret}
	rotating := []string{coturnSecret, coturnPrevious}
	expired := uclientCredentialTTL + time.Hour

	relays := []uclientRun{
		{name: "udp", secret: coturnSecret, secrets: current},
		{name: "tcp", tcp: true, secret: coturnSecret, secrets: current},
		// The previous secret still works during a rotation, and so do
		// credentials an hour before their expiry.
		{name: "udp previous secret near expiry", secret: coturnPrevious, secrets: rotating, skew: uclientCredentialTTL - time.Hour},
	}
	refused := []uclientRun{
		{name: "udp expired", secret: coturnSecret, secrets: current, skew: expired},
		{name: "tcp expired", tcp: true, secret: coturnSecret, secrets: current, skew: expired},
		{name: "udp wrong secret", secret: "not-the-secret", secrets: current},
		{name: "tcp wrong secret", tcp: true, secret: "not-the-secret", secrets: current},
		{name: "udp wrong secret while rotating", secret: "not-the-secret", secrets: rotating},
	}
	results := runUClients(t, uclient, peer, append(append([]uclientRun{}, relays...), refused...))

	for i, r := range relays {
		res := results[i]
		t.Run("relays "+r.name, func(t *testing.T) {
			t.Logf("turnutils_uclient %s: %v after %s\n%s", res.args, res.err, res.took.Round(time.Millisecond), res.out)
			if res.err != nil {
				t.Fatalf("turnutils_uclient failed: %v", res.err)
			}
			sent, recv, lost, dropped, ok := uclientReport(res.out)
			if !ok {
				t.Fatal("no report in turnutils_uclient's output")
			}
			if want := uclientMessages * uclientClients; sent != want {
				t.Errorf("sent %d messages, want %d", sent, want)
			}
			if recv != sent || lost != 0 || dropped != 0 {
				t.Errorf("sent %d, received %d, lost %d, send dropped %d: want every message back", sent, recv, lost, dropped)
			}
			st := res.stats
			// Each message crosses a relay socket twice: to the peer and back.
			if min := int64(sent * uclientLength * 2); st.RelayedBytes < min {
				t.Errorf("relayed %d bytes, want at least %d", st.RelayedBytes, min)
			}
			if st.AllocationsTotal < uclientClients || st.AuthFailures != 0 || st.AllocationsRefused != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	for i, r := range refused {
		res := results[len(relays)+i]
		t.Run("refused "+r.name, func(t *testing.T) {
			t.Logf("turnutils_uclient %s: %v after %s\n%s", res.args, res.err, res.took.Round(time.Millisecond), res.out)
			var exit *exec.ExitError
			if !errors.As(res.err, &exit) {
				t.Fatalf("turnutils_uclient: %v, want a failed exit", res.err)
			}
			if sent, _, _, _, ok := uclientReport(res.out); ok && sent > 0 {
				t.Errorf("%d messages sent through a refused allocation", sent)
			}
			if st := res.stats; st.AuthFailures == 0 || st.AllocationsTotal != 0 || st.RelayedBytes != 0 {
				t.Errorf("stats %+v, want auth failures and no allocation", st)
			}
		})
	}
}
