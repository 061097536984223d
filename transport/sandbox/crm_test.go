package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/transport/crm"
)

const crmTestSecret = "urva-sandbox-crm-secret"

// crmFixture is a fake CRM served on 127.0.0.1 and a webhook client that
// delivers to it.
type crmFixture struct {
	crm  *CRM
	base string
	hook *crm.Webhook
}

func newCRMFixture(t *testing.T) *crmFixture {
	t.Helper()
	c := NewCRM(CRMOptions{Secret: crmTestSecret})
	t.Cleanup(c.Close)
	base := serve(t, func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/sandbox/crm/webhook":
			c.Handle(ctx)
		case "/sandbox/crm/events":
			c.HandleList(ctx)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	})
	return &crmFixture{crm: c, base: base, hook: newCRMHook(t, base, crmTestSecret, nil)}
}

func newCRMHook(t *testing.T, base, secret string, clock func() time.Time) *crm.Webhook {
	t.Helper()
	h := crm.NewWebhook(crm.WebhookOptions{URL: base + "/sandbox/crm/webhook", Secret: secret, Timeout: 5 * time.Second, Clock: clock})
	t.Cleanup(h.CloseIdleConnections)
	return h
}

func crmEvent(id string, conversation int64) crm.Delivery {
	return crm.Delivery{
		EventID:    id,
		Type:       "message.received",
		OccurredAt: time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC),
		Data:       json.RawMessage(fmt.Sprintf(`{"conversation":{"id":%d},"message":{"id":11,"text":"hello"}}`, conversation)),
	}
}

// deliveryError asserts err is a *crm.DeliveryError with status.
func deliveryError(t *testing.T, err error, status int, retryable bool) *crm.DeliveryError {
	t.Helper()
	var de *crm.DeliveryError
	if !errors.As(err, &de) {
		t.Fatalf("Deliver = %v, want a *crm.DeliveryError", err)
	}
	if de.Status != status || de.Retryable != retryable {
		t.Fatalf("Deliver = %+v, want status %d retryable %v", *de, status, retryable)
	}
	return de
}

// rawPost sends a request to the fake CRM as is and returns the answer.
func rawPost(t *testing.T, url string, headers map[string]string, body []byte) (int, string) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.SetBody(body)
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode(), string(resp.Body())
}

// signed returns the headers of a correctly signed delivery of body.
func signed(id string, body []byte) map[string]string {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return map[string]string{
		crm.HeaderEventID:   id,
		crm.HeaderTimestamp: ts,
		crm.HeaderSignature: crm.Sign(crmTestSecret, ts, body),
	}
}

