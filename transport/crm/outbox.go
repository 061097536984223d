package crm

import (
	"context"
	"errors"
	"time"

	"urva/persistence"
)

// FromOutbox returns the delivery of an outbox event.
func FromOutbox(ev *persistence.OutboxEvent) Delivery {
	return Delivery{EventID: ev.EventID, Type: ev.Type, OccurredAt: ev.OccurredAt, Data: ev.Data}
}

// OutboxSender delivers persistence outbox events through an Adapter, as the
// CRM sync actor's sender. A *DeliveryError comes back wrapped in an error
// with a RetryAfter() time.Duration method (the Retry-After the CRM asked
// for, 0 when none); errors.As still finds the *DeliveryError.
type OutboxSender struct {
	Adapter Adapter
}

// Deliver sends one outbox event.
func (s OutboxSender) Deliver(ctx context.Context, ev *persistence.OutboxEvent) error {
	err := s.Adapter.Deliver(ctx, FromOutbox(ev))
	var de *DeliveryError
	if errors.As(err, &de) {
		return &retryAfterError{err: err, after: de.RetryAfter}
	}
	return err
}

// retryAfterError exposes a DeliveryError's RetryAfter as a method.
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.after }
