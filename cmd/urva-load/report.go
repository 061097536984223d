package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
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

	Sent   int64   `json:"sent,omitempty"`
	OK     int64   `json:"ok,omitempty"`
	Errors int64   `json:"errors,omitempty"`
	PerSec float64 `json:"per_sec,omitempty"` // accepted (2xx) per second, or sends/s, or frames/s
	P50ms  float64 `json:"p50_ms,omitempty"`
	P99ms  float64 `json:"p99_ms,omitempty"`
	MaxMs  float64 `json:"max_ms,omitempty"`

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

func (rep *Report) find(scenario, variant string) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario == scenario && (variant == "" || r.Variant == variant) {
			return r
		}
	}
	return nil
}

// evaluate compares the results with the targets.
func (rep *Report) evaluate() {
	status := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	ceil, ing, naive := rep.find("ceiling", ""), rep.find("ingest-mysql", ""), rep.find("naive", "")
	t := Target{Name: "ingest (MariaDB) vs ceiling", Want: ">= 0.35x", Status: "not run"}
	if ceil != nil && ing != nil && ceil.PerSec > 0 {
		x := ing.PerSec / ceil.PerSec
		t.Got, t.Status = fmt.Sprintf("%.3fx (%.0f / %.0f msg/s)", x, ing.PerSec, ceil.PerSec), status(x >= 0.35)
	}
	rep.Targets = append(rep.Targets, t)
	t = Target{Name: "ingest (MariaDB) vs naive", Want: ">= 3x", Status: "not run"}
	if naive != nil && ing != nil && naive.PerSec > 0 {
		x := ing.PerSec / naive.PerSec
		t.Got, t.Status = fmt.Sprintf("%.2fx (%.0f / %.0f msg/s)", x, ing.PerSec, naive.PerSec), status(x >= 3)
	}
	rep.Targets = append(rep.Targets, t)
	t = Target{Name: "e2e p99 at 5k msg/s, 1,000 RMs", Want: "<= 10 ms", Status: "not run"}
	if e := rep.find("e2e", "5000/s mysql"); e != nil {
		t.Got = fmt.Sprintf("%.2f ms (%.0f msg/s achieved, %d RMs)", e.P99ms, e.PerSec, rep.rmsOf(e))
		t.Status = status(e.P99ms <= 10 && e.PerSec >= 0.95*5000 && e.Errors == 0)
	}
	rep.Targets = append(rep.Targets, t)
	t = Target{Name: "RSS per idle RM socket", Want: "<= 12 KB", Status: "not run"}
	if e := rep.find("idle", ""); e != nil && e.PerItemKB > 0 {
		t.Got, t.Status = fmt.Sprintf("%.2f KB (%d sockets)", e.PerItemKB, e.OK), status(e.PerItemKB <= 12)
	}
	rep.Targets = append(rep.Targets, t)
	t = Target{Name: "TURN CPU per packet vs coturn, no loss", Want: "<= coturn, 0 loss", Status: "not run"}
	b, c := rep.find("turn", "built-in"), rep.find("turn", "coturn")
	if b != nil && c != nil && b.CPUPerM > 0 && c.CPUPerM > 0 {
		t.Got = fmt.Sprintf("%.1f vs %.1f CPU s per M packets, loss %.3f%% vs %.3f%%", b.CPUPerM, c.CPUPerM, b.LossPct, c.LossPct)
		t.Status = status(b.CPUPerM <= c.CPUPerM && b.LossPct == 0)
	}
	rep.Targets = append(rep.Targets, t)
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
	fmt.Fprintln(tw, "scenario\tvariant\tper s\tok\terrors\tp50 ms\tp99 ms\tmax ms\tdb rows\trecv\tsrv cores\tgen cores\tdb cores\tsrv RSS MB\tnote\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, r.Variant, f1(r.PerSec), r.OK, r.Errors, f1(r.P50ms), f1(r.P99ms), f1(r.MaxMs),
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
