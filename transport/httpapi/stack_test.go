package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"urva/actors"
	"urva/actors/msg"
	"urva/internal/metrics"
	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/auth"
	"urva/transport/crm"
	"urva/transport/exotel"
	"urva/transport/httpapi"
	"urva/transport/sandbox"
	"urva/transport/turn"
	"urva/transport/twilio"
	"urva/transport/whatsapp"
)

// Configuration of the stack under test, as config.yaml would give it.
const (
	itAppSecret      = "integration-app-secret"
	itVerifyToken    = "integration-verify-token"
	itAccessToken    = "integration-access-token"
	itPhoneNumberID  = "100000000000001"
	itBusinessDigits = "919800000001"
	itTokenSecret    = "integration-token-secret"
	itTURNSecret     = "integration-turn-secret"
	itAdminToken     = "integration-admin-token"
	itMaxBody        = 256 << 10

	// itGuard bounds every wait; reaching it is a failure, never a way to
	// synchronise.
	itGuard = 15 * time.Second
)

// SMS (Twilio) configuration, as sms.account_sid, sms.auth_token and sms.from give it.
const (
	itSMSAccountSID = "AC00000000000000000000000000000001"
	itSMSAuthToken  = "integration-twilio-auth-token"
	itSMSNumber     = "+919800000002"
)

// Dialler (Exotel) configuration, as the dialler.* keys give it.
const (
	itDiallerSID      = "urva-integration"
	itDiallerKey      = "integration-dialler-key"
	itDiallerToken    = "integration-dialler-token"
	itCallerID        = "+918047000000"
	itCallbackToken   = "integration-dialler-callback"
	itDiallerHookPath = "/webhooks/dialler/" + itCallbackToken
)

// itTemplates are the approved templates of the integration stack.
var itTemplates = []httpapi.Template{
	{Name: "followup", Language: "en", Body: "Hello {{1}}, following up on our conversation."},
	{Name: "appointment_reminder", Language: "en", Body: "Hello {{1}}, a reminder of our meeting on {{2}}."},
}

// user is an RM or supervisor created in the store.
type user struct {
	ID       int64
	Username string
	Password string
	Role     string
}

// stackConfig adjusts one run of the stack.
type stackConfig struct {
	tuning      func(*actors.Tuning)
	apiBase     string                                                    // WhatsApp API base; the sandbox when empty
	wrap        func(*stack, actors.ProviderClient) actors.ProviderClient // wraps the WhatsApp client
	statusDelay time.Duration                                             // sandbox delay before each status webhook
	smsDelay    time.Duration                                             // sandbox Twilio delay before each status callback

	crm       bool          // CRM sync on (withCRM)
	crmURL    string        // crm.webhook_url
	crmMaxAge time.Duration // crm.max_age
	crmWake   *crmWaker     // the store's OnOutbox hook, or nil

	calls *callsConfig // click-to-call on (withCalls)
	video *videoConfig // video calls on (withVideo)

	metrics *metrics.Metrics // withMetrics; else the stack's own
}

// videoConfig is video calls as serve.go wires them: the built-in TURN
// server on 127.0.0.1:0, links signed with the token secret.
type videoConfig struct {
	LinkTTL     time.Duration // an hour when zero
	MaxDuration time.Duration // an hour when zero
	RejoinGrace time.Duration // an hour when zero
	RelayOnly   bool
}

// withVideo turns video calls on (stack.turn, stack.links).
func withVideo(c videoConfig) stackOption {
	return func(sc *stackConfig) { sc.video = &c }
}

// callsConfig is click-to-call as serve.go wires it in sandbox mode, with
// the sandbox dialler's timing and outcomes chosen by the test.
type callsConfig struct {
	RingDelay time.Duration              // each leg rings this long (5ms when zero)
	TalkTime  time.Duration              // a connected call lasts this long (5ms when zero)
	Outcome   func(number string) string // what a dialled number does (sandbox.Outcome*); every number answers when nil
	// ReconcileAfter: a call with no terminal callback is looked up this
	// long after it was placed (an hour, beyond any test, when zero).
	ReconcileAfter time.Duration
	FirstLeg       string // persistence.CallLegContact (when empty) or persistence.CallLegRM
	RecordingsDir  string // where recordings are downloaded; empty = not downloaded
}

type stackOption func(*stackConfig)

// withMetrics makes the stack report to m (from the first run on), as
// serve.go does to its registry; the store should have been opened with
// m.Batch as OnBatch (forEachMetered). Without it the stack makes its own.
func withMetrics(m *metrics.Metrics) stackOption {
	return func(c *stackConfig) { c.metrics = m }
}

// withCalls turns click-to-call on: the sandbox dialler mounted at
// /sandbox/exotel/ (stack.dl), reached through an exotel.Dialler, posting
// its callbacks to /webhooks/dialler/<itCallbackToken>.
func withCalls(c callsConfig) stackOption {
	return func(sc *stackConfig) { sc.calls = &c }
}

