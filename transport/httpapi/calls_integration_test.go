package httpapi_test

// Click-to-call end to end: POST /api/calls -> call actor -> exotel.Dialler
// -> the sandbox dialler (Exotel's wire format) -> status callbacks to
// /webhooks/dialler/{callback_token} -> call events on the RM socket, the
// call record and the CRM, on SQLite and on MariaDB.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/exotel"
	"urva/transport/sandbox"
)

func init() {
	// docs/crm.md: the keys of call.completed and call.failed.
	call := map[string][]string{
		"":             {"conversation", "contact", "call"},
		"conversation": {"id", "channel", "business_number", "assigned_rm_id"},
		"contact":      {"phone", "name"},
		"call": {"id", "status", "rm_id", "contact_phone", "rm_phone", "caller_id", "first_leg", "provider_call_sid",
			"requested_at", "answered_at", "started_at", "ended_at", "talk_seconds", "recording_url", "legs", "error"},
	}
	documentedKeys[persistence.OutboxCallCompleted] = call
	documentedKeys[persistence.OutboxCallFailed] = call
}

// Contacts of the call tests.
const (
	callContact   = "+919811100001"
	noAnswerPhone = "+919811100011"
	busyPhone     = "+919811100012"
)

// startCall posts POST /api/calls with body.
func (s *stack) startCall(token string, body any) response {
	s.t.Helper()
	return s.postJSON("/api/calls", token, body)
}

// mustStartCall starts a call and returns it as the 201 answer shows it.
func (s *stack) mustStartCall(token string, body any) persistence.OutboxCall {
	s.t.Helper()
	r := s.startCall(token, body)
	if r.status != http.StatusCreated {
		s.t.Fatalf("POST /api/calls %v: %v", body, r)
	}
	var out struct {
		Call *persistence.OutboxCall `json:"call"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.Call == nil || out.Call.ID == 0 {
		s.t.Fatalf("POST /api/calls: %v (%v)", r, err)
	}
	return *out.Call
}

// getCall reads GET /api/calls/{id} and requires 200.
func (s *stack) getCall(token string, id int64) persistence.OutboxCall {
	s.t.Helper()
	r := s.do("GET", fmt.Sprintf("/api/calls/%d", id), token, nil, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("GET /api/calls/%d: %v", id, r)
	}
	var out struct {
		Call *persistence.OutboxCall `json:"call"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.Call == nil {
		s.t.Fatalf("GET /api/calls/%d: %v (%v)", id, r, err)
	}
	return *out.Call
}

// postCallback posts a dialler status callback to path.
func (s *stack) postCallback(path, contentType string, body []byte) response {
	s.t.Helper()
	return s.do("POST", path, "", body, map[string]string{"Content-Type": contentType, "User-Agent": "Exotel-Callback/1.0"})
}

// callFrame is a "call" event of the socket or the events endpoint.
type callFrame struct {
	frame
	Call persistence.OutboxCall
}

func (f callFrame) String() string { return f.raw }

func asCallFrame(t *testing.T, f frame) (callFrame, bool) {
	t.Helper()
	if f.Type != "call" {
		return callFrame{}, false
	}
	var v struct {
		Call *persistence.OutboxCall `json:"call"`
	}
	if err := json.Unmarshal([]byte(f.raw), &v); err != nil || v.Call == nil {
		t.Fatalf("call frame without a call: %s (%v)", f, err)
	}
	return callFrame{frame: f, Call: *v.Call}, true
}

// callFramesUntil reads the socket until a call frame of call id has a
// status in until, and returns that call's frames in socket order.
func callFramesUntil(ws *wsClient, id int64, until ...string) []callFrame {
	ws.t.Helper()
	var out []callFrame
	for {
		f := ws.read()
		if f.Type == "error" {
			ws.t.Fatalf("socket error frame: %s (after %v)", f, out)
		}
		cf, ok := asCallFrame(ws.t, f)
		if !ok || cf.Call.ID != id {
			continue
		}
		out = append(out, cf)
		if slices.Contains(until, cf.Call.Status) {
			return out
		}
	}
}

func statusList(frames []callFrame) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = f.Call.Status
	}
	return out
}

