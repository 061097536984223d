package persistence

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
	"github.com/rs/zerolog"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver

	"urva/internal/rawconn"
)

// Drivers Open accepts.
const (
	DriverSQLite = "sqlite"
	DriverMySQL  = "mysql"
)

// Defaults applied by Open to a zero Config field.
const (
	DefaultBatchMaxRows = 256
	DefaultBatchMaxWait = 2 * time.Millisecond
	DefaultOutboxMaxAge = 72 * time.Hour
)

// Config says which database to use and how to batch writes.
type Config struct {
	Driver string // "sqlite" | "mysql"
	// DSN is a file path for SQLite (its directory is created) or a
	// go-sql-driver DSN for MySQL/MariaDB (parseTime, UTC and utf8mb4 are
	// forced whatever the DSN says).
	DSN string
	// BatchMaxRows caps the writes of one group-commit transaction (default 256).
	BatchMaxRows int
	// BatchMaxWait is how long at most the committer waits for more writes
	// after the first one of a batch arrived (default 2ms; negative: never
	// wait, commit whatever is queued).
	BatchMaxWait time.Duration
	// BatchWaitFull keeps a batch open until BatchMaxRows or BatchMaxWait
	// even when the writes pause (by default it closes once no write has
	// come for four times their mean spacing; committer.go). Tests that
	// need exact batch boundaries set it.
	BatchWaitFull bool
	// MaxOpenConns caps the connection pool (MySQL: all connections, default
	// 16; SQLite: the read pool, default 4, next to the single writer).
	MaxOpenConns int
	// OnBatch, when set, is called after every group commit with the number
	// of writes, the time from BEGIN to the end of COMMIT, and the error of
	// the batch transaction (nil when it committed as one). It runs on the
	// committer goroutine and must not block.
	OnBatch func(rows int, commit time.Duration, err error)

	// Outbox, when set, makes every conversation write also insert the CRM
	// outbox rows of its visible changes, in the same transaction (see
	// outbox.go and docs/crm.md). Off: no outbox rows are written.
	Outbox bool
	// OutboxMaxAge is how long an event may keep failing before it becomes a
	// dead letter: a row's expires_at is its occurred_at plus this (default 72h).
	OutboxMaxAge time.Duration
	// OnOutbox, when set, is called after every committed batch that inserted
	// at least one outbox row or made dead letters pending again (a replay);
	// it wakes whoever drains the outbox. It runs on the committer goroutine,
	// before the batch's completions, and must not block.
	OnOutbox func()
}

// batchTimeout bounds one batch transaction, so that a hung database fails
// the waiting writes instead of holding them forever.
const batchTimeout = 30 * time.Second

//go:embed migrations/mysql/*.sql migrations/sqlite/*.sql
var migrationFiles embed.FS

type dialect int

const (
	dialectSQLite dialect = iota + 1
	dialectMySQL
)

// store implements Store for both dialects. The SQL is shared; the few
// differences (time encoding, row locks, isolation) are switched on dialect.
type store struct {
	dialect dialect
	log     zerolog.Logger
	cfg     Config

	// wdb carries every write. For SQLite it is a single connection: SQLite
	// has one writer at a time anyway, and one connection means the
	// committer never waits on SQLITE_BUSY from its own process.
	wdb *sql.DB
	// rdb serves reads. For SQLite a separate pool (WAL readers do not block
	// the writer); for MySQL another pool than wdb, whose connections
	// accept several statements per request (script.go) and serve writes
	// only.
	rdb *sql.DB

	c committer

	// seqIDs: a multi-row INSERT gets consecutive ids (see batch.go).
	seqIDs bool
	// scripted: the committer sends several statements per round trip on
	// a writer connection of its own (script.go).
	scripted bool
	// sc is the committer's script (MySQL) and rowArgs its buffer of a
	// multi-row INSERT's values, reused batch after batch.
	sc      script
	rowArgs []any
	// held is the committer's connection (MySQL; script.go).
	held heldConn
	// requests counts the committer's requests to the database.
	requests atomic.Int64
	// convs: the conversations as committed (MySQL; convcache.go), used by
	// the committer goroutine only; cachedBatches counts the batches that
	// took their conversations from it, cacheMisses those that then ran
	// again with their reads, convsLen its size after the last batch.
	convs                      *convCache
	cachedBatches, cacheMisses atomic.Int64
	convsLen                   atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

var (
	_ Store             = (*store)(nil)
	_ WebhookLogReader  = (*store)(nil)
	_ CommitStatsReader = (*store)(nil)
	_ Outbox            = (*store)(nil)
)

// Open connects to the database described by cfg and starts the committer.
// It does not migrate (see Store.Migrate). It fails when the database cannot
// be reached.
func Open(ctx context.Context, cfg Config, log zerolog.Logger) (Store, error) {
	if cfg.BatchMaxRows <= 0 {
		cfg.BatchMaxRows = DefaultBatchMaxRows
	}
	if cfg.BatchMaxWait == 0 {
		cfg.BatchMaxWait = DefaultBatchMaxWait
	}
	if cfg.OutboxMaxAge <= 0 {
		cfg.OutboxMaxAge = DefaultOutboxMaxAge
	}
	s := &store{cfg: cfg, log: log.With().Str("component", "persistence").Str("driver", cfg.Driver).Logger()}
	var err error
	switch cfg.Driver {
	case DriverSQLite:
		s.dialect = dialectSQLite
		err = s.openSQLite(cfg)
	case DriverMySQL:
		s.dialect = dialectMySQL
		err = s.openMySQL(cfg)
	default:
		return nil, fmt.Errorf("%w %q (valid: %q, %q)", ErrBadDriver, cfg.Driver, DriverSQLite, DriverMySQL)
	}
	if err != nil {
		return nil, err
	}
	if err := s.wdb.PingContext(ctx); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("database unreachable (%s %s): %w", cfg.Driver, s.describe(), err)
	}
	if s.rdb != s.wdb {
		if err := s.rdb.PingContext(ctx); err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("database unreachable (%s %s): %w", cfg.Driver, s.describe(), err)
		}
	}
	s.warnSmallRedoLog(ctx)
	s.seqIDs = s.autoincConsecutive(ctx)
	s.scripted = s.dialect == dialectMySQL && s.seqIDs
	if s.scripted {
		s.convs = newConvCache(convCacheSize)
	}
	s.c.start(s)
	return s, nil
}

