package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/actors/msg"
	"urva/transport/whatsapp"
)

const (
	testSecret  = "app-secret"
	testToken   = "access-token"
	testPhoneID = "100000000000001"
	testDisplay = "919800000001"
	testContact = "+919811100001"
)

// serve runs h on 127.0.0.1:0 until the test ends and returns its base URL.
func serve(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// delivery is one webhook the receiver got, and how it answered.
type delivery struct {
	n        *whatsapp.Notification
	answered int
}

// receiver plays the server's POST /webhooks/whatsapp: it checks the
// signature, parses the body and answers as answer says for the n-th request.
type receiver struct {
	url  string
	got  chan delivery
	errs chan error

	mu     sync.Mutex
	count  int
	answer func(n int) (int, string)
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{got: make(chan delivery, 256), errs: make(chan error, 16)}
	r.url = serve(t, r.handle) + "/webhooks/whatsapp"
	t.Cleanup(func() {
		select {
		case err := <-r.errs:
			t.Errorf("receiver: %v", err)
		default:
		}
	})
	return r
}

func (r *receiver) setAnswer(f func(n int) (int, string)) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *receiver) handle(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != "/webhooks/whatsapp" || !ctx.IsPost() {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	body := append([]byte(nil), ctx.PostBody()...)
	if err := whatsapp.VerifySignature(testSecret, body, string(ctx.Request.Header.Peek(whatsapp.SignatureHeader))); err != nil {
		r.errs <- err
		ctx.SetStatusCode(fasthttp.StatusUnauthorized)
		return
	}
	n, err := whatsapp.Parse(body)
	if err != nil {
		r.errs <- err
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.count++
	status, answer := fasthttp.StatusOK, "ok"
	if r.answer != nil {
		status, answer = r.answer(r.count)
	}
	r.mu.Unlock()
	r.got <- delivery{n: n, answered: status}
	ctx.SetStatusCode(status)
	ctx.SetBodyString(answer)
}

// next waits for the next webhook.
func (r *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-r.got:
		return d
	case err := <-r.errs:
		t.Fatalf("receiver: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook within 10s")
	}
	return delivery{}
}

// only returns the single inbound item of a webhook.
func only(t *testing.T, d delivery) actors.Inbound {
	t.Helper()
	in := d.n.Inbound()
	if len(in) != 1 {
		t.Fatalf("webhook carries %d items, want 1", len(in))
	}
	k := in[0].Key
	if k.Channel != "whatsapp" || k.BusinessNumber != "+"+testDisplay || k.ContactPhone != testContact {
		t.Fatalf("key = %+v", k)
	}
	return in[0]
}

type fixture struct {
	fake   *WhatsApp
	rcv    *receiver
	base   string // the fake's server
	client *whatsapp.Client
}

func newFixture(t *testing.T, o WhatsAppOptions) *fixture {
	t.Helper()
	f := &fixture{rcv: newReceiver(t)}
	o.AppSecret, o.AccessToken, o.PhoneNumberID, o.DisplayNumber = testSecret, testToken, testPhoneID, testDisplay
	o.WebhookURL = f.rcv.url
	f.fake = NewWhatsApp(o)
	t.Cleanup(f.fake.Close)
	f.base = serve(t, func(ctx *fasthttp.RequestCtx) {
		switch p := string(ctx.Path()); {
		case strings.HasPrefix(p, "/sandbox/graph/"):
			f.fake.HandleAPI(ctx)
		case p == "/sandbox/whatsapp/inbound":
			f.fake.HandleInbound(ctx)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	})
	f.client = f.newClient(t, testToken)
	return f
}

func (f *fixture) newClient(t *testing.T, token string) *whatsapp.Client {
	c := whatsapp.NewClient(whatsapp.ClientOptions{
		APIBase: f.base + "/sandbox/graph/v23.0", PhoneNumberID: testPhoneID, AccessToken: token, Timeout: 5 * time.Second,
	})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func textReq(text string) *msg.ProviderSend {
	return &msg.ProviderSend{
		MessageId: 1,
		Key:       &msg.ConversationKey{Channel: "whatsapp", BusinessNumber: "+" + testDisplay, ContactPhone: testContact},
		Text:      text,
	}
}

func TestSendAndStatusWebhooks(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond, AutoRead: true})
	sub, cancel := f.fake.Subscribe()
	defer cancel()

	wamid, err := f.client.Send(context.Background(), textReq("Hello Meera"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !strings.HasPrefix(wamid, "wamid.") || len(wamid) < 20 {
		t.Fatalf("wamid = %q", wamid)
	}
	m := <-sub
	if m.To != testContact || m.Type != "text" || m.Text != "Hello Meera" || m.WAMID != wamid || m.At.IsZero() {
		t.Fatalf("subscription got %+v", m)
	}
	if sent := f.fake.Sent(); len(sent) != 1 || sent[0] != m {
		t.Fatalf("Sent() = %+v", sent)
	}

	for _, want := range []string{"sent", "delivered", "read"} {
		d := f.rcv.next(t)
		st := only(t, d).Status
		if st == nil || st.ProviderMessageID != wamid || st.Status != want || st.At.IsZero() || st.Error != nil {
			t.Fatalf("status = %+v, want %s of %s", st, want, wamid)
		}
		s := d.n.Entries[0].Changes[0].Value.Statuses[0]
		if want == "sent" && (s.Conversation == nil || s.Conversation.ExpirationTimestamp == "" || s.Pricing == nil || s.Pricing.Category != "service") {
			t.Errorf("sent status without billing details: %s", s.Raw)
		}
		if e := d.n.Entries[0]; e.ID == "" || e.Changes[0].Value.Metadata.PhoneNumberID != testPhoneID {
			t.Errorf("entry = %+v", e)
		}
	}
}

func TestStatusesWithoutAutoRead(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond})
	wamid, err := f.client.Send(context.Background(), textReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sent", "delivered"} {
		if st := only(t, f.rcv.next(t)).Status; st.Status != want || st.ProviderMessageID != wamid {
			t.Fatalf("status = %+v, want %s", st, want)
		}
	}
	f.fake.Close() // waits for the status goroutine: nothing more may come
	select {
	case d := <-f.rcv.got:
		t.Fatalf("unexpected webhook %+v", d.n.Inbound()[0].Status)
	default:
	}
}

func TestSendTemplate(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond})
	req := textReq("")
	req.Template = &msg.Template{Name: "followup", Language: "en", Params: []string{"Meera", "Friday"}}
	wamid, err := f.client.Send(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	sent := f.fake.Sent()
	if len(sent) != 1 || sent[0].Type != "template" || sent[0].WAMID != wamid || sent[0].Template == nil {
		t.Fatalf("Sent() = %+v", sent)
	}
	if tp := sent[0].Template; tp.Name != "followup" || tp.Language != "en" || strings.Join(tp.Params, ",") != "Meera,Friday" {
		t.Fatalf("template = %+v", tp)
	}
	if st := only(t, f.rcv.next(t)).Status; st.Status != "sent" {
		t.Fatalf("status = %+v", st)
	}
}

