// Package crm delivers outbox events to the CRM: it renders an event as the
// signed JSON webhook of the contract ({"id","type","occurred_at","data"} with
// X-Urva-Event-Id, X-Urva-Timestamp and X-Urva-Signature), posts it with a
// pooled fasthttp client and classifies the answer for the caller's retry
// policy. Sign and Verify implement the signature for both ends, and Backoff
// computes the delay before the next attempt.
//
// The package delivers one event per call and keeps no state between calls:
// ordering, retry scheduling, expiry and dead letters are the outbox
// drainer's job. Adapter is the seam for CRM-specific integrations; Webhook
// is the generic one.
package crm
