package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// PhonePrefix is where Phone.Handle is mounted: it serves every path under
// PhonePrefix + "/". The page itself is served at PhonePrefix.
const PhonePrefix = "/sandbox/phone"

// The values of PhoneEntry's Channel, Direction and Type.
const (
	PhoneWhatsApp     = "whatsapp"
	PhoneSMS          = "sms"
	PhoneFromCustomer = "from_customer"
	PhoneToCustomer   = "to_customer"
	PhoneTypeText     = "text"
	PhoneTypeTemplate = "template"
)

// Limits of the phone.
const (
	defaultPhoneEntries = 500              // entries kept per phone number
	defaultPhones       = 200              // phone numbers kept
	maxPhoneName        = 256              // characters of a contact's name
	defaultPhoneWait    = 25 * time.Second // a long poll's wait
	maxPhoneWait        = 30 * time.Second
)

// PhoneOptions configures the sandbox customer phone.
type PhoneOptions struct {
	WhatsApp *WhatsApp // nil: the WhatsApp channel is off
	Twilio   *Twilio   // nil: the SMS channel is off
	Log      zerolog.Logger

	// MaxEntries is how many entries are kept per phone number, the most
	// recent; 500 when zero.
	MaxEntries int
	// MaxPhones is how many phone numbers are kept; a new number beyond it
	// makes the phone forget the number whose newest entry is the oldest.
	// 200 when zero.
	MaxPhones int
}

// PhoneEntry is one message in a phone number's timeline: a message the
// contact sent through the phone, or one the business sent to the number.
type PhoneEntry struct {
	Seq       int64          `json:"seq"`       // global across numbers, increasing from 1
	Phone     string         `json:"phone"`     // the contact's number, E.164 with '+'
	Channel   string         `json:"channel"`   // whatsapp or sms
	Direction string         `json:"direction"` // from_customer or to_customer
	Type      string         `json:"type"`      // text or template
	Text      string         `json:"text"`      // the text; for a template, a readable rendering of it
	Template  *PhoneTemplate `json:"template"`  // the template, nil unless Type is template
	ID        string         `json:"id"`        // the provider's id: wamid or message SID
	At        time.Time      `json:"at"`
}

// PhoneTemplate is a template message the business sent.
type PhoneTemplate struct {
	Name     string   `json:"name"`
	Language string   `json:"language"`
	Params   []string `json:"params"` // the body parameters, never nil
}

// Phone is the sandbox customer phone: it lets a person (through the page
// served at PhonePrefix) or a test play a contact. It keeps, per contact
// number, an ordered timeline of the messages the contact sent through it
// and of those the business sent to that number on the fakes it watches,
// and serves it over HTTP with a long poll.
//
// Memory is bounded: at most MaxEntries entries per number (500 by
// default; older ones are dropped) and MaxPhones numbers (200 by default;
// beyond it the number idle longest is forgotten): 100,000 entries of at
// most 4096 characters by default. Entry sequence numbers restart at 1 with
// each Phone, so a client that outlived a restart asks for entries after a
// seq the phone never issued: see Messages.
//
// It is safe for concurrent use.
type Phone struct {
	o    PhoneOptions
	log  zerolog.Logger
	done chan struct{} // closed by Close: long polls end
	wg   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	cancels []func() // the subscriptions to the fakes
	seq     int64    // of the newest entry
	lines   map[string]*phoneLine
	changed chan struct{} // closed, and replaced, at each new entry

	// waiting, when not nil, is called each time a long poll starts
	// waiting for a new entry; tests set it.
	waiting func()
}

// phoneLine is one number's timeline.
type phoneLine struct {
	entries []PhoneEntry // oldest first
	last    int64        // seq of the newest entry
}

// NewPhone returns a phone watching the fakes in o; Close stops it.
func NewPhone(o PhoneOptions) *Phone {
	if o.MaxEntries <= 0 {
		o.MaxEntries = defaultPhoneEntries
	}
	if o.MaxPhones <= 0 {
		o.MaxPhones = defaultPhones
	}
	p := &Phone{
		o:       o,
		log:     o.Log.With().Str("sandbox", "phone").Logger(),
		done:    make(chan struct{}),
		lines:   make(map[string]*phoneLine),
		changed: make(chan struct{}),
	}
	if w := o.WhatsApp; w != nil {
		ch, cancel := w.Subscribe()
		p.cancels = append(p.cancels, cancel)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for m := range ch {
				p.add(whatsAppEntry(m))
			}
		}()
	}
	if tw := o.Twilio; tw != nil {
		ch, cancel := tw.Subscribe()
		p.cancels = append(p.cancels, cancel)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for m := range ch {
				p.add(PhoneEntry{Phone: m.To, Channel: PhoneSMS, Direction: PhoneToCustomer, Type: PhoneTypeText,
					Text: m.Body, ID: m.SID, At: m.At})
			}
		}()
	}
	return p
}