// callEvents lists the call frames of call id among a conversation's events.
func (s *stack) callEvents(token string, conversationID, id int64) []callFrame {
	s.t.Helper()
	var out []callFrame
	for _, f := range s.events(token, conversationID) {
		if cf, ok := asCallFrame(s.t, f); ok && cf.Call.ID == id {
			out = append(out, cf)
		}
	}
	return out
}

// checkCallSeqs requires the frames of one conversation to carry strictly
// increasing seqs.
func checkCallSeqs(t *testing.T, frames []callFrame, conversationID int64) {
	t.Helper()
	var last int64
	for _, f := range frames {
		if f.ConversationID != conversationID || f.Seq <= last || f.Cursor == "" {
			t.Fatalf("call frames out of order or of another conversation (want %d): %v", conversationID, frames)
		}
		last = f.Seq
	}
}

// diallerEvent waits for the sandbox dialler's next event of type typ about
// a call matching match (nil: any).
func diallerEvent(t *testing.T, sub <-chan sandbox.DiallerEvent, typ string, match func(sandbox.SandboxCall) bool) sandbox.DiallerEvent {
	t.Helper()
	guard := time.After(itGuard)
	for {
		select {
		case ev, ok := <-sub:
			if !ok {
				t.Fatal("dialler subscription closed")
			}
			if ev.Type == typ && (match == nil || match(ev.Call)) {
				return ev
			}
		case <-guard:
			t.Fatalf("no %s event from the dialler", typ)
		}
	}
}

func byCustomField(id int64) func(sandbox.SandboxCall) bool {
	return func(c sandbox.SandboxCall) bool { return c.CustomField == strconv.FormatInt(id, 10) }
}

// placed lists the requests of the sandbox that placed a call.
func placed(calls []sandbox.SandboxCall) []sandbox.SandboxCall {
	var out []sandbox.SandboxCall
	for _, c := range calls {
		if c.Sid != "" {
			out = append(out, c)
		}
	}
	return out
}

