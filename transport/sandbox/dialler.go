package sandbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"mime/multipart"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/transport/exotel"
)

// DiallerPrefix is where HandleAPI is mounted: a client's api_base is
// <public_url>/sandbox/exotel.
const DiallerPrefix = "/sandbox/exotel"

// What a dialled number does, as DiallerOptions.Outcome decides.
const (
	OutcomeAnswer   = "answer"
	OutcomeNoAnswer = "no-answer"
	OutcomeBusy     = "busy"
	OutcomeFail     = "fail"
)

// DiallerOptions configures the fake Exotel click-to-call API.
type DiallerOptions struct {
	AccountSID string        // the only account served (the path's <sid>)
	APIKey     string        // HTTP Basic user
	APIToken   string        // HTTP Basic password
	CallerID   string        // the only ExoPhone accepted as CallerId
	RingDelay  time.Duration // each leg rings this long before it answers or not; 300ms when zero
	TalkTime   time.Duration // a connected call lasts this long; 2s when zero
	// Outcome decides what a dialled number does when it rings:
	// OutcomeAnswer, OutcomeNoAnswer, OutcomeBusy or OutcomeFail (an
	// unknown value fails). Every number answers when nil.
	Outcome func(number string) string
	// PublicURL is the server's http.public_url: recordings are
	// <PublicURL>/sandbox/exotel/recordings/<sid>.wav.
	PublicURL string
	// LocalURL, when set, is where the fake reaches the server: callbacks
	// to a URL under PublicURL go to the same path under LocalURL, as a
	// proxy in front of the server would forward them.
	LocalURL string
	Log      zerolog.Logger

	CallbackBackoff time.Duration // before each redelivery of a callback; 200ms when zero
	CallbackTimeout time.Duration // one callback POST; 15s (Exotel's limit) when zero
}

// SandboxCall is a valid connect request the fake received.
type SandboxCall struct {
	Sid                       string // the call placed; "" when the request was refused
	From, To, CallerID        string
	CustomField               string
	Record                    bool
	TimeLimit, TimeOut        int
	StatusCallback            string
	StatusCallbackEvents      []string
	StatusCallbackContentType string
	HTTPStatus                int // what the API answered
	At                        time.Time
}

// DiallerEvent is something that happened to a call; subscribers get them
// in order for each call.
type DiallerEvent struct {
	Type string // DiallerConnect, DiallerAnswered or DiallerEnded
	Call SandboxCall
	// Status is the call's status after the event: in-progress, or at the
	// end completed, no-answer, busy or failed.
	Status string
	// Delivered reports, for answered and ended, whether the callback was
	// acknowledged with 2xx. Ended comes after the terminal callback's
	// last attempt, so a test that waits for it sees the final state.
	Delivered bool
}

// DiallerEvent types.
const (
	DiallerConnect  = "connect"  // a connect request was answered (Call.Sid is empty when it placed no call)
	DiallerAnswered = "answered" // the first leg answered
	DiallerEnded    = "ended"    // the call ended
)

// Limits of the fake, as Exotel's.
const (
	diallerMaxCalls      = 10000
	diallerCallbackTries = 3 // one delivery and two retries, as Exotel
	diallerDefaultPage   = 50
	diallerMaxPage       = 100
	diallerToneRate      = 8000
	diallerToneHz        = 440
)

// Dialler is a fake Exotel Voice v1 API: it places click-to-call calls,
// rings their legs, posts answered and terminal callbacks, answers call
// details and bulk lookups, and serves recordings. It is safe for
// concurrent use.
type Dialler struct {
	fake[DiallerEvent]
	o        DiallerOptions
	wav      []byte
	failures failQueue[connectFailure]

	// guarded by mu
	drop     bool
	requests []SandboxCall
	calls    []*dialCall
	bySid    map[string]*dialCall
}

type connectFailure struct {
	httpStatus int
	placed     bool // the call is placed all the same
}

// dialCall is one placed call; its state is guarded by Dialler.mu.
type dialCall struct {
	req          SandboxCall
	status       string
	created      time.Time
	updated      time.Time
	end          time.Time
	duration     int
	conversation int
	legs         []exotel.Leg
	recording    string
}

