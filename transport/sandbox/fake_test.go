package sandbox

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

func newTestFake(hooks webhooks) *fake[int] {
	f := newFake[int](zerolog.Nop(), "test", hooks)
	return &f
}

func TestFailQueue(t *testing.T) {
	var q failQueue[string]
	q.add(0, "never")
	q.add(-1, "never")
	q.add(2, "a")
	q.add(1, "b")
	var got []string
	for {
		f, ok := q.take()
		if !ok {
			break
		}
		got = append(got, f)
	}
	if want := []string{"a", "a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("took %q, want %q", got, want)
	}
	if f, ok := q.take(); ok || f != "" {
		t.Fatalf("empty queue gave %q, %v", f, ok)
	}
}

func TestKeepLast(t *testing.T) {
	var s []int
	var dropped []int
	for i := 1; i <= 5; i++ {
		s = keepLast(s, i, 3, func(v int) { dropped = append(dropped, v) })
	}
	if !slices.Equal(s, []int{3, 4, 5}) || !slices.Equal(dropped, []int{1, 2}) {
		t.Fatalf("kept %v, dropped %v", s, dropped)
	}
	// A slice already over the limit is cut to it.
	s = keepLast([]int{1, 2, 3, 4, 5}, 6, 2, nil)
	if !slices.Equal(s, []int{5, 6}) {
		t.Fatalf("kept %v, want [5 6]", s)
	}
}

func TestCloneEach(t *testing.T) {
	if got := cloneEach([]int(nil), func(v int) int { return v }); got == nil || len(got) != 0 {
		t.Fatalf("cloneEach(nil) = %#v, want an empty slice", got)
	}
	if got := cloneEach([]int{1, 2}, func(v int) string { return string(rune('a' + v)) }); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("cloneEach = %q", got)
	}
}

func TestFakeSubscribePublishClose(t *testing.T) {
	f := newTestFake(webhooks{})
	var dups atomic.Int32
	f.dup = func(v int) int { dups.Add(1); return v }
	a, cancelA := f.subscribe()
	b, cancelB := f.subscribe()

	var kept []int
	var slow atomic.Int32
	for i := range subscriberBuffer + 1 {
		if !f.accept(&kept, i, func() { slow.Add(1) }, nil) {
			t.Fatal("accept refused before close")
		}
	}
	// Each subscriber's buffer took subscriberBuffer values and missed one.
	if n := slow.Load(); n != 2 {
		t.Fatalf("slow called %d times, want 2", n)
	}
	if n := dups.Load(); n != 2*(subscriberBuffer+1) {
		t.Fatalf("dup called %d times, want %d", n, 2*(subscriberBuffer+1))
	}
	if len(kept) != subscriberBuffer+1 || kept[0] != 0 {
		t.Fatalf("kept %d values from %v", len(kept), kept[:1])
	}
	if v := <-a; v != 0 {
		t.Fatalf("first value %d, want 0", v)
	}

	cancelA()
	cancelA() // a second cancel does nothing
	n := 0
	for range a {
		n++
	}
	if n != subscriberBuffer-1 {
		t.Fatalf("drained %d values after cancel, want %d", n, subscriberBuffer-1)
	}

	f.close()
	f.close() // a second close does nothing
	n = 0
	for range b {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("drained %d values after close, want %d", n, subscriberBuffer)
	}
	cancelB() // after close: nothing to do

	c, cancelC := f.subscribe()
	if _, ok := <-c; ok {
		t.Fatal("subscription after close is open")
	}
	cancelC()
	if f.accept(&kept, 1, nil, func() { t.Error("ran after close") }) {
		t.Fatal("accept after close reported true")
	}
	if !f.isClosed() {
		t.Fatal("isClosed is false after close")
	}
}

func TestFakeCloseWaitsForBackgroundWork(t *testing.T) {
	f := newTestFake(webhooks{})
	var kept []int
	started, finished := make(chan struct{}), make(chan struct{})
	f.accept(&kept, 1, nil, func() {
		close(started)
		f.wait(time.Hour) // returns at close
		close(finished)
	})
	<-started
	f.close()
	select {
	case <-finished:
	default:
		t.Fatal("close returned before the background work ended")
	}
	if f.wait(time.Millisecond) {
		t.Fatal("wait after close reported true")
	}
}

func TestDeliverRetrying(t *testing.T) {
	f := newTestFake(webhooks{what: "test webhook", attempts: 4, backoff: time.Millisecond, doubling: true, acked: is2xx})
	defer f.close()

	answers := []int{500, 0, 404, 204}
	calls := 0
	post := func() (int, []byte, error) {
		st := answers[calls]
		calls++
		if st == 0 {
			return 0, nil, errors.New("connection refused")
		}
		return st, []byte("body"), nil
	}
	if !f.deliverRetrying(zerolog.Nop(), post) || calls != 4 {
		t.Fatalf("acknowledged at attempt %d, want 4", calls)
	}

	calls = 0
	answers = []int{500, 500, 500, 500, 200}
	if f.deliverRetrying(zerolog.Nop(), post) || calls != 4 {
		t.Fatalf("gave up after %d attempts, want 4", calls)
	}
}

