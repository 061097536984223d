package sandbox

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/persistence"
	"urva/transport/whatsapp"
)

// WhatsAppOptions configures the fake WhatsApp Cloud API.
type WhatsAppOptions struct {
	AppSecret     string        // signs webhooks (X-Hub-Signature-256)
	AccessToken   string        // the Bearer token API calls must carry
	PhoneNumberID string        // the only phone number id the API serves
	DisplayNumber string        // the business number, digits, e.g. 919800000001
	WebhookURL    string        // the server's POST /webhooks/whatsapp
	StatusDelay   time.Duration // before each of sent, delivered, read; 50ms when zero
	AutoRead      bool          // contacts read every message (a read status follows delivered)
	Log           zerolog.Logger

	BusinessAccountID string        // entry id in webhooks; a fixed made-up id when empty
	WebhookAttempts   int           // deliveries of one status webhook before giving up; 6 when zero
	WebhookBackoff    time.Duration // delay before the first redelivery, doubling; 200ms when zero
	WebhookTimeout    time.Duration // one webhook POST; 10s when zero
}

// SentMessage is a message a contact's phone received from the business.
type SentMessage struct {
	To       string                // the contact's number, E.164 with '+'
	Type     string                // text or template
	Text     string                // the text body (text messages)
	Template *persistence.Template // the template (template messages); Params are the body parameters
	WAMID    string                // the id the API answered with
	At       time.Time
}

// Sandbox errors.
var (
	ErrInvalidInbound = errors.New("sandbox: invalid inbound message")
	ErrClosed         = errors.New("sandbox: closed")
)

// WebhookError is a webhook the server did not acknowledge with 200.
type WebhookError struct {
	StatusCode int
	Body       []byte
}

func (e *WebhookError) Error() string {
	return fmt.Sprintf("sandbox: webhook answered HTTP %d: %.200s", e.StatusCode, e.Body)
}

// Limits of the fake, as Meta's.
const (
	maxTextLen       = 4096
	maxSentKept      = 10000
	subscriberBuffer = 256
	maxBackoff       = time.Minute
)

// WhatsApp is a fake Meta WhatsApp Cloud API: the Graph API messages
// endpoint, signed status and message webhooks, and the contacts' phones.
// It is safe for concurrent use.
type WhatsApp struct {
	fake[SentMessage]
	o        WhatsAppOptions
	failures failQueue[injectedFailure]
	sent     []SentMessage // guarded by mu
	media    mediaStore    // attachments contacts sent (InjectInboundMedia)
}

type injectedFailure struct {
	httpStatus, code int
	message          string
}

// NewWhatsApp returns a fake Cloud API. Close stops its background webhooks.
func NewWhatsApp(o WhatsAppOptions) *WhatsApp {
	if o.StatusDelay <= 0 {
		o.StatusDelay = 50 * time.Millisecond
	}
	if o.BusinessAccountID == "" {
		o.BusinessAccountID = "102290129340398"
	}
	if o.WebhookAttempts <= 0 {
		o.WebhookAttempts = 6
	}
	if o.WebhookBackoff <= 0 {
		o.WebhookBackoff = 200 * time.Millisecond
	}
	if o.WebhookTimeout <= 0 {
		o.WebhookTimeout = 10 * time.Second
	}
	o.DisplayNumber = digitsOnly(o.DisplayNumber)
	return &WhatsApp{
		fake: newFake[SentMessage](o.Log, "whatsapp", webhooks{
			agent:    "facebookexternalua",
			timeout:  o.WebhookTimeout,
			what:     "status webhook",
			attempts: o.WebhookAttempts,
			backoff:  o.WebhookBackoff,
			doubling: true,
			acked:    is200,
		}),
		o: o,
	}
}

// Close stops redeliveries and pending status webhooks, waits for the
// background goroutines and closes every subscription. API calls and
// injections after Close fail.
func (w *WhatsApp) Close() { w.close() }

// FailNext makes the next n accepted sends fail with Meta's error body
// carrying code and message, answered with httpStatus. Calls queue up.
func (w *WhatsApp) FailNext(n int, httpStatus int, code int, message string) {
	w.failures.add(n, injectedFailure{httpStatus: httpStatus, code: code, message: message})
}