// NewDialler returns a fake dialler. Close stops its calls.
func NewDialler(o DiallerOptions) *Dialler {
	if o.RingDelay <= 0 {
		o.RingDelay = 300 * time.Millisecond
	}
	if o.TalkTime <= 0 {
		o.TalkTime = 2 * time.Second
	}
	if o.CallbackBackoff <= 0 {
		o.CallbackBackoff = 200 * time.Millisecond
	}
	if o.CallbackTimeout <= 0 {
		o.CallbackTimeout = 15 * time.Second
	}
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	o.LocalURL = strings.TrimRight(o.LocalURL, "/")
	return &Dialler{
		fake: newFake[DiallerEvent](o.Log, "exotel", webhooks{
			agent:    "Exotel-Callback/1.0",
			timeout:  o.CallbackTimeout,
			what:     "status callback",
			attempts: diallerCallbackTries,
			backoff:  o.CallbackBackoff,
			acked:    is2xx,
		}),
		o:     o,
		wav:   ToneWAV(time.Second),
		bySid: make(map[string]*dialCall),
	}
}

// Close hangs up every running call without callbacks, waits for the
// background goroutines and closes every subscription. API calls after
// Close fail with 503.
func (d *Dialler) Close() { d.close() }

// FailNextConnect makes the next n valid connect requests fail with
// httpStatus (500 when not a 4xx or 5xx) and place no call. Failures queue
// up behind earlier ones.
func (d *Dialler) FailNextConnect(n int, httpStatus int) {
	if httpStatus < 400 || httpStatus > 599 {
		httpStatus = fasthttp.StatusInternalServerError
	}
	d.failures.add(n, connectFailure{httpStatus: httpStatus})
}

// FailAfterPlacing makes the next n valid connect requests place their
// call and then answer 500, as a dialler that fails after acting would:
// the client cannot tell whether the call exists. Failures queue up
// behind earlier ones.
func (d *Dialler) FailAfterPlacing(n int) {
	d.failures.add(n, connectFailure{httpStatus: fasthttp.StatusInternalServerError, placed: true})
}

// DropCallbacks makes callbacks due from now on be dropped (drop true) or
// posted again (false). Calls still ring, end and show in call details.
func (d *Dialler) DropCallbacks(drop bool) {
	d.mu.Lock()
	d.drop = drop
	d.mu.Unlock()
}

// Calls returns every valid connect request received, oldest first (the
// most recent 10000): the calls placed and the requests an injected
// failure refused (Sid empty). Requests refused as invalid (401, 403, 400)
// are not kept.
func (d *Dialler) Calls() []SandboxCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cloneEach(d.requests, SandboxCall.clone)
}

func (c SandboxCall) clone() SandboxCall {
	c.StatusCallbackEvents = slices.Clone(c.StatusCallbackEvents)
	return c
}

// Subscribe returns a channel that receives every DiallerEvent from now on,
// and a function that ends the subscription. A subscriber that falls more
// than 256 events behind misses events. The channel is closed by the
// cancel function or by Close.
func (d *Dialler) Subscribe() (<-chan DiallerEvent, func()) { return d.subscribe() }

// publishEventLocked tells subscribers; d.mu is held.
func (d *Dialler) publishEventLocked(ev DiallerEvent) {
	d.publishLocked(ev, func() {
		d.log.Warn().Str("sid", ev.Call.Sid).Str("event", ev.Type).Msg("subscriber too slow, event not delivered to it")
	})
}

func (d *Dialler) publish(ev DiallerEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev.Call = ev.Call.clone()
	d.publishEventLocked(ev)
}

