package whatsapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"urva/transport/internal/httpx"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/actors/msg"
)

// ClientOptions configures a Client.
type ClientOptions struct {
	APIBase       string        // Graph API base including the version, e.g. https://graph.facebook.com/v23.0
	PhoneNumberID string        // the sending business phone number's id
	AccessToken   string        // system user access token
	Timeout       time.Duration // one API call; 15s when zero
}

// Client sends messages through the WhatsApp Cloud API. It implements
// actors.ProviderClient and is safe for concurrent use.
type Client struct {
	url     string
	auth    string
	timeout time.Duration
	http    *fasthttp.Client
}

var _ actors.ProviderClient = (*Client)(nil)

// Client limits.
const (
	defaultTimeout  = 15 * time.Second
	maxConnsPerHost = 128
	maxResponseBody = 1 << 20
)

// NewClient returns a client for one business phone number.
func NewClient(o ClientOptions) *Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &Client{
		url:     strings.TrimRight(o.APIBase, "/") + "/" + o.PhoneNumberID + "/messages",
		auth:    "Bearer " + o.AccessToken,
		timeout: timeout,
		http:    httpx.NewAPIClient(timeout, maxConnsPerHost, maxResponseBody),
	}
}

// CloseIdleConnections closes kept-alive connections to the API.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Send delivers one text or template message and returns its wamid. Errors
// are *actors.SendError classified by Meta's error code, the HTTP status or
// the transport failure. The call ends at the earlier of the client timeout
// and ctx's deadline.
func (c *Client) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	body, serr := sendBody(req)
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
	hreq.Header.SetContentType("application/json")
	hreq.Header.Set(fasthttp.HeaderAuthorization, c.auth)
	hreq.SetBodyRaw(body)

	if err := c.http.DoDeadline(hreq, hresp, deadline); err != nil {
		return "", transportError(err)
	}
	return sendResult(hresp.StatusCode(), hresp.Body(), hresp.Header.Peek(fasthttp.HeaderRetryAfter), time.Now())
}

// Wire shapes of a send.
type (
	textSend struct {
		MessagingProduct string   `json:"messaging_product"`
		RecipientType    string   `json:"recipient_type"`
		To               string   `json:"to"`
		Type             string   `json:"type"`
		Text             textBody `json:"text"`
	}
	textBody struct {
		PreviewURL bool   `json:"preview_url"`
		Body       string `json:"body"`
	}
	templateSend struct {
		MessagingProduct string       `json:"messaging_product"`
		To               string       `json:"to"`
		Type             string       `json:"type"`
		Template         templateBody `json:"template"`
	}
	templateBody struct {
		Name       string              `json:"name"`
		Language   templateLanguage    `json:"language"`
		Components []templateComponent `json:"components,omitempty"`
	}
	templateLanguage struct {
		Code string `json:"code"`
	}
	templateComponent struct {
		Type       string              `json:"type"`
		Parameters []templateParameter `json:"parameters"`
	}
	templateParameter struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
)

