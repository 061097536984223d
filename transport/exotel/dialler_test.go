package exotel_test

// The Dialler (actors.Dialler over a Client) against the sandbox dialler,
// which speaks Exotel's wire format.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/transport/exotel"
	"urva/transport/sandbox"
)

const (
	dAccount  = "urva-test"
	dKey      = "dialler-key"
	dToken    = "dialler-token"
	dCallerID = "+919800000001"
	dContact  = "+919811100001"
	dRM       = "+919822200002"
	dHookPath = "/webhooks/dialler/secret-token"
	dWait     = 10 * time.Second // bounds every wait; reaching it is a failure
)

// hook is one status callback the receiver got, parsed as the server parses it.
type hook struct {
	contentType string
	cb          *exotel.Callback
}

type diallerFixture struct {
	fake     *sandbox.Dialler
	base     string // the fake's server
	dialler  *exotel.Dialler
	callback string // the status callback URL
	hooks    chan hook
	events   <-chan sandbox.DiallerEvent
}

func newDiallerFixture(t *testing.T, o sandbox.DiallerOptions) *diallerFixture {
	t.Helper()
	f := &diallerFixture{hooks: make(chan hook, 64)}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		cb, err := exotel.ParseCallback(r.Header.Get("Content-Type"), b)
		if r.URL.Path != dHookPath || err != nil {
			t.Errorf("callback %s %s: %v", r.Method, r.URL.Path, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.hooks <- hook{contentType: r.Header.Get("Content-Type"), cb: cb}
	}))
	t.Cleanup(rcv.Close)
	f.callback = rcv.URL + dHookPath

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var fake *sandbox.Dialler
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { fake.HandleAPI(ctx) }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	f.base = "http://" + ln.Addr().String()

	o.AccountSID, o.APIKey, o.APIToken, o.CallerID, o.PublicURL = dAccount, dKey, dToken, dCallerID, f.base
	if o.RingDelay == 0 {
		o.RingDelay = 5 * time.Millisecond
	}
	if o.TalkTime == 0 {
		o.TalkTime = 5 * time.Millisecond
	}
	o.CallbackBackoff = time.Millisecond
	fake = sandbox.NewDialler(o)
	t.Cleanup(fake.Close)
	f.fake = fake
	events, cancel := fake.Subscribe()
	t.Cleanup(cancel)
	f.events = events

	client := exotel.NewClient(exotel.ClientOptions{
		APIBase: f.base + sandbox.DiallerPrefix, AccountSID: dAccount, APIKey: dKey, APIToken: dToken, Timeout: 5 * time.Second,
	})
	t.Cleanup(client.CloseIdleConnections)
	f.dialler = &exotel.Dialler{Client: client, TimeLimit: 600, TimeOut: 30}
	return f
}

func (f *diallerFixture) request(customField string) actors.DialRequest {
	return actors.DialRequest{
		From: dContact, To: dRM, CallerID: dCallerID, CustomField: customField, StatusCallback: f.callback, Record: true,
	}
}

// next waits for the next status callback.
func (f *diallerFixture) next(t *testing.T) hook {
	t.Helper()
	select {
	case h := <-f.hooks:
		return h
	case <-time.After(dWait):
		t.Fatal("no status callback")
	}
	return hook{}
}

// ended waits for the end of the call sid, callbacks included.
func (f *diallerFixture) ended(t *testing.T, sid string) sandbox.DiallerEvent {
	t.Helper()
	timeout := time.After(dWait)
	for {
		select {
		case ev, ok := <-f.events:
			if !ok {
				t.Fatal("subscription closed")
			}
			if ev.Type == sandbox.DiallerEnded && ev.Call.Sid == sid {
				return ev
			}
		case <-timeout:
			t.Fatalf("call %s did not end", sid)
		}
	}
}

type legOut struct {
	Party           string `json:"party"`
	Number          string `json:"number"`
	Status          string `json:"status"`
	DurationSeconds int    `json:"duration_seconds"`
	AnsweredBy      string `json:"answered_by"`
}

func legsOf(t *testing.T, raw json.RawMessage) []legOut {
	t.Helper()
	var legs []legOut
	if err := json.Unmarshal(raw, &legs); err != nil {
		t.Fatalf("legs %s: %v", raw, err)
	}
	return legs
}

