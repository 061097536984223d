package crm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"urva/persistence"
)

const testSecret = "whsec-test"

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func fixedClock() time.Time { return testNow }

func testDelivery() Delivery {
	return Delivery{
		EventID:    "evt_01HV7",
		Type:       "message.received",
		OccurredAt: time.Date(2025, 3, 4, 10, 36, 7, 123456789, time.FixedZone("IST", 5*3600+1800)),
		Data:       json.RawMessage(`{"conversation":{"id":42},"text":"a <b> & c"}`),
	}
}

func TestBody(t *testing.T) {
	d := testDelivery()
	want := `{"id":"evt_01HV7","type":"message.received","occurred_at":"2025-03-04T05:06:07.123456789Z",` +
		`"data":{"conversation":{"id":42},"text":"a <b> & c"}}`
	if got := string(Body(d)); got != want {
		t.Fatalf("Body:\n got %s\nwant %s", got, want)
	}

	// Data is embedded byte for byte.
	d.Data = json.RawMessage(`{ "b" : 1,"a":[ 2 ] }`)
	d.OccurredAt = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	d.EventID = `q"<&>`
	want = `{"id":"q\"<&>","type":"message.received","occurred_at":"2025-03-04T05:06:07Z","data":{ "b" : 1,"a":[ 2 ] }}`
	if got := string(Body(d)); got != want {
		t.Fatalf("Body:\n got %s\nwant %s", got, want)
	}

	d.Data = nil
	var v map[string]any
	if err := json.Unmarshal(Body(d), &v); err != nil {
		t.Fatalf("empty data: %v", err)
	}
	if m, ok := v["data"].(map[string]any); !ok || len(m) != 0 {
		t.Fatalf("empty data rendered as %v, want {}", v["data"])
	}
}