// sendBody renders req as the Cloud API's JSON body.
func sendBody(req *msg.ProviderSend) ([]byte, *actors.SendError) {
	to := digits(req.GetKey().GetContactPhone())
	if to == "" {
		return nil, invalidRequest("no recipient phone number")
	}
	var v any
	if t := req.GetTemplate(); t != nil && t.GetName() != "" {
		if t.GetLanguage() == "" {
			return nil, invalidRequest("template without a language")
		}
		tb := templateBody{Name: t.GetName(), Language: templateLanguage{Code: t.GetLanguage()}}
		if ps := t.GetParams(); len(ps) > 0 {
			params := make([]templateParameter, len(ps))
			for i, p := range ps {
				params[i] = templateParameter{Type: "text", Text: p}
			}
			tb.Components = []templateComponent{{Type: "body", Parameters: params}}
		}
		v = &templateSend{MessagingProduct: "whatsapp", To: to, Type: "template", Template: tb}
	} else {
		if req.GetText() == "" {
			return nil, invalidRequest("neither text nor template")
		}
		v = &textSend{MessagingProduct: "whatsapp", RecipientType: "individual", To: to, Type: "text", Text: textBody{Body: req.GetText()}}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, invalidRequest(err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func invalidRequest(why string) *actors.SendError {
	return &actors.SendError{Code: "invalid_request", Title: "Message cannot be sent", Message: why}
}

// transportError classifies a failure to get any HTTP answer.
func transportError(err error) *actors.SendError {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &actors.SendError{Code: "timeout", Title: "WhatsApp API did not answer in time", Message: err.Error(), Retry: true}
	}
	return &actors.SendError{Code: "network", Title: "Could not reach the WhatsApp API", Message: err.Error(), Retry: true}
}

// apiError is the Graph API's error answer.
type apiError struct {
	Error *struct {
		Message      string     `json:"message"`
		Type         string     `json:"type"`
		Code         FlexString `json:"code"`
		ErrorSubcode FlexString `json:"error_subcode"`
		ErrorData    *struct {
			Details string `json:"details"`
		} `json:"error_data"`
		ErrorUserTitle string `json:"error_user_title"`
		ErrorUserMsg   string `json:"error_user_msg"`
		FBTraceID      string `json:"fbtrace_id"`
	} `json:"error"`
}

type apiSuccess struct {
	Messages []struct {
		ID string `json:"id"`
	} `json:"messages"`
}

// Error classes of the Cloud API's codes.
type errorClass int

const (
	classUnknown errorClass = iota
	classRateLimit
	classUnavailable
	classWindow
	classUndeliverable
	classBadRequest
	classAuth
)

func classify(code string) errorClass {
	switch code {
	case "130429", "131056", "80007", "4":
		return classRateLimit
	case "131000", "131016", "1", "2":
		return classUnavailable
	case "131047":
		return classWindow
	case "131026", "131049", "131050":
		return classUndeliverable
	case "132000", "132001", "131008", "131009", "100":
		return classBadRequest
	case "190", "0", "10",
		"3", "131031", "131042", "131045", "368": // capability, account locked, payment, registration, blocked
		return classAuth
	}
	if n, err := strconv.Atoi(code); err == nil && n >= 200 && n <= 299 { // API permission
		return classAuth
	}
	return classUnknown
}

// windowTitle explains error 131047 to the RM.
const windowTitle = "WhatsApp 24-hour window closed: the contact has not written in 24 hours; send a template"

// sendResult turns an HTTP answer into a wamid or a *actors.SendError.
func sendResult(status int, body, retryAfter []byte, now time.Time) (string, error) {
	if status >= 200 && status < 300 {
		var ok apiSuccess
		if err := json.Unmarshal(body, &ok); err == nil && len(ok.Messages) > 0 && ok.Messages[0].ID != "" {
			return ok.Messages[0].ID, nil
		}
		return "", &actors.SendError{Code: "bad_response", Title: "WhatsApp API answered without a message id", Message: snippet(body), Retry: true}
	}
	se := &actors.SendError{RetryAfter: httpx.RetryAfter(retryAfter, now)}
	var ae apiError
	if json.Unmarshal(body, &ae) == nil && ae.Error != nil && ae.Error.Code != "" {
		e := ae.Error
		se.Code = string(e.Code)
		se.Title = e.Message
		if se.Title == "" {
			se.Title = e.ErrorUserTitle
		}
		if e.ErrorData != nil && e.ErrorData.Details != "" {
			se.Message = e.ErrorData.Details
		} else if e.ErrorUserMsg != "" {
			se.Message = e.ErrorUserMsg
		} else {
			se.Message = e.Message
		}
	} else {
		se.Code = "http_" + strconv.Itoa(status)
		se.Title = "WhatsApp API answered HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
		se.Message = snippet(body)
	}
	switch classify(se.Code) {
	case classRateLimit, classUnavailable:
		se.Retry = true
	case classWindow:
		if se.Message == "" || se.Message == se.Title {
			se.Message = se.Title
		}
		se.Title = windowTitle
	case classUndeliverable, classBadRequest:
	case classAuth:
		se.Alert = true
	default:
		switch {
		case status >= 500 || status == http.StatusTooManyRequests:
			se.Retry = true
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			se.Alert = true
		}
	}
	if se.Title == "" {
		se.Title = "WhatsApp API error " + se.Code
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
