package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"urva/actors"
	"urva/persistence"
)

// mediaActors adds MessageSource to the fake actor system: message 1 is
// rm 7's, with one attachment.
type mediaActors struct {
	Actors
	channel string
	media   persistence.Media
}

func (a mediaActors) Message(ctx context.Context, p actors.Principal, id int64) (*persistence.Message, error) {
	if id != 1 {
		return nil, actors.ErrNotFound
	}
	if p.RMID != 7 && !p.Supervisor() {
		return nil, actors.ErrForbidden
	}
	return &persistence.Message{ID: 1, Channel: a.channel, Type: "image", Media: []persistence.Media{a.media}}, nil
}

// fakeFetcher answers every fetch with its fields and records the close.
type fakeFetcher struct {
	data   []byte
	ctype  string
	size   int64
	err    error
	closed atomic.Int32
	ctxErr atomic.Value  // the fetch context's error when the body was closed
	done   chan struct{} // closed at the first close
	once   sync.Once
}

func newFetcher(data string, ctype string, size int64) *fakeFetcher {
	return &fakeFetcher{data: []byte(data), ctype: ctype, size: size, done: make(chan struct{})}
}

// waitClosed waits for the body to be closed and returns the fetch
// context's state then.
func (f *fakeFetcher) waitClosed(t *testing.T) any {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(guard):
		t.Fatal("the download was never closed")
	}
	return f.ctxErr.Load()
}

type closeRecorder struct {
	io.Reader
	f   *fakeFetcher
	ctx context.Context
}

func (c *closeRecorder) Close() error {
	c.f.closed.Add(1)
	c.f.once.Do(func() {
		if err := c.ctx.Err(); err != nil {
			c.f.ctxErr.Store(err.Error())
		} else {
			c.f.ctxErr.Store("live")
		}
		close(c.f.done)
	})
	return nil
}

func (f *fakeFetcher) FetchMedia(ctx context.Context, m persistence.Media) (io.ReadCloser, string, int64, error) {
	if f.err != nil {
		return nil, "", 0, f.err
	}
	return &closeRecorder{Reader: bytes.NewReader(f.data), f: f, ctx: ctx}, f.ctype, f.size, nil
}

func newMediaEnv(t *testing.T, md persistence.Media, f *fakeFetcher) *env {
	t.Helper()
	return newEnv(t, func(o *Options) {
		o.Actors = mediaActors{Actors: o.Actors, channel: persistence.ChannelWhatsApp, media: md}
		if f != nil {
			o.Media = map[string]MediaFetcher{persistence.ChannelWhatsApp: f}
		}
	})
}

// A download of unannounced size is streamed chunked; the body is closed
// once sent; the stored media type stands in for a missing one.
func TestMediaStreamsUnannouncedSize(t *testing.T) {
	f := newFetcher("OggS voice note", "", -1)
	e := newMediaEnv(t, persistence.Media{ProviderMediaID: "1", MimeType: "audio/ogg; codecs=opus"}, f)
	r := e.do("GET", "/api/messages/1/media/0?token="+e.token(7, persistence.RoleRM), nil)
	if r.status != 200 || string(r.body) != "OggS voice note" {
		t.Fatalf("%d %q", r.status, r.body)
	}
	for name, want := range map[string]string{
		"Content-Type":        "audio/ogg; codecs=opus",
		"Content-Disposition": `inline; filename="message-1-0.ogg"`,
		"Content-Length":      "",
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if state := f.waitClosed(t); state != "live" || f.closed.Load() != 1 {
		t.Fatalf("closed %d times, context %v", f.closed.Load(), state)
	}
}

// Active content is never shown in place.
func TestMediaActiveContentIsADownload(t *testing.T) {
	for ctype, want := range map[string]string{
		"text/html; charset=utf-8": `attachment; filename="report.html"`,
		"image/svg+xml":            `attachment; filename="report.html"`,
		"image/jpeg":               `inline; filename="report.html"`,
	} {
		f := newFetcher("<script>alert(1)</script>", ctype, 25)
		e := newMediaEnv(t, persistence.Media{ProviderMediaID: "1", Filename: "report.html"}, f)
		r := e.api("GET", "/api/messages/1/media/0", e.token(9, persistence.RoleSupervisor), "")
		if r.status != 200 || r.header.Get("Content-Disposition") != want || r.header.Get("Content-Type") != ctype ||
			r.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(r.header.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("%s: %d %v", ctype, r.status, r.header)
		}
	}
}

func TestMediaRefusals(t *testing.T) {
	md := persistence.Media{ProviderMediaID: "1", MimeType: "image/jpeg"}
	big := newFetcher("x", "image/jpeg", MaxMediaBytes+1)
	e := newMediaEnv(t, md, big)
	rm := e.token(7, persistence.RoleRM)
	if r := e.api("GET", "/api/messages/1/media/0", rm, ""); r.status != 502 || !strings.Contains(r.errorText(t), "larger than") {
		t.Fatalf("too large: %d %q", r.status, r.body)
	}
	big.waitClosed(t)
	if r := e.api("GET", "/api/messages/1/media/0", e.token(8, persistence.RoleRM), ""); r.status != 403 {
		t.Fatalf("other RM: %d %q", r.status, r.body)
	}
	if r := e.api("GET", "/api/messages/2/media/0", rm, ""); r.status != 404 {
		t.Fatalf("unknown message: %d %q", r.status, r.body)
	}
	if r := e.do("GET", "/api/messages/1/media/0", nil); r.status != 401 || r.header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no token: %d %q", r.status, r.body)
	}

	failing := newMediaEnv(t, md, &fakeFetcher{err: errors.New("provider down: secret detail")})
	r := failing.api("GET", "/api/messages/1/media/0", failing.token(7, persistence.RoleRM), "")
	if r.status != 502 || r.errorText(t) == "" || strings.Contains(string(r.body), "secret detail") {
		t.Fatalf("provider error: %d %q", r.status, r.body)
	}

	none := newMediaEnv(t, md, nil)
	if r := none.api("GET", "/api/messages/1/media/0", none.token(7, persistence.RoleRM), ""); r.status != 503 {
		t.Fatalf("no fetcher: %d %q", r.status, r.body)
	}
	plain := newEnv(t, nil) // actors without MessageSource
	if r := plain.api("GET", "/api/messages/1/media/0", plain.token(7, persistence.RoleRM), ""); r.status != 503 {
		t.Fatalf("no message source: %d %q", r.status, r.body)
	}
}

