package persistence

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
)

// Group commit (design invariant 6).
//
// Every write (conversation writes, webhook log rows, webhook outcomes, CRM
// outbox state changes, call recording paths, video calls between RMs) is
// queued as an op. One committer goroutine takes up to BatchMaxRows ops,
// waiting at most BatchMaxWait after the first one arrived (less when the
// ops stop coming, see closeAtLocked), applies them all
// in ONE transaction and then calls their completions in queue order (on a
// goroutine of their own, batch after batch, while the next batch is
// applied). With a single committer, commit order is queue order and event
// ids (the socket cursor) grow in commit order.
//
// A write that fails before it changed anything (stale seq, unknown
// conversation, invalid input) fails alone and the batch goes on. Any other
// failure rolls the batch back:
//   - a failure the write itself caused (a constraint, bad data) drops that
//     write and the rest is retried as one transaction;
//   - BEGIN failing or the database not answering a ping fails the whole
//     batch with ErrUnavailable (callers answer 503; database/sql reconnects
//     on the next batch, no restart needed);
//   - anything else (a lost connection mid-batch, a failed COMMIT, a
//     deadlock) retries every write in its own transaction, so one bad write
//     fails alone.
//
// Ops are therefore applied from scratch on every attempt: they keep no state
// from a rolled-back attempt.

type opKind int

const (
	opConversationWrite opKind = iota + 1
	opWebhookLog
	opWebhookOutcome
	opOutboxDelivered
	opOutboxFailed
	opOutboxReplay
	opCallRecordingPath
	opVideoCall
)

type op struct {
	kind     opKind
	enqueued time.Time

	w     *ConversationWrite
	wdone func(*WriteResult, error)

	hook  *WebhookLog
	hdone func(int64, error)

	outcomeID int64
	outcome   string
	odone     func(error)

	ob     *outboxUpdate
	obdone func(int64, error)

	callRec *callRecordingUpdate // completes through odone

	vc     *VideoCallChange // a call between two RMs
	vcdone func(*VideoCall, bool, error)

	// Outcome of the current attempt.
	res   *WriteResult
	logID int64
	n     int64 // outbox rows an outbox update changed
	// The video call after the change, and whether its status moved.
	vcRes   *VideoCall
	vcMoved bool
	// outboxRows counts the outbox rows the op inserted or made pending
	// (OnOutbox is called for a batch that committed some).
	outboxRows int
	err        error
}

func (o *op) reset() {
	o.res, o.logID, o.n, o.vcRes, o.vcMoved, o.outboxRows, o.err = nil, 0, 0, nil, false, 0, nil
}

// fail records err as the op's final outcome.
func (o *op) fail(err error) {
	o.reset()
	o.err = err
}

// complete reports the outcome to the caller.
func (o *op) complete() {
	switch o.kind {
	case opConversationWrite:
		if o.wdone != nil {
			if o.err != nil {
				o.wdone(nil, o.err)
			} else {
				o.wdone(o.res, nil)
			}
		}
	case opWebhookLog:
		if o.hdone != nil {
			o.hdone(o.logID, o.err)
		}
	case opWebhookOutcome, opCallRecordingPath:
		if o.odone != nil {
			o.odone(o.err)
		}
	case opOutboxDelivered, opOutboxFailed, opOutboxReplay:
		if o.obdone != nil {
			o.obdone(o.n, o.err)
		}
	case opVideoCall:
		if o.vcdone != nil {
			if o.err != nil {
				o.vcdone(nil, false, o.err)
			} else {
				o.vcdone(o.vcRes, o.vcMoved, nil)
			}
		}
	}
}

type committer struct {
	s *store

	mu     sync.Mutex
	queue  []*op
	closed bool

	wake    chan struct{} // capacity 1: "the queue changed"
	stopped chan struct{} // closed when the committer goroutine returned
}

func (c *committer) start(s *store) {
	c.s = s
	c.wake = make(chan struct{}, 1)
	c.stopped = make(chan struct{})
	go c.run()
}

func (c *committer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue adds o to the queue; ErrClosed once Close has begun.
func (c *committer) enqueue(o *op) error {
	o.enqueued = time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, o)
	c.mu.Unlock()
	c.signal()
	return nil
}