// withTuning adjusts the actor tuning of a run (after the fast defaults).
func withTuning(f func(*actors.Tuning)) stackOption {
	return func(c *stackConfig) { c.tuning = f }
}

// withAPIBase points the WhatsApp client at base instead of the sandbox.
func withAPIBase(base string) stackOption { return func(c *stackConfig) { c.apiBase = base } }

// withClientWrap wraps the WhatsApp client handed to the actor system; f is
// called once the run's address is known.
func withClientWrap(f func(*stack, actors.ProviderClient) actors.ProviderClient) stackOption {
	return func(c *stackConfig) { c.wrap = f }
}

// withStatusDelay sets the sandbox's delay before each status webhook.
func withStatusDelay(d time.Duration) stackOption { return func(c *stackConfig) { c.statusDelay = d } }

// withSMSStatusDelay sets the sandbox Twilio's delay before each status
// callback (time.Hour holds them back for the whole test).
func withSMSStatusDelay(d time.Duration) stackOption { return func(c *stackConfig) { c.smsDelay = d } }

// withCRM turns CRM sync on as serve.go does with crm.webhook_url = url,
// crm.secret = itCRMSecret and crm.max_age = maxAge, with fast retries
// (backoff 1ms doubling up to 20ms, a 10ms poll). The store must have been
// opened with the outbox on and the same maximum age (forEachCRM); wake is
// the hook its commits call, attached to each run (nil: the poll alone).
// Every committed delivery outcome is recorded in stack.crmOut.
func withCRM(url string, maxAge time.Duration, wake *crmWaker) stackOption {
	return func(c *stackConfig) {
		c.crm, c.crmURL, c.crmMaxAge, c.crmWake = true, url, maxAge, wake
	}
}

// stack is the real server wired as cmd/urva/serve.go wires it, on a store
// that outlives restarts.
type stack struct {
	t      *testing.T
	store  persistence.Store
	tokens *auth.Tokens
	log    zerolog.Logger

	rmA, rmB, sup user

	wamidSeq atomic.Int64

	// The current run; replaced by restart.
	addr     string // host:port
	base     string // http://host:port
	sb       *sandbox.WhatsApp
	wa       *whatsapp.Client
	tw       *sandbox.Twilio // sandbox Twilio: the SMS provider
	sms      *twilio.Client
	sys      *actors.System
	srv      *httpapi.Server
	hc       *http.Client
	serveErr chan error
	running  bool

	// Click-to-call (withCalls): the sandbox dialler and the client of the
	// current run, nil when calls are off.
	dl       *sandbox.Dialler
	dlClient *exotel.Client

	phone *sandbox.Phone // the sandbox customer phone on the sandbox WhatsApp and Twilio

	metrics *metrics.Metrics // served at /metrics; outlives restarts

	// Video calls (withVideo): the TURN server and the link signer of the
	// current run, nil when video is off.
	turn  *turn.Server
	links *auth.Links

	// CRM sync (withCRM): the webhook client and the wake hook of the
	// current run; crmOut outlives restarts.
	crmHook    *crmWaker
	crmWebhook *crm.Webhook
	crmOut     *crmOutcomes

	mu      sync.Mutex
	sockets []*wsClient
}

// testLog is silent unless URVA_TEST_LOG is set (then it logs to stderr).
func testLog() zerolog.Logger {
	if os.Getenv("URVA_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

// newStack creates the RMs (rm-a, rm-b: role rm; supervisor) in store and
// starts the server on 127.0.0.1:0. It stops when the test ends.
func newStack(t *testing.T, store persistence.Store, opts ...stackOption) *stack {
	t.Helper()
	s := &stack{
		t:      t,
		store:  store,
		tokens: auth.NewTokens([]byte(itTokenSecret), time.Hour),
		log:    testLog(),
	}
	s.rmA = s.createUser("rm-a", "password-a", persistence.RoleRM, "+919800000201")
	s.rmB = s.createUser("rm-b", "password-b", persistence.RoleRM, "+919800000202")
	s.sup = s.createUser("supervisor", "password-s", persistence.RoleSupervisor, "")
	s.start(opts...)
	t.Cleanup(s.stop)
	return s
}

func (s *stack) createUser(username, password, role, phone string) user {
	s.t.Helper()
	hash, err := auth.HashPasswordCost(password, bcrypt.MinCost)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), itGuard)
	defer cancel()
	id, err := s.store.CreateRM(ctx, &persistence.RM{Username: username, Name: username, Role: role, Phone: phone, PasswordHash: hash})
	if err != nil {
		s.t.Fatalf("create %s: %v", username, err)
	}
	return user{ID: id, Username: username, Password: password, Role: role}
}