// HandleAPI serves everything under /sandbox/exotel/ like Exotel:
//
//   - POST /v1/Accounts/<sid>/Calls/connect.json places a call (HTTP Basic
//     APIKey:APIToken; From, To and CallerId, the configured ExoPhone, are
//     required) and answers {"Call":{...,"Status":"in-progress"}} with a new
//     32-hex-digit Sid, then rings the legs and posts the callbacks.
//   - GET /v1/Accounts/<sid>/Calls/<CallSid>.json is the call's details,
//     with leg details when details=true.
//   - GET /v1/Accounts/<sid>/Calls.json is the bulk lookup, filtered by
//     Sid, DateCreated (gte:/lte:), From, To, Status, Direction and, beyond
//     Exotel's documented filters, CustomField, newest first unless
//     SortBy=DateCreated:asc, paged by PageSize and the After cursor of
//     NextPageUri. Unlike Exotel's it lists calls still running.
//   - GET /recordings/<CallSid>.wav is a recorded call's audio (no
//     authentication, like the pre-signed links Exotel hands out).
//
// Errors are {"RestException":{"Status","Message"}}: 401 without the right
// key and token, 403 for another account, 400 for a bad request, 404 for an
// unknown call. Answers are always JSON.
func (d *Dialler) HandleAPI(ctx *fasthttp.RequestCtx) {
	path := strings.TrimPrefix(string(ctx.Path()), DiallerPrefix)
	if name, ok := strings.CutPrefix(path, "/recordings/"); ok {
		d.serveRecording(ctx, name)
		return
	}
	if !d.authorized(ctx) {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="Exotel API"`)
		writeRestException(ctx, fasthttp.StatusUnauthorized, "Authentication is required to view this resource.")
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 4 || len(parts) > 5 || parts[0] != "v1" || parts[1] != "Accounts" ||
		len(parts) == 4 && parts[3] != "Calls" && parts[3] != "Calls.json" || len(parts) == 5 && parts[3] != "Calls" {
		writeRestException(ctx, fasthttp.StatusNotFound, "The requested resource "+path+" was not found")
		return
	}
	if parts[2] != d.o.AccountSID {
		writeRestException(ctx, fasthttp.StatusForbidden, "The API key does not belong to account "+parts[2])
		return
	}
	if d.isClosed() {
		writeRestException(ctx, fasthttp.StatusServiceUnavailable, "The sandbox is shutting down")
		return
	}
	switch {
	case len(parts) == 4:
		if !allowMethod(ctx, fasthttp.MethodGet) {
			return
		}
		d.serveList(ctx)
	case strings.TrimSuffix(parts[4], ".json") == "connect":
		if !allowMethod(ctx, fasthttp.MethodPost) {
			return
		}
		d.connect(ctx)
	default:
		if !allowMethod(ctx, fasthttp.MethodGet) {
			return
		}
		d.serveDetails(ctx, strings.TrimSuffix(parts[4], ".json"))
	}
}

func allowMethod(ctx *fasthttp.RequestCtx, method string) bool {
	if string(ctx.Method()) == method || method == fasthttp.MethodGet && ctx.IsHead() {
		return true
	}
	ctx.Response.Header.Set(fasthttp.HeaderAllow, method)
	writeRestException(ctx, fasthttp.StatusMethodNotAllowed, "Method not allowed")
	return false
}

// authorized checks HTTP Basic APIKey:APIToken.
func (d *Dialler) authorized(ctx *fasthttp.RequestCtx) bool {
	return basicAuthorized(ctx, d.o.APIKey, d.o.APIToken)
}

// connect serves Calls/connect.
func (d *Dialler) connect(ctx *fasthttp.RequestCtx) {
	req, msg := d.validateConnect(ctx)
	if msg != "" {
		writeRestException(ctx, fasthttp.StatusBadRequest, msg)
		return
	}
	req.At = time.Now()
	f, failing := d.failures.take()
	if failing && !f.placed {
		req.HTTPStatus = f.httpStatus
		d.recordRequest(req)
		d.log.Info().Int("http_status", f.httpStatus).Str("custom_field", req.CustomField).Msg("injected connect failure")
		writeRestException(ctx, f.httpStatus, "Injected failure: the call was not placed")
		return
	}
	req.Sid = randomHex(16)
	req.HTTPStatus = fasthttp.StatusOK
	if failing {
		req.HTTPStatus = f.httpStatus
	}
	c, ok := d.place(req)
	if !ok {
		writeRestException(ctx, fasthttp.StatusServiceUnavailable, "The sandbox is shutting down")
		return
	}
	if failing {
		d.log.Info().Str("sid", req.Sid).Str("custom_field", req.CustomField).Msg("call placed, answering 500 as injected")
		writeRestException(ctx, f.httpStatus, "Internal error")
		return
	}
	d.log.Debug().Str("sid", req.Sid).Str("from", req.From).Str("to", req.To).Msg("call placed")
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"Call": d.resource(c, false)})
}

// validateConnect reads and checks a connect form as Exotel does.
func (d *Dialler) validateConnect(ctx *fasthttp.RequestCtx) (req SandboxCall, msg string) {
	args := ctx.PostArgs()
	get := func(name string) string { return strings.TrimSpace(string(args.Peek(name))) }
	req.From, req.To, req.CallerID = get("From"), get("To"), get("CallerId")
	for _, p := range []struct{ name, value string }{{"From", req.From}, {"To", req.To}, {"CallerId", req.CallerID}} {
		if p.value == "" {
			return req, "Missing parameter " + p.name
		}
		if !phoneLike(p.value) {
			return req, "Invalid parameter " + p.name + ": " + p.value + " is not a phone number"
		}
	}
	if !exotel.SameNumber(req.CallerID, d.o.CallerID) {
		return req, "CallerId " + req.CallerID + " is not an ExoPhone of this account"
	}
	switch rec := strings.ToLower(get("Record")); rec {
	case "", "false":
	case "true":
		req.Record = true
	default:
		return req, "Invalid parameter Record: " + rec
	}
	for _, p := range []struct {
		name string
		dst  *int
		max  int
	}{{"TimeLimit", &req.TimeLimit, exotel.MaxTimeLimit}, {"TimeOut", &req.TimeOut, 3600}} {
		if v := get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > p.max {
				return req, "Invalid parameter " + p.name + ": " + v
			}
			*p.dst = n
		}
	}
	req.CustomField = string(args.Peek("CustomField"))
	if !utf8.ValidString(req.CustomField) || utf8.RuneCountInString(req.CustomField) > exotel.MaxCustomField {
		return req, "CustomField must be at most 128 characters"
	}
	if cb := get("StatusCallback"); cb != "" {
		u, err := url.Parse(cb)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return req, "Invalid parameter StatusCallback: " + cb
		}
		req.StatusCallback = cb
	}
	for i := 0; ; i++ {
		v := args.Peek("StatusCallbackEvents[" + strconv.Itoa(i) + "]")
		if v == nil {
			break
		}
		ev := strings.ToLower(strings.TrimSpace(string(v)))
		if ev != exotel.EventTerminal && ev != exotel.EventAnswered {
			return req, "Invalid parameter StatusCallbackEvents[" + strconv.Itoa(i) + "]: " + string(v)
		}
		req.StatusCallbackEvents = append(req.StatusCallbackEvents, ev)
	}
	switch ct := strings.ToLower(get("StatusCallbackContentType")); ct {
	case "", "application/x-www-form-urlencoded", "application/json", "multipart/form-data":
		req.StatusCallbackContentType = ct
	default:
		return req, "Invalid parameter StatusCallbackContentType: " + ct
	}
	return req, ""
}

// phoneLike accepts what a person would type as a phone number: 6 to 15
// digits, with + - ( ) . and spaces.
func phoneLike(s string) bool {
	n := len(digitsOnly(s))
	return n >= 6 && n <= 15 && !strings.ContainsFunc(s, invalidPhoneRune)
}

func (d *Dialler) recordRequest(req SandboxCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recordRequestLocked(req)
}

func (d *Dialler) recordRequestLocked(req SandboxCall) {
	d.requests = keepLast(d.requests, req, diallerMaxCalls, nil)
	d.publishEventLocked(DiallerEvent{Type: DiallerConnect, Call: req.clone(), Status: callStatus(req)})
}

func callStatus(req SandboxCall) string {
	if req.Sid == "" {
		return ""
	}
	return exotel.StatusInProgress
}

// place records a placed call and starts ringing it, unless the fake is
// closed.
func (d *Dialler) place(req SandboxCall) (*dialCall, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, false
	}
	c := &dialCall{req: req, status: exotel.StatusInProgress, created: req.At, updated: req.At}
	d.calls = keepLast(d.calls, c, diallerMaxCalls, func(old *dialCall) { delete(d.bySid, old.req.Sid) })
	d.bySid[req.Sid] = c
	d.recordRequestLocked(req)
	queue := make(chan callback, 2)
	d.goLocked(func() { d.ring(c, queue) })
	d.goLocked(func() { d.deliverCallbacks(c, queue) })
	return c, true
}

// callback is one callback due, and the call's state it reports.
type callback struct {
	event  string // exotel.EventAnswered or exotel.EventTerminal
	status string
	params map[string]any
}

// normalizeOutcome maps Outcome's answer to one of the four outcomes.
func normalizeOutcome(s string) string {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-") {
	case "", OutcomeAnswer, "answered", exotel.StatusCompleted:
		return OutcomeAnswer
	case OutcomeNoAnswer, "noanswer":
		return OutcomeNoAnswer
	case OutcomeBusy:
		return OutcomeBusy
	}
	return OutcomeFail
}

// outcomeStatus is the leg and call status of an outcome that did not answer.
func outcomeStatus(outcome string) string {
	switch outcome {
	case OutcomeNoAnswer:
		return exotel.StatusNoAnswer
	case OutcomeBusy:
		return exotel.StatusBusy
	}
	return exotel.StatusFailed
}

// seconds rounds a duration up to whole seconds, as a telephone bill does.
func seconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// dialLeg rings number for RingDelay (cut to TimeOut, which means no
// answer) and says what it did; ok is false when the fake closed.
func (d *Dialler) dialLeg(c *dialCall, number string) (outcome string, ok bool) {
	outcome = OutcomeAnswer
	if d.o.Outcome != nil {
		outcome = normalizeOutcome(d.o.Outcome(number))
	}
	ring := d.o.RingDelay
	if limit := time.Duration(c.req.TimeOut) * time.Second; limit > 0 && ring > limit {
		ring = limit
		if outcome == OutcomeAnswer {
			outcome = OutcomeNoAnswer
		}
	}
	if !d.wait(ring) {
		return "", false
	}
	return outcome, true
}

// ring plays one call: From rings, then (if it answered) To, then they
// talk; each step updates the call and queues its callback.
func (d *Dialler) ring(c *dialCall, queue chan<- callback) {
	defer close(queue)
	start := c.req.At
	log := d.log.With().Str("sid", c.req.Sid).Logger()

	first, ok := d.dialLeg(c, c.req.From)
	if !ok {
		return
	}
	if first != OutcomeAnswer {
		st := outcomeStatus(first)
		log.Debug().Str("status", st).Msg("first leg did not answer")
		queue <- d.finish(c, st, time.Now(), start, 0, []exotel.Leg{{Status: st, AnsweredBy: "NA"}}, false)
		return
	}
	answered := time.Now()
	queue <- d.answer(c, answered)

	second, ok := d.dialLeg(c, c.req.To)
	if !ok {
		return
	}
	bridged := time.Now()
	if second != OutcomeAnswer {
		st := outcomeStatus(second)
		log.Debug().Str("status", st).Msg("second leg did not answer")
		legs := []exotel.Leg{
			{OnCallDuration: seconds(bridged.Sub(answered)), Status: exotel.StatusCompleted, AnsweredBy: "human"},
			{Status: st, AnsweredBy: "NA"},
		}
		queue <- d.finish(c, st, bridged, start, 0, legs, false)
		return
	}
	talk := d.o.TalkTime
	if limit := time.Duration(c.req.TimeLimit) * time.Second; limit > 0 && talk > limit {
		talk = limit
	}
	if !d.wait(talk) {
		return
	}
	end := time.Now()
	legs := []exotel.Leg{
		{OnCallDuration: seconds(end.Sub(answered)), Status: exotel.StatusCompleted, AnsweredBy: "human"},
		{OnCallDuration: seconds(end.Sub(bridged)), Status: exotel.StatusCompleted, AnsweredBy: "human"},
	}
	log.Debug().Msg("call completed")
	queue <- d.finish(c, exotel.StatusCompleted, end, start, seconds(talk), legs, c.req.Record)
}

// answer records that From answered and builds the answered callback.
func (d *Dialler) answer(c *dialCall, at time.Time) callback {
	d.mu.Lock()
	defer d.mu.Unlock()
	c.updated = at
	c.legs = []exotel.Leg{{Status: exotel.StatusInProgress, AnsweredBy: "human"}}
	return callback{event: exotel.EventAnswered, status: c.status, params: d.callbackParamsLocked(c, exotel.EventAnswered)}
}

// finish records the end of the call and builds the terminal callback.
func (d *Dialler) finish(c *dialCall, status string, end, start time.Time, conversation int, legs []exotel.Leg, recorded bool) callback {
	d.mu.Lock()
	defer d.mu.Unlock()
	c.status = status
	c.end, c.updated = end, end
	c.duration = seconds(end.Sub(start))
	c.conversation = conversation
	c.legs = legs
	if recorded {
		c.recording = d.o.PublicURL + DiallerPrefix + "/recordings/" + c.req.Sid + ".wav"
	}
	return callback{event: exotel.EventTerminal, status: status, params: d.callbackParamsLocked(c, exotel.EventTerminal)}
}

// callbackParamsLocked renders the callback for event as Exotel does: with
// no events subscribed, only CallSid, Status, RecordingUrl and DateUpdated.
func (d *Dialler) callbackParamsLocked(c *dialCall, event string) map[string]any {
	p := map[string]any{
		"CallSid":      c.req.Sid,
		"Status":       c.status,
		"RecordingUrl": nullable(c.recording),
		"DateUpdated":  exotel.FormatTime(c.updated),
	}
	if len(c.req.StatusCallbackEvents) == 0 {
		return p
	}
	legs := make([]map[string]any, len(c.legs))
	for i, l := range c.legs {
		legs[i] = map[string]any{"OnCallDuration": l.OnCallDuration, "Status": l.Status, "AnsweredBy": l.AnsweredBy}
	}
	p["EventType"] = event
	p["DateCreated"] = exotel.FormatTime(c.created)
	p["From"] = c.req.From
	p["To"] = c.req.To
	p["PhoneNumberSid"] = c.req.CallerID
	p["StartTime"] = exotel.FormatTime(c.created)
	p["EndTime"] = nullable(exotel.FormatTime(c.end))
	p["ConversationDuration"] = c.conversation
	p["Direction"] = exotel.DirectionOutboundAPI
	p["CustomField"] = c.req.CustomField
	p["Legs"] = legs
	return p
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// deliverCallbacks posts a call's callbacks in order, each until
// acknowledged or tried three times, and tells subscribers.
func (d *Dialler) deliverCallbacks(c *dialCall, queue <-chan callback) {
	for cb := range queue {
		delivered := false
		if d.wanted(c, cb.event) {
			delivered = d.deliver(c.req, cb)
		}
		ev := DiallerEvent{Type: DiallerAnswered, Call: c.req, Status: cb.status, Delivered: delivered}
		if cb.event == exotel.EventTerminal {
			ev.Type = DiallerEnded
		}
		d.publish(ev)
	}
}

// wanted reports whether event's callback is to be posted now.
func (d *Dialler) wanted(c *dialCall, event string) bool {
	if c.req.StatusCallback == "" {
		return false
	}
	if event == exotel.EventAnswered && !slices.Contains(c.req.StatusCallbackEvents, exotel.EventAnswered) {
		return false
	}
	d.mu.Lock()
	drop := d.drop
	d.mu.Unlock()
	if drop {
		d.log.Info().Str("sid", c.req.Sid).Str("event", event).Msg("callback dropped as asked")
		return false
	}
	return true
}

// deliver posts one callback until the server answers 2xx, at most three
// times, or until Close.
func (d *Dialler) deliver(req SandboxCall, cb callback) bool {
	contentType, body := encodeCallback(req.StatusCallbackContentType, cb.params)
	target := d.target(req.StatusCallback)
	log := d.log.With().Str("sid", req.Sid).Str("event", cb.event).Logger()
	return d.deliverRetrying(log, func() (int, []byte, error) {
		return d.postTo(context.Background(), target, contentType, body, nil)
	})
}

// encodeCallback renders params as JSON, multipart or (by default) a
// urlencoded form; legs in forms are Legs[<i>][<field>].
func encodeCallback(contentType string, params map[string]any) (string, []byte) {
	if contentType == "application/json" {
		b, _ := json.Marshal(params) // strings, ints, nil and legs: cannot fail
		return contentType, b
	}
	var pairs [][2]string
	for _, name := range sortedKeys(params) {
		switch v := params[name].(type) {
		case []map[string]any:
			for i, leg := range v {
				for _, field := range sortedKeys(leg) {
					pairs = append(pairs, [2]string{"Legs[" + strconv.Itoa(i) + "][" + field + "]", formValue(leg[field])})
				}
			}
		default:
			pairs = append(pairs, [2]string{name, formValue(v)})
		}
	}
	if contentType == "multipart/form-data" {
		var buf bytes.Buffer
		w := multipart.NewWriter(&buf)
		for _, p := range pairs {
			w.WriteField(p[0], p[1]) // writes to memory: cannot fail
		}
		w.Close()
		return w.FormDataContentType(), buf.Bytes()
	}
	form := make([]string, len(pairs))
	for i, p := range pairs {
		form[i] = url.QueryEscape(p[0]) + "=" + url.QueryEscape(p[1])
	}
	return "application/x-www-form-urlencoded", []byte(strings.Join(form, "&"))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func formValue(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// target is where a callback to u is posted: a URL under PublicURL goes to
// the same path under LocalURL when that is set.
func (d *Dialler) target(u string) string {
	if d.o.PublicURL == "" || d.o.LocalURL == "" || !underURL(u, d.o.PublicURL) {
		return u
	}
	return d.o.LocalURL + u[len(d.o.PublicURL):]
}

// exotelCall is the Call resource as the API renders it.
type exotelCall struct {
	Sid            string         `json:"Sid"`
	ParentCallSid  *string        `json:"ParentCallSid"`
	DateCreated    string         `json:"DateCreated"`
	DateUpdated    string         `json:"DateUpdated"`
	AccountSid     string         `json:"AccountSid"`
	To             string         `json:"To"`
	From           string         `json:"From"`
	PhoneNumberSid string         `json:"PhoneNumberSid"`
	Status         string         `json:"Status"`
	StartTime      string         `json:"StartTime"`
	EndTime        *string        `json:"EndTime"`
	Duration       *string        `json:"Duration"`
	Price          *string        `json:"Price"`
	Direction      string         `json:"Direction"`
	AnsweredBy     *string        `json:"AnsweredBy"`
	ForwardedFrom  *string        `json:"ForwardedFrom"`
	CallerName     *string        `json:"CallerName"`
	URI            string         `json:"Uri"`
	RecordingURL   *string        `json:"RecordingUrl"`
	CustomField    string         `json:"CustomField,omitempty"`
	Details        *exotelDetails `json:"Details,omitempty"`
}

type exotelDetails struct {
	ConversationDuration int            `json:"ConversationDuration"`
	Leg1Status           *string        `json:"Leg1Status"`
	Leg2Status           *string        `json:"Leg2Status"`
	Legs                 []exotelLegRef `json:"Legs"`
}

type exotelLegRef struct {
	Leg struct {
		ID             int `json:"Id"`
		OnCallDuration int `json:"OnCallDuration"`
	} `json:"Leg"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// resource renders a call, with leg details when details is set.
func (d *Dialler) resource(c *dialCall, details bool) exotelCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.resourceLocked(c, details)
}

func (d *Dialler) resourceLocked(c *dialCall, details bool) exotelCall {
	r := exotelCall{
		Sid:            c.req.Sid,
		DateCreated:    exotel.FormatTime(c.created),
		DateUpdated:    exotel.FormatTime(c.updated),
		AccountSid:     d.o.AccountSID,
		To:             c.req.To,
		From:           c.req.From,
		PhoneNumberSid: c.req.CallerID,
		Status:         c.status,
		StartTime:      exotel.FormatTime(c.created),
		EndTime:        strPtr(exotel.FormatTime(c.end)),
		Direction:      exotel.DirectionOutboundAPI,
		URI:            "/v1/Accounts/" + d.o.AccountSID + "/Calls/" + c.req.Sid + ".json",
		RecordingURL:   strPtr(c.recording),
		CustomField:    c.req.CustomField,
	}
	if !c.end.IsZero() {
		r.Duration = strPtr(strconv.Itoa(c.duration))
		r.Price = strPtr("0.000")
	}
	if details {
		det := &exotelDetails{ConversationDuration: c.conversation, Legs: []exotelLegRef{}}
		for i, l := range c.legs {
			var ref exotelLegRef
			ref.Leg.ID, ref.Leg.OnCallDuration = i+1, l.OnCallDuration
			det.Legs = append(det.Legs, ref)
			switch i {
			case 0:
				det.Leg1Status = strPtr(l.Status)
			case 1:
				det.Leg2Status = strPtr(l.Status)
			}
		}
		r.Details = det
	}
	return r
}

// serveDetails answers one call's details.
func (d *Dialler) serveDetails(ctx *fasthttp.RequestCtx, sid string) {
	d.mu.Lock()
	c, ok := d.bySid[sid]
	var r exotelCall
	if ok {
		r = d.resourceLocked(c, queryTrue(ctx, "details"))
	}
	d.mu.Unlock()
	if !ok {
		writeRestException(ctx, fasthttp.StatusNotFound, "Call "+sid+" not found")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"Call": r})
}

