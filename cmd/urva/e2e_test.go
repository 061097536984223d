package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"urva/persistence/storetest"
)

// binPath is the server binary built once for these tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "urva-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "urva")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one run of the built binary.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	done chan struct{}
}

var listenRe = regexp.MustCompile(`"addr":"([0-9.]+:[0-9]+)"`)

// startServer runs `urva serve` with the shipped config.yaml and env
// overrides, and returns once it logs the address it listens on.
func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	cmd := exec.Command(binPath, "serve", "--config", "../../config.yaml")
	cmd.Env = append(os.Environ(), append([]string{"URVA_HTTP_ADDR=127.0.0.1:0", "URVA_HTTP_PUBLIC_URL=", "URVA_TURN_LISTEN=127.0.0.1:0", "URVA_LOG_FORMAT=json"}, env...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if testing.Verbose() {
				t.Log(line)
			}
			if !sent && strings.Contains(line, "listening") {
				if m := listenRe.FindStringSubmatch(line); m != nil {
					addr <- m[1]
					sent = true
				}
			}
		}
		close(s.done)
	}()
	select {
	case a := <-addr:
		s.base = "http://" + a
	case <-s.done:
		t.Fatal("server exited before listening")
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
		_ = s.cmd.Wait()
	}
}

func (s *server) do(method, path, token string, body any) (int, []byte) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (s *server) login(user, pw string) string {
	s.t.Helper()
	code, b := s.do("POST", "/api/login", "", map[string]string{"username": user, "password": pw})
	if code != 200 {
		s.t.Fatalf("login %s: %d %s", user, code, b)
	}
	var r struct{ Token string }
	_ = json.Unmarshal(b, &r)
	return r.Token
}

func (s *server) socket(token string) *websocket.Conn {
	s.t.Helper()
	url := "ws" + strings.TrimPrefix(s.base, "http") + "/ws?token=" + token
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		s.t.Fatalf("dial socket: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	// The upgrade answer can reach us before the session exists: a pong
	// proves the RM is online.
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
		s.t.Fatal(err)
	}
	if f := readFrame(s.t, c); f.Type != "pong" {
		s.t.Fatalf("want pong, got %+v", f)
	}
	return c
}

type wsFrame struct {
	Type           string `json:"type"`
	ConversationID int64  `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	MessageID      int64  `json:"message_id"`
	Status         string `json:"status"`
	Message        struct {
		ID        int64  `json:"id"`
		Direction string `json:"direction"`
		Text      string `json:"text"`
	} `json:"message"`
}

func readFrame(t *testing.T, c *websocket.Conn) wsFrame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read socket: %v", err)
	}
	var f wsFrame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f
}

// TestSandboxConversationEndToEnd runs the shipped configuration: a
// customer writes through the sandbox WhatsApp, the demo RM replies, and the
// sandbox's delivery statuses come back to the RM's socket.
func TestSandboxConversationEndToEnd(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, "URVA_DATABASE_DSN="+filepath.Join(dir, "urva.db"))
	token := s.login("demo", "demo")
	ws := s.socket(token)

	code, b := s.do("POST", "/sandbox/whatsapp/inbound", "", map[string]string{"from": "+919811100001", "name": "Meera", "text": "Namaste 🙏"})
	if code != 200 {
		t.Fatalf("inject: %d %s", code, b)
	}
	in := readFrame(t, ws)
	if in.Type != "message" || in.Message.Text != "Namaste 🙏" || in.Seq != 1 {
		t.Fatalf("inbound frame %+v", in)
	}
	code, b = s.do("POST", fmt.Sprintf("/api/conversations/%d/messages", in.ConversationID), token,
		map[string]string{"client_msg_id": "e2e-1", "text": "Hello Meera"})
	if code != 202 {
		t.Fatalf("send: %d %s", code, b)
	}
	seen := map[string]bool{}
	for !seen["delivered"] {
		f := readFrame(t, ws)
		switch f.Type {
		case "message":
			if f.Message.Direction != "out" || f.Message.Text != "Hello Meera" {
				t.Fatalf("outbound frame %+v", f)
			}
		case "status":
			seen[f.Status] = true
		}
	}
	if !seen["sent"] {
		t.Fatalf("delivered without sent: %v", seen)
	}
}

// TestSandboxSMSEndToEnd is the same flow over SMS: the sandbox Twilio posts
// a signed inbound form, the RM replies, Twilio-style status callbacks follow.
func TestSandboxSMSEndToEnd(t *testing.T) {
	s := startServer(t, "URVA_DATABASE_DSN="+filepath.Join(t.TempDir(), "urva.db"))
	token := s.login("demo", "demo")
	ws := s.socket(token)
	text := "नमस्ते 🙏 SMS"
	code, b := s.do("POST", "/sandbox/sms/inbound", "", map[string]string{"from": "+919811100002", "text": text})
	if code != 200 {
		t.Fatalf("inject: %d %s", code, b)
	}
	in := readFrame(t, ws)
	if in.Type != "message" || in.Message.Text != text {
		t.Fatalf("inbound frame %+v", in)
	}
	code, b = s.do("POST", fmt.Sprintf("/api/conversations/%d/messages", in.ConversationID), token,
		map[string]string{"client_msg_id": "sms-1", "text": "Hello by SMS"})
	if code != 202 {
		t.Fatalf("send: %d %s", code, b)
	}
	seen := map[string]bool{}
	for !seen["delivered"] {
		if f := readFrame(t, ws); f.Type == "status" {
			seen[f.Status] = true
		}
	}
	if !seen["sent"] {
		t.Fatalf("delivered without sent: %v", seen)
	}
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func webhookBody(i int) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"919800000001","phone_number_id":"100000000000001"},"contacts":[{"profile":{"name":"C%d"},"wa_id":"91981110%04d"}],"messages":[{"from":"91981110%04d","id":"wamid.KILL%d","timestamp":"1767225600","type":"text","text":{"body":"m%d"}}]}}]}]}`, i, i%20, i%20, i, i)
}