// start runs the stack: sandboxes (WhatsApp, Twilio), WhatsApp and SMS
// clients, actor system (re-driving queued sends), HTTP server.
func (s *stack) start(opts ...stackOption) {
	s.t.Helper()
	cfg := stackConfig{statusDelay: 5 * time.Millisecond, smsDelay: 5 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.base = "http://" + s.addr

	tuning := actors.DefaultTuning()
	tuning.ProviderBackoff = time.Millisecond
	tuning.ProviderMaxDelay = 10 * time.Millisecond
	if cfg.tuning != nil {
		cfg.tuning(&tuning)
	}

	s.sb = sandbox.NewWhatsApp(sandbox.WhatsAppOptions{
		AppSecret:      itAppSecret,
		AccessToken:    itAccessToken,
		PhoneNumberID:  itPhoneNumberID,
		DisplayNumber:  itBusinessDigits,
		WebhookURL:     s.base + "/webhooks/whatsapp",
		StatusDelay:    cfg.statusDelay,
		AutoRead:       true,
		WebhookBackoff: 20 * time.Millisecond,
		Log:            s.log,
	})
	waBase := s.base + "/sandbox/graph/v23.0"
	if cfg.apiBase != "" {
		waBase = cfg.apiBase
	}
	s.wa = whatsapp.NewClient(whatsapp.ClientOptions{
		APIBase:       waBase,
		PhoneNumberID: itPhoneNumberID,
		AccessToken:   itAccessToken,
		Timeout:       tuning.ProviderTimeout,
	})
	// SMS as serve.go wires it in sandbox mode: the fake Twilio posts to the
	// server and signs over the public URL; the client sends to the fake.
	s.tw = sandbox.NewTwilio(sandbox.TwilioOptions{
		AccountSID:      itSMSAccountSID,
		AuthToken:       itSMSAuthToken,
		Number:          itSMSNumber,
		InboundURL:      s.base + "/webhooks/sms",
		PublicURL:       s.base,
		StatusDelay:     cfg.smsDelay,
		CallbackBackoff: 20 * time.Millisecond,
		Log:             s.log,
	})
	smsFrom, err := actors.NormalizePhone(itSMSNumber)
	if err != nil {
		ln.Close()
		s.sb.Close()
		s.tw.Close()
		s.t.Fatalf("sms number: %v", err)
	}
	s.sms = twilio.NewClient(twilio.ClientOptions{
		APIBase:        s.base + "/sandbox/twilio",
		AccountSID:     itSMSAccountSID,
		AuthToken:      itSMSAuthToken,
		From:           smsFrom,
		StatusCallback: s.base + "/webhooks/sms/status",
		Timeout:        tuning.ProviderTimeout,
	})
	s.hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: itGuard}
	var client actors.ProviderClient = s.wa
	if cfg.wrap != nil {
		client = cfg.wrap(s, client)
	}

	// CRM sync as serve.go wires it: the generic signed webhook drained from
	// the store's outbox, woken by the store's commits.
	var crmOpts *actors.CRMOptions
	var outbox persistence.Outbox
	s.crmHook, s.crmWebhook = nil, nil
	if cfg.crm {
		ob, ok := s.store.(persistence.Outbox)
		if !ok {
			ln.Close()
			s.sb.Close()
			s.tw.Close()
			s.t.Fatalf("store %T does not implement persistence.Outbox", s.store)
		}
		outbox = ob
		if s.crmOut == nil {
			s.crmOut = newCRMOutcomes()
		}
		s.crmHook = cfg.crmWake
		s.crmWebhook = crm.NewWebhook(crm.WebhookOptions{URL: cfg.crmURL, Secret: itCRMSecret, Timeout: 5 * time.Second})
		crmOpts = &actors.CRMOptions{
			Sender:     crm.OutboxSender{Adapter: s.crmWebhook},
			Outbox:     &observedOutbox{Outbox: ob, out: s.crmOut},
			MaxAge:     cfg.crmMaxAge,
			Backoff:    time.Millisecond,
			MaxBackoff: 20 * time.Millisecond,
			Poll:       10 * time.Millisecond,
		}
	}

	// Click-to-call as serve.go wires it in sandbox mode.
	var callOpts *actors.CallOptions
	s.dl, s.dlClient = nil, nil
	diallerToken := ""
	if cc := cfg.calls; cc != nil {
		ring, talk, reconcile := cc.RingDelay, cc.TalkTime, cc.ReconcileAfter
		if ring <= 0 {
			ring = 5 * time.Millisecond
		}
		if talk <= 0 {
			talk = 5 * time.Millisecond
		}
		if reconcile <= 0 {
			reconcile = time.Hour
		}
		s.dl = sandbox.NewDialler(sandbox.DiallerOptions{
			AccountSID:      itDiallerSID,
			APIKey:          itDiallerKey,
			APIToken:        itDiallerToken,
			CallerID:        itCallerID,
			RingDelay:       ring,
			TalkTime:        talk,
			Outcome:         cc.Outcome,
			PublicURL:       s.base,
			CallbackBackoff: 20 * time.Millisecond,
			Log:             s.log,
		})
		s.dlClient = exotel.NewClient(exotel.ClientOptions{
			APIBase:    s.base + sandbox.DiallerPrefix,
			AccountSID: itDiallerSID,
			APIKey:     itDiallerKey,
			APIToken:   itDiallerToken,
			Timeout:    tuning.ProviderTimeout,
		})
		callOpts = &actors.CallOptions{
			Dialler:        &exotel.Dialler{Client: s.dlClient},
			CallerID:       itCallerID,
			FirstLeg:       cc.FirstLeg,
			CallbackURL:    s.base + itDiallerHookPath,
			ReconcileAfter: reconcile,
			LookAgainAfter: 20 * time.Millisecond,
			Record:         true,
			RecordingsDir:  cc.RecordingsDir,
		}
		diallerToken = itCallbackToken
	}

	s.phone = sandbox.NewPhone(sandbox.PhoneOptions{WhatsApp: s.sb, Twilio: s.tw, Log: s.log})

	// Metrics as serve.go wires them, kept across restarts.
	if cfg.metrics != nil && s.metrics == nil {
		s.metrics = cfg.metrics
	}
	if s.metrics == nil {
		m, err := metrics.New()
		if err != nil {
			ln.Close()
			s.t.Fatalf("metrics: %v", err)
		}
		s.metrics = m
		s.t.Cleanup(func() { _ = m.Shutdown(context.Background()) })
	}
	s.metrics.WatchOutbox(nil)
	s.metrics.WatchTURN(nil)
	if outbox != nil {
		s.metrics.WatchOutbox(outbox.OutboxBacklog)
	}

	// Video calls as serve.go wires them.
	var videoOpts *actors.VideoOptions
	var iceServers func(string) turn.ICEConfig
	s.turn, s.links = nil, nil
	if vc := cfg.video; vc != nil {
		orHour := func(d time.Duration) time.Duration {
			if d <= 0 {
				return time.Hour
			}
			return d
		}
		ts, err := turn.Start(turn.Options{Listen: "127.0.0.1:0", Realm: "urva", Secrets: []string{itTURNSecret},
			MaxAllocationsPerUser: 10, UDPListeners: 2, Log: s.log})
		if err != nil {
			ln.Close()
			s.t.Fatalf("turn: %v", err)
		}
		s.turn, s.links = ts, auth.NewLinks([]byte(itTokenSecret))
		s.metrics.WatchTURN(ts.Stats)
		links, base := s.links, s.base
		videoOpts = &actors.VideoOptions{LinkTTL: orHour(vc.LinkTTL), MaxDuration: orHour(vc.MaxDuration), RejoinGrace: orHour(vc.RejoinGrace),
			Link: func(id int64, exp time.Time) string {
				return base + "/v/" + strconv.FormatInt(id, 10) + "?t=" + links.Sign(id, exp)
			}}
		uris := turn.URIs("127.0.0.1", ts.Addr().(*net.UDPAddr).Port)
		relay := vc.RelayOnly
		iceServers = func(user string) turn.ICEConfig {
			return turn.NewICEConfig(itTURNSecret, user, time.Hour, time.Now(), uris, relay)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), itGuard)
	defer cancel()
	s.sys, err = actors.Start(ctx, actors.Options{
		Store:           s.store,
		Providers:       map[string]actors.ProviderClient{persistence.ChannelWhatsApp: client, persistence.ChannelSMS: s.sms},
		BusinessNumbers: map[string]string{persistence.ChannelWhatsApp: "+" + itBusinessDigits, persistence.ChannelSMS: smsFrom},
		Tuning:          tuning,
		Log:             s.log,
		CRM:             crmOpts,
		Calls:           callOpts,
		Video:           videoOpts,
		MeterProvider:   s.metrics.MeterProvider(),
		OnSend:          s.metrics.OutboundSend,
		OnSlowClient:    s.metrics.SlowClient,
	})
	if err != nil {
		ln.Close()
		if s.turn != nil {
			s.turn.Close()
		}
		s.sb.Close()
		s.tw.Close()
		if s.dl != nil {
			s.dl.Close()
		}
		s.t.Fatalf("start actors: %v", err)
	}
	s.metrics.WatchActors(s.sys.ActorStats)
	if cfg.crm {
		if s.crmHook != nil {
			s.crmHook.attach(s.sys)
		}
		s.sys.WakeCRM() // events left by the previous run
	}
	var crmWake func()
	if outbox != nil {
		crmWake = s.sys.WakeCRM
	}
	s.srv = httpapi.New(httpapi.Options{
		Addr:                 s.addr,
		PublicURL:            s.base,
		MaxBodyBytes:         itMaxBody,
		Log:                  s.log,
		System:               s.sys,
		Store:                s.store,
		Tokens:               s.tokens,
		AdminToken:           itAdminToken,
		WhatsAppAppSecret:    itAppSecret,
		WhatsAppVerifyToken:  itVerifyToken,
		SMSAuthToken:         itSMSAuthToken,
		SandboxWhatsApp:      s.sb,
		SandboxTwilio:        s.tw,
		Outbox:               outbox,
		CRMWake:              crmWake,
		CRMMaxAge:            cfg.crmMaxAge,
		SandboxDialler:       s.dl,
		DiallerCallbackToken: diallerToken,
		Links:                s.links,
		ICEServers:           iceServers,
		Templates:            itTemplates,
		SandboxPhone:         s.phone,
		Media:                map[string]httpapi.MediaFetcher{persistence.ChannelWhatsApp: s.wa, persistence.ChannelSMS: s.sms},
		Metrics:              s.metrics,
	})
	s.serveErr = make(chan error, 1)
	srv := s.srv
	go func() { s.serveErr <- srv.Serve(ln) }()
	s.running = true
}

