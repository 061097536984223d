package exotel

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"urva/transport/internal/httpx"
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// APIBase is the API's origin without the version, e.g.
	// https://api.in.exotel.com; the sandbox's is <public_url>/sandbox/exotel.
	APIBase    string
	AccountSID string
	APIKey     string // HTTP Basic user
	APIToken   string // HTTP Basic password
	Timeout    time.Duration
}

// Client talks to the dialler's Voice v1 API for one account. It is safe
// for concurrent use.
type Client struct {
	account string // <api_base>/v1/Accounts/<sid>
	auth    string
	timeout time.Duration
	http    *fasthttp.Client
	badBase error // a configuration error every call reports
}

// Client limits and request shapes.
const (
	defaultTimeout  = 15 * time.Second // one API call, when ClientOptions.Timeout is zero
	maxConnsPerHost = 64
	maxResponseBody = 4 << 20
	// Idle connections are dropped well before a server would close them,
	// so that a connect request rarely meets a connection closed under it
	// (an ambiguous failure).
	maxIdleConn = 10 * time.Second

	// MaxCustomField is the longest CustomField the dialler echoes, in characters.
	MaxCustomField = 128
	// MaxTimeLimit is the longest TimeLimit the dialler accepts, in seconds.
	MaxTimeLimit = 14400

	lookupPageSize = 100
	lookupMaxPages = 20
	// lookupSkew widens a lookup's time range for the clocks of the
	// server and the dialler disagreeing.
	lookupSkew = 2 * time.Minute
)

// Errors a Client's calls wrap (besides *Error).
var (
	// ErrCallNotFound: no call with that sid, or none matched a lookup.
	ErrCallNotFound = errors.New("exotel: call not found")
	// ErrInvalidRequest: refused before anything was sent.
	ErrInvalidRequest = errors.New("exotel: invalid request")
)

// Error is a failed API call. Every Client method returns one (or nil).
//
// What to do with it:
//
//   - Ambiguous (Connect only): the request may have reached the dialler,
//     which may have placed the call, but no clear answer came back: a
//     timeout or a broken connection after the request was (or may have
//     been) written, a 5xx answer, or a 2xx answer without a call sid. Do
//     not call Connect again for this button press until FindByCustomField
//     (with the same CustomField) has found nothing, or the call's
//     callbacks arrive. Retryable is also set: a retry is safe once the
//     lookup shows no call.
//   - Retryable and not Ambiguous: nothing was placed; the same request may
//     succeed later (after RetryAfter when set). This is a failure before
//     the request could be sent (connection refused, DNS, TLS handshake,
//     no free connection, a context already done), 429 Too Many Requests,
//     408, or for CallDetails and lookups, a timeout or a 5xx.
//   - Neither: final. Other 4xx answers (bad credentials, a refused
//     CallerId or number, a call sid the dialler does not know: see
//     ErrCallNotFound) and requests refused locally (ErrInvalidRequest).
type Error struct {
	Op         string // connect, call details, find calls
	HTTPStatus int    // 0 when no HTTP answer arrived
	// Message is the dialler's RestException.Message, or what went wrong.
	Message    string
	Retryable  bool
	Ambiguous  bool
	RetryAfter time.Duration // the answer's Retry-After, 0 when none
	Err        error         // the underlying cause, when there is one
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("exotel: ")
	b.WriteString(e.Op)
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Ambiguous {
		b.WriteString(" (the call may have been placed: look it up before retrying)")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// NewClient returns a client for one account. A bad APIBase is reported by
// every call as a final error.
func NewClient(o ClientOptions) *Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	base := strings.TrimRight(strings.TrimSpace(o.APIBase), "/")
	c := &Client{
		account: base + "/v1/Accounts/" + url.PathEscape(o.AccountSID),
		auth:    "Basic " + base64.StdEncoding.EncodeToString([]byte(o.APIKey+":"+o.APIToken)),
		timeout: timeout,
		http: &fasthttp.Client{
			Name:                "urva",
			DialTimeout:         dial,
			MaxConnsPerHost:     maxConnsPerHost,
			MaxConnWaitTimeout:  timeout,
			MaxIdleConnDuration: maxIdleConn,
			ReadTimeout:         timeout,
			WriteTimeout:        timeout,
			MaxResponseBodySize: maxResponseBody,
		},
	}
	if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.badBase = fmt.Errorf("%w: dialler API base %q is not an http(s) URL", ErrInvalidRequest, o.APIBase)
	} else if strings.TrimSpace(o.AccountSID) == "" {
		c.badBase = fmt.Errorf("%w: no dialler account sid", ErrInvalidRequest)
	}
	return c
}