func TestParseMediaPath(t *testing.T) {
	for p, want := range map[string][2]int64{
		"/api/messages/1/media/0":    {1, 0},
		"/api/messages/42/media/12":  {42, 12},
		"/api/messages/0/media/0":    {-1},
		"/api/messages/1/media/-1":   {-1},
		"/api/messages/1/media/+1":   {-1},
		"/api/messages/1/media/":     {-1},
		"/api/messages/1/media":      {-1},
		"/api/messages//media/0":     {-1},
		"/api/messages/1/media/0/":   {-1},
		"/api/messages/1/other/0":    {-1},
		"/api/messages/1/media/0x1":  {-1},
		"/api/messages/1e3/media/0":  {-1},
		"/api/messages/1/media/9999": {1, 9999},
	} {
		id, n, ok := parseMediaPath(p)
		if want[0] == -1 {
			if ok {
				t.Errorf("%s: accepted (%d, %d)", p, id, n)
			}
			continue
		}
		if !ok || id != want[0] || int64(n) != want[1] {
			t.Errorf("%s = %d, %d, %v", p, id, n, ok)
		}
	}
}

func TestSanitizeFilenameAndDisposition(t *testing.T) {
	for in, want := range map[string]string{
		"report.pdf":                 `attachment; filename="report.pdf"`,
		`C:\Users\me\"x".pdf`:        `attachment; filename="x.pdf"`,
		"../../etc/passwd":           `attachment; filename="passwd"`,
		"...hidden":                  `attachment; filename="hidden"`,
		"a\r\nb\x00c\u202e.exe":      `attachment; filename="abc.exe"`,
		"100% sure;x=1.txt":          `attachment; filename="100_ sure;x=1.txt"; filename*=UTF-8''100%25%20sure%3Bx%3D1.txt`,
		"फोटो 📷.jpg":                 `attachment; filename="____ _.jpg"; filename*=UTF-8''%E0%A4%AB%E0%A5%8B%E0%A4%9F%E0%A5%8B%20%F0%9F%93%B7.jpg`,
		"tab\there.txt":              `attachment; filename="tab here.txt"`,
		"":                           `attachment; filename="message-5-1.pdf"`,
		"..":                         `attachment; filename="message-5-1.pdf"`,
		strings.Repeat("é", 100):     "",
		"\xff\xfeinvalid-utf8.bin":   `attachment; filename="invalid-utf8.bin"`,
		"/":                          `attachment; filename="message-5-1.pdf"`,
		"name with \"quotes\" .docx": `attachment; filename="name with quotes .docx"`,
	} {
		got := contentDisposition("attachment", mediaFilename(persistence.Media{Filename: in}, "application/pdf", 5, 1))
		if want == "" { // only the length is checked
			if name := sanitizeFilename(in); len(name) > maxFilenameBytes || !strings.HasPrefix(name, "é") {
				t.Errorf("%q: %q", in, name)
			}
			continue
		}
		if got != want {
			t.Errorf("%q:\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestCapReader(t *testing.T) {
	r := &capReader{r: strings.NewReader("12345"), left: 5}
	if b, err := io.ReadAll(r); err != nil || string(b) != "12345" {
		t.Fatalf("at the cap: %q %v", b, err)
	}
	r = &capReader{r: iotest.OneByteReader(strings.NewReader("123456")), left: 5}
	if b, err := io.ReadAll(r); !errors.Is(err, errMediaTooLarge) || string(b) != "12345" {
		t.Fatalf("over the cap: %q %v", b, err)
	}
}
