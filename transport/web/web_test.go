package web_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
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

func TestConsolePage(t *testing.T) {
	for _, name := range []string{"console.html", "console.js", "console.css"} {
		b, err := fs.ReadFile(web.StaticFS(), name)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: %v (%d bytes)", name, err, len(b))
		}
	}
	page := web.ConsolePage()
	for _, want := range []string{
		`src="/static/console.js"`, `href="/static/console.css"`,
		`id="login-form"`, `id="username"`, `id="password"`, `id="login-error"`,
		`id="conn"`, `id="logout"`, `id="conversations"`, `id="filter-unassigned"`,
		`id="thread"`, `id="composer"`, `id="send"`, `id="window-closed"`,
		`id="template-select"`, `id="template-send"`, `id="call-button"`, `id="video-button"`,
		`id="assign-select"`, `id="assign-button"`, `id="toasts"`, `aria-live=`,
	} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("console page lacks %s", want)
		}
	}
	// The page runs under a CSP without 'unsafe-inline': no inline scripts,
	// styles or handlers.
	lower := strings.ToLower(string(page))
	for _, bad := range []string{"<script>", "<style", " style=", " onclick=", " onload=", " onsubmit=", "javascript:"} {
		if strings.Contains(lower, bad) {
			t.Errorf("console page has inline %q", bad)
		}
	}
	page[0] = 'X'
	if web.ConsolePage()[0] == 'X' {
		t.Error("ConsolePage returned shared memory")
	}
}

func TestPhonePage(t *testing.T) {
	page := web.PhonePage()
	if len(page) == 0 {
		t.Fatal("empty phone page")
	}
	for _, want := range []string{`src="/static/phone.js"`, `href="/static/phone.css"`} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("phone page lacks %s", want)
		}
	}
	page[0] = 'X'
	if web.PhonePage()[0] == 'X' {
		t.Error("PhonePage returned shared memory")
	}
}

// TestConsoleScriptParses checks the console script with node --check,
// when node is installed.
func TestConsoleScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not on PATH: the console script cannot be checked")
		}
		t.Skip("NODE NOT FOUND: the console script syntax check was skipped")
	}
	b, err := fs.ReadFile(web.StaticFS(), "console.js")
	if err != nil {
		t.Fatal(err)
	}
	// A .js file outside a package is checked as a classic script, which
	// is how the page loads it.
	p := filepath.Join(t.TempDir(), "console.js")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", p).CombinedOutput(); err != nil {
		t.Errorf("node --check console.js: %v\n%s", err, out)
	}
}