func TestWrongTokenAlerts(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond})
	_, err := f.newClient(t, "stolen").Send(context.Background(), textReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || se.Code != "190" || !se.Alert || se.Retry {
		t.Fatalf("Send error = %#v, want code 190 with Alert", err)
	}
	if len(f.fake.Sent()) != 0 {
		t.Fatal("a refused send was recorded")
	}
}

func TestWrongPhoneNumberID(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{})
	c := whatsapp.NewClient(whatsapp.ClientOptions{APIBase: f.base + "/sandbox/graph/v23.0", PhoneNumberID: "999", AccessToken: testToken})
	defer c.CloseIdleConnections()
	_, err := c.Send(context.Background(), textReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || se.Code != "100" || se.Retry || se.Alert || !strings.Contains(se.Title, "'999' does not exist") {
		t.Fatalf("Send error = %#v", err)
	}
}

func TestFailNextThenRetrySucceeds(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond})
	f.fake.FailNext(1, 500, 131000, "Something went wrong")
	f.fake.FailNext(2, 429, 130429, "Rate limit hit")

	for i, want := range []struct{ code, title string }{
		{"131000", "Something went wrong"},
		{"130429", "Rate limit hit"},
		{"130429", "Rate limit hit"},
	} {
		_, err := f.client.Send(context.Background(), textReq("hi"))
		var se *actors.SendError
		if !errors.As(err, &se) || se.Code != want.code || !se.Retry || se.Title != want.title {
			t.Fatalf("attempt %d: Send error = %#v, want retryable %s", i+1, err, want.code)
		}
	}
	wamid, err := f.client.Send(context.Background(), textReq("hi"))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if sent := f.fake.Sent(); len(sent) != 1 || sent[0].WAMID != wamid {
		t.Fatalf("Sent() = %+v", sent)
	}
	if st := only(t, f.rcv.next(t)).Status; st.ProviderMessageID != wamid || st.Status != "sent" {
		t.Fatalf("status = %+v", st)
	}

	f.fake.FailNext(1, 400, 131026, "Message undeliverable")
	_, err = f.client.Send(context.Background(), textReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || se.Code != "131026" || se.Retry {
		t.Fatalf("Send error = %#v, want final 131026", err)
	}
}