func TestSignKnownVector(t *testing.T) {
	got := Sign("whsec", "1700000000", []byte(`{"id":"evt_1"}`))
	want := "sha256=e7e846cdb96220c3674ade89e534304fc91f6f15064facee1e7a7096f5f57f62"
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	ts := strconv.FormatInt(testNow.Unix(), 10)
	sig := Sign(testSecret, ts, body)
	old := strconv.FormatInt(testNow.Add(-10*time.Minute).Unix(), 10)
	future := strconv.FormatInt(testNow.Add(10*time.Minute).Unix(), 10)
	for _, tc := range []struct {
		name      string
		secret    string
		ts        string
		body      string
		header    string
		tolerance time.Duration
		want      error
	}{
		{"valid", testSecret, ts, string(body), sig, time.Minute, nil},
		{"default tolerance", testSecret, ts, string(body), sig, 0, nil},
		{"missing header", testSecret, ts, string(body), "", time.Minute, ErrMissingSignature},
		{"missing timestamp", testSecret, "", string(body), sig, time.Minute, ErrMissingSignature},
		{"no prefix", testSecret, ts, string(body), strings.TrimPrefix(sig, "sha256="), time.Minute, ErrBadSignature},
		{"not hex", testSecret, ts, string(body), "sha256=zz", time.Minute, ErrBadSignature},
		{"short digest", testSecret, ts, string(body), sig[:len(sig)-2], time.Minute, ErrBadSignature},
		{"uppercase hex", testSecret, ts, string(body), "sha256=" + strings.ToUpper(strings.TrimPrefix(sig, "sha256=")), time.Minute, nil},
		{"wrong secret", "other", ts, string(body), sig, time.Minute, ErrBadSignature},
		{"tampered body", testSecret, ts, `{"id":"evt_2"}`, sig, time.Minute, ErrBadSignature},
		{"timestamp not signed", testSecret, strconv.FormatInt(testNow.Unix()+1, 10), string(body), sig, time.Minute, ErrBadSignature},
		{"timestamp not a number", testSecret, "yesterday", string(body), Sign(testSecret, "yesterday", body), time.Minute, ErrBadSignature},
		{"stale", testSecret, old, string(body), Sign(testSecret, old, body), 5 * time.Minute, ErrStaleTimestamp},
		{"stale by default", testSecret, old, string(body), Sign(testSecret, old, body), 0, ErrStaleTimestamp},
		{"old within tolerance", testSecret, old, string(body), Sign(testSecret, old, body), 10 * time.Minute, nil},
		{"future", testSecret, future, string(body), Sign(testSecret, future, body), 5 * time.Minute, ErrStaleTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.ts, []byte(tc.body), tc.header, testNow, tc.tolerance)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

// captured is one request a test receiver got.
type captured struct {
	method, path string
	header       http.Header
	body         []byte
}

// receiver runs an HTTP server that reports each request and answers with
// answer.
func receiver(t *testing.T, answer func(w http.ResponseWriter)) (string, <-chan captured) {
	t.Helper()
	got := make(chan captured, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- captured{r.Method, r.URL.Path, r.Header.Clone(), b}
		answer(w)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

func newTestWebhook(t *testing.T, url string, timeout time.Duration) *Webhook {
	t.Helper()
	w := NewWebhook(WebhookOptions{URL: url, Secret: testSecret, Timeout: timeout, Clock: fixedClock})
	t.Cleanup(w.CloseIdleConnections)
	return w
}

func TestDeliverSignedRequest(t *testing.T) {
	url, got := receiver(t, func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) })
	wh := newTestWebhook(t, url+"/hooks/urva", 0)
	d := testDelivery()
	if err := wh.Deliver(context.Background(), d); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	r := <-got
	if r.method != http.MethodPost || r.path != "/hooks/urva" {
		t.Errorf("request %s %s, want POST /hooks/urva", r.method, r.path)
	}
	for name, want := range map[string]string{
		"Content-Type":  "application/json",
		"User-Agent":    "urva-crm/1",
		HeaderEventID:   d.EventID,
		HeaderTimestamp: strconv.FormatInt(testNow.Unix(), 10),
	} {
		if v := r.header.Get(name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	if string(r.body) != string(Body(d)) {
		t.Errorf("body %s, want %s", r.body, Body(d))
	}
	if err := Verify(testSecret, r.header.Get(HeaderTimestamp), r.body, r.header.Get(HeaderSignature), testNow, time.Minute); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	var shape struct {
		ID         string          `json:"id"`
		Type       string          `json:"type"`
		OccurredAt string          `json:"occurred_at"`
		Data       json.RawMessage `json:"data"`
	}
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&shape); err != nil {
		t.Fatalf("body shape: %v", err)
	}
	if shape.ID != d.EventID || shape.Type != d.Type || shape.OccurredAt != "2025-03-04T05:06:07.123456789Z" ||
		string(shape.Data) != string(d.Data) {
		t.Errorf("body fields %+v", shape)
	}

	// The same event is sent again with the same id and body.
	if err := wh.Deliver(context.Background(), d); err != nil {
		t.Fatalf("second Deliver: %v", err)
	}
	r2 := <-got
	if r2.header.Get(HeaderEventID) != d.EventID || string(r2.body) != string(r.body) {
		t.Errorf("redelivery differs: %s %s", r2.header.Get(HeaderEventID), r2.body)
	}
}

func TestDeliverAnswers(t *testing.T) {
	long := strings.Repeat("x", 511) + "é" + strings.Repeat("y", 100) // é straddles byte 512
	for _, tc := range []struct {
		name       string
		status     int
		retryAfter string
		body       string
		ok         bool
		retryable  bool
		wantAfter  time.Duration
		wantBody   string
	}{
		{name: "200", status: 200, ok: true},
		{name: "202", status: 202, ok: true},
		{name: "503", status: 503, body: `{"error":"down"}`, retryable: true, wantBody: `{"error":"down"}`},
		{name: "500", status: 500, retryable: true},
		{name: "400", status: 400, body: "bad payload", wantBody: "bad payload"},
		{name: "401", status: 401},
		{name: "404", status: 404},
		{name: "410", status: 410},
		{name: "301", status: 301},
		{name: "408", status: 408, retryable: true},
		{name: "425", status: 425, retryable: true},
		{name: "429 seconds", status: 429, retryAfter: "7", retryable: true, wantAfter: 7 * time.Second},
		{name: "429 date", status: 429, retryAfter: testNow.Add(90 * time.Second).Format(http.TimeFormat), retryable: true, wantAfter: 90 * time.Second},
		{name: "503 past date", status: 503, retryAfter: testNow.Add(-time.Hour).Format(http.TimeFormat), retryable: true},
		{name: "503 huge", status: 503, retryAfter: "99999999", retryable: true, wantAfter: 24 * time.Hour},
		{name: "503 garbage", status: 503, retryAfter: "soon", retryable: true},
		{name: "long body", status: 400, body: long, wantBody: strings.Repeat("x", 511)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, got := receiver(t, func(w http.ResponseWriter) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				if tc.status == 301 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			err := newTestWebhook(t, url, 0).Deliver(context.Background(), testDelivery())
			<-got
			if tc.ok {
				if err != nil {
					t.Fatalf("Deliver = %v, want nil", err)
				}
				return
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("Deliver = %v, want *DeliveryError", err)
			}
			if de.Status != tc.status || de.Retryable != tc.retryable || de.RetryAfter != tc.wantAfter || de.Body != tc.wantBody {
				t.Fatalf("got %+v, want status %d retryable %v retry after %v body %q",
					*de, tc.status, tc.retryable, tc.wantAfter, tc.wantBody)
			}
			if !strings.Contains(de.Error(), strconv.Itoa(tc.status)) {
				t.Errorf("Error() = %q", de.Error())
			}
		})
	}
}

func TestDeliverHugeErrorBody(t *testing.T) {
	url, got := receiver(t, func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, strings.Repeat("z", maxResponseBody+1))
	})
	err := newTestWebhook(t, url, 0).Deliver(context.Background(), testDelivery())
	<-got
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != http.StatusBadGateway || !de.Retryable {
		t.Fatalf("Deliver = %#v, want a retryable 502", err)
	}
}

// silentServer accepts connections and reads from them but never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String() + "/"
}