// stop shuts the current run down as serve.go does: sockets, HTTP server,
// actor system, sandbox. The store stays open.
func (s *stack) stop() {
	if !s.running {
		return
	}
	s.running = false
	s.mu.Lock()
	socks := s.sockets
	s.sockets = nil
	s.mu.Unlock()
	for _, w := range socks {
		w.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), itGuard)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.t.Errorf("http shutdown: %v", err)
	}
	if s.crmHook != nil {
		s.crmHook.attach(nil)
	}
	if err := s.sys.Shutdown(ctx); err != nil {
		s.t.Errorf("actor shutdown: %v", err)
	}
	if s.crmWebhook != nil {
		s.crmWebhook.CloseIdleConnections()
	}
	s.sb.Close()
	s.tw.Close()
	if s.dl != nil {
		s.dl.Close()
		s.dlClient.CloseIdleConnections()
	}
	if s.turn != nil {
		s.turn.Close()
	}
	s.phone.Close()
	s.wa.CloseIdleConnections()
	s.sms.CloseIdleConnections()
	s.hc.CloseIdleConnections()
	select {
	case err := <-s.serveErr:
		if err != nil {
			s.t.Errorf("serve: %v", err)
		}
	case <-ctx.Done():
		s.t.Errorf("server did not stop")
	}
}

