package sandbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/actors/msg"
	"urva/persistence"
	"urva/transport/twilio"
)

const (
	twAccount = "AC00000000000000000000000000000000"
	twToken   = "urva-sandbox-sms-auth-token"
	twNumber  = "+919800000001"
)

var twSIDPattern = regexp.MustCompile(`^SM[0-9a-f]{32}$`)

// twHook is one form the receiver got, and how it answered.
type twHook struct {
	path, query string
	params      map[string][]string
	answered    int
}

// twReceiver plays the server's POST /webhooks/sms and /webhooks/sms/status:
// it verifies the signature against its public URL as the server does,
// parses the form and answers as answer says for the n-th request.
type twReceiver struct {
	base string
	got  chan twHook
	errs chan error

	mu     sync.Mutex
	public string
	count  int
	answer func(n int) (int, string)
}

func newTwReceiver(t *testing.T) *twReceiver {
	t.Helper()
	r := &twReceiver{got: make(chan twHook, 256), errs: make(chan error, 16)}
	r.base = serve(t, r.handle)
	r.public = r.base
	t.Cleanup(func() {
		select {
		case err := <-r.errs:
			t.Errorf("receiver: %v", err)
		default:
		}
	})
	return r
}

func (r *twReceiver) setPublic(u string) {
	r.mu.Lock()
	r.public = u
	r.mu.Unlock()
}