// TestKill9KeepsEveryAcknowledgedWebhook streams signed webhooks at the
// server, kills it with SIGKILL in the middle, restarts it and checks that
// every webhook answered 200 is stored. Then, as the provider does with what
// it could not deliver (and sometimes with what it could), every webhook
// sent is delivered again: each is answered 200, and each message is stored
// exactly once.
func TestKill9KeepsEveryAcknowledgedWebhook(t *testing.T) {
	for _, db := range []string{"sqlite", "mysql"} {
		t.Run(db, func(t *testing.T) {
			var env []string
			if db == "sqlite" {
				env = []string{"URVA_DATABASE_DRIVER=sqlite", "URVA_DATABASE_DSN=" + filepath.Join(t.TempDir(), "urva.db")}
			} else {
				env = []string{"URVA_DATABASE_DRIVER=mysql", "URVA_DATABASE_DSN=" + storetest.DSNForMySQL(t)}
			}
			const secret = "kill-test-secret"
			env = append(env, "URVA_WHATSAPP_APP_SECRET="+secret)
			s := startServer(t, env...)

			var mu sync.Mutex
			acked := map[int]bool{}
			sent := 0 // webhooks 0..sent-1 were (maybe) sent
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			next := make(chan int)
			go func() {
				defer close(next)
				for i := 0; ; i++ {
					select {
					case next <- i:
					case <-ctx.Done():
						return
					}
				}
			}()
			enough := make(chan struct{})
			var once sync.Once
			client := &http.Client{Timeout: 10 * time.Second}
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						mu.Lock()
						sent = max(sent, i+1)
						mu.Unlock()
						resp, err := postWebhook(client, s, secret, i)
						if err != nil {
							return // the server is gone
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							mu.Lock()
							acked[i] = true
							if len(acked) >= 300 {
								once.Do(func() { close(enough) })
							}
							mu.Unlock()
						}
					}
				}()
			}
			select {
			case <-enough:
			case <-time.After(60 * time.Second):
				t.Fatal("too few webhooks acknowledged")
			}
			s.kill() // SIGKILL while requests are in flight
			cancel()
			wg.Wait()

			s2 := startServer(t, env...)
			redeliver(t, s2, secret, sent)
			token := s2.login("admin", "admin")
			stored := map[string]int{}
			code, b := s2.do("GET", "/api/conversations", token, nil)
			if code != 200 {
				t.Fatalf("conversations: %d %s", code, b)
			}
			var list struct {
				Conversations []struct{ ID int64 } `json:"conversations"`
			}
			_ = json.Unmarshal(b, &list)
			for _, c := range list.Conversations {
				after := 0
				for {
					code, b := s2.do("GET", fmt.Sprintf("/api/conversations/%d/events?after_seq=%d&limit=500", c.ID, after), token, nil)
					if code != 200 {
						t.Fatalf("events: %d %s", code, b)
					}
					var evs struct{ Events []wsFrame }
					_ = json.Unmarshal(b, &evs)
					for _, e := range evs.Events {
						if e.Type == "message" {
							stored[e.Message.Text]++
						}
						after = int(e.Seq)
					}
					if len(evs.Events) < 500 {
						break
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range sent {
				switch n := stored[fmt.Sprintf("m%d", i)]; {
				case n == 0 && acked[i]:
					t.Errorf("webhook %d was acknowledged but is not stored", i)
				case n == 0:
					t.Errorf("webhook %d is not stored after its redelivery", i)
				case n > 1:
					t.Errorf("webhook %d is stored %d times", i, n)
				}
			}
			t.Logf("%d sent, %d acknowledged before the kill, %d stored", sent, len(acked), len(stored))
		})
	}
}

