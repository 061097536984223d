package actors

import (
	"context"
	"errors"

	"urva/persistence"
)

// Message returns one message p may see: any message for a supervisor,
// otherwise a message of a conversation assigned to p. ErrNotFound when
// there is no such message, ErrForbidden when it belongs to a conversation
// assigned to someone else (or to no one).
func (s *System) Message(ctx context.Context, p Principal, id int64) (*persistence.Message, error) {
	if id <= 0 {
		return nil, ErrNotFound
	}
	m, err := s.opts.Store.MessageByID(ctx, id)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, storeError(err)
	}
	if p.Supervisor() {
		return m, nil
	}
	c, err := s.opts.Store.ConversationByID(ctx, m.ConversationID)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, storeError(err)
	}
	if c.AssignedRMID != p.RMID {
		return nil, ErrForbidden
	}
	return m, nil
}
