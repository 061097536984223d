package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"urva/actors"
	"urva/persistence"
	"urva/transport/exotel"
)

const testCallbackToken = "dialler-callback-secret"

// fakeCalls records what the call endpoints ask for.
type fakeCalls struct {
	mu        sync.Mutex
	starts    []startArgs
	callbacks []*actors.DialledCall
	startErr  error
	callErr   error
	cbHook    func(ctx context.Context, cb *actors.DialledCall) error
}

type startArgs struct {
	p              actors.Principal
	conversationID int64
	phone          string
}

func (f *fakeCalls) StartCall(ctx context.Context, p actors.Principal, conversationID int64, phone string) (*persistence.Call, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, startArgs{p, conversationID, phone})
	if f.startErr != nil {
		return nil, f.startErr
	}
	return &persistence.Call{ID: 12, ConversationID: max(conversationID, 3), RMID: p.RMID, ContactPhone: "+919811100001",
		RMPhone: "+919800000777", CallerID: "+918047000000", FirstLeg: persistence.CallLegContact,
		Status: persistence.CallRequested, RequestedAt: time.Date(2026, 1, 2, 5, 10, 1, 0, time.UTC)}, nil
}

func (f *fakeCalls) Call(ctx context.Context, p actors.Principal, id int64) (*persistence.Call, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.callErr != nil {
		return nil, f.callErr
	}
	return &persistence.Call{ID: id, RMID: p.RMID, Status: persistence.CallCompleted, TalkSeconds: 144,
		RecordingURL: "https://recordings.example.com/r.mp3", Legs: json.RawMessage(`[{"party":"from"}]`),
		StartedAt: time.Date(2026, 1, 2, 5, 10, 19, 0, time.UTC)}, nil
}

func (f *fakeCalls) DiallerCallback(ctx context.Context, cb *actors.DialledCall) error {
	f.mu.Lock()
	hook := f.cbHook
	f.callbacks = append(f.callbacks, cb)
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, cb)
	}
	return nil
}

func (f *fakeCalls) set(fn func(f *fakeCalls)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeCalls) counts() (starts, callbacks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts), len(f.callbacks)
}

func (f *fakeCalls) lastCallback() *actors.DialledCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.callbacks) == 0 {
		return nil
	}
	return f.callbacks[len(f.callbacks)-1]
}

func newCallsEnv(t *testing.T) (*env, *fakeCalls) {
	t.Helper()
	fc := &fakeCalls{}
	e := newEnv(t, func(o *Options) {
		o.Calls = fc
		o.DiallerCallbackToken = testCallbackToken
	})
	return e, fc
}

