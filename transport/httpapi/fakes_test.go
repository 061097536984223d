package httpapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"urva/actors"
	"urva/persistence"
	"urva/transport/auth"
)

const (
	testAppSecret   = "app-secret"
	testVerifyToken = "verify-me"
	// guard bounds every wait in the tests; reaching it means a failure,
	// never a way to synchronise.
	guard = 10 * time.Second
)

// sign is the X-Hub-Signature-256 value for body.
func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// notification is a valid WhatsApp webhook body with one text message.
const notification = `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"919800000001","phone_number_id":"100000000000001"},
  "contacts":[{"profile":{"name":"Meera Iyer"},"wa_id":"919811100001"}],
  "messages":[{"from":"919811100001","id":"wamid.EXAMPLE1","timestamp":"1767225600","type":"text","text":{"body":"Hello"}}]
}}]}]}`

type fakeSession struct {
	received chan []byte
	closed   chan struct{}
	once     sync.Once
}

func newFakeSession() *fakeSession {
	return &fakeSession{received: make(chan []byte, 16), closed: make(chan struct{})}
}

func (f *fakeSession) Receive(frame []byte) { f.received <- frame }
func (f *fakeSession) Close()               { f.once.Do(func() { close(f.closed) }) }

type connected struct {
	p    actors.Principal
	conn actors.Conn
	sess *fakeSession
}

type fakeActors struct {
	mu          sync.Mutex
	ingested    [][]actors.Inbound
	principals  []actors.Principal
	sendReqs    []actors.SendRequest
	readyErr    error
	ingestHook  func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error)
	sendHook    func(p actors.Principal, id int64, req actors.SendRequest) (*persistence.Message, error)
	convs       []persistence.ConversationSummary
	events      [][]byte
	eventsArgs  [3]int64
	connections chan connected
}

func newFakeActors() *fakeActors {
	return &fakeActors{connections: make(chan connected, 4)}
}

func (f *fakeActors) Ingest(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error) {
	f.mu.Lock()
	f.ingested = append(f.ingested, items)
	hook := f.ingestHook
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, items)
	}
	res := make([]actors.IngestResult, len(items))
	for i := range res {
		res[i].MessageID = int64(i + 1)
	}
	return res, nil
}

func (f *fakeActors) setIngest(h func(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ingestHook = h
}

func (f *fakeActors) setSend(h func(p actors.Principal, id int64, req actors.SendRequest) (*persistence.Message, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sendHook = h
}

func (f *fakeActors) set(fn func(f *fakeActors)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeActors) ingestedItems() [][]actors.Inbound {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]actors.Inbound(nil), f.ingested...)
}

func (f *fakeActors) lastSend() actors.SendRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sendReqs) == 0 {
		return actors.SendRequest{}
	}
	return f.sendReqs[len(f.sendReqs)-1]
}

func (f *fakeActors) ingestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ingested)
}

func (f *fakeActors) Send(ctx context.Context, p actors.Principal, id int64, req actors.SendRequest) (*persistence.Message, error) {
	f.mu.Lock()
	f.principals = append(f.principals, p)
	f.sendReqs = append(f.sendReqs, req)
	hook := f.sendHook
	f.mu.Unlock()
	if hook != nil {
		return hook(p, id, req)
	}
	return &persistence.Message{
		ID: 99, ConversationID: id, Seq: 7, Direction: persistence.DirectionOut,
		Channel: persistence.ChannelWhatsApp, Type: "text", Text: req.Text, Template: req.Template,
		Status: persistence.StatusQueued, ClientMsgID: req.ClientMsgID,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}, nil
}

func (f *fakeActors) StartConversation(ctx context.Context, p actors.Principal, channel, phone, name string, req actors.SendRequest) (*persistence.Conversation, *persistence.Message, error) {
	f.mu.Lock()
	f.principals = append(f.principals, p)
	f.sendReqs = append(f.sendReqs, req)
	f.mu.Unlock()
	cv := &persistence.Conversation{
		ID:          12,
		Key:         persistence.ConversationKey{Channel: channel, BusinessNumber: "+919800000001", ContactPhone: phone},
		ContactName: name, AssignedRMID: p.RMID, LastSeq: 1,
		LastMessageAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	m := &persistence.Message{ID: 100, ConversationID: 12, Seq: 1, Direction: "out", Channel: channel,
		Type: "text", Text: req.Text, Status: "queued", ClientMsgID: req.ClientMsgID}
	return cv, m, nil
}

func (f *fakeActors) Conversations(ctx context.Context, p actors.Principal, limit int) ([]persistence.ConversationSummary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.principals = append(f.principals, p)
	return f.convs, nil
}

func (f *fakeActors) Events(ctx context.Context, p actors.Principal, id, after int64, limit int) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.principals = append(f.principals, p)
	f.eventsArgs = [3]int64{id, after, int64(limit)}
	if id == 404 {
		return nil, actors.ErrNotFound
	}
	return f.events, nil
}

func (f *fakeActors) EventsBefore(ctx context.Context, p actors.Principal, id, before int64, limit int) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.principals = append(f.principals, p)
	f.eventsArgs = [3]int64{id, -before, int64(limit)}
	return f.events, nil
}