// Sent returns what the contacts' phones received, oldest first (the most
// recent 10000).
func (w *WhatsApp) Sent() []SentMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]SentMessage(nil), w.sent...)
}

// Subscribe returns a channel that receives every message sent from now on,
// and a function that ends the subscription. A subscriber that falls more than
// 256 messages behind misses messages. The channel is closed by the cancel
// function or by Close.
func (w *WhatsApp) Subscribe() (<-chan SentMessage, func()) { return w.subscribe() }

// record stores m and tells subscribers; it starts the status webhooks
// unless the fake is closed, which it reports.
func (w *WhatsApp) record(m SentMessage, category string) bool {
	return w.accept(&w.sent, m, func() {
		w.log.Warn().Str("wamid", m.WAMID).Msg("subscriber too slow, message not delivered to it")
	}, func() { w.deliverStatuses(m, category) })
}

// apiSend is a POST /<phone_number_id>/messages body.
type apiSend struct {
	MessagingProduct string `json:"messaging_product"`
	RecipientType    string `json:"recipient_type"`
	To               string `json:"to"`
	Type             string `json:"type"`
	Text             *struct {
		Body       string `json:"body"`
		PreviewURL bool   `json:"preview_url"`
	} `json:"text"`
	Template *struct {
		Name     string `json:"name"`
		Language *struct {
			Code string `json:"code"`
		} `json:"language"`
		Components []struct {
			Type       string `json:"type"`
			Parameters []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"parameters"`
		} `json:"components"`
	} `json:"template"`
	Status    string `json:"status"`     // "read" marks an inbound message as read
	MessageID string `json:"message_id"` // with status
}

// HandleAPI serves POST /sandbox/graph/<version>/<phone_number_id>/messages
// like the Graph API: Bearer token, phone number id and body are checked as
// Meta does, errors are Meta's error JSON, and an accepted message gets a
// fresh wamid followed by signed status webhooks.
func (w *WhatsApp) HandleAPI(ctx *fasthttp.RequestCtx) {
	if !w.authorized(ctx) {
		writeMetaError(ctx, fasthttp.StatusUnauthorized, 190, "Invalid OAuth access token - Cannot parse access token", "")
		return
	}
	if w.serveMedia(ctx) {
		return
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(string(ctx.Path()), "/sandbox/graph"), "/"), "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "v") || parts[2] != "messages" {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "Unknown path components: /"+strings.Join(parts, "/"), "")
		return
	}
	if parts[1] != w.o.PhoneNumberID {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "Unsupported post request. Object with ID '"+parts[1]+
			"' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", "")
		return
	}
	if !ctx.IsPost() {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "Unsupported "+strings.ToLower(string(ctx.Method()))+" request.", "")
		return
	}
	var req apiSend
	if err := json.Unmarshal(ctx.PostBody(), &req); err != nil {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "(#100) Invalid parameter", "Request body is not valid JSON: "+err.Error())
		return
	}
	switch req.MessagingProduct {
	case "whatsapp":
	case "":
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "(#100) The parameter messaging_product is required.", "")
		return
	default:
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, `(#100) Param messaging_product must be one of {WHATSAPP} - got "`+req.MessagingProduct+`".`, "")
		return
	}
	if req.Status != "" || req.MessageID != "" {
		w.markRead(ctx, &req)
		return
	}
	sent, category, msg, details := w.validateSend(&req)
	if msg != "" {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, msg, details)
		return
	}
	if f, ok := w.failures.take(); ok {
		writeMetaError(ctx, f.httpStatus, f.code, f.message, f.message)
		w.log.Info().Int("code", f.code).Str("to", sent.To).Msg("injected send failure")
		return
	}
	sent.WAMID = newWAMID()
	sent.At = time.Now()
	if !w.record(sent, category) {
		writeMetaError(ctx, fasthttp.StatusServiceUnavailable, 2, "Service temporarily unavailable", "the sandbox is shutting down")
		return
	}
	w.log.Debug().Str("to", sent.To).Str("type", sent.Type).Str("wamid", sent.WAMID).Msg("message accepted")
	resp := struct {
		MessagingProduct string `json:"messaging_product"`
		Contacts         []struct {
			Input string `json:"input"`
			WaID  string `json:"wa_id"`
		} `json:"contacts"`
		Messages []struct {
			ID            string `json:"id"`
			MessageStatus string `json:"message_status,omitempty"`
		} `json:"messages"`
	}{MessagingProduct: "whatsapp"}
	resp.Contacts = append(resp.Contacts, struct {
		Input string `json:"input"`
		WaID  string `json:"wa_id"`
	}{req.To, sent.To[1:]})
	resp.Messages = append(resp.Messages, struct {
		ID            string `json:"id"`
		MessageStatus string `json:"message_status,omitempty"`
	}{ID: sent.WAMID})
	if sent.Type == "template" {
		resp.Messages[0].MessageStatus = "accepted"
	}
	writeJSON(ctx, fasthttp.StatusOK, resp)
}

// validateSend checks a send as Meta does. It returns the message to record
// and its billing category, or an error message and details.
func (w *WhatsApp) validateSend(req *apiSend) (m SentMessage, category, msg, details string) {
	if req.RecipientType != "" && req.RecipientType != "individual" {
		return m, "", "(#100) Invalid parameter", "Param recipient_type must be individual"
	}
	if req.To == "" {
		return m, "", "(#100) The parameter to is required.", ""
	}
	to := strings.TrimPrefix(req.To, "+")
	if !validNumber(to) {
		return m, "", "(#100) Invalid parameter", "Param to is not a valid phone number: " + req.To
	}
	m.To = "+" + to
	typ := req.Type
	if typ == "" {
		typ = "text"
	}
	switch typ {
	case "text":
		if req.Text == nil || req.Text.Body == "" {
			return m, "", "(#100) The parameter text['body'] is required.", ""
		}
		if utf8.RuneCountInString(req.Text.Body) > maxTextLen {
			return m, "", "(#100) Invalid parameter", "Param text['body'] must be at most 4096 characters long."
		}
		m.Type, m.Text = "text", req.Text.Body
		return m, "service", "", ""
	case "template":
		t := req.Template
		if t == nil || t.Name == "" {
			return m, "", "(#100) The parameter template['name'] is required.", ""
		}
		if t.Language == nil || t.Language.Code == "" {
			return m, "", "(#100) The parameter template['language']['code'] is required.", ""
		}
		tpl := &persistence.Template{Name: t.Name, Language: t.Language.Code}
		for _, c := range t.Components {
			if c.Type != "body" {
				continue
			}
			for _, p := range c.Parameters {
				tpl.Params = append(tpl.Params, p.Text)
			}
		}
		m.Type, m.Template = "template", tpl
		return m, "utility", "", ""
	}
	return m, "", "(#100) Invalid parameter", "The sandbox accepts text and template messages, not " + typ
}

// markRead answers a read receipt for an inbound message.
func (w *WhatsApp) markRead(ctx *fasthttp.RequestCtx, req *apiSend) {
	if req.Status != "read" || req.MessageID == "" {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "(#100) Invalid parameter", "status must be read, with message_id")
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]bool{"success": true})
}