func (r *twReceiver) setAnswer(f func(n int) (int, string)) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *twReceiver) handle(ctx *fasthttp.RequestCtx) {
	path := string(ctx.Path())
	if !ctx.IsPost() || (path != "/webhooks/sms" && path != "/webhooks/sms/status") {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	if ct := string(ctx.Request.Header.ContentType()); ct != "application/x-www-form-urlencoded" {
		r.errs <- errors.New("content type " + ct)
	}
	params, err := twilio.ParseForm(ctx.PostBody())
	if err != nil {
		r.errs <- err
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		return
	}
	query := string(ctx.URI().QueryString())
	r.mu.Lock()
	public := r.public
	r.mu.Unlock()
	if err := twilio.VerifyRequest(twToken, public, path, query, params, string(ctx.Request.Header.Peek(twilio.SignatureHeader))); err != nil {
		r.errs <- err
		ctx.SetStatusCode(fasthttp.StatusForbidden)
		return
	}
	r.mu.Lock()
	r.count++
	status, answer := fasthttp.StatusOK, ""
	if r.answer != nil {
		status, answer = r.answer(r.count)
	}
	r.mu.Unlock()
	r.got <- twHook{path: path, query: query, params: params, answered: status}
	ctx.SetStatusCode(status)
	if path == "/webhooks/sms" && status == fasthttp.StatusOK && answer == "" {
		ctx.SetContentType("text/xml")
		answer = twilio.EmptyResponse
	}
	ctx.SetBodyString(answer)
}

// next waits for the next form.
func (r *twReceiver) next(t *testing.T) twHook {
	t.Helper()
	select {
	case h := <-r.got:
		return h
	case err := <-r.errs:
		t.Fatalf("receiver: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no callback within 10s")
	}
	return twHook{}
}

// status parses a status callback the receiver got.
func (h twHook) status(t *testing.T) *twilio.StatusCallback {
	t.Helper()
	if h.path != "/webhooks/sms/status" {
		t.Fatalf("got a POST to %s, want a status callback", h.path)
	}
	s, err := twilio.ParseStatus(h.params)
	if err != nil {
		t.Fatalf("ParseStatus: %v", err)
	}
	return s
}

type twFixture struct {
	fake   *Twilio
	rcv    *twReceiver
	base   string // the fake's server
	public string // the server's public URL the fake signs for
	client *twilio.Client
}

// newTwFixture runs the fake against a receiver. With public empty the
// receiver's own URL is the public URL.
func newTwFixture(t *testing.T, o TwilioOptions, public string) *twFixture {
	t.Helper()
	f := &twFixture{rcv: newTwReceiver(t), public: public}
	if f.public == "" {
		f.public = f.rcv.base
	}
	f.rcv.setPublic(f.public)
	o.AccountSID, o.AuthToken, o.Number = twAccount, twToken, twNumber
	o.InboundURL, o.PublicURL = f.rcv.base+"/webhooks/sms", f.public
	f.fake = NewTwilio(o)
	t.Cleanup(f.fake.Close)
	f.base = serve(t, func(ctx *fasthttp.RequestCtx) {
		switch p := string(ctx.Path()); {
		case strings.HasPrefix(p, "/sandbox/twilio/"):
			f.fake.HandleAPI(ctx)
		case p == "/sandbox/sms/inbound":
			f.fake.HandleInbound(ctx)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	})
	f.client = f.newClient(t, twAccount, twToken)
	return f
}

func (f *twFixture) newClient(t *testing.T, account, token string) *twilio.Client {
	c := twilio.NewClient(twilio.ClientOptions{
		APIBase: f.base + "/sandbox/twilio", AccountSID: account, AuthToken: token, From: twNumber,
		StatusCallback: f.public + "/webhooks/sms/status", Timeout: 5 * time.Second,
	})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func smsReq(text string) *msg.ProviderSend {
	return &msg.ProviderSend{
		MessageId: 1,
		Key:       &msg.ConversationKey{Channel: "sms", BusinessNumber: twNumber, ContactPhone: testContact},
		Text:      text,
	}
}

func TestTwilioSendAndSignedStatusCallbacks(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond}, "")
	sub, cancel := f.fake.Subscribe()
	defer cancel()

	sid, err := f.client.Send(context.Background(), smsReq("Hello Meera, your loan is approved"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !twSIDPattern.MatchString(sid) {
		t.Fatalf("sid = %q", sid)
	}
	m := <-sub
	if m.To != testContact || m.From != twNumber || m.Body != "Hello Meera, your loan is approved" || m.SID != sid ||
		m.NumSegments != 1 || m.StatusCallback != f.public+"/webhooks/sms/status" || m.At.IsZero() {
		t.Fatalf("subscription got %+v", m)
	}
	if sent := f.fake.Sent(); len(sent) != 1 || sent[0] != m {
		t.Fatalf("Sent() = %+v", sent)
	}

	for _, want := range []string{"sent", "delivered"} {
		h := f.rcv.next(t)
		s := h.status(t)
		if !s.Relevant() || s.Status() != want || s.MessageSid != sid || s.AccountSid != twAccount {
			t.Fatalf("callback = %+v, want %s of %s", s, want, sid)
		}
		for _, p := range []string{"MessageSid", "MessageStatus", "To", "From", "AccountSid", "SmsSid", "SmsStatus", "ApiVersion"} {
			if len(h.params[p]) != 1 || h.params[p][0] == "" {
				t.Errorf("%s callback without %s: %v", want, p, h.params)
			}
		}
		in := s.Inbound()
		if in.Key != (persistence.ConversationKey{Channel: "sms", BusinessNumber: twNumber, ContactPhone: testContact}) {
			t.Fatalf("key = %+v", in.Key)
		}
		if st := in.Status; st.ProviderMessageID != sid || st.Status != want || st.Error != nil || !json.Valid(st.Raw) {
			t.Fatalf("status = %+v", st)
		}
	}
	f.fake.Close() // waits for the callbacks: nothing more may come
	select {
	case h := <-f.rcv.got:
		t.Fatalf("unexpected callback %v", h.params)
	default:
	}
}

func TestTwilioBehindPublicURL(t *testing.T) {
	// The server's public URL is a name the fake cannot reach; it signs for
	// it and posts to the server directly, as a proxy would forward.
	const public = "https://urva.example.com"
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond}, public)
	c := twilio.NewClient(twilio.ClientOptions{
		APIBase: f.base + "/sandbox/twilio/", AccountSID: twAccount, AuthToken: twToken, From: twNumber,
		StatusCallback: public + "/webhooks/sms/status?tenant=7&x=a%20b",
	})
	defer c.CloseIdleConnections()
	sid, err := c.Send(context.Background(), smsReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sent", "delivered"} {
		h := f.rcv.next(t)
		if s := h.status(t); s.Status() != want || s.MessageSid != sid {
			t.Fatalf("callback %+v, want %s", s, want)
		}
		if h.query != "tenant=7&x=a%20b" {
			t.Fatalf("query = %q", h.query)
		}
	}
	// Inbound messages too; the server may know itself with the explicit port.
	f.rcv.setPublic(public + ":443")
	if _, err := f.fake.InjectInbound(context.Background(), testContact, "hello"); err != nil {
		t.Fatal(err)
	}
	if h := f.rcv.next(t); h.path != "/webhooks/sms" {
		t.Fatalf("path = %s", h.path)
	}
}

func TestTwilioWrongCredentialsAlert(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond}, "")
	for name, c := range map[string]*twilio.Client{
		"wrong token":   f.newClient(t, twAccount, "stolen"),
		"wrong account": f.newClient(t, "AC11111111111111111111111111111111", twToken),
	} {
		_, err := c.Send(context.Background(), smsReq("hi"))
		var se *actors.SendError
		if !errors.As(err, &se) || se.Code != "20003" || !se.Alert || se.Retry {
			t.Fatalf("%s: Send error = %#v, want code 20003 with Alert", name, err)
		}
	}
	if len(f.fake.Sent()) != 0 {
		t.Fatal("a refused send was recorded")
	}
}