// describe names the database for error messages without the password.
func (s *store) describe() string {
	if s.dialect == dialectMySQL {
		if mc, err := mysql.ParseDSN(s.cfg.DSN); err == nil {
			return mc.User + "@" + mc.Net + "(" + mc.Addr + ")/" + mc.DBName
		}
		return "(unparsable DSN)"
	}
	return s.cfg.DSN
}

func (s *store) openSQLite(cfg Config) error {
	path := cfg.DSN
	if path == "" {
		return errors.New("sqlite: empty DSN (expected a file path)")
	}
	if strings.HasPrefix(path, "file:") || strings.Contains(path, "?") || path == ":memory:" {
		// The store opens two pools on the same file; an in-memory database
		// or a URI with its own parameters would not be shared between them.
		return fmt.Errorf("sqlite: DSN must be a plain file path, got %q", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("sqlite: create directory for %s: %w", path, err)
		}
	}
	// WAL + synchronous=NORMAL: a commit is durable against a process crash
	// (kill -9) as soon as it returns; only an OS crash or power loss may
	// lose the last transactions. busy_timeout covers other processes (the
	// migrate command) holding the write lock for a moment.
	common := "&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	// A plain path: the driver strips the query (its own parameters) before
	// opening the file.
	u := path
	w, err := sql.Open("sqlite", u+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"+common+
		"&_txlock=immediate") // the writer takes the write lock at BEGIN: no upgrade deadlocks
	if err != nil {
		return err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// Create the file and switch it to WAL before the readers open it.
	if err := w.Ping(); err != nil {
		_ = w.Close()
		return fmt.Errorf("database unreachable (sqlite %s): %w", path, err)
	}
	r, err := sql.Open("sqlite", u+"?_pragma=query_only(1)"+common)
	if err != nil {
		_ = w.Close()
		return err
	}
	n := cfg.MaxOpenConns
	if n <= 0 {
		n = 4
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.wdb, s.rdb = w, r
	return nil
}

func (s *store) openMySQL(cfg Config) error {
	mc, err := mysql.ParseDSN(cfg.DSN)
	if err != nil {
		return fmt.Errorf("mysql: bad DSN: %w", err)
	}
	mc.ParseTime = true
	mc.Loc = time.UTC
	// utf8mb4 end to end: Devanagari and emoji are stored byte for byte.
	if err := mc.Apply(mysql.Charset("utf8mb4", "utf8mb4_unicode_ci")); err != nil {
		return err
	}
	// Placeholders are interpolated client side (safe with utf8mb4): one
	// round trip per statement instead of prepare + execute, which is most
	// of the cost of a batch on a nearby server.
	mc.InterpolateParams = true
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["time_zone"] = "'+00:00'"
	// A dial timeout so that an unreachable server fails writes promptly.
	// No read timeout: statements are bounded by their contexts (the
	// committer's batchTimeout), and a long migration must not be cut off.
	if mc.Timeout == 0 {
		mc.Timeout = 5 * time.Second
	}
	mc.Logger = mysqlLogger{s.log}
	// The connections read and write with raw system calls (package
	// rawconn); the dialer is the driver's own (keep-alive on).
	mc.DialFunc = rawconn.Dial(&net.Dialer{})
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	// READ COMMITTED for every connection, set once when it connects (one
	// statement less per batch than asking for it at each BEGIN): the
	// dedupe lookups see rows other processes committed a moment ago, and
	// InnoDB takes no gap locks.
	const readCommitted = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
	n := cfg.MaxOpenConns
	if n <= 0 {
		n = 16
	}
	s.rdb = mysqlPool(sessionInit{conn, readCommitted}, n)
	// The writers: the committer's connection, and the few writes made
	// outside it (migrations, RM accounts). Several statements per request
	// serve the committer's round trips; the committer writes values as
	// literals (literal.go), and only the store's own statements run here.
	wc := mc.Clone()
	wc.MultiStatements = true
	wconn, err := mysql.NewConnector(wc)
	if err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	s.wdb = mysqlPool(sessionInit{wconn, readCommitted}, 2)
	return nil
}

func mysqlPool(c driver.Connector, n int) *sql.DB {
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(5 * time.Minute) // stay under server and proxy idle timeouts
	db.SetConnMaxIdleTime(time.Minute)
	return db
}

func (s *store) closeDBs() error {
	err := s.wdb.Close()
	if s.rdb != s.wdb {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// Close stops accepting writes, commits everything queued, and closes the
// database. It is safe to call more than once.
func (s *store) Close() error {
	s.closeOnce.Do(func() {
		s.c.close()
		s.held.release()
		s.closeErr = s.closeDBs()
	})
	return s.closeErr
}

// Ping checks that the database answers.
func (s *store) Ping(ctx context.Context) error {
	if err := s.wdb.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if s.rdb != s.wdb {
		if err := s.rdb.PingContext(ctx); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return nil
}

// Migrate applies the embedded migrations of the store's dialect. Applying
// them again is a no-op. On MySQL a named lock serialises concurrent
// migrations from several processes.
func (s *store) Migrate(ctx context.Context) error {
	dir, gd := "migrations/sqlite", goose.DialectSQLite3
	var opts []goose.ProviderOption
	if s.dialect == dialectMySQL {
		dir, gd = "migrations/mysql", goose.DialectMySQL
		opts = append(opts, goose.WithSessionLocker(mysqlMigrationLock{}))
	}
	sub, err := fs.Sub(migrationFiles, dir)
	if err != nil {
		return err
	}
	opts = append(opts, goose.WithLogger(gooseLogger{s.log}), goose.WithDisableGlobalRegistry(true))
	p, err := goose.NewProvider(gd, s.wdb, sub, opts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range res {
		s.log.Info().Str("migration", r.Source.Path).Dur("took", r.Duration).Msg("migration applied")
	}
	return nil
}

// mysqlMigrationLock holds a MySQL named lock on goose's connection for the
// duration of a migration run.
type mysqlMigrationLock struct{}

const mysqlMigrationLockName = "urva_migrate"

func (mysqlMigrationLock) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var got sql.NullInt64
	// GET_LOCK returns 1 when acquired, 0 on timeout (seconds), NULL on error.
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 300)", mysqlMigrationLockName).Scan(&got); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return errors.New("migration lock: another process is migrating (timed out after 300s)")
	}
	return nil
}

func (mysqlMigrationLock) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	_, err := conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", mysqlMigrationLockName)
	return err
}

// mysqlLogger sends the driver's messages (dropped connections and the
// like, which the pool handles) to the store's logger.
type mysqlLogger struct{ log zerolog.Logger }

func (l mysqlLogger) Print(v ...any) { l.log.Debug().Msg(strings.TrimSpace(fmt.Sprint(v...))) }

// gooseLogger sends goose's messages to the store's logger.
type gooseLogger struct{ log zerolog.Logger }

func (l gooseLogger) Printf(format string, v ...any) {
	l.log.Debug().Msgf(strings.TrimSpace(format), v...)
}

func (l gooseLogger) Fatalf(format string, v ...any) {
	// Providers return errors instead of calling Fatalf; log loudly if one
	// ever does rather than exiting the process.
	l.log.Error().Msgf(strings.TrimSpace(format), v...)
}

// sessionInit runs stmt on every new connection before database/sql uses it.
type sessionInit struct {
	driver.Connector
	stmt string
}

func (c sessionInit) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("mysql: connection cannot run %q", c.stmt)
	}
	if _, err := ex.ExecContext(ctx, c.stmt, nil); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("mysql: %s: %w", c.stmt, err)
	}
	return conn, nil
}
