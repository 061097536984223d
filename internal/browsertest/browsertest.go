// Package browsertest runs a headless Chromium for tests that drive the
// project's web pages.
//
// Start launches one browser for a test (closed by t.Cleanup); Open opens a
// tab on a URL, and the Page methods evaluate JavaScript, wait for a
// condition inside the page, read text and click. Each tab's console
// messages and uncaught exceptions go to the test log as they happen.
//
// The browser is found at $URVA_CHROMIUM, /usr/bin/chromium, or as
// chromium, chromium-browser or google-chrome on PATH. Without one the test
// is skipped with a loud message, except when CI=true, where it fails.
//
// The browser runs with fake camera and microphone devices and grants media
// permissions by itself, so pages that call getUserMedia work unattended.
//
// All methods taking a testing.TB must be called from the test's goroutine,
// as they stop the test on failure.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeouts of single steps. WaitFor takes its own.
const (
	startTimeout  = 30 * time.Second
	openTimeout   = 30 * time.Second
	actionTimeout = 15 * time.Second
)

// flags are the Chromium command-line switches of the test browser, added
// to chromedp's defaults.
var flags = []string{
	"headless",
	"no-sandbox",
	"disable-gpu",
	"disable-quic",
	"no-first-run",
	"disable-background-networking",
	"disable-component-update",
	"disable-sync",
	"use-fake-device-for-media-stream",
	"use-fake-ui-for-media-stream",
	"autoplay-policy=no-user-gesture-required",
}

// Browser is a running headless Chromium.
type Browser struct {
	ctx  context.Context // the browser's root context
	mu   sync.Mutex
	tabs int
}

// Page is one tab of a Browser.
type Page struct {
	// Name labels the tab's lines in the test log ("tab1", "tab2", ...).
	Name string

	ctx     context.Context
	cancel  context.CancelFunc
	console chan struct{} // closed when the console reader has stopped
	once    sync.Once
}

// Start launches a headless Chromium for t and closes it when t ends. When
// no browser is installed it skips t, or fails it when CI=true.
func Start(t testing.TB) *Browser {
	t.Helper()
	path, err := findChromium()
	if err != nil {
		msg := err.Error() +
			" (install the Debian package chromium, or set URVA_CHROMIUM to a Chromium or Chrome binary)"
		if os.Getenv("CI") == "true" {
			t.Fatal("BROWSER TESTS CANNOT RUN (CI=true): " + msg)
		}
		t.Skip("BROWSER TESTS SKIPPED: " + msg)
	}

	opts := append([]chromedp.ExecAllocatorOption{}, chromedp.DefaultExecAllocatorOptions[:]...)
	opts = append(opts, chromedp.ExecPath(path))
	for _, f := range flags {
		name, value, ok := strings.Cut(f, "=")
		if ok {
			opts = append(opts, chromedp.Flag(name, value))
		} else {
			opts = append(opts, chromedp.Flag(name, true))
		}
	}
	out := &lockedBuffer{}
	opts = append(opts, chromedp.CombinedOutput(out))

	log := &guardedLog{t: t}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx,
		chromedp.WithLogf(log.logf), chromedp.WithErrorf(log.logf))
	b := &Browser{ctx: bctx}
	t.Cleanup(func() {
		bcancel()
		acancel() // waits for the process to exit and removes its profile
		log.stop()
		if t.Failed() {
			if s := out.tail(4096); s != "" {
				t.Logf("browser output (tail):\n%s", s)
			}
		}
	})

	// The first run starts the browser. It must not run under a timeout (that
	// would bound the browser's whole life), so a timer reports a hang.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(bctx) }()
	select {
	case err = <-started:
	case <-time.After(startTimeout):
		bcancel()
		err = <-started
		err = fmt.Errorf("not started after %s: %w", startTimeout, err)
	}
	if err != nil {
		t.Fatalf("browsertest: starting %s: %v\n%s", path, err, out.tail(4096))
	}
	return b
}

// findChromium returns the browser binary to use.
func findChromium() (string, error) {
	if p := os.Getenv("URVA_CHROMIUM"); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("URVA_CHROMIUM=%s is not executable: %w", p, err)
		}
		return found, nil
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if found, err := exec.LookPath(name); err == nil {
			return found, nil
		}
	}
	return "", errors.New("no Chromium found (looked for /usr/bin/chromium, chromium, chromium-browser, google-chrome)")
}