// whatsAppEntry is the entry of a message the business sent on WhatsApp.
func whatsAppEntry(m SentMessage) PhoneEntry {
	e := PhoneEntry{Phone: m.To, Channel: PhoneWhatsApp, Direction: PhoneToCustomer, Type: PhoneTypeText,
		Text: m.Text, ID: m.WAMID, At: m.At}
	if m.Type == "template" && m.Template != nil {
		e.Type = PhoneTypeTemplate
		e.Template = &PhoneTemplate{Name: m.Template.Name, Language: m.Template.Language,
			Params: append([]string{}, m.Template.Params...)}
		e.Text = renderTemplate(e.Template)
	}
	return e
}

// renderTemplate is a readable text of a template message, as the page
// shows it: the name and language on the first line, then each body
// parameter on its own line.
func renderTemplate(t *PhoneTemplate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Template %q (%s)", t.Name, t.Language)
	for i, v := range t.Params {
		fmt.Fprintf(&b, "\n{{%d}} %s", i+1, v)
	}
	return b.String()
}

// Close stops watching the fakes, ends the long polls in flight and waits
// for the phone's goroutines. Calls after Close fail with ErrClosed.
func (p *Phone) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	cancels := p.cancels
	p.cancels = nil
	p.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	p.wg.Wait()
}

func (p *Phone) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Channels returns the channels the phone sends on: whatsapp and sms, or
// the one whose fake it has.
func (p *Phone) Channels() []string {
	out := []string{}
	if p.o.WhatsApp != nil {
		out = append(out, PhoneWhatsApp)
	}
	if p.o.Twilio != nil {
		out = append(out, PhoneSMS)
	}
	return out
}

// add appends e, with the next seq, to its number's timeline and wakes the
// long polls. It returns e as stored, and false when the phone is closed.
func (p *Phone) add(e PhoneEntry) (PhoneEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return e, false
	}
	p.seq++
	e.Seq = p.seq
	line := p.lines[e.Phone]
	if line == nil {
		if len(p.lines) >= p.o.MaxPhones {
			p.forgetIdlestLocked()
		}
		line = &phoneLine{}
		p.lines[e.Phone] = line
	}
	line.entries = keepLast(line.entries, e, p.o.MaxEntries, nil)
	line.last = e.Seq
	close(p.changed)
	p.changed = make(chan struct{})
	return e, true
}

// forgetIdlestLocked drops the number whose newest entry is the oldest.
// p.mu is held.
func (p *Phone) forgetIdlestLocked() {
	var idlest string
	oldest := int64(math.MaxInt64)
	for phone, line := range p.lines {
		if line.last < oldest {
			idlest, oldest = phone, line.last
		}
	}
	delete(p.lines, idlest)
	p.log.Debug().Str("phone", idlest).Msg("too many phone numbers: forgot the one idle longest")
}

// Messages returns the entries of phone's timeline whose seq is above
// after, oldest first (a new slice, empty when there are none), and next:
// the seq of the last one returned, or after when none is. An after beyond
// the newest seq the phone issued (a client that outlived a restart of the
// server) counts as 0, so next comes back below after: a client seeing that
// starts its list anew.
func (p *Phone) Messages(phone string, after int64) (entries []PhoneEntry, next int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if after > p.seq {
		after = 0
	}
	return p.messagesLocked(phone, after)
}

// messagesLocked is Messages for an after not beyond p.seq. p.mu is held.
func (p *Phone) messagesLocked(phone string, after int64) ([]PhoneEntry, int64) {
	out := []PhoneEntry{}
	line := p.lines[phone]
	if line == nil || line.last <= after {
		return out, after
	}
	i := len(line.entries)
	for i > 0 && line.entries[i-1].Seq > after {
		i--
	}
	for _, e := range line.entries[i:] {
		if e.Template != nil {
			t := *e.Template
			t.Params = append([]string{}, t.Params...)
			e.Template = &t
		}
		out = append(out, e)
	}
	return out, out[len(out)-1].Seq
}

// Wait is Messages, except that when there is nothing after after it waits
// for phone's next entry, until ctx is done; then it returns what there is
// (maybe nothing) and no error. It fails with ErrClosed once the phone is
// closed.
func (p *Phone) Wait(ctx context.Context, phone string, after int64) ([]PhoneEntry, int64, error) {
	return p.await(ctx.Done(), nil, phone, after)
}

