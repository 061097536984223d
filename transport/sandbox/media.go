package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/big"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"urva/transport/twilio"
)

// Attachments contacts send. A fake keeps the bytes of every attachment a
// contact's phone sent (the most recent maxMediaKept) and serves them as the
// real provider does:
//
//   - WhatsApp: the webhook carries a media id; GET /sandbox/graph/<version>/<media id>
//     (Bearer token) answers {"messaging_product","url","mime_type","sha256",
//     "file_size","id"} with a url valid for mediaURLTTL, and GET <url> (Bearer
//     token) answers the bytes.
//   - Twilio: the webhook carries MediaUrl{N} under the account,
//     <APIBase>/2010-04-01/Accounts/<sid>/Messages/<MM sid>/Media/<ME sid>;
//     GET with HTTP basic auth answers 302 to an unguessable CDN URL
//     (/sandbox/twilio/cdn/<token>), which answers the bytes to anyone.

// InboundMedia is an attachment a contact's phone sends.
type InboundMedia struct {
	// MimeType is the attachment's media type: sniffed from Data when
	// empty; image/png for a generated image.
	MimeType string
	// Filename names a document (WhatsApp); optional.
	Filename string
	// Data is the attachment; a small PNG is generated when empty (MimeType
	// must then be empty or image/png).
	Data []byte
}

// Limits of attachments.
const (
	MaxInboundMediaBytes = 16 << 20 // one injected attachment
	maxMediaKept         = 500      // attachments a fake keeps, the oldest dropped
	maxWhatsAppCaption   = 1024
	maxTwilioMedia       = 10 // attachments of one MMS
	maxFilenameLen       = 240
	mediaURLTTL          = 5 * time.Minute // a WhatsApp media url
	twilioCDNPrefix      = twilioPrefix + "/cdn/"
	whatsAppDownloadPath = "whatsapp_business/attachments"
)

// fakeMedia is one attachment a fake keeps.
type fakeMedia struct {
	id       string // WhatsApp media id, Twilio ME sid
	mimeType string
	filename string
	data     []byte
	sha256   string // base64 of the SHA-256 of data, as Meta reports it
	message  string // Twilio: the MM sid of the message it came with
	cdn      string // Twilio: the token of its CDN URL
}

// mediaStore holds a fake's attachments. The zero value is ready; it is
// safe for concurrent use.
type mediaStore struct {
	mu    sync.Mutex
	key   []byte // signs WhatsApp media urls
	byID  map[string]*fakeMedia
	byCDN map[string]*fakeMedia
	order []*fakeMedia
}

func (s *mediaStore) add(m *fakeMedia) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID, s.byCDN = make(map[string]*fakeMedia), make(map[string]*fakeMedia)
	}
	s.byID[m.id] = m
	if m.cdn != "" {
		s.byCDN[m.cdn] = m
	}
	s.order = keepLast(s.order, m, maxMediaKept, func(old *fakeMedia) {
		delete(s.byID, old.id)
		delete(s.byCDN, old.cdn)
	})
}

func (s *mediaStore) get(id string) *fakeMedia {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id]
}

func (s *mediaStore) getCDN(token string) *fakeMedia {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byCDN[token]
}

// sign is the hex HMAC of the parts under the store's key.
func (s *mediaStore) sign(parts ...string) string {
	s.mu.Lock()
	if s.key == nil {
		s.key = make([]byte, 32)
		rand.Read(s.key)
	}
	mac := hmac.New(sha256.New, s.key)
	s.mu.Unlock()
	for _, p := range parts {
		mac.Write([]byte(p))
		mac.Write([]byte{0})
	}
	return hex.EncodeToString(mac.Sum(nil))
}