func TestDeliverRetryingStopsAtClose(t *testing.T) {
	f := newTestFake(webhooks{what: "test webhook", attempts: 10, backoff: time.Hour, acked: is200})
	calls := 0
	result := make(chan bool, 1)
	f.mu.Lock()
	f.goLocked(func() {
		result <- f.deliverRetrying(zerolog.Nop(), func() (int, []byte, error) {
			calls++
			return 503, nil, nil
		})
	})
	f.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	f.close()
	if ok := <-result; ok || calls != 1 {
		t.Fatalf("after close: acknowledged %v after %d attempts, want false after 1", ok, calls)
	}
}

func TestFakePostAndInject(t *testing.T) {
	type request struct{ method, contentType, sig, body string }
	requests := make(chan request, 8)
	var status atomic.Int32
	status.Store(fasthttp.StatusOK)
	url := serve(t, func(ctx *fasthttp.RequestCtx) {
		requests <- request{
			method:      string(ctx.Method()),
			contentType: string(ctx.Request.Header.ContentType()),
			sig:         string(ctx.Request.Header.Peek("X-Test-Signature")),
			body:        string(ctx.PostBody()),
		}
		ctx.SetStatusCode(int(status.Load()))
		ctx.SetBodyString("answer")
	}) + "/hook"

	f := newTestFake(webhooks{agent: "test-agent", timeout: 5 * time.Second, acked: is200})
	defer f.close()
	sign := func(h *fasthttp.RequestHeader) { h.Set("X-Test-Signature", "sig") }
	st, body, err := f.postTo(context.Background(), url, "application/json", []byte(`{"a":1}`), sign)
	if err != nil || st != 200 || string(body) != "answer" {
		t.Fatalf("postTo = %d %q %v", st, body, err)
	}
	if got := <-requests; got != (request{"POST", "application/json", "sig", `{"a":1}`}) {
		t.Fatalf("server got %+v", got)
	}

	post := func() (int, []byte, error) {
		return f.postTo(context.Background(), url, "text/plain", []byte("hi"), nil)
	}
	if id, err := f.inject("id-1", "test webhook", post); id != "id-1" || err != nil {
		t.Fatalf("inject = %q, %v", id, err)
	}
	status.Store(fasthttp.StatusAccepted)
	id, err := f.inject("id-2", "test webhook", post)
	var we *WebhookError
	if id != "id-2" || !errors.As(err, &we) || we.StatusCode != 202 || string(we.Body) != "answer" {
		t.Fatalf("inject of an unacknowledged message = %q, %v", id, err)
	}
	failing := func() (int, []byte, error) { return 0, nil, errors.New("refused") }
	if id, err := f.inject("id-3", "test webhook", failing); id != "id-3" || err == nil || err.Error() != "sandbox: test webhook: refused" {
		t.Fatalf("inject that could not post = %q, %v", id, err)
	}

	// A context deadline earlier than the timeout wins.
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, _, err := f.postTo(ctx, url, "text/plain", nil, nil); !errors.Is(err, fasthttp.ErrTimeout) {
		t.Fatalf("postTo past the deadline: %v", err)
	}

	f.close()
	if id, err := f.inject("id-4", "test webhook", post); id != "" || !errors.Is(err, ErrClosed) {
		t.Fatalf("inject after close = %q, %v", id, err)
	}
}

func TestBasicAuthorized(t *testing.T) {
	for _, tt := range []struct {
		header     string
		user, pass string
		want       bool
	}{
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("u:p")), "u", "p", true},
		{"basic  " + base64.StdEncoding.EncodeToString([]byte("u:p")), "u", "p", true},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("u:x")), "u", "p", false},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("x:p")), "u", "p", false},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("up")), "u", "p", false},
		{"Basic !!!", "u", "p", false},
		{"Bearer u:p", "u", "p", false},
		{"", "u", "p", false},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte(":")), "", "", false},
	} {
		var ctx fasthttp.RequestCtx
		if tt.header != "" {
			ctx.Request.Header.Set(fasthttp.HeaderAuthorization, tt.header)
		}
		if got := basicAuthorized(&ctx, tt.user, tt.pass); got != tt.want {
			t.Errorf("basicAuthorized(%q, %q, %q) = %v, want %v", tt.header, tt.user, tt.pass, got, tt.want)
		}
	}
}

func TestCheckInbound(t *testing.T) {
	if num, err := checkInbound("+91 98111-00001", "A Contact", "hello", 10); err != nil || num != "919811100001" {
		t.Fatalf("checkInbound = %q, %v", num, err)
	}
	for _, tt := range []struct{ from, name, text string }{
		{"12", "", "hi"},
		{"+91 98111 00001 x", "", "hi"},
		{"+919811100001", "", "  "},
		{"+919811100001", "", "\xff"},
		{"+919811100001", "\xff", "hi"},
		{"+919811100001", "", "01234567890"},
	} {
		if _, err := checkInbound(tt.from, tt.name, tt.text, 10); !errors.Is(err, ErrInvalidInbound) {
			t.Errorf("checkInbound(%q, %q, %q) = %v, want ErrInvalidInbound", tt.from, tt.name, tt.text, err)
		}
	}
}
