package exotel

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	testAccount  = "urva-test"
	testKey      = "dialler-key"
	testToken    = "dialler-token"
	testCallerID = "+919800000001"
	testContact  = "+919811100001"
	testRM       = "+919822200002"
	testSid      = "b6cfaf5f5cef3ca0fc937749ef96d245"
	testCallback = "https://urva.example.com/webhooks/dialler/secret-token"
)

type captured struct {
	method, path, query, auth, contentType string
	form                                   url.Values
}

// apiServer answers every request with handler and reports what it received.
func apiServer(t *testing.T, handler http.HandlerFunc) (*httptest.Server, <-chan captured) {
	t.Helper()
	got := make(chan captured, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		form, err := url.ParseQuery(string(b))
		if err != nil {
			t.Errorf("body %q is not a form: %v", b, err)
		}
		got <- captured{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), form}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func respond(status int, body string, headers ...string) http.HandlerFunc {
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
	c := NewClient(ClientOptions{APIBase: base + "/", AccountSID: testAccount, APIKey: testKey, APIToken: testToken, Timeout: timeout})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func fullRequest() ConnectRequest {
	return ConnectRequest{
		From: testContact, To: testRM, CallerID: testCallerID, Record: true, TimeLimit: 3600, TimeOut: 30,
		CustomField: "urva:call:42:7f3a", StatusCallback: testCallback,
	}
}

// connectOK is the connect answer as Exotel writes it: nulls for what is
// not known yet, numbers as strings.
const connectOK = `{"Call":{"Sid":"` + testSid + `","ParentCallSid":null,"DateCreated":"2026-03-03 10:48:33",` +
	`"DateUpdated":"2026-03-03 10:48:33","AccountSid":"urva-test","To":"+919822200002","From":"+919811100001",` +
	`"PhoneNumberSid":"+919800000001","Status":"in-progress","StartTime":"2026-03-03 10:48:33","EndTime":null,` +
	`"Duration":null,"Price":null,"Direction":"outbound-api","AnsweredBy":null,"ForwardedFrom":null,"CallerName":null,` +
	`"Uri":"/v1/Accounts/urva-test/Calls/` + testSid + `.json","RecordingUrl":null}}`

func istTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.ParseInLocation(TimeLayout, s, time.FixedZone("IST", 19800))
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestConnectSendsTheForm(t *testing.T) {
	srv, got := apiServer(t, respond(200, connectOK))
	c := testClient(t, srv.URL, time.Second)
	call, err := c.Connect(context.Background(), fullRequest())
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	r := <-got
	if r.method != "POST" || r.path != "/v1/Accounts/"+testAccount+"/Calls/connect.json" ||
		r.auth != "Basic "+base64.StdEncoding.EncodeToString([]byte(testKey+":"+testToken)) ||
		r.contentType != "application/x-www-form-urlencoded" {
		t.Fatalf("request = %+v", r)
	}
	want := url.Values{
		"From": {testContact}, "To": {testRM}, "CallerId": {testCallerID}, "Record": {"true"},
		"TimeLimit": {"3600"}, "TimeOut": {"30"}, "CustomField": {"urva:call:42:7f3a"},
		"StatusCallback": {testCallback}, "StatusCallbackEvents[0]": {"terminal"},
		"StatusCallbackEvents[1]": {"answered"}, "StatusCallbackContentType": {"application/json"},
	}
	if r.form.Encode() != want.Encode() {
		t.Fatalf("form = %v\nwant   %v", r.form, want)
	}
	created := istTime(t, "2026-03-03 10:48:33")
	if call.Sid != testSid || call.Status != StatusInProgress || call.From != testContact || call.To != testRM ||
		call.Direction != DirectionOutboundAPI || !call.DateCreated.Equal(created) || !call.StartTime.Equal(created) ||
		!call.EndTime.IsZero() || call.Duration != 0 || call.RecordingURL != "" || len(call.Legs) != 0 {
		t.Fatalf("call = %+v", call)
	}
}

func TestConnectMinimalForm(t *testing.T) {
	srv, got := apiServer(t, respond(200, connectOK))
	c := testClient(t, srv.URL, time.Second)
	if _, err := c.Connect(context.Background(), ConnectRequest{From: " " + testContact, To: testRM, CallerID: testCallerID}); err != nil {
		t.Fatal(err)
	}
	want := url.Values{"From": {testContact}, "To": {testRM}, "CallerId": {testCallerID}}
	if f := (<-got).form; f.Encode() != want.Encode() {
		t.Fatalf("form = %v, want %v", f, want)
	}
}

func TestConnectErrors(t *testing.T) {
	tests := []struct {
		name              string
		status            int
		body              string
		headers           []string
		retry, ambiguous  bool
		message           string
		retryAfter        time.Duration
		wantHTTPStatusSet bool
	}{
		{"bad request", 400, `{"RestException":{"Status":400,"Message":"Invalid parameter: To"}}`, nil, false, false, "Invalid parameter: To", 0, true},
		{"unauthorized", 401, `{"RestException":{"Message":"Authentication is required to view this resource."}}`, nil, false, false, "Authentication is required", 0, true},
		{"forbidden", 403, `{"RestException":{"Message":"Forbidden"}}`, nil, false, false, "Forbidden", 0, true},
		{"not found", 404, `not found`, nil, false, false, "not found", 0, true},
		{"payment required", 402, `{"RestException":{"Message":"Insufficient balance"}}`, nil, false, false, "Insufficient balance", 0, true},
		{"rate limited", 429, `{"RestException":{"Message":"Too many requests"}}`, []string{"Retry-After", "7"}, true, false, "Too many requests", 7 * time.Second, true},
		{"request timeout", 408, ``, nil, true, false, "Request Timeout", 0, true},
		{"server error", 500, `{"RestException":{"Message":"Internal error"}}`, nil, true, true, "Internal error", 0, true},
		{"bad gateway html", 502, `<html>bad gateway</html>`, nil, true, true, "<html>bad gateway</html>", 0, true},
		{"unavailable", 503, ``, []string{"Retry-After", "30"}, true, true, "Service Unavailable", 30 * time.Second, true},
		{"200 without sid", 200, `{"Call":{"Status":"in-progress"}}`, nil, true, true, "without a call sid", 0, true},
		{"200 not JSON", 200, `<TwilioResponse/>`, nil, true, true, "without a call sid", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := apiServer(t, respond(tt.status, tt.body, tt.headers...))
			c := testClient(t, srv.URL, time.Second)
			call, err := c.Connect(context.Background(), fullRequest())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Connect = %+v, %v; want *Error", call, err)
			}
			<-got
			if e.HTTPStatus != tt.status || e.Retryable != tt.retry || e.Ambiguous != tt.ambiguous || e.RetryAfter != tt.retryAfter || e.Op != "connect" {
				t.Errorf("error = %+v; want status %d retry %v ambiguous %v retryAfter %v", e, tt.status, tt.retry, tt.ambiguous, tt.retryAfter)
			}
			if !strings.Contains(e.Message, tt.message) {
				t.Errorf("message = %q, want it to contain %q", e.Message, tt.message)
			}
			if tt.ambiguous != strings.Contains(err.Error(), "may have been placed") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

// hangingServer reads each request, reports it and answers only once the
// test ends.
func hangingServer(t *testing.T) (*httptest.Server, <-chan captured) {
	t.Helper()
	release := make(chan struct{})
	srv, got := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, got
}

func TestConnectTimeoutAfterSendingIsAmbiguous(t *testing.T) {
	srv, got := hangingServer(t)
	c := testClient(t, srv.URL, 100*time.Millisecond)
	_, err := c.Connect(context.Background(), fullRequest())
	var e *Error
	if !errors.As(err, &e) || !e.Ambiguous || !e.Retryable || e.HTTPStatus != 0 || e.Err == nil {
		t.Fatalf("Connect error = %#v, want an ambiguous timeout", err)
	}
	if r := <-got; r.form.Get("CustomField") != "urva:call:42:7f3a" {
		t.Fatalf("the dialler got %+v", r)
	}

	// The context's deadline bounds the call too.
	c = testClient(t, srv.URL, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err = c.Connect(ctx, fullRequest()); !errors.As(err, &e) || !e.Ambiguous || !e.Retryable {
		t.Fatalf("Connect error = %#v, want an ambiguous timeout", err)
	}
	<-got
}

func TestConnectConnectionDroppedAfterSendingIsAmbiguous(t *testing.T) {
	srv, got := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	})
	c := testClient(t, srv.URL, time.Second)
	_, err := c.Connect(context.Background(), fullRequest())
	var e *Error
	if !errors.As(err, &e) || !e.Ambiguous || !e.Retryable {
		t.Fatalf("Connect error = %#v, want ambiguous", err)
	}
	<-got
	select {
	case r := <-got:
		t.Fatalf("the POST was sent again: %+v", r)
	default:
	}
}

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	return addr
}

func TestConnectRefusedIsRetryableNotAmbiguous(t *testing.T) {
	c := testClient(t, "http://"+closedAddr(t), time.Second)
	_, err := c.Connect(context.Background(), fullRequest())
	var e *Error
	if !errors.As(err, &e) || e.Ambiguous || !e.Retryable || e.HTTPStatus != 0 {
		t.Fatalf("Connect error = %#v, want retryable and not ambiguous", err)
	}
	var ne *net.OpError
	if !errors.As(err, &ne) {
		t.Errorf("error does not wrap the dial error: %v", err)
	}
}

func TestConnectRefusesBadRequestsLocally(t *testing.T) {
	srv, got := apiServer(t, respond(200, connectOK))
	c := testClient(t, srv.URL, time.Second)
	mod := func(f func(*ConnectRequest)) ConnectRequest {
		r := fullRequest()
		f(&r)
		return r
	}
	for name, r := range map[string]ConnectRequest{
		"no From":          mod(func(r *ConnectRequest) { r.From = " " }),
		"no To":            mod(func(r *ConnectRequest) { r.To = "" }),
		"no CallerId":      mod(func(r *ConnectRequest) { r.CallerID = "" }),
		"long CustomField": mod(func(r *ConnectRequest) { r.CustomField = strings.Repeat("x", MaxCustomField+1) }),
		"bad UTF-8":        mod(func(r *ConnectRequest) { r.CustomField = "\xff" }),
		"TimeLimit":        mod(func(r *ConnectRequest) { r.TimeLimit = MaxTimeLimit + 1 }),
		"relative URL":     mod(func(r *ConnectRequest) { r.StatusCallback = "/webhooks/dialler/x" }),
	} {
		_, err := c.Connect(context.Background(), r)
		var e *Error
		if !errors.As(err, &e) || e.Retryable || e.Ambiguous || !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: Connect error = %#v, want a final ErrInvalidRequest", name, err)
		}
	}
	if _, err := c.Connect(context.Background(), mod(func(r *ConnectRequest) { r.CustomField = strings.Repeat("é", MaxCustomField) })); err != nil {
		t.Errorf("128 characters of CustomField: %v", err)
	}
	<-got

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var e *Error
	if _, err := c.Connect(ctx, fullRequest()); !errors.As(err, &e) || !e.Retryable || e.Ambiguous || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: Connect error = %#v", err)
	}
	for _, base := range []string{"", "api.exotel.com", "ftp://api.exotel.com"} {
		bad := NewClient(ClientOptions{APIBase: base, AccountSID: testAccount, APIKey: testKey, APIToken: testToken})
		if _, err := bad.Connect(context.Background(), fullRequest()); !errors.As(err, &e) || e.Retryable || !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("base %q: Connect error = %#v", base, err)
		}
	}
	select {
	case r := <-got:
		t.Fatalf("request sent: %+v", r)
	default:
	}
}

