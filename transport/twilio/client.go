package twilio

import (
	"context"
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
	"urva/transport/internal/httpx"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/actors/msg"
)

// APIVersion is the REST API version in every path and callback.
const APIVersion = "2010-04-01"

// ClientOptions configures a Client.
type ClientOptions struct {
	APIBase    string // e.g. https://api.twilio.com (no version)
	AccountSID string // AC...
	AuthToken  string
	// From is the sending number (E.164), short code or alphanumeric sender
	// id; a Messaging Service SID (MG and 32 hex digits) is sent as
	// MessagingServiceSid instead.
	From string
	// StatusCallback is the URL Twilio posts status callbacks to, normally
	// <http.public_url>/webhooks/sms/status; none are requested when empty.
	StatusCallback string
	Timeout        time.Duration // one API call; 15s when zero
}

// Client sends SMS through Twilio's Messages API. It implements
// actors.ProviderClient and is safe for concurrent use.
type Client struct {
	url      string
	auth     string
	from     string
	service  string
	callback string
	timeout  time.Duration
	http     *fasthttp.Client
}

var _ actors.ProviderClient = (*Client)(nil)

// Client limits.
const (
	defaultTimeout  = 15 * time.Second
	maxConnsPerHost = 128
	maxResponseBody = 1 << 20
)

// NewClient returns a client for one account and sending number.
func NewClient(o ClientOptions) *Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	c := &Client{
		url:      strings.TrimRight(o.APIBase, "/") + "/" + APIVersion + "/Accounts/" + url.PathEscape(o.AccountSID) + "/Messages.json",
		auth:     "Basic " + base64.StdEncoding.EncodeToString([]byte(o.AccountSID+":"+o.AuthToken)),
		callback: o.StatusCallback,
		timeout:  timeout,
		http:     httpx.NewAPIClient(timeout, maxConnsPerHost, maxResponseBody),
	}
	from := strings.TrimSpace(o.From)
	if LooksLikeSID(from, "MG") {
		c.service = from
	} else {
		c.from = from
	}
	return c
}

// CloseIdleConnections closes kept-alive connections to the API.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// LooksLikeSID reports whether s is prefix followed by 32 hex digits, the
// shape of every Twilio SID.
func LooksLikeSID(s, prefix string) bool {
	if len(s) != len(prefix)+32 || !strings.HasPrefix(s, prefix) {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Send delivers one message and returns its SID. A template is sent as the
// text "<name>: <params joined by ', '>" since SMS has no templates. Errors
// are *actors.SendError classified by the HTTP status, Twilio's error code
// or the transport failure. The call ends at the earlier of the client
// timeout and ctx's deadline.
func (c *Client) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	form, serr := c.form(req)
	if serr != nil {
		return "", serr
	}
	if err := ctx.Err(); err != nil {
		return "", &actors.SendError{Code: "canceled", Title: "Send canceled", Message: err.Error(), Retry: true}
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}

	hreq := fasthttp.AcquireRequest()
	hresp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(hreq)
	defer fasthttp.ReleaseResponse(hresp)
	hreq.SetRequestURI(c.url)
	hreq.Header.SetMethod(fasthttp.MethodPost)
	hreq.Header.SetContentType("application/x-www-form-urlencoded")
	hreq.Header.Set(fasthttp.HeaderAuthorization, c.auth)
	hreq.Header.Set(fasthttp.HeaderAccept, "application/json")
	hreq.SetBodyString(form.Encode())

	if err := c.http.DoDeadline(hreq, hresp, deadline); err != nil {
		return "", transportError(err)
	}
	return sendResult(hresp.StatusCode(), hresp.Body(), hresp.Header.Peek(fasthttp.HeaderRetryAfter), time.Now())
}

// MessageText is what an SMS carries for req: its text, or for a template
// "<name>: <params joined by ', '>" (the name alone without parameters).
func MessageText(req *msg.ProviderSend) string {
	if t := req.GetTemplate(); t != nil && t.GetName() != "" {
		if len(t.GetParams()) == 0 {
			return t.GetName()
		}
		return t.GetName() + ": " + strings.Join(t.GetParams(), ", ")
	}
	return req.GetText()
}

// form renders req as the Messages API's form fields.
func (c *Client) form(req *msg.ProviderSend) (url.Values, *actors.SendError) {
	to := NormalizeNumber(req.GetKey().GetContactPhone())
	if to == "" {
		return nil, invalidRequest("no recipient phone number")
	}
	body := MessageText(req)
	if body == "" {
		return nil, invalidRequest("neither text nor template")
	}
	if c.from == "" && c.service == "" {
		return nil, &actors.SendError{Code: "invalid_config", Title: "No SMS sending number configured",
			Message: "sms.from is empty", Alert: true}
	}
	f := url.Values{"To": {to}, "Body": {body}}
	if c.service != "" {
		f.Set("MessagingServiceSid", c.service)
	} else {
		f.Set("From", c.from)
	}
	if c.callback != "" {
		f.Set("StatusCallback", c.callback)
	}
	return f, nil
}

func invalidRequest(why string) *actors.SendError {
	return &actors.SendError{Code: "invalid_request", Title: "Message cannot be sent", Message: why}
}

// transportError classifies a failure to get any HTTP answer.
func transportError(err error) *actors.SendError {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &actors.SendError{Code: "timeout", Title: "Twilio API did not answer in time", Message: err.Error(), Retry: true}
	}
	return &actors.SendError{Code: "network", Title: "Could not reach the Twilio API", Message: err.Error(), Retry: true}
}

