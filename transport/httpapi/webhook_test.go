package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"urva/actors"
)

func TestWhatsAppVerification(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token="+testVerifyToken+"&hub.challenge=1158201444", nil)
	if r.status != 200 || string(r.body) != "1158201444" {
		t.Fatalf("right token: %d %q", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	for _, q := range []string{
		"hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
		"hub.mode=unsubscribe&hub.verify_token=" + testVerifyToken + "&hub.challenge=1",
		"",
	} {
		r := e.do("GET", "/webhooks/whatsapp?"+q, nil)
		if r.status != 403 || r.errorText(t) == "" {
			t.Fatalf("%q: %d %q", q, r.status, r.body)
		}
	}
}

func TestWebhookSignatureRejected(t *testing.T) {
	e := newEnv(t, nil)
	cases := map[string]string{
		"missing":     "",
		"wrong":       sign("other-secret", []byte(notification)),
		"not hex":     "sha256=zz",
		"wrong body":  sign(testAppSecret, []byte(notification+" ")),
		"wrong shape": "md5=abc",
	}
	for name, sig := range cases {
		t.Run(name, func(t *testing.T) {
			headers := []string{"Content-Type", "application/json"}
			if sig != "" {
				headers = append(headers, "X-Hub-Signature-256", sig)
			}
			r := e.do("POST", "/webhooks/whatsapp", strings.NewReader(notification), headers...)
			if r.status != 401 || r.errorText(t) == "" {
				t.Fatalf("%d %q", r.status, r.body)
			}
		})
	}
	if n := e.actors.ingestCount(); n != 0 {
		t.Fatalf("ingest called %d times", n)
	}
	if n := e.store.logCount(); n != 0 {
		t.Fatalf("webhook logged %d times", n)
	}
}

func TestWebhookMalformed(t *testing.T) {
	e := newEnv(t, nil)
	for _, body := range []string{"not json", `{"object":"page","entry":[]}`, `{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"id":"x"}]}}]}]}`} {
		r := e.webhook(body)
		if r.status != 400 || r.errorText(t) == "" {
			t.Fatalf("%q: %d %q", body, r.status, r.body)
		}
	}
	if e.actors.ingestCount() != 0 || e.store.logCount() != 0 {
		t.Fatal("malformed webhook reached ingest or log")
	}
}

// twoMessages is notification with a second message: a webhook of two items.
var twoMessages = strings.Replace(notification, `"text":{"body":"Hello"}}]`,
	`"text":{"body":"Hello"}},{"from":"919811100001","id":"wamid.EXAMPLE2","timestamp":"1767225601","type":"text","text":{"body":"Again"}}]`, 1)

// TestWebhookAckAfterCommit: a webhook of one message is answered only once
// the message's write returned; the write carries the raw log row (stored
// with the message, its outcome set there), so nothing is logged apart and
// no outcome is updated afterwards.
func TestWebhookAckAfterCommit(t *testing.T) {
	e := newEnv(t, nil)
	ingestEntered := make(chan struct{})
	release := make(chan struct{})
	ingestReturned := make(chan struct{})
	e.actors.setIngest(func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
		close(ingestEntered)
		<-release
		defer close(ingestReturned)
		return []actors.IngestResult{{MessageID: 1, LogID: 7}}, nil
	})
	respCh := e.webhookAsync(notification)
	e.ingestEntered(respCh, ingestEntered)
	res := e.answerOnRelease(respCh, release, ingestReturned)
	if res.err != nil || res.r.status != 200 || !strings.Contains(string(res.r.body), `"processed"`) {
		t.Fatalf("%+v", res)
	}
	items := e.actors.ingestedItems()[0]
	if len(items) != 1 || items[0].Message == nil || items[0].Message.ProviderMessageID != "wamid.EXAMPLE1" {
		t.Fatalf("ingested %+v", items)
	}
	l := items[0].Log
	if l == nil || l.Provider != "whatsapp" || l.Path != "/webhooks/whatsapp" || string(l.Body) != notification ||
		!strings.Contains(string(l.Headers), sign(testAppSecret, []byte(notification))) {
		t.Fatalf("log carried by the item: %+v", l)
	}
	if logs := e.store.logged(); len(logs) != 0 {
		t.Fatalf("logged apart: %+v", logs)
	}
	if got := e.store.outcome(7); got != "" {
		t.Fatalf("outcome updated: %q", got)
	}
}

// ingestEntered waits until the fake ingest was entered, the webhook not
// answered yet.
func (e *env) ingestEntered(respCh <-chan asyncResult, entered <-chan struct{}) {
	e.t.Helper()
	select {
	case <-entered:
	case res := <-respCh:
		e.t.Fatalf("answered before ingest: %+v", res)
	case <-time.After(guard):
		e.t.Fatal("ingest never called")
	}
}

// answerOnRelease checks that the webhook is not answered while the fake
// ingest is held, releases it and returns the answer, which must come after
// ingest returned.
func (e *env) answerOnRelease(respCh <-chan asyncResult, release, returned chan struct{}) asyncResult {
	e.t.Helper()
	select {
	case res := <-respCh:
		e.t.Fatalf("answered while ingest was blocked: %+v", res)
	default:
	}
	close(release)
	res := e.await(respCh)
	select {
	case <-returned:
	default:
		e.t.Fatal("answered before ingest returned")
	}
	return res
}

// TestWebhookItemsLogConcurrently: a webhook of several items logs its raw
// row while they are ingested (both run at once), and is answered once
// both committed; the row's outcome follows.
func TestWebhookItemsLogConcurrently(t *testing.T) {
	e := newEnv(t, nil)
	ingestEntered := make(chan struct{})
	logEntered := make(chan struct{})
	release := make(chan struct{})
	ingestReturned := make(chan struct{})
	// Each fake waits for the other to have started: the test deadlocks
	// (and fails on the guard) unless both run concurrently.
	e.store.set(func(f *fakeStore) {
		f.logHook = func(ctx context.Context) {
			close(logEntered)
			select {
			case <-ingestEntered:
			case <-time.After(guard):
			}
		}
	})
	e.actors.setIngest(func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
		close(ingestEntered)
		select {
		case <-logEntered:
		case <-time.After(guard):
			return nil, errors.New("log not started concurrently")
		}
		<-release
		defer close(ingestReturned)
		return []actors.IngestResult{{MessageID: 1}, {MessageID: 2}}, nil
	})
	respCh := e.webhookAsync(twoMessages)
	e.ingestEntered(respCh, ingestEntered)
	select {
	case <-logEntered:
	case <-time.After(guard):
		t.Fatal("log never called")
	}
	res := e.answerOnRelease(respCh, release, ingestReturned)
	if res.err != nil || res.r.status != 200 {
		t.Fatalf("%+v", res)
	}
	if got := e.store.outcome(1); got != "processed" {
		t.Fatalf("outcome %q", got)
	}
	logs := e.store.logged()
	if len(logs) != 1 || logs[0].Provider != "whatsapp" || logs[0].Path != "/webhooks/whatsapp" ||
		string(logs[0].Body) != twoMessages || logs[0].Outcome != "received" ||
		!strings.Contains(string(logs[0].Headers), sign(testAppSecret, []byte(twoMessages))) {
		t.Fatalf("logged %+v", logs)
	}
	items := e.actors.ingestedItems()[0]
	if len(items) != 2 || items[0].Log != nil || items[1].Log != nil {
		t.Fatalf("ingested %+v", items)
	}
}