func (w *WhatsApp) authorized(ctx *fasthttp.RequestCtx) bool {
	tok := string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = strings.TrimSpace(tok[7:])
	} else {
		tok = string(ctx.QueryArgs().Peek("access_token"))
	}
	return w.o.AccessToken != "" && tok != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(w.o.AccessToken)) == 1
}

// Webhook envelope, in Meta's field order.
type (
	envelope struct {
		Object string     `json:"object"`
		Entry  []envEntry `json:"entry"`
	}
	envEntry struct {
		ID      string      `json:"id"`
		Changes []envChange `json:"changes"`
	}
	envChange struct {
		Value envValue `json:"value"`
		Field string   `json:"field"`
	}
	envValue struct {
		MessagingProduct string       `json:"messaging_product"`
		Metadata         envMetadata  `json:"metadata"`
		Contacts         []envContact `json:"contacts,omitempty"`
		Messages         []envMessage `json:"messages,omitempty"`
		Statuses         []envStatus  `json:"statuses,omitempty"`
	}
	envMetadata struct {
		DisplayPhoneNumber string `json:"display_phone_number"`
		PhoneNumberID      string `json:"phone_number_id"`
	}
	envContact struct {
		Profile struct {
			Name string `json:"name"`
		} `json:"profile"`
		WaID string `json:"wa_id"`
	}
	envMessage struct {
		From      string    `json:"from"`
		ID        string    `json:"id"`
		Timestamp string    `json:"timestamp"`
		Text      *envText  `json:"text,omitempty"`
		Image     *envMedia `json:"image,omitempty"`
		Video     *envMedia `json:"video,omitempty"`
		Audio     *envMedia `json:"audio,omitempty"`
		Document  *envMedia `json:"document,omitempty"`
		Type      string    `json:"type"`
	}
	envText struct {
		Body string `json:"body"`
	}
	envMedia struct {
		Caption  string `json:"caption,omitempty"`
		Filename string `json:"filename,omitempty"`
		MimeType string `json:"mime_type"`
		SHA256   string `json:"sha256"`
		ID       string `json:"id"`
	}
	envStatus struct {
		ID           string           `json:"id"`
		Status       string           `json:"status"`
		Timestamp    string           `json:"timestamp"`
		RecipientID  string           `json:"recipient_id"`
		Conversation *envConversation `json:"conversation,omitempty"`
		Pricing      *envPricing      `json:"pricing,omitempty"`
	}
	envConversation struct {
		ID                  string `json:"id"`
		ExpirationTimestamp string `json:"expiration_timestamp,omitempty"`
		Origin              struct {
			Type string `json:"type"`
		} `json:"origin"`
	}
	envPricing struct {
		Billable     bool   `json:"billable"`
		PricingModel string `json:"pricing_model"`
		Category     string `json:"category"`
	}
)

