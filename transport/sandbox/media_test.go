package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/persistence"
	"urva/transport/twilio"
)

func fetchAll(t *testing.T, body io.ReadCloser) []byte {
	t.Helper()
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkPNG(t *testing.T, b []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if r := img.Bounds(); r.Dx() == 0 || r.Dy() == 0 {
		t.Fatalf("empty image %v", r)
	}
}

// A generated image travels as Meta's image message; the WhatsApp client
// fetches its bytes through the fake's media endpoints.
func TestWhatsAppInboundMediaFetched(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{})
	wamid, err := f.fake.InjectInboundMedia(context.Background(), testContact, "Meera", "a photo", InboundMedia{})
	if err != nil {
		t.Fatal(err)
	}
	d := f.rcv.next(t)
	m := only(t, d).Message
	if m.ProviderMessageID != wamid || m.Type != "image" || m.Text != "a photo" || len(m.Media) != 1 {
		t.Fatalf("message = %+v", m)
	}
	md := m.Media[0]
	if md.ProviderMediaID == "" || md.MimeType != "image/png" || md.SHA256 == "" || md.Caption != "a photo" {
		t.Fatalf("media = %+v", md)
	}
	if raw := d.n.Entries[0].Changes[0].Value.Messages[0].Raw; bytes.Contains(raw, []byte(`"text"`)) {
		t.Fatalf("an image message carries text: %s", raw)
	}

	body, ctype, size, err := f.client.FetchMedia(context.Background(), md)
	if err != nil {
		t.Fatal(err)
	}
	b := fetchAll(t, body)
	checkPNG(t, b)
	sum := sha256.Sum256(b)
	if ctype != "image/png" || size != int64(len(b)) || base64.StdEncoding.EncodeToString(sum[:]) != md.SHA256 {
		t.Fatalf("fetched %d bytes as %q (size %d), sha256 %s", len(b), ctype, size, md.SHA256)
	}

	// A wrong token gets neither the url nor the bytes.
	if _, _, _, err := f.newClient(t, "wrong").FetchMedia(context.Background(), md); err == nil || !strings.Contains(err.Error(), "190") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, _, _, err := f.client.FetchMedia(context.Background(), persistence.Media{ProviderMediaID: "1111111111111111"}); err == nil ||
		!strings.Contains(err.Error(), "100") {
		t.Fatalf("unknown media id: %v", err)
	}
}

func getWithBearer(t *testing.T, u, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The media url needs the token and its signature; the info answer has
// Meta's fields.
func TestWhatsAppMediaURL(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{})
	data := []byte("%PDF-1.4 not really")
	if _, err := f.fake.InjectInboundMedia(context.Background(), testContact, "", "", InboundMedia{
		MimeType: "application/pdf", Filename: "बिल.pdf", Data: data,
	}); err != nil {
		t.Fatal(err)
	}
	m := only(t, f.rcv.next(t)).Message
	if m.Type != "document" || m.Media[0].Filename != "बिल.pdf" || m.Media[0].MimeType != "application/pdf" {
		t.Fatalf("message = %+v", m)
	}
	id := m.Media[0].ProviderMediaID
	status, b := getWithBearer(t, f.base+"/sandbox/graph/v23.0/"+id, testToken)
	var info struct {
		MessagingProduct string `json:"messaging_product"`
		URL              string `json:"url"`
		MimeType         string `json:"mime_type"`
		SHA256           string `json:"sha256"`
		FileSize         int    `json:"file_size"`
		ID               string `json:"id"`
	}
	if err := json.Unmarshal(b, &info); status != 200 || err != nil {
		t.Fatalf("info: %d %s", status, b)
	}
	if info.MessagingProduct != "whatsapp" || info.ID != id || info.FileSize != len(data) || info.MimeType != "application/pdf" ||
		info.SHA256 != m.Media[0].SHA256 || !strings.HasPrefix(info.URL, f.base+"/") {
		t.Fatalf("info = %s", b)
	}
	if status, got := getWithBearer(t, info.URL, testToken); status != 200 || !bytes.Equal(got, data) {
		t.Fatalf("download: %d %q", status, got)
	}
	if status, _ := getWithBearer(t, info.URL, ""); status != 401 {
		t.Fatalf("download without token: %d", status)
	}
	u, _ := url.Parse(info.URL)
	q := u.Query()
	q.Set("ext", "9999999999") // a later expiry breaks the signature
	u.RawQuery = q.Encode()
	if status, _ := getWithBearer(t, u.String(), testToken); status != 404 {
		t.Fatalf("tampered url: %d", status)
	}
	if status, _ := getWithBearer(t, f.base+"/sandbox/graph/v23.0/"+id, ""); status != 401 {
		t.Fatalf("info without token: %d", status)
	}
}

