package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"urva/transport/httpapi"
)

// cannedActors serves GET /admin/actors as the server answers it, the
// conversation counters growing by 10 messages per poll.
func cannedActors(t *testing.T, token string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/actors" || r.Method != http.MethodGet {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"unauthorized"}`)
			return
		}
		if got := r.URL.Query().Get("top"); got != "5" {
			t.Errorf("top=%q", got)
		}
		n := polls.Add(1)
		last := time.Now().Add(-3 * time.Second).UTC().Format(time.RFC3339Nano)
		fmt.Fprintf(w, `{"kinds":[
			{"kind":"conversation","live":3,"spawned":4,"stopped":1,"restarted":0,"received":%d,"mailbox_sum":7,"mailbox_max":5,
			 "receive_latency":{"count":%d,"sum_seconds":0.5,"p50_seconds":0.0001,"p99_seconds":0.0042}},
			{"kind":"rm_session","live":1,"spawned":1,"stopped":0,"restarted":0,"received":2,"mailbox_sum":0,"mailbox_max":0,
			 "receive_latency":{"count":2,"sum_seconds":0.001,"p50_seconds":0.00005,"p99_seconds":0.00005}},
			{"kind":"crm_sync","live":0,"spawned":0,"stopped":0,"restarted":0,"received":0,"mailbox_sum":0,"mailbox_max":0,
			 "receive_latency":{"count":0,"sum_seconds":0,"p50_seconds":0,"p99_seconds":0}}],
			"top":[
			{"kind":"conversation","id":"whatsapp/+919800000001/+919811100001","mailbox":5,"received":40,"last_activity":%q},
			{"kind":"rm_session","id":"7/$3","mailbox":0,"received":2,"last_activity":null}]}`, 100+10*n, 100+10*n, last)
	}))
	t.Cleanup(srv.Close)
	return srv, &polls
}

func TestTopPollsAndRendersFrames(t *testing.T) {
	srv, polls := cannedActors(t, "s3cret")
	r := cli(t, "", "top", "--addr", srv.URL, "--admin-token", "s3cret", "--interval", "1ms", "--count", "2", "--top", "5")
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("got %+v", r)
	}
	if polls.Load() != 2 {
		t.Fatalf("%d polls", polls.Load())
	}
	if strings.Contains(r.stdout, "\x1b[") {
		t.Errorf("escape codes written to a non-terminal:\n%q", r.stdout)
	}
	frames := strings.Split(r.stdout, "\n\nurva top  ")
	if len(frames) != 2 {
		t.Fatalf("want 2 frames separated by a blank line, got %d:\n%s", len(frames), r.stdout)
	}
	for i, f := range frames {
		for _, re := range []string{
			`KIND +LIVE +MAILBOX +MAX +RECEIVED +MSG/S +P99`,
			`conversation +3 +7 +5 +1[12]0 +\S+ +4\.2ms +4 +1 +0`,
			`rm_session +1 +0 +0 +2 +\S+ +50µs`,
			`crm_sync +0 +0 +0 +0 +\S+ +- `,
			`TOP 2 ACTORS BY MAILBOX`,
			`conversation +whatsapp/\+919800000001/\+919811100001 +5 +40 +[0-9]+s ago`,
			`rm_session +7/\$3 +0 +2 +-`,
		} {
			if !regexp.MustCompile(re).MatchString(f) {
				t.Errorf("frame %d does not match %q:\n%s", i+1, re, f)
			}
		}
	}
	// No rate before there are two polls to compare.
	if !regexp.MustCompile(`conversation +3 +7 +5 +110 +- `).MatchString(frames[0]) {
		t.Errorf("first frame has a rate:\n%s", frames[0])
	}
	if regexp.MustCompile(`conversation +3 +7 +5 +120 +- `).MatchString(frames[1]) {
		t.Errorf("second frame has no rate:\n%s", frames[1])
	}
}