// newFakeMedia checks an attachment a contact sends and makes it one a fake
// keeps (without ids). Bad input wraps ErrInvalidInbound.
func newFakeMedia(in InboundMedia) (*fakeMedia, error) {
	m := &fakeMedia{mimeType: strings.TrimSpace(in.MimeType), filename: in.Filename, data: in.Data}
	if len(m.data) == 0 {
		if m.mimeType != "" && m.mimeType != "image/png" {
			return nil, fmt.Errorf("%w: media of type %s without data", ErrInvalidInbound, m.mimeType)
		}
		m.mimeType, m.data = "image/png", generatePNG()
	}
	if len(m.data) > MaxInboundMediaBytes {
		return nil, fmt.Errorf("%w: media larger than %d bytes", ErrInvalidInbound, MaxInboundMediaBytes)
	}
	if m.mimeType == "" {
		m.mimeType = http.DetectContentType(m.data)
	}
	if _, _, err := mime.ParseMediaType(m.mimeType); err != nil || !strings.Contains(m.mimeType, "/") {
		return nil, fmt.Errorf("%w: media type %q", ErrInvalidInbound, m.mimeType)
	}
	if !utf8.ValidString(m.filename) || len(m.filename) > maxFilenameLen ||
		strings.ContainsFunc(m.filename, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("%w: filename must be UTF-8 without control characters, at most %d bytes", ErrInvalidInbound, maxFilenameLen)
	}
	sum := sha256.Sum256(m.data)
	m.sha256 = base64.StdEncoding.EncodeToString(sum[:])
	return m, nil
}

// generatePNG is a small valid PNG, a gradient of a random colour.
func generatePNG() []byte {
	var seed [3]byte
	rand.Read(seed[:])
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			img.Set(x, y, color.RGBA{R: seed[0] + uint8(x*4), G: seed[1] + uint8(y*5), B: seed[2], A: 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil { // into memory: cannot fail
		panic(err)
	}
	return buf.Bytes()
}

// inboundMediaOf reads the optional "media" of an inbound injection's JSON
// body: {"mime_type","filename","data" (base64)}, every field optional
// ({} sends a generated PNG). It returns nil without "media" or when the
// body is not JSON (the caller reports that); a malformed "media" wraps
// ErrInvalidInbound.
func inboundMediaOf(body []byte) (*InboundMedia, error) {
	var outer struct {
		Media json.RawMessage `json:"media"`
	}
	if json.Unmarshal(body, &outer) != nil || len(outer.Media) == 0 || string(outer.Media) == "null" {
		return nil, nil
	}
	var in struct {
		MimeType string `json:"mime_type"`
		Filename string `json:"filename"`
		Data     []byte `json:"data"`
	}
	if err := json.Unmarshal(outer.Media, &in); err != nil {
		return nil, fmt.Errorf(`%w: media must be {"mime_type","filename","data" (base64)}: %v`, ErrInvalidInbound, err)
	}
	return &InboundMedia{MimeType: in.MimeType, Filename: in.Filename, Data: in.Data}, nil
}

// checkInboundCaption is checkInbound for a message whose text (a caption)
// may be empty.
func checkInboundCaption(from, name, caption string, maxLen int) (string, error) {
	probe := caption
	if strings.TrimSpace(probe) == "" {
		probe = "-" // checks the rest
	}
	return checkInbound(from, name, probe, maxLen)
}

// requestBase is scheme://host the request came to.
func requestBase(ctx *fasthttp.RequestCtx) string {
	scheme := "http"
	if ctx.IsTLS() {
		scheme = "https"
	}
	return scheme + "://" + string(ctx.Host())
}

// ---- WhatsApp

// InjectInboundMedia sends a media message from a contact to the server as
// Meta would: the fake keeps the attachment under a new media id and posts a
// signed webhook of type image, video or audio (by the media type; a
// document otherwise) carrying the id, the media type, the SHA-256 and the
// caption (not allowed on audio) or a document's filename. The server
// fetches the bytes through the media endpoints (see HandleAPI). It returns
// the wamid as InjectInbound does.
func (w *WhatsApp) InjectInboundMedia(ctx context.Context, from, name, caption string, media InboundMedia) (string, error) {
	num, err := checkInboundCaption(from, name, caption, maxWhatsAppCaption)
	if err != nil {
		return "", err
	}
	fm, err := newFakeMedia(media)
	if err != nil {
		return "", err
	}
	fm.id = newMediaID()
	em := &envMedia{Caption: caption, MimeType: fm.mimeType, SHA256: fm.sha256, ID: fm.id}
	wamid := newWAMID()
	m := envMessage{From: num, ID: wamid, Timestamp: strconv.FormatInt(time.Now().Unix(), 10)}
	switch mt, _, _ := mime.ParseMediaType(fm.mimeType); {
	case strings.HasPrefix(mt, "image/"):
		m.Type, m.Image = "image", em
	case strings.HasPrefix(mt, "video/"):
		m.Type, m.Video = "video", em
	case strings.HasPrefix(mt, "audio/"):
		if strings.TrimSpace(caption) != "" {
			return "", fmt.Errorf("%w: audio takes no caption", ErrInvalidInbound)
		}
		m.Type, m.Audio = "audio", em
	default:
		em.Filename = fm.filename
		if em.Filename == "" {
			em.Filename = "document"
		}
		m.Type, m.Document = "document", em
	}
	w.media.add(fm)
	c := envContact{WaID: num}
	c.Profile.Name = strings.TrimSpace(name)
	body := w.envelope(envValue{Contacts: []envContact{c}, Messages: []envMessage{m}})
	wamid, err = w.inject(wamid, "webhook", func() (int, []byte, error) { return w.post(ctx, body) })
	if err == nil {
		w.log.Debug().Str("from", "+"+num).Str("wamid", wamid).Str("media_id", fm.id).Str("type", m.Type).Msg("inbound media message delivered")
	}
	return wamid, err
}

// newMediaID is a media id shaped like Meta's: 16 digits.
func newMediaID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(9e15))
	if err != nil {
		panic(err)
	}
	return strconv.FormatInt(n.Int64()+1e15, 10)
}

