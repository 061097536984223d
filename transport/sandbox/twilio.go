package sandbox

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/transport/twilio"
)

// TwilioOptions configures the fake Twilio Programmable Messaging API.
type TwilioOptions struct {
	AccountSID string // the only account the API serves (Basic auth user and path)
	AuthToken  string // Basic auth password; signs every callback and webhook
	Number     string // our business number, E.164: the only From accepted, the To of inbound messages
	// InboundURL is where inbound messages are posted: the server's
	// POST /webhooks/sms as the fake reaches it.
	InboundURL string
	// PublicURL is the server's http.public_url: Twilio requests (and so
	// signs) the public URL. When set, inbound messages are signed over
	// PublicURL followed by InboundURL's path and query, and status
	// callbacks under PublicURL are posted to the same path on InboundURL's
	// scheme and host (still signed over the StatusCallback URL as given),
	// so a public URL served by a proxy the fake cannot reach still works.
	// When empty, every URL is signed as it is posted to.
	PublicURL string
	// APIBase is the fake's API as the server reaches it (its
	// /sandbox/twilio mount), where the MediaUrl{N} of injected MMS point;
	// InboundURL's scheme and host followed by /sandbox/twilio when empty.
	APIBase     string
	StatusDelay time.Duration // before each of sent and delivered; 50ms when zero
	Log         zerolog.Logger

	MessagingServiceSID string        // reported in inbound webhooks and accepted instead of From; made up when empty
	CallbackAttempts    int           // deliveries of one status callback before giving up; 4 when zero
	CallbackBackoff     time.Duration // delay before the first redelivery, doubling; 200ms when zero
	CallbackTimeout     time.Duration // one callback or webhook POST; 15s (Twilio's limit) when zero
}

// SentSMS is an SMS a contact's phone received from the business.
type SentSMS struct {
	To             string // the contact's number, E.164
	From           string // our number, E.164
	Body           string
	SID            string // the message SID the API answered with
	NumSegments    int
	StatusCallback string // where its statuses go, "" when none was asked for
	At             time.Time
}

// Limits of the fake, as Twilio's.
const (
	twilioMaxBody      = 1600
	twilioPrefix       = "/sandbox/twilio"
	twilioDateLayout   = "Mon, 02 Jan 2006 15:04:05 -0700"
	twilioErrorDocBase = "https://www.twilio.com/docs/errors/"
)

// Twilio is a fake Twilio Messaging API: the Messages endpoint, signed
// status callbacks, signed inbound message webhooks, and the contacts'
// phones. It is safe for concurrent use.
type Twilio struct {
	fake[SentSMS]
	o        TwilioOptions
	failures failQueue[injectedFailure]
	sent     []SentSMS  // guarded by mu
	media    mediaStore // attachments contacts sent (InjectInboundMMS)
}

// NewTwilio returns a fake Twilio. Close stops its background callbacks.
func NewTwilio(o TwilioOptions) *Twilio {
	if o.StatusDelay <= 0 {
		o.StatusDelay = 50 * time.Millisecond
	}
	if o.MessagingServiceSID == "" {
		o.MessagingServiceSID = "MG" + randomHex(16)
	}
	if o.CallbackAttempts <= 0 {
		o.CallbackAttempts = 4
	}
	if o.CallbackBackoff <= 0 {
		o.CallbackBackoff = 200 * time.Millisecond
	}
	if o.CallbackTimeout <= 0 {
		o.CallbackTimeout = 15 * time.Second
	}
	o.Number = twilio.NormalizeNumber(o.Number)
	o.PublicURL = strings.TrimRight(o.PublicURL, "/")
	return &Twilio{
		fake: newFake[SentSMS](o.Log, "twilio", webhooks{
			agent:    "TwilioProxy/1.1",
			timeout:  o.CallbackTimeout,
			what:     "status callback",
			attempts: o.CallbackAttempts,
			backoff:  o.CallbackBackoff,
			doubling: true,
			acked:    is2xx,
		}),
		o: o,
	}
}

// Close stops redeliveries and pending status callbacks, waits for the
// background goroutines and closes every subscription. API calls and
// injections after Close fail.
func (tw *Twilio) Close() { tw.close() }

// FailNext makes the next n accepted sends fail with Twilio's error body
// carrying code and message, answered with httpStatus. Calls queue up.
func (tw *Twilio) FailNext(n int, httpStatus int, code int, message string) {
	tw.failures.add(n, injectedFailure{httpStatus: httpStatus, code: code, message: message})
}

// Sent returns what the contacts' phones received, oldest first (the most
// recent 10000).
func (tw *Twilio) Sent() []SentSMS {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return append([]SentSMS(nil), tw.sent...)
}