// detailsOK is a call details answer with details=true, as Exotel writes it.
const detailsOK = `{"Call":{"Sid":"` + testSid + `","ParentCallSid":null,"DateCreated":"2026-03-03 10:48:33",` +
	`"DateUpdated":"2026-03-03 10:53:33","AccountSid":"urva-test","To":"+919822200002","From":"+919811100001",` +
	`"PhoneNumberSid":"+919800000001","Status":"completed","StartTime":"2026-03-03 10:48:33",` +
	`"EndTime":"2026-03-03 10:49:50","Duration":"77","Price":"1.500","Direction":"outbound-api","AnsweredBy":null,` +
	`"Uri":"/v1/Accounts/urva-test/Calls/` + testSid + `.json","RecordingUrl":"https://recordings.example.com/` + testSid + `.mp3",` +
	`"Details":{"ConversationDuration":58,"Leg1Status":"completed","Leg2Status":"completed",` +
	`"Legs":[{"Leg":{"Id":1,"OnCallDuration":71}},{"Leg":{"Id":2,"OnCallDuration":58}}]}}}`

func TestCallDetails(t *testing.T) {
	srv, got := apiServer(t, respond(200, detailsOK))
	c := testClient(t, srv.URL, time.Second)
	call, err := c.CallDetails(context.Background(), testSid)
	if err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.method != "GET" || r.path != "/v1/Accounts/"+testAccount+"/Calls/"+testSid+".json" || r.query != "details=true" ||
		r.auth != "Basic "+base64.StdEncoding.EncodeToString([]byte(testKey+":"+testToken)) {
		t.Fatalf("request = %+v", r)
	}
	if call.Sid != testSid || call.Status != StatusCompleted || !Final(call.Status) || call.Duration != 77 ||
		call.ConversationDuration != 58 || call.RecordingURL != "https://recordings.example.com/"+testSid+".mp3" ||
		!call.EndTime.Equal(istTime(t, "2026-03-03 10:49:50")) || !call.DateUpdated.Equal(istTime(t, "2026-03-03 10:53:33")) {
		t.Fatalf("call = %+v", call)
	}
	want := []Leg{{OnCallDuration: 71, Status: "completed"}, {OnCallDuration: 58, Status: "completed"}}
	if len(call.Legs) != 2 || call.Legs[0] != want[0] || call.Legs[1] != want[1] {
		t.Fatalf("legs = %+v, want %+v", call.Legs, want)
	}
}