func (w *WhatsApp) envelope(v envValue) []byte {
	v.MessagingProduct = "whatsapp"
	v.Metadata = envMetadata{DisplayPhoneNumber: w.o.DisplayNumber, PhoneNumberID: w.o.PhoneNumberID}
	b, err := json.Marshal(envelope{
		Object: whatsapp.ObjectBusinessAccount,
		Entry:  []envEntry{{ID: w.o.BusinessAccountID, Changes: []envChange{{Value: v, Field: whatsapp.FieldMessages}}}},
	})
	if err != nil { // plain structs of strings: cannot happen
		panic(err)
	}
	return b
}

// deliverStatuses posts sent, delivered and (with AutoRead) read for m, each
// after StatusDelay, in order; each is redelivered until acknowledged.
func (w *WhatsApp) deliverStatuses(m SentMessage, category string) {
	steps := []string{whatsapp.StatusSent, whatsapp.StatusDelivered}
	if w.o.AutoRead {
		steps = append(steps, whatsapp.StatusRead)
	}
	conv := &envConversation{ID: randomHex(16)}
	conv.Origin.Type = category
	pricing := &envPricing{Billable: true, PricingModel: "PMP", Category: category}
	for _, st := range steps {
		if !w.wait(w.o.StatusDelay) {
			return
		}
		now := time.Now()
		s := envStatus{ID: m.WAMID, Status: st, Timestamp: strconv.FormatInt(now.Unix(), 10), RecipientID: m.To[1:]}
		switch st {
		case whatsapp.StatusSent:
			c := *conv
			c.ExpirationTimestamp = strconv.FormatInt(now.Add(24*time.Hour).Unix(), 10)
			s.Conversation, s.Pricing = &c, pricing
		case whatsapp.StatusDelivered:
			s.Conversation, s.Pricing = conv, pricing
		}
		w.deliver(w.envelope(envValue{Statuses: []envStatus{s}}), m.WAMID, st)
	}
}

// deliver posts a status webhook until the server answers 200, with
// backoff, at most WebhookAttempts times, or until Close.
func (w *WhatsApp) deliver(body []byte, wamid, what string) {
	log := w.log.With().Str("wamid", wamid).Str("status", what).Logger()
	w.deliverRetrying(log, func() (int, []byte, error) { return w.post(context.Background(), body) })
}

