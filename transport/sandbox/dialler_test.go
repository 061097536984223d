package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/transport/exotel"
)

const (
	dlAccount  = "urva-sandbox"
	dlKey      = "urva-sandbox-dialler-key"
	dlToken    = "urva-sandbox-dialler-token"
	dlCallerID = "+919800000001"
	dlContact  = "+919811100001"
	dlRM       = "+919822200002"
	dlHookPath = "/webhooks/dialler/urva-sandbox-dialler-callback"
)

var dlSidPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

// dlHook is one callback the receiver got, and how it answered.
type dlHook struct {
	contentType string
	cb          *exotel.Callback
	answered    int
}

// dlReceiver plays the server's POST /webhooks/dialler/<token>: it parses
// each callback as the server would and answers as answer says for the
// n-th request.
type dlReceiver struct {
	base string
	got  chan dlHook
	errs chan error

	mu     sync.Mutex
	count  int
	answer func(n int) int
}

func newDlReceiver(t *testing.T) *dlReceiver {
	t.Helper()
	r := &dlReceiver{got: make(chan dlHook, 64), errs: make(chan error, 16)}
	r.base = serve(t, r.handle)
	t.Cleanup(func() {
		select {
		case err := <-r.errs:
			t.Errorf("receiver: %v", err)
		default:
		}
	})
	return r
}

func (r *dlReceiver) setAnswer(f func(n int) int) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

