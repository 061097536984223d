// Package browsertest runs a headless Chromium or Firefox for tests that
// drive the project's web pages.
//
// Start launches one Chromium for a test, StartFirefox one Firefox (each
// closed by t.Cleanup); Open opens a tab on a URL, and the Page methods
// evaluate JavaScript, wait for a condition inside the page, read text and
// click, the same in both browsers. Each tab's console messages and uncaught
// exceptions go to the test log as they happen.
//
// Chromium is found at $URVA_CHROMIUM, /usr/bin/chromium, or as chromium,
// chromium-browser or google-chrome on PATH; Firefox as described at
// StartFirefox. Without one the test is skipped with a loud message, except
// when CI=true, where it fails.
//
// Both browsers run with fake camera and microphone devices and grant media
// permissions by themselves, so pages that call getUserMedia work
// unattended.
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

// Browser is a running headless browser: Chromium (Start) or Firefox
// (StartFirefox). Its pages have the same methods either way.
type Browser struct {
	drv    browserDriver
	prefix string // of the tab names: "tab", "firefox-tab"
	mu     sync.Mutex
	tabs   int
}

// Page is one tab of a Browser.
type Page struct {
	// Name labels the tab's lines in the test log ("tab1", "tab2", ...; for
	// Firefox "firefox-tab1", ...).
	Name string

	tab  tab
	once sync.Once
}

// browserDriver opens tabs in one kind of browser.
type browserDriver interface {
	// newTab opens an empty tab whose console messages and uncaught
	// exceptions go to t's log, labelled name, until it is closed.
	newTab(t testing.TB, name string) (tab, error)
}

// tab drives one tab of a browser. Its methods return errors; Page turns
// them into test failures.
type tab interface {
	navigate(ctx context.Context, url string) error // waits for the load event
	reload(ctx context.Context) error               // waits for the load event
	// eval evaluates js, awaits a promise, and returns its value as JSON.
	eval(ctx context.Context, js string) ([]byte, error)
	// poll evaluates the boolean expression expr every interval until it is
	// true; errPollTimeout after timeout.
	poll(ctx context.Context, expr string, interval, timeout time.Duration) error
	// text returns the innerText of the first element matching the CSS
	// selector when it is visible, "" otherwise, waiting for it to exist.
	text(ctx context.Context, selector string) (string, error)
	// click clicks the first visible element matching the CSS selector with
	// the mouse, waiting for it.
	click(ctx context.Context, selector string) error
	// typeText focuses the first element matching the CSS selector and types
	// text as key presses.
	typeText(ctx context.Context, selector, text string) error
	close() // closes the tab and stops logging it; once
}

// errPollTimeout is returned by tab.poll when the expression stayed false.
var errPollTimeout = errors.New("polling timed out")

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
	b := &Browser{drv: chromium{ctx: bctx}, prefix: "tab"}
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
	name := fmt.Sprintf("%s%d", b.prefix, b.tabs)
	b.mu.Unlock()

	bt, err := b.drv.newTab(t, name)
	if err != nil {
		t.Fatalf("browsertest: new tab: %v", err)
	}
	p := &Page{Name: name, tab: bt}
	t.Cleanup(p.Close)

	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	if err := bt.navigate(ctx, url); err != nil {
		t.Fatalf("browsertest: %s: open %s: %v", name, url, err)
	}
	return p
}

// Close closes the tab and stops logging its console. It is safe to call
// more than once.
func (p *Page) Close() {
	p.once.Do(p.tab.close)
}

// Context returns the chromedp context of a Chromium tab, to run chromedp
// actions the Page methods do not cover. Derive a context with a timeout
// from it for each run; do not cancel it. It panics on a Firefox tab.
func (p *Page) Context() context.Context {
	c, ok := p.tab.(*chromiumTab)
	if !ok {
		panic("browsertest: Context of " + p.Name + ", which is not a Chromium tab")
	}
	return c.ctx
}

// Reload reloads the page and waits for its load event.
func (p *Page) Reload(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	if err := p.tab.reload(ctx); err != nil {
		t.Fatalf("browsertest: %s: reload: %v%s", p.Name, err, p.diagnose())
	}
}

