package whatsapp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"urva/actors"
	"urva/actors/msg"
)

type captured struct {
	method, path, auth, contentType string
	body                            string
}

// apiServer answers every request with handler and reports what it received.
func apiServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, <-chan captured) {
	t.Helper()
	got := make(chan captured, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)}
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
	c := NewClient(ClientOptions{APIBase: base + "/v23.0/", PhoneNumberID: "100000000000001", AccessToken: "tok", Timeout: timeout})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func textSendReq(text string) *msg.ProviderSend {
	return &msg.ProviderSend{
		MessageId: 7,
		Key:       &msg.ConversationKey{Channel: "whatsapp", BusinessNumber: "+919800000001", ContactPhone: "+919811100001"},
		Text:      text,
	}
}

const okBody = `{"messaging_product":"whatsapp","contacts":[{"input":"919811100001","wa_id":"919811100001"}],"messages":[{"id":"wamid.OUT1"}]}`

func TestClientSendText(t *testing.T) {
	srv, got := apiServer(t, respond(200, okBody))
	c := testClient(t, srv.URL, time.Second)
	id, err := c.Send(context.Background(), textSendReq(`Hi <Meera> & "team"`))
	if err != nil || id != "wamid.OUT1" {
		t.Fatalf("Send = %q, %v", id, err)
	}
	r := <-got
	want := captured{
		method: "POST", path: "/v23.0/100000000000001/messages", auth: "Bearer tok", contentType: "application/json",
		body: `{"messaging_product":"whatsapp","recipient_type":"individual","to":"919811100001","type":"text","text":{"preview_url":false,"body":"Hi <Meera> & \"team\""}}`,
	}
	if r != want {
		t.Fatalf("request = %+v\nwant      %+v", r, want)
	}
}

