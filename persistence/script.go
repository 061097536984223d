package persistence

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"
)

// Round trips of a batch (MySQL).
//
// On a loaded machine a statement's round trip costs more than most of the
// statements of a batch take to run: a batch of nine statements spent about
// a third of its time waiting between them. On MySQL the committer therefore
// runs its transaction itself on a writer connection that allows several
// statements per request (the driver's multiStatements; the script writes
// every value as a literal whose meaning does not depend on the SQL mode,
// literal.go):
//   - BEGIN travels with the batch's first reads (the conversations it locks
//     and the dedupe lookup): one round trip, none when the conversations
//     come from the committed cache (convcache.go) and BEGIN goes with the
//     rows;
//   - the pending rows of all tables, the conversations' new state, the
//     webhook outcomes and COMMIT travel together, and the first id of each
//     multi-row INSERT comes back from a SELECT of the user variables the
//     script set: one round trip (two when outbox rows, whose data carries
//     new message ids, are pending: the messages go first).
//
// SQLite (in process, no round trips) keeps a database/sql transaction, as
// does a MySQL server whose multi-row INSERTs do not get consecutive ids.

// batchTx is one attempt's transaction: a database/sql transaction, or on
// MySQL the committer's writer connection on which the store sends BEGIN,
// COMMIT and ROLLBACK itself (scripted).
type batchTx struct {
	tx   *sql.Tx
	conn *sql.Conn
	// requests counts what the transaction sent to the database.
	requests *atomic.Int64

	begun     bool // START TRANSACTION sent
	committed bool // a script's COMMIT succeeded
}

// beginBatch starts a batch transaction. A scripted one sends nothing yet:
// BEGIN goes with its first statement.
func (s *store) beginBatch(ctx context.Context) (*batchTx, error) {
	if !s.scripted {
		s.requests.Add(1) // BEGIN
		tx, err := s.wdb.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return &batchTx{tx: tx, requests: &s.requests}, nil
	}
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &batchTx{conn: conn, requests: &s.requests}, nil
}

func (t *batchTx) scripted() bool { return t.conn != nil }

// lead returns what a scripted transaction's next request must start with
// (BEGIN, once) and counts it as sent.
func (t *batchTx) lead() string {
	if t.conn == nil || t.begun {
		return ""
	}
	t.begun = true
	return "START TRANSACTION;\n"
}

// ensureBegun sends BEGIN alone when a statement that cannot carry it (one
// whose result is read) comes first.
func (t *batchTx) ensureBegun(ctx context.Context) error {
	if lead := t.lead(); lead != "" {
		t.requests.Add(1)
		if _, err := t.conn.ExecContext(ctx, "START TRANSACTION"); err != nil {
			return err
		}
	}
	return nil
}

func (t *batchTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	t.requests.Add(1)
	if t.tx != nil {
		return t.tx.ExecContext(ctx, query, args...)
	}
	if err := t.ensureBegun(ctx); err != nil {
		return nil, err
	}
	return t.conn.ExecContext(ctx, query, args...)
}

func (t *batchTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	t.requests.Add(1)
	if t.tx != nil {
		return t.tx.QueryContext(ctx, query, args...)
	}
	if err := t.ensureBegun(ctx); err != nil {
		return nil, err
	}
	return t.conn.QueryContext(ctx, query, args...)
}

func (t *batchTx) QueryRowContext(ctx context.Context, query string, args ...any) rowScanner {
	t.requests.Add(1)
	if t.tx != nil {
		return t.tx.QueryRowContext(ctx, query, args...)
	}
	if err := t.ensureBegun(ctx); err != nil {
		return failedRow{err}
	}
	return t.conn.QueryRowContext(ctx, query, args...)
}

// commit ends the transaction (a scripted one whose last script committed
// only gives its connection back).
func (t *batchTx) commit(ctx context.Context) error {
	if t.tx != nil {
		t.requests.Add(1)
		return t.tx.Commit()
	}
	var err error
	if t.begun && !t.committed {
		t.requests.Add(1)
		_, err = t.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		t.discard()
		return err
	}
	return t.conn.Close()
}

// rollback ends the transaction without its changes. A scripted connection
// whose ROLLBACK failed is not given back to the pool (it may still hold
// the transaction).
func (t *batchTx) rollback() {
	t.requests.Add(1)
	if t.tx != nil {
		_ = t.tx.Rollback()
		return
	}
	if t.begun && !t.committed {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := t.conn.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.discard()
			return
		}
	}
	_ = t.conn.Close()
}