func queryTrue(ctx *fasthttp.RequestCtx, name string) bool {
	return strings.EqualFold(string(ctx.QueryArgs().Peek(name)), "true")
}

// listFilter is a bulk lookup's filters.
type listFilter struct {
	sids, from, to, statuses []string
	direction, customField   string
	hasCustomField           bool
	gte, lte                 time.Time
}

func commaList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// parseListFilter reads the bulk lookup's query, or says what is wrong.
func parseListFilter(q *fasthttp.Args) (f listFilter, msg string) {
	get := func(name string) string { return string(q.Peek(name)) }
	f.sids = commaList(get("Sid"))
	f.from = commaList(get("From"))
	f.to = commaList(get("To"))
	f.statuses = commaList(strings.ToLower(get("Status")))
	f.direction = strings.ToLower(strings.TrimSpace(get("Direction")))
	f.customField, f.hasCustomField = get("CustomField"), q.Has("CustomField")
	if len(f.sids) > 100 || len(f.from) > 5 || len(f.to) > 5 {
		return f, "Too many values in a filter"
	}
	if dc := strings.TrimSpace(get("DateCreated")); dc != "" {
		for _, part := range strings.Split(dc, ";") {
			op, value, _ := strings.Cut(strings.TrimSpace(part), ":")
			t, ok := exotel.ParseTime(value)
			if !ok {
				return f, "Invalid DateCreated filter: " + dc
			}
			switch op {
			case "gte":
				f.gte = t
			case "lte":
				f.lte = t
			default:
				return f, "Invalid DateCreated operator: " + op
			}
		}
	}
	return f, ""
}