// Subscribe returns a channel that receives every SMS sent from now on, and
// a function that ends the subscription. A subscriber that falls more than
// 256 messages behind misses messages. The channel is closed by the cancel
// function or by Close.
func (tw *Twilio) Subscribe() (<-chan SentSMS, func()) { return tw.subscribe() }

// record stores m and tells subscribers; it starts the status callbacks
// unless the fake is closed, which it reports.
func (tw *Twilio) record(m SentSMS) bool {
	var then func()
	if m.StatusCallback != "" {
		then = func() { tw.deliverStatuses(m) }
	}
	return tw.accept(&tw.sent, m, func() {
		tw.log.Warn().Str("sid", m.SID).Msg("subscriber too slow, message not delivered to it")
	}, then)
}

// twilioMessage is the Message resource as the API renders it.
type twilioMessage struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                string            `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

// HandleAPI serves POST /sandbox/twilio/2010-04-01/Accounts/<sid>/Messages.json
// like Twilio: Basic auth, account, form fields and lengths are checked as
// Twilio does, errors are Twilio's error JSON, and an accepted message gets
// a new SID (201, status queued) followed, when a StatusCallback was given,
// by signed sent and delivered callbacks.
func (tw *Twilio) HandleAPI(ctx *fasthttp.RequestCtx) {
	if tw.serveMedia(ctx) {
		return
	}
	if !tw.authorized(ctx) {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="Twilio API"`)
		writeTwilioError(ctx, fasthttp.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	path := strings.TrimPrefix(string(ctx.Path()), twilioPrefix)
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 4 || parts[0] != twilio.APIVersion || parts[1] != "Accounts" || parts[3] != "Messages.json" ||
		parts[2] != tw.o.AccountSID {
		writeTwilioError(ctx, fasthttp.StatusNotFound, 20404, "The requested resource "+path+" was not found")
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodPost)
		writeTwilioError(ctx, fasthttp.StatusMethodNotAllowed, 20004, "Method not allowed")
		return
	}
	form, err := twilio.ParseForm(ctx.PostBody())
	if err != nil {
		writeTwilioError(ctx, fasthttp.StatusBadRequest, 21100, "Invalid request: "+err.Error())
		return
	}
	m, code, message := tw.validateSend(form)
	if code != 0 {
		writeTwilioError(ctx, fasthttp.StatusBadRequest, code, message)
		return
	}
	if f, ok := tw.failures.take(); ok {
		writeTwilioError(ctx, f.httpStatus, f.code, f.message)
		tw.log.Info().Int("code", f.code).Str("to", m.To).Msg("injected send failure")
		return
	}
	m.SID = "SM" + randomHex(16)
	m.At = time.Now()
	if !tw.record(m) {
		writeTwilioError(ctx, fasthttp.StatusServiceUnavailable, 20503, "Service Unavailable: the sandbox is shutting down")
		return
	}
	tw.log.Debug().Str("to", m.To).Str("sid", m.SID).Int("segments", m.NumSegments).Msg("message accepted")
	date := m.At.UTC().Format(twilioDateLayout)
	uri := "/" + twilio.APIVersion + "/Accounts/" + tw.o.AccountSID + "/Messages/" + m.SID
	resp := twilioMessage{
		AccountSID:      tw.o.AccountSID,
		APIVersion:      twilio.APIVersion,
		Body:            m.Body,
		DateCreated:     date,
		DateUpdated:     date,
		Direction:       "outbound-api",
		From:            m.From,
		NumMedia:        "0",
		NumSegments:     strconv.Itoa(m.NumSegments),
		PriceUnit:       "USD",
		SID:             m.SID,
		Status:          twilio.MessageQueued,
		SubresourceURIs: map[string]string{"media": uri + "/Media.json"},
		To:              m.To,
		URI:             uri + ".json",
	}
	if svc := firstValue(form, "MessagingServiceSid"); svc != "" && firstValue(form, "From") == "" {
		resp.MessagingServiceSID = &svc
	}
	writeJSON(ctx, fasthttp.StatusCreated, resp)
}