// close refuses new ops, lets the committer drain the queue and waits for it.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.signal()
	<-c.stopped
}

// completionQueue is how many committed batches may wait for their
// completions before the committer waits for them.
const completionQueue = 16

func (c *committer) run() {
	defer close(c.stopped)
	// Completions (the callers' callbacks: actor messages, socket fan-out)
	// run on a goroutine of their own, in commit order, so that the next
	// batch goes to the database meanwhile.
	committed := make(chan []*op, completionQueue)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for batch := range committed {
			c.s.finishBatch(batch)
		}
	}()
	for {
		batch := c.next()
		if batch == nil {
			close(committed)
			<-finished
			return
		}
		c.s.commitBatch(batch)
		committed <- batch
	}
}

// next blocks until there is work and returns the next batch; nil when the
// store is closed and the queue is empty.
func (c *committer) next() []*op {
	maxRows, maxWait := c.s.cfg.BatchMaxRows, c.s.cfg.BatchMaxWait
	c.mu.Lock()
	for len(c.queue) == 0 {
		if c.closed {
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		<-c.wake
		c.mu.Lock()
	}
	if len(c.queue) < maxRows && !c.closed && maxWait > 0 {
		// Wait for more, counting from when the first op arrived: an op
		// that already waited through the previous commit goes at once.
		// The wait also ends when the arrivals pause (closeAt).
		deadline := c.queue[0].enqueued.Add(maxWait)
		closeAt := c.closeAtLocked(deadline)
		c.mu.Unlock()
		if d := time.Until(closeAt); d > 0 {
			// Each wake-up (a new op, or the time to close) looks again:
			// new ops move the close time.
			timer := time.NewTimer(d)
			for {
				select {
				case <-timer.C:
				case <-c.wake:
				}
				c.mu.Lock()
				full := len(c.queue) >= maxRows || c.closed
				closeAt = c.closeAtLocked(deadline)
				c.mu.Unlock()
				d := time.Until(closeAt)
				if full || d <= 0 {
					timer.Stop()
					break
				}
				timer.Reset(d)
			}
		}
		c.mu.Lock()
	}
	n := min(len(c.queue), maxRows)
	batch := make([]*op, n)
	copy(batch, c.queue)
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	c.mu.Unlock()
	return batch
}

// A batch also closes when its writes stop coming: once no write has
// arrived for pauseSpacings times their mean spacing so far (at least
// minSpacing each). Writes that come in a burst (every client of a closed
// loop answered by one commit and sending its next request at once) then
// go without waiting out BatchMaxWait after the burst, while writes that
// come at random keep gathering for BatchMaxWait: a gap of four mean
// spacings ends one in fifty of them.
const (
	pauseSpacings = 4
	minSpacing    = 25 * time.Microsecond
)

// closeAtLocked is when the queued batch closes: at deadline, or earlier
// once the arrivals have paused. c.mu is held.
func (c *committer) closeAtLocked(deadline time.Time) time.Time {
	n := len(c.queue)
	if n < 2 || c.s.cfg.BatchWaitFull {
		return deadline
	}
	first, last := c.queue[0].enqueued, c.queue[n-1].enqueued
	spacing := max(last.Sub(first)/time.Duration(n-1), minSpacing)
	if pause := last.Add(pauseSpacings * spacing); pause.Before(deadline) {
		return pause
	}
	return deadline
}

// commitBatch applies batch (see the comment at the top of this file) and
// reports it to OnBatch.
func (s *store) commitBatch(batch []*op) {
	start := time.Now()
	err := s.applyBatch(batch)
	if err != nil {
		s.log.Warn().Err(err).Int("writes", len(batch)).Msg("group commit failed; writes retried or failed individually")
	}
	if s.cfg.OnBatch != nil {
		s.safely("OnBatch", func() { s.cfg.OnBatch(len(batch), time.Since(start), err) })
	}
}

// finishBatch calls OnOutbox when committed writes of batch touched the
// outbox, then the completions in queue order (so a caller that waited for
// its write knows OnOutbox already ran). Batches are finished in commit order.
func (s *store) finishBatch(batch []*op) {
	if s.cfg.OnOutbox != nil {
		for _, o := range batch {
			if o.err == nil && o.outboxRows > 0 {
				s.safely("OnOutbox", s.cfg.OnOutbox)
				break
			}
		}
	}
	for _, o := range batch {
		s.safely("write completion", o.complete)
	}
}

// safely runs a caller's callback on the committer goroutine; a panic there
// must not stop the committer (every later write would hang).
func (s *store) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Interface("panic", r).Str("callback", what).Msg("callback panicked on the committer goroutine")
		}
	}()
	f()
}

