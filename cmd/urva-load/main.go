// Command urva-load is the load generator and benchmark suite of the urva
// server: it sends signed, unique WhatsApp webhooks over many keep-alive
// connections (at a fixed rate or flat out), holds RM live sockets open,
// measures the latency from a webhook sent to the frame received on an RM's
// socket, and drives the TURN relay with coturn's test client.
//
// Every server under test runs as a child process: bin/urva serve for the
// urva scenarios, and urva-load itself (hidden subcommands) for the no-op
// fasthttp ceiling and the naive net/http baseline, so that the server's CPU
// time and resident memory are its own. Usage: urva-load help.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

// opts are the flags shared by every subcommand.
type opts struct {
	duration     time.Duration
	warmup       time.Duration
	rate         int // msg/s; 0 = flat out
	conns        int
	contacts     int
	rms          int
	sockets      int
	sources      int
	rates        string
	driver       string // database of outbound, e2e and idle
	server       string // bin/urva
	mysql        string // go-sql-driver DSN of the MariaDB/MySQL server, no database
	jsonOut      string
	scenarios    string
	keep         bool
	verbose      bool
	profile      string // directory for the servers' CPU profiles
	repeat       int    // rounds of the scenarios
	genMemory    int64  // the generator's own memory limit; 0 = Go's default collector
	turnSessions int    // uclient sessions of the TURN scenario (-m)
}

func (o *opts) register(fs *flag.FlagSet) {
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured time of each scenario (and of each rate of e2e)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measurement")
	fs.IntVar(&o.rate, "rate", 0, "webhooks per second for ingest/ceiling/naive; 0 = flat out")
	fs.IntVar(&o.conns, "conns", 64, "keep-alive connections (one sender goroutine each)")
	fs.IntVar(&o.contacts, "contacts", 2000, "distinct contacts the webhooks come from (round robin)")
	fs.IntVar(&o.rms, "rms", 1000, "RMs connected in e2e (one socket each)")
	fs.IntVar(&o.sockets, "sockets", 50000, "idle RM sockets held open in idle")
	fs.IntVar(&o.sources, "sources", 4, "127.0.0.x source addresses the idle sockets come from")
	fs.StringVar(&o.driver, "driver", "mysql", "database of outbound, e2e and idle: mysql or sqlite")
	fs.StringVar(&o.rates, "rates", "1000,5000,10000", "fixed webhook rates of e2e, msg/s")
	fs.StringVar(&o.server, "server", "bin/urva", "the urva binary under test (built with go build when missing)")
	fs.StringVar(&o.mysql, "mysql", envOr("URVA_BENCH_MYSQL", "root@tcp(127.0.0.1:3306)/"), "MariaDB/MySQL server DSN without a database; a fresh urva_bench_<random> database is made per scenario")
	fs.StringVar(&o.jsonOut, "json", "bench.json", "where suite writes its results (empty: nowhere)")
	fs.StringVar(&o.scenarios, "scenarios", "ceiling,ingest-sqlite,ingest-mysql,naive,outbound,statuses,e2e,idle,turn", "suite: the scenarios to run, in order")
	fs.BoolVar(&o.keep, "keep", false, "keep the bench databases and directories")
	fs.BoolVar(&o.verbose, "v", false, "show the servers' logs")
	fs.StringVar(&o.profile, "profile", "", "directory: write a CPU profile of each urva server over its measured window (<scenario>.pprof)")
	fs.IntVar(&o.turnSessions, "turn-sessions", 50, "TURN: turnutils_uclient sessions (-m), each sending a 120-byte message every 5 ms through its allocation")
	fs.IntVar(&o.repeat, "repeat", 1, "rounds: every scenario runs once per round, in order; the targets report the median round (an odd number gives a true median)")
	fs.Int64Var(&o.genMemory, "gen-memory", 2<<30, "bytes: the generator collects its garbage only when its heap nears this (GOGC off, this as GOMEMLIMIT), so its collections stay out of what it measures; 0 = Go's default (GOGC 100); the servers under test are not affected")
}