// restart stops the current run and starts a new one on the same store.
func (s *stack) restart(opts ...stackOption) {
	s.t.Helper()
	s.stop()
	s.start(opts...)
}

// ---- HTTP

type response struct {
	status int
	body   []byte
	header http.Header
}

func (r response) String() string { return fmt.Sprintf("HTTP %d %s", r.status, r.body) }

// errorText is the "error" field of a JSON error answer.
func (r response) errorText() string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error
}

// request performs one HTTP call; safe from any goroutine.
func (s *stack) request(method, path, token string, body []byte, header map[string]string) (response, error) {
	return doRequest(s.hc, s.base, method, path, token, body, header)
}

func doRequest(hc *http.Client, base, method, path, token string, body []byte, header map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, body: b, header: resp.Header}, nil
}

// do is request failing the test on a transport error (test goroutine only).
func (s *stack) do(method, path, token string, body []byte, header map[string]string) response {
	s.t.Helper()
	r, err := s.request(method, path, token, body, header)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (s *stack) postJSON(path, token string, v any) response {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do("POST", path, token, b, nil)
}

// login returns a session token for u.
func (s *stack) login(u user) string {
	s.t.Helper()
	r := s.postJSON("/api/login", "", map[string]string{"username": u.Username, "password": u.Password})
	if r.status != http.StatusOK {
		s.t.Fatalf("login %s: %v", u.Username, r)
	}
	var out struct {
		Token string `json:"token"`
		RM    struct {
			ID   int64  `json:"id"`
			Role string `json:"role"`
		} `json:"rm"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.Token == "" || out.RM.ID != u.ID || out.RM.Role != u.Role {
		s.t.Fatalf("login %s: %v (%v)", u.Username, r, err)
	}
	return out.Token
}

// postWebhook posts body to /webhooks/whatsapp with sig as X-Hub-Signature-256
// (no header when sig is empty); safe from any goroutine.
func (s *stack) postWebhook(body []byte, sig string) (response, error) {
	h := map[string]string{}
	if sig != "" {
		h[whatsapp.SignatureHeader] = sig
	}
	return s.request("POST", "/webhooks/whatsapp", "", body, h)
}

// signedWebhook posts body signed with the app secret, as Meta does.
func (s *stack) signedWebhook(body []byte) response {
	s.t.Helper()
	r, err := s.postWebhook(body, whatsapp.Sign(itAppSecret, body))
	if err != nil {
		s.t.Fatalf("webhook: %v", err)
	}
	return r
}

// mustWebhook posts a signed webhook and requires 200.
func (s *stack) mustWebhook(body []byte) {
	s.t.Helper()
	if r := s.signedWebhook(body); r.status != http.StatusOK {
		s.t.Fatalf("webhook: %v", r)
	}
}

// conversation is one row of GET /api/conversations.
type conversation struct {
	ID      int64  `json:"id"`
	Channel string `json:"channel"`
	Contact struct {
		Phone string `json:"phone"`
		Name  string `json:"name"`
	} `json:"contact"`
	AssignedRMID *int64 `json:"assigned_rm_id"`
	LastSeq      int64  `json:"last_seq"`
}

func (s *stack) conversations(token string) []conversation {
	s.t.Helper()
	r := s.do("GET", "/api/conversations", token, nil, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("list conversations: %v", r)
	}
	var out struct {
		Conversations []conversation `json:"conversations"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		s.t.Fatalf("list conversations: %v: %s", err, r.body)
	}
	return out.Conversations
}

// events reads GET /api/conversations/{id}/events and requires 200.
func (s *stack) events(token string, conversationID int64) []frame {
	s.t.Helper()
	r := s.do("GET", fmt.Sprintf("/api/conversations/%d/events?limit=1000", conversationID), token, nil, nil)
	if r.status != http.StatusOK {
		s.t.Fatalf("events of %d: %v", conversationID, r)
	}
	var out struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		s.t.Fatalf("events: %v: %s", err, r.body)
	}
	frames := make([]frame, len(out.Events))
	for i, raw := range out.Events {
		frames[i] = parseFrame(s.t, raw)
	}
	return frames
}

