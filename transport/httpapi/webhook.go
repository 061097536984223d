package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/persistence"
	"urva/transport/whatsapp"
)

// Webhook outcomes recorded in the webhook log.
const (
	outcomeReceived  = persistence.WebhookReceived
	outcomeProcessed = persistence.WebhookProcessed
	outcomeDuplicate = persistence.WebhookDuplicate
	outcomeFailed    = "failed: "
)

// whatsAppVerify answers Meta's subscription check:
// GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C.
func (s *Server) whatsAppVerify(c *call) {
	q := c.ctx.QueryArgs()
	challenge, ok := whatsapp.VerifySubscription(
		string(q.Peek("hub.mode")),
		string(q.Peek("hub.verify_token")),
		string(q.Peek("hub.challenge")),
		s.opts.WhatsAppVerifyToken,
	)
	if !ok || s.opts.WhatsAppVerifyToken == "" {
		c.log.Warn().Msg("whatsapp webhook verification refused")
		writeError(c.ctx, fasthttp.StatusForbidden, "verification failed")
		return
	}
	c.log.Info().Msg("whatsapp webhook verified")
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetContentType("text/plain; charset=utf-8")
	c.ctx.SetBodyString(challenge)
}

// whatsAppWebhook takes a Cloud API notification: signature, parse, then the
// raw log row and the ingestion in parallel; 200 only once both committed.
func (s *Server) whatsAppWebhook(c *call) {
	defer s.webhookDone(c, WebhookWhatsApp, time.Now())
	// readBody gave the request a body of its own, safe to use from other goroutines.
	body := c.ctx.Request.Body()
	sig := string(c.ctx.Request.Header.Peek("X-Hub-Signature-256"))
	if s.opts.WhatsAppAppSecret == "" {
		c.log.Error().Msg("whatsapp webhook refused: no app secret configured")
		writeError(c.ctx, fasthttp.StatusUnauthorized, "invalid signature")
		return
	}
	if err := whatsapp.VerifySignature(s.opts.WhatsAppAppSecret, body, sig); err != nil {
		msg := "invalid signature"
		if errors.Is(err, whatsapp.ErrMissingSignature) {
			msg = "missing signature"
		}
		c.log.Warn().Err(err).Msg("whatsapp webhook signature rejected")
		writeError(c.ctx, fasthttp.StatusUnauthorized, msg)
		return
	}
	n, err := whatsapp.Parse(body)
	if err != nil {
		c.log.Warn().Err(err).Msg("whatsapp webhook malformed")
		writeError(c.ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	headers := headersJSON(
		"X-Hub-Signature-256", sig,
		"Content-Type", string(c.ctx.Request.Header.ContentType()),
		"User-Agent", string(c.ctx.Request.Header.UserAgent()),
		"X-Request-Id", c.id)
	outcome, ok := s.commitItems(c, rawWebhook{provider: "whatsapp", headers: headers, body: body}, n.Inbound())
	if ok {
		writeStatus(c.ctx, outcome)
	}
}

// rawWebhook is a provider request as the raw webhook log keeps it.
type rawWebhook struct {
	provider string
	path     string // as logged: never a secret
	headers  []byte
	body     []byte
}

// commitWebhook stores the raw webhook and runs apply (which hands what it
// carried to the actors), both at once, and reports the outcome once both
// are committed. On failure it has answered (503 so that the provider
// retries; 400 for input the store refuses) and returns false.
func (s *Server) commitWebhook(c *call, raw rawWebhook, apply func(ctx context.Context) (outcome string, err error)) (string, bool) {
	if s.store == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return "", false
	}
	entry := raw.logEntry(outcomeReceived)

	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WebhookTimeout)
	defer cancel()

	type logged struct {
		id  int64
		err error
	}
	logCh := make(chan logged, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				logCh <- logged{err: fmt.Errorf("webhook log panicked: %v", r)}
			}
		}()
		id, err := s.store.LogWebhook(ctx, entry)
		logCh <- logged{id: id, err: err}
	}()
	outcome, applyErr := apply(ctx)
	lg := <-logCh

	if lg.err != nil {
		c.log.Error().Err(lg.err).Str("provider", raw.provider).Msg("webhook: log not stored")
	}
	if applyErr != nil {
		c.log.Error().Err(applyErr).Str("provider", raw.provider).Msg("webhook: not applied")
		if lg.err == nil {
			s.store.SetWebhookOutcome(lg.id, outcomeFailed+applyErr.Error(), nil)
		}
	}
	if lg.err != nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return "", false
	}
	if applyErr != nil {
		notApplied(c, applyErr)
		return "", false
	}
	s.store.SetWebhookOutcome(lg.id, outcome, nil)
	c.outcome = outcome
	c.log.Info().Str("provider", raw.provider).Int64("webhook_id", lg.id).Str("outcome", outcome).Msg("webhook committed")
	return outcome, true
}