func TestCallDetailsLiberal(t *testing.T) {
	// A bare call object with callback-style legs and numbers as numbers.
	body := `{"sid":"abc","status":"No-Answer","Duration":12,"ConversationDuration":"0","StartTime":"2026-03-03T05:18:33Z",` +
		`"Legs":[{"OnCallDuration":"12","Status":"no-answer","AnsweredBy":"NA"}],"Details":{"Leg2Status":"canceled"}}`
	srv, _ := apiServer(t, respond(200, body))
	call, err := testClient(t, srv.URL, time.Second).CallDetails(context.Background(), "abc")
	if err != nil {
		t.Fatal(err)
	}
	if call.Sid != "abc" || call.Status != StatusNoAnswer || call.Duration != 12 ||
		!call.StartTime.Equal(istTime(t, "2026-03-03 10:48:33")) || len(call.Legs) != 2 ||
		call.Legs[0] != (Leg{12, "no-answer", "NA"}) || call.Legs[1] != (Leg{Status: "canceled"}) {
		t.Fatalf("call = %+v", call)
	}
}

func TestCallDetailsErrors(t *testing.T) {
	srv, _ := apiServer(t, respond(404, `{"RestException":{"Message":"Call not found"}}`))
	_, err := testClient(t, srv.URL, time.Second).CallDetails(context.Background(), testSid)
	var e *Error
	if !errors.Is(err, ErrCallNotFound) || !errors.As(err, &e) || e.Retryable || e.Message != "Call not found" {
		t.Fatalf("404: %#v", err)
	}
	srv, _ = apiServer(t, respond(500, `{}`))
	if _, err = testClient(t, srv.URL, time.Second).CallDetails(context.Background(), testSid); !errors.As(err, &e) || !e.Retryable || e.Ambiguous {
		t.Fatalf("500: %#v", err)
	}
	srv, _ = apiServer(t, respond(200, `{"Call":{}}`))
	if _, err = testClient(t, srv.URL, time.Second).CallDetails(context.Background(), testSid); !errors.As(err, &e) || !e.Retryable || e.Ambiguous {
		t.Fatalf("empty call: %#v", err)
	}
	srv, _ = hangingServer(t)
	if _, err = testClient(t, srv.URL, 50*time.Millisecond).CallDetails(context.Background(), testSid); !errors.As(err, &e) || !e.Retryable || e.Ambiguous {
		t.Fatalf("timeout: %#v", err)
	}
	if _, err = testClient(t, srv.URL, time.Second).CallDetails(context.Background(), "a b"); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("bad sid: %#v", err)
	}
}

