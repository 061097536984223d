package twilio

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"urva/actors"
	"urva/actors/msg"
)

const (
	testAccount = "AC00000000000000000000000000000000"
	testToken   = "auth-token"
	testFrom    = "+919800000001"
	testContact = "+919811100001"
	testSID     = "SM0123456789abcdef0123456789abcdef"
)

type captured struct {
	method, path, auth, contentType string
	form                            url.Values
}

// apiServer answers every request with handler and reports what it received.
func apiServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan captured) {
	t.Helper()
	got := make(chan captured, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(b))
		if err != nil {
			t.Errorf("body %q is not a form: %v", b, err)
		}
		got <- captured{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), form}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func respond(status int, body string, headers ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func testClient(t *testing.T, base string, timeout time.Duration) *Client {
	t.Helper()
	c := NewClient(ClientOptions{
		APIBase: base + "/", AccountSID: testAccount, AuthToken: testToken, From: testFrom,
		StatusCallback: "https://urva.example.com/webhooks/sms/status", Timeout: timeout,
	})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func textSendReq(text string) *msg.ProviderSend {
	return &msg.ProviderSend{
		MessageId: 7,
		Key:       &msg.ConversationKey{Channel: "sms", BusinessNumber: testFrom, ContactPhone: testContact},
		Text:      text,
	}
}

const okBody = `{"account_sid":"AC00000000000000000000000000000000","api_version":"2010-04-01","body":"hi",` +
	`"date_created":"Thu, 01 Jan 2026 00:00:00 +0000","date_sent":null,"direction":"outbound-api","error_code":null,` +
	`"error_message":null,"from":"+919800000001","num_segments":"1","sid":"` + testSID + `","status":"queued","to":"+919811100001"}`

func TestClientSendText(t *testing.T) {
	srv, got := apiServer(t, respond(201, okBody))
	c := testClient(t, srv.URL, time.Second)
	text := "नमस्ते 🙏 <Meera> & \"team\" +1 = 100%"
	id, err := c.Send(context.Background(), textSendReq(text))
	if err != nil || id != testSID {
		t.Fatalf("Send = %q, %v", id, err)
	}
	r := <-got
	if r.method != "POST" || r.path != "/2010-04-01/Accounts/"+testAccount+"/Messages.json" ||
		r.auth != "Basic "+base64.StdEncoding.EncodeToString([]byte(testAccount+":"+testToken)) ||
		r.contentType != "application/x-www-form-urlencoded" {
		t.Fatalf("request = %+v", r)
	}
	want := url.Values{"To": {testContact}, "From": {testFrom}, "Body": {text}, "StatusCallback": {"https://urva.example.com/webhooks/sms/status"}}
	if r.form.Encode() != want.Encode() {
		t.Fatalf("form = %v\nwant   %v", r.form, want)
	}
}

func TestClientSendTemplateAsText(t *testing.T) {
	srv, got := apiServer(t, respond(201, okBody))
	c := testClient(t, srv.URL, time.Second)
	req := textSendReq("")
	req.Template = &msg.Template{Name: "followup", Language: "en", Params: []string{"Meera", "Friday 4 pm"}}
	if _, err := c.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if b := (<-got).form.Get("Body"); b != "followup: Meera, Friday 4 pm" {
		t.Fatalf("Body = %q", b)
	}
	req.Template.Params = nil
	if _, err := c.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if b := (<-got).form.Get("Body"); b != "followup" {
		t.Fatalf("Body = %q", b)
	}
}

func TestClientMessagingServiceAndNoCallback(t *testing.T) {
	srv, got := apiServer(t, respond(201, okBody))
	const service = "MG0123456789abcdef0123456789abcdef"
	c := NewClient(ClientOptions{APIBase: srv.URL, AccountSID: testAccount, AuthToken: testToken, From: service})
	defer c.CloseIdleConnections()
	req := textSendReq("hi")
	req.Key.ContactPhone = "91 98111 00001"
	if _, err := c.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	want := url.Values{"To": {testContact}, "MessagingServiceSid": {service}, "Body": {"hi"}}
	if f := (<-got).form; f.Encode() != want.Encode() {
		t.Fatalf("form = %v, want %v", f, want)
	}
}

func twilioError(code int, message string, status int) string {
	return `{"code":` + strconv.Itoa(code) + `,"message":"` + message + `","more_info":"https://www.twilio.com/docs/errors/` +
		strconv.Itoa(code) + `","status":` + strconv.Itoa(status) + `}`
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		headers    []string
		code       string
		retry      bool
		alert      bool
		retryAfter time.Duration
		title      string
		message    string
	}{
		{"unsubscribed 21610", 400, twilioError(21610, "Attempt to send to unsubscribed recipient", 400), nil,
			"21610", false, false, 0, "unsubscribed", "Attempt to send to unsubscribed recipient"},
		{"invalid To 21211", 400, twilioError(21211, "The 'To' number +91123 is not a valid phone number.", 400), nil,
			"21211", false, false, 0, "Invalid 'To' phone number", "The 'To' number +91123 is not a valid phone number."},
		{"not mobile 21614", 400, twilioError(21614, "'To' number is not a valid mobile number", 400), nil, "21614", false, false, 0, "not a mobile", ""},
		{"body too long 21617", 400, twilioError(21617, "The concatenated message body exceeds the 1600 character limit.", 400), nil, "21617", false, false, 0, "1600", ""},
		{"unknown 4xx code", 400, twilioError(21999, "Something odd", 400), nil, "21999", false, false, 0, "Something odd", "Something odd"},
		{"bad From 21606", 400, twilioError(21606, "The From phone number is not a valid, SMS-capable inbound phone number", 400), nil, "21606", false, true, 0, "", ""},
		{"region 21408", 400, twilioError(21408, "Permission to send an SMS has not been enabled for the region", 400), nil, "21408", false, true, 0, "region", ""},
		{"authenticate 20003", 401, twilioError(20003, "Authenticate", 401), nil, "20003", false, true, 0, "credentials", "Authenticate"},
		{"forbidden", 403, twilioError(20008, "Forbidden", 403), nil, "20008", false, true, 0, "Forbidden", ""},
		{"account not found 20404", 404, twilioError(20404, "The requested resource was not found", 404), nil, "20404", false, true, 0, "", ""},
		{"rate limit 429", 429, twilioError(20429, "Too Many Requests", 429), []string{"Retry-After", "3"}, "20429", true, false, 3 * time.Second, "rate limit", "Too Many Requests"},
		{"server error", 500, twilioError(20500, "Internal Server Error", 500), nil, "20500", true, false, 0, "Internal Server Error", ""},
		{"service unavailable with Retry-After", 503, twilioError(20503, "Service Unavailable", 503), []string{"Retry-After", "120"}, "20503", true, false, 2 * time.Minute, "", ""},
		{"string code", 400, `{"code":"21610","message":"m"}`, nil, "21610", false, false, 0, "unsubscribed", "m"},
		{"bare 502", 502, `<html>bad gateway</html>`, nil, "http_502", true, false, 0, "HTTP 502", "<html>bad gateway</html>"},
		{"bare 429", 429, ``, nil, "http_429", true, false, 0, "HTTP 429", ""},
		{"bare 404", 404, `not found`, nil, "http_404", false, false, 0, "HTTP 404", "not found"},
		{"bare 401", 401, ``, nil, "http_401", false, true, 0, "HTTP 401", ""},
		{"201 without sid", 201, `{"status":"queued"}`, nil, "bad_response", true, false, 0, "without a message SID", ""},
		{"201 not JSON", 201, `ok`, nil, "bad_response", true, false, 0, "without a message SID", "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := apiServer(t, respond(tt.status, tt.body, tt.headers...))
			c := testClient(t, srv.URL, time.Second)
			id, err := c.Send(context.Background(), textSendReq("hi"))
			var se *actors.SendError
			if !errors.As(err, &se) {
				t.Fatalf("Send = %q, %v; want *actors.SendError", id, err)
			}
			if se.Code != tt.code || se.Retry != tt.retry || se.Alert != tt.alert || se.RetryAfter != tt.retryAfter {
				t.Errorf("error = %+v; want code %s retry %v alert %v retryAfter %v", se, tt.code, tt.retry, tt.alert, tt.retryAfter)
			}
			if !strings.Contains(se.Title, tt.title) || se.Title == "" {
				t.Errorf("title = %q, want it to contain %q", se.Title, tt.title)
			}
			if !strings.Contains(se.Message, tt.message) {
				t.Errorf("message = %q, want it to contain %q", se.Message, tt.message)
			}
		})
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, got := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	c := testClient(t, srv.URL, 100*time.Millisecond)
	_, err := c.Send(context.Background(), textSendReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || se.Code != "timeout" || !se.Retry || se.Alert {
		t.Fatalf("Send error = %#v, want a retryable timeout", err)
	}
	<-got

	// The context's deadline bounds the call too.
	c = testClient(t, srv.URL, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Send(ctx, textSendReq("hi"))
	if !errors.As(err, &se) || se.Code != "timeout" || !se.Retry {
		t.Fatalf("Send error = %#v, want a retryable timeout", err)
	}
}

func TestClientNetworkError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	c := testClient(t, "http://"+addr, time.Second)
	_, err = c.Send(context.Background(), textSendReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || se.Code != "network" || !se.Retry || se.Alert {
		t.Fatalf("Send error = %#v, want a retryable network error", err)
	}
}

func TestClientRefusesBadRequestsLocally(t *testing.T) {
	srv, got := apiServer(t, respond(201, okBody))
	c := testClient(t, srv.URL, time.Second)
	noPhone := textSendReq("hi")
	noPhone.Key.ContactPhone = " "
	emptyTemplate := textSendReq("")
	emptyTemplate.Template = &msg.Template{Language: "en"}
	for name, req := range map[string]*msg.ProviderSend{
		"empty":          textSendReq(""),
		"no phone":       noPhone,
		"nameless templ": emptyTemplate,
	} {
		_, err := c.Send(context.Background(), req)
		var se *actors.SendError
		if !errors.As(err, &se) || se.Code != "invalid_request" || se.Retry {
			t.Errorf("%s: Send error = %#v, want a final invalid_request", name, err)
		}
	}
	noFrom := NewClient(ClientOptions{APIBase: srv.URL, AccountSID: testAccount, AuthToken: testToken})
	defer noFrom.CloseIdleConnections()
	var se *actors.SendError
	if _, err := noFrom.Send(context.Background(), textSendReq("hi")); !errors.As(err, &se) || !se.Alert || se.Retry {
		t.Errorf("no From: Send error = %#v, want an alert", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Send(ctx, textSendReq("hi")); !errors.As(err, &se) || se.Code != "canceled" || !se.Retry {
		t.Errorf("canceled context: Send error = %#v", err)
	}
	select {
	case r := <-got:
		t.Fatalf("request sent: %+v", r)
	default:
	}
}

func TestLooksLikeSID(t *testing.T) {
	for s, want := range map[string]bool{
		"MG0123456789abcdef0123456789abcdef": true,
		"MG0123456789ABCDEF0123456789ABCDEF": true,
		"MG0123456789abcdef0123456789abcde":  false,
		"MG0123456789abcdef0123456789abcdeg": false,
		"SM0123456789abcdef0123456789abcdef": false,
		"+919800000001":                      false,
	} {
		if got := LooksLikeSID(s, "MG"); got != want {
			t.Errorf("LooksLikeSID(%q) = %v", s, got)
		}
	}
}