func TestCRMDeliveredAndRecorded(t *testing.T) {
	f := newCRMFixture(t)
	events, cancel := f.crm.Subscribe()
	defer cancel()

	d := crmEvent("evt_1", 42)
	if err := f.hook.Deliver(context.Background(), d); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := <-events
	if got.ID != "evt_1" || got.Type != d.Type || !got.OccurredAt.Equal(d.OccurredAt) ||
		string(got.Data) != string(d.Data) || got.Attempts != 1 || got.ReceivedAt.IsZero() {
		t.Fatalf("recorded %+v", got)
	}

	// A redelivery is acknowledged, counted, and not recorded again.
	if err := f.hook.Deliver(context.Background(), d); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	select {
	case e := <-events:
		t.Fatalf("duplicate published: %+v", e)
	default:
	}
	if n := f.crm.Duplicates(); n != 1 {
		t.Fatalf("Duplicates = %d, want 1", n)
	}
	if err := f.hook.Deliver(context.Background(), crmEvent("evt_2", 43)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	<-events
	rec := f.crm.Received()
	if len(rec) != 2 || rec[0].ID != "evt_1" || rec[0].Attempts != 2 || rec[1].ID != "evt_2" || rec[1].Attempts != 1 {
		t.Fatalf("Received = %+v", rec)
	}

	// GET /sandbox/crm/events lists them, newest last.
	status, body, err := fasthttp.Get(nil, f.base+"/sandbox/crm/events")
	if err != nil || status != fasthttp.StatusOK {
		t.Fatalf("GET events: %d %v", status, err)
	}
	var list struct {
		Events []struct {
			ID         string          `json:"id"`
			Type       string          `json:"type"`
			OccurredAt time.Time       `json:"occurred_at"`
			Data       json.RawMessage `json:"data"`
			Attempts   int             `json:"attempts"`
		} `json:"events"`
		Duplicates int `json:"duplicates"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatalf("events body %s: %v", body, err)
	}
	if len(list.Events) != 2 || list.Events[0].ID != "evt_1" || list.Events[1].ID != "evt_2" ||
		list.Events[0].Attempts != 2 || string(list.Events[1].Data) != string(crmEvent("evt_2", 43).Data) ||
		!list.Events[0].OccurredAt.Equal(d.OccurredAt) || list.Duplicates != 1 {
		t.Fatalf("events list %s", body)
	}
}

func TestCRMEmptyList(t *testing.T) {
	f := newCRMFixture(t)
	status, body, err := fasthttp.Get(nil, f.base+"/sandbox/crm/events")
	if err != nil || status != fasthttp.StatusOK || string(body) != `{"events":[],"duplicates":0}` {
		t.Fatalf("GET events: %d %s %v", status, body, err)
	}
}

func TestCRMBadSignature(t *testing.T) {
	f := newCRMFixture(t)
	err := newCRMHook(t, f.base, "wrong-secret", nil).Deliver(context.Background(), crmEvent("evt_1", 1))
	de := deliveryError(t, err, fasthttp.StatusUnauthorized, false)
	if de.Body == "" {
		t.Error("401 without an explanation")
	}

	// A correctly signed but stale delivery is refused too.
	old := func() time.Time { return time.Now().Add(-time.Hour) }
	err = newCRMHook(t, f.base, crmTestSecret, old).Deliver(context.Background(), crmEvent("evt_2", 1))
	deliveryError(t, err, fasthttp.StatusUnauthorized, false)

	// Unsigned.
	body := crm.Body(crmEvent("evt_3", 1))
	if status, _ := rawPost(t, f.base+"/sandbox/crm/webhook", map[string]string{crm.HeaderEventID: "evt_3"}, body); status != fasthttp.StatusUnauthorized {
		t.Fatalf("unsigned: %d", status)
	}
	if n := len(f.crm.Received()); n != 0 {
		t.Fatalf("%d events recorded", n)
	}
}

func TestCRMBadBody(t *testing.T) {
	f := newCRMFixture(t)
	url := f.base + "/sandbox/crm/webhook"
	for _, tc := range []struct{ name, id, body string }{
		{"not JSON", "evt_1", `{"id":`},
		{"no id", "", `{"type":"message.sent","occurred_at":"2025-03-04T05:06:07Z","data":{}}`},
		{"no type", "evt_1", `{"id":"evt_1","occurred_at":"2025-03-04T05:06:07Z","data":{}}`},
		{"no occurred_at", "evt_1", `{"id":"evt_1","type":"message.sent","data":{}}`},
		{"bad occurred_at", "evt_1", `{"id":"evt_1","type":"message.sent","occurred_at":"yesterday","data":{}}`},
		{"no data", "evt_1", `{"id":"evt_1","type":"message.sent","occurred_at":"2025-03-04T05:06:07Z"}`},
		{"data not an object", "evt_1", `{"id":"evt_1","type":"message.sent","occurred_at":"2025-03-04T05:06:07Z","data":[1]}`},
		{"header id differs", "evt_2", `{"id":"evt_1","type":"message.sent","occurred_at":"2025-03-04T05:06:07Z","data":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, answer := rawPost(t, url, signed(tc.id, []byte(tc.body)), []byte(tc.body))
			if status != fasthttp.StatusBadRequest {
				t.Fatalf("answered %d %s, want 400", status, answer)
			}
		})
	}
	if n := len(f.crm.Received()); n != 0 {
		t.Fatalf("%d events recorded", n)
	}

	// The same checks accept a well-formed body.
	body := `{"id":"evt_ok","type":"message.sent","occurred_at":"2025-03-04T05:06:07Z","data":{}}`
	if status, answer := rawPost(t, url, signed("evt_ok", []byte(body)), []byte(body)); status != fasthttp.StatusOK || answer != `{"ok":true}` {
		t.Fatalf("well-formed body answered %d %s", status, answer)
	}
}

func TestCRMFailWith(t *testing.T) {
	f := newCRMFixture(t)
	f.crm.FailWith(fasthttp.StatusServiceUnavailable)
	d := crmEvent("evt_1", 5)
	for range 2 {
		err := f.hook.Deliver(context.Background(), d)
		deliveryError(t, err, fasthttp.StatusServiceUnavailable, true)
	}
	if n := len(f.crm.Received()); n != 0 {
		t.Fatalf("%d events recorded while failing", n)
	}

	f.crm.FailWith(fasthttp.StatusBadRequest)
	deliveryError(t, f.hook.Deliver(context.Background(), d), fasthttp.StatusBadRequest, false)

	f.crm.FailWith(0)
	if err := f.hook.Deliver(context.Background(), d); err != nil {
		t.Fatalf("Deliver after recovery: %v", err)
	}
	rec := f.crm.Received()
	if len(rec) != 1 || rec[0].ID != "evt_1" || rec[0].Attempts != 4 {
		t.Fatalf("Received = %+v, want evt_1 after 4 attempts", rec)
	}
	if n := f.crm.Duplicates(); n != 0 {
		t.Fatalf("Duplicates = %d", n)
	}
}

func TestCRMFailForOneConversation(t *testing.T) {
	f := newCRMFixture(t)
	f.crm.FailFor(7, fasthttp.StatusInternalServerError)

	deliveryError(t, f.hook.Deliver(context.Background(), crmEvent("evt_7a", 7)), fasthttp.StatusInternalServerError, true)
	if err := f.hook.Deliver(context.Background(), crmEvent("evt_8a", 8)); err != nil {
		t.Fatalf("other conversation: %v", err)
	}
	noConv := crm.Delivery{EventID: "evt_none", Type: "call.completed", OccurredAt: time.Now(), Data: json.RawMessage(`{"call":{"id":3}}`)}
	if err := f.hook.Deliver(context.Background(), noConv); err != nil {
		t.Fatalf("event of no conversation: %v", err)
	}
	// A conversation id written as a string matches too.
	strConv := crmEvent("evt_7b", 0)
	strConv.Data = json.RawMessage(`{"conversation":{"id":"7"}}`)
	deliveryError(t, f.hook.Deliver(context.Background(), strConv), fasthttp.StatusInternalServerError, true)

	// A failing conversation does not hold back a failure-free CRM.
	f.crm.FailFor(7, 0)
	if err := f.hook.Deliver(context.Background(), crmEvent("evt_7a", 7)); err != nil {
		t.Fatalf("after FailFor cleared: %v", err)
	}
	var ids []string
	for _, e := range f.crm.Received() {
		ids = append(ids, fmt.Sprintf("%s/%d", e.ID, e.Attempts))
	}
	if fmt.Sprint(ids) != "[evt_8a/1 evt_none/1 evt_7a/2]" {
		t.Fatalf("recorded %v", ids)
	}

	// FailWith overrides FailFor.
	f.crm.FailFor(8, fasthttp.StatusConflict)
	f.crm.FailWith(fasthttp.StatusBadGateway)
	deliveryError(t, f.hook.Deliver(context.Background(), crmEvent("evt_8b", 8)), fasthttp.StatusBadGateway, true)
	f.crm.FailWith(0)
	deliveryError(t, f.hook.Deliver(context.Background(), crmEvent("evt_8b", 8)), fasthttp.StatusConflict, false)
}

func TestCRMDuplicateWhileFailing(t *testing.T) {
	f := newCRMFixture(t)
	d := crmEvent("evt_1", 9)
	if err := f.hook.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f.crm.FailWith(fasthttp.StatusServiceUnavailable)
	deliveryError(t, f.hook.Deliver(context.Background(), d), fasthttp.StatusServiceUnavailable, true)
	f.crm.FailWith(0)
	if err := f.hook.Deliver(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	rec := f.crm.Received()
	if len(rec) != 1 || rec[0].Attempts != 3 || f.crm.Duplicates() != 1 {
		t.Fatalf("Received = %+v, duplicates %d", rec, f.crm.Duplicates())
	}
}

func TestCRMMethods(t *testing.T) {
	f := newCRMFixture(t)
	status, _, err := fasthttp.Get(nil, f.base+"/sandbox/crm/webhook")
	if err != nil || status != fasthttp.StatusMethodNotAllowed {
		t.Fatalf("GET webhook: %d %v", status, err)
	}
	if status, _ := rawPost(t, f.base+"/sandbox/crm/events", nil, nil); status != fasthttp.StatusMethodNotAllowed {
		t.Fatalf("POST events: %d", status)
	}
}

func TestCRMSubscribeAndClose(t *testing.T) {
	f := newCRMFixture(t)
	a, cancelA := f.crm.Subscribe()
	b, cancelB := f.crm.Subscribe()
	defer cancelB()
	cancelA()
	cancelA() // idempotent
	if _, ok := <-a; ok {
		t.Fatal("cancelled subscription still open")
	}
	if err := f.hook.Deliver(context.Background(), crmEvent("evt_1", 1)); err != nil {
		t.Fatal(err)
	}
	if e := <-b; e.ID != "evt_1" {
		t.Fatalf("got %+v", e)
	}

	f.crm.Close()
	if _, ok := <-b; ok {
		t.Fatal("subscription open after Close")
	}
	if c, _ := f.crm.Subscribe(); func() bool { _, ok := <-c; return ok }() {
		t.Fatal("Subscribe after Close returned an open channel")
	}
	deliveryError(t, f.hook.Deliver(context.Background(), crmEvent("evt_2", 1)), fasthttp.StatusServiceUnavailable, true)
}
