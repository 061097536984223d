package persistence

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-sql-driver/mysql"
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
//     multi-row INSERT comes back in that statement's OK packet: one round
//     trip (two when outbox rows, whose data carries new message ids, are
//     pending: the messages go first).
//
// Every statement of a request is parsed, run and answered (an OK packet,
// sent at once) on its own, so the script keeps to the statements the rows
// need: a statement that names the first id of the INSERT just before it
// (the events of new messages) uses LAST_INSERT_ID(), a user variable is
// SET only for an id that a later statement of the same request names, and
// a later request names an id read back by an earlier one by its number.
//
// SQLite (in process, no round trips) keeps a database/sql transaction, as
// does a MySQL server whose multi-row INSERTs do not get consecutive ids.

// batchTx is one attempt's transaction: a database/sql transaction, or on
// MySQL the committer's writer connection on which the store sends BEGIN,
// COMMIT and ROLLBACK itself (scripted).
type batchTx struct {
	tx   *sql.Tx
	conn *sql.Conn
	// held is the committer's connection, kept from batch to batch.
	held *heldConn
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
	conn, err := s.held.get(ctx, s.wdb)
	if err != nil {
		return nil, err
	}
	return &batchTx{conn: conn, held: &s.held, requests: &s.requests}, nil
}

// connHold is how long the committer keeps a connection from batch to
// batch before it gives it back to the pool and takes one again.
//
// Taking a connection from the pool checks that the server has not closed
// it (the driver's liveness check, a read of the socket). Done for every
// batch, that was hundreds of checks a second, each a blocking system call
// that woke the runtime's monitor thread (see internal/rawconn). Kept for a
// second, a connection is checked once a second; one that dies within that
// second fails its batch, whose writes are then retried one by one on
// connections taken afresh (applyBatch).
const connHold = time.Second

// heldConn is the connection the committer keeps; only the committer's
// goroutine uses it.
type heldConn struct {
	conn  *sql.Conn
	since time.Time
}

// get returns the held connection while it is younger than connHold, and
// otherwise gives it back and takes another from db.
func (h *heldConn) get(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	if h.conn != nil {
		if time.Since(h.since) < connHold {
			return h.conn, nil
		}
		h.release()
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	h.conn, h.since = conn, time.Now()
	return conn, nil
}

// release gives the held connection back to the pool.
func (h *heldConn) release() {
	if h.conn != nil {
		_ = h.conn.Close()
		h.conn = nil
	}
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
// has nothing left to send).
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
	return nil // the connection stays held for the next batch
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
}

// discard closes the connection instead of returning it to the pool.
func (t *batchTx) discard() {
	_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = t.conn.Close()
	t.held.conn = nil
}

// script is statements sent in one request. Values are written into the
// text by the script itself (literal.go), so that a batch's thousands of
// values are not each converted by database/sql and again by the driver. A
// script is reused batch after batch (the committer's): its buffers keep
// their capacity.
type script struct {
	q    []byte
	err  error // the first value that could not be written
	size int   // bytes of the variable-length values
	// ends are where each statement of q ends.
	ends []int
	// ids are the INSERTs whose first ids are read back, in statement order.
	ids []*scriptID
	// vars numbers the user variables: never reused within a flush, as a
	// request may still name a variable an earlier request of the flush set.
	vars int
	// text is the request being sent (reused).
	text []byte
	// firsts takes the ids read back (reused).
	firsts []int64
}

// scriptID is a multi-row INSERT of a script whose first id is read back,
// and which later statements may name (idExpr).
type scriptID struct {
	sc    *script
	stmt  int               // its statement in sc; -1 once sent
	name  string            // the user variable holding the id, once SET
	first int64             // the id, once its request succeeded
	got   func(first int64) // takes the id once the script succeeded
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
	sc.ends = append(sc.ends, len(sc.q))
	sc.size += size
}

// insert appends a multi-row INSERT whose first id is passed to got once the
// script ran; idExpr gives later statements the SQL of that id.
func (sc *script) insert(query string, size int, args []any, got func(first int64)) *scriptID {
	sc.add(query, size, args...)
	id := &scriptID{sc: sc, stmt: len(sc.ends) - 1, got: got}
	sc.ids = append(sc.ids, id)
	return id
}

// idExpr is the SQL of id's first id in the statement added next: the
// number itself once an earlier request read it back; LAST_INSERT_ID()
// while id's INSERT is the latest statement; else a user variable, SET
// right after the INSERT the first time it is asked for.
func (id *scriptID) idExpr() string {
	sc := id.sc
	switch {
	case id.first > 0:
		return strconv.FormatInt(id.first, 10)
	case id.name != "":
		return id.name
	case id.stmt < 0:
		// Sent, and its request failed: the flush has failed too.
		if sc.err == nil {
			sc.err = errors.New("script: an id whose request failed")
		}
		return "NULL"
	case id.stmt == len(sc.ends)-1:
		return "LAST_INSERT_ID()"
	}
	id.name = "@urva_id" + strconv.Itoa(sc.vars)
	sc.vars++
	at := sc.ends[id.stmt]
	st := "SET " + id.name + " = LAST_INSERT_ID();\n"
	sc.q = slices.Insert(sc.q, at, []byte(st)...)
	sc.ends = slices.Insert(sc.ends, id.stmt+1, at+len(st))
	for i := id.stmt + 2; i < len(sc.ends); i++ {
		sc.ends[i] += len(st)
	}
	for _, o := range sc.ids {
		if o.stmt > id.stmt {
			o.stmt++
		}
	}
	return id.name
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
	lead := t.lead()
	q := append(sc.text[:0], lead...)
	q = append(q, sc.q...)
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
		// The statement results in order: BEGIN's when it leads, then the
		// script's.
		skip := 0
		if lead != "" {
			skip = 1
		}
		firsts, err := sc.readIDs(ctx, t, query, skip)
		if err != nil {
			return err
		}
		for i, id := range sc.ids {
			id.first = firsts[i]
			id.got(firsts[i])
		}
	}
	if commit {
		t.committed = true
	}
	sc.reset()
	return nil
}

// readIDs runs query and returns the first id of each of the script's
// INSERTs read back, from the OK packets of their statements (skip is the
// number of results before the script's first statement).
func (sc *script) readIDs(ctx context.Context, t *batchTx, query string, skip int) ([]int64, error) {
	var all []int64
	err := t.conn.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("script: the driver's connection (%T) cannot run a script", dc)
		}
		res, err := ex.ExecContext(ctx, query, nil)
		if err != nil {
			return err
		}
		mres, ok := res.(mysql.Result)
		if !ok {
			return fmt.Errorf("script: the driver's result (%T) has no ids per statement", res)
		}
		all = mres.AllLastInsertIds()
		return nil
	})
	if err != nil {
		return nil, err
	}
	sc.firsts = sc.firsts[:0]
	for i, id := range sc.ids {
		at := skip + id.stmt
		if at >= len(all) || all[at] <= 0 {
			return nil, fmt.Errorf("script: insert %d returned no id", i)
		}
		sc.firsts = append(sc.firsts, all[at])
	}
	return sc.firsts, nil
}

func (sc *script) reset() {
	sc.q = sc.q[:0]
	sc.err = nil
	sc.size = 0
	sc.ends = sc.ends[:0]
	for _, id := range sc.ids {
		id.stmt = -1
	}
	clear(sc.ids)
	sc.ids = sc.ids[:0]
}
