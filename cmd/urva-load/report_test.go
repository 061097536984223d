package main

import (
	"strings"
	"testing"
)

// round returns the rows of one suite round.
func roundRows(round int, ceiling, ingest, naive, p99, kb, turnB, turnC float64) []Result {
	return []Result{
		{Scenario: "ceiling", Round: round, PerSec: ceiling},
		{Scenario: "ingest-mysql", Variant: "mysql", Round: round, PerSec: ingest},
		{Scenario: "naive", Round: round, PerSec: naive},
		{Scenario: "e2e", Variant: "5000/s mysql", Round: round, PerSec: 5000, P99ms: p99, Note: "1000 RMs; latency to RM socket"},
		{Scenario: "idle", Round: round, OK: 19000, PerItemKB: kb},
		{Scenario: "turn", Variant: "built-in", Round: round, CPUPerM: turnB},
		{Scenario: "turn", Variant: "coturn", Round: round, CPUPerM: turnC},
	}
}

func targetsOf(results []Result) map[string]Target {
	rep := &Report{Results: results}
	rep.evaluate()
	out := map[string]Target{}
	for _, t := range rep.Targets {
		out[t.Name] = t
	}
	return out
}

func TestTargetsOneRun(t *testing.T) {
	got := targetsOf(roundRows(0, 73128, 9291, 6441, 15.6, 10.62, 16.8, 8.6))
	for name, want := range map[string][2]string{
		"ingest (MariaDB) vs ceiling":            {"0.127x (9291 / 73128 msg/s)", "missed"},
		"ingest (MariaDB) vs naive":              {"1.44x (9291 / 6441 msg/s)", "missed"},
		"e2e p99 at 5k msg/s, 1,000 RMs":         {"15.60 ms (5000 msg/s achieved, 1000 RMs)", "missed"},
		"RSS per idle RM socket":                 {"10.62 KB (19000 sockets)", "met"},
		"TURN CPU per packet vs coturn, no loss": {"16.8 vs 8.6 CPU s per M packets, loss 0.000% vs 0.000%", "missed"},
	} {
		if g := got[name]; g.Got != want[0] || g.Status != want[1] {
			t.Errorf("%s: got %q %s, want %q %s", name, g.Got, g.Status, want[0], want[1])
		}
	}
}

// With rounds, each target is judged on its median round, and every
// round's figure is listed.
func TestTargetsMedianRound(t *testing.T) {
	var rows []Result
	rows = append(rows, roundRows(1, 70000, 9000, 3100, 15.6, 12.5, 16, 8)...)
	rows = append(rows, roundRows(2, 80000, 9500, 3000, 8.25, 11.0, 7, 8)...)
	rows = append(rows, roundRows(3, 90000, 9900, 6000, 9.5, 12.1, 17, 8)...)
	got := targetsOf(rows)

	e2e := got["e2e p99 at 5k msg/s, 1,000 RMs"]
	if e2e.Status != "met" || !strings.HasPrefix(e2e.Got, "median of 3 rounds: 9.50 ms") ||
		!strings.HasSuffix(e2e.Got, "each round: 15.6, 8.25, 9.5 ms") {
		t.Errorf("e2e: %q %s", e2e.Got, e2e.Status)
	}
	// 2.90x, 3.17x, 1.65x: the median round (2.90x) misses, though one round met it.
	naive := got["ingest (MariaDB) vs naive"]
	if naive.Status != "missed" || !strings.HasPrefix(naive.Got, "median of 3 rounds: 2.90x (9000 / 3100 msg/s)") {
		t.Errorf("naive: %q %s", naive.Got, naive.Status)
	}
	// 12.5, 11.0, 12.1 KB: the median round is 12.1, over 12.
	if idle := got["RSS per idle RM socket"]; idle.Status != "missed" || !strings.Contains(idle.Got, "12.10 KB") {
		t.Errorf("idle: %q %s", idle.Got, idle.Status)
	}
	// 2.0, 0.875, 2.125 times coturn's CPU: the median is 2.0.
	if turn := got["TURN CPU per packet vs coturn, no loss"]; turn.Status != "missed" || !strings.Contains(turn.Got, "16.0 vs 8.0") {
		t.Errorf("turn: %q %s", turn.Got, turn.Status)
	}
}

// With the machine's CPUs and the database's CPU known, the ingest targets
// tell what CPU per message the wanted rate leaves and what the run spent.
func TestTargetsIngestBudget(t *testing.T) {
	rows := roundRows(0, 124320, 11168, 7784, 9, 11, 3.7, 3.8)
	rows[1].ServerCPU, rows[1].DBCPU, rows[1].GenCPU = 0.48, 0.67, 0.13
	rep := &Report{Results: rows, Machine: Machine{CPUs: 2}}
	rep.evaluate()
	want := map[string]string{
		// 0.35 x 124,320 = 43,512/s: 2 CPUs / 43,512 = 46 µs; 1.28 cores / 11,168 = 115 µs.
		"ingest (MariaDB) vs ceiling": "0.090x (11168 / 124320 msg/s); 43512 msg/s leaves 46 µs of CPU per message on 2 CPUs, this run spent 115 (server 43, MariaDB 60, generator 12)",
		"ingest (MariaDB) vs naive":   "1.43x (11168 / 7784 msg/s); 23352 msg/s leaves 86 µs of CPU per message on 2 CPUs, this run spent 115 (server 43, MariaDB 60, generator 12)",
	}
	for _, g := range rep.Targets {
		if w, ok := want[g.Name]; ok && g.Got != w {
			t.Errorf("%s:\n got %q\nwant %q", g.Name, g.Got, w)
		}
	}
}

// An idle run the open-file limit capped says so next to its figure.
func TestTargetsIdleCapped(t *testing.T) {
	rows := roundRows(0, 120000, 11000, 7000, 9, 10.95, 3.6, 3.9)
	rows[4].Asked = 50000
	got := targetsOf(rows)["RSS per idle RM socket"]
	if want := "10.95 KB (19000 sockets of the 50000 asked: the open-file limit allowed no more)"; got.Got != want || got.Status != "met" {
		t.Errorf("idle: %q %s, want %q met", got.Got, got.Status, want)
	}
}

// A round without a scenario counts for no target that needs it; a target
// with no round at all is not run.
func TestTargetsMissingScenarios(t *testing.T) {
	rows := roundRows(1, 70000, 9000, 3000, 9, 11, 16, 8)
	rows = append(rows, Result{Scenario: "ingest-mysql", Variant: "mysql", Round: 2, PerSec: 9500})
	got := targetsOf(rows)
	if g := got["ingest (MariaDB) vs naive"]; g.Status != "met" || strings.Contains(g.Got, "rounds") {
		t.Errorf("naive: %q %s (round 2 has no naive run)", g.Got, g.Status)
	}
	got = targetsOf([]Result{{Scenario: "ceiling", PerSec: 70000}})
	for name, g := range got {
		if g.Status != "not run" {
			t.Errorf("%s: %s without its scenarios", name, g.Status)
		}
	}
}