// sendText sends text through REST and returns the answer.
func (s *stack) sendText(token string, conversationID int64, clientMsgID, text string) response {
	s.t.Helper()
	return s.postJSON(fmt.Sprintf("/api/conversations/%d/messages", conversationID), token,
		map[string]string{"client_msg_id": clientMsgID, "text": text})
}

// sent reads the message of a 202 answer to a send.
func sent(t *testing.T, r response) frameMessage {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("send: %v", r)
	}
	var out struct {
		Message frameMessage `json:"message"`
	}
	if err := json.Unmarshal(r.body, &out); err != nil || out.Message.ID == 0 {
		t.Fatalf("send answer: %v: %s", err, r.body)
	}
	return out.Message
}

// ---- webhook bodies

// inbound is one text message from a contact.
type inbound struct {
	From  string // digits, as Meta sends wa_id
	Name  string
	WAMID string
	Text  string
	At    time.Time
}

// wamid returns a provider message id unique in this stack.
func (s *stack) wamid() string {
	return fmt.Sprintf("wamid.IT%06d", s.wamidSeq.Add(1))
}

// inboundBody is a Cloud API notification carrying m.
func inboundBody(m inbound) []byte {
	if m.At.IsZero() {
		m.At = time.Now()
	}
	v := map[string]any{
		"object": "whatsapp_business_account",
		"entry": []any{map[string]any{
			"id": "102290129340398",
			"changes": []any{map[string]any{
				"field": "messages",
				"value": map[string]any{
					"messaging_product": "whatsapp",
					"metadata":          map[string]string{"display_phone_number": itBusinessDigits, "phone_number_id": itPhoneNumberID},
					"contacts":          []any{map[string]any{"profile": map[string]string{"name": m.Name}, "wa_id": m.From}},
					"messages": []any{map[string]any{
						"from":      m.From,
						"id":        m.WAMID,
						"timestamp": fmt.Sprint(m.At.Unix()),
						"type":      "text",
						"text":      map[string]string{"body": m.Text},
					}},
				},
			}},
		}},
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// statusBody is a Cloud API notification of one status of an outbound
// message; recipient is the contact's digits.
func statusBody(wamid, status, recipient string, at time.Time) []byte {
	v := map[string]any{
		"object": "whatsapp_business_account",
		"entry": []any{map[string]any{
			"id": "102290129340398",
			"changes": []any{map[string]any{
				"field": "messages",
				"value": map[string]any{
					"messaging_product": "whatsapp",
					"metadata":          map[string]string{"display_phone_number": itBusinessDigits, "phone_number_id": itPhoneNumberID},
					"statuses": []any{map[string]any{
						"id":           wamid,
						"status":       status,
						"timestamp":    fmt.Sprint(at.Unix()),
						"recipient_id": recipient,
					}},
				},
			}},
		}},
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// ---- socket

// frame is a socket frame (or an event of the events endpoint).
type frame struct {
	Type           string          `json:"type"`
	ConversationID int64           `json:"conversation_id"`
	Seq            int64           `json:"seq"`
	Cursor         string          `json:"cursor"`
	Message        *frameMessage   `json:"message"`
	MessageID      int64           `json:"message_id"`
	Status         string          `json:"status"`
	Error          json.RawMessage `json:"error"`
	ClientMsgID    string          `json:"client_msg_id"`
	raw            string
}

type frameMessage struct {
	ID                int64  `json:"id"`
	Direction         string `json:"direction"`
	Channel           string `json:"channel"`
	Type              string `json:"type"`
	Text              string `json:"text"`
	Status            string `json:"status"`
	ProviderMessageID string `json:"provider_message_id"`
	ClientMsgID       string `json:"client_msg_id"`
	Contact           struct {
		Phone string `json:"phone"`
		Name  string `json:"name"`
	} `json:"contact"`
}

func (f frame) String() string { return f.raw }

func parseFrame(t *testing.T, raw []byte) frame {
	t.Helper()
	var f frame
	if err := json.Unmarshal(raw, &f); err != nil || f.Type == "" {
		t.Fatalf("bad frame %s: %v", raw, err)
	}
	f.raw = string(raw)
	return f
}

// wsClient is an RM's live socket.
type wsClient struct {
	t    *testing.T
	c    *websocket.Conn
	once sync.Once
}

// dialSocket opens /ws with token in the query.
func (s *stack) dialSocket(token string) (*websocket.Conn, *http.Response, error) {
	return s.dialSocketQuery(token, "")
}

// dialSocketQuery opens /ws with token and extra query parameters ("&k=v").
func (s *stack) dialSocketQuery(token, extra string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: itGuard}
	return d.Dial("ws://"+s.addr+"/ws?token="+url.QueryEscape(token)+extra, nil)
}

// dial opens an RM socket; it is closed at the next stop or the test's end.
func (s *stack) dial(token string) *wsClient { return s.dialQuery(token, "") }

// dialQuery is dial with extra query parameters ("&cursor=...").
func (s *stack) dialQuery(token, extra string) *wsClient {
	s.t.Helper()
	c, resp, err := s.dialSocketQuery(token, extra)
	if err != nil {
		s.t.Fatalf("dial /ws: %v (%v)", err, resp)
	}
	w := &wsClient{t: s.t, c: c}
	s.mu.Lock()
	s.sockets = append(s.sockets, w)
	s.mu.Unlock()
	s.t.Cleanup(w.close)
	return w
}

// online makes sure the session runs (the RM counts as online, live events
// flow): ping, then wait for the pong. Use it only when the first frame need
// not be a resume.
func (w *wsClient) online() {
	w.t.Helper()
	w.send(map[string]string{"type": "ping"})
	w.next("pong")
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.c.SetWriteDeadline(time.Now().Add(itGuard)); err != nil {
		w.t.Fatal(err)
	}
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		w.t.Fatalf("socket write: %v", err)
	}
}

// read returns the next frame, whatever its type.
func (w *wsClient) read() frame {
	w.t.Helper()
	if err := w.c.SetReadDeadline(time.Now().Add(itGuard)); err != nil {
		w.t.Fatal(err)
	}
	mt, data, err := w.c.ReadMessage()
	if err != nil {
		w.t.Fatalf("socket read: %v", err)
	}
	if mt != websocket.TextMessage {
		w.t.Fatalf("socket: message type %d", mt)
	}
	return parseFrame(w.t, data)
}

// next returns the next frame of one of types (any type when none given),
// skipping frames of other types. An error frame fails the test unless
// "error" is among types.
func (w *wsClient) next(types ...string) frame {
	w.t.Helper()
	for {
		f := w.read()
		if len(types) == 0 {
			return f
		}
		for _, typ := range types {
			if f.Type == typ {
				return f
			}
		}
		if f.Type == "error" {
			w.t.Fatalf("socket error frame while waiting for %v: %s", types, f)
		}
		w.t.Logf("skipped frame while waiting for %v: %s", types, f)
	}
}

// close ends the socket: a close frame, then the connection.
func (w *wsClient) close() {
	w.once.Do(func() {
		_ = w.c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = w.c.Close()
	})
}

// ---- provider observation

// observedClient passes sends through and reports each attempt's error.
type observedClient struct {
	next     actors.ProviderClient
	attempts chan error
}

func (o *observedClient) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	id, err := o.next.Send(ctx, req)
	select {
	case o.attempts <- err:
	default:
	}
	return id, err
}

// earlyStatusClient sends through the real client and then, before handing
// the wamid back to the provider actor, delivers Meta's "sent" status webhook
// for it: the webhook overtakes the API answer, as it can with Meta.
type earlyStatusClient struct {
	next actors.ProviderClient
	hc   *http.Client
	base string
	done chan earlyStatus
}

// earlyStatus reports one early status webhook.
type earlyStatus struct {
	wamid string
	err   error
}

// earlyStatusWrap is a withClientWrap function installing an earlyStatusClient.
func earlyStatusWrap(done chan earlyStatus) func(*stack, actors.ProviderClient) actors.ProviderClient {
	return func(s *stack, c actors.ProviderClient) actors.ProviderClient {
		return &earlyStatusClient{next: c, hc: s.hc, base: s.base, done: done}
	}
}

func (c *earlyStatusClient) Send(ctx context.Context, req *msg.ProviderSend) (string, error) {
	id, err := c.next.Send(ctx, req)
	if err != nil {
		return id, err
	}
	body := statusBody(id, whatsapp.StatusSent, strings.TrimPrefix(req.GetKey().GetContactPhone(), "+"), time.Now())
	r, err := doRequest(c.hc, c.base, "POST", "/webhooks/whatsapp", "", body,
		map[string]string{whatsapp.SignatureHeader: whatsapp.Sign(itAppSecret, body)})
	if err == nil && r.status != http.StatusOK {
		err = fmt.Errorf("early status webhook: %v", r)
	}
	select {
	case c.done <- earlyStatus{wamid: id, err: err}:
	default:
	}
	return id, nil
}

// waitEarly waits for an earlyStatusClient's report.
func waitEarly(t *testing.T, ch <-chan earlyStatus) string {
	t.Helper()
	select {
	case e := <-ch:
		if e.err != nil {
			t.Fatal(e.err)
		}
		return e.wamid
	case <-time.After(itGuard):
		t.Fatal("no send reached the provider")
	}
	return ""
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// errorCode reads the "code" of an error object, whether a string or a number.
func errorCode(raw json.RawMessage) string {
	var e struct {
		Code json.RawMessage `json:"code"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return ""
	}
	return strings.Trim(string(e.Code), `"`)
}

// waitSent waits for the sandbox to receive one message.
func waitSent(t *testing.T, ch <-chan sandbox.SentMessage) sandbox.SentMessage {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("sandbox subscription closed")
		}
		return m
	case <-time.After(itGuard):
		t.Fatal("nothing reached the sandbox")
	}
	return sandbox.SentMessage{}
}

// ---- CRM sync

// itCRMSecret is crm.secret: the key of X-Urva-Signature.
const itCRMSecret = "integration-crm-secret"

// crmWaker is a store's OnOutbox hook: it wakes the CRM sync actor of the
// run attached to it, as serve.go's hook does.
type crmWaker struct{ sys atomic.Pointer[actors.System] }

func (w *crmWaker) attach(sys *actors.System) { w.sys.Store(sys) }

func (w *crmWaker) wake() {
	if sys := w.sys.Load(); sys != nil {
		sys.WakeCRM()
	}
}

// forEachCRM is storetest.ForEach with the CRM outbox on: each subtest
// ("sqlite", "mysql") gets a fresh migrated store whose events expire after
// maxAge and whose commits call the returned waker (pass it to withCRM).
func forEachCRM(t *testing.T, maxAge time.Duration, fn func(t *testing.T, store persistence.Store, wake *crmWaker)) {
	t.Helper()
	run := func(open func(testing.TB, func(*persistence.Config)) persistence.Store) func(*testing.T) {
		return func(t *testing.T) {
			wake := &crmWaker{}
			store := open(t, func(c *persistence.Config) {
				c.Outbox = true
				c.OutboxMaxAge = maxAge
				c.OnOutbox = wake.wake
			})
			fn(t, store, wake)
		}
	}
	t.Run("sqlite", run(storetest.OpenSQLiteConfig))
	t.Run("mysql", run(storetest.OpenMySQLConfig))
}

// watch is state under a mutex whose every change wakes the goroutines
// waiting for a condition on it.
type watch struct {
	mu      sync.Mutex
	changed chan struct{}
}

func newWatch() watch { return watch{changed: make(chan struct{})} }

// update changes the state under the lock and wakes the waiters.
func (w *watch) update(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
	close(w.changed)
	w.changed = make(chan struct{})
}

// read looks at the state under the lock.
func (w *watch) read(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
}

// wait returns once cond (called under the lock) holds; it fails the test
// after itGuard.
func (w *watch) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	guard := time.NewTimer(itGuard)
	defer guard.Stop()
	for {
		w.mu.Lock()
		ok, ch := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-guard.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// crmOutcome is one delivery attempt of the CRM sync actor as it committed
// it to the outbox.
type crmOutcome struct {
	ID        int64  // outbox row id
	LastError string // "" when delivered
	Dead      bool   // the attempt made it a dead letter
}

// crmOutcomes records the committed outcomes of a stack's CRM deliveries.
type crmOutcomes struct {
	watch
	list []crmOutcome // guarded by watch.mu
}

func newCRMOutcomes() *crmOutcomes { return &crmOutcomes{watch: newWatch()} }

func (o *crmOutcomes) add(c crmOutcome) { o.update(func() { o.list = append(o.list, c) }) }

// waitCount waits until at least n recorded outcomes satisfy match.
func (o *crmOutcomes) waitCount(t *testing.T, what string, n int, match func(crmOutcome) bool) {
	t.Helper()
	o.wait(t, what, func() bool {
		k := 0
		for _, c := range o.list {
			if match(c) {
				k++
			}
		}
		return k >= n
	})
}

// observedOutbox is the CRM sync actor's outbox, reporting each delivery
// outcome once the store has committed it.
type observedOutbox struct {
	persistence.Outbox
	out *crmOutcomes
}

func (o *observedOutbox) OutboxDelivered(ctx context.Context, id int64, at time.Time) error {
	err := o.Outbox.OutboxDelivered(ctx, id, at)
	if err == nil {
		o.out.add(crmOutcome{ID: id})
	}
	return err
}

func (o *observedOutbox) OutboxFailed(ctx context.Context, id int64, lastError string, next time.Time, dead bool) error {
	err := o.Outbox.OutboxFailed(ctx, id, lastError, next, dead)
	if err == nil {
		o.out.add(crmOutcome{ID: id, LastError: lastError, Dead: dead})
	}
	return err
}