// POST /sandbox/whatsapp/inbound with "media".
func TestWhatsAppInboundMediaInjectionOverHTTP(t *testing.T) {
	f := newFixture(t, WhatsAppOptions{})
	status, out := postInbound(t, f.base, "POST", `{"from":"+919811100001","name":"Meera","media":{}}`)
	if status != 200 {
		t.Fatalf("status = %d, answer %v", status, out)
	}
	m := only(t, f.rcv.next(t)).Message
	if m.ProviderMessageID != out["id"] || m.Type != "image" || m.Text != "" || len(m.Media) != 1 {
		t.Fatalf("message = %+v", m)
	}
	audio, _ := json.Marshal(map[string]any{"from": testContact, "media": map[string]any{"mime_type": "audio/ogg", "data": []byte("OggS")}})
	if status, out := postInbound(t, f.base, "POST", string(audio)); status != 200 {
		t.Fatalf("audio: %d %v", status, out)
	}
	if m := only(t, f.rcv.next(t)).Message; m.Type != "audio" || m.Media[0].MimeType != "audio/ogg" {
		t.Fatalf("audio message = %+v", m)
	}
	for name, body := range map[string]string{
		"bad data":          `{"from":"+919811100001","media":{"data":"%%%"}}`,
		"media not object":  `{"from":"+919811100001","media":"x"}`,
		"type without data": `{"from":"+919811100001","media":{"mime_type":"video/mp4"}}`,
		"bad type":          `{"from":"+919811100001","media":{"mime_type":"nonsense","data":"AAAA"}}`,
		"audio caption":     `{"from":"+919811100001","text":"hi","media":{"mime_type":"audio/ogg","data":"AAAA"}}`,
		"bad number":        `{"from":"meera","media":{}}`,
	} {
		if status, out := postInbound(t, f.base, "POST", body); status != 400 || out["error"] == "" {
			t.Errorf("%s: status = %d, answer %v; want 400", name, status, out)
		}
	}
	select {
	case d := <-f.rcv.got:
		t.Fatalf("bad input reached the server: %+v", d)
	default:
	}
}

// twMediaFixture runs a fake Twilio whose APIBase is its own server, against
// a receiver; the client fetches media from it.
type twMediaFixture struct {
	fake   *Twilio
	rcv    *twReceiver
	base   string
	client *twilio.Client
}

func newTwMediaFixture(t *testing.T) *twMediaFixture {
	t.Helper()
	f := &twMediaFixture{rcv: newTwReceiver(t)}
	var fake atomic.Pointer[Twilio]
	f.base = serve(t, func(ctx *fasthttp.RequestCtx) {
		switch p := string(ctx.Path()); {
		case strings.HasPrefix(p, "/sandbox/twilio/"):
			fake.Load().HandleAPI(ctx)
		case p == "/sandbox/sms/inbound":
			fake.Load().HandleInbound(ctx)
		default:
			ctx.SetStatusCode(fasthttp.StatusNotFound)
		}
	})
	f.fake = NewTwilio(TwilioOptions{
		AccountSID: twAccount, AuthToken: twToken, Number: twNumber,
		InboundURL: f.rcv.base + "/webhooks/sms", PublicURL: f.rcv.base, APIBase: f.base + "/sandbox/twilio/",
	})
	fake.Store(f.fake)
	t.Cleanup(f.fake.Close)
	f.client = f.newClient(t, twToken)
	return f
}