// quietCollector keeps urva-load's own garbage collector out of its
// measurements: at GOGC 100 its small heap was collected about twice a
// second, and on a machine whose CPUs the server and the database keep
// busy a collection's stop-the-world phases took 1 to 5 ms to reach every
// thread, during which no frame was read and no webhook sent. A GOGC or
// GOMEMLIMIT in the environment wins.
func quietCollector(limit int64) {
	if limit <= 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(limit)
	debug.SetGCPercent(-1)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// scenario runs one named scenario and returns its rows.
type scenario func(o *opts) ([]Result, error)

var scenarios = map[string]scenario{
	"ceiling":       runCeiling,
	"ingest-sqlite": func(o *opts) ([]Result, error) { return runIngest(o, "sqlite") },
	"ingest-mysql":  func(o *opts) ([]Result, error) { return runIngest(o, "mysql") },
	"naive":         runNaive,
	"outbound":      runOutbound,
	"statuses":      runStatuses,
	"e2e":           runE2E,
	"idle":          runIdle,
	"turn":          runTURN,
}

const usage = `urva-load: load generator and benchmark suite of the urva server

  urva-load suite [flags]          run -scenarios, print one table, write -json
  urva-load <scenario> [flags]     run one scenario: ceiling, ingest-sqlite,
                                   ingest-mysql, naive, outbound, statuses, e2e,
                                   idle, turn

Flags (all subcommands):
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case childNoop:
		childServeNoop(args)
		return
	case childNaive:
		childServeNaive(args)
		return
	}
	raiseFDLimit()
	var o opts
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	o.register(fs)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	switch cmd {
	case "help", "-h", "--help":
		fs.Usage()
		return
	}
	_ = fs.Parse(args)
	quietCollector(o.genMemory)
	var names []string
	if cmd == "suite" {
		for _, n := range strings.Split(o.scenarios, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	} else {
		names = []string{cmd}
	}
	for _, n := range names {
		if scenarios[n] == nil {
			fmt.Fprintf(os.Stderr, "urva-load: unknown scenario %q\n", n)
			fs.Usage()
			os.Exit(2)
		}
	}
	rep := newReport(&o)
	failed := false
	rounds := max(1, o.repeat)
	for round := 1; round <= rounds; round++ {
		for _, n := range names {
			if rounds > 1 {
				fmt.Fprintf(os.Stderr, "== %s (round %d of %d)\n", n, round, rounds)
			} else {
				fmt.Fprintf(os.Stderr, "== %s\n", n)
			}
			rows, err := scenarios[n](&o)
			if err != nil {
				fmt.Fprintf(os.Stderr, "   %s: %v\n", n, err)
				rows = append(rows, Result{Variant: "error", Note: err.Error()})
				failed = true
			}
			for i := range rows {
				rows[i].Scenario = n
				if rounds > 1 {
					rows[i].Round = round
				}
				if rows[i].Variant != "error" {
					fmt.Fprintln(os.Stderr, "   "+rows[i].line())
				}
			}
			rep.Results = append(rep.Results, rows...)
		}
	}
	rep.evaluate()
	rep.print(os.Stdout)
	if o.jsonOut != "" {
		if err := rep.write(o.jsonOut); err != nil {
			fmt.Fprintln(os.Stderr, "urva-load:", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", o.jsonOut)
	}
	if failed {
		os.Exit(1)
	}
}

// raiseFDLimit lifts the open-file limit as far as allowed (the children
// inherit it): idle holds tens of thousands of sockets on each side.
func raiseFDLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		var n uint64
		if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &n); err == nil && n > 0 {
			want = n
		}
	}
	if want > l.Max {
		nl := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl) == nil {
			return
		}
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

// fdLimit is the current soft open-file limit.
func fdLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 1024
	}
	return l.Cur
}
