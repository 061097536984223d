package httpapi

import (
	"crypto/subtle"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"urva/transport/auth"
)

// Metrics is what the HTTP layer measures, and the registry it serves at
// GET /metrics. *metrics.Metrics (internal/metrics) implements it; this
// package does not import that one. With Options.Metrics nil nothing is
// measured and /metrics answers 404.
//
// /metrics is open, as Prometheus exporters usually are (restrict it at the
// network level), unless Options.MetricsToken is set: then it requires
// Authorization: Bearer <MetricsToken>, as /admin/* requires the admin token.
type Metrics interface {
	prometheus.Gatherer
	// Webhook counts one answered provider webhook (a WebhookProviders
	// and a WebhookOutcomes value) and how long the handler took.
	Webhook(provider, outcome string, d time.Duration)
	// SocketOpened and SocketClosed count websockets (actors.SocketRM,
	// actors.SocketVideo).
	SocketOpened(socket string)
	SocketClosed(socket string)
}

// Webhook providers: the provider label of the webhook metrics.
const (
	WebhookWhatsApp  = "whatsapp"   // POST /webhooks/whatsapp
	WebhookSMS       = "sms"        // POST /webhooks/sms
	WebhookSMSStatus = "sms_status" // POST /webhooks/sms/status
	WebhookDialler   = "dialler"    // POST /webhooks/dialler/{callback_token}
)

// Webhook outcomes: the outcome label, from what the webhook was answered.
const (
	WebhookProcessed    = "processed"     // 200: committed
	WebhookDuplicate    = "duplicate"     // 200: every item it carried was already stored
	WebhookIgnored      = "ignored"       // 200: a dialler event that is only logged
	WebhookUnknownCall  = "unknown_call"  // 200: a dialler callback about no call we know
	WebhookBadSignature = "bad_signature" // 401: missing or wrong signature, or no secret configured
	WebhookBadToken     = "bad_token"     // 404: wrong dialler callback token
	WebhookMalformed    = "malformed"     // 400: unreadable, unparsable or refused payload
	WebhookTooLarge     = "too_large"     // 413
	WebhookUnavailable  = "unavailable"   // 503: not committed; the provider retries
	WebhookError        = "error"         // anything else (a handler panic: 500)
)

var (
	// WebhookProviders lists every provider label value.
	WebhookProviders = []string{WebhookWhatsApp, WebhookSMS, WebhookSMSStatus, WebhookDialler}
	// WebhookOutcomes lists every outcome label value.
	WebhookOutcomes = []string{WebhookProcessed, WebhookDuplicate, WebhookIgnored, WebhookUnknownCall,
		WebhookBadSignature, WebhookBadToken, WebhookMalformed, WebhookTooLarge, WebhookUnavailable, WebhookError}
)

// metricsRoute is the GET /metrics handler.
func (s *Server) metricsRoute() handlerFunc {
	if s.opts.Metrics == nil {
		return func(c *call) { writeError(c.ctx, fasthttp.StatusNotFound, "not found") }
	}
	h := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(s.opts.Metrics, promhttp.HandlerOpts{
		ErrorLog: promLog{s.log},
		// A collector that fails (the outbox read with the database down)
		// loses its own families only.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	want := []byte(s.opts.MetricsToken)
	return func(c *call) {
		if len(want) > 0 {
			tok := auth.BearerToken(c.ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
			if tok == "" || subtle.ConstantTimeCompare([]byte(tok), want) != 1 {
				unauthorized(c)
				return
			}
		}
		h(c.ctx)
	}
}

// promLog routes the exposition's errors to the server log.
type promLog struct{ log zerolog.Logger }

func (l promLog) Println(v ...any) {
	l.log.Warn().Str("component", "metrics").Msg(strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// webhookDone records a webhook's outcome and duration. Webhook handlers
// defer it first thing, so that it runs before the answer is written: a
// provider that got its answer finds it counted.
func (s *Server) webhookDone(c *call, provider string, start time.Time) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	if r := recover(); r != nil {
		m.Webhook(provider, WebhookError, time.Since(start))
		panic(r) // handle answers 500 and logs it
	}
	m.Webhook(provider, webhookOutcome(c.ctx.Response.StatusCode(), c.outcome), time.Since(start))
}

// webhookRefused records a webhook refused before routing (a body too
// large or unreadable); other requests are not counted.
func (s *Server) webhookRefused(c *call, path string, start time.Time) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	var provider string
	switch {
	case path == "/webhooks/whatsapp":
		provider = WebhookWhatsApp
	case path == "/webhooks/sms":
		provider = WebhookSMS
	case path == "/webhooks/sms/status":
		provider = WebhookSMSStatus
	case strings.HasPrefix(path, diallerWebhookPrefix):
		provider = WebhookDialler
	default:
		return
	}
	m.Webhook(provider, webhookOutcome(c.ctx.Response.StatusCode(), ""), time.Since(start))
}

// webhookOutcome names a webhook's outcome from its answer; committed is
// what the webhook log recorded for a committed one.
func webhookOutcome(status int, committed string) string {
	switch {
	case status >= 200 && status < 300:
		switch {
		case committed == outcomeDuplicate:
			return WebhookDuplicate
		case committed == outcomeUnknownCall:
			return WebhookUnknownCall
		case strings.HasPrefix(committed, outcomeIgnored):
			return WebhookIgnored
		}
		return WebhookProcessed
	case status == fasthttp.StatusUnauthorized:
		return WebhookBadSignature
	case status == fasthttp.StatusNotFound:
		return WebhookBadToken
	case status == fasthttp.StatusBadRequest:
		return WebhookMalformed
	case status == fasthttp.StatusRequestEntityTooLarge:
		return WebhookTooLarge
	case status == fasthttp.StatusServiceUnavailable:
		return WebhookUnavailable
	}
	return WebhookError
}

// socketOpened and socketClosed count a served websocket.
func (s *Server) socketOpened(socket string) {
	if m := s.opts.Metrics; m != nil {
		m.SocketOpened(socket)
	}
}

func (s *Server) socketClosed(socket string) {
	if m := s.opts.Metrics; m != nil {
		m.SocketClosed(socket)
	}
}