func TestTwilioFailNextThenSuccess(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond}, "")
	f.fake.FailNext(1, 500, 20500, "Internal Server Error")
	f.fake.FailNext(1, 429, 20429, "Too Many Requests")

	for i, want := range []string{"20500", "20429"} {
		_, err := f.client.Send(context.Background(), smsReq("hi"))
		var se *actors.SendError
		if !errors.As(err, &se) || se.Code != want || !se.Retry || se.Alert {
			t.Fatalf("attempt %d: Send error = %#v, want retryable %s", i+1, err, want)
		}
	}
	sid, err := f.client.Send(context.Background(), smsReq("hi"))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if sent := f.fake.Sent(); len(sent) != 1 || sent[0].SID != sid {
		t.Fatalf("Sent() = %+v", sent)
	}
	if s := f.rcv.next(t).status(t); s.MessageSid != sid || s.Status() != "sent" {
		t.Fatalf("callback = %+v", s)
	}

	f.fake.FailNext(1, 400, 21610, "Attempt to send to unsubscribed recipient")
	_, err = f.client.Send(context.Background(), smsReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || se.Code != "21610" || se.Retry || se.Alert || !strings.Contains(se.Title, "unsubscribed") {
		t.Fatalf("Send error = %#v, want final 21610", err)
	}
}

