package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/persistence"
)

// Attachments:
//
//	GET /api/messages/{id}/media/{n}    attachment n (0-based) of a message, streamed from the provider
//
// The RM token comes in the Authorization header or as ?token= (so that the
// console can use the URL in <img>, <audio> and <video>).

// MediaFetcher downloads attachments of one channel from its provider.
// *whatsapp.Client and *twilio.Client implement it.
type MediaFetcher interface {
	// FetchMedia opens attachment m. body is streamed and must be closed;
	// contentType is the provider's ("" when it gave none); size is -1 when
	// unknown. ctx bounds the whole download, reading body included.
	FetchMedia(ctx context.Context, m persistence.Media) (body io.ReadCloser, contentType string, size int64, err error)
}

// MessageSource returns a message p may see (actors.ErrNotFound,
// actors.ErrForbidden otherwise). The media endpoint reads messages through
// Options.Actors when it implements MessageSource, as *actors.System (through
// Options.System) does.
type MessageSource interface {
	Message(ctx context.Context, p actors.Principal, id int64) (*persistence.Message, error)
}

var _ MessageSource = (*actors.System)(nil)

const (
	mediaPrefix = "/api/messages/"
	// MaxMediaBytes caps one attachment served: the largest WhatsApp
	// document (100 MB) fits, and an MMS (5 MB at most) easily does. The
	// bytes are streamed from the provider, never held in memory whole; a
	// larger attachment is refused (502), and one whose size the provider
	// does not announce is cut off past the cap.
	MaxMediaBytes = 100 << 20
	// mediaTransferTimeout bounds one attachment download from the
	// provider, body included. The server's write timeout still bounds
	// sending the answer to the RM.
	mediaTransferTimeout = 10 * time.Minute
	mediaCacheControl    = "private, max-age=300"
	// mediaCSP keeps a document an RM opens from running anything on the
	// console's origin, should a contact's attachment be HTML or SVG.
	mediaCSP = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'"
	// maxFilenameBytes bounds the filename of Content-Disposition.
	maxFilenameBytes = 150
)

// messageMedia: GET /api/messages/{id}/media/{n}.
func (s *Server) messageMedia(c *call) {
	p, ok := s.principal(c, true)
	if !ok {
		unauthorized(c)
		return
	}
	id, n, ok := parseMediaPath(string(c.ctx.Path()))
	if !ok {
		writeError(c.ctx, fasthttp.StatusNotFound, "not found")
		return
	}
	src, ok := s.actors.(MessageSource)
	if !ok {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, actors.ErrUnavailable.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	m, err := src.Message(ctx, p, id)
	cancel()
	if err != nil {
		apiError(c, err)
		return
	}
	if n >= len(m.Media) {
		writeError(c.ctx, fasthttp.StatusNotFound, "no attachment "+strconv.Itoa(n)+" in this message")
		return
	}
	md := m.Media[n]
	f := s.opts.Media[m.Channel]
	if f == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, "attachments of channel "+m.Channel+" cannot be fetched")
		return
	}
	log := c.log.With().Int64("message_id", m.ID).Int("media", n).Str("channel", m.Channel).Logger()
	fctx, fcancel := context.WithTimeout(context.Background(), mediaTransferTimeout)
	body, ctype, size, err := f.FetchMedia(fctx, md)
	if err != nil {
		fcancel()
		log.Warn().Err(err).Msg("attachment fetch failed")
		writeError(c.ctx, fasthttp.StatusBadGateway, "the provider did not deliver the attachment")
		return
	}
	if size > MaxMediaBytes {
		body.Close()
		fcancel()
		log.Warn().Int64("size", size).Msg("attachment too large")
		writeError(c.ctx, fasthttp.StatusBadGateway, fmt.Sprintf("attachment larger than %d bytes", MaxMediaBytes))
		return
	}
	ctype = mediaContentType(ctype, md.MimeType)
	mt, _, _ := mime.ParseMediaType(ctype)
	disposition := "attachment"
	if inlineMedia(mt) {
		disposition = "inline"
	}
	h := &c.ctx.Response.Header
	h.Set(fasthttp.HeaderContentDisposition, contentDisposition(disposition, mediaFilename(md, mt, m.ID, n)))
	h.Set(fasthttp.HeaderCacheControl, mediaCacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", mediaCSP)
	h.Set(fasthttp.HeaderAcceptRanges, "none")
	c.ctx.SetContentType(ctype)
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	stream := &mediaStream{r: body, body: body, cancel: fcancel}
	if size < 0 {
		stream.r = &capReader{r: body, left: MaxMediaBytes}
		size = -1 // chunked
	}
	log.Debug().Int64("size", size).Str("content_type", ctype).Msg("attachment")
	c.ctx.SetBodyStream(stream, int(size)) // fasthttp closes stream once sent
}