// callbackJSON is a status callback as Exotel posts it as JSON.
func callbackJSON(sc sandbox.SandboxCall, event, status string, talk int, recording string) []byte {
	now := time.Now()
	v := map[string]any{
		"CallSid": sc.Sid, "EventType": event, "Status": status, "RecordingUrl": nil,
		"DateCreated": exotel.FormatTime(sc.At), "DateUpdated": exotel.FormatTime(now),
		"From": sc.From, "To": sc.To, "PhoneNumberSid": sc.CallerID, "StartTime": exotel.FormatTime(sc.At),
		"EndTime": nil, "ConversationDuration": talk, "Direction": "outbound-api", "CustomField": sc.CustomField,
		"Legs": []map[string]any{{"OnCallDuration": talk + 3, "Status": "completed", "AnsweredBy": "human"}},
	}
	if event == exotel.EventTerminal {
		v["EndTime"] = exotel.FormatTime(now)
		v["Legs"] = []map[string]any{
			{"OnCallDuration": talk + 3, "Status": "completed", "AnsweredBy": "human"},
			{"OnCallDuration": talk, "Status": "completed", "AnsweredBy": "human"},
		}
	}
	if recording != "" {
		v["RecordingUrl"] = recording
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// callCRMEvents lists the accepted CRM events of type typ about call id.
func callCRMEvents(t *testing.T, rcv *crmReceiver, typ string, id int64) []persistence.OutboxCallData {
	t.Helper()
	var out []persistence.OutboxCallData
	for _, e := range rcv.acceptedEvents() {
		if e.Type != typ {
			continue
		}
		var d persistence.OutboxCallData
		if err := json.Unmarshal(e.DataRaw, &d); err != nil {
			t.Fatalf("%s data: %v: %s", typ, err, e.DataRaw)
		}
		if d.Call.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// 1. Press call: one connect request with the right fields; the answered
// and terminal callbacks move the call through every state, in seq order,
// on the RM's socket; the call record holds the recording, the durations
// and both numbers; the CRM gets call.completed.
func TestCallEndToEnd(t *testing.T) {
	forEachCRM(t, time.Hour, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		rcv := newCRMReceiver(t, "127.0.0.1:0", nil)
		s := newStack(t, store, withCRM(rcv.url, time.Hour, wake), withCalls(callsConfig{}))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, strings.TrimPrefix(callContact, "+"), "Meera Iyer", "Please call me").ConversationID
		sub, cancel := s.dl.Subscribe()
		defer cancel()

		before := time.Now().Add(-time.Second)
		c := s.mustStartCall(tok, map[string]any{"conversation_id": conv})
		if c.Status != "requested" || c.RMID != s.rmA.ID || c.ContactPhone != callContact || c.RMPhone != "+919800000201" ||
			c.CallerID != itCallerID || c.FirstLeg != "contact" || c.ProviderCallSID != "" || c.RequestedAt.Before(before) {
			t.Fatalf("201 call = %+v", c)
		}

		frames := callFramesUntil(ws, c.ID, "completed", "failed", "no_answer", "busy", "canceled")
		want := []string{"requested", "dialling", "contact_answered", "connected", "completed"}
		if got := statusList(frames); !slices.Equal(got, want) {
			t.Fatalf("socket call statuses %v, want %v: %v", got, want, frames)
		}
		checkCallSeqs(t, frames, conv)

		// The dialler got one connect request, with Exotel's fields.
		ended := diallerEvent(t, sub, sandbox.DiallerEnded, byCustomField(c.ID))
		if !ended.Delivered || ended.Status != exotel.StatusCompleted {
			t.Fatalf("dialler end: %+v", ended)
		}
		reqs := s.dl.Calls()
		if len(reqs) != 1 {
			t.Fatalf("dialler got %d connect requests, want 1: %+v", len(reqs), reqs)
		}
		dc := reqs[0]
		if dc.Sid == "" || dc.HTTPStatus != http.StatusOK || dc.From != callContact || dc.To != "+919800000201" ||
			dc.CallerID != itCallerID || dc.CustomField != strconv.FormatInt(c.ID, 10) || !dc.Record ||
			dc.StatusCallback != s.base+itDiallerHookPath || dc.StatusCallbackContentType != "application/json" ||
			!slices.Contains(dc.StatusCallbackEvents, exotel.EventAnswered) || !slices.Contains(dc.StatusCallbackEvents, exotel.EventTerminal) {
			t.Fatalf("connect request = %+v", dc)
		}

		// The record.
		recording := s.base + sandbox.DiallerPrefix + "/recordings/" + dc.Sid + ".wav"
		got := s.getCall(tok, c.ID)
		if got.Status != "completed" || got.ProviderCallSID != dc.Sid || got.RecordingURL != recording || got.TalkSeconds < 1 ||
			got.ContactPhone != callContact || got.RMPhone != "+919800000201" || got.AnsweredAt == nil || got.StartedAt == nil ||
			got.EndedAt == nil || !got.StartedAt.Equal(got.EndedAt.Add(-time.Duration(got.TalkSeconds)*time.Second)) || got.Error != "" {
			t.Fatalf("GET call = %+v", got)
		}
		var legs []struct {
			Status          string `json:"status"`
			DurationSeconds int    `json:"duration_seconds"`
		}
		if err := json.Unmarshal(got.Legs, &legs); err != nil || len(legs) != 2 || legs[0].Status != "completed" ||
			legs[1].Status != "completed" || legs[1].DurationSeconds < 1 {
			t.Fatalf("legs = %s (%v)", got.Legs, err)
		}
		last := frames[len(frames)-1].Call
		if last.RecordingURL != recording || last.TalkSeconds != got.TalkSeconds {
			t.Errorf("completed frame's call = %+v, record %+v", last, got)
		}
		// The timeline holds the same events.
		if evs := s.callEvents(tok, conv, c.ID); !slices.Equal(statusList(evs), want) {
			t.Fatalf("events endpoint call statuses %v, want %v", statusList(evs), want)
		}
		// The recording is there.
		resp, err := s.hc.Get(recording)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "audio/wav" {
			t.Fatalf("GET recording: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}

		// The CRM gets call.completed, once.
		rcv.waitFor(t, "call.completed", func() bool {
			for _, e := range rcv.accepted {
				if e.Type == persistence.OutboxCallCompleted {
					return true
				}
			}
			return false
		})
		done := callCRMEvents(t, rcv, persistence.OutboxCallCompleted, c.ID)
		if len(done) != 1 {
			t.Fatalf("%d call.completed events, want 1", len(done))
		}
		d := done[0]
		if d.Conversation.ID != conv || d.Contact.Phone != callContact || d.Call.Status != "completed" ||
			d.Call.RecordingURL != recording || d.Call.TalkSeconds != got.TalkSeconds || d.Call.ProviderCallSID != dc.Sid ||
			d.Call.RMPhone != "+919800000201" || d.Call.ContactPhone != callContact {
			t.Fatalf("call.completed data = %+v", d)
		}
		if n := len(callCRMEvents(t, rcv, persistence.OutboxCallFailed, c.ID)); n != 0 {
			t.Fatalf("%d call.failed events", n)
		}
	})
}

// 2. The same terminal callback twice, and terminal before answered: one
// completion, final state completed.
func TestCallDuplicateAndOutOfOrderCallbacks(t *testing.T) {
	forEachCRM(t, time.Hour, func(t *testing.T, store persistence.Store, wake *crmWaker) {
		rcv := newCRMReceiver(t, "127.0.0.1:0", nil)
		s := newStack(t, store, withCRM(rcv.url, time.Hour, wake), withCalls(callsConfig{}))
		s.dl.DropCallbacks(true) // the test posts the callbacks itself
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, strings.TrimPrefix(callContact, "+"), "Meera Iyer", "Call me").ConversationID
		sub, cancel := s.dl.Subscribe()
		defer cancel()

		c := s.mustStartCall(tok, map[string]any{"conversation_id": conv})
		sc := diallerEvent(t, sub, sandbox.DiallerEnded, byCustomField(c.ID)).Call
		callFramesUntil(ws, c.ID, "dialling")

		const recording = "https://recordings.example.com/exotelrecordings/urva/call.mp3"
		terminal := callbackJSON(sc, exotel.EventTerminal, exotel.StatusCompleted, 42, recording)
		if r := s.postCallback(itDiallerHookPath, "application/json", terminal); r.status != http.StatusOK {
			t.Fatalf("terminal: %v", r)
		}
		// The answered callback arrives late, as a form.
		answered := url.Values{"CallSid": {sc.Sid}, "EventType": {"answered"}, "Status": {"in-progress"},
			"CustomField": {sc.CustomField}, "From": {sc.From}, "To": {sc.To}, "StartTime": {exotel.FormatTime(sc.At)},
			"Legs[0][Status]": {"in-progress"}, "Legs[0][AnsweredBy]": {"human"}}
		if r := s.postCallback(itDiallerHookPath, "application/x-www-form-urlencoded", []byte(answered.Encode())); r.status != http.StatusOK {
			t.Fatalf("late answered: %v", r)
		}
		// The terminal callback again, as the dialler retries it.
		if r := s.postCallback(itDiallerHookPath, "application/json", terminal); r.status != http.StatusOK {
			t.Fatalf("repeated terminal: %v", r)
		}
		// A callback about a call we never placed: acknowledged, nothing else.
		stranger := sc
		stranger.Sid, stranger.CustomField = "0123456789abcdef0123456789abcdef", "987654321"
		if r := s.postCallback(itDiallerHookPath, "application/json", callbackJSON(stranger, exotel.EventTerminal, "completed", 5, "")); r.status != http.StatusOK ||
			!strings.Contains(string(r.body), "unknown call") {
			t.Fatalf("unknown call: %v", r)
		}

		got := s.getCall(tok, c.ID)
		if got.Status != "completed" || got.TalkSeconds != 42 || got.RecordingURL != recording || got.ProviderCallSID != sc.Sid {
			t.Fatalf("GET call = %+v", got)
		}
		// Every callback was answered after its commit, so the timeline is final.
		evs := s.callEvents(tok, conv, c.ID)
		completed := 0
		for _, e := range evs {
			if e.Call.Status == "completed" {
				completed++
			}
		}
		if st := statusList(evs); completed != 1 || st[len(st)-1] != "completed" || slices.Contains(st, "contact_answered") {
			t.Fatalf("timeline call statuses %v: want one completion, last, and no late answer", st)
		}
		checkCallSeqs(t, evs, conv)

		s.waitBacklog("pending 0", func(b crmBacklog) bool { return b.Pending == 0 })
		if n := len(callCRMEvents(t, rcv, persistence.OutboxCallCompleted, c.ID)); n != 1 {
			t.Fatalf("%d call.completed events, want 1", n)
		}
	})
}

// 3. The dialler answers 500 to the connect request: whether it placed the
// call or not, exactly one call is placed.
func TestCallConnectFailuresPlaceOneCall(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withCalls(callsConfig{}))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, strings.TrimPrefix(callContact, "+"), "Meera Iyer", "Call me").ConversationID
		sub, cancel := s.dl.Subscribe()
		defer cancel()

		// 500 without placing the call: looked up, not found, tried again.
		s.dl.FailNextConnect(1, http.StatusInternalServerError)
		c1 := s.mustStartCall(tok, map[string]any{"conversation_id": conv})
		callFramesUntil(ws, c1.ID, "completed", "failed")
		reqs := s.dl.Calls()
		if p := placed(reqs); len(reqs) != 2 || reqs[0].Sid != "" || reqs[0].HTTPStatus != 500 || len(p) != 1 ||
			p[0].CustomField != strconv.FormatInt(c1.ID, 10) {
			t.Fatalf("after a refused connect: %+v", reqs)
		}
		if got := s.getCall(tok, c1.ID); got.Status != "completed" || got.ProviderCallSID != placed(reqs)[0].Sid {
			t.Fatalf("call 1 = %+v", got)
		}

		// 500 after placing the call: found by its CustomField, not placed again.
		s.dl.FailAfterPlacing(1)
		c2 := s.mustStartCall(tok, map[string]any{"conversation_id": conv})
		frames := callFramesUntil(ws, c2.ID, "completed", "failed")
		if st := statusList(frames); st[len(st)-1] != "completed" {
			t.Fatalf("call 2 statuses %v", st)
		}
		diallerEvent(t, sub, sandbox.DiallerEnded, byCustomField(c2.ID))
		var mine []sandbox.SandboxCall
		for _, r := range s.dl.Calls() {
			if r.CustomField == strconv.FormatInt(c2.ID, 10) {
				mine = append(mine, r)
			}
		}
		if len(mine) != 1 || mine[0].Sid == "" || mine[0].HTTPStatus != 500 {
			t.Fatalf("call 2's connect requests: %+v", mine)
		}
		if got := s.getCall(tok, c2.ID); got.Status != "completed" || got.ProviderCallSID != mine[0].Sid {
			t.Fatalf("call 2 = %+v", got)
		}
	})
}