// applyBatch returns the error of the first batch transaction, nil when the
// batch committed as one. The ops carry their own outcomes.
func (s *store) applyBatch(batch []*op) error {
	var first error
	pending := batch
	fromCache := s.cacheServes(pending)
	if fromCache {
		s.cachedBatches.Add(1)
	}
	if s.convs != nil {
		defer func() { s.convsLen.Store(int64(s.convs.len())) }()
	}
	for len(pending) > 0 {
		bad, err := s.runTx(pending, fromCache)
		if err == nil {
			return first
		}
		if fromCache {
			// A redelivery or a conversation the cache has behind: the
			// batch runs again with its reads (convcache.go).
			s.cacheMisses.Add(1)
			s.forgetBatch(pending)
			fromCache = false
			continue
		}
		if s.convs != nil {
			s.convs.clear()
		}
		if first == nil {
			first = err
		}
		var be beginError
		switch {
		case bad >= 0 && writeCaused(pending[bad].err):
			// pending[bad] keeps its error; the others go again together.
			pending = append(pending[:bad:bad], pending[bad+1:]...)
		case errors.As(err, &be):
			for _, o := range pending {
				o.fail(fmt.Errorf("%w: %w", ErrUnavailable, be.err))
			}
			return first
		default:
			if perr := s.pingWriter(); perr != nil {
				for _, o := range pending {
					o.fail(fmt.Errorf("%w: %w", ErrUnavailable, perr))
				}
				return first
			}
			for _, o := range pending {
				s.runAlone(o)
			}
			return first
		}
	}
	return first
}

type beginError struct{ err error }

func (e beginError) Error() string { return "begin: " + e.err.Error() }
func (e beginError) Unwrap() error { return e.err }

func (s *store) pingWriter() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.wdb.PingContext(ctx)
}

// runTx applies ops in one transaction. On failure it returns the index of
// the op whose error aborted the transaction (-1 when BEGIN or COMMIT failed).
func (s *store) runTx(ops []*op, fromCache bool) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	tx, err := s.beginBatch(ctx)
	if err != nil {
		return -1, beginError{err}
	}
	reset := func() {
		for _, o := range ops {
			o.reset()
		}
	}
	now := dbNow()
	b := newBatchState()
	if err := s.prefetch(ctx, tx, b, ops, fromCache); err != nil {
		tx.rollback()
		reset()
		return -1, fmt.Errorf("prefetch: %w", err)
	}
	for i, o := range ops {
		o.reset()
		if !batched(o.kind) {
			// Other ops read and change the database directly.
			if err := s.flush(ctx, tx, b, false); err != nil {
				tx.rollback()
				reset()
				return -1, fmt.Errorf("flush: %w", err)
			}
			b.forget()
		}
		t := &txn{s: s, tx: tx, ctx: ctx, now: now, b: b}
		s.applyOp(t, o)
		if o.err != nil && (t.dirty || !cleanError(o.err)) {
			tx.rollback()
			return i, fmt.Errorf("write %d of %d: %w", i+1, len(ops), o.err)
		}
		if o.err != nil && fromCache && (errors.Is(o.err, ErrSeqTaken) || errors.Is(o.err, ErrNotFound)) {
			// The cache may be behind: the database decides.
			tx.rollback()
			reset()
			return i, fmt.Errorf("write %d of %d: cached conversation: %w", i+1, len(ops), o.err)
		}
	}
	if err := s.flush(ctx, tx, b, true); err != nil {
		tx.rollback()
		reset()
		return -1, fmt.Errorf("flush: %w", err)
	}
	if err := tx.commit(ctx); err != nil {
		reset()
		return -1, fmt.Errorf("commit: %w", err)
	}
	s.remember(b)
	return -1, nil
}