// validateSend checks a send as Twilio does. It returns the message to
// record, or a Twilio error code and message.
func (tw *Twilio) validateSend(form map[string][]string) (m SentSMS, code int, message string) {
	to := strings.TrimSpace(firstValue(form, "To"))
	if to == "" {
		return m, 21604, "A 'To' phone number is required."
	}
	num := twilio.NormalizeNumber(to)
	if !strings.HasPrefix(num, "+") || !validNumber(num[1:]) {
		return m, 21211, "The 'To' number " + to + " is not a valid phone number."
	}
	m.To = num
	from := strings.TrimSpace(firstValue(form, "From"))
	switch service := strings.TrimSpace(firstValue(form, "MessagingServiceSid")); {
	case from == "" && service == "":
		return m, 21603, "A 'From' phone number is required."
	case from == "" && service != tw.o.MessagingServiceSID:
		return m, 21705, "The Messaging Service Sid " + service + " is invalid."
	case from == "":
		m.From = tw.o.Number
	case twilio.NormalizeNumber(from) != tw.o.Number:
		return m, 21606, "The From phone number " + from + " is not a valid, SMS-capable inbound phone number or short code for your account."
	default:
		m.From = tw.o.Number
	}
	m.Body = firstValue(form, "Body")
	if m.Body == "" {
		return m, 21602, "Message body is required."
	}
	if utf8.RuneCountInString(m.Body) > twilioMaxBody {
		return m, 21617, "The concatenated message body exceeds the 1600 character limit."
	}
	m.NumSegments = twilio.Segments(m.Body)
	if cb := strings.TrimSpace(firstValue(form, "StatusCallback")); cb != "" {
		u, err := url.Parse(cb)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return m, 21609, "The StatusCallback URL " + cb + " is not a valid URL."
		}
		m.StatusCallback = cb
	}
	return m, 0, ""
}

func firstValue(form map[string][]string, name string) string {
	if v := form[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// authorized checks HTTP Basic AccountSid:AuthToken.
func (tw *Twilio) authorized(ctx *fasthttp.RequestCtx) bool {
	return basicAuthorized(ctx, tw.o.AccountSID, tw.o.AuthToken)
}

// deliverStatuses posts sent then delivered for m, each after StatusDelay;
// each is redelivered until acknowledged.
func (tw *Twilio) deliverStatuses(m SentSMS) {
	for _, st := range []string{twilio.MessageSent, twilio.MessageDelivered} {
		if !tw.wait(tw.o.StatusDelay) {
			return
		}
		params := url.Values{
			"MessageSid":    {m.SID},
			"SmsSid":        {m.SID},
			"MessageStatus": {st},
			"SmsStatus":     {st},
			"To":            {m.To},
			"From":          {m.From},
			"AccountSid":    {tw.o.AccountSID},
			"ApiVersion":    {twilio.APIVersion},
		}
		if st == twilio.MessageDelivered {
			params.Set("RawDlrDoneDate", time.Now().UTC().Format("0601021504"))
		}
		tw.deliver(m.StatusCallback, params, m.SID, st)
	}
}

// deliver posts a status callback until the server answers 2xx, with
// backoff, at most CallbackAttempts times, or until Close.
func (tw *Twilio) deliver(callback string, params url.Values, sid, what string) {
	log := tw.log.With().Str("sid", sid).Str("status", what).Logger()
	tw.deliverRetrying(log, func() (int, []byte, error) {
		return tw.post(context.Background(), tw.target(callback), callback, params)
	})
}

// target is where a callback signed over signed is posted: a URL under
// PublicURL goes to the same path on InboundURL's scheme and host, unless
// InboundURL itself is under PublicURL (the public URL is reachable).
func (tw *Twilio) target(signed string) string {
	if tw.o.PublicURL == "" || tw.o.InboundURL == "" || underURL(tw.o.InboundURL, tw.o.PublicURL) {
		return signed
	}
	if !underURL(signed, tw.o.PublicURL) {
		return signed
	}
	base, _ := splitBase(tw.o.InboundURL)
	return base + signed[len(tw.o.PublicURL):]
}

// inboundSignURL is the URL Twilio would have requested for InboundURL:
// PublicURL followed by InboundURL's path and query, or InboundURL itself
// when it already is under PublicURL.
func (tw *Twilio) inboundSignURL() string {
	if tw.o.PublicURL == "" || underURL(tw.o.InboundURL, tw.o.PublicURL) {
		return tw.o.InboundURL
	}
	_, rest := splitBase(tw.o.InboundURL)
	return tw.o.PublicURL + rest
}

// underURL reports whether u is base or a URL below it.
func underURL(u, base string) bool {
	rest, ok := strings.CutPrefix(u, base)
	return ok && (rest == "" || rest[0] == '/' || rest[0] == '?' || rest[0] == '#')
}

// splitBase cuts an absolute URL into scheme://host and the rest (path and query).
func splitBase(u string) (base, rest string) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", u
	}
	j := strings.IndexAny(u[i+3:], "/?#")
	if j < 0 {
		return u, ""
	}
	return u[:i+3+j], u[i+3+j:]
}

// post sends one signed form to target, signed over signURL, and returns
// the server's answer.
func (tw *Twilio) post(ctx context.Context, target, signURL string, params url.Values) (int, []byte, error) {
	body := []byte(params.Encode())
	return tw.postTo(ctx, target, "application/x-www-form-urlencoded", body, func(h *fasthttp.RequestHeader) {
		h.Set(twilio.SignatureHeader, twilio.Signature(tw.o.AuthToken, signURL, params))
		h.Set("I-Twilio-Idempotency-Token", randomHex(16))
	})
}