// 4. No callback at all: reconciliation finishes the call from the
// call-details API.
func TestCallReconciledWithoutCallbacks(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withCalls(callsConfig{ReconcileAfter: 50 * time.Millisecond}))
		s.dl.DropCallbacks(true)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, strings.TrimPrefix(callContact, "+"), "Meera Iyer", "Call me").ConversationID

		c := s.mustStartCall(tok, map[string]any{"conversation_id": conv})
		frames := callFramesUntil(ws, c.ID, "completed", "failed", "no_answer", "busy", "canceled")
		checkCallSeqs(t, frames, conv)
		if st := statusList(frames); st[0] != "requested" || st[len(st)-1] != "completed" {
			t.Fatalf("statuses %v", st)
		}
		reqs := s.dl.Calls()
		if len(reqs) != 1 || reqs[0].Sid == "" {
			t.Fatalf("connect requests: %+v", reqs)
		}
		got := s.getCall(tok, c.ID)
		if got.Status != "completed" || got.ProviderCallSID != reqs[0].Sid || got.TalkSeconds < 1 || got.EndedAt == nil ||
			got.RecordingURL != s.base+sandbox.DiallerPrefix+"/recordings/"+reqs[0].Sid+".wav" || len(got.Legs) == 0 {
			t.Fatalf("reconciled call = %+v", got)
		}
	})
}

