// Package web holds the pages the server sends to browsers: the RM console,
// the video call page that a call link opens, the sandbox customer phone,
// their scripts and styles, and the small error page shown for a link that
// cannot be used. Everything is embedded in the binary; the pages are plain
// HTML, CSS and JavaScript with no build step and load nothing from other
// origins.
//
// The HTTP server mounts StaticFS under /static/, answers / with
// ConsolePage, /v/{id} with VideoPage and, in sandbox mode, /sandbox/phone
// with PhonePage. Each page finds everything else by itself through the
// API; the console's use of the API and the live socket is described in
// static/console.js, the call page's signalling in static/video.js.
package web

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
)

//go:embed static
var content embed.FS

// static is the static folder as the root of a file system.
var static = mustSub(content, "static")

// The pages, read once.
var (
	consolePage = mustRead(static, "console.html")
	videoPage   = mustRead(static, "video.html")
	phonePage   = mustRead(static, "phone.html")
)

// StaticFS returns the embedded static files (scripts, styles, pages). The
// server serves each file under /static/<name>: the pages refer to them
// there.
func StaticFS() fs.FS { return static }

// VideoPage returns the HTML of the video call page, served at
// /v/{id}?t=<link token>. The caller owns the returned slice.
func VideoPage() []byte { return bytes.Clone(videoPage) }

// ConsolePage returns the HTML of the RM console, served at /. The caller
// owns the returned slice.
func ConsolePage() []byte { return bytes.Clone(consolePage) }

// PhonePage returns the HTML of the sandbox customer phone, served at
// /sandbox/phone when the sandbox is on. The caller owns the returned slice.
func PhonePage() []byte { return bytes.Clone(phonePage) }

// errorPage is a self-contained page: no scripts, inline styles, so it works
// whatever made the request fail.
var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>
:root { color-scheme: light dark; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0; min-height: 100vh; display: grid; place-items: center; background: Canvas; color: CanvasText; }
main { max-width: 32rem; margin: 1.5rem; padding: 1.5rem 1.75rem; border: 1px solid rgba(128, 128, 128, .4); border-radius: .75rem; }
h1 { font-size: 1.35rem; margin: 0 0 .75rem; }
p { font-size: 1.05rem; line-height: 1.5; margin: 0; }
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p id="message" role="alert">{{.Message}}</p>
</main>
</body>
</html>
`))

// ErrorPage returns a small self-contained HTML page with title as its
// heading and message in the element with id "message", both HTML-escaped.
// The server sends it with a 4xx status for a call link that has expired,
// was tampered with or was used up.
func ErrorPage(title, message string) []byte {
	var b bytes.Buffer
	// Executing a parsed template into a buffer with string fields cannot fail.
	_ = errorPage.Execute(&b, struct{ Title, Message string }{title, message})
	return b.Bytes()
}

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

func mustRead(f fs.FS, name string) []byte {
	b, err := fs.ReadFile(f, name)
	if err != nil {
		panic(err)
	}
	return b
}
