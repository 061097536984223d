package sandbox

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// fake is the machinery the fake providers share: the lock and closed
// state, the background work Close waits for, the subscribers to what the
// fake records (values of type T), and the client that posts its webhooks
// with their retry policy. A provider embeds it; mu also guards the
// provider's own state.
type fake[T any] struct {
	log   zerolog.Logger
	hooks webhooks
	http  *fasthttp.Client // nil when the fake posts no webhooks
	done  chan struct{}    // closed by close: waits end, background work stops
	wg    sync.WaitGroup   // background work and calls in flight, which close waits for
	// dup, when not nil, copies a value for each subscriber, so that no
	// two share memory.
	dup func(T) T

	mu      sync.Mutex
	closed  bool
	subs    map[int]chan T
	nextSub int
}

// webhooks is how a fake posts its webhooks and redelivers them.
type webhooks struct {
	agent    string                // the client's User-Agent; "" when the fake posts none
	timeout  time.Duration         // one POST
	what     string                // what is posted, as the log names it: "status webhook"
	attempts int                   // deliveries of one webhook at the most
	backoff  time.Duration         // before the first redelivery
	doubling bool                  // the backoff doubles after each redelivery, up to maxBackoff
	acked    func(status int) bool // whether the server's answer acknowledges the webhook
}

// newFake returns the core of a fake, logging as sandbox=name.
func newFake[T any](log zerolog.Logger, name string, hooks webhooks) fake[T] {
	return fake[T]{
		log:   log.With().Str("sandbox", name).Logger(),
		hooks: hooks,
		http:  hooks.client(),
		done:  make(chan struct{}),
		subs:  make(map[int]chan T),
	}
}

// client is the HTTP client that posts the webhooks, nil when there are
// none.
func (h webhooks) client() *fasthttp.Client {
	if h.agent == "" {
		return nil
	}
	return &fasthttp.Client{
		Name:                h.agent,
		MaxConnsPerHost:     64,
		MaxConnWaitTimeout:  h.timeout,
		MaxIdleConnDuration: 30 * time.Second,
		ReadTimeout:         h.timeout,
		WriteTimeout:        h.timeout,
		MaxResponseBodySize: 64 << 10,
	}
}

// close marks the fake closed, stops its background work, waits for it and
// for the calls in flight, and closes every subscription. Calls after the
// first do nothing.
func (f *fake[T]) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	close(f.done)
	f.mu.Unlock()
	f.wg.Wait()
	f.mu.Lock()
	for id, ch := range f.subs {
		delete(f.subs, id)
		close(ch)
	}
	f.mu.Unlock()
	if f.http != nil {
		f.http.CloseIdleConnections()
	}
}

// isClosed reports whether close was called.
func (f *fake[T]) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// inject posts a message from a contact's phone, whose id is id, once
// with post, as a call in flight that close waits for. It returns id and
// an error posting (as "sandbox: <what>: ...") or, when the server did not
// acknowledge it, a *WebhookError; when the fake is closed, "" and
// ErrClosed.
func (f *fake[T]) inject(id, what string, post func() (int, []byte, error)) (string, error) {
	f.mu.Lock()
	closed := f.closed
	if !closed {
		f.wg.Add(1)
	}
	f.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	defer f.wg.Done()
	status, body, err := post()
	if err != nil {
		return id, fmt.Errorf("sandbox: %s: %w", what, err)
	}
	if !f.hooks.acked(status) {
		return id, &WebhookError{StatusCode: status, Body: body}
	}
	return id, nil
}

// goLocked runs fn in the background; close waits for it. f.mu is held and
// the fake is not closed.
func (f *fake[T]) goLocked(fn func()) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		fn()
	}()
}

// wait sleeps d, or returns false at close.
func (f *fake[T]) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.done:
		return false
	}
}

// subscribe returns a channel that receives every value published from now
// on, and a function that ends the subscription. A subscriber that falls
// more than subscriberBuffer values behind misses values. The channel is
// closed by the cancel function or by close; after close it comes closed.
func (f *fake[T]) subscribe() (<-chan T, func()) {
	ch := make(chan T, subscriberBuffer)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		close(ch)
		return ch, func() {}
	}
	id := f.nextSub
	f.nextSub++
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(c)
		}
	}
}

// publishLocked hands v to every subscriber; one whose buffer is full
// misses it, and slow, when not nil, is called for it. f.mu is held.
func (f *fake[T]) publishLocked(v T, slow func()) {
	for _, ch := range f.subs {
		out := v
		if f.dup != nil {
			out = f.dup(v)
		}
		select {
		case ch <- out:
		default:
			if slow != nil {
				slow()
			}
		}
	}
}

// accept, unless the fake is closed, keeps v among the most recent
// maxSentKept values of *kept, publishes it (see publishLocked) and, when
// then is not nil, runs then in the background. It reports false when the
// fake is closed.
func (f *fake[T]) accept(kept *[]T, v T, slow, then func()) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	*kept = keepLast(*kept, v, maxSentKept, nil)
	f.publishLocked(v, slow)
	if then != nil {
		f.goLocked(then)
	}
	return true
}

// keepLast appends v to s after dropping the oldest elements, so that at
// most limit (at least 1) remain; dropped, when not nil, is called for each
// element dropped.
func keepLast[E any](s []E, v E, limit int, dropped func(E)) []E {
	if n := len(s) - limit + 1; n > 0 {
		if dropped != nil {
			for _, old := range s[:n] {
				dropped(old)
			}
		}
		s = append(s[:0], s[n:]...)
	}
	return append(s, v)
}