// postWebhook posts the signed webhook i.
func postWebhook(client *http.Client, s *server, secret string, i int) (*http.Response, error) {
	body := webhookBody(i)
	req, _ := http.NewRequest("POST", s.base+"/webhooks/whatsapp", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", sign(secret, body))
	req.Header.Set("Content-Type", "application/json")
	return client.Do(req)
}

// redeliver posts webhooks 0..n-1 again, on 8 connections, and wants 200
// for each.
func redeliver(t *testing.T, s *server, secret string, n int) {
	t.Helper()
	next := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	client := &http.Client{Timeout: 30 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				resp, err := postWebhook(client, s, secret, i)
				if err != nil {
					failed.CompareAndSwap(nil, fmt.Sprintf("redelivery %d: %v", i, err))
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.CompareAndSwap(nil, fmt.Sprintf("redelivery %d: %d %s", i, resp.StatusCode, b))
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if v := failed.Load(); v != nil {
		t.Fatal(v)
	}
}

// TestActorRuntimeMetrics: GET /metrics carries Proto.Actor's own
// protoactor_* families only with metrics.actor_runtime set; the urva_actors_*
// families always.
func TestActorRuntimeMetrics(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("actor_runtime=", on), func(t *testing.T) {
			s := startServer(t, fmt.Sprint("URVA_METRICS_ACTOR_RUNTIME=", on))
			// An RM's socket: a session actor starts.
			s.socket(s.login("demo", "demo"))
			code, body := s.do("GET", "/metrics", "", nil)
			if code != 200 {
				t.Fatalf("GET /metrics: %d", code)
			}
			if !strings.Contains(string(body), "urva_actors_spawned_total") {
				t.Error("no urva_actors_* families")
			}
			// The session's mailbox ran on a worker of the actors' dispatcher.
			started := regexp.MustCompile(`(?m)^urva_actor_workers_started_total ([0-9.e+]+)$`).FindSubmatch(body)
			if started == nil || string(started[1]) == "0" {
				t.Errorf("urva_actor_workers_started_total missing or 0: %q", started)
			}
			if !strings.Contains(string(body), "\nurva_actor_workers_parked ") {
				t.Error("no urva_actor_workers_parked")
			}
			if got := strings.Contains(string(body), "protoactor_actor_spawn_count_total"); got != on {
				t.Errorf("protoactor_* families present: %v, want %v", got, on)
			}
		})
	}
}

// TestCollectorPacing runs webhooks through the built binary: with pacing on
// (the default) GOGC is above 100 once collections have run under the load
// (go_gc_gogc_percent is the runtime's own figure); with
// runtime.gc_interval 0 it stays at 100 through the same load, however many
// collections run.
func TestCollectorPacing(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprint("paced=", on), func(t *testing.T) {
			const secret = "pacing-test-secret"
			env := []string{"URVA_WHATSAPP_APP_SECRET=" + secret, "URVA_DATABASE_DSN=" + filepath.Join(t.TempDir(), "urva.db")}
			if !on {
				env = append(env, "URVA_RUNTIME_GC_INTERVAL=0")
			}
			s := startServer(t, env...)
			metric := func(name string) float64 {
				t.Helper()
				code, body := s.do("GET", "/metrics", "", nil)
				if code != 200 {
					t.Fatalf("GET /metrics: %d", code)
				}
				for _, line := range strings.Split(string(body), "\n") {
					if v, ok := strings.CutPrefix(line, name+" "); ok {
						f, err := strconv.ParseFloat(v, 64)
						if err != nil {
							t.Fatalf("%s: %v", line, err)
						}
						return f
					}
				}
				t.Fatalf("no %s in /metrics", name)
				return 0
			}
			startCycles := metric("go_gc_duration_seconds_count")
			client := &http.Client{}
			for i := 0; i < 50000; i++ {
				resp, err := postWebhook(client, s, secret, i)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("webhook %d: %d", i, resp.StatusCode)
				}
				if i%200 != 199 {
					continue
				}
				percent, cycles := metric("go_gc_gogc_percent"), metric("go_gc_duration_seconds_count")
				switch {
				case on && percent > 100 && cycles-startCycles >= 3:
					t.Logf("GOGC %v after %d webhooks, %v collections", percent, i+1, cycles-startCycles)
					return
				case !on && percent != 100:
					t.Fatalf("pacing off: GOGC %v after %d webhooks", percent, i+1)
				case !on && cycles-startCycles >= 5:
					return
				}
			}
			t.Fatalf("paced=%v: 50,000 webhooks without the expected GOGC (now %v, %v collections)", on, metric("go_gc_gogc_percent"), metric("go_gc_duration_seconds_count")-startCycles)
		})
	}
}