// mediaInfo is the Graph API's answer about a media id.
type mediaInfo struct {
	MessagingProduct string `json:"messaging_product"`
	URL              string `json:"url"`
	MimeType         string `json:"mime_type"`
	SHA256           string `json:"sha256"`
	FileSize         int    `json:"file_size"`
	ID               string `json:"id"`
}

// serveMedia serves the media endpoints of the Graph API for a request
// whose Bearer token was checked, and reports false for any other path:
//
//	GET /sandbox/graph/<version>/<media id>                      -> mediaInfo, url valid for mediaURLTTL
//	GET /sandbox/graph/whatsapp_business/attachments/?mid=&ext=&hash=  -> the bytes
func (w *WhatsApp) serveMedia(ctx *fasthttp.RequestCtx) bool {
	rest := strings.Trim(strings.TrimPrefix(string(ctx.Path()), "/sandbox/graph"), "/")
	if rest == whatsAppDownloadPath {
		w.serveMediaDownload(ctx)
		return true
	}
	version, id, ok := strings.Cut(rest, "/")
	if !ok || !ctx.IsGet() || !strings.HasPrefix(version, "v") || id == "" || strings.Contains(id, "/") || id == w.o.PhoneNumberID {
		return false
	}
	m := w.media.get(id)
	if m == nil {
		writeMetaError(ctx, fasthttp.StatusBadRequest, 100, "Unsupported get request. Object with ID '"+id+
			"' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", "")
		return true
	}
	exp := strconv.FormatInt(time.Now().Add(mediaURLTTL).Unix(), 10)
	q := url.Values{"mid": {m.id}, "ext": {exp}, "hash": {w.media.sign(m.id, exp)}}
	writeJSON(ctx, fasthttp.StatusOK, mediaInfo{
		MessagingProduct: "whatsapp",
		URL:              requestBase(ctx) + "/sandbox/graph/" + whatsAppDownloadPath + "/?" + q.Encode(),
		MimeType:         m.mimeType,
		SHA256:           m.sha256,
		FileSize:         len(m.data),
		ID:               m.id,
	})
	return true
}

// serveMediaDownload answers a media url: the bytes while it is valid.
func (w *WhatsApp) serveMediaDownload(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodGet)
		writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	args := ctx.QueryArgs()
	id, exp, sig := string(args.Peek("mid")), string(args.Peek("ext")), string(args.Peek("hash"))
	expiry, err := strconv.ParseInt(exp, 10, 64)
	m := w.media.get(id)
	if err != nil || m == nil || !hmac.Equal([]byte(sig), []byte(w.media.sign(id, exp))) || time.Now().Unix() > expiry {
		writeJSON(ctx, fasthttp.StatusNotFound, map[string]string{"error": "URL signature mismatch or expired"})
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(m.mimeType)
	ctx.SetBody(m.data)
}

