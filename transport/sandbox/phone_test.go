package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors/msg"
)

const phoneOther = "+919811100002"

// phoneFixture is a phone watching real WhatsApp and Twilio fakes, whose
// webhooks go to receivers playing the server, served over HTTP.
type phoneFixture struct {
	wa    *fixture
	tw    *twFixture
	phone *Phone
	base  string // the phone's server
}

// newPhoneFixture starts the fakes (statuses are held back, so the
// receivers see only inbound messages) and a phone on them; withSMS false
// leaves the SMS channel off.
func newPhoneFixture(t *testing.T, o PhoneOptions, withSMS bool) *phoneFixture {
	t.Helper()
	f := &phoneFixture{
		wa: newFixture(t, WhatsAppOptions{StatusDelay: time.Hour}),
		tw: newTwFixture(t, TwilioOptions{StatusDelay: time.Hour}, ""),
	}
	o.WhatsApp = f.wa.fake
	if withSMS {
		o.Twilio = f.tw.fake
	}
	f.phone = NewPhone(o)
	f.base = serve(t, func(ctx *fasthttp.RequestCtx) {
		if strings.HasPrefix(string(ctx.Path()), PhonePrefix+"/") {
			f.phone.Handle(ctx)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNotFound)
	})
	// Registered after the server, so it runs before the server shuts
	// down: long polls in flight end at once.
	t.Cleanup(f.phone.Close)
	return f
}

// setWaiting makes fn run each time a long poll starts waiting.
func (p *Phone) setWaiting(fn func()) {
	p.mu.Lock()
	p.waiting = fn
	p.mu.Unlock()
}

// phoneAnswer is any answer of the phone's endpoints.
type phoneAnswer struct {
	code     int
	raw      []byte
	Entry    *PhoneEntry  `json:"entry"`
	Messages []PhoneEntry `json:"messages"`
	Next     *int64       `json:"next"`
	Channels []string     `json:"channels"`
	Error    string       `json:"error"`
	Status   *int         `json:"status"`
	Body     string       `json:"body"`
}

// phoneRequest makes one request; it is safe to call from any goroutine.
func phoneRequest(method, uri, body string) (phoneAnswer, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	req.Header.SetMethod(method)
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	if err := fasthttp.DoTimeout(req, resp, 40*time.Second); err != nil {
		return phoneAnswer{}, err
	}
	a := phoneAnswer{code: resp.StatusCode(), raw: append([]byte(nil), resp.Body()...)}
	if ct := string(resp.Header.ContentType()); ct != "application/json" {
		return a, fmt.Errorf("content type %q", ct)
	}
	if err := json.Unmarshal(a.raw, &a); err != nil {
		return a, fmt.Errorf("answer %s is not JSON: %v", a.raw, err)
	}
	return a, nil
}

func phoneDo(t *testing.T, method, uri, body string) phoneAnswer {
	t.Helper()
	a, err := phoneRequest(method, uri, body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *phoneFixture) send(t *testing.T, phone, channel, name, text string) phoneAnswer {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"phone": phone, "channel": channel, "name": name, "text": text})
	return phoneDo(t, "POST", f.base+"/sandbox/phone/send", string(b))
}

func (f *phoneFixture) messagesURL(phone string, after int64, wait string) string {
	return fmt.Sprintf("%s/sandbox/phone/messages?phone=%s&after=%d&wait=%s", f.base, url.QueryEscape(phone), after, wait)
}

// collect long-polls phone from after until it has n entries.
func (f *phoneFixture) collect(t *testing.T, phone string, after int64, n int) []PhoneEntry {
	t.Helper()
	var got []PhoneEntry
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d entries after 10s, want %d: %+v", phone, len(got), n, got)
		}
		a := phoneDo(t, "GET", f.messagesURL(phone, after, "5"), "")
		if a.code != 200 || a.Next == nil {
			t.Fatalf("messages: %d %s", a.code, a.raw)
		}
		got = append(got, a.Messages...)
		after = *a.Next
	}
	if len(got) != n {
		t.Fatalf("%s: %d entries, want %d: %+v", phone, len(got), n, got)
	}
	return got
}