func (f *twMediaFixture) newClient(t *testing.T, token string) *twilio.Client {
	c := twilio.NewClient(twilio.ClientOptions{APIBase: f.base + "/sandbox/twilio", AccountSID: twAccount, AuthToken: token, From: twNumber, Timeout: 5 * time.Second})
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// An MMS carries MediaUrl{N} under the account; the Twilio client fetches
// them (basic auth, then the redirect to the fake's CDN).
func TestTwilioInboundMMSFetched(t *testing.T) {
	f := newTwMediaFixture(t)
	jpeg := []byte("\xff\xd8\xff\xe0 not quite a jpeg")
	sid, err := f.fake.InjectInboundMMS(context.Background(), testContact, "", InboundMedia{}, InboundMedia{MimeType: "image/jpeg", Data: jpeg})
	if err != nil {
		t.Fatal(err)
	}
	h := f.rcv.next(t)
	in, err := twilio.ParseInbound(h.params)
	if err != nil {
		t.Fatal(err)
	}
	m := in.Inbound().Message
	if !strings.HasPrefix(sid, "MM") || m.ProviderMessageID != sid || m.Type != twilio.TypeMMS || len(m.Media) != 2 || h.params["NumMedia"][0] != "2" {
		t.Fatalf("message = %+v, params %v", m, h.params)
	}
	for i, md := range m.Media {
		if !strings.HasPrefix(md.URL, f.base+"/sandbox/twilio/2010-04-01/Accounts/"+twAccount+"/Messages/"+sid+"/Media/ME") {
			t.Fatalf("MediaUrl%d = %s", i, md.URL)
		}
	}
	if m.Media[0].MimeType != "image/png" || m.Media[1].MimeType != "image/jpeg" {
		t.Fatalf("media = %+v", m.Media)
	}

	body, ctype, _, err := f.client.FetchMedia(context.Background(), m.Media[0])
	if err != nil {
		t.Fatal(err)
	}
	checkPNG(t, fetchAll(t, body))
	if ctype != "image/png" {
		t.Fatalf("content type %q", ctype)
	}
	body, ctype, _, err = f.client.FetchMedia(context.Background(), m.Media[1])
	if err != nil {
		t.Fatal(err)
	}
	if b := fetchAll(t, body); !bytes.Equal(b, jpeg) || ctype != "image/jpeg" {
		t.Fatalf("second attachment: %q %q", b, ctype)
	}

	// Wrong credentials: 401 from the media resource.
	if _, _, _, err := f.newClient(t, "wrong").FetchMedia(context.Background(), m.Media[0]); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("wrong token: %v", err)
	}
	// Another message's path: 404.
	other := m.Media[0]
	other.URL = strings.Replace(other.URL, sid, "MM"+strings.Repeat("0", 32), 1)
	if _, _, _, err := f.client.FetchMedia(context.Background(), other); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("wrong message: %v", err)
	}
	if status, _ := getWithBearer(t, f.base+"/sandbox/twilio/cdn/nope", ""); status != 404 {
		t.Fatalf("unknown CDN token: %d", status)
	}
}

// POST /sandbox/sms/inbound with "media"; bad input is refused.
func TestTwilioInboundMMSInjectionOverHTTP(t *testing.T) {
	f := newTwMediaFixture(t)
	status, out := postSMSInbound(t, f.base, "POST", `{"from":"+919811100001","text":"look","media":{}}`)
	if status != 200 {
		t.Fatalf("status = %d, answer %v", status, out)
	}
	h := f.rcv.next(t)
	if h.params["MessageSid"][0] != out["sid"] || h.params["Body"][0] != "look" || h.params["MediaContentType0"][0] != "image/png" {
		t.Fatalf("params = %v", h.params)
	}
	for name, body := range map[string]string{
		"bad data":          `{"from":"+919811100001","media":{"data":"%%%"}}`,
		"type without data": `{"from":"+919811100001","media":{"mime_type":"video/mp4"}}`,
	} {
		if status, out := postSMSInbound(t, f.base, "POST", body); status != 400 || out["error"] == "" {
			t.Errorf("%s: status = %d, answer %v; want 400", name, status, out)
		}
	}
	if _, err := f.fake.InjectInboundMMS(context.Background(), testContact, "no media"); !errors.Is(err, ErrInvalidInbound) {
		t.Fatalf("MMS without media: %v", err)
	}
	big := InboundMedia{MimeType: "application/octet-stream", Data: make([]byte, MaxInboundMediaBytes+1)}
	if _, err := f.fake.InjectInboundMMS(context.Background(), testContact, "", big); !errors.Is(err, ErrInvalidInbound) {
		t.Fatalf("oversized media: %v", err)
	}
	select {
	case h := <-f.rcv.got:
		t.Fatalf("bad input reached the server: %+v", h)
	default:
	}
}

func TestMediaStoreKeepsTheMostRecent(t *testing.T) {
	var s mediaStore
	for i := 0; i < maxMediaKept+3; i++ {
		s.add(&fakeMedia{id: string(rune('a'+i%26)) + strings.Repeat("x", i), cdn: "c" + strings.Repeat("x", i)})
	}
	if len(s.order) != maxMediaKept || len(s.byID) != maxMediaKept || len(s.byCDN) != maxMediaKept {
		t.Fatalf("kept %d/%d/%d", len(s.order), len(s.byID), len(s.byCDN))
	}
	if s.get("a") != nil || s.getCDN("c") != nil {
		t.Fatal("the oldest was kept")
	}
}