// await is Wait until done is closed or timeout fires (either may be nil).
func (p *Phone) await(done <-chan struct{}, timeout <-chan time.Time, phone string, after int64) ([]PhoneEntry, int64, error) {
	first := true
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return []PhoneEntry{}, after, ErrClosed
		}
		if first && after > p.seq {
			after = 0 // see Messages; decided once, so later entries do not change it
		}
		first = false
		entries, next := p.messagesLocked(phone, after)
		changed, waiting := p.changed, p.waiting
		p.mu.Unlock()
		if len(entries) > 0 {
			return entries, next, nil
		}
		if waiting != nil {
			waiting()
		}
		select {
		case <-changed:
		case <-timeout:
			return entries, next, nil
		case <-done:
			return entries, next, nil
		case <-p.done:
			return []PhoneEntry{}, after, ErrClosed
		}
	}
}

// Send sends text from the contact at phone (E.164 with '+', 8 to 15
// digits) on channel (whatsapp or sms, which must be on) exactly as the
// provider would, a signed webhook, under name (WhatsApp only). Once the
// server acknowledged it, the message joins phone's timeline and Send
// returns its entry (a message the business sent while the webhook was in
// flight comes before it). Bad input wraps ErrInvalidInbound; a webhook the server
// did not acknowledge is a *WebhookError, another failure to deliver it an
// error of its own; after Close, ErrClosed.
func (p *Phone) Send(ctx context.Context, phone, channel, name, text string) (PhoneEntry, error) {
	if err := checkPhoneSend(phone, name, text); err != nil {
		return PhoneEntry{}, err
	}
	var inject func() (string, error)
	switch channel {
	case PhoneWhatsApp:
		if w := p.o.WhatsApp; w != nil {
			inject = func() (string, error) { return w.InjectInbound(ctx, phone, name, text) }
		}
	case PhoneSMS:
		if tw := p.o.Twilio; tw != nil {
			inject = func() (string, error) { return tw.InjectInbound(ctx, phone, text) }
		}
	default:
		return PhoneEntry{}, fmt.Errorf("%w: channel must be %s or %s", ErrInvalidInbound, PhoneWhatsApp, PhoneSMS)
	}
	if inject == nil {
		return PhoneEntry{}, fmt.Errorf("%w: the %s channel is off in this sandbox", ErrInvalidInbound, channel)
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.wg.Add(1) // Close waits for the send in flight
	}
	p.mu.Unlock()
	if closed {
		return PhoneEntry{}, ErrClosed
	}
	defer p.wg.Done()
	at := time.Now()
	id, err := inject()
	e := PhoneEntry{Phone: phone, Channel: channel, Direction: PhoneFromCustomer, Type: PhoneTypeText, Text: text, ID: id, At: at}
	if err != nil {
		return e, err
	}
	e, ok := p.add(e)
	if !ok {
		return e, ErrClosed
	}
	p.log.Debug().Str("phone", phone).Str("channel", channel).Str("id", id).Int64("seq", e.Seq).Msg("customer message sent")
	return e, nil
}

// checkPhoneSend checks a message the phone sends; bad input wraps
// ErrInvalidInbound.
func checkPhoneSend(phone, name, text string) error {
	if !validE164(phone) {
		return fmt.Errorf("%w: phone %q must be an E.164 number: '+' then 8 to 15 digits", ErrInvalidInbound, phone)
	}
	if !utf8.ValidString(text) || !utf8.ValidString(name) {
		return fmt.Errorf("%w: not UTF-8", ErrInvalidInbound)
	}
	if strings.TrimSpace(text) == "" {
		return fmt.Errorf("%w: empty text", ErrInvalidInbound)
	}
	if n := utf8.RuneCountInString(text); n > maxTextLen {
		return fmt.Errorf("%w: text of %d characters, at most %d", ErrInvalidInbound, n, maxTextLen)
	}
	if utf8.RuneCountInString(name) > maxPhoneName {
		return fmt.Errorf("%w: name longer than %d characters", ErrInvalidInbound, maxPhoneName)
	}
	return nil
}

// validE164 reports whether s is '+' then 8 to 15 digits, the first not 0.
func validE164(s string) bool {
	d, ok := strings.CutPrefix(s, "+")
	return ok && len(d) >= 8 && len(d) <= 15 && validNumber(d)
}

