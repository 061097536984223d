package persistence

import "context"

// DropTableForTest lets the external tests break the schema under a running
// store, to drive the committer's fallback path.
func (s *store) DropTableForTest(ctx context.Context, table string) error {
	_, err := s.wdb.ExecContext(ctx, "DROP TABLE "+table)
	return err
}