// 5. A contact who does not answer, or is busy: the call ends no_answer or busy.
func TestCallNoAnswerAndBusy(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withCalls(callsConfig{Outcome: func(number string) string {
			switch number {
			case noAnswerPhone:
				return sandbox.OutcomeNoAnswer
			case busyPhone:
				return sandbox.OutcomeBusy
			}
			return sandbox.OutcomeAnswer
		}}))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()

		for phone, want := range map[string]string{noAnswerPhone: "no_answer", busyPhone: "busy"} {
			c := s.mustStartCall(tok, map[string]any{"phone": phone})
			if c.ContactPhone != phone || c.Status != "requested" {
				t.Fatalf("201 call = %+v", c)
			}
			frames := callFramesUntil(ws, c.ID, "completed", "failed", "no_answer", "busy", "canceled")
			st := statusList(frames)
			if st[len(st)-1] != want || slices.Contains(st, "contact_answered") || slices.Contains(st, "connected") {
				t.Fatalf("%s: statuses %v, want to end %s", phone, st, want)
			}
			got := s.getCall(tok, c.ID)
			if got.Status != want || got.TalkSeconds != 0 || got.RecordingURL != "" || got.ProviderCallSID == "" {
				t.Fatalf("%s: call = %+v", phone, got)
			}
			// The voice conversation is the RM's.
			convs := s.conversations(tok)
			found := false
			for _, cv := range convs {
				found = found || cv.Contact.Phone == phone && cv.Channel == persistence.ChannelVoice
			}
			if !found {
				t.Fatalf("no voice conversation with %s among %+v", phone, convs)
			}
		}
	})
}