// postTo sends one POST of body to url and returns the server's status and
// body. It gives up after the webhooks' timeout, or earlier at ctx's
// deadline. header, when not nil, adds headers (a signature).
func (f *fake[T]) postTo(ctx context.Context, url, contentType string, body []byte, header func(*fasthttp.RequestHeader)) (int, []byte, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType(contentType)
	if header != nil {
		header(&req.Header)
	}
	req.SetBodyRaw(body)
	deadline := time.Now().Add(f.hooks.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := f.http.DoDeadline(req, resp, deadline); err != nil {
		return 0, nil, err
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...), nil
}

// deliverRetrying calls post until the server acknowledges the webhook, at
// most hooks.attempts times with the hooks' backoff in between, or until
// close, and reports whether it was acknowledged. Each failed attempt is
// logged on log, which names the webhook.
func (f *fake[T]) deliverRetrying(log zerolog.Logger, post func() (int, []byte, error)) bool {
	h := &f.hooks
	backoff := h.backoff
	for attempt := 1; ; attempt++ {
		status, respBody, err := post()
		if err == nil && h.acked(status) {
			return true
		}
		ev := log.Warn().Int("attempt", attempt)
		if err != nil {
			ev = ev.Err(err)
		} else {
			ev = ev.Int("http_status", status).Bytes("body", truncate(respBody, 200))
		}
		if attempt >= h.attempts {
			ev.Msg(h.what + " not acknowledged; giving up")
			return false
		}
		ev.Dur("retry_in", backoff).Msg(h.what + " not acknowledged; will retry")
		if !f.wait(backoff) {
			return false
		}
		if h.doubling {
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// is200 and is2xx tell whether a webhook's answer acknowledges it.
func is200(status int) bool { return status == fasthttp.StatusOK }
func is2xx(status int) bool { return status >= 200 && status < 300 }

// failQueue is a queue of injected failures, each answered a number of
// times before the next. The zero value is empty. It is safe for
// concurrent use.
type failQueue[F any] struct {
	mu    sync.Mutex
	queue []queuedFailure[F]
}

type queuedFailure[F any] struct {
	f F
	n int // answers left
}

// add queues f for the next n answers after those queued before; n <= 0
// adds nothing.
func (q *failQueue[F]) add(n int, f F) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	q.queue = append(q.queue, queuedFailure[F]{f: f, n: n})
	q.mu.Unlock()
}

// take consumes one answer of the failure at the head, if any.
func (q *failQueue[F]) take() (F, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		var zero F
		return zero, false
	}
	head := &q.queue[0]
	f := head.f
	if head.n--; head.n == 0 {
		q.queue = q.queue[1:]
	}
	return f, true
}

// basicAuthorized checks HTTP Basic user:pass; an empty user or pass
// authorizes nobody.
func basicAuthorized(ctx *fasthttp.RequestCtx, user, pass string) bool {
	h := string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if len(h) < 6 || !strings.EqualFold(h[:6], "basic ") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(h[6:]))
	if err != nil {
		return false
	}
	u, p, ok := strings.Cut(string(raw), ":")
	return ok && user != "" && pass != "" &&
		subtle.ConstantTimeCompare([]byte(u), []byte(user)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(pass)) == 1
}

// checkInbound checks a message a contact's phone sends: from a phone
// number, a text of at most maxLen characters, text and name UTF-8. It
// returns the number's digits; bad input wraps ErrInvalidInbound.
func checkInbound(from, name, text string, maxLen int) (string, error) {
	num := digitsOnly(strings.TrimSpace(from))
	if !validNumber(num) || strings.ContainsFunc(from, invalidPhoneRune) {
		return "", fmt.Errorf("%w: from %q is not a phone number", ErrInvalidInbound, from)
	}
	if strings.TrimSpace(text) == "" {
		return "", fmt.Errorf("%w: empty text", ErrInvalidInbound)
	}
	if !utf8.ValidString(text) || !utf8.ValidString(name) {
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalidInbound)
	}
	if utf8.RuneCountInString(text) > maxLen {
		return "", fmt.Errorf("%w: text longer than %d characters", ErrInvalidInbound, maxLen)
	}
	return num, nil
}

// serveInbound serves a POST from a contact's phone, JSON {"from","name",
// "text"} of which shape names the fields the fake reads: inject sends the
// message to the server and returns its id. The answer is 200 {idKey: id}
// once the server acknowledged it, 400 on bad input, 405 for another
// method, 503 when the fake is closed, and 502 with the server's status and
// body otherwise.
func serveInbound(ctx *fasthttp.RequestCtx, shape, idKey string, inject func(from, name, text string) (string, error)) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodPost)
		writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	var in struct {
		From string `json:"from"`
		Name string `json:"name"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &in); err != nil {
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": "body must be JSON " + shape + ": " + err.Error()})
		return
	}
	id, err := inject(in.From, in.Name, in.Text)
	var we *WebhookError
	switch {
	case err == nil:
		writeJSON(ctx, fasthttp.StatusOK, map[string]string{idKey: id})
	case errors.Is(err, ErrInvalidInbound):
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": err.Error()})
	case errors.Is(err, ErrClosed):
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case errors.As(err, &we):
		writeJSON(ctx, fasthttp.StatusBadGateway, map[string]any{
			"error":  "the server answered HTTP " + strconv.Itoa(we.StatusCode),
			idKey:    id,
			"status": we.StatusCode,
			"body":   strings.ToValidUTF8(string(we.Body), "\uFFFD"),
		})
	default:
		writeJSON(ctx, fasthttp.StatusBadGateway, map[string]any{"error": err.Error(), idKey: id, "status": 0})
	}
}

// cloneEach returns a new slice (empty, not nil, when s is) of clone
// applied to each element of s.
func cloneEach[S, E any](s []S, clone func(S) E) []E {
	out := make([]E, len(s))
	for i, v := range s {
		out[i] = clone(v)
	}
	return out
}