// Open opens url in a new tab and waits for its load event. The tab closes
// when t ends, or earlier with Close.
func (b *Browser) Open(t testing.TB, url string) *Page {
	t.Helper()
	b.mu.Lock()
	b.tabs++
	name := fmt.Sprintf("tab%d", b.tabs)
	b.mu.Unlock()

	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &Page{Name: name, ctx: ctx, cancel: cancel, console: make(chan struct{})}
	// The first run creates the tab, which lives as long as ctx: no timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("browsertest: new tab: %v", err)
	}
	// Subscribed before navigating, so nothing the page logs is lost.
	messages := chromedp.Console(ctx)
	go func() {
		defer close(p.console)
		for m, err := range messages {
			if err != nil {
				return
			}
			where := ""
			if m.URL != "" {
				where = fmt.Sprintf(" (%s:%d)", m.URL, m.Line+1)
			}
			if m.IsException() {
				t.Logf("%s: JS EXCEPTION: %s%s", name, m.Text, where)
			} else {
				t.Logf("%s: console.%s: %s%s", name, m.Type, m.Text, where)
			}
		}
	}()
	t.Cleanup(p.Close)

	nctx, ncancel := context.WithTimeout(ctx, openTimeout)
	defer ncancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("browsertest: %s: open %s: %v", name, url, err)
	}
	return p
}

// Close closes the tab and stops logging its console. It is safe to call
// more than once.
func (p *Page) Close() {
	p.once.Do(func() {
		p.cancel()
		<-p.console
	})
}

// Context returns the tab's chromedp context, to run chromedp actions the
// Page methods do not cover. Derive a context with a timeout from it for
// each run; do not cancel it.
func (p *Page) Context() context.Context { return p.ctx }

// Reload reloads the page and waits for its load event.
func (p *Page) Reload(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, openTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatalf("browsertest: %s: reload: %v%s", p.Name, err, p.diagnose())
	}
}

// Eval evaluates the JavaScript expression js in the page and decodes its
// JSON value into out (skipped when out is nil). A promise is awaited, so
// js may be an async expression such as `(async () => ...)()`.
func (p *Page) Eval(t testing.TB, js string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("browsertest: %s: eval %s: %v%s", p.Name, js, err, p.diagnose())
		return
	}
	if out == nil {
		return
	}
	if len(raw) == 0 {
		raw = []byte("null")
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("browsertest: %s: eval %s: decoding %s: %v", p.Name, js, raw, err)
	}
}

// WaitFor polls the JavaScript boolean expression expr inside the page until
// it is true, or fails the test after timeout, logging the page's state
// (window.urvaCall when the page has it, and the body text). The
// expression may return a promise, which is awaited.
func (p *Page) WaitFor(t testing.TB, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		if errors.Is(err, chromedp.ErrPollingTimeout) {
			err = fmt.Errorf("still false after %s", timeout)
		}
		t.Fatalf("browsertest: %s: waiting for %s: %v%s", p.Name, expr, err, p.diagnose())
	}
}

// Text returns the visible text of the first element matching the CSS
// selector, waiting for it to exist.
func (p *Page) Text(t testing.TB, selector string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
	if err != nil {
		t.Fatalf("browsertest: %s: text of %s: %v%s", p.Name, selector, err, p.diagnose())
	}
	return s
}

// Click clicks the first element matching the CSS selector with the mouse,
// waiting for it to be visible.
func (p *Page) Click(t testing.TB, selector string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))); err != nil {
		t.Fatalf("browsertest: %s: click %s: %v%s", p.Name, selector, err, p.diagnose())
	}
}

// Type focuses the first element matching the CSS selector and types text
// into it as key presses.
func (p *Page) Type(t testing.TB, selector, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(selector), text)); err != nil {
		t.Fatalf("browsertest: %s: type into %s: %v%s", p.Name, selector, err, p.diagnose())
	}
}

// diagnoseJS describes the page for a failure message. An
// RTCPeerConnection (which JSON shows as {}) is replaced by its states.
const diagnoseJS = `JSON.stringify({
	url: location.href,
	urvaCall: window.urvaCall,
	body: document.body ? document.body.innerText : null,
}, (k, v) => (typeof RTCPeerConnection !== "undefined" && v instanceof RTCPeerConnection)
	? {connectionState: v.connectionState, iceConnectionState: v.iceConnectionState,
	   signalingState: v.signalingState, iceGatheringState: v.iceGatheringState}
	: v, 2)`

// diagnose returns the page's state for a failure message, or why it could
// not be read.
func (p *Page) diagnose() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](diagnoseJS))
	if err != nil {
		return "\npage state unavailable: " + err.Error()
	}
	return "\npage state: " + s
}

// guardedLog forwards the protocol client's log lines to the test log until
// stopped: logging after a test has ended panics.
type guardedLog struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (l *guardedLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Logf("browser: "+format, args...)
	}
}

func (l *guardedLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// lockedBuffer collects the browser's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n bytes written.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.Bytes()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return strings.TrimSpace(string(s))
}
