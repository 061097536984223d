package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"urva/transport/httpapi"
)

// urva top: a live view of the server's actors, from GET /admin/actors.

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// topPage is the answer of GET /admin/actors.
type topPage = httpapi.ActorsPage

func cmdTop(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("top", stderr)
	addr := fs.String("addr", "http://127.0.0.1:8080", "the server's base URL")
	token := fs.String("admin-token", "", "the operator token (auth.admin_token); default: $URVA_ADMIN_TOKEN")
	interval := fs.Duration("interval", time.Second, "time between refreshes")
	count := fs.Int("count", 0, "stop after this many refreshes; the exit status is 1 if any failed (0: until interrupted)")
	top := fs.Int("top", 10, "how many actors to list, deepest mailbox first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tok := *token
	if tok == "" {
		tok = lookupEnv(environ, "URVA_ADMIN_TOKEN")
	}
	var problems []string
	if tok == "" {
		problems = append(problems, "an admin token is required: --admin-token or URVA_ADMIN_TOKEN")
	}
	base, err := topBaseURL(*addr)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if *interval <= 0 {
		problems = append(problems, "--interval must be positive")
	}
	if *count < 0 {
		problems = append(problems, "--count must not be negative")
	}
	if *top < 0 || *top > 1000 {
		problems = append(problems, "--top must be between 0 and 1000")
	}
	if len(problems) > 0 {
		return usagef("top: %s", strings.Join(problems, "; "))
	}

	client := &http.Client{Timeout: max(*interval, 5*time.Second)}
	defer client.CloseIdleConnections()
	terminal := isTerminal(stdout)
	var prev *topPage
	var prevAt time.Time
	failed := 0
	for i := 0; *count == 0 || i < *count; i++ {
		if i > 0 {
			t := time.NewTimer(*interval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
		}
		page, err := fetchActors(ctx, client, base, tok, *top)
		if err != nil && ctx.Err() != nil {
			return nil // interrupted
		}
		now := time.Now()
		var frame bytes.Buffer
		switch {
		case err != nil:
			failed++
			renderTopError(&frame, base, err, now, *interval)
		case prev != nil:
			renderTop(&frame, base, page, prev, now.Sub(prevAt), now)
		default:
			renderTop(&frame, base, page, nil, 0, now)
		}
		if err == nil {
			prev, prevAt = page, now
		}
		switch {
		case terminal:
			io.WriteString(stdout, clearScreen)
		case i > 0:
			io.WriteString(stdout, "\n")
		}
		if _, err := stdout.Write(frame.Bytes()); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("top: %d of %d refreshes failed", failed, *count)
	}
	return nil
}

// lookupEnv returns the value of key in environ ("" when absent).
func lookupEnv(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// topBaseURL checks --addr; a bare host:port means http.
func topBaseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--addr %q is not a server URL such as http://127.0.0.1:8080", addr)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

func fetchActors(ctx context.Context, client *http.Client, base, token string, top int) (*topPage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/admin/actors?top=%d", base, top), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, errors.New("the server refused the admin token (HTTP 401): check --admin-token or URVA_ADMIN_TOKEN against auth.admin_token")
		case e.Error != "":
			return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error)
		}
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var p topPage
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("the answer is not the actors JSON: %w", err)
	}
	return &p, nil
}

// renderTop writes one frame: the kinds, then the top actors. Rates come
// from the received counters of prev, elapsed earlier; without prev they
// are shown as "-".
func renderTop(w io.Writer, base string, cur, prev *topPage, elapsed time.Duration, now time.Time) {
	fmt.Fprintf(w, "urva top  %s  %s\n\n", base, now.Format("15:04:05"))
	prevReceived := map[string]int64{}
	if prev != nil {
		for _, k := range prev.Kinds {
			prevReceived[k.Kind] = k.Received
		}
	}
	kw := len("KIND")
	for _, k := range cur.Kinds {
		kw = max(kw, len(k.Kind))
	}
	fmt.Fprintf(w, "%-*s %8s %8s %8s %12s %10s %9s %9s %9s %9s\n", kw, "KIND",
		"LIVE", "MAILBOX", "MAX", "RECEIVED", "MSG/S", "P99", "SPAWNED", "STOPPED", "RESTARTS")
	for _, k := range cur.Kinds {
		rate := "-"
		if p, ok := prevReceived[k.Kind]; ok && elapsed > 0 && k.Received >= p {
			rate = fmt.Sprintf("%.1f", float64(k.Received-p)/elapsed.Seconds())
		}
		p99 := "-"
		if k.ReceiveLatency.Count > 0 {
			p99 = formatLatency(k.ReceiveLatency.P99Seconds)
		}
		fmt.Fprintf(w, "%-*s %8d %8d %8d %12d %10s %9s %9d %9d %9d\n", kw, k.Kind,
			k.Live, k.MailboxSum, k.MailboxMax, k.Received, rate, p99, k.Spawned, k.Stopped, k.Restarted)
	}
	fmt.Fprintf(w, "\nTOP %d ACTORS BY MAILBOX\n", len(cur.Top))
	if len(cur.Top) == 0 {
		fmt.Fprintln(w, "(no live actors)")
		return
	}
	kw, iw := len("KIND"), len("ID")
	for _, r := range cur.Top {
		kw, iw = max(kw, len(r.Kind)), max(iw, len(r.ID))
	}
	fmt.Fprintf(w, "%-*s %-*s %8s %10s  %s\n", kw, "KIND", iw, "ID", "MAILBOX", "RECEIVED", "LAST ACTIVITY")
	for _, r := range cur.Top {
		last := "-"
		if r.LastActivity != nil {
			last = formatAgo(now.Sub(*r.LastActivity))
		}
		fmt.Fprintf(w, "%-*s %-*s %8d %10d  %s\n", kw, r.Kind, iw, r.ID, r.Mailbox, r.Received, last)
	}
}

func renderTopError(w io.Writer, base string, err error, now time.Time, interval time.Duration) {
	fmt.Fprintf(w, "urva top  %s  %s\n\n", base, now.Format("15:04:05"))
	fmt.Fprintf(w, "error: %v\nretrying every %s\n", err, interval)
}

// formatLatency renders seconds as µs, ms or s.
func formatLatency(sec float64) string {
	switch {
	case sec < 0.001:
		return fmt.Sprintf("%.0fµs", sec*1e6)
	case sec < 1:
		return fmt.Sprintf("%.1fms", sec*1e3)
	}
	return fmt.Sprintf("%.2fs", sec)
}

// formatAgo renders how long ago something happened.
func formatAgo(d time.Duration) string {
	switch {
	case d < time.Second:
		return "now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return fmt.Sprintf("%dh%02dm ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
}