// TestWebhookIngestErrorIs503: a write that failed stored nothing; the raw
// row is logged apart with the failure.
func TestWebhookIngestErrorIs503(t *testing.T) {
	e := newEnv(t, nil)
	e.actors.setIngest(func(context.Context, []actors.Inbound) ([]actors.IngestResult, error) {
		return nil, fmt.Errorf("%w: database down", actors.ErrUnavailable)
	})
	r := e.webhook(notification)
	if r.status != 503 || r.errorText(t) == "" {
		t.Fatalf("%d %q", r.status, r.body)
	}
	logs := e.store.logged()
	if len(logs) != 1 || !strings.HasPrefix(logs[0].Outcome, "failed: ") || !strings.Contains(logs[0].Outcome, "database down") ||
		string(logs[0].Body) != notification {
		t.Fatalf("logged %+v", logs)
	}
}

func TestWebhookLogErrorIs503(t *testing.T) {
	e := newEnv(t, nil)
	e.store.set(func(f *fakeStore) { f.logErr = errors.New("disk full") })
	r := e.webhook(notification)
	if r.status != 503 {
		t.Fatalf("%d %q", r.status, r.body)
	}
}

// TestWebhookDuplicateOutcome: an item that needed no write (LogID 0: the
// store kept no row for it) is logged apart, with its outcome.
func TestWebhookDuplicateOutcome(t *testing.T) {
	e := newEnv(t, nil)
	e.actors.setIngest(func(_ context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
		return []actors.IngestResult{{Duplicate: true, MessageID: 5}}, nil
	})
	if r := e.webhook(notification); r.status != 200 || !strings.Contains(string(r.body), `"duplicate"`) {
		t.Fatalf("%d %q", r.status, r.body)
	}
	if logs := e.store.logged(); len(logs) != 1 || logs[0].Outcome != "duplicate" {
		t.Fatalf("logged %+v", logs)
	}
}

func TestBodyTooLarge(t *testing.T) {
	const limit = 1024
	e := newEnv(t, func(o *Options) { o.MaxBodyBytes = limit })
	for _, size := range []int{limit + 1, 300 << 10} {
		body := strings.Repeat("x", size)
		r := e.do("POST", "/webhooks/whatsapp", strings.NewReader(body),
			"X-Hub-Signature-256", sign(testAppSecret, []byte(body)))
		if r.status != 413 || !strings.Contains(r.errorText(t), "1024") {
			t.Fatalf("size %d: %d %q", size, r.status, r.body)
		}
	}
	// Chunked, length unknown up front.
	body := strings.Repeat("y", 200<<10)
	r := e.do("POST", "/api/login", io.MultiReader(strings.NewReader(body)))
	if r.status != 413 {
		t.Fatalf("chunked: %d %q", r.status, r.body)
	}
	// At the limit the body is read and handled.
	atLimit := strings.Repeat(" ", limit-len(notification)) + notification
	if r := e.webhook(atLimit); r.status != 200 {
		t.Fatalf("at limit: %d %q", r.status, r.body)
	}
	if e.store.logCount() != 1 || e.actors.ingestCount() != 1 {
		t.Fatal("oversized bodies reached the handlers")
	}
}

// TestBodyTooLargeRawConnection checks the 413 on a bare connection that
// declares a large body and keeps writing it.
func TestBodyTooLargeRawConnection(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxBodyBytes = 1024 })
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	const size = 512 << 10
	errCh := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(conn)
		fmt.Fprintf(w, "POST /webhooks/whatsapp HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", size)
		_, err := w.WriteString(strings.Repeat("z", size))
		if err == nil {
			err = w.Flush()
		}
		errCh <- err
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
	if err := <-errCh; err != nil {
		t.Fatalf("body write: %v", err)
	}
}
