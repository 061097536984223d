package actors

import (
	"context"
	"fmt"
	"time"

	"urva/actors/msg"
)

// ProviderClient sends one stored outbound message through a provider's API
// (the WhatsApp Cloud API, Twilio, ...). Implementations live in transport.
type ProviderClient interface {
	// Send delivers req once and returns the provider's message id. Failures
	// are *SendError so the provider actor knows whether to retry.
	Send(ctx context.Context, req *msg.ProviderSend) (providerMessageID string, err error)
}

// SendError is a provider's refusal or an infrastructure failure, classified.
type SendError struct {
	Code       string        // the provider's error code ("131047", "429", "timeout", ...)
	Title      string        // short text for the RM
	Message    string        // the provider's own words
	Retry      bool          // worth another attempt (5xx, rate limits, timeouts)
	RetryAfter time.Duration // provider-suggested delay, 0 when none
	Alert      bool          // an operator must act (bad token, missing permission)
}

func (e *SendError) Error() string {
	return fmt.Sprintf("provider error %s: %s: %s", e.Code, e.Title, e.Message)
}
