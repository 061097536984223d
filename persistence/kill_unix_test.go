//go:build unix

package persistence_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"urva/persistence"
)

const killHelperEnv = "URVA_PERSISTENCE_KILL_HELPER_DB"

const killWrites = 40

// TestSQLiteKillHelper is the child process of TestSQLiteSurvivesKill: it
// commits writes, reports them acknowledged and kills itself with SIGKILL
// (no Close, no deferred function, no flush).
func TestSQLiteKillHelper(t *testing.T) {
	path := os.Getenv(killHelperEnv)
	if path == "" {
		return // it does its work only as the child process
	}
	ctx := context.Background()
	s, err := persistence.Open(ctx, persistence.Config{Driver: "sqlite", DSN: path}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < killWrites; i++ {
		if _, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(i),
			Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.K", i))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fmt.Fprintf(os.Stdout, "ACKED %d\n", killWrites); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // never reached
}

// TestSQLiteSurvivesKill: everything acknowledged before a kill -9 is there
// after a restart (WAL, synchronous=NORMAL).
func TestSQLiteSurvivesKill(t *testing.T) {
	if os.Getenv(killHelperEnv) != "" {
		return // inside the child, which runs TestSQLiteKillHelper only
	}
	path := filepath.Join(t.TempDir(), "data", "urva.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteKillHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+path)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out.String())
	}
	if !bytes.Contains(out.Bytes(), []byte(fmt.Sprintf("ACKED %d", killWrites))) {
		t.Fatalf("child did not acknowledge its writes:\n%s", out.String())
	}

	ctx := context.Background()
	s, err := persistence.Open(ctx, persistence.Config{Driver: "sqlite", DSN: path}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < killWrites; i++ {
		if _, err := s.MessageByProviderID(ctx, fmt.Sprint("wamid.K", i)); err != nil {
			t.Fatalf("acknowledged write %d lost: %v", i, err)
		}
	}
	evs, err := s.EventsAfter(ctx, 0, 0, 1000)
	if err != nil || len(evs) != killWrites {
		t.Fatalf("events after restart: %d %v", len(evs), err)
	}
}