func TestTopRate(t *testing.T) {
	prev := &topPage{Kinds: []httpapi.ActorKind{{Kind: "conversation", Received: 100}}}
	cur := &topPage{Kinds: []httpapi.ActorKind{{Kind: "conversation", Live: 2, Received: 150}}}
	var b bytes.Buffer
	renderTop(&b, "http://x", cur, prev, 2*time.Second, time.Now())
	if !regexp.MustCompile(`conversation +2 +0 +0 +150 +25\.0 +- `).MatchString(b.String()) {
		t.Fatalf("rate over 2s:\n%s", b.String())
	}
	if !strings.Contains(b.String(), "(no live actors)") {
		t.Fatalf("empty top:\n%s", b.String())
	}
}

func TestTopTokenFromEnvironment(t *testing.T) {
	srv, _ := cannedActors(t, "from-env")
	r := cliEnv(t, []string{"URVA_ADMIN_TOKEN=from-env"}, "", "top", "--addr", strings.TrimPrefix(srv.URL, "http://"),
		"--count", "1", "--top", "5")
	if r.code != exitOK || !strings.Contains(r.stdout, "conversation") {
		t.Fatalf("got %+v", r)
	}
}

func TestTopErrorsAreShownAndSetTheExitStatus(t *testing.T) {
	srv, _ := cannedActors(t, "right")
	r := cli(t, "", "top", "--addr", srv.URL, "--admin-token", "wrong", "--interval", "1ms", "--count", "2", "--top", "5")
	if r.code != exitError || strings.Count(r.stdout, "refused the admin token (HTTP 401)") != 2 ||
		!strings.Contains(r.stderr, "2 of 2 refreshes failed") {
		t.Fatalf("wrong token: %+v", r)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r = cli(t, "", "top", "--addr", "http://"+addr, "--admin-token", "t", "--interval", "1ms", "--count", "1")
	if r.code != exitError || !strings.Contains(r.stdout, "connection refused") || !strings.Contains(r.stdout, "retrying every 1ms") {
		t.Fatalf("no server: %+v", r)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--count", "1"}, "an admin token is required"},
		{[]string{"--admin-token", "t", "--addr", "ftp://host"}, "is not a server URL"},
		{[]string{"--admin-token", "t", "--interval", "0s"}, "--interval must be positive"},
		{[]string{"--admin-token", "t", "--top", "-1"}, "--top must be between 0 and 1000"},
		{[]string{"--admin-token", "t", "extra"}, `unexpected argument "extra"`},
	} {
		r := cli(t, "", append([]string{"top"}, tt.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: got %+v, want exit %d and %q", tt.args, r, exitUsage, tt.want)
		}
	}
}

// TestTopAgainstTheServer runs `urva top` against the built server in
// sandbox mode, with an RM connected.
func TestTopAgainstTheServer(t *testing.T) {
	s := startServer(t, "URVA_DATABASE_DSN="+filepath.Join(t.TempDir(), "urva.db"))
	s.socket(s.login("demo", "demo"))
	r := cli(t, "", "top", "--addr", s.base, "--admin-token", "urva-sandbox-admin-token", "--interval", "10ms", "--count", "2")
	if r.code != exitOK {
		t.Fatalf("got %+v", r)
	}
	frames := strings.Split(r.stdout, "\n\nurva top  ")
	if len(frames) != 2 {
		t.Fatalf("want 2 frames, got %d:\n%s", len(frames), r.stdout)
	}
	for _, re := range []string{
		`conversation +0 `,
		`rm_session +1 `,
		`provider +[1-9]`,
		`TOP [0-9]+ ACTORS BY MAILBOX`,
		`rm_session +[0-9]+/\S+ +[0-9]+ +[1-9]`,
		`provider +whatsapp `,
	} {
		if !regexp.MustCompile(re).MatchString(frames[1]) {
			t.Errorf("second frame does not match %q:\n%s", re, frames[1])
		}
	}
}