func TestTwilioAPIChecksRequests(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Hour}, "")
	api := f.base + "/sandbox/twilio/2010-04-01/Accounts/" + twAccount + "/Messages.json"
	auth := "Basic " + encodeBasic(twAccount, twToken)
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	longest := strings.Repeat("न", 1600)
	tests := []struct {
		name, method, url, auth, body string
		status, code                  int
	}{
		{"text", "POST", api, auth, form("To", testContact, "From", twNumber, "Body", "hi"), 201, 0},
		{"formatted numbers", "POST", api, auth, form("To", "+91 98111 00001", "From", "+91-98000-00001", "Body", "hi"), 201, 0},
		{"longest body", "POST", api, auth, form("To", testContact, "From", twNumber, "Body", longest), 201, 0},
		{"status callback", "POST", api, auth, form("To", testContact, "From", twNumber, "Body", "hi", "StatusCallback", "https://x.example/cb"), 201, 0},
		{"no auth", "POST", api, "", form("To", testContact, "From", twNumber, "Body", "hi"), 401, 20003},
		{"wrong password", "POST", api, "Basic " + encodeBasic(twAccount, "nope"), form(), 401, 20003},
		{"bearer", "POST", api, "Bearer " + twToken, form(), 401, 20003},
		{"other account in path", "POST", strings.Replace(api, twAccount, "AC1", 1), auth, form(), 404, 20404},
		{"other resource", "POST", f.base + "/sandbox/twilio/2010-04-01/Accounts/" + twAccount + "/Calls.json", auth, form(), 404, 20404},
		{"other version", "POST", strings.Replace(api, "2010-04-01", "2008-08-01", 1), auth, form(), 404, 20404},
		{"GET", "GET", api, auth, ``, 405, 20004},
		{"bad encoding", "POST", api, auth, `To=%zz`, 400, 21100},
		{"no To", "POST", api, auth, form("From", twNumber, "Body", "hi"), 400, 21604},
		{"bad To", "POST", api, auth, form("To", "meera", "From", twNumber, "Body", "hi"), 400, 21211},
		{"short To", "POST", api, auth, form("To", "+91", "From", twNumber, "Body", "hi"), 400, 21211},
		{"no From", "POST", api, auth, form("To", testContact, "Body", "hi"), 400, 21603},
		{"other From", "POST", api, auth, form("To", testContact, "From", "+14155550100", "Body", "hi"), 400, 21606},
		{"unknown messaging service", "POST", api, auth, form("To", testContact, "MessagingServiceSid", "MG1", "Body", "hi"), 400, 21705},
		{"no Body", "POST", api, auth, form("To", testContact, "From", twNumber), 400, 21602},
		{"empty Body", "POST", api, auth, form("To", testContact, "From", twNumber, "Body", ""), 400, 21602},
		{"Body too long", "POST", api, auth, form("To", testContact, "From", twNumber, "Body", longest+"a"), 400, 21617},
		{"bad status callback", "POST", api, auth, form("To", testContact, "From", twNumber, "Body", "hi", "StatusCallback", "ftp://x"), 400, 21609},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(tt.url)
			req.Header.SetMethod(tt.method)
			req.Header.SetContentType("application/x-www-form-urlencoded")
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
			if tt.status == 201 {
				var m map[string]any
				if err := json.Unmarshal(resp.Body(), &m); err != nil {
					t.Fatal(err)
				}
				sid, _ := m["sid"].(string)
				if !twSIDPattern.MatchString(sid) || m["status"] != "queued" || m["to"] != testContact || m["from"] != twNumber ||
					m["error_code"] != nil || m["account_sid"] != twAccount || m["num_segments"] == "" || m["direction"] != "outbound-api" {
					t.Fatalf("answer = %s", resp.Body())
				}
				if _, ok := m["body"].(string); !ok {
					t.Fatalf("answer without body: %s", resp.Body())
				}
				return
			}
			var e struct {
				Code     int    `json:"code"`
				Message  string `json:"message"`
				MoreInfo string `json:"more_info"`
				Status   int    `json:"status"`
			}
			if err := json.Unmarshal(resp.Body(), &e); err != nil || e.Code != tt.code || e.Message == "" ||
				e.Status != tt.status || !strings.HasSuffix(e.MoreInfo, "/"+strconv.Itoa(tt.code)) {
				t.Fatalf("error body %s (%v), want Twilio's error with code %d", resp.Body(), err, tt.code)
			}
		})
	}
	sent := f.fake.Sent()
	if len(sent) != 4 || sent[1].To != testContact || sent[1].From != twNumber || sent[2].NumSegments != 24 || sent[3].StatusCallback != "https://x.example/cb" {
		t.Fatalf("Sent() = %+v", sent)
	}
}

func encodeBasic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

