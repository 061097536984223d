package crm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"urva/transport/internal/httpx"

	"github.com/valyala/fasthttp"
)

// Adapter delivers one event to a CRM. Deliver returns nil once the CRM
// accepted the event and a *DeliveryError otherwise. Implementations must be
// safe for concurrent use and must send the same EventID on every attempt of
// an event, so that the CRM can drop duplicates. Webhook is the generic
// adapter; CRM-specific adapters implement the same interface.
type Adapter interface {
	Deliver(ctx context.Context, d Delivery) error
}

// DeliveryError is an attempt the CRM did not accept.
//
// Status is the HTTP status, or 0 when no answer arrived (connection
// refused or reset, DNS failure, timeout, cancellation); Err then holds the
// cause. Body is the start of the answer: its first 512 bytes, made valid
// UTF-8.
//
// Retryable reports a failure that is expected to clear by itself: no
// answer, 408, 425, 429 and 5xx. Other statuses (3xx, 4xx) usually need a
// fix on one side (a wrong URL or secret, a payload the CRM rejects); they
// are not Retryable, but the event is still worth redelivering until it
// expires, because the fix may come: callers keep retrying them and may use
// a longer backoff. RetryAfter is the delay the CRM asked for with
// Retry-After (delay seconds or an HTTP date), 0 when it did not; callers
// should wait at least that long.
type DeliveryError struct {
	Status     int
	Body       string
	Retryable  bool
	RetryAfter time.Duration
	Err        error // the transport error when Status is 0
}

func (e *DeliveryError) Error() string {
	if e.Status == 0 {
		if e.Err != nil {
			return "crm: webhook not delivered: " + e.Err.Error()
		}
		return "crm: webhook not delivered"
	}
	s := fmt.Sprintf("crm: webhook answered HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Unwrap returns the transport error, if any.
func (e *DeliveryError) Unwrap() error { return e.Err }

// WebhookOptions configures a Webhook.
type WebhookOptions struct {
	URL     string           // where events are POSTed (crm.webhook_url)
	Secret  string           // HMAC key of X-Urva-Signature (crm.secret)
	Timeout time.Duration    // one attempt; 10s when zero
	Clock   func() time.Time // the signing time; time.Now when nil
}

// Webhook delivers events as signed HTTP POSTs to one URL. It implements
// Adapter and is safe for concurrent use; connections are pooled.
type Webhook struct {
	url     string
	secret  string
	timeout time.Duration
	clock   func() time.Time
	http    *fasthttp.Client
}

var _ Adapter = (*Webhook)(nil)

// Webhook limits.
const (
	defaultTimeout  = 10 * time.Second
	maxConnsPerHost = 64
	maxResponseBody = 1 << 20
	maxErrorBody    = 512
	userAgent       = "urva-crm/1"
)

// NewWebhook returns a webhook adapter.
func NewWebhook(o WebhookOptions) *Webhook {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	clock := o.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Webhook{
		url:     o.URL,
		secret:  o.Secret,
		timeout: timeout,
		clock:   clock,
		http: &fasthttp.Client{
			Name:                userAgent,
			DialTimeout:         httpx.Dial,
			MaxConnsPerHost:     maxConnsPerHost,
			MaxConnWaitTimeout:  timeout,
			MaxIdleConnDuration: 30 * time.Second,
			ReadTimeout:         timeout,
			WriteTimeout:        timeout,
			MaxResponseBodySize: maxResponseBody,
			RetryIfErr:          retryStaleConn,
		},
	}
}

// retryStaleConn resends a request, once, when the connection broke before
// any answer: typically a pooled connection the CRM closed while idle. A POST
// is not idempotent in general, but a webhook is: the CRM drops an event id
// it already has.
func retryStaleConn(_ *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	if attempts > 1 {
		return false, false
	}
	return false, errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// CloseIdleConnections closes kept-alive connections to the CRM.
func (w *Webhook) CloseIdleConnections() { w.http.CloseIdleConnections() }

// Deliver POSTs d to the CRM, signed with the current Clock time. A 2xx
// answer returns nil; anything else returns a *DeliveryError. The attempt
// ends at the earlier of the Timeout and ctx's deadline; ctx is checked
// before sending, but a cancellation during the attempt does not cut it
// short.
func (w *Webhook) Deliver(ctx context.Context, d Delivery) error {
	if err := ctx.Err(); err != nil {
		return &DeliveryError{Retryable: true, Err: err}
	}
	deadline := time.Now().Add(w.timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	body := Body(d)
	ts := strconv.FormatInt(w.clock().Unix(), 10)

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(w.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.SetUserAgent(userAgent)
	req.Header.Set(HeaderEventID, d.EventID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.secret, ts, body))
	req.SetBodyRaw(body)

	err := w.http.DoDeadline(req, resp, deadline)
	switch {
	case err == nil:
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		// The status line and headers were read; only the body is lost.
		resp.ResetBody()
	default:
		return &DeliveryError{Retryable: true, Err: err}
	}
	status := resp.StatusCode()
	if status >= 200 && status < 300 {
		return nil
	}
	return &DeliveryError{
		Status:     status,
		Body:       snippet(resp.Body()),
		Retryable:  Retryable(status),
		RetryAfter: httpx.RetryAfter(resp.Header.Peek(fasthttp.HeaderRetryAfter), w.clock()),
	}
}

// Retryable reports whether an HTTP status is a transient failure: 408,
// 425, 429 and 5xx.
func Retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status >= 500 && status <= 599
}

// IsTimeout reports whether err is a delivery that got no answer in time.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// snippet is the first bytes of a body for an error, cut at a character
// boundary and made valid UTF-8.
func snippet(b []byte) string {
	if len(b) > maxErrorBody {
		b = b[:maxErrorBody]
		for i := 0; i < utf8.UTFMax-1 && len(b) > 0; i++ {
			if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size != 1 {
				break
			}
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
