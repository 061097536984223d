// Package storetest is the contract test suite of persistence.Store (Run)
// and the helpers other packages' tests use to get a real, migrated store
// (OpenSQLite, OpenMySQL, ForEach).
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"urva/persistence"
)

// MySQLServerEnv names the environment variable that overrides the MySQL
// server the tests use (a go-sql-driver DSN without a database name).
const MySQLServerEnv = "URVA_TEST_MYSQL"

// defaultMySQLServer is the local MariaDB of the development setup.
const defaultMySQLServer = "root@tcp(127.0.0.1:3306)/"

func testLogger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}

// OpenSQLite returns a migrated SQLite store in a temporary directory,
// closed when the test ends.
func OpenSQLite(t testing.TB) persistence.Store {
	t.Helper()
	return OpenSQLiteConfig(t, nil)
}

// OpenSQLiteConfig is OpenSQLite with a chance to adjust the configuration
// (batch size and wait, OnBatch) before the store opens.
func OpenSQLiteConfig(t testing.TB, adjust func(*persistence.Config)) persistence.Store {
	t.Helper()
	cfg := persistence.Config{Driver: persistence.DriverSQLite, DSN: filepath.Join(t.TempDir(), "urva.db")}
	return openMigrated(t, cfg, adjust)
}

// OpenMySQL returns a migrated store on a fresh database urva_t_<random> of
// the local MariaDB/MySQL server, dropped when the test ends. When the server
// is unreachable the test is skipped (loudly), or fails when CI=true.
func OpenMySQL(t testing.TB) persistence.Store {
	t.Helper()
	return OpenMySQLConfig(t, nil)
}

// OpenMySQLConfig is OpenMySQL with a chance to adjust the configuration.
func OpenMySQLConfig(t testing.TB, adjust func(*persistence.Config)) persistence.Store {
	t.Helper()
	cfg := persistence.Config{Driver: persistence.DriverMySQL, DSN: DSNForMySQL(t)}
	return openMigrated(t, cfg, adjust)
}

func openMigrated(t testing.TB, cfg persistence.Config, adjust func(*persistence.Config)) persistence.Store {
	t.Helper()
	if adjust != nil {
		adjust(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := persistence.Open(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("open %s store: %v", cfg.Driver, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close %s store: %v", cfg.Driver, err)
		}
	})
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s store: %v", cfg.Driver, err)
	}
	return s
}

// ForEach runs fn as a subtest "sqlite" and a subtest "mysql", each with a
// fresh migrated store.
func ForEach(t *testing.T, fn func(t *testing.T, s persistence.Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { fn(t, OpenSQLite(t)) })
	t.Run("mysql", func(t *testing.T) { fn(t, OpenMySQL(t)) })
}

func mysqlServer() string {
	if v := os.Getenv(MySQLServerEnv); v != "" {
		return v
	}
	return defaultMySQLServer
}

var (
	reachOnce sync.Once
	reachErr  error
)

// mysqlReachable pings the server once per test binary.
func mysqlReachable() error {
	reachOnce.Do(func() {
		db, err := sql.Open("mysql", mysqlServer())
		if err != nil {
			reachErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		reachErr = db.PingContext(ctx)
	})
	return reachErr
}

// DSNForMySQL creates a fresh database urva_t_<random> on the test server,
// drops it when the test ends and returns its DSN (not migrated, no store
// opened). Skips (or fails with CI=true) when the server is unreachable.
func DSNForMySQL(t testing.TB) string {
	t.Helper()
	if err := mysqlReachable(); err != nil {
		msg := fmt.Sprintf("\n"+
			"######################################################################\n"+
			"##  MySQL/MariaDB UNREACHABLE at %s: %v\n"+
			"##  The MySQL half of the store tests DID NOT RUN.\n"+
			"##  Start MariaDB (root, empty password) or set %s.\n"+
			"######################################################################",
			mysqlServer(), err, MySQLServerEnv)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cfg, err := mysql.ParseDSN(mysqlServer())
	if err != nil {
		t.Fatalf("%s: %v", MySQLServerEnv, err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := "urva_t_" + hex.EncodeToString(b[:])

	admin, err := sql.Open("mysql", mysqlServer())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	// Registered before the store's Close (cleanups run last-in first-out),
	// so the database is dropped after the store closed.
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