// bulkPage renders a bulk call details answer.
func bulkPage(next string, calls ...string) string {
	n := "null"
	if next != "" {
		n = `"` + next + `"`
	}
	return `{"Metadata":{"Total":null,"PageSize":100,"FirstPageUri":"/v1/Accounts/urva-test/Calls.json?PageSize=100",` +
		`"PrevPageUri":null,"NextPageUri":` + n + `},"Calls":[` + strings.Join(calls, ",") + `]}`
}

func bulkCall(sid, customField, from, created string) string {
	return `{"Sid":"` + sid + `","DateCreated":"` + created + `","From":"` + from + `","To":"+919822200002",` +
		`"Status":"completed","Duration":"10","Direction":"outbound-api","CustomField":"` + customField + `"}`
}

func TestFindByCustomField(t *testing.T) {
	since := istTime(t, "2026-03-03 10:40:00")
	srv, got := apiServer(t, func(w http.ResponseWriter, r *http.Request) {
		// A dialler that ignores the CustomField filter: the client checks.
		switch r.URL.Query().Get("After") {
		case "":
			page := bulkPage("/v1/Accounts/urva-test/Calls.json?PageSize=100&After=cursor-2",
				bulkCall("s1", "other", testContact, "2026-03-03 10:49:00"),
				bulkCall("s2", "urva:call:42", testContact, "2026-03-03 09:00:00")) // too old
			respond(200, page)(w, r)
		case "cursor-2":
			respond(200, bulkPage("", bulkCall("s3", "urva:call:42", "09811100001", "2026-03-03 10:48:33"),
				bulkCall("s4", "urva:call:42", testContact, "2026-03-03 10:41:00")))(w, r)
		default:
			t.Errorf("cursor %q", r.URL.Query().Get("After"))
		}
	})
	c := testClient(t, srv.URL, time.Second)
	call, err := c.FindByCustomField(context.Background(), "urva:call:42", since)
	if err != nil {
		t.Fatal(err)
	}
	if call.Sid != "s3" || call.CustomField != "urva:call:42" || call.From != "09811100001" {
		t.Fatalf("call = %+v", call)
	}
	r := <-got
	q, _ := url.ParseQuery(r.query)
	if r.method != "GET" || r.path != "/v1/Accounts/"+testAccount+"/Calls.json" || q.Get("CustomField") != "urva:call:42" ||
		q.Get("SortBy") != "DateCreated:desc" || q.Get("PageSize") != "100" || q.Get("After") != "" ||
		!strings.HasPrefix(q.Get("DateCreated"), "gte:2026-03-03 10:38:00;lte:") {
		t.Fatalf("first request = %+v (query %v)", r, q)
	}
	if r := <-got; !strings.Contains(r.query, "After=cursor-2") {
		t.Fatalf("second request = %+v", r)
	}

	var e *Error
	if _, err := c.FindByCustomField(context.Background(), "urva:call:99", since); !errors.Is(err, ErrCallNotFound) || !errors.As(err, &e) || e.Retryable {
		t.Fatalf("absent: %#v", err)
	}
	if _, err := c.FindByCustomField(context.Background(), "", since); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("empty: %#v", err)
	}
}