// parseMediaPath reads {id} and {n} of /api/messages/{id}/media/{n}.
func parseMediaPath(p string) (id int64, n int, ok bool) {
	parts := strings.Split(strings.TrimPrefix(p, mediaPrefix), "/")
	if len(parts) != 3 || parts[1] != "media" || !allDigits(parts[0]) || !allDigits(parts[2]) {
		return 0, 0, false
	}
	id, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, 0, false
	}
	n, err = strconv.Atoi(parts[2])
	if err != nil {
		return 0, 0, false
	}
	return id, n, true
}

func allDigits(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// mediaContentType is the provider's content type when it is a valid media
// type, else the one stored with the message, else application/octet-stream.
func mediaContentType(provider, stored string) string {
	for _, v := range []string{provider, stored} {
		if mt, params, err := mime.ParseMediaType(v); err == nil {
			if out := mime.FormatMediaType(mt, params); out != "" {
				return out
			}
		}
	}
	return "application/octet-stream"
}

// inlineMedia reports whether a browser may show an attachment of media
// type mt in place: images, audio and video, except SVG (a document that
// can carry scripts).
func inlineMedia(mt string) bool {
	switch {
	case strings.Contains(mt, "xml"):
		return false
	case strings.HasPrefix(mt, "image/"), strings.HasPrefix(mt, "audio/"), strings.HasPrefix(mt, "video/"):
		return true
	}
	return false
}

// Extensions of made-up filenames, for the media types the providers send.
var mediaExtensions = map[string]string{
	"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
	"video/mp4": ".mp4", "video/3gpp": ".3gp", "audio/ogg": ".ogg", "audio/mpeg": ".mp3",
	"audio/aac": ".aac", "audio/amr": ".amr", "audio/mp4": ".m4a", "application/pdf": ".pdf",
	"text/plain": ".txt", "text/vcard": ".vcf", "text/x-vcard": ".vcf",
}

// mediaFilename is the attachment's own filename (documents), else
// message-<id>-<n> with an extension for its media type.
func mediaFilename(md persistence.Media, mt string, messageID int64, n int) string {
	if name := sanitizeFilename(md.Filename); name != "" {
		return name
	}
	ext := mediaExtensions[mt]
	if ext == "" {
		if exts, err := mime.ExtensionsByType(mt); err == nil && len(exts) > 0 {
			ext = exts[0]
		}
	}
	return "message-" + strconv.FormatInt(messageID, 10) + "-" + strconv.Itoa(n) + ext
}

// sanitizeFilename keeps the last path element of name without control
// characters, quotes, backslashes or leading dots, at most
// maxFilenameBytes long; "" when nothing is left.
func sanitizeFilename(name string) string {
	name = strings.ToValidUTF8(name, "")
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r), r == '"', r == '/', unicode.Is(unicode.Cf, r):
			return -1
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, name)
	name = strings.TrimLeft(strings.TrimSpace(name), ".")
	if len(name) > maxFilenameBytes {
		cut := maxFilenameBytes
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut]
	}
	return strings.TrimSpace(name)
}

// contentDisposition renders disposition with filename: an ASCII
// filename="..." (other characters as '_') and, when name is not plain
// ASCII, also the UTF-8 filename* parameter of RFC 6266.
func contentDisposition(disposition, name string) string {
	var ascii strings.Builder
	plain := true
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' {
			ascii.WriteByte('_')
			plain = false
			continue
		}
		ascii.WriteRune(r)
	}
	out := disposition + `; filename="` + ascii.String() + `"`
	if !plain {
		out += "; filename*=UTF-8''" + encodeExtValue(name)
	}
	return out
}

// encodeExtValue percent-encodes s as RFC 8187 value-chars: every byte but
// letters, digits and !#$&+-.^_`|~.
func encodeExtValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("!#$&+-.^_`|~", ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	return b.String()
}

// mediaStream is the answer's body: the provider's download, read through
// r; closing it closes the download and releases its context.
type mediaStream struct {
	r      io.Reader
	body   io.Closer
	cancel context.CancelFunc
}

func (s *mediaStream) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *mediaStream) Close() error {
	err := s.body.Close()
	s.cancel()
	return err
}

// errMediaTooLarge ends an attachment of unannounced size past MaxMediaBytes.
var errMediaTooLarge = errors.New("attachment larger than the cap")

// capReader reads at most left bytes, then fails (so that the answer ends
// broken rather than looking complete).
type capReader struct {
	r    io.Reader
	left int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One more byte would be over the cap: probe for it.
		var b [1]byte
		for {
			n, err := c.r.Read(b[:])
			if n > 0 {
				return 0, errMediaTooLarge
			}
			if err != nil {
				return 0, err
			}
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
