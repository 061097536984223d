package browsertest

// Firefox, driven through WebDriver BiDi, the protocol it serves itself on a
// websocket: no separate driver program.
//
// Firefox starts headless on a fresh profile whose user.js sets fake media
// devices, no permission prompts and nothing that reaches the network on
// its own (updates, telemetry, captive portal checks, safe browsing, remote
// settings, studies). With --remote-debugging-port=0 it picks a free port
// and prints "WebDriver BiDi listening on ws://127.0.0.1:<port>" on stderr;
// the session lives at ws://127.0.0.1:<port>/session.
//
// Commands used: session.new and session.subscribe (log.entryAdded, the
// console and uncaught errors of every tab), browsingContext.create,
// navigate, reload and close, script.evaluate and script.callFunction
// (awaitPromise, values returned as BiDi remote values and turned into
// JSON here), input.performActions and input.releaseActions (mouse clicks
// and key presses), and browser.close when the test ends.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// firefoxPrefs is the user.js of the test profile.
const firefoxPrefs = `// Test profile: fake camera and microphone, no prompts, and nothing that
// reaches the network on its own.
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.autoplay.default", 0);
user_pref("media.autoplay.blocking_policy", 0);
// The test servers, TURN included, listen on 127.0.0.1.
user_pref("media.peerconnection.ice.loopback", true);
user_pref("network.proxy.type", 0);
// Updates, studies, remote settings.
user_pref("app.update.disabledForTesting", true);
user_pref("app.update.auto", false);
user_pref("app.update.checkInstallTime", false);
user_pref("app.normandy.enabled", false);
user_pref("app.normandy.api_url", "");
user_pref("app.shield.optoutstudies.enabled", false);
user_pref("nimbus.rollouts.enabled", false);
user_pref("services.settings.server", "data:,#remote-settings-dummy/v1");
user_pref("extensions.update.enabled", false);
user_pref("extensions.systemAddon.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.blocklist.enabled", false);
user_pref("browser.search.update", false);
user_pref("browser.region.network.url", "");
user_pref("geo.provider.network.url", "");
// Telemetry and reporting.
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.usage.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.unified", false);
user_pref("toolkit.telemetry.archive.enabled", false);
user_pref("toolkit.telemetry.server", "data:,");
user_pref("browser.ping-centre.telemetry", false);
user_pref("browser.discovery.enabled", false);
// Connectivity checks, safe browsing, push, prefetching.
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.blockedURIs.enabled", false);
user_pref("dom.push.connection.enabled", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.prefetch-next", false);
user_pref("network.http.speculative-parallel-limit", 0);
// First run, start page, session restore, backups.
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("startup.homepage_welcome_url", "about:blank");
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.sessionstore.resume_from_crash", false);
user_pref("toolkit.startup.max_resumed_crashes", -1);
user_pref("browser.tabs.warnOnClose", false);
user_pref("browser.backup.enabled", false);
`

// firefoxListening starts the line Firefox prints with the BiDi address.
const firefoxListening = "WebDriver BiDi listening on "

// firefox is a running Firefox and its BiDi session.
type firefox struct {
	conn *websocket.Conn
	wmu  sync.Mutex // serialises writes on conn

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan bidiMessage
	tabs    map[string]*firefoxTab // by browsing context id, for the log
	done    chan struct{}          // closed when the reader has stopped
	err     error                  // why the reader stopped
}

