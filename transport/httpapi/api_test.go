package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/persistence"
	"urva/transport/auth"
	"urva/transport/sandbox"
)

func addRM(t *testing.T, e *env, id int64, username, password, role string) {
	t.Helper()
	hash, err := auth.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	e.store.set(func(f *fakeStore) {
		f.rms[username] = &persistence.RM{ID: id, Username: username, Role: role, PasswordHash: hash}
	})
}

func TestLogin(t *testing.T) {
	e := newEnv(t, nil)
	addRM(t, e, 7, "meera", "s3cret", persistence.RoleRM)

	r := e.do("POST", "/api/login", strings.NewReader(`{"username":"meera","password":"s3cret"}`))
	if r.status != 200 {
		t.Fatalf("%d %q", r.status, r.body)
	}
	var got struct {
		Token string `json:"token"`
		RM    struct {
			ID       int64  `json:"id"`
			Username string `json:"username"`
			Role     string `json:"role"`
		} `json:"rm"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if got.RM.ID != 7 || got.RM.Username != "meera" || got.RM.Role != "rm" {
		t.Fatalf("%+v", got)
	}
	claims, err := e.tokens.Parse(got.Token, time.Now())
	if err != nil || claims.RMID != 7 || claims.Role != "rm" {
		t.Fatalf("token: %+v %v", claims, err)
	}
	// The token works on the API.
	if r := e.api("GET", "/api/conversations", got.Token, ""); r.status != 200 {
		t.Fatalf("%d %q", r.status, r.body)
	}

	for _, body := range []string{
		`{"username":"meera","password":"wrong"}`,
		`{"username":"nobody","password":"s3cret"}`,
		`{"username":"meera","password":""}`,
	} {
		r := e.do("POST", "/api/login", strings.NewReader(body))
		if r.status != 401 || r.errorText(t) == "" {
			t.Fatalf("%s: %d %q", body, r.status, r.body)
		}
	}
	if r := e.do("POST", "/api/login", strings.NewReader(`{"username":`)); r.status != 400 {
		t.Fatalf("bad JSON: %d %q", r.status, r.body)
	}
}

func TestBearerChecks(t *testing.T) {
	e := newEnv(t, nil)
	expired := e.tokens.Issue(7, "rm", time.Now().Add(-2*time.Hour))
	other := auth.NewTokens([]byte("another secret of enough length!!"), time.Hour).Issue(7, "rm", time.Now())
	for name, header := range map[string]string{
		"missing":      "",
		"garbage":      "Bearer garbage",
		"expired":      "Bearer " + expired,
		"other secret": "Bearer " + other,
		"not bearer":   "Basic " + e.token(7, "rm"),
	} {
		t.Run(name, func(t *testing.T) {
			var headers []string
			if header != "" {
				headers = []string{"Authorization", header}
			}
			for _, p := range []string{"/api/conversations", "/api/conversations/1/events"} {
				r := e.do("GET", p, nil, headers...)
				if r.status != 401 || r.errorText(t) != "unauthorized" {
					t.Fatalf("%s: %d %q", p, r.status, r.body)
				}
			}
			r := e.do("POST", "/api/conversations/1/messages", strings.NewReader(`{"client_msg_id":"a","text":"hi"}`), headers...)
			if r.status != 401 {
				t.Fatalf("send: %d %q", r.status, r.body)
			}
		})
	}
	r := e.api("GET", "/api/conversations", e.token(9, persistence.RoleSupervisor), "")
	if r.status != 200 {
		t.Fatalf("%d %q", r.status, r.body)
	}
	if p := e.actors.lastPrincipal(); p.RMID != 9 || p.Role != persistence.RoleSupervisor {
		t.Fatalf("principal %+v", p)
	}
}

func TestConversationsList(t *testing.T) {
	e := newEnv(t, nil)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e.actors.set(func(f *fakeActors) {
		f.convs = []persistence.ConversationSummary{
			{
				Conversation: persistence.Conversation{ID: 3, Key: persistence.ConversationKey{Channel: "whatsapp", ContactPhone: "+919811100001"},
					ContactName: "Meera Iyer", AssignedRMID: 7, LastSeq: 12, LastMessageAt: at},
				ContactPhone: "+919811100001", UnreadCount: 2,
				LastMessage: &persistence.Message{ID: 41, Direction: "in", Type: "text", Text: "Is my KYC done?", Status: "received", CreatedAt: at},
			},
			{Conversation: persistence.Conversation{ID: 4, Key: persistence.ConversationKey{Channel: "sms", ContactPhone: "+919811100002"}}},
		}
	})
	r := e.api("GET", "/api/conversations", e.token(7, "rm"), "")
	want := `{"conversations":[` +
		`{"id":3,"channel":"whatsapp","contact":{"phone":"+919811100001","name":"Meera Iyer"},"assigned_rm_id":7,"last_seq":12,"last_message_at":"2026-01-02T03:04:05Z","unread_count":2,` +
		`"last_message":{"id":41,"direction":"in","type":"text","text":"Is my KYC done?","status":"received","created_at":"2026-01-02T03:04:05Z"},"window_expires_at":null,"sms_opted_out":false},` +
		`{"id":4,"channel":"sms","contact":{"phone":"+919811100002","name":""},"assigned_rm_id":null,"last_seq":0,"last_message_at":null,"unread_count":0,"window_expires_at":null,"sms_opted_out":false}]}`
	if r.status != 200 || string(r.body) != want {
		t.Fatalf("%d\n got %s\nwant %s", r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
}

func TestConversationEvents(t *testing.T) {
	e := newEnv(t, nil)
	e.actors.set(func(f *fakeActors) {
		f.events = [][]byte{
			[]byte(`{"type":"message","conversation_id":3,"seq":5,"cursor":"c5","message":{"id":1}}`),
			[]byte(`{"type":"status","conversation_id":3,"seq":6,"cursor":"c6","message_id":1,"status":"read"}`),
		}
	})
	tok := e.token(7, "rm")
	r := e.api("GET", "/api/conversations/3/events?after_seq=4&limit=50", tok, "")
	want := `{"events":[{"type":"message","conversation_id":3,"seq":5,"cursor":"c5","message":{"id":1}},{"type":"status","conversation_id":3,"seq":6,"cursor":"c6","message_id":1,"status":"read"}]}`
	if r.status != 200 || string(r.body) != want {
		t.Fatalf("%d %s", r.status, r.body)
	}
	e.actors.mu.Lock()
	args := e.actors.eventsArgs
	e.actors.mu.Unlock()
	if args != [3]int64{3, 4, 50} {
		t.Fatalf("args %v", args)
	}
	e.actors.set(func(f *fakeActors) { f.events = nil })
	if r := e.api("GET", "/api/conversations/3/events", tok, ""); r.status != 200 || string(r.body) != `{"events":[]}` {
		t.Fatalf("empty: %d %s", r.status, r.body)
	}
	for _, q := range []string{"after_seq=x", "after_seq=-1", "limit=0", "limit=abc"} {
		if r := e.api("GET", "/api/conversations/3/events?"+q, tok, ""); r.status != 400 {
			t.Fatalf("%s: %d %s", q, r.status, r.body)
		}
	}
	if r := e.api("GET", "/api/conversations/404/events", tok, ""); r.status != 404 {
		t.Fatalf("not found: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/api/conversations/abc/events", "/api/conversations/3/other", "/api/conversations/3"} {
		if r := e.api("GET", p, tok, ""); r.status != 404 {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
}

func TestSendMessage(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token(7, "rm")
	r := e.api("POST", "/api/conversations/3/messages", tok, `{"client_msg_id":"c-1","text":"Hello"}`)
	if r.status != 202 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := `{"message":{"id":99,"conversation_id":3,"seq":7,"direction":"out","channel":"whatsapp","type":"text","text":"Hello","status":"queued","provider_message_id":"","client_msg_id":"c-1","created_at":"2026-01-02T03:04:05Z","contact":{"phone":"","name":""}}}`
	if string(r.body) != want {
		t.Fatalf("\n got %s\nwant %s", r.body, want)
	}

	r = e.api("POST", "/api/conversations/3/messages", tok, `{"client_msg_id":"c-2","template":{"name":"followup","language":"en","params":["Meera"]}}`)
	if r.status != 202 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	req := e.actors.lastSend()
	if req.ClientMsgID != "c-2" || req.Template == nil || req.Template.Name != "followup" || len(req.Template.Params) != 1 {
		t.Fatalf("%+v", req)
	}
	msg := r.json(t)["message"].(map[string]any)
	if tpl, _ := msg["template"].(map[string]any); tpl["name"] != "followup" || tpl["language"] != "en" {
		t.Fatalf("template %v", msg["template"])
	}

	for body, wantErr := range map[string]string{
		`{"text":"Hello"}`:                    "client_msg_id required",
		`{"client_msg_id":"","text":"Hello"}`: "client_msg_id required",
		`{"client_msg_id":"x"}`:               "text or template required",
		`{"client_msg_id":"x","text":"a","template":{"name":"t","language":"en"}}`: "text and template are exclusive",
		`{"client_msg_id":"x","template":{"name":"t"}}`:                            "template name and language required",
		`not json`: "invalid JSON",
		``:         "request body required",
	} {
		r := e.api("POST", "/api/conversations/3/messages", tok, body)
		if r.status != 400 || !strings.Contains(r.errorText(t), wantErr) {
			t.Fatalf("%q: %d %s", body, r.status, r.body)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	e := newEnv(t, nil)
	e.actors.setSend(func(p actors.Principal, id int64, req actors.SendRequest) (*persistence.Message, error) {
		switch id {
		case 1:
			return nil, actors.ErrForbidden
		case 2:
			return nil, actors.ErrNotFound
		case 3:
			return nil, fmt.Errorf("%w: text longer than 4096 characters", actors.ErrBadRequest)
		case 4:
			return nil, actors.ErrWindowClosed
		case 5:
			return nil, actors.ErrUnavailable
		default:
			return nil, errors.New("something broke")
		}
	})
	tok := e.token(7, "rm")
	for id, want := range map[int]struct {
		status int
		text   string
	}{
		1: {403, "forbidden"},
		2: {404, "not found"},
		3: {400, "text longer than 4096 characters"},
		4: {422, actors.ErrWindowClosed.Error()},
		5: {503, "temporarily unavailable"},
		6: {503, "temporarily unavailable"},
	} {
		r := e.api("POST", fmt.Sprintf("/api/conversations/%d/messages", id), tok, `{"client_msg_id":"a","text":"hi"}`)
		if r.status != want.status || !strings.Contains(r.errorText(t), want.text) {
			t.Fatalf("id %d: %d %s", id, r.status, r.body)
		}
	}
}

func TestStartConversation(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token(7, "rm")
	r := e.api("POST", "/api/conversations", tok, `{"channel":"whatsapp","phone":"+919811100001","name":"Meera","text":"Hello","client_msg_id":"s-1"}`)
	if r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	m := r.json(t)
	cv := m["conversation"].(map[string]any)
	if cv["id"].(float64) != 12 || cv["channel"] != "whatsapp" || cv["contact"].(map[string]any)["phone"] != "+919811100001" ||
		cv["assigned_rm_id"].(float64) != 7 {
		t.Fatalf("conversation %v", cv)
	}
	if msg := m["message"].(map[string]any); msg["client_msg_id"] != "s-1" || msg["text"] != "Hello" {
		t.Fatalf("message %v", msg)
	}
	// Without a client_msg_id the server makes one.
	r = e.api("POST", "/api/conversations", tok, `{"channel":"sms","phone":"+919811100001","text":"Hi"}`)
	if r.status != 201 || e.actors.lastSend().ClientMsgID == "" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, body := range []string{
		`{"channel":"fax","phone":"+91","text":"x"}`,
		`{"channel":"sms","text":"x"}`,
		`{"channel":"sms","phone":"+919811100001"}`,
	} {
		if r := e.api("POST", "/api/conversations", tok, body); r.status != 400 {
			t.Fatalf("%s: %d %s", body, r.status, r.body)
		}
	}
}

func TestRoutingAndHealth(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.do("GET", "/healthz", nil); r.status != 200 || string(r.body) != "ok" {
		t.Fatalf("healthz %d %q", r.status, r.body)
	}
	if r := e.do("GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("readyz %d %q", r.status, r.body)
	}
	e.actors.set(func(f *fakeActors) { f.readyErr = errors.New("database unreachable") })
	if r := e.do("GET", "/readyz", nil); r.status != 503 || r.errorText(t) != "database unreachable" {
		t.Fatalf("readyz %d %q", r.status, r.body)
	}
	r := e.do("DELETE", "/api/login", nil)
	if r.status != 405 || r.header.Get("Allow") != "POST" || r.errorText(t) != "method not allowed" {
		t.Fatalf("405: %d %v %q", r.status, r.header, r.body)
	}
	if r := e.api("GET", "/api/conversations/3/messages", e.token(1, "rm"), ""); r.status != 405 {
		t.Fatalf("405 sub: %d %q", r.status, r.body)
	}
	if r := e.do("GET", "/nope", nil); r.status != 404 || r.errorText(t) != "not found" {
		t.Fatalf("404: %d %q", r.status, r.body)
	}
	// The sandbox is off: its routes do not exist.
	if r := e.do("POST", "/sandbox/whatsapp/inbound", strings.NewReader(`{}`)); r.status != 404 {
		t.Fatalf("sandbox inbound: %d", r.status)
	}
	if r := e.do("GET", "/sandbox/graph/v23.0/123/messages", nil); r.status != 404 {
		t.Fatalf("sandbox graph: %d", r.status)
	}
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/healthz", nil, "X-Request-Id", "req-abc-1")
	if got := r.header.Get("X-Request-Id"); got != "req-abc-1" {
		t.Fatalf("echo %q", got)
	}
	r1 := e.do("GET", "/nope", nil)
	r2 := e.do("GET", "/nope", nil)
	id1, id2 := r1.header.Get("X-Request-Id"), r2.header.Get("X-Request-Id")
	if id1 == "" || id1 == id2 {
		t.Fatalf("generated ids %q %q", id1, id2)
	}
	// The webhook's log lines carry the request id.
	body := notification
	e.do("POST", "/webhooks/whatsapp", strings.NewReader(body), "X-Request-Id", "wh-42",
		"X-Hub-Signature-256", sign(testAppSecret, []byte(body)))
	lines := 0
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"request_id":"wh-42"`) {
			lines++
		}
	}
	if lines < 2 {
		t.Fatalf("want the webhook's log lines tagged, got %d:\n%s", lines, e.logs.String())
	}
}