func TestAPIChecksRequests(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Hour})
	url := f.base + "/sandbox/graph/v23.0/" + testPhoneID + "/messages"
	long := strings.Repeat("é", 4097)
	tests := []struct {
		name, method, url, auth, body string
		status, code                  int
	}{
		{"text", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"text","text":{"body":"hi"}}`, 200, 0},
		{"type defaults to text", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"+919811100001","text":{"body":"hi"}}`, 200, 0},
		{"longest text", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"text","text":{"body":"` + long[2:] + `"}}`, 200, 0},
		{"text too long", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"text","text":{"body":"` + long + `"}}`, 400, 100},
		{"mark read", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","status":"read","message_id":"wamid.X"}`, 200, 0},
		{"token in query", "POST", url + "?access_token=" + testToken, "", `{"messaging_product":"whatsapp","to":"919811100001","text":{"body":"hi"}}`, 200, 0},
		{"no token", "POST", url, "", `{}`, 401, 190},
		{"wrong token", "POST", url, "Bearer nope", `{}`, 401, 190},
		{"wrong phone number id", "POST", f.base + "/sandbox/graph/v23.0/1/messages", "Bearer " + testToken, `{}`, 400, 100},
		{"wrong edge", "POST", f.base + "/sandbox/graph/v23.0/" + testPhoneID + "/media", "Bearer " + testToken, `{}`, 400, 100},
		{"GET", "GET", url, "Bearer " + testToken, ``, 400, 100},
		{"not JSON", "POST", url, "Bearer " + testToken, `{`, 400, 100},
		{"no messaging_product", "POST", url, "Bearer " + testToken, `{"to":"919811100001","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"wrong messaging_product", "POST", url, "Bearer " + testToken, `{"messaging_product":"sms","to":"919811100001","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"no to", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"to not digits", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"meera","type":"text","text":{"body":"hi"}}`, 400, 100},
		{"empty body", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"text","text":{"body":""}}`, 400, 100},
		{"no text", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"text"}`, 400, 100},
		{"template without language", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"template","template":{"name":"followup"}}`, 400, 100},
		{"template without name", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"template","template":{"language":{"code":"en"}}}`, 400, 100},
		{"image", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","to":"919811100001","type":"image","image":{"id":"1"}}`, 400, 100},
		{"group recipient", "POST", url, "Bearer " + testToken, `{"messaging_product":"whatsapp","recipient_type":"group","to":"919811100001","text":{"body":"hi"}}`, 400, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(tt.url)
			req.Header.SetMethod(tt.method)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			req.SetBodyString(tt.body)
			if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode(), tt.status, resp.Body())
			}
			if tt.status == 200 {
				return
			}
			var e struct {
				Error struct {
					Message   string `json:"message"`
					Type      string `json:"type"`
					Code      int    `json:"code"`
					FBTraceID string `json:"fbtrace_id"`
				} `json:"error"`
			}
			if err := json.Unmarshal(resp.Body(), &e); err != nil || e.Error.Code != tt.code || e.Error.Message == "" || e.Error.FBTraceID == "" {
				t.Fatalf("error body %s (%v), want Meta's error with code %d", resp.Body(), err, tt.code)
			}
		})
	}
}