// StartFirefox launches a headless Firefox for t and closes it when t ends.
// Its pages have the same methods as Chromium's. The binary is
// $URVA_FIREFOX, or firefox-esr or firefox on PATH. When none is installed
// it skips t, or fails it when CI=true.
func StartFirefox(t testing.TB) *Browser {
	t.Helper()
	path, err := findFirefox()
	if err != nil {
		msg := "install Debian package firefox-esr (" + err.Error() + "; or set URVA_FIREFOX to a Firefox binary)"
		if os.Getenv("CI") == "true" {
			t.Fatal("FIREFOX TESTS CANNOT RUN (CI=true): " + msg)
		}
		t.Skip("FIREFOX TESTS SKIPPED: " + msg)
	}

	profile, err := os.MkdirTemp("", "urva-firefox-")
	if err != nil {
		t.Fatalf("browsertest: firefox profile: %v", err)
	}
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o600); err != nil {
		_ = os.RemoveAll(profile)
		t.Fatalf("browsertest: firefox profile: %v", err)
	}

	out := &listenWriter{found: make(chan string, 1)}
	cmd := exec.Command(path, "--headless", "--no-remote", "--profile", profile,
		"--remote-debugging-port=0", "about:blank")
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1", "MOZ_CRASHREPORTER_SHUTDOWN=1")
	cmd.Stdout, cmd.Stderr = out, out
	// Child processes that outlive the browser hold the output pipe: do not
	// wait for them.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(profile)
		t.Fatalf("browsertest: starting %s: %v", path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	var f *firefox
	t.Cleanup(func() {
		if f != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = f.call(ctx, "browser.close", struct{}{}, nil)
			cancel()
			f.shutdown()
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if err := os.RemoveAll(profile); err != nil {
			t.Logf("browsertest: removing the firefox profile: %v", err)
		}
		if t.Failed() {
			if s := out.tail(4096); s != "" {
				t.Logf("firefox output (tail):\n%s", s)
			}
		}
	})

	var wsURL string
	select {
	case wsURL = <-out.found:
	case <-exited:
		t.Fatalf("browsertest: %s exited at start:\n%s", path, out.tail(4096))
	case <-time.After(startTimeout):
		_ = cmd.Process.Kill()
		t.Fatalf("browsertest: %s not listening after %s:\n%s", path, startTimeout, out.tail(4096))
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	dialer := websocket.Dialer{HandshakeTimeout: startTimeout}
	conn, _, err := dialer.DialContext(ctx, wsURL+"/session", nil)
	if err != nil {
		t.Fatalf("browsertest: connecting to %s: %v", wsURL, err)
	}
	f = &firefox{
		conn:    conn,
		pending: map[int64]chan bidiMessage{},
		tabs:    map[string]*firefoxTab{},
		done:    make(chan struct{}),
	}
	go f.read()
	if err := f.call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}, nil); err != nil {
		t.Fatalf("browsertest: firefox session.new: %v", err)
	}
	if err := f.call(ctx, "session.subscribe", map[string]any{"events": []string{"log.entryAdded"}}, nil); err != nil {
		t.Fatalf("browsertest: firefox session.subscribe: %v", err)
	}
	return &Browser{drv: f, prefix: "firefox-tab"}
}

// findFirefox returns the Firefox binary to use.
func findFirefox() (string, error) {
	if p := os.Getenv("URVA_FIREFOX"); p != "" {
		found, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("URVA_FIREFOX=%s is not executable: %w", p, err)
		}
		return found, nil
	}
	for _, name := range []string{"firefox-esr", "firefox"} {
		if found, err := exec.LookPath(name); err == nil {
			return found, nil
		}
	}
	return "", errors.New("no Firefox found (looked for firefox-esr and firefox on PATH)")
}

// listenWriter keeps Firefox's output and reports the BiDi address from the
// line that announces it. Writes come from one goroutine (stdout and stderr
// share it).
type listenWriter struct {
	lockedBuffer
	line  []byte      // the unfinished line
	sent  bool        // the address went to found
	found chan string // the ws:// address, once (buffered)
}

func (w *listenWriter) Write(p []byte) (int, error) {
	n, err := w.lockedBuffer.Write(p)
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.line[:i]))
		w.line = w.line[i+1:]
		if addr, ok := strings.CutPrefix(line, firefoxListening); ok && !w.sent {
			w.found <- addr
			w.sent = true
		}
	}
	return n, err
}

