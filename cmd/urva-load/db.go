package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // the SQLite driver the store uses

	"urva/persistence"
	"urva/transport/auth"
)

// benchDB is a fresh database for one scenario: a urva_bench_<random>
// database on the MariaDB/MySQL server, or a SQLite file in a temporary
// directory; dropped or removed by drop unless -keep.
type benchDB struct {
	driver, dsn string
	dir         string // scratch directory (config, SQLite file)
	name        string // MySQL database
	server      string
	keep        bool
}

func newBenchDB(o *opts, driver string) (*benchDB, error) {
	dir, err := os.MkdirTemp("", "urva-bench-")
	if err != nil {
		return nil, err
	}
	d := &benchDB{driver: driver, dir: dir, server: o.mysql, keep: o.keep}
	switch driver {
	case "sqlite":
		d.dsn = filepath.Join(dir, "urva.db")
	case "mysql":
		cfg, err := mysql.ParseDSN(o.mysql)
		if err != nil {
			return nil, fmt.Errorf("-mysql: %w", err)
		}
		var b [6]byte
		_, _ = rand.Read(b[:])
		d.name = "urva_bench_" + hex.EncodeToString(b[:])
		admin, err := sql.Open("mysql", o.mysql)
		if err != nil {
			return nil, err
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+d.name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
			return nil, fmt.Errorf("MariaDB/MySQL at %s: %w", o.mysql, err)
		}
		cfg.DBName = d.name
		d.dsn = cfg.FormatDSN()
	default:
		return nil, fmt.Errorf("unknown driver %q", driver)
	}
	return d, nil
}

// open opens the database with database/sql (for counting and for the
// naive baseline's table).
func (d *benchDB) open() (*sql.DB, error) {
	if d.driver == "sqlite" {
		return sql.Open("sqlite", d.dsn)
	}
	return sql.Open("mysql", d.dsn)
}

// count runs a COUNT(*) query.
func (d *benchDB) count(query string) (int64, error) {
	db, err := d.open()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = db.QueryRowContext(ctx, query).Scan(&n)
	return n, err
}

func (d *benchDB) drop() {
	if d.keep {
		fmt.Fprintf(os.Stderr, "   kept %s %s (%s)\n", d.driver, d.dsn, d.dir)
		return
	}
	if d.name != "" {
		if admin, err := sql.Open("mysql", d.server); err == nil {
			_, _ = admin.Exec("DROP DATABASE IF EXISTS `" + d.name + "`")
			admin.Close()
		}
	}
	_ = os.RemoveAll(d.dir)
}

// seedRMs migrates the database and creates n RMs (bench-rm-<i>), returning
// their ids; their session tokens are minted with the bench token secret
// (no password hashing or login per RM).
func (d *benchDB) seedRMs(n int) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := persistence.Open(ctx, persistence.Config{Driver: d.driver, DSN: d.dsn}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		return nil, err
	}
	// Nobody logs in with it: a fixed placeholder, not a valid bcrypt hash.
	const hash = "$2a$04$benchbenchbenchbenchbeBenchBenchBenchBenchBenchBenchBe"
	ids := make([]int64, n)
	for i := range ids {
		id, err := s.CreateRM(ctx, &persistence.RM{Username: fmt.Sprintf("bench-rm-%d", i), Name: fmt.Sprintf("Bench RM %d", i),
			Role: persistence.RoleRM, PasswordHash: hash})
		if err != nil {
			return nil, fmt.Errorf("create RM %d: %w", i, err)
		}
		ids[i] = id
	}
	return ids, nil
}

// tokens mints a session token per RM id.
func tokens(ids []int64) []string {
	t := auth.NewTokens([]byte(benchTokenSecret), 12*time.Hour)
	out := make([]string, len(ids))
	now := time.Now()
	for i, id := range ids {
		out[i] = t.Issue(id, persistence.RoleRM, now)
	}
	return out
}