func TestWebhookRedelivery(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond, WebhookBackoff: time.Millisecond})
	f.rcv.setAnswer(func(n int) (int, string) {
		if n <= 2 {
			return 500, "database down"
		}
		return 200, "ok"
	})
	wamid, err := f.client.Send(context.Background(), textReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		status   string
		answered int
	}{{"sent", 500}, {"sent", 500}, {"sent", 200}, {"delivered", 200}} {
		d := f.rcv.next(t)
		if st := only(t, d).Status; st.Status != want.status || st.ProviderMessageID != wamid || d.answered != want.answered {
			t.Fatalf("got %s answered %d, want %s answered %d", st.Status, d.answered, want.status, want.answered)
		}
	}
}

func TestWebhookGivesUp(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Millisecond, WebhookBackoff: time.Millisecond, WebhookAttempts: 3})
	f.rcv.setAnswer(func(int) (int, string) { return 503, "busy" })
	if _, err := f.client.Send(context.Background(), textReq("hi")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sent", "sent", "sent", "delivered", "delivered", "delivered"} {
		if st := only(t, f.rcv.next(t)).Status; st.Status != want {
			t.Fatalf("got %s, want %s", st.Status, want)
		}
	}
	f.fake.Close()
	select {
	case d := <-f.rcv.got:
		t.Fatalf("webhook after giving up: %+v", d.n.Inbound()[0].Status)
	default:
	}
}

func postInbound(t *testing.T, base, method, body string) (int, map[string]any) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(base + "/sandbox/whatsapp/inbound")
	req.Header.SetMethod(method)
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(resp.Body(), &out); err != nil {
		t.Fatalf("answer %s is not JSON: %v", resp.Body(), err)
	}
	return resp.StatusCode(), out
}

func TestInboundInjection(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{})
	status, out := postInbound(t, f.base, "POST", `{"from":"+919811100001","name":"Meera Iyer","text":"Hello <there> & you"}`)
	if status != 200 {
		t.Fatalf("status = %d, answer %v", status, out)
	}
	wamid, _ := out["id"].(string)
	if !strings.HasPrefix(wamid, "wamid.") {
		t.Fatalf("answer = %v", out)
	}
	d := f.rcv.next(t)
	in := only(t, d)
	m := in.Message
	if m == nil || m.ProviderMessageID != wamid || m.Type != "text" || m.Text != "Hello <there> & you" || m.Direction != "in" || m.ProviderTimestamp.IsZero() {
		t.Fatalf("message = %+v", m)
	}
	if in.ContactName != "Meera Iyer" {
		t.Fatalf("contact name = %q", in.ContactName)
	}
	v := d.n.Entries[0].Changes[0].Value
	if v.Metadata.PhoneNumberID != testPhoneID || v.Messages[0].From != "919811100001" || v.Contacts[0].WaID != "919811100001" {
		t.Fatalf("value = %+v", v)
	}

	// Without '+', through the Go API.
	id2, err := f.fake.InjectInbound(context.Background(), "919811100001", "Meera Iyer", "again")
	if err != nil || id2 == wamid || !strings.HasPrefix(id2, "wamid.") {
		t.Fatalf("InjectInbound = %q, %v", id2, err)
	}
	if m := only(t, f.rcv.next(t)).Message; m.ProviderMessageID != id2 || m.Text != "again" {
		t.Fatalf("message = %+v", m)
	}

	// The server refuses: the phone reports its answer.
	f.rcv.setAnswer(func(int) (int, string) { return 503, "database unavailable" })
	status, out = postInbound(t, f.base, "POST", `{"from":"919811100001","name":"Meera","text":"are you there?"}`)
	if status != 502 || out["status"] != float64(503) || out["body"] != "database unavailable" {
		t.Fatalf("status = %d, answer %v; want 502 with the server's 503", status, out)
	}
	if d := f.rcv.next(t); d.answered != 503 {
		t.Fatalf("receiver answered %d", d.answered)
	}
	_, err = f.fake.InjectInbound(context.Background(), "+919811100001", "", "x")
	var we *WebhookError
	if !errors.As(err, &we) || we.StatusCode != 503 || string(we.Body) != "database unavailable" {
		t.Fatalf("InjectInbound error = %v, want a WebhookError 503", err)
	}
	f.rcv.next(t)

	for name, body := range map[string]string{
		"not JSON":     `{`,
		"no from":      `{"text":"hi"}`,
		"letters":      `{"from":"meera","text":"hi"}`,
		"short number": `{"from":"+91","text":"hi"}`,
		"no text":      `{"from":"+919811100001","text":"  "}`,
		"long text":    `{"from":"+919811100001","text":"` + strings.Repeat("a", 4097) + `"}`,
	} {
		if status, out := postInbound(t, f.base, "POST", body); status != 400 || out["error"] == "" {
			t.Errorf("%s: status = %d, answer %v; want 400", name, status, out)
		}
	}
	if status, _ := postInbound(t, f.base, "GET", ``); status != 405 {
		t.Errorf("GET: status = %d, want 405", status)
	}
	select {
	case d := <-f.rcv.got:
		t.Fatalf("bad input reached the server: %+v", d)
	default:
	}
}

func TestInjectInboundUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/webhooks/whatsapp"
	ln.Close()
	fake := NewWhatsApp(WhatsAppOptions{AppSecret: testSecret, AccessToken: testToken, PhoneNumberID: testPhoneID, DisplayNumber: testDisplay, WebhookURL: url})
	defer fake.Close()
	_, err = fake.InjectInbound(context.Background(), testContact, "Meera", "hi")
	var we *WebhookError
	if err == nil || errors.As(err, &we) || errors.Is(err, ErrInvalidInbound) {
		t.Fatalf("InjectInbound error = %v, want a network error", err)
	}
}

func TestCloseStopsPendingWork(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Hour})
	sub, cancel := f.fake.Subscribe()
	if _, err := f.client.Send(context.Background(), textReq("hi")); err != nil {
		t.Fatal(err)
	}
	<-sub
	f.fake.Close() // must not wait for the hour-long status delay
	f.fake.Close()
	if _, ok := <-sub; ok {
		t.Fatal("subscription still open after Close")
	}
	cancel() // after Close: harmless

	_, err := f.client.Send(context.Background(), textReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || !se.Retry {
		t.Fatalf("Send after Close = %#v, want a retryable error", err)
	}
	if _, err := f.fake.InjectInbound(context.Background(), testContact, "", "hi"); !errors.Is(err, ErrClosed) {
		t.Fatalf("InjectInbound after Close = %v, want ErrClosed", err)
	}
	late, _ := f.fake.Subscribe()
	if _, ok := <-late; ok {
		t.Fatal("subscription after Close is open")
	}
	select {
	case d := <-f.rcv.got:
		t.Fatalf("webhook after Close: %+v", d)
	default:
	}
}

func TestSubscribeCancel(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Hour})
	a, cancelA := f.fake.Subscribe()
	b, cancelB := f.fake.Subscribe()
	defer cancelB()
	cancelA()
	cancelA()
	if _, ok := <-a; ok {
		t.Fatal("cancelled subscription open")
	}
	if _, err := f.client.Send(context.Background(), textReq("hi")); err != nil {
		t.Fatal(err)
	}
	if m := <-b; m.Text != "hi" {
		t.Fatalf("got %+v", m)
	}
}

func TestConcurrentSendsGetUniqueIDs(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{StatusDelay: time.Hour})
	const n = 50
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			id, err := f.client.Send(context.Background(), textReq("hi"))
			if err != nil {
				t.Error(err)
			}
			ids <- id
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("duplicate wamid %s", id)
		}
		seen[id] = true
	}
	if len(f.fake.Sent()) != n {
		t.Fatalf("Sent() = %d, want %d", len(f.fake.Sent()), n)
	}
}