func TestStartCallRequests(t *testing.T) {
	e, fc := newCallsEnv(t)
	tok := e.token(7, persistence.RoleRM)
	for _, tt := range []struct{ body, want string }{
		{``, "request body required"},
		{`[]`, "invalid JSON"},
		{`{}`, "conversation_id or phone required"},
		{`{"phone":"  "}`, "conversation_id or phone required"},
		{`{"conversation_id":-1}`, "invalid conversation_id"},
		{`{"conversation_id":3,"phone":"+919811100001"}`, "exclusive"},
	} {
		r := e.api("POST", "/api/calls", tok, tt.body)
		if r.status != 400 || !strings.Contains(r.errorText(t), tt.want) {
			t.Errorf("%s: %d %s, want 400 %q", tt.body, r.status, r.body, tt.want)
		}
	}
	if r := e.api("POST", "/api/calls", "", `{"conversation_id":3}`); r.status != 401 {
		t.Errorf("no token: %d %s", r.status, r.body)
	}
	if n, _ := fc.counts(); n != 0 {
		t.Fatalf("StartCall called %d times for bad requests", n)
	}

	r := e.api("POST", "/api/calls", tok, `{"conversation_id":3}`)
	if r.status != 201 {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	var out struct {
		Call map[string]json.RawMessage `json:"call"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"id": `12`, "status": `"requested"`, "rm_id": `7`, "contact_phone": `"+919811100001"`,
		"rm_phone": `"+919800000777"`, "first_leg": `"contact"`, "answered_at": `null`, "legs": `null`, "recording_url": `""`,
		"requested_at": `"2026-01-02T05:10:01Z"`} {
		if got := string(out.Call[k]); got != want {
			t.Errorf("call.%s = %s, want %s (%s)", k, got, want, r.body)
		}
	}
	if r := e.api("POST", "/api/calls", tok, `{"phone":" +91 98111 00001 "}`); r.status != 201 {
		t.Fatalf("start by phone: %d %s", r.status, r.body)
	}
	fc.mu.Lock()
	starts := append([]startArgs(nil), fc.starts...)
	fc.mu.Unlock()
	if len(starts) != 2 || starts[0] != (startArgs{actors.Principal{RMID: 7, Role: persistence.RoleRM}, 3, ""}) ||
		starts[1].conversationID != 0 || starts[1].phone != "+91 98111 00001" {
		t.Fatalf("StartCall calls = %+v", starts)
	}

	for err, want := range map[error]int{
		actors.ErrForbidden: 403,
		actors.ErrNotFound:  404,
		fmt.Errorf("%w: no phone", actors.ErrBadRequest): 400,
		actors.ErrUnavailable:                            503,
	} {
		fc.set(func(f *fakeCalls) { f.startErr = err })
		if r := e.api("POST", "/api/calls", tok, `{"conversation_id":3}`); r.status != want {
			t.Errorf("%v: %d %s, want %d", err, r.status, r.body, want)
		}
	}
}

func TestGetCall(t *testing.T) {
	e, fc := newCallsEnv(t)
	tok := e.token(7, persistence.RoleRM)
	r := e.api("GET", "/api/calls/41", tok, "")
	if r.status != 200 {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	var out struct {
		Call persistence.OutboxCall `json:"call"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.Call.ID != 41 || out.Call.Status != "completed" ||
		out.Call.TalkSeconds != 144 || out.Call.RecordingURL == "" || string(out.Call.Legs) != `[{"party":"from"}]` ||
		out.Call.StartedAt == nil || out.Call.EndedAt != nil {
		t.Fatalf("get: %s (%v)", r.body, err)
	}
	for _, path := range []string{"/api/calls/", "/api/calls/x", "/api/calls/0", "/api/calls/-2", "/api/calls/41/recording"} {
		if r := e.api("GET", path, tok, ""); r.status != 404 {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	if r := e.api("GET", "/api/calls/41", "", ""); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	fc.set(func(f *fakeCalls) { f.callErr = actors.ErrForbidden })
	if r := e.api("GET", "/api/calls/41", tok, ""); r.status != 403 {
		t.Errorf("forbidden: %d %s", r.status, r.body)
	}
	fc.set(func(f *fakeCalls) { f.callErr = persistence.ErrNotFound })
	if r := e.api("GET", "/api/calls/41", tok, ""); r.status != 404 {
		t.Errorf("not found: %d %s", r.status, r.body)
	}
}

// terminalJSON is a terminal callback as the dialler posts it with
// StatusCallbackContentType=application/json.
const terminalJSON = `{"CallSid":"b6cfaf5c1c8a2d4e9f0a1b2c3d4e18a1","EventType":"terminal","Status":"completed",` +
	`"RecordingUrl":"https://recordings.example.com/b6.mp3","DateUpdated":"2026-01-02 10:42:44","From":"+919811100001",` +
	`"To":"+919800000777","StartTime":"2026-01-02 10:40:01","EndTime":"2026-01-02 10:42:43","ConversationDuration":144,` +
	`"Direction":"outbound-api","CustomField":"12","Legs":[{"OnCallDuration":151,"Status":"completed","AnsweredBy":"human"},` +
	`{"OnCallDuration":144,"Status":"completed","AnsweredBy":"human"}]}`

func (e *env) diallerCallback(token, contentType, body string) response {
	e.t.Helper()
	return e.do("POST", "/webhooks/dialler/"+token, strings.NewReader(body), "Content-Type", contentType)
}

func TestDiallerWebhookToken(t *testing.T) {
	e, fc := newCallsEnv(t)
	for _, token := range []string{"", "wrong", testCallbackToken + "x", testCallbackToken[1:], testCallbackToken + "/", "x/" + testCallbackToken} {
		if r := e.diallerCallback(token, "application/json", terminalJSON); r.status != 404 {
			t.Errorf("token %q: %d %s", token, r.status, r.body)
		}
	}
	if r := e.do("POST", "/webhooks/dialler", strings.NewReader(terminalJSON)); r.status != 404 {
		t.Errorf("no token segment: %d", r.status)
	}
	if _, n := fc.counts(); n != 0 || e.store.logCount() != 0 {
		t.Fatalf("refused callbacks reached the actors (%d) or the log (%d)", n, e.store.logCount())
	}

	// No token configured: every callback is refused.
	off := newEnv(t, func(o *Options) { o.Calls = fc })
	if r := off.diallerCallback(testCallbackToken, "application/json", terminalJSON); r.status != 404 {
		t.Errorf("no token configured: %d", r.status)
	}
	if _, n := fc.counts(); n != 0 || off.store.logCount() != 0 {
		t.Fatal("callback accepted without a configured token")
	}
}

func TestDiallerWebhookApplied(t *testing.T) {
	e, fc := newCallsEnv(t)
	r := e.diallerCallback(testCallbackToken, "application/json", terminalJSON)
	if r.status != 200 || r.json(t)["status"] != "processed" {
		t.Fatalf("terminal: %d %s", r.status, r.body)
	}
	cb := fc.lastCallback()
	if cb == nil || cb.Sid != "b6cfaf5c1c8a2d4e9f0a1b2c3d4e18a1" || cb.Event != "terminal" || cb.Status != "completed" ||
		cb.CustomField != "12" || cb.TalkSeconds != 144 || cb.RecordingURL != "https://recordings.example.com/b6.mp3" ||
		!cb.StartedAt.Equal(time.Date(2026, 1, 2, 5, 10, 19, 0, time.UTC)) || !cb.EndedAt.Equal(time.Date(2026, 1, 2, 5, 12, 43, 0, time.UTC)) {
		t.Fatalf("callback = %+v", cb)
	}
	var legs []map[string]any
	if err := json.Unmarshal(cb.Legs, &legs); err != nil || len(legs) != 2 || legs[0]["party"] != "from" ||
		legs[0]["number"] != "+919811100001" || legs[1]["duration_seconds"] != float64(144) {
		t.Fatalf("legs = %s (%v)", cb.Legs, err)
	}
	var raw map[string]any
	if err := json.Unmarshal(cb.Raw, &raw); err != nil || raw["CallSid"] != cb.Sid {
		t.Fatalf("raw = %s", cb.Raw)
	}
	logs := e.store.logged()
	if len(logs) != 1 || logs[0].Provider != "dialler" || strings.Contains(logs[0].Path, testCallbackToken) ||
		string(logs[0].Body) != terminalJSON || e.store.outcome(1) != "processed" {
		t.Fatalf("log = %+v, outcome %q", logs, e.store.outcome(1))
	}

	// A form-encoded answered callback.
	form := url.Values{"CallSid": {"b6cfaf5c1c8a2d4e9f0a1b2c3d4e18a1"}, "EventType": {"answered"}, "Status": {"in-progress"},
		"CustomField": {"12"}, "From": {"+919811100001"}, "To": {"+919800000777"}, "StartTime": {"2026-01-02 10:40:01"},
		"Legs[0][Status]": {"in-progress"}, "Legs[0][AnsweredBy]": {"human"}}
	if r := e.diallerCallback(testCallbackToken, "application/x-www-form-urlencoded", form.Encode()); r.status != 200 {
		t.Fatalf("answered: %d %s", r.status, r.body)
	}
	if cb := fc.lastCallback(); cb.Event != "answered" || cb.Status != "in-progress" || cb.CustomField != "12" || len(cb.Legs) == 0 {
		t.Fatalf("answered callback = %+v", cb)
	}

	// An event we do not act on is logged and acknowledged.
	form.Set("EventType", "ringing")
	if r := e.diallerCallback(testCallbackToken, "application/x-www-form-urlencoded", form.Encode()); r.status != 200 ||
		r.json(t)["status"] != "ignored: event ringing" {
		t.Fatalf("ringing: %d %s", r.status, r.body)
	}
	if _, n := fc.counts(); n != 2 || e.store.logCount() != 3 || e.store.outcome(3) != "ignored: event ringing" {
		t.Fatalf("ringing reached the actors, or was not logged: %d applied, %d logged", n, e.store.logCount())
	}
}

func TestDiallerWebhookOutcomes(t *testing.T) {
	fc := &fakeCalls{}
	e := newEnv(t, func(o *Options) {
		o.Calls = fc
		o.DiallerCallbackToken = testCallbackToken
		o.MaxBodyBytes = 2 * exotel.MaxCallbackBody // the callback's own limit applies
	})

	// Malformed or too large: refused, nothing stored.
	for _, tt := range []struct {
		contentType, body string
		want              int
	}{
		{"application/json", `{"Status":"completed"}`, 400},
		{"application/json", `{"CallSid":`, 400},
		{"application/x-www-form-urlencoded", "CallSid=%zz", 400},
		{"application/json", `{"CallSid":"x","Pad":"` + strings.Repeat("a", exotel.MaxCallbackBody) + `"}`, 413},
	} {
		if r := e.diallerCallback(testCallbackToken, tt.contentType, tt.body); r.status != tt.want ||
			tt.want == 413 && !strings.Contains(r.errorText(t), "callback larger than") {
			t.Errorf("%.40s: %d %s, want %d", tt.body, r.status, r.body, tt.want)
		}
	}
	if _, n := fc.counts(); n != 0 || e.store.logCount() != 0 {
		t.Fatalf("refused callbacks stored: %d applied, %d logged", n, e.store.logCount())
	}

	// A call we do not know: 200, so that the dialler stops retrying.
	fc.set(func(f *fakeCalls) {
		f.cbHook = func(context.Context, *actors.DialledCall) error { return actors.ErrNotFound }
	})
	if r := e.diallerCallback(testCallbackToken, "application/json", terminalJSON); r.status != 200 || r.json(t)["status"] != "unknown call" {
		t.Fatalf("unknown call: %d %s", r.status, r.body)
	}
	if got := e.store.outcome(1); got != "unknown call" {
		t.Fatalf("unknown call outcome %q", got)
	}

	// Not committed: 503, so that the dialler retries.
	fc.set(func(f *fakeCalls) {
		f.cbHook = func(context.Context, *actors.DialledCall) error { return actors.ErrUnavailable }
	})
	if r := e.diallerCallback(testCallbackToken, "application/json", terminalJSON); r.status != 503 {
		t.Fatalf("unavailable: %d %s", r.status, r.body)
	}
	if got := e.store.outcome(2); !strings.HasPrefix(got, "failed: ") {
		t.Fatalf("failed outcome %q", got)
	}
	fc.set(func(f *fakeCalls) {
		f.cbHook = func(context.Context, *actors.DialledCall) error { panic("boom") }
	})
	if r := e.diallerCallback(testCallbackToken, "application/json", terminalJSON); r.status != 503 {
		t.Fatalf("panic: %d %s", r.status, r.body)
	}
	fc.set(func(f *fakeCalls) { f.cbHook = nil })
	e.store.set(func(f *fakeStore) { f.logErr = errors.New("database down") })
	if r := e.diallerCallback(testCallbackToken, "application/json", terminalJSON); r.status != 503 {
		t.Fatalf("log failed: %d %s", r.status, r.body)
	}
}

// The raw log and the call's change are committed at once, and the answer
// waits for both.
func TestDiallerWebhookLogsAndAppliesConcurrently(t *testing.T) {
	e, fc := newCallsEnv(t)
	logEntered, applyEntered := make(chan struct{}), make(chan struct{})
	e.store.set(func(f *fakeStore) {
		f.logHook = func(ctx context.Context) {
			close(logEntered)
			select {
			case <-applyEntered:
			case <-time.After(guard):
			}
		}
	})
	fc.set(func(f *fakeCalls) {
		f.cbHook = func(ctx context.Context, cb *actors.DialledCall) error {
			close(applyEntered)
			select {
			case <-logEntered:
				return nil
			case <-time.After(guard):
				return errors.New("log not started concurrently")
			}
		}
	})
	if r := e.diallerCallback(testCallbackToken, "application/json", terminalJSON); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