// 6. A wrong callback token: 404, and nothing changes.
func TestCallWrongCallbackToken(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withCalls(callsConfig{}))
		s.dl.DropCallbacks(true)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		conv := s.firstMessage(ws, strings.TrimPrefix(callContact, "+"), "Meera Iyer", "Call me").ConversationID
		sub, cancel := s.dl.Subscribe()
		defer cancel()

		c := s.mustStartCall(tok, map[string]any{"conversation_id": conv})
		sc := diallerEvent(t, sub, sandbox.DiallerEnded, byCustomField(c.ID)).Call
		callFramesUntil(ws, c.ID, "dialling")
		eventsBefore := s.events(tok, conv)

		busy := callbackJSON(sc, exotel.EventTerminal, exotel.StatusBusy, 0, "")
		for _, path := range []string{"/webhooks/dialler/wrong-token", "/webhooks/dialler/", "/webhooks/dialler/" + itCallbackToken + "x",
			"/webhooks/dialler/" + strings.ToUpper(itCallbackToken), "/webhooks/dialler/" + itCallbackToken[:len(itCallbackToken)-1]} {
			if r := s.postCallback(path, "application/json", busy); r.status != http.StatusNotFound {
				t.Errorf("POST %s: %v, want 404", path, r)
			}
		}
		if got := s.getCall(tok, c.ID); got.Status != "dialling" {
			t.Fatalf("call after refused callbacks = %+v", got)
		}
		if after := s.events(tok, conv); len(after) != len(eventsBefore) {
			t.Fatalf("refused callbacks changed the timeline: %v -> %v", eventsBefore, after)
		}

		// The right token is heard.
		if r := s.postCallback(itDiallerHookPath, "application/json", busy); r.status != http.StatusOK {
			t.Fatalf("right token: %v", r)
		}
		if got := s.getCall(tok, c.ID); got.Status != "busy" {
			t.Fatalf("call after the callback = %+v", got)
		}
	})
}

