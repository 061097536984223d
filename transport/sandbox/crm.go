package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/transport/crm"
)

// CRMOptions configures the fake CRM.
type CRMOptions struct {
	Secret    string        // crm.secret: the key of X-Urva-Signature
	Tolerance time.Duration // accepted X-Urva-Timestamp skew; crm.DefaultTolerance when zero
	Log       zerolog.Logger
}

// ReceivedEvent is an event the fake CRM accepted.
type ReceivedEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
	// Attempts counts the signed, well-formed deliveries of this id: the
	// ones answered with an injected failure, the accepted one and the
	// duplicates after it.
	Attempts   int       `json:"attempts"`
	ReceivedAt time.Time `json:"received_at"` // when it was accepted
}

// Limits of the fake CRM.
const maxCRMEventsKept = 10000

// CRM is a fake CRM webhook receiver, as a real integration would build it:
// it verifies the signature and the body, records each event once (a
// redelivered event id is acknowledged again and counted as a duplicate) and
// answers 200 {"ok":true}. Failures can be injected for the whole CRM or for
// one conversation's events. It keeps the most recent 10000 events; a
// duplicate of an event already dropped is recorded again. It is safe for
// concurrent use.
type CRM struct {
	fake[ReceivedEvent]
	o CRMOptions

	// guarded by mu
	failAll    int
	failConv   map[int64]int
	events     []*ReceivedEvent // oldest first
	byID       map[string]*ReceivedEvent
	failed     map[string]int // failed attempts of ids not recorded yet
	duplicates int
}

// NewCRM returns a fake CRM.
func NewCRM(o CRMOptions) *CRM {
	c := &CRM{
		fake:     newFake[ReceivedEvent](o.Log, "crm", webhooks{}),
		o:        o,
		failConv: make(map[int64]int),
		byID:     make(map[string]*ReceivedEvent),
		failed:   make(map[string]int),
	}
	c.dup = ReceivedEvent.clone
	return c
}

// clone is e with its own copy of Data.
func (e ReceivedEvent) clone() ReceivedEvent {
	e.Data = bytes.Clone(e.Data)
	return e
}

// Close closes every subscription; webhooks after Close are answered 503.
func (c *CRM) Close() { c.close() }

// failureStatus is status as an injected failure: a 3xx, 4xx or 5xx status,
// or 0 (healthy).
func failureStatus(status int) int {
	if status < 300 || status > 599 {
		return 0
	}
	return status
}

// FailWith makes the CRM answer every signed, well-formed webhook with
// status, without recording it, as a CRM that is down or rejects everything.
// 0 (or any status below 300) makes it healthy again.
func (c *CRM) FailWith(status int) {
	c.mu.Lock()
	c.failAll = failureStatus(status)
	c.mu.Unlock()
}

// FailFor makes the CRM answer status to the events whose
// data.conversation.id is conversationID, and only those; 0 (or any status
// below 300) clears it. FailWith takes precedence.
func (c *CRM) FailFor(conversationID int64, status int) {
	c.mu.Lock()
	if s := failureStatus(status); s != 0 {
		c.failConv[conversationID] = s
	} else {
		delete(c.failConv, conversationID)
	}
	c.mu.Unlock()
}

// Received returns the recorded events, oldest first.
func (c *CRM) Received() []ReceivedEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneEach(c.events, (*ReceivedEvent).clone)
}

// Duplicates returns how many deliveries repeated an event id already
// recorded.
func (c *CRM) Duplicates() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.duplicates
}

// Subscribe returns a channel that receives every event recorded from now on
// (not the duplicates), and a function that ends the subscription. A
// subscriber that falls more than 256 events behind misses events. The
// channel is closed by the cancel function or by Close.
func (c *CRM) Subscribe() (<-chan ReceivedEvent, func()) { return c.subscribe() }

// crmWebhook is the webhook body as the receiver reads it.
type crmWebhook struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	OccurredAt *time.Time      `json:"occurred_at"`
	Data       json.RawMessage `json:"data"`
}

// errCRMBody explains a body that is not the contract's shape.
var errCRMBody = errors.New(`body must be JSON {"id","type","occurred_at","data":{...}}`)

// parseCRMWebhook checks body's shape.
func parseCRMWebhook(body []byte) (*crmWebhook, error) {
	var w crmWebhook
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, errors.Join(errCRMBody, err)
	}
	switch {
	case w.ID == "":
		return nil, errors.Join(errCRMBody, errors.New("id is missing"))
	case w.Type == "":
		return nil, errors.Join(errCRMBody, errors.New("type is missing"))
	case w.OccurredAt == nil || w.OccurredAt.IsZero():
		return nil, errors.Join(errCRMBody, errors.New("occurred_at is missing"))
	}
	if d := bytes.TrimSpace(w.Data); len(d) == 0 || d[0] != '{' {
		return nil, errors.Join(errCRMBody, errors.New("data is not an object"))
	}
	return &w, nil
}