// InjectInbound sends an SMS from a contact to the server as Twilio would:
// the inbound webhook form with a new message SID, signed, posted once. It
// returns the SID once the server answered 2xx. Another answer is a
// *WebhookError (the SID is returned with it); bad input wraps
// ErrInvalidInbound.
func (tw *Twilio) InjectInbound(ctx context.Context, from, text string) (sid string, err error) {
	num, err := checkInbound(from, "", text, twilioMaxBody)
	if err != nil {
		return "", err
	}
	return tw.injectInbound(ctx, num, text, nil)
}

// injectInbound posts the inbound webhook of a message from the contact
// whose digits are num: an MMS carrying media when there are any.
func (tw *Twilio) injectInbound(ctx context.Context, num, text string, media []*fakeMedia) (sid string, err error) {
	sid = "SM" + randomHex(16)
	if len(media) > 0 {
		sid = "MM" + randomHex(16)
	}
	params := url.Values{
		"ToCountry":           {twilioCountry(tw.o.Number)},
		"ToState":             {""},
		"SmsMessageSid":       {sid},
		"NumMedia":            {"0"},
		"ToCity":              {""},
		"FromZip":             {""},
		"SmsSid":              {sid},
		"FromState":           {""},
		"SmsStatus":           {"received"},
		"FromCity":            {""},
		"Body":                {text},
		"FromCountry":         {twilioCountry("+" + num)},
		"To":                  {tw.o.Number},
		"MessagingServiceSid": {tw.o.MessagingServiceSID},
		"ToZip":               {""},
		"NumSegments":         {strconv.Itoa(twilio.Segments(text))},
		"MessageSid":          {sid},
		"AccountSid":          {tw.o.AccountSID},
		"From":                {"+" + num},
		"ApiVersion":          {twilio.APIVersion},
	}
	tw.addMedia(params, sid, media)
	sid, err = tw.inject(sid, "inbound webhook", func() (int, []byte, error) {
		return tw.post(ctx, tw.o.InboundURL, tw.inboundSignURL(), params)
	})
	if err == nil {
		tw.log.Debug().Str("from", "+"+num).Str("sid", sid).Msg("inbound SMS delivered")
	}
	return sid, err
}

// HandleInbound serves POST /sandbox/sms/inbound {"from","text"}: the
// contact's phone sends an SMS; with "media" (see inboundMediaOf), an MMS
// (InjectInboundMMS). It answers 200 {"sid":"<MessageSid>"} once
// the server acknowledged the webhook with 2xx, 502 with the server's status
// and body when it did not, 400 on bad input.
func (tw *Twilio) HandleInbound(ctx *fasthttp.RequestCtx) {
	media, merr := inboundMediaOf(ctx.PostBody())
	serveInbound(ctx, `{"from","text","media"?}`, "sid", func(from, _, text string) (string, error) {
		switch {
		case merr != nil:
			return "", merr
		case media != nil:
			return tw.InjectInboundMMS(ctx, from, text, *media)
		}
		return tw.InjectInbound(ctx, from, text)
	})
}

// writeTwilioError answers with Twilio's error JSON.
func writeTwilioError(ctx *fasthttp.RequestCtx, httpStatus, code int, message string) {
	if httpStatus < 400 || httpStatus > 599 {
		httpStatus = fasthttp.StatusBadRequest
	}
	writeJSON(ctx, httpStatus, struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		MoreInfo string `json:"more_info"`
		Status   int    `json:"status"`
	}{code, message, twilioErrorDocBase + strconv.Itoa(code), httpStatus})
}

// twilioCountries maps calling codes to the ISO country Twilio reports.
var twilioCountries = map[string]string{
	"1": "US", "7": "RU", "20": "EG", "27": "ZA", "33": "FR", "34": "ES", "39": "IT", "44": "GB", "49": "DE",
	"55": "BR", "60": "MY", "61": "AU", "62": "ID", "63": "PH", "64": "NZ", "65": "SG", "66": "TH", "81": "JP",
	"82": "KR", "86": "CN", "91": "IN", "92": "PK", "94": "LK", "234": "NG", "254": "KE", "880": "BD",
	"966": "SA", "971": "AE", "974": "QA", "977": "NP",
}

// twilioCountry is the country of an E.164 number, "" when unknown.
func twilioCountry(number string) string {
	d := strings.TrimPrefix(number, "+")
	for n := 3; n >= 1; n-- {
		if len(d) > n {
			if c, ok := twilioCountries[d[:n]]; ok {
				return c
			}
		}
	}
	return ""
}