// 7. An RM cannot call a contact they may not see, nor read another RM's
// call; an RM without a phone number cannot call.
func TestCallPermissions(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withCalls(callsConfig{}))
		tokA := s.login(s.rmA)
		ws := s.dial(tokA)
		ws.online()
		conv := s.firstMessage(ws, strings.TrimPrefix(callContact, "+"), "Meera Iyer", "Call me").ConversationID
		tokB := s.login(s.rmB)

		if r := s.startCall(tokB, map[string]any{"conversation_id": conv}); r.status != http.StatusForbidden {
			t.Fatalf("rm-b calls rm-a's contact: %v, want 403", r)
		}
		if r := s.startCall(tokB, map[string]any{"conversation_id": conv + 1000}); r.status != http.StatusNotFound {
			t.Fatalf("no such conversation: %v, want 404", r)
		}
		if r := s.startCall("", map[string]any{"conversation_id": conv}); r.status != http.StatusUnauthorized {
			t.Fatalf("no token: %v", r)
		}
		for _, body := range []any{map[string]any{}, map[string]any{"conversation_id": conv, "phone": callContact}, map[string]any{"phone": "not a phone"}} {
			if r := s.startCall(tokA, body); r.status != http.StatusBadRequest {
				t.Fatalf("POST /api/calls %v: %v, want 400", body, r)
			}
		}
		phoneless := s.createUser("rm-c", "password-c", persistence.RoleRM, "")
		if r := s.startCall(s.login(phoneless), map[string]any{"phone": busyPhone}); r.status != http.StatusBadRequest ||
			!strings.Contains(r.errorText(), "phone") {
			t.Fatalf("an RM without a phone: %v, want 400", r)
		}
		if n := len(s.dl.Calls()); n != 0 {
			t.Fatalf("refused calls reached the dialler: %d", n)
		}

		c := s.mustStartCall(tokA, map[string]any{"conversation_id": conv})
		callFramesUntil(ws, c.ID, "completed", "failed")
		if r := s.do("GET", fmt.Sprintf("/api/calls/%d", c.ID), tokB, nil, nil); r.status != http.StatusForbidden {
			t.Fatalf("rm-b reads rm-a's call: %v, want 403", r)
		}
		if r := s.do("GET", fmt.Sprintf("/api/calls/%d", c.ID+1000), tokA, nil, nil); r.status != http.StatusNotFound {
			t.Fatalf("no such call: %v, want 404", r)
		}
		if got := s.getCall(s.login(s.sup), c.ID); got.ID != c.ID || got.Status != "completed" {
			t.Fatalf("supervisor reads the call: %+v", got)
		}
	})
}

// 8. With dialler.first_leg rm the RM is rung first.
func TestCallRMFirst(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store, withCalls(callsConfig{FirstLeg: persistence.CallLegRM}))
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		c := s.mustStartCall(tok, map[string]any{"phone": callContact})
		if c.FirstLeg != "rm" {
			t.Fatalf("201 call = %+v", c)
		}
		callFramesUntil(ws, c.ID, "completed", "failed")
		reqs := s.dl.Calls()
		if len(reqs) != 1 || reqs[0].From != "+919800000201" || reqs[0].To != callContact {
			t.Fatalf("connect requests: %+v", reqs)
		}
	})
}

// With a recordings directory, a finished call's recording is downloaded
// and served to the RM who may see the call, and to nobody else.
func TestCallRecordingDownloadedAndServed(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		dir := t.TempDir()
		s := newStack(t, store, withCalls(callsConfig{RecordingsDir: dir}))
		tok, tokB := s.login(s.rmA), s.login(s.rmB)
		ws := s.dial(tok)
		ws.online()
		c := s.mustStartCall(tok, map[string]any{"phone": "+919811100070"})
		callFramesUntil(ws, c.ID, "completed", "failed", "no_answer", "busy", "canceled")
		path := fmt.Sprintf("/api/calls/%d/recording", c.ID)
		// The download runs after the call ends and has no event of its own:
		// ask until it is there.
		var r response
		for deadline := time.Now().Add(itGuard); ; time.Sleep(10 * time.Millisecond) {
			r = s.do("GET", path, tok, nil, nil)
			if r.status != http.StatusNotFound || time.Now().After(deadline) {
				break
			}
		}
		if r.status != http.StatusOK || len(r.body) < 44 || string(r.body[:4]) != "RIFF" || string(r.body[8:12]) != "WAVE" {
			t.Fatalf("recording: %d, %d bytes", r.status, len(r.body))
		}
		if r := s.do("GET", path, tokB, nil, nil); r.status != http.StatusForbidden {
			t.Fatalf("another RM's recording: %d", r.status)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != fmt.Sprintf("call-%d.wav", c.ID) {
			t.Fatalf("recordings dir: %v", entries)
		}
	})
}