func TestClientSendTemplate(t *testing.T) {
	srv, got := apiServer(t, respond(200, okBody))
	c := testClient(t, srv.URL, time.Second)
	req := textSendReq("")
	req.Template = &msg.Template{Name: "followup", Language: "en", Params: []string{"Meera", "Friday"}}
	if id, err := c.Send(context.Background(), req); err != nil || id != "wamid.OUT1" {
		t.Fatalf("Send = %q, %v", id, err)
	}
	want := `{"messaging_product":"whatsapp","to":"919811100001","type":"template","template":{"name":"followup","language":{"code":"en"},` +
		`"components":[{"type":"body","parameters":[{"type":"text","text":"Meera"},{"type":"text","text":"Friday"}]}]}}`
	if r := <-got; r.body != want {
		t.Fatalf("body = %s\nwant   %s", r.body, want)
	}

	req.Template.Params = nil
	if _, err := c.Send(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	want = `{"messaging_product":"whatsapp","to":"919811100001","type":"template","template":{"name":"followup","language":{"code":"en"}}}`
	if r := <-got; r.body != want {
		t.Fatalf("body = %s\nwant   %s", r.body, want)
	}
}

func metaError(code int, message, details string) string {
	return `{"error":{"message":"` + message + `","type":"OAuthException","code":` + strconv.Itoa(code) +
		`,"error_data":{"messaging_product":"whatsapp","details":"` + details + `"},"fbtrace_id":"AbC"}}`
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
		{"24-hour window", 400, metaError(131047, "(#131047) Re-engagement message", "More than 24 hours have passed"),
			nil, "131047", false, false, 0, "24-hour window", "More than 24 hours have passed"},
		{"rate limit 130429", 429, metaError(130429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
			[]string{"Retry-After", "7"}, "130429", true, false, 7 * time.Second, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."},
		{"pair rate limit 131056", 400, metaError(131056, "(#131056) Pair rate limit hit", "x"), nil, "131056", true, false, 0, "Pair rate limit", "x"},
		{"rate limit 80007", 400, metaError(80007, "(#80007) Rate limit issues", "x"), nil, "80007", true, false, 0, "", ""},
		{"app rate limit 4", 400, metaError(4, "(#4) Application request limit reached", "x"), nil, "4", true, false, 0, "", ""},
		{"unknown 131000", 500, metaError(131000, "Something went wrong", "x"), nil, "131000", true, false, 0, "Something went wrong", ""},
		{"service unavailable 131016", 503, metaError(131016, "Service unavailable", "x"), nil, "131016", true, false, 0, "", ""},
		{"api unknown 1", 400, metaError(1, "API Unknown", "x"), nil, "1", true, false, 0, "", ""},
		{"api service 2", 400, metaError(2, "API Service", "x"), nil, "2", true, false, 0, "", ""},
		{"undeliverable 131026", 400, metaError(131026, "Message Undeliverable.", "x"), nil, "131026", false, false, 0, "", ""},
		{"ecosystem 131049", 400, metaError(131049, "This message was not delivered to maintain healthy ecosystem engagement.", "x"), nil, "131049", false, false, 0, "", ""},
		{"stopped marketing 131050", 400, metaError(131050, "Unable to deliver the message.", "x"), nil, "131050", false, false, 0, "", ""},
		{"param mismatch 132000", 400, metaError(132000, "Number of parameters does not match", "x"), nil, "132000", false, false, 0, "", ""},
		{"no template 132001", 404, metaError(132001, "Template name does not exist in the translation", "x"), nil, "132001", false, false, 0, "", ""},
		{"missing param 131008", 400, metaError(131008, "Required parameter is missing", "x"), nil, "131008", false, false, 0, "", ""},
		{"bad param 131009", 400, metaError(131009, "Parameter value is not valid", "x"), nil, "131009", false, false, 0, "", ""},
		{"invalid parameter 100", 400, metaError(100, "(#100) Invalid parameter", "Param text['body'] must be at most 4096 characters long."),
			nil, "100", false, false, 0, "(#100) Invalid parameter", "Param text['body'] must be at most 4096 characters long."},
		{"token 190", 401, metaError(190, "Error validating access token: Session has expired", ""), nil, "190", false, true, 0,
			"Error validating access token: Session has expired", "Error validating access token: Session has expired"},
		{"auth 0", 401, metaError(0, "AuthException", "x"), nil, "0", false, true, 0, "", ""},
		{"permission 10", 403, metaError(10, "Permission denied", "x"), nil, "10", false, true, 0, "", ""},
		{"unknown code on 4xx", 400, metaError(135000, "Generic user error", "x"), nil, "135000", false, false, 0, "Generic user error", "x"},
		{"unknown code on 5xx", 502, metaError(135001, "Upstream", "x"), nil, "135001", true, false, 0, "", ""},
		{"bare 500", 500, `<html>oops</html>`, nil, "http_500", true, false, 0, "HTTP 500", "<html>oops</html>"},
		{"bare 503 with Retry-After", 503, ``, []string{"Retry-After", "120"}, "http_503", true, false, 2 * time.Minute, "HTTP 503", ""},
		{"bare 429", 429, `{}`, nil, "http_429", true, false, 0, "HTTP 429", ""},
		{"bare 404", 404, `not found`, nil, "http_404", false, false, 0, "HTTP 404", "not found"},
		{"bare 401", 401, ``, nil, "http_401", false, true, 0, "HTTP 401", ""},
		{"string code", 400, `{"error":{"message":"m","code":"131047"}}`, nil, "131047", false, false, 0, "24-hour window", "m"},
		{"200 without id", 200, `{"messaging_product":"whatsapp","messages":[]}`, nil, "bad_response", true, false, 0, "without a message id", ""},
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
	srv, got := apiServer(t, respond(200, okBody))
	c := testClient(t, srv.URL, time.Second)
	noPhone := textSendReq("hi")
	noPhone.Key.ContactPhone = ""
	noLanguage := textSendReq("")
	noLanguage.Template = &msg.Template{Name: "followup"}
	for name, req := range map[string]*msg.ProviderSend{
		"empty":       textSendReq(""),
		"no phone":    noPhone,
		"no language": noLanguage,
	} {
		_, err := c.Send(context.Background(), req)
		var se *actors.SendError
		if !errors.As(err, &se) || se.Code != "invalid_request" || se.Retry {
			t.Errorf("%s: Send error = %#v, want a final invalid_request", name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var se *actors.SendError
	if _, err := c.Send(ctx, textSendReq("hi")); !errors.As(err, &se) || se.Code != "canceled" || !se.Retry {
		t.Errorf("canceled context: Send error = %#v", err)
	}
	select {
	case r := <-got:
		t.Fatalf("request sent: %+v", r)
	default:
	}
}