// CloseIdleConnections closes kept-alive connections to the API.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// ConnectRequest asks the dialler to ring From and, once From answers, To,
// and to bridge them.
type ConnectRequest struct {
	From     string // dialled first (by default the contact)
	To       string // dialled once From answers (the RM)
	CallerID string // the ExoPhone both legs see
	Record   bool
	// TimeLimit caps the call, TimeOut the ringing of each leg, in
	// seconds; not sent when 0.
	TimeLimit, TimeOut int
	// CustomField is echoed in callbacks (and call records); make it
	// unique per button press so that FindByCustomField can tell whether
	// an ambiguous Connect placed the call. At most MaxCustomField characters.
	CustomField string
	// StatusCallback is where the answered and terminal callbacks go (as
	// JSON), normally <public_url>/webhooks/dialler/<callback_token>. No
	// callbacks are asked for when empty.
	StatusCallback string
}

// form renders r as the connect API's form, or refuses it.
func (r ConnectRequest) form() (url.Values, error) {
	refuse := func(format string, args ...any) error {
		return &Error{Op: "connect", Message: fmt.Sprintf(format, args...), Err: ErrInvalidRequest}
	}
	from, to, callerID := strings.TrimSpace(r.From), strings.TrimSpace(r.To), strings.TrimSpace(r.CallerID)
	switch {
	case from == "":
		return nil, refuse("no From number")
	case to == "":
		return nil, refuse("no To number")
	case callerID == "":
		return nil, refuse("no CallerId (ExoPhone)")
	case utf8.RuneCountInString(r.CustomField) > MaxCustomField || !utf8.ValidString(r.CustomField):
		return nil, refuse("CustomField must be UTF-8 of at most %d characters", MaxCustomField)
	case r.TimeLimit > MaxTimeLimit:
		return nil, refuse("TimeLimit %d is over %d seconds", r.TimeLimit, MaxTimeLimit)
	}
	f := url.Values{"From": {from}, "To": {to}, "CallerId": {callerID}}
	if r.Record {
		f.Set("Record", "true")
	}
	if r.TimeLimit > 0 {
		f.Set("TimeLimit", strconv.Itoa(r.TimeLimit))
	}
	if r.TimeOut > 0 {
		f.Set("TimeOut", strconv.Itoa(r.TimeOut))
	}
	if r.CustomField != "" {
		f.Set("CustomField", r.CustomField)
	}
	if cb := strings.TrimSpace(r.StatusCallback); cb != "" {
		if u, err := url.Parse(cb); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, refuse("StatusCallback %q is not an http(s) URL", cb)
		}
		f.Set("StatusCallback", cb)
		f.Set("StatusCallbackEvents[0]", EventTerminal)
		f.Set("StatusCallbackEvents[1]", EventAnswered)
		f.Set("StatusCallbackContentType", "application/json")
	}
	return f, nil
}

// Connect asks the dialler to connect r.From and r.To: POST
// <api_base>/v1/Accounts/<sid>/Calls/connect.json. On success the call has
// its Sid and, normally, status in-progress. An error is an *Error; when it
// is Ambiguous the call may exist all the same: see Error. The request is
// never retried here. The call ends at the earlier of the client timeout
// and ctx's deadline.
func (c *Client) Connect(ctx context.Context, r ConnectRequest) (*Call, error) {
	const op = "connect"
	form, err := r.form()
	if err != nil {
		return nil, err
	}
	a, err := c.do(ctx, op, fasthttp.MethodPost, c.account+"/Calls/connect.json", form)
	if err != nil {
		return nil, err
	}
	if a.ok() {
		call, err := callResource(a.body)
		if err != nil || call.Sid == "" {
			return nil, &Error{Op: op, HTTPStatus: a.status, Message: "answered without a call sid: " + snippet(a.body),
				Retryable: true, Ambiguous: true}
		}
		return call, nil
	}
	return nil, a.error(op, true)
}

