package web_test

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"urva/transport/web"
)

func TestStaticFS(t *testing.T) {
	for _, name := range []string{"video.html", "video.js", "video.css"} {
		b, err := fs.ReadFile(web.StaticFS(), name)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v (%d bytes)", name, err, len(b))
		}
	}
	page := web.VideoPage()
	for _, want := range []string{`src="/static/video.js"`, `href="/static/video.css"`, `id="local"`, `id="remote"`,
		`id="mute"`, `id="camera"`, `id="hangup"`, `id="message"`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("video page lacks %s", want)
		}
	}
	// Each call returns its own copy.
	page[0] = 'X'
	if web.VideoPage()[0] == 'X' {
		t.Error("VideoPage returned shared memory")
	}
}

func TestErrorPage(t *testing.T) {
	page := string(web.ErrorPage(`Link <expired>`, `Ask "them" for a new link & <script>alert(1)</script>`))
	if strings.Contains(page, "<script>") || strings.Contains(page, "<expired>") {
		t.Fatalf("not escaped:\n%s", page)
	}
	for _, want := range []string{
		`<title>Link &lt;expired&gt;</title>`,
		`<h1>Link &lt;expired&gt;</h1>`,
		`id="message"`,
		`Ask &#34;them&#34; for a new link &amp; &lt;script&gt;alert(1)&lt;/script&gt;`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("error page lacks %s:\n%s", want, page)
		}
	}
}
