package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"urva/internal/proccpu"
)

// Secrets of the server under test (never a reachable server).
const (
	benchTokenSecret = "urva-bench-token-secret-0123456789abcdef"
	benchAdminToken  = "urva-bench-admin-token"
	benchAccessToken = "urva-bench-access-token"
	benchVerifyToken = "urva-bench-verify-token"
	benchTURNSecret  = "urva-bench-turn-secret"
)

// child is a server under test running as a child process.
type child struct {
	name string
	cmd  *exec.Cmd
	addr string // HTTP host:port
	// turnAddr is the TURN listen address of bin/urva serve.
	turnAddr string
	out      *bytes.Buffer
	done     chan error
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// freeUDPPort returns a UDP port that was free on 127.0.0.1 a moment ago.
func freeUDPPort() (int, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// startChild starts path args and waits until GET http://addr/healthz
// answers (any status): the server is listening.
func startChild(o *opts, name, addr, path string, args ...string) (*child, error) {
	c := &child{name: name, addr: addr, out: &bytes.Buffer{}, done: make(chan error, 1)}
	c.cmd = exec.Command(path, args...)
	var w io.Writer = &limitedBuffer{b: c.out, max: 1 << 20}
	if o.verbose {
		w = io.MultiWriter(w, os.Stderr)
	}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-c.done:
			return nil, fmt.Errorf("%s exited while starting (%v): %s", name, err, tail(c.out.String()))
		default:
		}
		if resp, err := hc.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			return c, nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("%s did not listen on %s within 60s: %s", name, addr, tail(c.out.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (SIGKILL after 20s).
func (c *child) stop() error {
	if c == nil || c.cmd.Process == nil {
		return nil
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() && ee.ExitCode() != 0 {
			return fmt.Errorf("%s exited with %d: %s", c.name, ee.ExitCode(), tail(c.out.String()))
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("%s did not stop within 20s after SIGTERM", c.name)
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// procRSS is the resident set of process pid in bytes (VmRSS).
func procRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// urvaBinary returns the urva binary under test, building it when missing.
func urvaBinary(o *opts) (string, error) {
	if _, err := os.Stat(o.server); err == nil {
		return filepath.Abs(o.server)
	}
	out := filepath.Join(os.TempDir(), "urva-bench-server")
	fmt.Fprintf(os.Stderr, "   %s missing: go build -o %s ./cmd/urva\n", o.server, out)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/urva")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the server: %w (or pass -server)", err)
	}
	o.server = out
	return out, nil
}

// urvaConfig is what a scenario changes in the server's configuration.
type urvaConfig struct {
	driver, dsn string
	apiBase     string        // WhatsApp API (the fake provider)
	turnListen  string        // 127.0.0.1:port
	ping        time.Duration // http.socket_ping_interval; 0 keeps the default
	retries     int
}

// startUrva runs bin/urva serve with a generated configuration (not
// sandbox mode: no CRM sync, no sandbox providers; log level warn).
func startUrva(o *opts, dir string, uc urvaConfig) (*child, error) {
	bin, err := urvaBinary(o)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	pickTURN := uc.turnListen == ""
	if pickTURN {
		up, err := freeUDPTCPPort()
		if err != nil {
			return nil, err
		}
		uc.turnListen = "127.0.0.1:" + strconv.Itoa(up)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	sockets := ""
	if uc.ping > 0 {
		sockets = fmt.Sprintf("  socket_ping_interval: %s\n  socket_read_timeout: %s\n", uc.ping, 30*uc.ping)
	}
	cfg := fmt.Sprintf(`http:
  addr: %q
  public_url: "http://%s"
%sdatabase:
  driver: %s
  dsn: %q
auth:
  token_secret: %q
  admin_token: %q
  token_ttl: 12h
whatsapp:
  api_base: %q
  phone_number_id: %q
  access_token: %q
  app_secret: %q
  verify_token: %q
  business_number: "+%s"
turn:
  enabled: true
  listen: %q
  auth_secret: %q
  max_allocations_per_user: 0
sandbox:
  enabled: false
log:
  format: json
  level: warn
`, addr, addr, sockets, uc.driver, uc.dsn, benchTokenSecret, benchAdminToken, uc.apiBase, benchPhoneNumberID,
		benchAccessToken, benchAppSecret, benchVerifyToken, benchBusiness, uc.turnListen, benchTURNSecret)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	c, err := startChild(o, urvaChildName, addr, bin, "serve", "--config", path)
	if c != nil {
		c.turnAddr = uc.turnListen
	}
	if err != nil && strings.Contains(err.Error(), "address already in use") && uc.retries < 3 {
		// A port taken between the check and the bind: pick again.
		uc.retries++
		if pickTURN {
			uc.turnListen = ""
		}
		return startUrva(o, dir, uc)
	}
	return c, err
}

// freeUDPTCPPort returns a port free for both UDP and TCP on 127.0.0.1 (the
// TURN server listens on both).
func freeUDPTCPPort() (int, error) {
	var last error
	for try := 0; try < 20; try++ {
		p, err := freeUDPPort()
		if err != nil {
			last = err
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			last = err
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, last
}

// startSelf runs this binary's hidden server subcommand sub on a free port.
func startSelf(o *opts, sub string, args ...string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	return startChild(o, sub, addr, self, append([]string{sub, "-addr", addr}, args...)...)
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		if len(p) > room {
			l.b.Write(p[:room])
		} else {
			l.b.Write(p)
		}
	}
	return len(p), nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// window samples a child's CPU around a measurement.
type window struct {
	pid  int
	cpu0 float64
	t0   time.Time
}

func startWindow(pid int) window { return window{pid: pid, cpu0: proccpu.Seconds(pid), t0: time.Now()} }

// cores is the child's CPU seconds per second since the window started.
func (w window) cores() float64 {
	d := time.Since(w.t0).Seconds()
	if d <= 0 {
		return 0
	}
	return (proccpu.Seconds(w.pid) - w.cpu0) / d
}

// urvaChildName names the bin/urva serve child (the one with /debug/pprof).
const urvaChildName = "urva serve"

// cpuProfile fetches a CPU profile of d from the server's /debug/pprof and
// writes it to path.
func (c *child) cpuProfile(d time.Duration, path string) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	return c.pprof(fmt.Sprintf("profile?seconds=%d", secs), path)
}

// pprof fetches /debug/pprof/<what> from the server and writes it to path.
func (c *child) pprof(what, path string) error {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/%s", c.addr, what), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+benchAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// batchStats is the group commit as the server's /metrics counts it, and
// the server's own time for WhatsApp webhooks.
type batchStats struct {
	batches, writes, seconds, requests, cached, misses float64
	// commitsIn5ms and commitsIn10ms count the commits that took at most 5
	// and 10 ms (urva_db_commit_seconds buckets).
	commitsIn5ms, commitsIn10ms float64
	// webhooks and webhooksIn10ms count the WhatsApp webhooks the server
	// answered, and those it answered within 10 ms of receiving them.
	webhooks, webhooksIn10ms float64
}

// batchStats reads the committer's histograms (urva_db_batch_rows,
// urva_db_commit_seconds), its counters (urva_db_requests_total, the
// committed-conversation cache's) and the WhatsApp webhooks' durations
// (urva_webhook_duration_seconds) from the server's /metrics.
func (c *child) batchStats() (batchStats, error) {
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", c.addr))
	if err != nil {
		return batchStats{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return batchStats{}, fmt.Errorf("metrics: %s", resp.Status)
	}
	var st batchStats
	fields := map[string]*float64{
		"urva_db_batch_rows_count":                                            &st.batches,
		"urva_db_batch_rows_sum":                                              &st.writes,
		"urva_db_commit_seconds_sum":                                          &st.seconds,
		"urva_db_requests_total":                                              &st.requests,
		"urva_db_cached_batches_total":                                        &st.cached,
		"urva_db_cache_misses_total":                                          &st.misses,
		`urva_db_commit_seconds_bucket{le="0.005"}`:                           &st.commitsIn5ms,
		`urva_db_commit_seconds_bucket{le="0.01"}`:                            &st.commitsIn10ms,
		`urva_webhook_duration_seconds_count{provider="whatsapp"}`:            &st.webhooks,
		`urva_webhook_duration_seconds_bucket{provider="whatsapp",le="0.01"}`: &st.webhooksIn10ms,
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		dst, ok := fields[name]
		if !ok {
			continue
		}
		if *dst, err = strconv.ParseFloat(value, 64); err != nil {
			return batchStats{}, fmt.Errorf("metrics: %s: %w", name, err)
		}
	}
	return st, sc.Err()
}

// note describes the batches between s0 and s over a window of d.
func (s batchStats) note(s0 batchStats, d time.Duration) string {
	n := s.batches - s0.batches
	if n <= 0 {
		return ""
	}
	busy := (s.seconds - s0.seconds) / d.Seconds()
	note := fmt.Sprintf("batches: %.0f writes, %.2f ms each, committer busy %.0f%%, %.1f requests each",
		(s.writes-s0.writes)/n, (s.seconds-s0.seconds)/n*1e3, busy*100, (s.requests-s0.requests)/n)
	if c := s.cached - s0.cached; c > 0 {
		note += fmt.Sprintf(", %.0f%% from the conversation cache (%.0f rerun)", c/n*100, s.misses-s0.misses)
	}
	// The slow commits, and what the server's own clock says of the
	// webhooks' tail: a slow commit holds every write queued behind it.
	over5 := n - (s.commitsIn5ms - s0.commitsIn5ms)
	over10 := n - (s.commitsIn10ms - s0.commitsIn10ms)
	note += fmt.Sprintf("; %.0f commits over 5 ms (%.0f over 10 ms)", over5, over10)
	if w := s.webhooks - s0.webhooks; w > 0 {
		slow := w - (s.webhooksIn10ms - s0.webhooksIn10ms)
		note += fmt.Sprintf("; the server took over 10 ms for %.2f%% of the webhooks", slow/w*100)
	}
	return note
}