// ---- Twilio

// InjectInboundMMS sends an MMS with media (1 to 10 attachments) and text
// (may be empty) from a contact to the server as Twilio would: a message
// SID MM..., NumMedia, and MediaUrl{N} with MediaContentType{N} for each
// attachment, which the fake keeps and serves (see HandleAPI). It returns
// the SID as InjectInbound does.
func (tw *Twilio) InjectInboundMMS(ctx context.Context, from, text string, media ...InboundMedia) (string, error) {
	num, err := checkInboundCaption(from, "", text, twilioMaxBody)
	if err != nil {
		return "", err
	}
	if len(media) == 0 || len(media) > maxTwilioMedia {
		return "", fmt.Errorf("%w: an MMS carries 1 to %d attachments", ErrInvalidInbound, maxTwilioMedia)
	}
	fms := make([]*fakeMedia, len(media))
	for i, in := range media {
		if fms[i], err = newFakeMedia(in); err != nil {
			return "", err
		}
	}
	return tw.injectInbound(ctx, num, text, fms)
}

// addMedia keeps the attachments of the message sid and adds their
// parameters to its webhook.
func (tw *Twilio) addMedia(params url.Values, sid string, media []*fakeMedia) {
	if len(media) == 0 {
		return
	}
	params.Set("NumMedia", strconv.Itoa(len(media)))
	base := tw.o.APIBase
	if base == "" {
		base, _ = splitBase(tw.o.InboundURL)
		base += twilioPrefix
	}
	base = strings.TrimRight(base, "/")
	for i, m := range media {
		m.id, m.message, m.cdn = "ME"+randomHex(16), sid, randomHex(24)
		tw.media.add(m)
		n := strconv.Itoa(i)
		params.Set("MediaUrl"+n, base+"/"+twilio.APIVersion+"/Accounts/"+tw.o.AccountSID+"/Messages/"+sid+"/Media/"+m.id)
		params.Set("MediaContentType"+n, m.mimeType)
	}
}

// serveMedia serves an MMS attachment and reports false for any other path:
//
//	GET /sandbox/twilio/2010-04-01/Accounts/<sid>/Messages/<MM sid>/Media/<ME sid>  (basic auth) -> 302 to its CDN URL
//	GET /sandbox/twilio/cdn/<token>                                                  -> the bytes
func (tw *Twilio) serveMedia(ctx *fasthttp.RequestCtx) bool {
	p := string(ctx.Path())
	if token, ok := strings.CutPrefix(p, twilioCDNPrefix); ok {
		m := tw.media.getCDN(token)
		switch {
		case !ctx.IsGet():
			ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodGet)
			writeJSON(ctx, fasthttp.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		case m == nil:
			writeJSON(ctx, fasthttp.StatusNotFound, map[string]string{"error": "no such object"})
		default:
			ctx.SetStatusCode(fasthttp.StatusOK)
			ctx.SetContentType(m.mimeType)
			ctx.SetBody(m.data)
		}
		return true
	}
	parts := strings.Split(strings.Trim(strings.TrimPrefix(p, twilioPrefix), "/"), "/")
	if len(parts) != 7 || parts[0] != twilio.APIVersion || parts[1] != "Accounts" || parts[3] != "Messages" || parts[5] != "Media" {
		return false
	}
	if !tw.authorized(ctx) {
		ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Basic realm="Twilio API"`)
		writeTwilioError(ctx, fasthttp.StatusUnauthorized, 20003, "Authenticate")
		return true
	}
	if !ctx.IsGet() {
		ctx.Response.Header.Set(fasthttp.HeaderAllow, fasthttp.MethodGet)
		writeTwilioError(ctx, fasthttp.StatusMethodNotAllowed, 20004, "Method not allowed")
		return true
	}
	m := tw.media.get(parts[6])
	if parts[2] != tw.o.AccountSID || m == nil || m.message != parts[4] {
		writeTwilioError(ctx, fasthttp.StatusNotFound, 20404, "The requested resource "+strings.TrimPrefix(p, twilioPrefix)+" was not found")
		return true
	}
	ctx.Redirect(requestBase(ctx)+twilioCDNPrefix+m.cdn, fasthttp.StatusFound)
	return true
}