// CallDetails reads one call: GET <api_base>/v1/Accounts/<sid>/Calls/<CallSid>.json
// (asking for leg details). A call the dialler does not know is an *Error
// wrapping ErrCallNotFound.
func (c *Client) CallDetails(ctx context.Context, sid string) (*Call, error) {
	const op = "call details"
	sid = strings.TrimSpace(sid)
	if err := checkSid(sid); err != nil {
		return nil, &Error{Op: op, Message: "bad call sid " + strconv.Quote(sid), Err: ErrInvalidRequest}
	}
	a, err := c.do(ctx, op, fasthttp.MethodGet, c.account+"/Calls/"+url.PathEscape(sid)+".json?details=true", nil)
	if err != nil {
		return nil, err
	}
	if a.ok() {
		call, err := callResource(a.body)
		if err != nil || call.Sid == "" {
			return nil, &Error{Op: op, HTTPStatus: a.status, Message: "answered without a call: " + snippet(a.body), Retryable: true}
		}
		return call, nil
	}
	e := a.error(op, false)
	if a.status == http.StatusNotFound {
		e.Err = ErrCallNotFound
	}
	return nil, e
}

// CallFilter selects calls for FindCalls. Empty fields do not filter.
type CallFilter struct {
	CustomField string // exactly as given to Connect
	From, To    string // numbers, compared on their digits
	// Since and Until bound the calls' creation; a zero Since leaves the
	// dialler's default (its last 31 days), a zero Until means now. Both
	// are widened by a couple of minutes for clock skew.
	Since, Until time.Time
}

// FindCalls looks calls up with the bulk call details API, GET
// <api_base>/v1/Accounts/<sid>/Calls.json, newest first. The filter is
// sent as query parameters (DateCreated, From, To and CustomField) and,
// since a dialler may ignore some of them, applied again to what comes
// back. It reads at most 20 pages of 100 calls. Bulk records carry no legs:
// use CallDetails for those.
//
// Exotel documents that the bulk API does not list ongoing calls, and it
// does not document CustomField in bulk records: against it, a call
// placed moments ago may not be found yet, and a CustomField filter may
// match nothing. Look again once the call would have ended (TimeOut twice
// plus TimeLimit) before concluding that no call was placed, and match on
// From, To and Since when the dialler does not report CustomField.
func (c *Client) FindCalls(ctx context.Context, f CallFilter) ([]Call, error) {
	var calls []Call
	err := c.scan(ctx, f, func(call Call) bool {
		calls = append(calls, call)
		return true
	})
	return calls, err
}