// Eval evaluates the JavaScript expression js in the page and decodes its
// JSON value into out (skipped when out is nil). A promise is awaited, so
// js may be an async expression such as `(async () => ...)()`.
func (p *Page) Eval(t testing.TB, js string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	raw, err := p.tab.eval(ctx, js)
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
// expression may return a promise, which is awaited. It should not throw:
// Chromium then fails the wait, Firefox counts it as false and reports the
// last exception on timeout.
func (p *Page) WaitFor(t testing.TB, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	if err := p.tab.poll(ctx, expr, 50*time.Millisecond, timeout); err != nil {
		if errors.Is(err, errPollTimeout) {
			// What follows the sentinel's text is the driver's detail.
			err = fmt.Errorf("still false after %s%s", timeout, strings.TrimPrefix(err.Error(), errPollTimeout.Error()))
		}
		t.Fatalf("browsertest: %s: waiting for %s: %v%s", p.Name, expr, err, p.diagnose())
	}
}

// Text returns the visible text of the first element matching the CSS
// selector, waiting for it to exist.
func (p *Page) Text(t testing.TB, selector string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	s, err := p.tab.text(ctx, selector)
	if err != nil {
		t.Fatalf("browsertest: %s: text of %s: %v%s", p.Name, selector, err, p.diagnose())
	}
	return s
}

// Click clicks the first element matching the CSS selector with the mouse,
// waiting for it to be visible.
func (p *Page) Click(t testing.TB, selector string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	if err := p.tab.click(ctx, selector); err != nil {
		t.Fatalf("browsertest: %s: click %s: %v%s", p.Name, selector, err, p.diagnose())
	}
}

// Type focuses the first element matching the CSS selector and types text
// into it as key presses.
func (p *Page) Type(t testing.TB, selector, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	if err := p.tab.typeText(ctx, selector, text); err != nil {
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := p.tab.eval(ctx, diagnoseJS)
	var s string
	if err == nil {
		err = json.Unmarshal(raw, &s)
	}
	if err != nil {
		return "\npage state unavailable: " + err.Error()
	}
	return "\npage state: " + s
}

// chromium is a running Chromium: the root chromedp context.
type chromium struct{ ctx context.Context }

// chromiumTab is one tab: a chromedp context derived from the browser's.
type chromiumTab struct {
	ctx     context.Context
	cancel  context.CancelFunc
	console chan struct{} // closed when the console reader has stopped
}

func (c chromium) newTab(t testing.TB, name string) (tab, error) {
	ctx, cancel := chromedp.NewContext(c.ctx)
	// The first run creates the tab, which lives as long as ctx: no timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		return nil, err
	}
	ct := &chromiumTab{ctx: ctx, cancel: cancel, console: make(chan struct{})}
	// Subscribed before navigating, so nothing the page logs is lost.
	messages := chromedp.Console(ctx)
	go func() {
		defer close(ct.console)
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
	return ct, nil
}

// within runs fn under the tab's context, bounded by the deadline of ctx.
func (c *chromiumTab) within(ctx context.Context, fn func(context.Context) error) error {
	rctx := c.ctx
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		rctx, cancel = context.WithDeadline(c.ctx, d)
		defer cancel()
	}
	return fn(rctx)
}

func (c *chromiumTab) navigate(ctx context.Context, url string) error {
	return c.within(ctx, func(ctx context.Context) error { return chromedp.Do(ctx, chromedp.Navigate(url)) })
}

func (c *chromiumTab) reload(ctx context.Context) error {
	return c.within(ctx, func(ctx context.Context) error { return chromedp.Do(ctx, chromedp.Reload()) })
}

func (c *chromiumTab) eval(ctx context.Context, js string) (raw []byte, err error) {
	err = c.within(ctx, func(ctx context.Context) error {
		raw, err = chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
		return err
	})
	return raw, err
}

func (c *chromiumTab) poll(ctx context.Context, expr string, interval, timeout time.Duration) error {
	err := c.within(ctx, func(ctx context.Context) error {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(interval),
			chromedp.WithPollingTimeout(timeout)))
		return err
	})
	if errors.Is(err, chromedp.ErrPollingTimeout) {
		return errPollTimeout
	}
	return err
}

func (c *chromiumTab) text(ctx context.Context, selector string) (s string, err error) {
	err = c.within(ctx, func(ctx context.Context) error {
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(selector)))
		return err
	})
	return s, err
}

func (c *chromiumTab) click(ctx context.Context, selector string) error {
	return c.within(ctx, func(ctx context.Context) error { return chromedp.Do(ctx, chromedp.Click(chromedp.CSS(selector))) })
}

func (c *chromiumTab) typeText(ctx context.Context, selector, text string) error {
	return c.within(ctx, func(ctx context.Context) error {
		return chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(selector), text))
	})
}

func (c *chromiumTab) close() {
	c.cancel()
	<-c.console
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

// SetViewport makes the page's viewport width x height CSS pixels, as on a
// phone or a laptop (Chromium pages only).
func (p *Page) SetViewport(t testing.TB, width, height int64) {
	t.Helper()
	c, ok := p.tab.(*chromiumTab)
	if !ok {
		t.Fatalf("browsertest: %s: viewports are set in Chromium only", p.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	if err := c.within(ctx, func(ctx context.Context) error { return chromedp.Do(ctx, chromedp.EmulateViewport(width, height)) }); err != nil {
		t.Fatalf("browsertest: %s: viewport: %v%s", p.Name, err, p.diagnose())
	}
}

// Screenshot returns a PNG of the page's viewport at width x height CSS
// pixels (Chromium pages only).
func (p *Page) Screenshot(t testing.TB, width, height int64) []byte {
	t.Helper()
	c, ok := p.tab.(*chromiumTab)
	if !ok {
		t.Fatalf("browsertest: %s: screenshots are taken in Chromium only", p.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
	defer cancel()
	var png []byte
	p.SetViewport(t, width, height)
	err := c.within(ctx, func(ctx context.Context) error {
		var err error
		png, err = chromedp.Run(ctx, chromedp.CaptureScreenshot())
		return err
	})
	if err != nil {
		t.Fatalf("browsertest: %s: screenshot: %v%s", p.Name, err, p.diagnose())
	}
	return png
}