// cacheServes reports whether every conversation the batch writes is in the
// committed cache and no op reads the database directly: the batch can then
// skip its reads.
func (s *store) cacheServes(ops []*op) bool {
	if s.convs == nil {
		return false
	}
	for _, o := range ops {
		if !batched(o.kind) {
			return false
		}
		if o.kind == opConversationWrite && s.convs.get(o.w.ConversationID) == nil {
			return false
		}
	}
	return true
}

// remember caches the conversations of a committed batch as it left them.
func (s *store) remember(b *batchState) {
	if s.convs == nil {
		return
	}
	for _, id := range b.forgotten {
		s.convs.remove(id)
	}
	for _, c := range b.convs {
		s.convs.put(c)
	}
}

// CommitStats reads the committer's counters.
func (s *store) CommitStats() CommitStats {
	return CommitStats{Requests: s.requests.Load(), CachedBatches: s.cachedBatches.Load(),
		CacheMisses: s.cacheMisses.Load(), CachedConversations: s.convsLen.Load()}
}

// forgetBatch drops the conversations of ops from the committed cache.
func (s *store) forgetBatch(ops []*op) {
	for _, o := range ops {
		if o.kind == opConversationWrite {
			s.convs.remove(o.w.ConversationID)
		}
	}
}

// runAlone applies one op in its own transaction.
func (s *store) runAlone(o *op) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	o.reset()
	tx, err := s.beginBatch(ctx)
	if err != nil {
		o.fail(fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	b := newBatchState()
	t := &txn{s: s, tx: tx, ctx: ctx, now: dbNow(), b: b}
	s.applyOp(t, o)
	if o.err == nil {
		if err := s.flush(ctx, tx, b, true); err != nil {
			o.reset()
			o.err = err
		}
	}
	if o.err != nil {
		tx.rollback()
		o.fail(s.classify(o.err))
		return
	}
	if err := tx.commit(ctx); err != nil {
		o.fail(s.classify(fmt.Errorf("commit: %w", err)))
	}
}

// classify marks connection failures as ErrUnavailable.
func (s *store) classify(err error) error {
	if connectionError(err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func (s *store) applyOp(t *txn, o *op) {
	switch o.kind {
	case opConversationWrite:
		o.res, o.err = s.applyConversationWrite(t, o.w)
	case opWebhookLog:
		o.err = s.insertWebhookLog(t, o.hook, &o.logID)
	case opWebhookOutcome:
		o.err = s.updateWebhookOutcome(t, o.outcomeID, o.outcome)
	case opOutboxDelivered, opOutboxFailed, opOutboxReplay:
		o.n, o.err = s.applyOutboxUpdate(t, o.kind, o.ob)
	case opCallRecordingPath:
		o.err = s.applyCallRecordingPath(t, o.callRec)
	case opVideoCall:
		o.vcRes, o.vcMoved, o.err = s.applyVideoCallOp(t, o.vc)
	default:
		o.err = fmt.Errorf("%w: unknown op %d", ErrInvalid, o.kind)
	}
	if o.err == nil {
		o.outboxRows = t.outboxRows
	}
}

// cleanError reports errors that the write functions return before touching
// the transaction (they are decided by reads and checks only).
func cleanError(err error) bool {
	return errors.Is(err, ErrSeqTaken) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid)
}

// writeCaused reports errors that belong to one write (its data broke a
// constraint) rather than to the connection or the batch as a whole.
func writeCaused(err error) bool {
	var fe flushError
	if errors.As(err, &fe) {
		return false // rows of earlier writes may be at fault
	}
	if cleanError(err) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1048, // column cannot be null
			1062,       // duplicate entry
			1264,       // out of range
			1292,       // incorrect datetime / truncated value
			1366,       // incorrect string value
			1406,       // data too long
			1451, 1452, // foreign key
			3140,       // invalid JSON (MySQL)
			3819, 4025: // check constraint (MySQL, MariaDB)
			return true
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // primary result code
		case 18, // SQLITE_TOOBIG
			19, // SQLITE_CONSTRAINT
			20: // SQLITE_MISMATCH
			return true
		}
	}
	return false
}

