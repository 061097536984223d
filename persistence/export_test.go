package persistence

import (
	"context"
	"time"
)

// DropTableForTest lets the external tests break the schema under a running
// store, to drive the committer's fallback path.
func (s *store) DropTableForTest(ctx context.Context, table string) error {
	_, err := s.wdb.ExecContext(ctx, "DROP TABLE "+table)
	return err
}

// WebhookOpForTest is a webhook log row (Log set) or an outcome update of
// the row ID.
type WebhookOpForTest struct {
	Log     *WebhookLog
	ID      int64
	Outcome string
}

// QueueWebhooksForTest queues ops at once, in order (so that they share a
// batch), waits for their completions and returns the log ids and errors.
func (s *store) QueueWebhooksForTest(ops []WebhookOpForTest) ([]int64, []error) {
	ids := make([]int64, len(ops))
	errs := make([]error, len(ops))
	done := make(chan struct{}, len(ops))
	now := time.Now()
	c := &s.c
	c.mu.Lock()
	for i, w := range ops {
		o := &op{kind: opWebhookOutcome, outcomeID: w.ID, outcome: w.Outcome, enqueued: now,
			odone: func(err error) { errs[i] = err; done <- struct{}{} }}
		if w.Log != nil {
			o = &op{kind: opWebhookLog, hook: w.Log, enqueued: now,
				hdone: func(id int64, err error) { ids[i], errs[i] = id, err; done <- struct{}{} }}
		}
		c.queue = append(c.queue, o)
	}
	c.mu.Unlock()
	c.signal()
	for range ops {
		<-done
	}
	return ids, errs
}

// ExecForTest runs a statement outside the committer (another writer).
func (s *store) ExecForTest(ctx context.Context, query string, args ...any) error {
	_, err := s.rdb.ExecContext(ctx, query, args...)
	return err
}

// CountForTest runs a SELECT COUNT(*) outside the committer.
func (s *store) CountForTest(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.rdb.QueryRowContext(ctx, query, args...).Scan(&n)
	return n, err
}

// InterpolateForTest writes args into query as the committer's scripts do
// (literal.go).
func InterpolateForTest(query string, args ...any) (string, error) {
	b, err := interpolate(nil, query, args)
	return string(b), err
}