func TestPhoneSendThroughBothChannels(t *testing.T) {
	f := newPhoneFixture(t, PhoneOptions{}, true)

	a := f.send(t, testContact, "whatsapp", " Meera Iyer ", "Hello <there> & you")
	if a.code != 200 || a.Entry == nil {
		t.Fatalf("send: %d %s", a.code, a.raw)
	}
	e := *a.Entry
	if e.Seq != 1 || e.Phone != testContact || e.Channel != PhoneWhatsApp || e.Direction != PhoneFromCustomer ||
		e.Type != PhoneTypeText || e.Text != "Hello <there> & you" || e.Template != nil ||
		!strings.HasPrefix(e.ID, "wamid.") || e.At.IsZero() {
		t.Fatalf("entry = %+v", e)
	}
	// The signed webhook reached the server, as Meta's would.
	in := only(t, f.wa.rcv.next(t))
	if in.Message == nil || in.Message.ProviderMessageID != e.ID || in.Message.Text != e.Text || in.ContactName != "Meera Iyer" {
		t.Fatalf("inbound = %+v", in)
	}
	// The entry's JSON has exactly the documented fields.
	var raw map[string]map[string]any
	if err := json.Unmarshal(a.raw, &raw); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(raw["entry"]))
	for k := range raw["entry"] {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "at,channel,direction,id,phone,seq,template,text,type" || raw["entry"]["template"] != nil {
		t.Fatalf("entry JSON = %s", a.raw)
	}

	a = f.send(t, testContact, "sms", "ignored", "by SMS too")
	if a.code != 200 || a.Entry == nil {
		t.Fatalf("send sms: %d %s", a.code, a.raw)
	}
	s := *a.Entry
	if s.Seq != 2 || s.Channel != PhoneSMS || s.Direction != PhoneFromCustomer || s.Text != "by SMS too" || !twSIDPattern.MatchString(s.ID) {
		t.Fatalf("sms entry = %+v", s)
	}
	h := f.tw.rcv.next(t)
	if h.path != "/webhooks/sms" || firstValue(h.params, "Body") != "by SMS too" ||
		firstValue(h.params, "From") != testContact || firstValue(h.params, "MessageSid") != s.ID {
		t.Fatalf("sms webhook = %+v", h)
	}

	a = phoneDo(t, "GET", f.messagesURL(testContact, 0, "0"), "")
	if a.code != 200 || len(a.Messages) != 2 || a.Messages[0] != e || a.Messages[1] != s || *a.Next != 2 {
		t.Fatalf("messages: %d %s", a.code, a.raw)
	}
	if a := phoneDo(t, "GET", f.base+"/sandbox/phone/channels", ""); a.code != 200 || strings.Join(a.Channels, ",") != "whatsapp,sms" {
		t.Fatalf("channels: %d %s", a.code, a.raw)
	}

	// The Go API does the same.
	g, err := f.phone.Send(context.Background(), phoneOther, PhoneWhatsApp, "", "from Go")
	if err != nil || g.Seq != 3 || g.Phone != phoneOther {
		t.Fatalf("Send = %+v, %v", g, err)
	}
	f.wa.rcv.next(t)
	if got, next := f.phone.Messages(phoneOther, 0); len(got) != 1 || got[0] != g || next != 3 {
		t.Fatalf("Messages = %+v, %d", got, next)
	}
}