func TestDiallerConnectAndCallbacks(t *testing.T) {
	f := newDiallerFixture(t, sandbox.DiallerOptions{})
	sid, err := f.dialler.Connect(context.Background(), f.request("42"))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	calls := f.fake.Calls()
	if len(calls) != 1 {
		t.Fatalf("Calls() = %+v", calls)
	}
	c := calls[0]
	if sid == "" || c.Sid != sid || c.From != dContact || c.To != dRM || c.CallerID != dCallerID || c.CustomField != "42" ||
		!c.Record || c.StatusCallback != f.callback || c.TimeLimit != 600 || c.TimeOut != 30 ||
		strings.Join(c.StatusCallbackEvents, ",") != "terminal,answered" || c.StatusCallbackContentType != "application/json" {
		t.Fatalf("connect request = %+v", c)
	}

	h := f.next(t)
	a := h.cb.Dialled()
	if h.contentType != "application/json" || a.Event != "answered" || a.Sid != sid || a.CustomField != "42" ||
		a.Status != exotel.StatusInProgress || !a.StartedAt.IsZero() || !a.EndedAt.IsZero() || a.TalkSeconds != 0 ||
		a.RecordingURL != "" || len(a.Raw) == 0 {
		t.Fatalf("answered = %+v", a)
	}
	if legs := legsOf(t, a.Legs); len(legs) != 1 || legs[0].Party != exotel.PartyFrom || legs[0].Number != dContact {
		t.Fatalf("answered legs = %s", a.Legs)
	}

	term := f.next(t).cb.Dialled()
	if term.Event != "terminal" || term.Sid != sid || term.CustomField != "42" || term.Status != exotel.StatusCompleted ||
		term.TalkSeconds != 1 || term.EndedAt.IsZero() || !term.StartedAt.Equal(term.EndedAt.Add(-time.Second)) ||
		term.RecordingURL != f.base+sandbox.DiallerPrefix+"/recordings/"+sid+".wav" {
		t.Fatalf("terminal = %+v", term)
	}
	legs := legsOf(t, term.Legs)
	if len(legs) != 2 || legs[0].Party != exotel.PartyFrom || legs[0].Number != dContact || legs[1].Party != exotel.PartyTo ||
		legs[1].Number != dRM {
		t.Fatalf("terminal legs = %s", term.Legs)
	}
	for i, l := range legs {
		if l.Status != exotel.StatusCompleted || l.DurationSeconds < 1 || l.AnsweredBy == "" {
			t.Errorf("leg %d = %+v", i, l)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal(term.Raw, &raw); err != nil || raw["CallSid"] != sid || raw["EventType"] != "terminal" {
		t.Fatalf("raw = %s (%v)", term.Raw, err)
	}
	f.ended(t, sid)

	// The details API tells the same story, without an event.
	d, err := f.dialler.Details(context.Background(), sid)
	if err != nil {
		t.Fatalf("Details: %v", err)
	}
	if d.Event != "" || d.Sid != sid || d.CustomField != "42" || d.Status != exotel.StatusCompleted || d.TalkSeconds != 1 ||
		d.RecordingURL != term.RecordingURL || !d.EndedAt.Equal(term.EndedAt) || !d.StartedAt.Equal(term.StartedAt) || len(d.Raw) == 0 {
		t.Fatalf("details = %+v", d)
	}
	if legs := legsOf(t, d.Legs); len(legs) != 2 || legs[0].Status != exotel.StatusCompleted || legs[1].Status != exotel.StatusCompleted ||
		legs[0].Number != dContact || legs[1].Number != dRM {
		t.Fatalf("details legs = %s", d.Legs)
	}
}

func TestDiallerUnansweredCall(t *testing.T) {
	f := newDiallerFixture(t, sandbox.DiallerOptions{Outcome: func(n string) string {
		if n == dContact {
			return sandbox.OutcomeBusy
		}
		return sandbox.OutcomeAnswer
	}})
	sid, err := f.dialler.Connect(context.Background(), f.request("43"))
	if err != nil {
		t.Fatal(err)
	}
	term := f.next(t).cb.Dialled()
	if term.Event != "terminal" || term.Status != exotel.StatusBusy || term.TalkSeconds != 0 || term.RecordingURL != "" ||
		!term.StartedAt.IsZero() || term.EndedAt.IsZero() {
		t.Fatalf("terminal = %+v", term)
	}
	if legs := legsOf(t, term.Legs); len(legs) != 1 || legs[0].Status != exotel.StatusBusy || legs[0].DurationSeconds != 0 {
		t.Fatalf("legs = %s", term.Legs)
	}
	f.ended(t, sid)
	d, err := f.dialler.Details(context.Background(), sid)
	if err != nil || d.Status != exotel.StatusBusy || !exotel.Final(d.Status) {
		t.Fatalf("details = %+v, %v", d, err)
	}
}

func TestDiallerAmbiguousConnectIsFound(t *testing.T) {
	f := newDiallerFixture(t, sandbox.DiallerOptions{})
	since := time.Now()

	// Not placed, 500: ambiguous; the lookup finds nothing.
	f.fake.FailNextConnect(1, 500)
	_, err := f.dialler.Connect(context.Background(), f.request("44"))
	var de *actors.DialError
	if !errors.As(err, &de) || !de.Ambiguous || !de.Retryable || !strings.Contains(de.Message, "HTTP 500") {
		t.Fatalf("Connect error = %#v, want ambiguous", err)
	}
	if _, err := f.dialler.Find(context.Background(), f.request("44"), since); !errors.Is(err, actors.ErrCallNotFound) {
		t.Fatalf("Find after an unplaced call: %v", err)
	}

	// Placed, then 500: ambiguous; the lookup finds the call.
	f.fake.FailAfterPlacing(1)
	_, err = f.dialler.Connect(context.Background(), f.request("45"))
	if !errors.As(err, &de) || !de.Ambiguous || !de.Retryable {
		t.Fatalf("Connect error = %#v, want ambiguous", err)
	}
	found, err := f.dialler.Find(context.Background(), f.request("45"), since)
	if err != nil {
		t.Fatalf("Find: %v", err)
	}
	calls := f.fake.Calls()
	if len(calls) != 2 || calls[1].Sid == "" || found.Sid != calls[1].Sid || found.CustomField != "45" || found.Event != "" ||
		found.Status == "" {
		t.Fatalf("found %+v; Calls() = %+v", found, calls)
	}
	f.ended(t, found.Sid)
}

func TestDiallerFinalErrors(t *testing.T) {
	f := newDiallerFixture(t, sandbox.DiallerOptions{})
	var de *actors.DialError

	// 429: retryable, nothing placed.
	f.fake.FailNextConnect(1, 429)
	if _, err := f.dialler.Connect(context.Background(), f.request("46")); !errors.As(err, &de) || de.Ambiguous || !de.Retryable {
		t.Fatalf("429: %#v", err)
	}
	// A CallerId the account does not own: final.
	req := f.request("47")
	req.CallerID = "+919800009999"
	if _, err := f.dialler.Connect(context.Background(), req); !errors.As(err, &de) || de.Ambiguous || de.Retryable ||
		!strings.Contains(de.Message, "HTTP 400") || !strings.Contains(de.Message, "ExoPhone") {
		t.Fatalf("bad caller id: %#v", err)
	}
	// Refused locally: final, nothing sent.
	req = f.request(strings.Repeat("x", exotel.MaxCustomField+1))
	if _, err := f.dialler.Connect(context.Background(), req); !errors.As(err, &de) || de.Ambiguous || de.Retryable {
		t.Fatalf("long CustomField: %#v", err)
	}
	// Nobody listening: retryable, not ambiguous (nothing was sent).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	down := &exotel.Dialler{Client: exotel.NewClient(exotel.ClientOptions{APIBase: closed, AccountSID: dAccount, APIKey: dKey, APIToken: dToken})}
	if _, err := down.Connect(context.Background(), f.request("48")); !errors.As(err, &de) || de.Ambiguous || !de.Retryable {
		t.Fatalf("connection refused: %#v", err)
	}
	if _, err := down.Details(context.Background(), "b6cfaf5f5cef3ca0fc937749ef96d245"); !errors.As(err, &de) || !de.Retryable ||
		errors.Is(err, actors.ErrCallNotFound) {
		t.Fatalf("details, connection refused: %#v", err)
	}
	if n := len(f.fake.Calls()); n != 1 { // only the 429
		t.Fatalf("Calls() = %d requests, want 1", n)
	}

	// Unknown calls.
	if _, err := f.dialler.Details(context.Background(), "0123456789abcdef0123456789abcdef"); !errors.Is(err, actors.ErrCallNotFound) {
		t.Fatalf("Details of an unknown call: %v", err)
	}
	if _, err := f.dialler.Find(context.Background(), actors.DialRequest{CustomField: "no-such-call"}, time.Now()); !errors.Is(err, actors.ErrCallNotFound) {
		t.Fatalf("Find of an unknown call: %v", err)
	}
}

func TestLegsJSON(t *testing.T) {
	if got := exotel.LegsJSON(nil, dContact, dRM); got != nil {
		t.Fatalf("no legs: %s", got)
	}
	got := exotel.LegsJSON([]exotel.Leg{
		{OnCallDuration: 151, Status: "completed", AnsweredBy: "human"},
		{OnCallDuration: 144, Status: "completed"},
		{Status: "failed"},
	}, dContact, dRM)
	want := `[{"party":"from","number":"+919811100001","status":"completed","duration_seconds":151,"answered_by":"human"},` +
		`{"party":"to","number":"+919822200002","status":"completed","duration_seconds":144},` +
		`{"party":"","status":"failed","duration_seconds":0}]`
	if string(got) != want {
		t.Fatalf("LegsJSON = %s\nwant %s", got, want)
	}
}