// FindByCustomField returns the newest call created since since (less a
// couple of minutes for clock skew; the dialler's last 31 days when zero)
// whose CustomField is customField, or an *Error wrapping ErrCallNotFound.
// Use it after an ambiguous Connect failure, with the same CustomField, to
// learn whether the dialler placed the call: see FindCalls for what a
// dialler may not report.
func (c *Client) FindByCustomField(ctx context.Context, customField string, since time.Time) (*Call, error) {
	if customField == "" {
		return nil, &Error{Op: "find calls", Message: "empty CustomField", Err: ErrInvalidRequest}
	}
	var found *Call
	err := c.scan(ctx, CallFilter{CustomField: customField, Since: since}, func(call Call) bool {
		found = &call
		return false
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, &Error{Op: "find calls", Message: "no call with CustomField " + strconv.Quote(customField), Err: ErrCallNotFound}
	}
	return found, nil
}

// scan pages through the calls matching f, newest first, handing each to
// visit until it returns false.
func (c *Client) scan(ctx context.Context, f CallFilter, visit func(Call) bool) error {
	const op = "find calls"
	q := url.Values{"SortBy": {"DateCreated:desc"}, "PageSize": {strconv.Itoa(lookupPageSize)}}
	var since, until time.Time
	if !f.Since.IsZero() {
		since = f.Since.Add(-lookupSkew)
		until = time.Now().Add(lookupSkew)
		if !f.Until.IsZero() {
			until = f.Until.Add(lookupSkew)
		}
		q.Set("DateCreated", "gte:"+FormatTime(since)+";lte:"+FormatTime(until))
	} else if !f.Until.IsZero() {
		until = f.Until.Add(lookupSkew)
		q.Set("DateCreated", "lte:"+FormatTime(until))
	}
	for name, v := range map[string]string{"CustomField": f.CustomField, "From": strings.TrimSpace(f.From), "To": strings.TrimSpace(f.To)} {
		if v != "" {
			q.Set(name, v)
		}
	}
	for page := 0; page < lookupMaxPages; page++ {
		a, err := c.do(ctx, op, fasthttp.MethodGet, c.account+"/Calls.json?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		if !a.ok() {
			return a.error(op, false)
		}
		calls, next, err := callList(a.body)
		if err != nil {
			return &Error{Op: op, HTTPStatus: a.status, Message: "unreadable answer: " + snippet(a.body), Retryable: true}
		}
		for _, call := range calls {
			if !f.matches(call, since, until) {
				continue
			}
			if !visit(call) {
				return nil
			}
		}
		cursor := pageCursor(next)
		if cursor == "" || cursor == q.Get("After") {
			return nil
		}
		q.Set("After", cursor)
	}
	return nil
}

// matches applies the filter to a call the dialler listed.
func (f CallFilter) matches(call Call, since, until time.Time) bool {
	if f.CustomField != "" && call.CustomField != f.CustomField {
		return false
	}
	if f.From != "" && !SameNumber(call.From, f.From) || f.To != "" && !SameNumber(call.To, f.To) {
		return false
	}
	if created := call.DateCreated; !created.IsZero() {
		if !since.IsZero() && created.Before(since) || !until.IsZero() && created.After(until) {
			return false
		}
	}
	return true
}

// SameNumber reports whether two phone numbers, as typed or as a dialler
// writes them (+919811100001, 09811100001, 919811100001), are the same:
// equal digits, or for numbers of ten digits or more, equal last ten digits.
func SameNumber(a, b string) bool {
	da, db := digits(a), digits(b)
	if da == "" || db == "" {
		return false
	}
	if da == db {
		return true
	}
	return len(da) >= 10 && len(db) >= 10 && da[len(da)-10:] == db[len(db)-10:]
}

func digits(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// pageCursor is the After cursor of a NextPageUri, "" when none.
func pageCursor(next string) string {
	if next == "" {
		return ""
	}
	u, err := url.Parse(next)
	if err != nil {
		return ""
	}
	return u.Query().Get("After")
}

// callResource reads {"Call":{...}} (or, liberally, a bare call object).
func callResource(body []byte) (*Call, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	raw := json.RawMessage(body)
	if v, ok := fold(env, "Call"); ok {
		raw = v
	}
	f, err := objectFields(raw, 0)
	if err != nil {
		return nil, err
	}
	call := f.call()
	return &call, nil
}

// callList reads the bulk answer {"Metadata":{"NextPageUri",...},"Calls":[...]}.
func callList(body []byte) (calls []Call, next string, err error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, "", err
	}
	if raw, ok := fold(env, "Calls"); ok {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil && string(raw) != "null" {
			return nil, "", err
		}
		for _, item := range items {
			if inner, ok := callWrapper(item); ok {
				item = inner
			}
			if f, err := objectFields(item, 0); err == nil {
				calls = append(calls, f.call())
			}
		}
	}
	if raw, ok := fold(env, "Metadata"); ok {
		if f, err := objectFields(raw, 1); err == nil {
			next = f.str("NextPageUri")
		}
	}
	return calls, next, nil
}

// callWrapper unwraps {"Call":{...}} list items.
func callWrapper(raw json.RawMessage) (json.RawMessage, bool) {
	var w map[string]json.RawMessage
	if json.Unmarshal(raw, &w) != nil || len(w) != 1 {
		return nil, false
	}
	return fold(w, "Call")
}

func fold(m map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// answer is an HTTP answer from the API.
type answer struct {
	status     int
	body       []byte
	retryAfter time.Duration
}

func (a answer) ok() bool { return a.status >= 200 && a.status < 300 }

// error classifies a non-2xx answer; post says whether the request placed
// a call if it was processed.
func (a answer) error(op string, post bool) *Error {
	e := &Error{Op: op, HTTPStatus: a.status, Message: restMessage(a.status, a.body), RetryAfter: a.retryAfter}
	switch {
	case a.status == http.StatusTooManyRequests || a.status == http.StatusRequestTimeout:
		e.Retryable = true
	case a.status >= 500:
		e.Retryable = true
		e.Ambiguous = post
	}
	return e
}

// restMessage is RestException.Message, else a message field, else the
// start of the body, else the status text.
func restMessage(status int, body []byte) string {
	var env map[string]json.RawMessage
	if json.Unmarshal(body, &env) == nil {
		if raw, ok := fold(env, "RestException"); ok {
			env = nil
			if json.Unmarshal(raw, &env) != nil {
				env = nil
			}
		}
		if raw, ok := fold(env, "Message"); ok {
			if s, ok := scalar(raw); ok && strings.TrimSpace(s) != "" {
				return strings.TrimSpace(s)
			}
		}
	}
	if s := snippet(body); s != "" {
		return s
	}
	return http.StatusText(status)
}

// do sends one request and reads the answer, or classifies the failure to
// get one: Ambiguous when a POST may have reached the dialler.
func (c *Client) do(ctx context.Context, op, method, uri string, form url.Values) (answer, error) {
	if c.badBase != nil {
		return answer{}, &Error{Op: op, Message: c.badBase.Error(), Err: c.badBase}
	}
	if err := ctx.Err(); err != nil {
		return answer{}, &Error{Op: op, Message: err.Error(), Retryable: true, Err: err}
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	req.Header.SetMethod(method)
	req.Header.Set(fasthttp.HeaderAuthorization, c.auth)
	req.Header.Set(fasthttp.HeaderAccept, "application/json")
	if form != nil {
		req.Header.SetContentType("application/x-www-form-urlencoded")
		req.SetBodyString(form.Encode())
	}
	if err := c.http.DoDeadline(req, resp, deadline); err != nil {
		sent := mayHaveSent(err)
		return answer{}, &Error{Op: op, Message: err.Error(), Retryable: true,
			Ambiguous: sent && method == fasthttp.MethodPost, Err: err}
	}
	return answer{
		status:     resp.StatusCode(),
		body:       append([]byte(nil), resp.Body()...),
		retryAfter: httpx.RetryAfter(resp.Header.Peek(fasthttp.HeaderRetryAfter), time.Now()),
	}, nil
}

// dialError is a failure to open a connection: nothing was sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dial opens a TCP connection (httpx.Dial), marking its failures as
// dialError.
func dial(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	conn, err := httpx.Dial(addr, timeout)
	if err != nil {
		return nil, &dialError{err}
	}
	return conn, nil
}

// mayHaveSent reports whether a failed request may have reached the
// server: every failure except those known to happen before the request
// is written (dialling, the TLS handshake, no free connection). A deadline
// passing while waiting for a free connection looks like any other
// timeout, so it counts as possibly sent: a needless lookup, never a
// second call.
func mayHaveSent(err error) bool {
	var (
		de   *dialError
		ae   tls.AlertError
		rhe  tls.RecordHeaderError
		cve  *tls.CertificateVerificationError
		uae  x509.UnknownAuthorityError
		he   x509.HostnameError
		cie  x509.CertificateInvalidError
		ecve *tls.ECHRejectionError
	)
	switch {
	case errors.As(err, &de), errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrTLSHandshakeTimeout),
		errors.Is(err, fasthttp.ErrConnPoolStrategyNotImpl),
		errors.As(err, &ae), errors.As(err, &rhe), errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &he),
		errors.As(err, &cie), errors.As(err, &ecve):
		return false
	}
	return true
}

// snippet is the start of a body for an error message, as valid UTF-8.
func snippet(b []byte) string {
	const max = 512
	if len(b) > max {
		b = b[:max]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
}