func (f listFilter) matches(c *dialCall) bool {
	anyNumber := func(numbers []string, n string) bool {
		return slices.ContainsFunc(numbers, func(v string) bool { return exotel.SameNumber(v, n) })
	}
	created := c.created.Truncate(time.Second)
	switch {
	case len(f.sids) > 0 && !slices.Contains(f.sids, c.req.Sid),
		len(f.from) > 0 && !anyNumber(f.from, c.req.From),
		len(f.to) > 0 && !anyNumber(f.to, c.req.To),
		len(f.statuses) > 0 && !slices.Contains(f.statuses, c.status),
		f.direction != "" && f.direction != exotel.DirectionOutboundAPI,
		f.hasCustomField && f.customField != c.req.CustomField,
		!f.gte.IsZero() && created.Before(f.gte),
		!f.lte.IsZero() && created.After(f.lte):
		return false
	}
	return true
}

// serveList answers the bulk lookup.
func (d *Dialler) serveList(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	f, msg := parseListFilter(q)
	pageSize, offset := diallerDefaultPage, 0
	if v := string(q.Peek("PageSize")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			msg = "Invalid PageSize: " + v
		}
		pageSize = min(n, diallerMaxPage)
	}
	if v := string(q.Peek("After")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			msg = "Invalid After cursor: " + v
		}
		offset = n
	}
	asc := false
	switch sortBy := string(q.Peek("SortBy")); sortBy {
	case "", "DateCreated:desc":
	case "DateCreated:asc":
		asc = true
	default:
		msg = "Invalid SortBy: " + sortBy
	}
	if msg != "" {
		writeRestException(ctx, fasthttp.StatusBadRequest, msg)
		return
	}
	details := queryTrue(ctx, "details")

	d.mu.Lock()
	var matched []*dialCall
	for _, c := range d.calls {
		if f.matches(c) {
			matched = append(matched, c)
		}
	}
	if !asc {
		slices.Reverse(matched)
	}
	total := len(matched)
	page := []exotelCall{}
	for i := offset; i < total && i < offset+pageSize; i++ {
		page = append(page, d.resourceLocked(matched[i], details))
	}
	d.mu.Unlock()

	base := "/v1/Accounts/" + d.o.AccountSID + "/Calls.json"
	uri := func(after int) *string {
		a := fasthttp.AcquireArgs()
		defer fasthttp.ReleaseArgs(a)
		q.CopyTo(a)
		a.Del("After")
		if after > 0 {
			a.Set("After", strconv.Itoa(after))
		}
		s := base
		if a.Len() > 0 {
			s += "?" + a.String()
		}
		return &s
	}
	meta := map[string]any{"Total": total, "PageSize": pageSize, "FirstPageUri": uri(0), "PrevPageUri": nil, "NextPageUri": nil}
	if offset > 0 {
		meta["PrevPageUri"] = uri(max(offset-pageSize, 0))
	}
	if offset+pageSize < total {
		meta["NextPageUri"] = uri(offset + pageSize)
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"Metadata": meta, "Calls": page})
}