// logEntry is the webhook log row of raw, received now.
func (raw rawWebhook) logEntry(outcome string) *persistence.WebhookLog {
	return &persistence.WebhookLog{
		Provider:   raw.provider,
		Path:       raw.path,
		Headers:    raw.headers,
		Body:       raw.body,
		ReceivedAt: time.Now().UTC(),
		Outcome:    outcome,
	}
}

// commitItems is commitWebhook for webhooks that carry messages and
// statuses: the outcome is duplicate when every item was one. A webhook
// with one item (nearly all of them) goes through commitItem.
func (s *Server) commitItems(c *call, raw rawWebhook, items []actors.Inbound) (string, bool) {
	if s.actors == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return "", false
	}
	raw.path = string(c.ctx.Path())
	if len(items) == 1 && s.store != nil {
		return s.commitItem(c, raw, items[0])
	}
	return s.commitWebhook(c, raw, func(ctx context.Context) (string, error) {
		if len(items) == 0 {
			return outcomeProcessed, nil
		}
		results, err := s.ingest(ctx, items)
		if err != nil {
			return "", err
		}
		dups := 0
		for _, r := range results {
			if r.Duplicate {
				dups++
			}
		}
		if dups == len(results) {
			return outcomeDuplicate, nil
		}
		return outcomeProcessed, nil
	})
}

// ingest calls Actors.Ingest, turning a panic into an error so the provider
// gets a 503 and retries.
func (s *Server) ingest(ctx context.Context, items []actors.Inbound) (res []actors.IngestResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ingest panicked: %v", r)
		}
	}()
	return s.actors.Ingest(ctx, items)
}

// commitItem commits a webhook that carries one item: its log row is stored
// in the item's own transaction, with the item's outcome
// (actors.Inbound.Log), so that the webhook is one write instead of a log
// row, the item and an outcome update. When the item needed no write
// (IngestResult.LogID 0) or its write failed, the row is logged on its own
// afterwards, with the outcome. (A write still queued when the webhook
// timed out may commit later with its own row: the log then holds the
// delivery twice, failed and processed, as it happened.)
func (s *Server) commitItem(c *call, raw rawWebhook, item actors.Inbound) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WebhookTimeout)
	defer cancel()
	item.Log = raw.logEntry(outcomeReceived)
	results, applyErr := s.ingest(ctx, []actors.Inbound{item})
	outcome := outcomeProcessed
	var logID int64
	switch {
	case applyErr != nil:
		outcome = outcomeFailed + applyErr.Error()
		c.log.Error().Err(applyErr).Str("provider", raw.provider).Msg("webhook: not applied")
	case results[0].Duplicate:
		outcome = outcomeDuplicate
	}
	if applyErr == nil {
		logID = results[0].LogID
	}
	if logID == 0 {
		// Logged on its own: a fresh deadline, so that a webhook that timed
		// out is still logged.
		lctx, lcancel := context.WithTimeout(context.Background(), s.opts.WebhookTimeout)
		defer lcancel()
		id, err := s.store.LogWebhook(lctx, raw.logEntry(outcome))
		if err != nil {
			c.log.Error().Err(err).Str("provider", raw.provider).Msg("webhook: log not stored")
			writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
			return "", false
		}
		logID = id
	}
	if applyErr != nil {
		notApplied(c, applyErr)
		return "", false
	}
	c.outcome = outcome
	c.log.Info().Str("provider", raw.provider).Int64("webhook_id", logID).Str("outcome", outcome).Msg("webhook committed")
	return outcome, true
}

// notApplied answers a webhook whose items were not applied (its log row is
// stored): 400 for input the store refuses, since retrying cannot help; 503
// otherwise, so that the provider retries.
func notApplied(c *call, applyErr error) {
	if errors.Is(applyErr, actors.ErrBadRequest) {
		writeError(c.ctx, fasthttp.StatusBadRequest, applyErr.Error())
		return
	}
	writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
}