// conversationOf returns data.conversation.id, 0 when there is none.
func conversationOf(data json.RawMessage) int64 {
	var v struct {
		Conversation *struct {
			ID json.Number `json:"id"`
		} `json:"conversation"`
	}
	if json.Unmarshal(data, &v) != nil || v.Conversation == nil {
		return 0
	}
	id, err := v.Conversation.ID.Int64()
	if err != nil {
		return 0
	}
	return id
}

// Handle serves POST /sandbox/crm/webhook, the CRM's webhook endpoint. It
// answers 401 when the signature or timestamp does not verify, 400 when the
// body is not {"id","type","occurred_at","data":{...}} or its id is not
// X-Urva-Event-Id, an injected failure's status, and otherwise 200
// {"ok":true}, for a new event and a duplicate alike.
func (c *CRM) Handle(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodPost)
		writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	body := ctx.PostBody()
	ts := string(ctx.Request.Header.Peek(crm.HeaderTimestamp))
	sig := string(ctx.Request.Header.Peek(crm.HeaderSignature))
	if err := crm.Verify(c.o.Secret, ts, body, sig, time.Now(), c.o.Tolerance); err != nil {
		c.log.Warn().Err(err).Str("event_id", string(ctx.Request.Header.Peek(crm.HeaderEventID))).Msg("webhook rejected")
		writeJSON(ctx, fasthttp.StatusUnauthorized, map[string]string{"error": err.Error()})
		return
	}
	w, err := parseCRMWebhook(body)
	if err == nil {
		if hid := string(ctx.Request.Header.Peek(crm.HeaderEventID)); hid != w.ID {
			err = errors.New(crm.HeaderEventID + " " + strconv.Quote(hid) + " is not the body's id " + strconv.Quote(w.ID))
		}
	}
	if err != nil {
		c.log.Warn().Err(err).Msg("webhook rejected")
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	conv := conversationOf(w.Data)
	now := time.Now()

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"error": "sandbox CRM closed"})
		return
	}
	rec := c.byID[w.ID]
	status := c.failAll
	if status == 0 && conv != 0 {
		status = c.failConv[conv]
	}
	if status != 0 {
		if rec != nil {
			rec.Attempts++
		} else {
			if len(c.failed) >= maxCRMEventsKept {
				clear(c.failed)
			}
			c.failed[w.ID]++
		}
		c.mu.Unlock()
		c.log.Debug().Str("event_id", w.ID).Int("status", status).Msg("injected failure")
		writeJSON(ctx, status, map[string]any{"error": "sandbox CRM failure injected", "status": status})
		return
	}
	if rec != nil {
		rec.Attempts++
		c.duplicates++
		attempts := rec.Attempts
		c.mu.Unlock()
		c.log.Debug().Str("event_id", w.ID).Int("attempts", attempts).Msg("duplicate event")
		writeJSON(ctx, fasthttp.StatusOK, map[string]bool{"ok": true})
		return
	}
	rec = &ReceivedEvent{
		ID:         w.ID,
		Type:       w.Type,
		OccurredAt: w.OccurredAt.UTC(),
		Data:       bytes.Clone(w.Data),
		Attempts:   c.failed[w.ID] + 1,
		ReceivedAt: now,
	}
	delete(c.failed, w.ID)
	c.events = keepLast(c.events, rec, maxCRMEventsKept, func(old *ReceivedEvent) { delete(c.byID, old.ID) })
	c.byID[w.ID] = rec
	c.publishLocked(*rec, nil)
	c.mu.Unlock()
	c.log.Debug().Str("event_id", w.ID).Str("type", w.Type).Int64("conversation", conv).Msg("event recorded")
	writeJSON(ctx, fasthttp.StatusOK, map[string]bool{"ok": true})
}

// HandleList serves GET /sandbox/crm/events: the recorded events, newest
// last, as {"events":[{"id","type","occurred_at","data","attempts",
// "received_at"}...],"duplicates":n}, so a person can see what reached the
// CRM.
func (c *CRM) HandleList(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodGet+", "+fasthttp.MethodHead)
		writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	events := c.Received()
	writeJSON(ctx, fasthttp.StatusOK, struct {
		Events     []ReceivedEvent `json:"events"`
		Duplicates int             `json:"duplicates"`
	}{events, c.Duplicates()})
}
