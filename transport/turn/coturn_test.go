package turn

// Acceptance test against coturn's own test client: turnutils_uclient
// allocates relays on the built-in server with TURN REST credentials it
// derives from the shared secret (-W), binds channels to a turnutils_peer
// echo server and counts the packets that come back through the relays.

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"urva/transport/turn/coturntool"

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

// startCoturnPeer runs turnutils_peer on 127.0.0.1 until the test ends.
func startCoturnPeer(t *testing.T, path string) int {
	t.Helper()
	port, stop, err := coturntool.StartPeer(path, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return port
}

type uclientRun struct {
	name       string
	tcp        bool
	flags      []string      // more of uclient's options
	goroutines bool          // Options.GoroutineRelay
	secret     string        // -W
	secrets    []string      // the server's secrets
	skew       time.Duration // how far the server's clock is ahead
}

// loopRelays reports whether the relay loop relays r's ChannelData: UDP
// with channels, the loop on and supported.
func (r uclientRun) loopRelays() bool {
	if r.tcp || r.goroutines || !loopSupported {
		return false
	}
	for _, f := range r.flags {
		if f == "-s" { // Send and Data indications: pion's
			return false
		}
	}
	return true
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
			GoroutineRelay:        r.goroutines,
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
		args = append(append(args, r.flags...), "127.0.0.1")
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

// uclientReport reads the totals of uclient's final report.
func uclientReport(out string) (sent, recv, lost, dropped int, ok bool) {
	r, ok := coturntool.ParseReport(out)
	return r.Sent, r.Received, r.Lost, r.Dropped, ok
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
		// Send and Data indications instead of channels: pion relays them,
		// past the relay loop, both ways.
		{name: "udp send indications", flags: []string{"-s"}, secret: coturnSecret, secrets: current},
		// ChannelData padded to four bytes by the client too.
		{name: "udp padded channel data", flags: []string{"-D"}, secret: coturnSecret, secrets: current},
		// pion's goroutines relay everything.
		{name: "udp without the relay loop", goroutines: true, secret: coturnSecret, secrets: current},
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
			// Each message's ChannelData crosses the loop twice, to the
			// peer and back, when it relays them; otherwise never.
			if want := int64(0); r.loopRelays() && st.LoopPackets != int64(2*recv) || !r.loopRelays() && st.LoopPackets != want {
				t.Errorf("the relay loop relayed %d packets of %d messages (it relays them: %v, so want %d)", st.LoopPackets, recv, r.loopRelays(), map[bool]int{true: 2 * recv}[r.loopRelays()])
			}
			if st.Dropped != 0 {
				t.Errorf("the relay loop dropped %d packets", st.Dropped)
			}
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