func TestDeliverTimeout(t *testing.T) {
	url := silentServer(t)
	start := time.Now()
	err := newTestWebhook(t, url, 150*time.Millisecond).Deliver(context.Background(), testDelivery())
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 0 || !de.Retryable || de.Err == nil {
		t.Fatalf("Deliver = %#v, want a retryable transport error", err)
	}
	if !IsTimeout(err) {
		t.Errorf("IsTimeout(%v) = false", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v with a 150ms timeout", el)
	}
}

func TestDeliverContextDeadline(t *testing.T) {
	url := silentServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	err := newTestWebhook(t, url, time.Hour).Deliver(ctx, testDelivery())
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 0 || !de.Retryable || !IsTimeout(err) {
		t.Fatalf("Deliver = %#v, want a retryable timeout", err)
	}
}

func TestDeliverCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := newTestWebhook(t, "http://127.0.0.1:1/", 0).Deliver(ctx, testDelivery())
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 0 || !de.Retryable || !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver = %#v, want a retryable cancellation", err)
	}
}

func TestDeliverConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = newTestWebhook(t, "http://"+addr+"/", 0).Deliver(context.Background(), testDelivery())
	var de *DeliveryError
	if !errors.As(err, &de) || de.Status != 0 || !de.Retryable || de.Err == nil || IsTimeout(err) {
		t.Fatalf("Deliver = %#v, want a retryable network error", err)
	}
	if !strings.Contains(de.Error(), "not delivered") {
		t.Errorf("Error() = %q", de.Error())
	}
}

// TestDeliverRetriesStaleConnection: the CRM closes a kept-alive connection
// after its first answer; the next delivery, sent on the pooled connection,
// is resent on a new one instead of failing.
func TestDeliverRetriesStaleConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ids := make(chan string, 8)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func(c net.Conn, first bool) {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					ids <- req.Header.Get(HeaderEventID)
					// Keep-alive is announced, yet the first connection is
					// closed right after the answer.
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
					if first {
						return
					}
				}
			}(c, n == 0)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})

	wh := newTestWebhook(t, "http://"+ln.Addr().String()+"/", 0)
	d := testDelivery()
	if err := wh.Deliver(context.Background(), d); err != nil {
		t.Fatalf("first Deliver: %v", err)
	}
	<-ids
	d.EventID = "evt_second"
	if err := wh.Deliver(context.Background(), d); err != nil {
		t.Fatalf("second Deliver on a closed pooled connection: %v", err)
	}
	if id := <-ids; id != "evt_second" {
		t.Fatalf("second request carried %q", id)
	}
}