func TestFindCalls(t *testing.T) {
	srv, got := apiServer(t, respond(200, bulkPage("",
		bulkCall("s1", "", "09811100001", "2026-03-03 10:49:00"),
		bulkCall("s2", "", "+919833300003", "2026-03-03 10:48:00"),
		`{"Call":`+bulkCall("s3", "", "919811100001", "2026-03-03 10:47:00")+`}`)))
	c := testClient(t, srv.URL, time.Second)
	calls, err := c.FindCalls(context.Background(), CallFilter{From: testContact, To: testRM})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].Sid != "s1" || calls[1].Sid != "s3" {
		t.Fatalf("calls = %+v", calls)
	}
	q, _ := url.ParseQuery((<-got).query)
	if q.Get("From") != testContact || q.Get("To") != testRM || q.Has("DateCreated") || q.Has("CustomField") {
		t.Fatalf("query = %v", q)
	}

	srv, _ = apiServer(t, respond(503, ``))
	var e *Error
	if _, err := testClient(t, srv.URL, time.Second).FindCalls(context.Background(), CallFilter{}); !errors.As(err, &e) || !e.Retryable || e.Ambiguous {
		t.Fatalf("503: %#v", err)
	}
	srv, _ = apiServer(t, respond(200, `[]`))
	if _, err := testClient(t, srv.URL, time.Second).FindCalls(context.Background(), CallFilter{}); !errors.As(err, &e) || !e.Retryable {
		t.Fatalf("junk: %#v", err)
	}
}

func TestTimes(t *testing.T) {
	at := time.Date(2026, 3, 3, 5, 18, 33, 0, time.UTC)
	if s := FormatTime(at); s != "2026-03-03 10:48:33" {
		t.Fatalf("FormatTime = %q", s)
	}
	if FormatTime(time.Time{}) != "" {
		t.Fatal("zero time formatted")
	}
	for _, s := range []string{"2026-03-03 10:48:33", " 2026-03-03 10:48:33 ", "2026-03-03T10:48:33", "2026-03-03T05:18:33Z",
		"2026-03-03T10:48:33+05:30", "2026-03-03 05:18:33Z", "2026-03-03 10:48:33.000"} {
		if got, ok := ParseTime(s); !ok || !got.Equal(at) {
			t.Errorf("ParseTime(%q) = %v, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "null", "0000-00-00 00:00:00", "03/03/2026", "2026-03-03"} {
		if got, ok := ParseTime(s); ok {
			t.Errorf("ParseTime(%q) = %v", s, got)
		}
	}
}

func TestSameNumber(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"+919811100001", "09811100001", true},
		{"+91 98111 00001", "919811100001", true},
		{"+919811100001", "+919811100002", false},
		{"12345", "12345", true},
		{"12345", "012345", false},
		{"", "", false},
		{"+14155550100", "+919811100001", false},
	} {
		if got := SameNumber(tt.a, tt.b); got != tt.want {
			t.Errorf("SameNumber(%q, %q) = %v", tt.a, tt.b, got)
		}
	}
}
