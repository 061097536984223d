package proccpu

import (
	"os"
	"runtime"
	"testing"
	"time"
)

func TestSecondsGrowsWithWork(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	before := Seconds(os.Getpid())
	// Spin until the kernel's 10 ms accounting has counted some of it.
	deadline := time.Now().Add(5 * time.Second)
	x := 0
	for Seconds(os.Getpid()) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("CPU seconds stayed at %v while spinning", before)
		}
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
	}
	_ = x
}

func TestSecondsOfNoProcess(t *testing.T) {
	if got := Seconds(-1); got != 0 {
		t.Fatalf("Seconds(-1) = %v, want 0", got)
	}
}
