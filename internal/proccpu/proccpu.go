// Package proccpu reads the CPU time of processes on this machine, for the
// benchmarks that put the database server's and the urva server's CPU next
// to what they achieved. It reads Linux's /proc; elsewhere every process
// reads as not found.
package proccpu

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Seconds is the user+system CPU seconds process pid has used, 0 when it
// cannot be read.
func Seconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// fields after the name: state(0) ... utime(11) stime(12)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ, 100 on Linux
}

// DatabaseServer finds a local MariaDB or MySQL server process: its pid, or
// 0 when there is none (the database is elsewhere and its CPU cannot be
// measured from here).
func DatabaseServer() int {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "mariadbd", "mysqld":
			return pid
		}
	}
	return 0
}
