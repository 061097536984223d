package actors

import (
	"context"
	"errors"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"urva/persistence"
)

// assignCmd asks a conversation actor to give the conversation to an RM
// (a supervisor's reassignment).
type assignCmd struct {
	rmID int64
	done func(*persistence.Conversation, error)
}

// disconnectCmd cuts an RM session's socket; the client reconnects and
// resumes by cursor.
type disconnectCmd struct{ reason string }

func (a *conversationActor) assignTo(ctx actor.Context, c *assignCmd) {
	if !a.load() {
		c.done(nil, fmt.Errorf("%w: database unavailable", ErrUnavailable))
		return
	}
	if a.conv == nil {
		c.done(nil, ErrNotFound)
		return
	}
	a.enqueueItems(ctx, []persistence.WriteItem{{Kind: persistence.ItemAssign, AssignRMID: c.rmID}},
		func(_ persistence.ItemResult, conv *persistence.Conversation, err error) { c.done(conv, err) })
}

// Assign gives a conversation to an RM. Only supervisors may; the RM must
// exist and have the RM role. The new RM's sockets see the conversation
// from then on, and both RMs get the "assigned" event.
func (s *System) Assign(ctx context.Context, p Principal, conversationID, rmID int64) (*persistence.Conversation, error) {
	if !p.Supervisor() {
		return nil, ErrForbidden
	}
	rm, err := s.opts.Store.RMByID(ctx, rmID)
	if errors.Is(err, persistence.ErrNotFound) {
		return nil, fmt.Errorf("%w: there is no RM with id %d", ErrBadRequest, rmID)
	}
	if err != nil {
		return nil, storeError(err)
	}
	if rm.Role != persistence.RoleRM {
		return nil, fmt.Errorf("%w: %s is a %s, not an RM", ErrBadRequest, rm.Username, rm.Role)
	}
	key, err := s.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	type reply struct {
		c   *persistence.Conversation
		err error
	}
	ch := make(chan reply, 1)
	s.router.TellConversation(key, &assignCmd{rmID: rmID, done: func(c *persistence.Conversation, err error) { ch <- reply{c, err} }})
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// RMStatus is an RM as a supervisor sees it.
type RMStatus struct {
	persistence.RM
	Online bool // at least one live socket
}

// RMs lists every RM and supervisor with whether they are online. Only
// supervisors may.
func (s *System) RMs(ctx context.Context, p Principal) ([]RMStatus, error) {
	if !p.Supervisor() {
		return nil, ErrForbidden
	}
	list, err := s.opts.Store.ListRMs(ctx, 10000)
	if err != nil {
		return nil, storeError(err)
	}
	online := s.router.OnlineSessions()
	out := make([]RMStatus, len(list))
	for i, rm := range list {
		out[i] = RMStatus{RM: rm, Online: online[rm.ID]}
	}
	return out, nil
}

// DisconnectRM closes every live socket of an RM with reason (an operator's
// action; the clients reconnect and resume by cursor). It returns how many.
func (s *System) DisconnectRM(rmID int64, reason string) int {
	return s.router.tellSessions(rmID, &disconnectCmd{reason: reason})
}