// Handle serves everything under PhonePrefix + "/"; each answer is JSON,
// errors {"error":"..."}:
//
//	POST /sandbox/phone/send {"phone","channel","name","text"}
//	  sends a message from the contact (see Send): 200 {"entry":{...}}
//	  once the server acknowledged it; 400 on bad input; 502 {"error",
//	  "status","body"} when the server answered otherwise (status 0 when it
//	  could not be reached); 503 once the phone or the fake is closed.
//	GET /sandbox/phone/messages?phone=+91...&after=N&wait=S
//	  200 {"messages":[entries with seq > N of that phone],"next":<seq of
//	  the last one, or N>}; when there are none it waits up to S seconds
//	  (default 25, at most 30, 0 answers at once) for the next entry of
//	  that phone, then answers, maybe with none. after defaults to 0; see
//	  Messages for an after beyond the newest seq. A '+' sent unescaped
//	  in the query (read as a space) is accepted.
//	GET /sandbox/phone/channels
//	  200 {"channels":["whatsapp","sms"]}: the channels that are on.
//
// A wrong method is answered 405, another path 404.
func (p *Phone) Handle(ctx *fasthttp.RequestCtx) {
	switch path := strings.TrimPrefix(string(ctx.Path()), PhonePrefix); path {
	case "/send":
		if !ctx.IsPost() {
			methodNotAllowed(ctx, fasthttp.MethodPost)
			return
		}
		p.handleSend(ctx)
	case "/messages":
		if !ctx.IsGet() {
			methodNotAllowed(ctx, fasthttp.MethodGet)
			return
		}
		p.handleMessages(ctx)
	case "/channels":
		if !ctx.IsGet() {
			methodNotAllowed(ctx, fasthttp.MethodGet)
			return
		}
		ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
		writeJSON(ctx, fasthttp.StatusOK, map[string][]string{"channels": p.Channels()})
	default:
		writeJSON(ctx, fasthttp.StatusNotFound, map[string]string{"error": "no such sandbox phone endpoint: " + path})
	}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx, allow string) {
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use " + allow})
}

func (p *Phone) handleSend(ctx *fasthttp.RequestCtx) {
	var in struct {
		Phone   string `json:"phone"`
		Channel string `json:"channel"`
		Name    string `json:"name"`
		Text    string `json:"text"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &in); err != nil {
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{
			"error": `body must be JSON {"phone","channel","name","text"}: ` + err.Error()})
		return
	}
	e, err := p.Send(ctx, strings.TrimSpace(in.Phone), strings.TrimSpace(in.Channel), strings.TrimSpace(in.Name), in.Text)
	var we *WebhookError
	switch {
	case err == nil:
		writeJSON(ctx, fasthttp.StatusOK, map[string]PhoneEntry{"entry": e})
	case errors.Is(err, ErrInvalidInbound):
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": err.Error()})
	case errors.Is(err, ErrClosed):
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"error": "the sandbox is shutting down"})
	case errors.As(err, &we):
		writeJSON(ctx, fasthttp.StatusBadGateway, map[string]any{
			"error":  "the server did not accept the message: it answered HTTP " + strconv.Itoa(we.StatusCode),
			"status": we.StatusCode,
			"body":   strings.ToValidUTF8(string(truncate(we.Body, 1000)), "\uFFFD"),
		})
	default:
		writeJSON(ctx, fasthttp.StatusBadGateway, map[string]any{
			"error": "the server could not be reached: " + err.Error(), "status": 0})
	}
}

func (p *Phone) handleMessages(ctx *fasthttp.RequestCtx) {
	args := ctx.QueryArgs()
	phone := strings.TrimSpace(string(args.Peek("phone")))
	if phone != "" && !strings.HasPrefix(phone, "+") {
		phone = "+" + phone // an unescaped '+' reads as a space
	}
	if !validE164(phone) {
		writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{
			"error": "phone must be an E.164 number: '+' (escaped as %2B) then 8 to 15 digits"})
		return
	}
	var after int64
	if v := args.Peek("after"); len(v) > 0 {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || n < 0 {
			writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": "after must be a seq: an integer, 0 or more"})
			return
		}
		after = n
	}
	wait := defaultPhoneWait
	if v := args.Peek("wait"); len(v) > 0 {
		s, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsNaN(s) || s < 0 {
			writeJSON(ctx, fasthttp.StatusBadRequest, map[string]string{"error": "wait must be a number of seconds, 0 to 30"})
			return
		}
		wait = time.Duration(min(s, maxPhoneWait.Seconds()) * float64(time.Second))
	}
	var (
		entries []PhoneEntry
		next    int64
		err     error
	)
	if wait > 0 {
		// fasthttp does not tell a handler that its client went away: the
		// wait is bounded by the timer, and ends early at shutdown
		// (ctx.Done) or at Close.
		t := time.NewTimer(wait)
		defer t.Stop()
		entries, next, err = p.await(ctx.Done(), t.C, phone, after)
	} else {
		entries, next = p.Messages(phone, after)
		if p.isClosed() {
			err = ErrClosed
		}
	}
	ctx.Response.Header.Set(fasthttp.HeaderCacheControl, "no-store")
	if err != nil {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"error": "the sandbox is shutting down"})
		return
	}
	writeJSON(ctx, fasthttp.StatusOK, struct {
		Messages []PhoneEntry `json:"messages"`
		Next     int64        `json:"next"`
	}{entries, next})
}