// discard closes the connection instead of returning it to the pool.
func (t *batchTx) discard() {
	_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = t.conn.Close()
}

// script is statements sent in one request. The first id of each INSERT
// whose ids matter is kept in a user variable (@urva_idN), which later
// statements of the script may use, and which the SELECT ending the script
// returns. Values are written into the text by the script itself (literal.go),
// so that a batch's thousands of values are not each converted by
// database/sql and again by the driver. A script is reused batch after
// batch (the committer's): its buffers keep their capacity.
type script struct {
	q    []byte
	err  error // the first value that could not be written
	size int   // bytes of the variable-length values
	// ids are the variables to read back and what takes their values.
	ids []scriptID
	// vars numbers the variables: never reused within a flush, so that a
	// statement may name a variable an earlier request of the same flush
	// set.
	vars int
	// text is the request being sent (reused).
	text []byte
}

type scriptID struct {
	name string
	got  func(first int64)
}

// add appends a statement with its values; size counts its
// variable-length values.
func (sc *script) add(query string, size int, args ...any) {
	var err error
	sc.q, err = interpolate(sc.q, query, args)
	if err != nil && sc.err == nil {
		sc.err = err
	}
	sc.q = append(sc.q, ";\n"...)
	sc.size += size
}

// insert appends a multi-row INSERT whose first id is passed to got once the
// script ran, and returns the SQL expression of that id for later statements.
func (sc *script) insert(query string, size int, args []any, got func(first int64)) string {
	v := "@urva_id" + strconv.Itoa(sc.vars)
	sc.vars++
	sc.add(query, size, args...)
	sc.add("SET "+v+" = LAST_INSERT_ID()", 0)
	sc.ids = append(sc.ids, scriptID{v, got})
	return v
}

func (sc *script) empty() bool { return len(sc.q) == 0 }

// run sends the script on t, after BEGIN when t has not begun, and ending
// with COMMIT when commit is set. The ids are passed on only once the whole
// script, COMMIT included, succeeded.
func (sc *script) run(ctx context.Context, t *batchTx, commit bool) error {
	if sc.err != nil {
		err := sc.err
		sc.reset()
		return err
	}
	if sc.empty() && !commit {
		return nil
	}
	q := append(sc.text[:0], t.lead()...)
	q = append(q, sc.q...)
	if len(sc.ids) > 0 {
		q = append(q, "SELECT "...)
		for i, id := range sc.ids {
			if i > 0 {
				q = append(q, ", "...)
			}
			q = append(q, id.name...)
		}
		q = append(q, ";\n"...)
	}
	if commit {
		q = append(q, "COMMIT"...)
	}
	q = bytes.TrimSuffix(q, []byte(";\n"))
	sc.text = q
	// The request is handed to the driver without a copy: it is written to
	// the connection before the call returns, and the bytes are reused only
	// by the next run.
	query := unsafe.String(unsafe.SliceData(q), len(q))
	t.requests.Add(1)
	if len(sc.ids) == 0 {
		if _, err := t.conn.ExecContext(ctx, query); err != nil {
			return err
		}
	} else {
		ids, err := sc.readIDs(ctx, t, query)
		if err != nil {
			return err
		}
		for i, id := range ids {
			sc.ids[i].got(id)
		}
	}
	if commit {
		t.committed = true
	}
	sc.reset()
	return nil
}

// readIDs runs query, whose first result is the row of the script's ids,
// and reads every later result (COMMIT's) to its end.
func (sc *script) readIDs(ctx context.Context, t *batchTx, query string) ([]int64, error) {
	rows, err := t.conn.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("script: no ids returned")
	}
	vals := make([]sql.NullInt64, len(sc.ids))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	if err := rows.Scan(dest...); err != nil {
		return nil, err
	}
	for rows.Next() {
	}
	for rows.NextResultSet() {
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	ids := make([]int64, len(vals))
	for i, v := range vals {
		if !v.Valid || v.Int64 <= 0 {
			return nil, fmt.Errorf("script: insert %d returned no id", i)
		}
		ids[i] = v.Int64
	}
	return ids, nil
}

func (sc *script) reset() {
	sc.q = sc.q[:0]
	sc.err = nil
	sc.size = 0
	clear(sc.ids)
	sc.ids = sc.ids[:0]
}