// bidiMessage is any message from the browser: a command's result or error
// (with an id), or an event.
type bidiMessage struct {
	Type    string          `json:"type"` // success, error, event
	ID      *int64          `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// read dispatches the browser's messages until the connection ends.
func (f *firefox) read() {
	var err error
	for {
		var m bidiMessage
		_, data, rerr := f.conn.ReadMessage()
		if rerr != nil {
			err = rerr
			break
		}
		if jerr := json.Unmarshal(data, &m); jerr != nil {
			continue
		}
		if m.ID != nil {
			f.mu.Lock()
			ch := f.pending[*m.ID]
			delete(f.pending, *m.ID)
			f.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		if m.Method == "log.entryAdded" {
			f.logEntry(m.Params)
		}
	}
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	close(f.done)
}

// call sends a command and decodes its result into result (unless nil).
func (f *firefox) call(ctx context.Context, method string, params, result any) error {
	ch := make(chan bidiMessage, 1)
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.pending[id] = ch
	f.mu.Unlock()
	forget := func() {
		f.mu.Lock()
		delete(f.pending, id)
		f.mu.Unlock()
	}

	data, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		forget()
		return err
	}
	f.wmu.Lock()
	if d, ok := ctx.Deadline(); ok {
		_ = f.conn.SetWriteDeadline(d)
	}
	err = f.conn.WriteMessage(websocket.TextMessage, data)
	f.wmu.Unlock()
	if err != nil {
		forget()
		return fmt.Errorf("%s: %w", method, err)
	}

	select {
	case m := <-ch:
		if m.Type == "error" {
			return fmt.Errorf("%s: %s: %s", method, m.Error, m.Message)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: decoding %s: %w", method, m.Result, err)
			}
		}
		return nil
	case <-f.done:
		forget()
		f.mu.Lock()
		err := f.err
		f.mu.Unlock()
		return fmt.Errorf("%s: connection to firefox lost: %v", method, err)
	case <-ctx.Done():
		forget()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// shutdown closes the connection and stops all logging.
func (f *firefox) shutdown() {
	_ = f.conn.Close()
	<-f.done
	f.mu.Lock()
	clear(f.tabs)
	f.mu.Unlock()
}

// logEntry writes a log.entryAdded event of an open tab to its test log.
func (f *firefox) logEntry(raw json.RawMessage) {
	var e struct {
		Type   string `json:"type"`   // console, javascript
		Method string `json:"method"` // of console
		Level  string `json:"level"`
		Text   string `json:"text"`
		Source struct {
			Context string `json:"context"`
		} `json:"source"`
		StackTrace struct {
			CallFrames []struct {
				URL        string `json:"url"`
				LineNumber int    `json:"lineNumber"`
			} `json:"callFrames"`
		} `json:"stackTrace"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return
	}
	where := ""
	if fr := e.StackTrace.CallFrames; len(fr) > 0 && fr[0].URL != "" {
		where = fmt.Sprintf(" (%s:%d)", fr[0].URL, fr[0].LineNumber+1)
	}
	// Logging under the lock: once close or shutdown has removed the tab,
	// nothing more is written to a test log that may have ended.
	f.mu.Lock()
	defer f.mu.Unlock()
	tb := f.tabs[e.Source.Context]
	if tb == nil {
		return
	}
	if e.Type == "javascript" {
		tb.t.Logf("%s: JS EXCEPTION: %s%s", tb.name, e.Text, where)
		return
	}
	method := e.Method
	if method == "" {
		method = e.Level
	}
	tb.t.Logf("%s: console.%s: %s%s", tb.name, method, e.Text, where)
}

// firefoxTab is one browsing context (a top-level window).
type firefoxTab struct {
	f       *firefox
	t       testing.TB
	name    string
	context string
}

// newTab opens a new window rather than a tab: every page is then the
// visible one of its window, so none is throttled as a background tab.
func (f *firefox) newTab(t testing.TB, name string) (tab, error) {
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	var res struct {
		Context string `json:"context"`
	}
	if err := f.call(ctx, "browsingContext.create", map[string]any{"type": "window"}, &res); err != nil {
		return nil, err
	}
	tb := &firefoxTab{f: f, t: t, name: name, context: res.Context}
	f.mu.Lock()
	f.tabs[res.Context] = tb
	f.mu.Unlock()
	return tb, nil
}

func (c *firefoxTab) navigate(ctx context.Context, url string) error {
	return c.f.call(ctx, "browsingContext.navigate",
		map[string]any{"context": c.context, "url": url, "wait": "complete"}, nil)
}