func connectionError(err error) bool {
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// txn is one write's view of the batch transaction. dirty is set before the
// first statement that may change a row.
type txn struct {
	s     *store
	tx    *batchTx
	ctx   context.Context
	now   time.Time
	dirty bool
	// b holds what the writes of the transaction share (batch.go).
	b *batchState
	// outboxRows counts outbox rows inserted or made pending.
	outboxRows int
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	if err := t.pending(); err != nil {
		return nil, err
	}
	t.dirty = true
	return t.tx.ExecContext(t.ctx, query, args...)
}

// queryRow runs a read inside the write, after the batch's pending messages
// were inserted (a read must see them).
func (t *txn) queryRow(query string, args ...any) rowScanner {
	if err := t.pending(); err != nil {
		return failedRow{err}
	}
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// failedRow is a read that could not run: Scan reports why.
type failedRow struct{ err error }

func (r failedRow) Scan(...any) error { return r.err }

// pending inserts the batch's pending messages before a statement of a write.
func (t *txn) pending() error {
	if len(t.b.messages) == 0 {
		return nil
	}
	if err := t.s.flushMessages(t.ctx, t.tx, t.b); err != nil {
		return flushError{err}
	}
	return nil
}

func (t *txn) insert(query string, args ...any) (int64, error) {
	res, err := t.exec(query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// insertDirect is insert for a statement that reads no message: the
// batch's pending messages stay pending.
func (t *txn) insertDirect(query string, args ...any) (int64, error) {
	t.dirty = true
	res, err := t.tx.ExecContext(t.ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// forUpdate locks the rows a read returns until the end of the transaction
// (MySQL; SQLite's writer already holds the database write lock).
func (t *txn) forUpdate() string {
	if t.s.dialect == dialectMySQL {
		return " FOR UPDATE"
	}
	return ""
}

// Public write entry points.

// SubmitConversationWrite queues w. The store reads w (and what its items
// point to) until done is called, possibly more than once (retries): the
// caller must not modify it meanwhile. done runs on the committer goroutine,
// except when w is refused at once (nil write, store closed): then it runs on
// the caller's goroutine before SubmitConversationWrite returns.
func (s *store) SubmitConversationWrite(w *ConversationWrite, done func(*WriteResult, error)) {
	if w == nil {
		if done != nil {
			done(nil, fmt.Errorf("%w: nil ConversationWrite", ErrInvalid))
		}
		return
	}
	if err := s.c.enqueue(&op{kind: opConversationWrite, w: w, wdone: done}); err != nil && done != nil {
		done(nil, err)
	}
}

type writeOutcome struct {
	res *WriteResult
	err error
}

// ApplyConversationWrite submits w and waits for its commit. When ctx ends
// first it returns ctx.Err(); the write may still commit.
func (s *store) ApplyConversationWrite(ctx context.Context, w *ConversationWrite) (*WriteResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan writeOutcome, 1)
	s.SubmitConversationWrite(w, func(res *WriteResult, err error) { ch <- writeOutcome{res, err} })
	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		return nil, ctx.Err() // the write may still commit
	}
}

type logOutcome struct {
	id  int64
	err error
}

// LogWebhook stores l in the next batch and returns its id once committed.
func (s *store) LogWebhook(ctx context.Context, l *WebhookLog) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if l == nil {
		return 0, fmt.Errorf("%w: nil WebhookLog", ErrInvalid)
	}
	ch := make(chan logOutcome, 1)
	o := &op{kind: opWebhookLog, hook: l, hdone: func(id int64, err error) { ch <- logOutcome{id, err} }}
	if err := s.c.enqueue(o); err != nil {
		return 0, err
	}
	select {
	case r := <-ch:
		return r.id, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// SetWebhookOutcome updates a logged webhook's outcome in the next batch;
// done (optional) is called after the commit. An unknown id is not an error;
// a row the same batch inserts is never updated (pendingOutcome).
func (s *store) SetWebhookOutcome(id int64, outcome string, done func(error)) {
	o := &op{kind: opWebhookOutcome, outcomeID: id, outcome: outcome, odone: done}
	if err := s.c.enqueue(o); err != nil && done != nil {
		done(err)
	}
}