func (f *fakeActors) Connect(p actors.Principal, conn actors.Conn) Session {
	s := newFakeSession()
	f.connections <- connected{p: p, conn: conn, sess: s}
	return s
}

func (f *fakeActors) Ready(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readyErr
}

func (f *fakeActors) lastPrincipal() actors.Principal {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.principals) == 0 {
		return actors.Principal{}
	}
	return f.principals[len(f.principals)-1]
}

type fakeStore struct {
	mu       sync.Mutex
	logs     []*persistence.WebhookLog
	outcomes map[int64]string
	rms      map[string]*persistence.RM
	logErr   error
	logHook  func(ctx context.Context)
}

func newFakeStore() *fakeStore {
	return &fakeStore{outcomes: make(map[int64]string), rms: make(map[string]*persistence.RM)}
}

func (f *fakeStore) LogWebhook(ctx context.Context, l *persistence.WebhookLog) (int64, error) {
	f.mu.Lock()
	hook, err := f.logHook, f.logErr
	f.mu.Unlock()
	if hook != nil {
		hook(ctx)
	}
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := *l
	cp.Body = append([]byte(nil), l.Body...)
	f.logs = append(f.logs, &cp)
	return int64(len(f.logs)), nil
}

func (f *fakeStore) SetWebhookOutcome(id int64, outcome string, done func(error)) {
	f.mu.Lock()
	f.outcomes[id] = outcome
	f.mu.Unlock()
	if done != nil {
		done(nil)
	}
}

func (f *fakeStore) RMByUsername(ctx context.Context, username string) (*persistence.RM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rm, ok := f.rms[username]
	if !ok {
		return nil, persistence.ErrNotFound
	}
	cp := *rm
	return &cp, nil
}

func (f *fakeStore) set(fn func(f *fakeStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeStore) logged() []*persistence.WebhookLog {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*persistence.WebhookLog(nil), f.logs...)
}

func (f *fakeStore) logCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.logs)
}

func (f *fakeStore) outcome(id int64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.outcomes[id]
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type env struct {
	t      *testing.T
	srv    *Server
	base   string
	addr   string
	actors *fakeActors
	store  *fakeStore
	tokens *auth.Tokens
	client *http.Client
	logs   *syncBuffer
}

// newEnv starts a server on 127.0.0.1:0 with fakes; mod adjusts the options.
func newEnv(t *testing.T, mod func(*Options)) *env {
	t.Helper()
	return newEnvAt(t, func(o *Options, _ string) {
		if mod != nil {
			mod(o)
		}
	})
}

// newEnvAt is newEnv for options that need the server's base URL.
func newEnvAt(t *testing.T, mod func(o *Options, base string)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t:      t,
		actors: newFakeActors(),
		store:  newFakeStore(),
		tokens: auth.NewTokens([]byte("0123456789abcdef0123456789abcdef"), time.Hour),
		logs:   &syncBuffer{},
	}
	o := Options{
		MaxBodyBytes:        64 << 10,
		Log:                 zerolog.New(e.logs),
		Actors:              e.actors,
		Store:               e.store,
		Tokens:              e.tokens,
		AdminToken:          "admin-token",
		WhatsAppAppSecret:   testAppSecret,
		WhatsAppVerifyToken: testVerifyToken,
	}
	e.addr = ln.Addr().String()
	e.base = "http://" + e.addr
	mod(&o, e.base)
	e.srv = New(o)
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(ln) }()
	tr := &http.Transport{}
	e.client = &http.Client{Transport: tr, Timeout: guard}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), guard)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not JSON: %q", r.status, r.body)
	}
	return m
}

func (r response) errorText(t *testing.T) string {
	t.Helper()
	s, _ := r.json(t)["error"].(string)
	return s
}

// do sends a request; headers are name, value pairs.
func (e *env) do(method, path string, body io.Reader, headers ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// webhook posts a signed WhatsApp notification.
func (e *env) webhook(body string) response {
	e.t.Helper()
	return e.do("POST", "/webhooks/whatsapp", strings.NewReader(body),
		"Content-Type", "application/json", "X-Hub-Signature-256", sign(testAppSecret, []byte(body)))
}

// asyncResult is the answer to webhookAsync.
type asyncResult struct {
	r   response
	err error
}

// webhookAsync posts a signed webhook from another goroutine; the answer
// arrives on the channel.
func (e *env) webhookAsync(body string) <-chan asyncResult {
	ch := make(chan asyncResult, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.base+"/webhooks/whatsapp", strings.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sign(testAppSecret, []byte(body)))
		resp, err := e.client.Do(req)
		if err != nil {
			ch <- asyncResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- asyncResult{r: response{status: resp.StatusCode, body: b}}
	}()
	return ch
}

// await waits (up to guard) for an answer of webhookAsync.
func (e *env) await(ch <-chan asyncResult) asyncResult {
	e.t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(guard):
		e.t.Fatal("no answer")
		return asyncResult{}
	}
}

func (e *env) token(rmID int64, role string) string {
	return e.tokens.Issue(rmID, role, time.Now())
}

// api sends an authenticated JSON request.
func (e *env) api(method, path, token, body string) response {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return e.do(method, path, r, "Authorization", "Bearer "+token, "Content-Type", "application/json")
}