func (c *firefoxTab) reload(ctx context.Context) error {
	return c.f.call(ctx, "browsingContext.reload",
		map[string]any{"context": c.context, "wait": "complete"}, nil)
}

// evalResult is the result of script.evaluate and script.callFunction.
type evalResult struct {
	Type             string      `json:"type"` // success, exception
	Result           remoteValue `json:"result"`
	ExceptionDetails struct {
		Text       string `json:"text"`
		LineNumber int    `json:"lineNumber"`
	} `json:"exceptionDetails"`
}

// errScript is a JavaScript exception thrown by the evaluated code.
type errScript struct{ text string }

func (e *errScript) Error() string { return "uncaught " + e.text }

// script runs script.evaluate (fn "", js the expression) or
// script.callFunction (fn the function, args its string arguments), awaiting
// a promise, and returns the value.
func (c *firefoxTab) script(ctx context.Context, js string, fn string, args ...string) (remoteValue, error) {
	params := map[string]any{
		"target":          map[string]any{"context": c.context},
		"awaitPromise":    true,
		"resultOwnership": "none",
	}
	method := "script.evaluate"
	if fn == "" {
		params["expression"] = js
	} else {
		method = "script.callFunction"
		params["functionDeclaration"] = fn
		list := make([]any, len(args))
		for i, a := range args {
			list[i] = map[string]any{"type": "string", "value": a}
		}
		params["arguments"] = list
	}
	var res evalResult
	if err := c.f.call(ctx, method, params, &res); err != nil {
		return remoteValue{}, err
	}
	if res.Type == "exception" {
		return remoteValue{}, &errScript{text: res.ExceptionDetails.Text}
	}
	return res.Result, nil
}