func (r *dlReceiver) handle(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != dlHookPath || !ctx.IsPost() {
		r.errs <- errors.New("unexpected " + string(ctx.Method()) + " " + string(ctx.Path()))
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	ct := string(ctx.Request.Header.ContentType())
	cb, err := exotel.ParseCallback(ct, ctx.PostBody())
	if err != nil {
		r.errs <- err
		ctx.SetStatusCode(fasthttp.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.count++
	status := fasthttp.StatusOK
	if r.answer != nil {
		status = r.answer(r.count)
	}
	r.mu.Unlock()
	r.got <- dlHook{contentType: ct, cb: cb, answered: status}
	ctx.SetStatusCode(status)
}

// next waits for the next callback.
func (r *dlReceiver) next(t *testing.T) dlHook {
	t.Helper()
	select {
	case h := <-r.got:
		return h
	case err := <-r.errs:
		t.Fatalf("receiver: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no callback within 10s")
	}
	return dlHook{}
}

// none checks that no callback is waiting.
func (r *dlReceiver) none(t *testing.T) {
	t.Helper()
	select {
	case h := <-r.got:
		t.Fatalf("unexpected callback %+v", h.cb)
	default:
	}
}

type dlFixture struct {
	fake   *Dialler
	rcv    *dlReceiver
	base   string // the fake's server, also the public URL recordings are under
	client *exotel.Client
	events <-chan DiallerEvent
}

func newDlFixture(t *testing.T, o DiallerOptions) *dlFixture {
	t.Helper()
	f := &dlFixture{rcv: newDlReceiver(t)}
	var fake *Dialler
	f.base = serve(t, func(ctx *fasthttp.RequestCtx) {
		if strings.HasPrefix(string(ctx.Path()), DiallerPrefix+"/") {
			fake.HandleAPI(ctx)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	})
	o.AccountSID, o.APIKey, o.APIToken, o.CallerID = dlAccount, dlKey, dlToken, dlCallerID
	if o.PublicURL == "" {
		o.PublicURL = f.base
	}
	if o.RingDelay == 0 {
		o.RingDelay = 10 * time.Millisecond
	}
	if o.TalkTime == 0 {
		o.TalkTime = 10 * time.Millisecond
	}
	if o.CallbackBackoff == 0 {
		o.CallbackBackoff = time.Millisecond
	}
	fake = NewDialler(o)
	t.Cleanup(fake.Close)
	events, cancel := fake.Subscribe()
	t.Cleanup(cancel)
	f.fake, f.events = fake, events
	f.client = exotel.NewClient(exotel.ClientOptions{
		APIBase: f.base + DiallerPrefix, AccountSID: dlAccount, APIKey: dlKey, APIToken: dlToken, Timeout: 5 * time.Second,
	})
	t.Cleanup(f.client.CloseIdleConnections)
	return f
}

func (f *dlFixture) request(customField string) exotel.ConnectRequest {
	return exotel.ConnectRequest{
		From: dlContact, To: dlRM, CallerID: dlCallerID, Record: true, TimeLimit: 600, TimeOut: 30,
		CustomField: customField, StatusCallback: f.rcv.base + dlHookPath,
	}
}

// event waits for the next event of type typ, skipping others.
func (f *dlFixture) event(t *testing.T, typ string) DiallerEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-f.events:
			if !ok {
				t.Fatal("subscription closed")
			}
			if ev.Type == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s", typ)
		}
	}
}

func TestDiallerAnsweredCall(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{})
	before := time.Now().Truncate(time.Second)
	call, err := f.client.Connect(context.Background(), f.request("urva:call:1:a"))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if !dlSidPattern.MatchString(call.Sid) || call.Status != exotel.StatusInProgress || call.From != dlContact ||
		call.To != dlRM || call.CustomField != "urva:call:1:a" || call.DateCreated.Before(before) {
		t.Fatalf("call = %+v", call)
	}
	if ev := f.event(t, DiallerConnect); ev.Call.Sid != call.Sid || ev.Status != exotel.StatusInProgress {
		t.Fatalf("connect event = %+v", ev)
	}
	calls := f.fake.Calls()
	want := SandboxCall{
		Sid: call.Sid, From: dlContact, To: dlRM, CallerID: dlCallerID, CustomField: "urva:call:1:a", Record: true,
		TimeLimit: 600, TimeOut: 30, StatusCallback: f.rcv.base + dlHookPath,
		StatusCallbackContentType: "application/json", HTTPStatus: 200, At: calls[0].At,
	}
	if len(calls) != 1 || calls[0].At.IsZero() || strings.Join(calls[0].StatusCallbackEvents, ",") != "terminal,answered" {
		t.Fatalf("Calls() = %+v", calls)
	}
	calls[0].StatusCallbackEvents = nil
	if !reflect.DeepEqual(calls[0], want) {
		t.Fatalf("Calls()[0] = %+v\nwant %+v", calls[0], want)
	}

	h := f.rcv.next(t)
	a := h.cb
	if h.contentType != "application/json" || !a.Answered() || a.CallSid != call.Sid || a.Status != exotel.StatusInProgress ||
		a.CustomField != "urva:call:1:a" || a.From != dlContact || a.To != dlRM || a.PhoneNumberSid != dlCallerID ||
		a.RecordingURL != "" || !a.EndTime.IsZero() || a.StartTime.IsZero() || len(a.Legs) != 1 {
		t.Fatalf("answered callback (%s) = %+v", h.contentType, a)
	}
	if ev := f.event(t, DiallerAnswered); ev.Call.Sid != call.Sid || !ev.Delivered {
		t.Fatalf("answered event = %+v", ev)
	}

	term := f.rcv.next(t).cb
	recording := f.base + DiallerPrefix + "/recordings/" + call.Sid + ".wav"
	if !term.Terminal() || term.CallSid != call.Sid || term.Status != exotel.StatusCompleted || term.CustomField != "urva:call:1:a" ||
		term.RecordingURL != recording || term.ConversationDuration != 1 || term.Direction != exotel.DirectionOutboundAPI ||
		term.StartTime.IsZero() || term.EndTime.Before(term.StartTime) || term.DateUpdated.IsZero() || len(term.Legs) != 2 {
		t.Fatalf("terminal callback = %+v", term)
	}
	for i, l := range term.Legs {
		if l.Status != exotel.StatusCompleted || l.OnCallDuration < 1 || l.AnsweredBy == "" {
			t.Errorf("leg %d = %+v", i, l)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal(term.Raw, &raw); err != nil || raw["EventType"] != "terminal" {
		t.Fatalf("Raw = %s (%v)", term.Raw, err)
	}
	if ev := f.event(t, DiallerEnded); ev.Call.Sid != call.Sid || ev.Status != exotel.StatusCompleted || !ev.Delivered {
		t.Fatalf("ended event = %+v", ev)
	}
	f.rcv.none(t)

	// The recording is a WAV file.
	status, body := dlGet(t, recording)
	if status != 200 {
		t.Fatalf("GET recording: %d %s", status, body)
	}
	checkWAV(t, body)

	// The call's details show the final state.
	got, err := f.client.CallDetails(context.Background(), call.Sid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != exotel.StatusCompleted || got.RecordingURL != recording || got.ConversationDuration != 1 ||
		got.Duration < 1 || got.EndTime.IsZero() || got.CustomField != "urva:call:1:a" || len(got.Legs) != 2 ||
		got.Legs[0].Status != exotel.StatusCompleted || got.Legs[1].OnCallDuration != term.Legs[1].OnCallDuration {
		t.Fatalf("CallDetails = %+v", got)
	}
}

func dlGet(t *testing.T, uri string) (int, []byte) {
	t.Helper()
	status, body, err := fasthttp.GetTimeout(nil, uri, 5*time.Second)
	if err != nil {
		t.Fatalf("GET %s: %v", uri, err)
	}
	return status, body
}

// checkWAV checks a RIFF WAVE header of 8 kHz mono PCM16 and its sizes.
func checkWAV(t *testing.T, b []byte) {
	t.Helper()
	le := binary.LittleEndian
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" || string(b[12:16]) != "fmt " ||
		string(b[36:40]) != "data" {
		t.Fatalf("not a WAV header: % x", b[:min(len(b), 44)])
	}
	if int(le.Uint32(b[4:])) != len(b)-8 || le.Uint32(b[16:]) != 16 || le.Uint16(b[20:]) != 1 || le.Uint16(b[22:]) != 1 ||
		le.Uint32(b[24:]) != 8000 || le.Uint32(b[28:]) != 16000 || le.Uint16(b[32:]) != 2 || le.Uint16(b[34:]) != 16 ||
		int(le.Uint32(b[40:])) != len(b)-44 || len(b)-44 != 16000 {
		t.Fatalf("bad WAV header: % x (length %d)", b[:44], len(b))
	}
	// A tone, not silence: the samples swing both ways.
	var lo, hi int16
	for i := 44; i+1 < len(b); i += 2 {
		v := int16(le.Uint16(b[i:]))
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo > -5000 || hi < 5000 {
		t.Fatalf("samples between %d and %d", lo, hi)
	}
}

func TestToneWAV(t *testing.T) {
	checkWAV(t, ToneWAV(time.Second))
	if b := ToneWAV(0); len(b) != 46 {
		t.Fatalf("ToneWAV(0) is %d bytes", len(b))
	}
}

func TestDiallerUnansweredCalls(t *testing.T) {
	tests := []struct {
		name           string
		outcome        map[string]string
		status         string
		answered       bool
		legs           []string
		firstLegOnCall bool
	}{
		{"contact does not answer", map[string]string{dlContact: OutcomeNoAnswer}, exotel.StatusNoAnswer, false, []string{"no-answer"}, false},
		{"contact busy", map[string]string{dlContact: OutcomeBusy}, exotel.StatusBusy, false, []string{"busy"}, false},
		{"contact unreachable", map[string]string{dlContact: OutcomeFail}, exotel.StatusFailed, false, []string{"failed"}, false},
		{"RM busy", map[string]string{dlRM: OutcomeBusy}, exotel.StatusBusy, true, []string{"completed", "busy"}, true},
		{"RM does not answer", map[string]string{dlRM: "No_Answer"}, exotel.StatusNoAnswer, true, []string{"completed", "no-answer"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newDlFixture(t, DiallerOptions{Outcome: func(n string) string { return tt.outcome[n] }})
			call, err := f.client.Connect(context.Background(), f.request("urva:call:2"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.answered {
				if a := f.rcv.next(t).cb; !a.Answered() || a.CallSid != call.Sid {
					t.Fatalf("first callback = %+v, want answered", a)
				}
			}
			term := f.rcv.next(t).cb
			if !term.Terminal() || term.CallSid != call.Sid || term.Status != tt.status || term.RecordingURL != "" ||
				term.ConversationDuration != 0 || term.CustomField != "urva:call:2" || len(term.Legs) != len(tt.legs) {
				t.Fatalf("terminal callback = %+v", term)
			}
			for i, st := range tt.legs {
				if term.Legs[i].Status != st {
					t.Errorf("leg %d = %+v, want %s", i, term.Legs[i], st)
				}
			}
			if onCall := term.Legs[0].OnCallDuration > 0; onCall != tt.firstLegOnCall {
				t.Errorf("first leg on call %d s", term.Legs[0].OnCallDuration)
			}
			if ev := f.event(t, DiallerEnded); ev.Status != tt.status {
				t.Fatalf("ended event = %+v", ev)
			}
			f.rcv.none(t)
			if status, _ := dlGet(t, f.base+DiallerPrefix+"/recordings/"+call.Sid+".wav"); status != 404 {
				t.Fatalf("recording of an unconnected call: %d", status)
			}
		})
	}
}

func TestDiallerTimeOutAndTimeLimit(t *testing.T) {
	t.Run("TimeOut cuts the ringing", func(t *testing.T) {
		t.Parallel()
		f := newDlFixture(t, DiallerOptions{RingDelay: time.Hour})
		r := f.request("urva:call:3")
		r.TimeOut = 1
		if _, err := f.client.Connect(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if term := f.rcv.next(t).cb; term.Status != exotel.StatusNoAnswer || len(term.Legs) != 1 {
			t.Fatalf("terminal callback = %+v", term)
		}
	})
	t.Run("TimeLimit cuts the talk", func(t *testing.T) {
		t.Parallel()
		f := newDlFixture(t, DiallerOptions{TalkTime: time.Hour})
		r := f.request("urva:call:4")
		r.TimeLimit = 1
		if _, err := f.client.Connect(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		f.rcv.next(t) // answered
		if term := f.rcv.next(t).cb; term.Status != exotel.StatusCompleted || term.ConversationDuration != 1 {
			t.Fatalf("terminal callback = %+v", term)
		}
	})
}

func TestDiallerFailAfterPlacingIsFoundByCustomField(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{})
	f.fake.FailAfterPlacing(1)
	since := time.Now()
	_, err := f.client.Connect(context.Background(), f.request("urva:call:5:press-1"))
	var e *exotel.Error
	if !errors.As(err, &e) || !e.Ambiguous || e.HTTPStatus != 500 {
		t.Fatalf("Connect error = %#v, want ambiguous", err)
	}
	// The caller looks the call up instead of placing a second one.
	found, err := f.client.FindByCustomField(context.Background(), "urva:call:5:press-1", since)
	if err != nil {
		t.Fatalf("FindByCustomField: %v", err)
	}
	calls := f.fake.Calls()
	if len(calls) != 1 || calls[0].Sid == "" || calls[0].HTTPStatus != 500 || found.Sid != calls[0].Sid ||
		found.From != dlContact || found.To != dlRM || found.CustomField != "urva:call:5:press-1" {
		t.Fatalf("found %+v; Calls() = %+v", found, calls)
	}
	if _, err := f.client.FindByCustomField(context.Background(), "urva:call:5:press-2", since); !errors.Is(err, exotel.ErrCallNotFound) {
		t.Fatalf("another press: %v", err)
	}
	// The placed call goes on as any other.
	if ev := f.event(t, DiallerEnded); ev.Call.Sid != found.Sid || ev.Status != exotel.StatusCompleted || !ev.Delivered {
		t.Fatalf("ended event = %+v", ev)
	}
	if a, term := f.rcv.next(t).cb, f.rcv.next(t).cb; !a.Answered() || !term.Terminal() || term.CallSid != found.Sid {
		t.Fatalf("callbacks %+v, %+v", a, term)
	}
}

func TestDiallerFailNextConnect(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{})
	f.fake.FailNextConnect(1, 503)
	f.fake.FailNextConnect(1, 429)
	since := time.Now()
	var e *exotel.Error
	if _, err := f.client.Connect(context.Background(), f.request("urva:call:6")); !errors.As(err, &e) || !e.Ambiguous || e.HTTPStatus != 503 {
		t.Fatalf("first Connect error = %#v, want an ambiguous 503", err)
	}
	if _, err := f.client.FindByCustomField(context.Background(), "urva:call:6", since); !errors.Is(err, exotel.ErrCallNotFound) {
		t.Fatalf("FindByCustomField after an unplaced call: %v", err)
	}
	if _, err := f.client.Connect(context.Background(), f.request("urva:call:6")); !errors.As(err, &e) || e.Ambiguous || !e.Retryable || e.HTTPStatus != 429 {
		t.Fatalf("second Connect error = %#v, want a retryable 429", err)
	}
	call, err := f.client.Connect(context.Background(), f.request("urva:call:6"))
	if err != nil {
		t.Fatal(err)
	}
	calls := f.fake.Calls()
	if len(calls) != 3 || calls[0].Sid != "" || calls[0].HTTPStatus != 503 || calls[1].Sid != "" || calls[1].HTTPStatus != 429 ||
		calls[2].Sid != call.Sid || calls[2].HTTPStatus != 200 {
		t.Fatalf("Calls() = %+v", calls)
	}
	if ev := f.event(t, DiallerConnect); ev.Call.Sid != "" || ev.Call.HTTPStatus != 503 {
		t.Fatalf("first connect event = %+v", ev)
	}
}

func TestDiallerDropCallbacksThenCallDetails(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{})
	f.fake.DropCallbacks(true)
	call, err := f.client.Connect(context.Background(), f.request("urva:call:7"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := f.event(t, DiallerAnswered); ev.Delivered {
		t.Fatalf("answered event = %+v", ev)
	}
	if ev := f.event(t, DiallerEnded); ev.Delivered || ev.Status != exotel.StatusCompleted {
		t.Fatalf("ended event = %+v", ev)
	}
	f.rcv.none(t)
	got, err := f.client.CallDetails(context.Background(), call.Sid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sid != call.Sid || got.Status != exotel.StatusCompleted || !exotel.Final(got.Status) || got.ConversationDuration != 1 ||
		got.RecordingURL != f.base+DiallerPrefix+"/recordings/"+call.Sid+".wav" || got.EndTime.IsZero() || got.Duration < 1 ||
		len(got.Legs) != 2 || got.Legs[0].Status != exotel.StatusCompleted || got.Legs[1].Status != exotel.StatusCompleted ||
		got.Legs[0].OnCallDuration < 1 {
		t.Fatalf("CallDetails = %+v", got)
	}

	// Callbacks come back once asked for.
	f.fake.DropCallbacks(false)
	if _, err := f.client.Connect(context.Background(), f.request("urva:call:8")); err != nil {
		t.Fatal(err)
	}
	if a := f.rcv.next(t).cb; !a.Answered() || a.CustomField != "urva:call:8" {
		t.Fatalf("callback = %+v", a)
	}
}

func TestDiallerCallDetailsWhileRinging(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{RingDelay: time.Hour})
	call, err := f.client.Connect(context.Background(), f.request("urva:call:9"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.client.CallDetails(context.Background(), call.Sid)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != exotel.StatusInProgress || exotel.Final(got.Status) || !got.EndTime.IsZero() || got.Duration != 0 || got.RecordingURL != "" {
		t.Fatalf("CallDetails = %+v", got)
	}
	// Close hangs up: no callbacks, the subscription ends.
	f.fake.Close()
	f.rcv.none(t)
	for ev := range f.events {
		if ev.Type != DiallerConnect {
			t.Fatalf("event after Close: %+v", ev)
		}
	}
	status, body := dlPost(t, f.base+DiallerPrefix+"/v1/Accounts/"+dlAccount+"/Calls/connect.json", dlKey, dlToken, "application/x-www-form-urlencoded",
		url.Values{"From": {dlContact}, "To": {dlRM}, "CallerId": {dlCallerID}}.Encode())
	if status != 503 || !strings.Contains(body, "RestException") {
		t.Fatalf("connect after Close: %d %s", status, body)
	}
}

func TestDiallerCallbackRetries(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{})
	f.rcv.setAnswer(func(n int) int {
		if n <= 2 {
			return 500
		}
		return 200
	})
	call, err := f.client.Connect(context.Background(), f.request("urva:call:10"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{500, 500, 200} {
		if h := f.rcv.next(t); !h.cb.Answered() || h.cb.CallSid != call.Sid || h.answered != want {
			t.Fatalf("answered attempt %d = %+v (%d)", i+1, h.cb, h.answered)
		}
	}
	if ev := f.event(t, DiallerAnswered); !ev.Delivered {
		t.Fatalf("answered event = %+v", ev)
	}
	// The terminal callback is refused every time: three attempts, then lost.
	f.rcv.setAnswer(func(int) int { return 503 })
	for i := 1; i <= 3; i++ {
		if h := f.rcv.next(t); !h.cb.Terminal() {
			t.Fatalf("terminal attempt %d = %+v", i, h.cb)
		}
	}
	if ev := f.event(t, DiallerEnded); ev.Delivered {
		t.Fatalf("ended event = %+v", ev)
	}
	f.rcv.none(t)
}

func dlPost(t *testing.T, uri, user, pass, contentType, body string) (int, string) {
	t.Helper()
	return dlDo(t, fasthttp.MethodPost, uri, user, pass, contentType, body)
}

func dlDo(t *testing.T, method, uri, user, pass, contentType, body string) (int, string) {
	t.Helper()
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	req.Header.SetMethod(method)
	if user != "" {
		req.Header.Set("Authorization", "Basic "+encodeBasic(user, pass))
	}
	if contentType != "" {
		req.Header.SetContentType(contentType)
	}
	req.SetBodyString(body)
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("%s %s: %v", method, uri, err)
	}
	return resp.StatusCode(), string(resp.Body())
}

func TestDiallerFormCallbacks(t *testing.T) {
	for _, tt := range []struct {
		name, asked, want string
		events            bool
	}{
		{"form by default", "", "application/x-www-form-urlencoded", true},
		{"multipart", "multipart/form-data", "multipart/form-data", true},
		{"no events subscribed", "", "application/x-www-form-urlencoded", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newDlFixture(t, DiallerOptions{})
			form := url.Values{"From": {dlContact}, "To": {dlRM}, "CallerId": {dlCallerID}, "Record": {"true"},
				"CustomField": {"urva:call:11 & more"}, "StatusCallback": {f.rcv.base + dlHookPath}}
			if tt.asked != "" {
				form.Set("StatusCallbackContentType", tt.asked)
			}
			if tt.events {
				form.Set("StatusCallbackEvents[0]", "terminal")
				form.Set("StatusCallbackEvents[1]", "answered")
			}
			status, body := dlPost(t, f.base+DiallerPrefix+"/v1/Accounts/"+dlAccount+"/Calls/connect", dlKey, dlToken,
				"application/x-www-form-urlencoded", form.Encode())
			if status != 200 {
				t.Fatalf("connect: %d %s", status, body)
			}
			var answer struct{ Call struct{ Sid, Status string } }
			if err := json.Unmarshal([]byte(body), &answer); err != nil || answer.Call.Status != "in-progress" {
				t.Fatalf("connect answer %s: %v", body, err)
			}
			if tt.events {
				if h := f.rcv.next(t); !strings.HasPrefix(h.contentType, tt.want) || !h.cb.Answered() {
					t.Fatalf("answered = %s %+v", h.contentType, h.cb)
				}
			}
			h := f.rcv.next(t)
			term := h.cb
			if !strings.HasPrefix(h.contentType, tt.want) || !term.Terminal() || term.CallSid != answer.Call.Sid ||
				term.Status != exotel.StatusCompleted || term.RecordingURL == "" || term.DateUpdated.IsZero() {
				t.Fatalf("terminal (%s) = %+v", h.contentType, term)
			}
			var raw map[string]any
			if err := json.Unmarshal(term.Raw, &raw); err != nil {
				t.Fatal(err)
			}
			if tt.events {
				if term.CustomField != "urva:call:11 & more" || len(term.Legs) != 2 || term.Legs[1].Status != "completed" ||
					raw["Legs[1][Status]"] != "completed" || raw["EventType"] != "terminal" {
					t.Fatalf("terminal = %+v, raw %s", term, term.Raw)
				}
			} else if _, ok := raw["EventType"]; ok || len(raw) != 4 || term.CustomField != "" || term.Legs != nil {
				// Without events Exotel sends CallSid, Status, RecordingUrl and DateUpdated only.
				t.Fatalf("legacy terminal = %+v, raw %s", term, term.Raw)
			}
			f.event(t, DiallerEnded)
			f.rcv.none(t)
		})
	}
}

func TestDiallerCallbackBehindPublicURL(t *testing.T) {
	// The server's public URL is a name the fake cannot reach: callbacks
	// under it go to LocalURL, path and query kept.
	const public = "https://urva.example.com"
	rcv := newDlReceiver(t)
	fake := NewDialler(DiallerOptions{AccountSID: dlAccount, APIKey: dlKey, APIToken: dlToken, CallerID: dlCallerID,
		RingDelay: time.Millisecond, TalkTime: time.Millisecond, PublicURL: public, LocalURL: rcv.base + "/"})
	t.Cleanup(fake.Close)
	base := serve(t, fake.HandleAPI)
	c := exotel.NewClient(exotel.ClientOptions{APIBase: base + DiallerPrefix, AccountSID: dlAccount, APIKey: dlKey, APIToken: dlToken})
	t.Cleanup(c.CloseIdleConnections)
	call, err := c.Connect(context.Background(), exotel.ConnectRequest{From: dlContact, To: dlRM, CallerID: "09800000001",
		Record: true, StatusCallback: public + dlHookPath})
	if err != nil {
		t.Fatal(err)
	}
	rcv.next(t)
	if term := rcv.next(t).cb; term.RecordingURL != public+DiallerPrefix+"/recordings/"+call.Sid+".wav" {
		t.Fatalf("terminal = %+v", term)
	}
}

func TestDiallerAPIChecksRequests(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{RingDelay: time.Hour})
	connectURL := f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Calls/connect.json"
	valid := url.Values{"From": {dlContact}, "To": {dlRM}, "CallerId": {dlCallerID}}
	with := func(name, value string) string {
		v := url.Values{}
		for k, vs := range valid {
			v[k] = vs
		}
		if value == "" {
			v.Del(name)
		} else {
			v.Set(name, value)
		}
		return v.Encode()
	}
	for _, tt := range []struct {
		name, method, uri, user, pass, body string
		status                              int
		message                             string
	}{
		{"no auth", "POST", connectURL, "", "", valid.Encode(), 401, "Authentication"},
		{"wrong token", "POST", connectURL, dlKey, "nope", valid.Encode(), 401, "Authentication"},
		{"other account", "POST", strings.Replace(connectURL, dlAccount, "other", 1), dlKey, dlToken, valid.Encode(), 403, "account"},
		{"no From", "POST", connectURL, dlKey, dlToken, with("From", ""), 400, "Missing parameter From"},
		{"no To", "POST", connectURL, dlKey, dlToken, with("To", ""), 400, "Missing parameter To"},
		{"no CallerId", "POST", connectURL, dlKey, dlToken, with("CallerId", ""), 400, "Missing parameter CallerId"},
		{"other CallerId", "POST", connectURL, dlKey, dlToken, with("CallerId", "+919899999999"), 400, "not an ExoPhone"},
		{"bad To", "POST", connectURL, dlKey, dlToken, with("To", "call me"), 400, "Invalid parameter To"},
		{"bad Record", "POST", connectURL, dlKey, dlToken, with("Record", "yes"), 400, "Record"},
		{"bad TimeLimit", "POST", connectURL, dlKey, dlToken, with("TimeLimit", "14401"), 400, "TimeLimit"},
		{"bad StatusCallback", "POST", connectURL, dlKey, dlToken, with("StatusCallback", "ftp://x"), 400, "StatusCallback"},
		{"bad event", "POST", connectURL, dlKey, dlToken, with("StatusCallbackEvents[0]", "ringing"), 400, "StatusCallbackEvents[0]"},
		{"bad content type", "POST", connectURL, dlKey, dlToken, with("StatusCallbackContentType", "text/xml"), 400, "StatusCallbackContentType"},
		{"long CustomField", "POST", connectURL, dlKey, dlToken, with("CustomField", strings.Repeat("x", 129)), 400, "CustomField"},
		{"GET connect", "GET", connectURL, dlKey, dlToken, "", 405, "Method"},
		{"POST details", "POST", f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Calls/abc.json", dlKey, dlToken, "", 405, "Method"},
		{"unknown call", "GET", f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Calls/abc.json", dlKey, dlToken, "", 404, "not found"},
		{"unknown path", "GET", f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Messages.json", dlKey, dlToken, "", 404, "not found"},
		{"bad list filter", "GET", f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Calls.json?DateCreated=gte:yesterday", dlKey, dlToken, "", 400, "DateCreated"},
		{"bad page size", "GET", f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Calls.json?PageSize=x", dlKey, dlToken, "", 400, "PageSize"},
		{"bad sort", "GET", f.base + DiallerPrefix + "/v1/Accounts/" + dlAccount + "/Calls.json?SortBy=Price", dlKey, dlToken, "", 400, "SortBy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, body := dlDo(t, tt.method, tt.uri, tt.user, tt.pass, "application/x-www-form-urlencoded", tt.body)
			var e struct {
				RestException struct {
					Status  int
					Message string
				}
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if status != tt.status || e.RestException.Status != tt.status || !strings.Contains(e.RestException.Message, tt.message) {
				t.Fatalf("%d %s; want %d with %q", status, body, tt.status, tt.message)
			}
		})
	}
	if calls := f.fake.Calls(); len(calls) != 0 {
		t.Fatalf("refused requests recorded: %+v", calls)
	}

	// The client sees the same: final errors, not found.
	bad := exotel.NewClient(exotel.ClientOptions{APIBase: f.base + DiallerPrefix, AccountSID: dlAccount, APIKey: dlKey, APIToken: "nope"})
	defer bad.CloseIdleConnections()
	var e *exotel.Error
	if _, err := bad.Connect(context.Background(), f.request("x")); !errors.As(err, &e) || e.HTTPStatus != 401 || e.Retryable || e.Ambiguous ||
		!strings.Contains(e.Message, "Authentication") {
		t.Fatalf("bad credentials: %#v", err)
	}
	if _, err := f.client.CallDetails(context.Background(), "0123456789abcdef0123456789abcdef"); !errors.Is(err, exotel.ErrCallNotFound) {
		t.Fatalf("unknown call: %v", err)
	}
	for _, name := range []string{"nope.wav", "nope.mp3", ""} {
		if status, _ := dlGet(t, f.base+DiallerPrefix+"/recordings/"+name); status != 404 {
			t.Fatalf("recording %q: %d", name, status)
		}
	}
}

func TestDiallerBulkLookup(t *testing.T) {
	f := newDlFixture(t, DiallerOptions{RingDelay: time.Hour})
	var sids []string
	for i, to := range []string{dlRM, dlRM, "+919833300003"} {
		r := f.request("urva:bulk:" + string(rune('a'+i)))
		r.To = to
		call, err := f.client.Connect(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		sids = append(sids, call.Sid)
	}
	list := func(query string) (meta map[string]any, got []string) {
		t.Helper()
		status, body := dlDo(t, "GET", f.base+DiallerPrefix+"/v1/Accounts/"+dlAccount+"/Calls.json?"+query, dlKey, dlToken, "", "")
		if status != 200 {
			t.Fatalf("%s: %d %s", query, status, body)
		}
		var page struct {
			Metadata map[string]any
			Calls    []struct{ Sid string }
		}
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		for _, c := range page.Calls {
			got = append(got, c.Sid)
		}
		return page.Metadata, got
	}
	meta, got := list("PageSize=2")
	if strings.Join(got, ",") != sids[2]+","+sids[1] || meta["Total"] != float64(3) {
		t.Fatalf("first page %v %v", got, meta)
	}
	next, _ := meta["NextPageUri"].(string)
	u, err := url.Parse(next)
	if err != nil || u.Path != "/v1/Accounts/"+dlAccount+"/Calls.json" || u.Query().Get("After") == "" {
		t.Fatalf("NextPageUri %q", next)
	}
	meta, got = list(u.RawQuery)
	if strings.Join(got, ",") != sids[0] || meta["NextPageUri"] != nil || meta["PrevPageUri"] == nil {
		t.Fatalf("second page %v %v", got, meta)
	}
	if _, got = list("SortBy=DateCreated:asc&To=09822200002"); strings.Join(got, ",") != sids[0]+","+sids[1] {
		t.Fatalf("by To, oldest first: %v", got)
	}
	if _, got = list("Sid=" + sids[1] + "," + sids[2] + "&Status=in-progress"); len(got) != 2 {
		t.Fatalf("by Sid: %v", got)
	}
	if _, got = list("Status=completed"); len(got) != 0 {
		t.Fatalf("by Status: %v", got)
	}
	future := url.QueryEscape("gte:" + exotel.FormatTime(time.Now().Add(time.Hour)))
	if _, got = list("DateCreated=" + future); len(got) != 0 {
		t.Fatalf("created in an hour: %v", got)
	}
	// The client's lookups.
	calls, err := f.client.FindCalls(context.Background(), exotel.CallFilter{To: dlRM, Since: time.Now().Add(-time.Minute)})
	if err != nil || len(calls) != 2 || calls[0].Sid != sids[1] || calls[1].Sid != sids[0] {
		t.Fatalf("FindCalls = %+v, %v", calls, err)
	}
	found, err := f.client.FindByCustomField(context.Background(), "urva:bulk:a", time.Time{})
	if err != nil || found.Sid != sids[0] || found.Status != exotel.StatusInProgress {
		t.Fatalf("FindByCustomField = %+v, %v", found, err)
	}
}