func TestPhoneShowsWhatTheBusinessSent(t *testing.T) {
	f := newPhoneFixture(t, PhoneOptions{}, true)
	ctx := context.Background()

	wamid, err := f.wa.client.Send(ctx, textReq("Your call: https://example.test/v/1?t=abc"))
	if err != nil {
		t.Fatal(err)
	}
	tpl := textReq("")
	tpl.Template = &msg.Template{Name: "followup", Language: "en", Params: []string{"Meera", "Friday"}}
	tplID, err := f.wa.client.Send(ctx, tpl)
	if err != nil {
		t.Fatal(err)
	}
	other := textReq("not for Meera")
	other.Key.ContactPhone = phoneOther
	otherID, err := f.wa.client.Send(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := f.tw.client.Send(ctx, smsReq("an SMS for Meera"))
	if err != nil {
		t.Fatal(err)
	}

	got := f.collect(t, testContact, 0, 3)
	byID := map[string]PhoneEntry{}
	for i, e := range got {
		if e.Phone != testContact || e.Direction != PhoneToCustomer || e.At.IsZero() || (i > 0 && e.Seq <= got[i-1].Seq) {
			t.Fatalf("entries = %+v", got)
		}
		byID[e.ID] = e
	}
	if e := byID[wamid]; e.Channel != PhoneWhatsApp || e.Type != PhoneTypeText || e.Text != "Your call: https://example.test/v/1?t=abc" {
		t.Fatalf("text entry = %+v", e)
	}
	e := byID[tplID]
	if e.Channel != PhoneWhatsApp || e.Type != PhoneTypeTemplate || e.Template == nil ||
		e.Template.Name != "followup" || e.Template.Language != "en" || strings.Join(e.Template.Params, ",") != "Meera,Friday" ||
		e.Text != "Template \"followup\" (en)\n{{1}} Meera\n{{2}} Friday" {
		t.Fatalf("template entry = %+v", e)
	}
	if e := byID[sid]; e.Channel != PhoneSMS || e.Type != PhoneTypeText || e.Text != "an SMS for Meera" {
		t.Fatalf("sms entry = %+v", e)
	}
	// The other number's message is in its timeline only.
	if o := f.collect(t, phoneOther, 0, 1); o[0].ID != otherID || o[0].Text != "not for Meera" {
		t.Fatalf("other number = %+v", o)
	}
	if _, ok := byID[otherID]; ok {
		t.Fatal("another number's message in the timeline")
	}
}

func TestPhoneLongPoll(t *testing.T) {
	f := newPhoneFixture(t, PhoneOptions{}, true)
	waits := make(chan struct{}, 16)
	f.phone.setWaiting(func() { waits <- struct{}{} })
	waiting := func() {
		t.Helper()
		select {
		case <-waits:
		case <-time.After(10 * time.Second):
			t.Fatal("the poll is not waiting")
		}
	}
	type result struct {
		a   phoneAnswer
		err error
	}
	poll := func(uri string) chan result {
		out := make(chan result, 1)
		go func() {
			a, err := phoneRequest("GET", uri, "")
			out <- result{a, err}
		}()
		return out
	}
	answer := func(ch chan result) phoneAnswer {
		t.Helper()
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r.a
		case <-time.After(20 * time.Second):
			t.Fatal("no answer")
		}
		return phoneAnswer{}
	}

	// Default wait, '+' left unescaped: it waits.
	res := poll(f.base + "/sandbox/phone/messages?phone=+919811100001&after=0")
	waiting()
	// A message for another number does not answer it: it waits again.
	other := textReq("not yours")
	other.Key.ContactPhone = phoneOther
	if _, err := f.wa.client.Send(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	waiting()
	select {
	case r := <-res:
		t.Fatalf("answered with another number's message: %+v", r)
	default:
	}
	// One for this number does.
	wamid, err := f.wa.client.Send(context.Background(), textReq("hello Meera"))
	if err != nil {
		t.Fatal(err)
	}
	a := answer(res)
	if a.code != 200 || len(a.Messages) != 1 || a.Messages[0].ID != wamid || a.Messages[0].Seq != 2 || *a.Next != 2 {
		t.Fatalf("poll: %d %s", a.code, a.raw)
	}

	// A customer message wakes a poll too, from where the client left off.
	res = poll(f.messagesURL(testContact, 2, "30"))
	waiting()
	s := f.send(t, testContact, "sms", "", "back to you")
	a = answer(res)
	if a.code != 200 || len(a.Messages) != 1 || a.Messages[0] != *s.Entry || *a.Next != 3 {
		t.Fatalf("poll: %d %s", a.code, a.raw)
	}

	// Nothing new within the wait: an empty answer, next unchanged.
	a = answer(poll(f.messagesURL(testContact, 3, "0.05")))
	if a.code != 200 || a.Messages == nil || len(a.Messages) != 0 || *a.Next != 3 {
		t.Fatalf("timed out poll: %d %s", a.code, a.raw)
	}
	waiting()

	// Close ends a poll in flight.
	res = poll(f.messagesURL(testContact, 3, "30"))
	waiting()
	f.phone.Close()
	if a := answer(res); a.code != 503 || a.Error == "" {
		t.Fatalf("poll at close: %d %s", a.code, a.raw)
	}
	if a := f.send(t, testContact, "whatsapp", "", "too late"); a.code != 503 {
		t.Fatalf("send after close: %d %s", a.code, a.raw)
	}
	if _, _, err := f.phone.Wait(context.Background(), testContact, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after close = %v", err)
	}
}

func TestPhoneLongPollEndsAtShutdown(t *testing.T) {
	p := NewPhone(PhoneOptions{})
	defer p.Close()
	waits := make(chan struct{}, 1)
	p.setWaiting(func() { waits <- struct{}{} })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: p.Handle, CloseOnShutdown: true}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	res := make(chan phoneAnswer, 1)
	go func() {
		a, _ := phoneRequest("GET", "http://"+ln.Addr().String()+"/sandbox/phone/messages?phone=%2B919811100001&wait=30", "")
		res <- a
	}()
	select {
	case <-waits:
	case <-time.After(10 * time.Second):
		t.Fatal("the poll is not waiting")
	}
	if err := srv.Shutdown(); err != nil {
		t.Fatal(err)
	}
	<-served
	select {
	case a := <-res:
		if a.code != 200 || len(a.Messages) != 0 || *a.Next != 0 {
			t.Fatalf("poll at shutdown: %d %s", a.code, a.raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer at shutdown")
	}

	// Wait ends with its context.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-waits
		cancel()
	}()
	if got, next, err := p.Wait(ctx, testContact, 0); err != nil || len(got) != 0 || next != 0 {
		t.Fatalf("Wait = %+v, %d, %v", got, next, err)
	}
}

func TestPhoneAfter(t *testing.T) {
	p := NewPhone(PhoneOptions{})
	defer p.Close()
	for i := range 5 {
		phone := testContact
		if i == 2 {
			phone = phoneOther
		}
		p.add(PhoneEntry{Phone: phone, Channel: PhoneSMS, Direction: PhoneToCustomer, Type: PhoneTypeText, Text: fmt.Sprint(i + 1)})
	}
	seqs := func(es []PhoneEntry) string {
		var b []string
		for _, e := range es {
			b = append(b, fmt.Sprint(e.Seq))
		}
		return strings.Join(b, ",")
	}
	for _, c := range []struct {
		after int64
		want  string
		next  int64
	}{
		{0, "1,2,4,5", 5},
		{1, "2,4,5", 5},
		{2, "4,5", 5},
		{3, "4,5", 5},
		{4, "5", 5},
		{5, "", 5},
		{99, "1,2,4,5", 5}, // beyond the newest seq: from the start, next below after
	} {
		got, next := p.Messages(testContact, c.after)
		if got == nil || seqs(got) != c.want || next != c.next {
			t.Errorf("after %d: %s next %d; want %s next %d", c.after, seqs(got), next, c.want, c.next)
		}
	}
	if got, next := p.Messages("+919999999999", 3); len(got) != 0 || next != 3 {
		t.Errorf("unknown number: %+v, %d", got, next)
	}

	// The same over HTTP.
	base := serve(t, p.Handle)
	for _, c := range []struct {
		query string
		want  string
		next  int64
	}{
		{"phone=%2B919811100001&wait=0", "1,2,4,5", 5},
		{"phone=%2B919811100001&after=2&wait=0", "4,5", 5},
		{"phone=%2B919811100002&after=3&wait=0", "", 3},
		{"phone=%2B919811100002&after=0&wait=0", "3", 3},
		{"phone=%2B919811100001&after=5&wait=0", "", 5},
		{"phone=+919811100001&after=4&wait=0", "5", 5},
		{"phone=919811100001&after=7&wait=0", "1,2,4,5", 5},
		{"phone=%2B919811100001&after=1", "2,4,5", 5}, // something new: no wait
	} {
		a := phoneDo(t, "GET", base+"/sandbox/phone/messages?"+c.query, "")
		if a.code != 200 || a.Messages == nil || seqs(a.Messages) != c.want || a.Next == nil || *a.Next != c.next {
			t.Errorf("%s: %d %s; want %s next %d", c.query, a.code, a.raw, c.want, c.next)
		}
	}
}

func TestPhoneBadInput(t *testing.T) {
	f := newPhoneFixture(t, PhoneOptions{}, false)
	for name, body := range map[string]string{
		"not JSON":          `{`,
		"not an object":     `[]`,
		"no phone":          `{"channel":"whatsapp","text":"hi"}`,
		"no plus":           `{"phone":"919811100001","channel":"whatsapp","text":"hi"}`,
		"letters":           `{"phone":"+91981110000a","channel":"whatsapp","text":"hi"}`,
		"spaces inside":     `{"phone":"+91 98111 00001","channel":"whatsapp","text":"hi"}`,
		"7 digits":          `{"phone":"+9198111","channel":"whatsapp","text":"hi"}`,
		"16 digits":         `{"phone":"+9198111000011234","channel":"whatsapp","text":"hi"}`,
		"leading zero":      `{"phone":"+09811100001","channel":"whatsapp","text":"hi"}`,
		"no channel":        `{"phone":"+919811100001","text":"hi"}`,
		"unknown channel":   `{"phone":"+919811100001","channel":"telegram","text":"hi"}`,
		"channel off":       `{"phone":"+919811100001","channel":"sms","text":"hi"}`,
		"no text":           `{"phone":"+919811100001","channel":"whatsapp"}`,
		"blank text":        `{"phone":"+919811100001","channel":"whatsapp","text":" \n "}`,
		"text too long":     `{"phone":"+919811100001","channel":"whatsapp","text":"` + strings.Repeat("é", 4097) + `"}`,
		"name too long":     `{"phone":"+919811100001","channel":"whatsapp","name":"` + strings.Repeat("n", 257) + `","text":"hi"}`,
		"text not a string": `{"phone":"+919811100001","channel":"whatsapp","text":5}`,
	} {
		if a := phoneDo(t, "POST", f.base+"/sandbox/phone/send", body); a.code != 400 || a.Error == "" {
			t.Errorf("%s: %d %s; want 400", name, a.code, a.raw)
		}
	}
	for _, query := range []string{"", "phone=", "phone=%2B91", "phone=abc", "phone=%2B919811100001&after=-1",
		"phone=%2B919811100001&after=x", "phone=%2B919811100001&wait=-1", "phone=%2B919811100001&wait=soon",
		"phone=%2B919811100001&wait=NaN"} {
		if a := phoneDo(t, "GET", f.base+"/sandbox/phone/messages?"+query, ""); a.code != 400 || a.Error == "" {
			t.Errorf("messages?%s: %d %s; want 400", query, a.code, a.raw)
		}
	}
	for _, c := range []struct{ method, path, allow string }{
		{"GET", "/send", "POST"}, {"POST", "/messages", "GET"}, {"POST", "/channels", "GET"},
	} {
		if a := phoneDo(t, c.method, f.base+"/sandbox/phone"+c.path, ""); a.code != 405 || a.Error == "" {
			t.Errorf("%s %s: %d %s; want 405", c.method, c.path, a.code, a.raw)
		}
	}
	if a := phoneDo(t, "GET", f.base+"/sandbox/phone/nope", ""); a.code != 404 || a.Error == "" {
		t.Errorf("unknown path: %d %s", a.code, a.raw)
	}
	if a := phoneDo(t, "GET", f.base+"/sandbox/phone/channels", ""); a.code != 200 || strings.Join(a.Channels, ",") != "whatsapp" {
		t.Errorf("channels: %d %s", a.code, a.raw)
	}
	// An SMS longer than Twilio's limit is refused by the SMS fake.
	sms := newPhoneFixture(t, PhoneOptions{}, true)
	if a := sms.send(t, testContact, "sms", "", strings.Repeat("a", 1601)); a.code != 400 || a.Error == "" {
		t.Errorf("long SMS: %d %s", a.code, a.raw)
	}
	select {
	case d := <-f.wa.rcv.got:
		t.Fatalf("bad input reached the server: %+v", d)
	case h := <-sms.tw.rcv.got:
		t.Fatalf("bad input reached the server: %+v", h)
	default:
	}
	if got, next := f.phone.Messages(testContact, 0); len(got) != 0 || next != 0 {
		t.Fatalf("bad input recorded: %+v", got)
	}
}

func TestPhoneServerRefuses(t *testing.T) {
	f := newPhoneFixture(t, PhoneOptions{}, true)
	f.wa.rcv.setAnswer(func(int) (int, string) { return 503, "database unavailable" })
	a := f.send(t, testContact, "whatsapp", "", "are you there?")
	if a.code != 502 || a.Error == "" || a.Status == nil || *a.Status != 503 || a.Body != "database unavailable" || a.Entry != nil {
		t.Fatalf("send: %d %s; want 502 with the server's 503", a.code, a.raw)
	}
	f.wa.rcv.next(t)
	f.tw.rcv.setAnswer(func(int) (int, string) { return 500, "boom" })
	if a := f.send(t, testContact, "sms", "", "hello?"); a.code != 502 || *a.Status != 500 {
		t.Fatalf("send sms: %d %s", a.code, a.raw)
	}
	f.tw.rcv.next(t)
	if got, _ := f.phone.Messages(testContact, 0); len(got) != 0 {
		t.Fatalf("a message the server refused is in the timeline: %+v", got)
	}

	// A server that cannot be reached.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String() + "/webhooks/whatsapp"
	ln.Close()
	w := NewWhatsApp(WhatsAppOptions{AppSecret: testSecret, AccessToken: testToken, PhoneNumberID: testPhoneID, DisplayNumber: testDisplay, WebhookURL: gone})
	defer w.Close()
	p := NewPhone(PhoneOptions{WhatsApp: w})
	defer p.Close()
	base := serve(t, p.Handle)
	b := phoneDo(t, "POST", base+"/sandbox/phone/send", `{"phone":"+919811100001","channel":"whatsapp","text":"hi"}`)
	if b.code != 502 || b.Error == "" || b.Status == nil || *b.Status != 0 {
		t.Fatalf("unreachable server: %d %s", b.code, b.raw)
	}
}

func TestPhoneMemoryBound(t *testing.T) {
	if p := NewPhone(PhoneOptions{}); p.o.MaxEntries != 500 || p.o.MaxPhones != 200 {
		t.Fatalf("defaults = %d entries, %d phones", p.o.MaxEntries, p.o.MaxPhones)
	} else {
		p.Close()
	}
	p := NewPhone(PhoneOptions{MaxEntries: 3, MaxPhones: 2})
	defer p.Close()
	add := func(phone string) {
		if _, ok := p.add(PhoneEntry{Phone: phone, Channel: PhoneWhatsApp, Direction: PhoneToCustomer, Type: PhoneTypeText, Text: "x"}); !ok {
			t.Fatal("add failed")
		}
	}
	for range 5 {
		add(testContact) // seqs 1..5
	}
	got, next := p.Messages(testContact, 0)
	if len(got) != 3 || got[0].Seq != 3 || got[2].Seq != 5 || next != 5 {
		t.Fatalf("kept %+v, next %d; want seqs 3..5", got, next)
	}
	add(phoneOther)      // 6
	add(testContact)     // 7: testContact is now the most recent
	add("+919811100003") // 8: phoneOther, idle longest, is forgotten
	if got, _ := p.Messages(phoneOther, 0); len(got) != 0 {
		t.Fatalf("forgotten number kept: %+v", got)
	}
	if got, _ := p.Messages(testContact, 0); len(got) != 3 || got[2].Seq != 7 {
		t.Fatalf("kept %+v", got)
	}
	if got, _ := p.Messages("+919811100003", 0); len(got) != 1 || got[0].Seq != 8 {
		t.Fatalf("kept %+v", got)
	}
	p.mu.Lock()
	lines, kept := len(p.lines), 0
	for _, l := range p.lines {
		kept += len(l.entries)
	}
	p.mu.Unlock()
	if lines != 2 || kept != 4 {
		t.Fatalf("%d numbers, %d entries kept; want 2 and 4", lines, kept)
	}

	// Entries returned are copies.
	p.add(PhoneEntry{Phone: testContact, Type: PhoneTypeTemplate, Template: &PhoneTemplate{Name: "t", Params: []string{"a"}}})
	got, _ = p.Messages(testContact, 8)
	got[0].Template.Params[0] = "changed"
	if again, _ := p.Messages(testContact, 8); again[0].Template.Params[0] != "a" {
		t.Fatal("Messages shares memory with the timeline")
	}
}

func TestPhoneClose(t *testing.T) {
	f := newPhoneFixture(t, PhoneOptions{}, true)
	f.phone.Close()
	f.phone.Close() // a second Close does nothing
	// The fakes go on without the phone.
	if _, err := f.wa.client.Send(context.Background(), textReq("after close")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.phone.Send(context.Background(), testContact, PhoneWhatsApp, "", "hi"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v", err)
	}
	if got, _ := f.phone.Messages(testContact, 0); len(got) != 0 {
		t.Fatalf("recorded after Close: %+v", got)
	}
	// A fake closed first ends the phone's subscription: Close still returns.
	w := NewWhatsApp(WhatsAppOptions{})
	p := NewPhone(PhoneOptions{WhatsApp: w})
	w.Close()
	p.Close()
}