func (c *firefoxTab) eval(ctx context.Context, js string) ([]byte, error) {
	v, err := c.script(ctx, js, "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(v.jsonValue())
}

// poll evaluates expr from here every interval, so that no timer inside the
// page is involved. An exception counts as false; the last one is reported
// on timeout.
func (c *firefoxTab) poll(ctx context.Context, expr string, interval, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		v, err := c.script(ctx, expr, "")
		switch {
		case err == nil:
			if v.truthy() {
				return nil
			}
		case errors.As(err, new(*errScript)):
			last = err
		default:
			return err
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			if last != nil {
				return fmt.Errorf("%w; its last evaluation threw: %v", errPollTimeout, last)
			}
			return errPollTimeout
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// visibleJS tells whether el is visible, as Chromium pages decide it.
const visibleJS = `(el.offsetWidth || el.offsetHeight || el.getClientRects().length)`

// waitElement calls fn (a function of the CSS selector returning null while
// the element is not there) until it returns something else.
func (c *firefoxTab) waitElement(ctx context.Context, selector, fn string) (remoteValue, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		v, err := c.script(ctx, "", fn, selector)
		if err != nil {
			return v, err
		}
		if v.Type != "null" {
			return v, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return v, fmt.Errorf("no element matches (or none is visible): %w", ctx.Err())
		}
	}
}

func (c *firefoxTab) text(ctx context.Context, selector string) (string, error) {
	v, err := c.waitElement(ctx, selector, `(sel) => {
		const el = document.querySelector(sel);
		if (!el) return null;
		return `+visibleJS+` ? el.innerText : "";
	}`)
	if err != nil {
		return "", err
	}
	s, _ := v.jsonValue().(string)
	return s, nil
}

// performActions runs one input source's actions, then releases its state.
func (c *firefoxTab) performActions(ctx context.Context, source map[string]any) error {
	err := c.f.call(ctx, "input.performActions",
		map[string]any{"context": c.context, "actions": []any{source}}, nil)
	if err != nil {
		return err
	}
	return c.f.call(ctx, "input.releaseActions", map[string]any{"context": c.context}, nil)
}

func (c *firefoxTab) click(ctx context.Context, selector string) error {
	v, err := c.waitElement(ctx, selector, `(sel) => {
		const el = document.querySelector(sel);
		if (!el || !`+visibleJS+`) return null;
		el.scrollIntoView({block: "center", inline: "center"});
		return el;
	}`)
	if err != nil {
		return err
	}
	if v.SharedID == "" {
		return fmt.Errorf("no reference to the element (a %s)", v.Type)
	}
	return c.performActions(ctx, map[string]any{
		"type":       "pointer",
		"id":         "mouse",
		"parameters": map[string]any{"pointerType": "mouse"},
		"actions": []any{
			map[string]any{"type": "pointerMove", "x": 0, "y": 0,
				"origin": map[string]any{"type": "element", "element": map[string]any{"sharedId": v.SharedID}}},
			map[string]any{"type": "pointerDown", "button": 0},
			map[string]any{"type": "pointerUp", "button": 0},
		},
	})
}

func (c *firefoxTab) typeText(ctx context.Context, selector, text string) error {
	if _, err := c.waitElement(ctx, selector, `(sel) => {
		const el = document.querySelector(sel);
		if (!el) return null;
		el.focus();
		return true;
	}`); err != nil {
		return err
	}
	var keys []any
	for _, r := range text {
		keys = append(keys,
			map[string]any{"type": "keyDown", "value": string(r)},
			map[string]any{"type": "keyUp", "value": string(r)})
	}
	return c.performActions(ctx, map[string]any{"type": "key", "id": "keyboard", "actions": keys})
}

func (c *firefoxTab) close() {
	c.f.mu.Lock()
	delete(c.f.tabs, c.context)
	c.f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.f.call(ctx, "browsingContext.close", map[string]any{"context": c.context}, nil)
}

// remoteValue is a BiDi script.RemoteValue: a JavaScript value as the
// browser serialises it.
type remoteValue struct {
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	SharedID string          `json:"sharedId"` // of a DOM node
}

// truthy tells whether the value is true in a JavaScript condition.
func (v remoteValue) truthy() bool {
	switch v.Type {
	case "undefined", "null":
		return false
	case "boolean":
		return string(v.Value) == "true"
	case "string":
		return string(v.Value) != `""`
	case "number":
		var n float64
		if json.Unmarshal(v.Value, &n) != nil {
			return string(v.Value) == `"Infinity"` || string(v.Value) == `"-Infinity"`
		}
		return n != 0
	case "bigint":
		return string(v.Value) != `"0"`
	default:
		return true
	}
}

// jsonValue returns the value as JSON.stringify would encode it: undefined,
// functions and symbols are nil (left out of objects), NaN and infinities
// null, and objects without enumerable data (nodes, windows, errors) empty.
func (v remoteValue) jsonValue() any {
	switch v.Type {
	case "undefined", "null", "function", "symbol":
		return nil
	case "boolean":
		return v.Value
	case "number":
		var s string
		if json.Unmarshal(v.Value, &s) == nil { // NaN, -0, Infinity, -Infinity
			if s == "-0" {
				return 0
			}
			return nil
		}
		var n float64
		if json.Unmarshal(v.Value, &n) != nil || math.IsNaN(n) {
			return nil
		}
		return v.Value
	case "string", "bigint", "date":
		var s string
		_ = json.Unmarshal(v.Value, &s)
		return s
	case "array", "set":
		var items []remoteValue
		_ = json.Unmarshal(v.Value, &items)
		out := make([]any, len(items))
		for i, it := range items {
			out[i] = it.jsonValue()
		}
		return out
	case "object", "map":
		var pairs [][2]json.RawMessage
		_ = json.Unmarshal(v.Value, &pairs)
		out := make(map[string]any, len(pairs))
		for _, kv := range pairs {
			var key string
			if json.Unmarshal(kv[0], &key) != nil {
				var k remoteValue
				_ = json.Unmarshal(kv[0], &k)
				key = fmt.Sprint(k.jsonValue())
			}
			var val remoteValue
			_ = json.Unmarshal(kv[1], &val)
			switch val.Type {
			case "undefined", "function", "symbol":
				continue
			}
			out[key] = val.jsonValue()
		}
		return out
	default:
		return map[string]any{}
	}
}