// post sends one signed webhook and returns the server's answer.
func (w *WhatsApp) post(ctx context.Context, body []byte) (int, []byte, error) {
	return w.postTo(ctx, w.o.WebhookURL, "application/json", body, func(h *fasthttp.RequestHeader) {
		h.Set(whatsapp.SignatureHeader, whatsapp.Sign(w.o.AppSecret, body))
	})
}

// InjectInbound sends a text message from a contact to the server as Meta
// would: a signed webhook with a new wamid, posted once. It returns the wamid
// once the server answered 200. A non-200 answer is a *WebhookError (the
// wamid is returned with it); bad input wraps ErrInvalidInbound.
func (w *WhatsApp) InjectInbound(ctx context.Context, from, name, text string) (string, error) {
	num, err := checkInbound(from, name, text, maxTextLen)
	if err != nil {
		return "", err
	}
	wamid := newWAMID()
	c := envContact{WaID: num}
	c.Profile.Name = strings.TrimSpace(name)
	m := envMessage{From: num, ID: wamid, Timestamp: strconv.FormatInt(time.Now().Unix(), 10), Type: "text"}
	m.Text = &envText{Body: text}
	body := w.envelope(envValue{Contacts: []envContact{c}, Messages: []envMessage{m}})
	wamid, err = w.inject(wamid, "webhook", func() (int, []byte, error) { return w.post(ctx, body) })
	if err == nil {
		w.log.Debug().Str("from", "+"+num).Str("wamid", wamid).Msg("inbound message delivered")
	}
	return wamid, err
}

// HandleInbound serves POST /sandbox/whatsapp/inbound {"from","name","text"}:
// the contact's phone sends a message. With "media" (see inboundMediaOf) it
// is a media message whose caption is text (InjectInboundMedia). It answers
// 200 {"id":"<wamid>"} once the server acknowledged the webhook, 502 with the
// server's status and body when it did not, 400 on bad input.
func (w *WhatsApp) HandleInbound(ctx *fasthttp.RequestCtx) {
	media, merr := inboundMediaOf(ctx.PostBody())
	serveInbound(ctx, `{"from","name","text","media"?}`, "id", func(from, name, text string) (string, error) {
		switch {
		case merr != nil:
			return "", merr
		case media != nil:
			return w.InjectInboundMedia(ctx, from, name, text, *media)
		}
		return w.InjectInbound(ctx, from, name, text)
	})
}

// writeMetaError answers with the Graph API's error JSON.
func writeMetaError(ctx *fasthttp.RequestCtx, httpStatus, code int, message, details string) {
	type errorData struct {
		MessagingProduct string `json:"messaging_product"`
		Details          string `json:"details"`
	}
	body := struct {
		Error struct {
			Message   string     `json:"message"`
			Type      string     `json:"type"`
			Code      int        `json:"code"`
			ErrorData *errorData `json:"error_data,omitempty"`
			FBTraceID string     `json:"fbtrace_id"`
		} `json:"error"`
	}{}
	body.Error.Message = message
	body.Error.Type = "OAuthException"
	body.Error.Code = code
	if details != "" {
		body.Error.ErrorData = &errorData{MessagingProduct: "whatsapp", Details: details}
	}
	body.Error.FBTraceID = randomBase64(9)
	if httpStatus < 400 || httpStatus > 599 {
		httpStatus = fasthttp.StatusBadRequest
	}
	if code == 190 {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `OAuth "Facebook Platform" "invalid_token" "`+message+`"`)
	}
	writeJSON(ctx, httpStatus, body)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = fasthttp.StatusInternalServerError, []byte(`{"error":"encoding failed"}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func newWAMID() string { return "wamid." + randomBase64(24) }

func randomBase64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// validNumber reports whether s is an international number's digits.
func validNumber(s string) bool {
	if len(s) < 6 || len(s) > 15 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// invalidPhoneRune is a character a typed phone number never holds.
func invalidPhoneRune(r rune) bool {
	return !(r >= '0' && r <= '9') && !strings.ContainsRune("+ -().", r)
}

func digitsOnly(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