func TestRetryable(t *testing.T) {
	for status, want := range map[int]bool{
		0: false, 200: false, 301: false, 400: false, 401: false, 403: false, 404: false, 409: false, 410: false,
		413: false, 422: false, 408: true, 425: true, 429: true, 500: true, 502: true, 503: true, 504: true, 599: true, 600: false,
	} {
		if got := Retryable(status); got != want {
			t.Errorf("Retryable(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	const (
		base = time.Second
		max  = time.Minute
	)
	zero := func() float64 { return 0 }
	one := func() float64 { return 1 }
	mid := func() float64 { return 0.5 }
	for _, tc := range []struct {
		attempt   int
		base, max time.Duration
		rnd       func() float64
		want      time.Duration
	}{
		{1, base, max, zero, 500 * time.Millisecond},
		{1, base, max, one, time.Second},
		{1, base, max, mid, 750 * time.Millisecond},
		{0, base, max, one, time.Second},
		{-3, base, max, one, time.Second},
		{2, base, max, zero, time.Second},
		{2, base, max, one, 2 * time.Second},
		{3, base, max, one, 4 * time.Second},
		{6, base, max, one, 32 * time.Second},
		{6, base, max, zero, 16 * time.Second},
		{7, base, max, one, max},
		{7, base, max, zero, max / 2},
		{100, base, max, one, max},
		{100, base, max, zero, max / 2},
		{1 << 30, base, max, one, max},
		{3, base, 0, one, 4 * time.Second},
		{200, base, 0, one, time.Duration(math.MaxInt64)},
		{200, base, 0, zero, time.Duration(math.MaxInt64) - time.Duration(math.MaxInt64)/2},
		{1, 0, max, one, 0},
		{1, base, max, func() float64 { return 7 }, time.Second},
		{1, base, max, func() float64 { return -1 }, 500 * time.Millisecond},
		{1, base, max, func() float64 { return math.NaN() }, 500 * time.Millisecond},
		{2, 3 * time.Second, 4 * time.Second, one, 4 * time.Second},
	} {
		if got := Backoff(tc.attempt, tc.base, tc.max, tc.rnd); got != tc.want {
			t.Errorf("Backoff(%d, %v, %v) = %v, want %v", tc.attempt, tc.base, tc.max, got, tc.want)
		}
	}

	// With the default source every delay lies within [exp/2, exp].
	for attempt := 1; attempt <= 12; attempt++ {
		exp := min(base<<(attempt-1), max)
		for range 200 {
			if d := Backoff(attempt, base, max, nil); d < exp/2 || d > exp {
				t.Fatalf("Backoff(%d) = %v, outside [%v, %v]", attempt, d, exp/2, exp)
			}
		}
	}
}

// fakeAdapter records the delivery and returns err.
type fakeAdapter struct {
	got Delivery
	err error
}

func (f *fakeAdapter) Deliver(_ context.Context, d Delivery) error {
	f.got = d
	return f.err
}

func TestOutboxSender(t *testing.T) {
	d := testDelivery()
	ev := &persistence.OutboxEvent{ID: 7, EventID: d.EventID, Type: d.Type, ConversationID: 42, OccurredAt: d.OccurredAt, Data: d.Data, Attempts: 3}

	a := &fakeAdapter{}
	if err := (OutboxSender{Adapter: a}).Deliver(context.Background(), ev); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if a.got.EventID != d.EventID || a.got.Type != d.Type || !a.got.OccurredAt.Equal(d.OccurredAt) || string(a.got.Data) != string(d.Data) {
		t.Fatalf("adapter got %+v", a.got)
	}

	de := &DeliveryError{Status: 429, Retryable: true, RetryAfter: 9 * time.Second}
	a.err = de
	err := OutboxSender{Adapter: a}.Deliver(context.Background(), ev)
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) || ra.RetryAfter() != 9*time.Second {
		t.Fatalf("Deliver = %v, want an error with RetryAfter() 9s", err)
	}
	var got *DeliveryError
	if !errors.As(err, &got) || got != de || err.Error() != de.Error() {
		t.Fatalf("Deliver = %v, want the *DeliveryError wrapped", err)
	}

	other := errors.New("adapter failed")
	a.err = other
	if err := (OutboxSender{Adapter: a}).Deliver(context.Background(), ev); err != other {
		t.Fatalf("Deliver = %v, want the adapter's error as is", err)
	}
}