// serveRecording serves <sid>.wav of a recorded call.
func (d *Dialler) serveRecording(ctx *fasthttp.RequestCtx, name string) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, "GET, HEAD")
		ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
		return
	}
	sid, ok := strings.CutSuffix(name, ".wav")
	d.mu.Lock()
	c := d.bySid[sid]
	recorded := ok && c != nil && c.recording != ""
	d.mu.Unlock()
	if !recorded {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString("no such recording\n")
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("audio/wav")
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "private, max-age=3600")
	ctx.SetBody(d.wav)
}

// writeRestException answers with Exotel's error JSON.
func writeRestException(ctx *fasthttp.RequestCtx, httpStatus int, message string) {
	writeJSON(ctx, httpStatus, map[string]any{"RestException": map[string]any{"Status": httpStatus, "Message": message}})
}

// ToneWAV is a WAV file of a 440 Hz tone lasting d (at least one sample):
// 8 kHz mono 16-bit PCM, the sound of every sandbox recording.
func ToneWAV(d time.Duration) []byte {
	n := max(int(d*diallerToneRate/time.Second), 1)
	const (
		channels      = 1
		bitsPerSample = 16
		blockAlign    = channels * bitsPerSample / 8
	)
	dataLen := n * blockAlign
	b := make([]byte, 44+dataLen)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+dataLen))
	copy(b[8:], "WAVE")
	copy(b[12:], "fmt ")
	binary.LittleEndian.PutUint32(b[16:], 16) // fmt chunk size
	binary.LittleEndian.PutUint16(b[20:], 1)  // PCM
	binary.LittleEndian.PutUint16(b[22:], channels)
	binary.LittleEndian.PutUint32(b[24:], diallerToneRate)
	binary.LittleEndian.PutUint32(b[28:], diallerToneRate*blockAlign)
	binary.LittleEndian.PutUint16(b[32:], blockAlign)
	binary.LittleEndian.PutUint16(b[34:], bitsPerSample)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(dataLen))
	for i := 0; i < n; i++ {
		v := int16(0.3 * math.MaxInt16 * math.Sin(2*math.Pi*diallerToneHz*float64(i)/diallerToneRate))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	return b
}