func postSMSInbound(t *testing.T, base, method, body string) (int, map[string]any) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(base + "/sandbox/sms/inbound")
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

func TestTwilioInboundInjection(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{}, "")
	// Devanagari and an emoji: UCS-2, 142 code units, three segments.
	text := strings.Repeat("नमस्ते ", 20) + "🙏"
	if twilio.Segments(text) != 3 {
		t.Fatalf("test text is %d segments", twilio.Segments(text))
	}
	in, _ := json.Marshal(map[string]string{"from": testContact, "text": text})
	status, out := postSMSInbound(t, f.base, "POST", string(in))
	if status != 200 {
		t.Fatalf("status = %d, answer %v", status, out)
	}
	sid, _ := out["sid"].(string)
	if !twSIDPattern.MatchString(sid) {
		t.Fatalf("answer = %v", out)
	}
	h := f.rcv.next(t) // the receiver verified the signature
	if h.path != "/webhooks/sms" || h.query != "" {
		t.Fatalf("posted to %s?%s", h.path, h.query)
	}
	for name, want := range map[string]string{
		"MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": twAccount, "From": testContact, "To": twNumber,
		"Body": text, "NumMedia": "0", "NumSegments": "3", "FromCountry": "IN", "ToCountry": "IN", "ApiVersion": "2010-04-01",
		"SmsStatus": "received", "FromCity": "",
	} {
		if got := h.params[name]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if svc := h.params["MessagingServiceSid"]; len(svc) != 1 || !strings.HasPrefix(svc[0], "MG") {
		t.Errorf("MessagingServiceSid = %q", svc)
	}
	m, err := twilio.ParseInbound(h.params)
	if err != nil {
		t.Fatal(err)
	}
	got := m.Inbound()
	if got.Key != (persistence.ConversationKey{Channel: "sms", BusinessNumber: twNumber, ContactPhone: testContact}) {
		t.Fatalf("key = %+v", got.Key)
	}
	if pm := got.Message; pm.Text != text || pm.ProviderMessageID != sid || pm.Type != "text" || pm.Direction != "in" || m.NumSegments != 3 {
		t.Fatalf("message = %+v", pm)
	}

	// Through the Go API, GSM-7 over two segments, a number without '+'.
	long := strings.Repeat("Loan EMI due on 5th. ", 10)
	sid2, err := f.fake.InjectInbound(context.Background(), "919811100001", long)
	if err != nil || sid2 == sid || !twSIDPattern.MatchString(sid2) {
		t.Fatalf("InjectInbound = %q, %v", sid2, err)
	}
	h = f.rcv.next(t)
	if h.params["Body"][0] != long || h.params["NumSegments"][0] != "2" || h.params["From"][0] != testContact {
		t.Fatalf("params = %v", h.params)
	}

	// The server refuses: the phone reports its answer.
	f.rcv.setAnswer(func(int) (int, string) { return 503, "database unavailable" })
	status, out = postSMSInbound(t, f.base, "POST", `{"from":"+919811100001","text":"are you there?"}`)
	if status != 502 || out["status"] != float64(503) || out["body"] != "database unavailable" || out["sid"] == "" {
		t.Fatalf("status = %d, answer %v; want 502 with the server's 503", status, out)
	}
	if h := f.rcv.next(t); h.answered != 503 {
		t.Fatalf("receiver answered %d", h.answered)
	}
	_, err = f.fake.InjectInbound(context.Background(), testContact, "x")
	var we *WebhookError
	if !errors.As(err, &we) || we.StatusCode != 503 || string(we.Body) != "database unavailable" {
		t.Fatalf("InjectInbound error = %v, want a WebhookError 503", err)
	}
	f.rcv.next(t)
	f.rcv.setAnswer(func(int) (int, string) { return 204, "" })
	if _, err := f.fake.InjectInbound(context.Background(), testContact, "x"); err != nil {
		t.Fatalf("204: %v", err)
	}
	f.rcv.next(t)

	for name, body := range map[string]string{
		"not JSON":     `{`,
		"no from":      `{"text":"hi"}`,
		"letters":      `{"from":"meera","text":"hi"}`,
		"short number": `{"from":"+91","text":"hi"}`,
		"no text":      `{"from":"+919811100001","text":"  "}`,
		"long text":    `{"from":"+919811100001","text":"` + strings.Repeat("a", 1601) + `"}`,
	} {
		if status, out := postSMSInbound(t, f.base, "POST", body); status != 400 || out["error"] == "" {
			t.Errorf("%s: status = %d, answer %v; want 400", name, status, out)
		}
	}
	if status, _ := postSMSInbound(t, f.base, "GET", ``); status != 405 {
		t.Errorf("GET: status = %d, want 405", status)
	}
	select {
	case h := <-f.rcv.got:
		t.Fatalf("bad input reached the server: %v", h.params)
	default:
	}
}

func TestTwilioInjectInboundUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String() + "/webhooks/sms"
	ln.Close()
	fake := NewTwilio(TwilioOptions{AccountSID: twAccount, AuthToken: twToken, Number: twNumber, InboundURL: u})
	defer fake.Close()
	_, err = fake.InjectInbound(context.Background(), testContact, "hi")
	var we *WebhookError
	if err == nil || errors.As(err, &we) || errors.Is(err, ErrInvalidInbound) {
		t.Fatalf("InjectInbound error = %v, want a network error", err)
	}
}

func TestTwilioCallbackRedelivery(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond, CallbackBackoff: time.Millisecond}, "")
	f.rcv.setAnswer(func(n int) (int, string) {
		if n <= 2 {
			return 500, "database down"
		}
		return 200, ""
	})
	sid, err := f.client.Send(context.Background(), smsReq("hi"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		status   string
		answered int
	}{{"sent", 500}, {"sent", 500}, {"sent", 200}, {"delivered", 200}} {
		h := f.rcv.next(t)
		if s := h.status(t); s.Status() != want.status || s.MessageSid != sid || h.answered != want.answered {
			t.Fatalf("got %s answered %d, want %s answered %d", s.Status(), h.answered, want.status, want.answered)
		}
	}
}

func TestTwilioCallbackGivesUp(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond, CallbackBackoff: time.Millisecond, CallbackAttempts: 2}, "")
	f.rcv.setAnswer(func(int) (int, string) { return 503, "busy" })
	if _, err := f.client.Send(context.Background(), smsReq("hi")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sent", "sent", "delivered", "delivered"} {
		if s := f.rcv.next(t).status(t); s.Status() != want {
			t.Fatalf("got %s, want %s", s.Status(), want)
		}
	}
	f.fake.Close()
	select {
	case h := <-f.rcv.got:
		t.Fatalf("callback after giving up: %v", h.params)
	default:
	}
}

func TestTwilioNoStatusCallback(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Millisecond}, "")
	c := twilio.NewClient(twilio.ClientOptions{APIBase: f.base + "/sandbox/twilio", AccountSID: twAccount, AuthToken: twToken, From: twNumber})
	defer c.CloseIdleConnections()
	if _, err := c.Send(context.Background(), smsReq("hi")); err != nil {
		t.Fatal(err)
	}
	f.fake.Close() // would wait for callbacks, had any been started
	select {
	case h := <-f.rcv.got:
		t.Fatalf("callback without StatusCallback: %v", h.params)
	default:
	}
	if s := f.fake.Sent(); len(s) != 1 || s[0].StatusCallback != "" {
		t.Fatalf("Sent() = %+v", s)
	}
}

