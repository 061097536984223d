package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one row of the table: one scenario (or one variant of it, e.g.
// one rate) as measured.
type Result struct {
	Scenario string  `json:"scenario"`
	Variant  string  `json:"variant,omitempty"`
	Server   string  `json:"server,omitempty"` // what served, and how it ran
	Rate     int     `json:"target_rate,omitempty"`
	Seconds  float64 `json:"seconds,omitempty"`
	Round    int     `json:"round,omitempty"` // with -repeat: which round (from 1)

	Sent   int64   `json:"sent,omitempty"`
	OK     int64   `json:"ok,omitempty"`
	Errors int64   `json:"errors,omitempty"`
	PerSec float64 `json:"per_sec,omitempty"` // accepted (2xx) per second, or sends/s, or frames/s
	P50ms  float64 `json:"p50_ms,omitempty"`
	P99ms  float64 `json:"p99_ms,omitempty"`
	MaxMs  float64 `json:"max_ms,omitempty"`

	// Asked is how many idle sockets -sockets asked for, when the
	// open-file limit allowed fewer (OK is how many were held).
	Asked int64 `json:"asked,omitempty"`

	DBCount  int64 `json:"db_count,omitempty"` // rows found afterwards
	Received int64 `json:"received,omitempty"` // frames on RM sockets / packets relayed

	ServerCPU float64 `json:"server_cpu_cores,omitempty"`    // server CPU seconds per second
	GenCPU    float64 `json:"generator_cpu_cores,omitempty"` // this process
	DBCPU     float64 `json:"db_cpu_cores,omitempty"`        // the local MariaDB/MySQL server, when there is one
	RSSMB     float64 `json:"server_rss_mb,omitempty"`
	PerItemKB float64 `json:"rss_kb_per_socket,omitempty"`
	CPUPerM   float64 `json:"cpu_s_per_million_packets,omitempty"`
	LossPct   float64 `json:"loss_pct,omitempty"`

	Note string `json:"note,omitempty"`
}

func f1(v float64) string {
	if v == 0 {
		return "-"
	}
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (r *Result) line() string {
	return fmt.Sprintf("%s %s: %s/s ok=%d err=%d p50=%sms p99=%sms max=%sms db=%d recv=%d cpu=%s gen=%s dbcpu=%s rss=%sMB %s",
		r.Scenario, r.Variant, f1(r.PerSec), r.OK, r.Errors, f1(r.P50ms), f1(r.P99ms), f1(r.MaxMs),
		r.DBCount, r.Received, f1(r.ServerCPU), f1(r.GenCPU), f1(r.DBCPU), f1(r.RSSMB), r.Note)
}

// Machine describes where the suite ran.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemoryMB  int64  `json:"memory_mb"`
	Go        string `json:"go"`
	Kernel    string `json:"kernel"`
	OpenFiles uint64 `json:"open_files_limit"`
}

// Target is one of the targets and whether this run met it.
type Target struct {
	Name   string `json:"name"`
	Want   string `json:"want"`
	Got    string `json:"got"`
	Status string `json:"status"` // met, missed, not run
}

// Report is what suite prints and writes.
type Report struct {
	Started  time.Time `json:"started"`
	Command  string    `json:"command"`
	Machine  Machine   `json:"machine"`
	Duration string    `json:"duration_per_scenario"`
	Results  []Result  `json:"results"`
	Targets  []Target  `json:"targets"`
}

func newReport(o *opts) *Report {
	return &Report{
		Started:  time.Now().UTC(),
		Command:  strings.Join(os.Args, " "),
		Machine:  machine(),
		Duration: o.duration.String(),
	}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OpenFiles: fdLimit()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var kb int64
			if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
				m.MemoryMB = kb / 1024
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// find returns the result of scenario (and variant, when set) in round (0
// without -repeat).
func (rep *Report) find(scenario, variant string, round int) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario == scenario && (variant == "" || r.Variant == variant) && r.Round == round {
			return r
		}
	}
	return nil
}

// rounds lists the rounds the results come from ([0] without -repeat).
func (rep *Report) rounds() []int {
	var out []int
	seen := map[int]bool{}
	for _, r := range rep.Results {
		if !seen[r.Round] {
			seen[r.Round] = true
			out = append(out, r.Round)
		}
	}
	return out
}

// measure is one target's figure in one round: v orders the rounds (the
// median round is reported), got describes it, ok says whether it meets
// the target.
type measure struct {
	v   float64
	got string
	ok  bool
}

// targetSpec is a target and how to read its figure from one round; nil
// when the round lacks the scenarios it needs.
type targetSpec struct {
	name, want, unit string
	of               func(round int) *measure
}

// evaluate compares the results with the targets. With several rounds,
// each target reports its median round (by the figure it is judged on),
// and the figure of every round.
func (rep *Report) evaluate() {
	rounds := rep.rounds()
	for _, spec := range rep.targetSpecs() {
		t := Target{Name: spec.name, Want: spec.want, Status: "not run"}
		var ms []*measure
		for _, round := range rounds {
			if m := spec.of(round); m != nil {
				ms = append(ms, m)
			}
		}
		if len(ms) > 0 {
			sorted := slices.Clone(ms)
			slices.SortStableFunc(sorted, func(a, b *measure) int { return cmp.Compare(a.v, b.v) })
			med := sorted[(len(sorted)-1)/2]
			t.Got, t.Status = med.got, "missed"
			if med.ok {
				t.Status = "met"
			}
			if len(ms) > 1 {
				var each []string
				for _, m := range ms {
					each = append(each, strconv.FormatFloat(m.v, 'f', -1, 64))
				}
				t.Got = fmt.Sprintf("median of %d rounds: %s; each round: %s %s", len(ms), med.got, strings.Join(each, ", "), spec.unit)
			}
		}
		rep.Targets = append(rep.Targets, t)
	}
}

