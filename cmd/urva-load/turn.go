package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"urva/internal/proccpu"
	"urva/transport/turn/coturntool"
)

// uclient load of the TURN scenario: -turn-sessions sessions (-m), each
// sending one turnLength-byte message (-l) every turnInterval (-z) for the
// scenario's duration.
const (
	turnLength   = 120
	turnInterval = 5 * time.Millisecond
)

// runTURN relays the same turnutils_uclient load through the built-in
// server (bin/urva serve, SQLite) and through coturn's turnserver, and
// reports loss and the server's CPU seconds per million packets (packets =
// messages sent + received by uclient; each crosses the relay twice).
func runTURN(o *opts) ([]Result, error) {
	uclient, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		return nil, errors.New("turnutils_uclient not found (Debian package coturn): TURN not measured")
	}
	peerPath, err := exec.LookPath("turnutils_peer")
	if err != nil {
		return nil, errors.New("turnutils_peer not found (Debian package coturn): TURN not measured")
	}
	peerPort, stopPeer, err := coturntool.StartPeer(peerPath, os.Stderr)
	if err != nil {
		return nil, err
	}
	defer stopPeer()
	msgs := int(o.duration / turnInterval)
	var rows []Result

	// The built-in server.
	db, err := newBenchDB(o, "sqlite")
	if err != nil {
		return nil, err
	}
	defer db.drop()
	c, err := startUrva(o, db.dir, urvaConfig{driver: "sqlite", dsn: db.dsn, apiBase: "http://127.0.0.1:9/v23.0"})
	if err != nil {
		return nil, err
	}
	_, ps, _ := net.SplitHostPort(c.turnAddr)
	port, _ := strconv.Atoi(ps)
	var prof chan error
	if o.profile != "" {
		prof = make(chan error, 1)
		// uclient waits 1 to 6 s before sending: cover its whole run.
		go func() { prof <- c.cpuProfile(o.duration+8*time.Second, filepath.Join(o.profile, "turn.pprof")) }()
	}
	row, err := uclientRun(uclient, c.pid(), port, peerPort, o.turnSessions, msgs)
	if prof != nil {
		if perr := <-prof; perr != nil {
			fmt.Fprintf(os.Stderr, "urva-load: profile of turn: %v\n", perr)
		}
	}
	c.stop()
	row.Variant, row.Server = "built-in", "child: bin/urva serve (pion TURN)"
	rows = append(rows, row)
	if err != nil {
		return rows, err
	}

	// coturn, when installed.
	ts, err := exec.LookPath("turnserver")
	if err != nil {
		rows = append(rows, Result{Variant: "coturn", Note: "turnserver not installed: not measured"})
		return rows, nil
	}
	port, err = freeUDPTCPPort()
	if err != nil {
		return rows, err
	}
	logf := db.dir + "/turnserver.log"
	cmd := exec.Command(ts, "-n", "-L", "127.0.0.1", "-E", "127.0.0.1", "-p", strconv.Itoa(port),
		"--use-auth-secret", "--static-auth-secret", benchTURNSecret, "-r", "urva",
		"--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--simple-log", "-l", logf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return rows, fmt.Errorf("turnserver: %w", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(time.Second) // no readiness signal; uclient retries anyway
	row, err = uclientRun(uclient, cmd.Process.Pid, port, peerPort, o.turnSessions, msgs)
	row.Variant, row.Server = "coturn", "child: turnserver "+coturnVersion(ts)
	rows = append(rows, row)
	return rows, err
}

// uclientRun runs uclient against the server on port and reads its report
// and the server's CPU time over the run.
func uclientRun(uclient string, pid, port, peerPort, sessions, msgs int) (Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-u", "bench", "-W", benchTURNSecret, "-n", strconv.Itoa(msgs), "-m", strconv.Itoa(sessions),
		"-l", strconv.Itoa(turnLength), "-z", strconv.Itoa(int(turnInterval / time.Millisecond)),
		"-e", "127.0.0.1", "-r", strconv.Itoa(peerPort), "-p", strconv.Itoa(port), "127.0.0.1"}
	cpu0, t0 := proccpu.Seconds(pid), time.Now()
	out, err := exec.CommandContext(ctx, uclient, args...).CombinedOutput()
	cpu := proccpu.Seconds(pid) - cpu0
	row := Result{Seconds: time.Since(t0).Seconds(), ServerCPU: cpu / time.Since(t0).Seconds(), RSSMB: float64(procRSS(pid)) / (1 << 20)}
	rep, ok := coturntool.ParseReport(string(out))
	if !ok {
		return row, fmt.Errorf("uclient %s: no report (%v): %s", strings.Join(args, " "), err, tail(string(out)))
	}
	sent, recv := int64(rep.Sent), int64(rep.Received)
	row.Sent, row.Received, row.OK = sent, recv, recv
	row.LossPct, _ = strconv.ParseFloat(rep.LossPercent, 64)
	if pk := sent + recv; pk > 0 {
		row.CPUPerM = cpu / float64(pk) * 1e6
		row.PerSec = float64(pk) / row.Seconds
	}
	row.Note = fmt.Sprintf("%.1f CPU s per M packets, loss %s%% (lost %d); uclient -m %d -n %d -l %d -z %d; per s = packets incl. uclient's 1-6s start wait",
		row.CPUPerM, rep.LossPercent, rep.Lost, sessions, msgs, turnLength, int(turnInterval/time.Millisecond))
	return row, nil
}

func coturnVersion(path string) string {
	out, _ := exec.Command(path, "--version").CombinedOutput()
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}