func TestTwilioCloseStopsPendingWork(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Hour}, "")
	sub, cancel := f.fake.Subscribe()
	if _, err := f.client.Send(context.Background(), smsReq("hi")); err != nil {
		t.Fatal(err)
	}
	<-sub
	f.fake.Close() // must not wait for the hour-long status delay
	f.fake.Close()
	if _, ok := <-sub; ok {
		t.Fatal("subscription still open after Close")
	}
	cancel() // after Close: harmless

	_, err := f.client.Send(context.Background(), smsReq("hi"))
	var se *actors.SendError
	if !errors.As(err, &se) || !se.Retry {
		t.Fatalf("Send after Close = %#v, want a retryable error", err)
	}
	if _, err := f.fake.InjectInbound(context.Background(), testContact, "hi"); !errors.Is(err, ErrClosed) {
		t.Fatalf("InjectInbound after Close = %v, want ErrClosed", err)
	}
	late, _ := f.fake.Subscribe()
	if _, ok := <-late; ok {
		t.Fatal("subscription after Close is open")
	}
	select {
	case h := <-f.rcv.got:
		t.Fatalf("callback after Close: %v", h.params)
	default:
	}
}

func TestTwilioConcurrentSendsGetUniqueSIDs(t *testing.T) {
	f := newTwFixture(t, TwilioOptions{StatusDelay: time.Hour}, "")
	const n = 50
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			id, err := f.client.Send(context.Background(), smsReq("hi"))
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
			t.Fatalf("duplicate sid %s", id)
		}
		seen[id] = true
	}
	if len(f.fake.Sent()) != n {
		t.Fatalf("Sent() = %d, want %d", len(f.fake.Sent()), n)
	}
}

func TestTwilioCountry(t *testing.T) {
	for in, want := range map[string]string{
		"+919811100001": "IN", "+14155550100": "US", "+971501234567": "AE", "+447700900123": "GB", "+999123456": "", "": "",
	} {
		if got := twilioCountry(in); got != want {
			t.Errorf("twilioCountry(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTwilioPublicURLMapping(t *testing.T) {
	tests := []struct {
		public, inbound        string
		wantSign               string
		callback, wantCallback string
	}{
		{"", "http://127.0.0.1:8080/webhooks/sms", "http://127.0.0.1:8080/webhooks/sms",
			"https://urva.example.com/webhooks/sms/status", "https://urva.example.com/webhooks/sms/status"},
		{"https://urva.example.com", "http://127.0.0.1:8080/webhooks/sms", "https://urva.example.com/webhooks/sms",
			"https://urva.example.com/webhooks/sms/status?a=1", "http://127.0.0.1:8080/webhooks/sms/status?a=1"},
		{"https://example.com/urva/", "http://127.0.0.1:8080/webhooks/sms", "https://example.com/urva/webhooks/sms",
			"https://example.com/urva/webhooks/sms/status", "http://127.0.0.1:8080/webhooks/sms/status"},
		{"https://example.com/urva", "https://example.com/urva/webhooks/sms", "https://example.com/urva/webhooks/sms",
			"https://example.com/urva/webhooks/sms/status", "https://example.com/urva/webhooks/sms/status"},
		{"https://urva.example.com", "http://127.0.0.1:8080/webhooks/sms", "https://urva.example.com/webhooks/sms",
			"https://urva.example.community/cb", "https://urva.example.community/cb"},
		{"https://urva.example.com", "http://127.0.0.1:8080/webhooks/sms", "https://urva.example.com/webhooks/sms",
			"http://elsewhere/cb", "http://elsewhere/cb"},
	}
	for _, tt := range tests {
		tw := NewTwilio(TwilioOptions{PublicURL: tt.public, InboundURL: tt.inbound})
		if got := tw.inboundSignURL(); got != tt.wantSign {
			t.Errorf("public %q, inbound %q: signs inbound over %q, want %q", tt.public, tt.inbound, got, tt.wantSign)
		}
		if got := tw.target(tt.callback); got != tt.wantCallback {
			t.Errorf("public %q, inbound %q: posts %q to %q, want %q", tt.public, tt.inbound, tt.callback, got, tt.wantCallback)
		}
		tw.Close()
	}
}