// targetSpecs are the targets.
func (rep *Report) targetSpecs() []targetSpec {
	// round2 keeps the digits the figure is printed with.
	round2 := func(v float64, digits int) float64 {
		p := math.Pow10(digits)
		return math.Round(v*p) / p
	}
	// ingestOver is ingest on MariaDB as a multiple of base's rate.
	ingestOver := func(base string, want float64, digits int) targetSpec {
		name := fmt.Sprintf("ingest (MariaDB) vs %s", base)
		return targetSpec{name, ">= " + strconv.FormatFloat(want, 'f', -1, 64) + "x", "x", func(round int) *measure {
			b, ing := rep.find(base, "", round), rep.find("ingest-mysql", "", round)
			if b == nil || ing == nil || b.PerSec <= 0 {
				return nil
			}
			x := ing.PerSec / b.PerSec
			got := fmt.Sprintf("%.*fx (%.0f / %.0f msg/s)", digits, x, ing.PerSec, b.PerSec) + rep.cpuBudget(ing, want*b.PerSec)
			return &measure{round2(x, digits), got, x >= want}
		}}
	}
	return []targetSpec{
		ingestOver("ceiling", 0.35, 3),
		ingestOver("naive", 3, 2),
		{"e2e p99 at 5k msg/s, 1,000 RMs", "<= 10 ms", "ms", func(round int) *measure {
			e := rep.find("e2e", "5000/s mysql", round)
			if e == nil {
				return nil
			}
			return &measure{round2(e.P99ms, 2), fmt.Sprintf("%.2f ms (%.0f msg/s achieved, %d RMs)", e.P99ms, e.PerSec, rep.rmsOf(e)),
				e.P99ms <= 10 && e.PerSec >= 0.95*5000 && e.Errors == 0}
		}},
		{"RSS per idle RM socket", "<= 12 KB", "KB", func(round int) *measure {
			e := rep.find("idle", "", round)
			if e == nil || e.PerItemKB <= 0 {
				return nil
			}
			got := fmt.Sprintf("%.2f KB (%d sockets)", e.PerItemKB, e.OK)
			if e.Asked > e.OK {
				got = fmt.Sprintf("%.2f KB (%d sockets of the %d asked: the open-file limit allowed no more)", e.PerItemKB, e.OK, e.Asked)
			}
			return &measure{round2(e.PerItemKB, 2), got, e.PerItemKB <= 12}
		}},
		{"TURN CPU per packet vs coturn, no loss", "<= coturn, 0 loss", "x coturn's CPU", func(round int) *measure {
			b, c := rep.find("turn", "built-in", round), rep.find("turn", "coturn", round)
			if b == nil || c == nil || b.CPUPerM <= 0 || c.CPUPerM <= 0 {
				return nil
			}
			return &measure{round2(b.CPUPerM/c.CPUPerM, 2),
				fmt.Sprintf("%.1f vs %.1f CPU s per M packets, loss %.3f%% vs %.3f%%", b.CPUPerM, c.CPUPerM, b.LossPct, c.LossPct),
				b.CPUPerM <= c.CPUPerM && b.LossPct == 0}
		}},
	}
}

// cpuBudget tells what a rate of need messages per second leaves for each
// message on this machine's CPUs, and what ing spent per message: the
// server's, the database server's and the generator's CPU, which share the
// machine. Empty when the database's CPU was not measured (it is
// elsewhere) or the machine is not known.
func (rep *Report) cpuBudget(ing *Result, need float64) string {
	cpus := rep.Machine.CPUs
	if cpus <= 0 || ing.DBCPU <= 0 || ing.PerSec <= 0 || need <= 0 {
		return ""
	}
	per := func(cores float64) float64 { return cores / ing.PerSec * 1e6 }
	return fmt.Sprintf("; %.0f msg/s leaves %.0f µs of CPU per message on %d CPUs, this run spent %.0f (server %.0f, MariaDB %.0f, generator %.0f)",
		need, float64(cpus)/need*1e6, cpus, per(ing.ServerCPU+ing.DBCPU+ing.GenCPU), per(ing.ServerCPU), per(ing.DBCPU), per(ing.GenCPU))
}

func (rep *Report) rmsOf(r *Result) int {
	var n int
	fmt.Sscanf(r.Note, "%d RMs", &n)
	return n
}

func (rep *Report) print(w io.Writer) {
	fmt.Fprintf(w, "\nurva-load suite, %s, %d CPUs (%s), %d MB, %s, %s per scenario\n\n",
		rep.Started.Format(time.RFC3339), rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.MemoryMB, rep.Machine.Go, rep.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tround\tvariant\tper s\tok\terrors\tp50 ms\tp99 ms\tmax ms\tdb rows\trecv\tsrv cores\tgen cores\tdb cores\tsrv RSS MB\tnote\t")
	for _, r := range rep.Results {
		round := "-"
		if r.Round > 0 {
			round = strconv.Itoa(r.Round)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, round, r.Variant, f1(r.PerSec), r.OK, r.Errors, f1(r.P50ms), f1(r.P99ms), f1(r.MaxMs),
			r.DBCount, r.Received, f1(r.ServerCPU), f1(r.GenCPU), f1(r.DBCPU), f1(r.RSSMB), r.Note)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\twant\tgot\tstatus")
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Want, t.Got, t.Status)
	}
	tw.Flush()
}

func (rep *Report) write(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