// apiError is Twilio's error answer.
type apiError struct {
	Code     flexCode `json:"code"`
	Message  string   `json:"message"`
	MoreInfo string   `json:"more_info"`
	Status   int      `json:"status"`
}

// flexCode is an error code sent as a number or a string.
type flexCode string

func (c *flexCode) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*c = flexCode(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*c = flexCode(n)
	return nil
}

type apiSuccess struct {
	SID string `json:"sid"`
}

// Error codes that need an operator: credentials, account, sending number,
// geographic permissions.
var alertCodes = map[string]bool{
	"20003": true, "20005": true, "20404": true,
	"21212": true, "21603": true, "21606": true, "21408": true,
}

// sendResult turns an HTTP answer into a message SID or a *actors.SendError.
func sendResult(status int, body, retryAfter []byte, now time.Time) (string, error) {
	if status >= 200 && status < 300 {
		var ok apiSuccess
		if err := json.Unmarshal(body, &ok); err == nil && ok.SID != "" {
			return ok.SID, nil
		}
		return "", &actors.SendError{Code: "bad_response", Title: "Twilio API answered without a message SID", Message: snippet(body), Retry: true}
	}
	se := &actors.SendError{RetryAfter: httpx.RetryAfter(retryAfter, now)}
	var ae apiError
	if json.Unmarshal(body, &ae) == nil && ae.Code != "" {
		se.Code = string(ae.Code)
		se.Message = ae.Message
		se.Title = ErrorTitle(se.Code)
		if se.Title == "" {
			se.Title = ae.Message
		}
	} else {
		se.Code = "http_" + strconv.Itoa(status)
		se.Title = "Twilio API answered HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
		se.Message = snippet(body)
	}
	switch {
	case status >= 500 || status == http.StatusTooManyRequests || se.Code == "20429":
		se.Retry = true
	case status == http.StatusUnauthorized || status == http.StatusForbidden || alertCodes[se.Code]:
		se.Alert = true
	}
	if se.Title == "" {
		se.Title = fmt.Sprintf("Twilio API error %s", se.Code)
	}
	return "", se
}

// snippet is the start of a body for an error message, as valid UTF-8.
func snippet(b []byte) string {
	const max = 512
	if len(b) > max {
		b = b[:max]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
}