func TestAdminRoute(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.Routes = []Route{{Method: "GET", Path: "/admin/ping", Admin: true, Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetBodyString("pong")
		}}}
	})
	if r := e.do("GET", "/admin/ping", nil); r.status != 401 {
		t.Fatalf("%d", r.status)
	}
	if r := e.do("GET", "/admin/ping", nil, "Authorization", "Bearer wrong"); r.status != 401 {
		t.Fatalf("%d", r.status)
	}
	if r := e.do("GET", "/admin/ping", nil, "Authorization", "Bearer admin-token"); r.status != 200 || string(r.body) != "pong" {
		t.Fatalf("%d %q", r.status, r.body)
	}
}

// TestSandboxInbound runs the simulated customer message through the real
// sandbox provider: it posts a signed webhook back to this server, and the
// inbound call answers once the webhook was acknowledged.
func TestSandboxInbound(t *testing.T) {
	var sb *sandbox.WhatsApp
	e := newEnvAt(t, func(o *Options, base string) {
		sb = sandbox.NewWhatsApp(sandbox.WhatsAppOptions{
			AppSecret:     testAppSecret,
			AccessToken:   "graph-token",
			PhoneNumberID: "100000000000001",
			DisplayNumber: "919800000001",
			WebhookURL:    base + "/webhooks/whatsapp",
		})
		o.SandboxWhatsApp = sb
	})
	t.Cleanup(sb.Close)
	r := e.do("POST", "/sandbox/whatsapp/inbound", strings.NewReader(`{"from":"+919811100001","name":"Meera","text":"Hi there"}`))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	wamid, _ := r.json(t)["id"].(string)
	items := e.actors.ingestedItems()
	if len(items) != 1 || len(items[0]) != 1 || items[0][0].Message == nil ||
		items[0][0].Message.ProviderMessageID != wamid || items[0][0].Message.Text != "Hi there" ||
		items[0][0].Key.ContactPhone != "+919811100001" {
		t.Fatalf("ingested %+v (wamid %q)", items, wamid)
	}
	if e.store.logCount() != 1 {
		t.Fatal("webhook not logged")
	}
	// The simulated Graph API is mounted too (and wants its token).
	r = e.do("POST", "/sandbox/graph/v23.0/100000000000001/messages", strings.NewReader(`{}`))
	if r.status == 404 || r.status < 400 {
		t.Fatalf("graph: %d %s", r.status, r.body)
	}
}
