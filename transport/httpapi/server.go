// Package httpapi is the server's HTTP front: a fasthttp server with a small
// exact/prefix router that serves the provider webhooks (WhatsApp), the RM
// REST API, the RM live socket (/ws), the health checks and, in sandbox mode,
// the simulated provider endpoints.
//
// Handlers only parse, authenticate and translate: behaviour lives behind the
// Actors interface (satisfied by *actors.System through Options.System) and
// the few database calls the HTTP layer makes itself go through Store
// (satisfied by persistence.Store).
//
// Every response carries an X-Request-Id (the client's, or a generated one),
// every log line of a request carries it as request_id, and every error is a
// JSON object {"error":"..."}.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/internal/logfields"
	"urva/persistence"
	"urva/transport/auth"
	"urva/transport/sandbox"
	"urva/transport/turn"

	"urva/internal/rawconn"
)

// Actors is what the HTTP layer asks of the actor system. *actors.System
// satisfies it through Options.System; tests use fakes.
type Actors interface {
	// Ingest hands provider notifications over and returns once they are committed.
	Ingest(ctx context.Context, items []actors.Inbound) ([]actors.IngestResult, error)
	// Send stores an RM's outbound message and returns it once committed.
	Send(ctx context.Context, p actors.Principal, conversationID int64, req actors.SendRequest) (*persistence.Message, error)
	// StartConversation opens (or finds) a conversation and sends its first message.
	StartConversation(ctx context.Context, p actors.Principal, channel, phone, contactName string, req actors.SendRequest) (*persistence.Conversation, *persistence.Message, error)
	// Conversations lists what p may see.
	Conversations(ctx context.Context, p actors.Principal, limit int) ([]persistence.ConversationSummary, error)
	// Events returns the socket frames of one conversation after afterSeq.
	Events(ctx context.Context, p actors.Principal, conversationID, afterSeq int64, limit int) ([][]byte, error)
	// EventsBefore returns the socket frames of the last limit events before beforeSeq.
	EventsBefore(ctx context.Context, p actors.Principal, conversationID, beforeSeq int64, limit int) ([][]byte, error)
	// Connect starts the session of one RM socket.
	Connect(p actors.Principal, conn actors.Conn) Session
	// Ready reports whether the actor system runs and the database answers.
	Ready(ctx context.Context) error
}

// Session is one RM socket's session as the socket handler drives it.
type Session interface {
	// Receive hands over a text frame read from the socket.
	Receive(frame []byte)
	// Close says the socket is gone.
	Close()
}

// Store is the part of the database the HTTP layer uses directly.
// persistence.Store satisfies it.
type Store interface {
	LogWebhook(ctx context.Context, l *persistence.WebhookLog) (int64, error)
	SetWebhookOutcome(id int64, outcome string, done func(error))
	RMByUsername(ctx context.Context, username string) (*persistence.RM, error)
}

// The real implementations satisfy the interfaces.
var (
	_ Store  = persistence.Store(nil)
	_ Actors = systemActors{}
)

// systemActors adapts *actors.System, whose Connect returns the concrete
// *actors.Session, to Actors.
type systemActors struct{ *actors.System }

func (s systemActors) Connect(p actors.Principal, c actors.Conn) Session {
	sess := s.System.Connect(p, c)
	if sess == nil {
		return nil
	}
	return sess
}

// SocketOptions tunes the RM live socket. Zero values take the defaults.
type SocketOptions struct {
	PingInterval  time.Duration // server ping period (default 30s)
	ReadTimeout   time.Duration // no frame nor pong for this long ends the socket (default 75s)
	WriteTimeout  time.Duration // deadline for writing one batch of frames (default 10s)
	MaxFrameBytes int64         // largest frame accepted from a client (default 64 KiB)
	BufferBytes   int           // websocket write buffer size, taken from a pool for each write (default 4 KiB)
}

// Route is an extra endpoint mounted next to the built-in ones.
type Route struct {
	Method  string // "" accepts every method
	Path    string // exact path, or a prefix when Prefix is set
	Prefix  bool
	Admin   bool // requires Authorization: Bearer <Options.AdminToken>
	Handler fasthttp.RequestHandler
}

// Options configure a Server.
type Options struct {
	Addr         string // listen address for ListenAndServe
	PublicURL    string // base URL the outside world reaches the server at
	MaxBodyBytes int    // largest request body accepted (default 4 MiB); larger ones get 413
	Log          zerolog.Logger

	Actors Actors         // the actor system; when nil, System is used
	System *actors.System // adapted to Actors when Actors is nil
	Store  Store

	Tokens     *auth.Tokens // RM session tokens
	AdminToken string       // operator token for Admin routes; empty disables them

	WhatsAppAppSecret   string // X-Hub-Signature-256 key
	WhatsAppVerifyToken string // hub.verify_token for the verification GET

	SMSAuthToken string // Twilio auth token: X-Twilio-Signature key; empty disables the SMS webhooks

	// Calls is click-to-call; when nil, System is used.
	Calls Calls
	// DiallerCallbackToken is the secret last segment of the dialler's
	// status callback URL (/webhooks/dialler/{callback_token}); empty
	// refuses every callback (404).
	DiallerCallbackToken string

	Media map[string]MediaFetcher // attachment downloads by channel (persistence.Channel*); a channel without one answers 503
	// Video is video calls; when nil, System is used (if it has them).
	Video Video
	// Supervision is reassignment, the RM list and disconnects; when nil,
	// System is used.
	Supervision Supervision
	// Templates are the approved WhatsApp templates the console offers.
	Templates []Template
	// SandboxPhone is the sandbox customer phone; nil when the sandbox is off.
	SandboxPhone *sandbox.Phone
	// Links signs and verifies video call links; nil disables video calls.
	Links *auth.Links
	// ICEServers returns the ICE servers and TURN credentials for a user
	// of a call; nil hands out none (no TURN configured).
	ICEServers func(user string) turn.ICEConfig

	// CRM operator endpoints: the outbox (nil when CRM sync is off), how to
	// wake the CRM sync actor after a replay, and the expiry given to replays.
	Outbox    persistence.Outbox
	CRMWake   func()
	CRMMaxAge time.Duration

	SandboxWhatsApp *sandbox.WhatsApp // nil when the sandbox is off
	SandboxTwilio   *sandbox.Twilio   // nil when the sandbox is off or SMS uses real Twilio
	SandboxCRM      *sandbox.CRM      // nil unless the sandbox stands in for the CRM
	SandboxDialler  *sandbox.Dialler  // nil when the sandbox is off or calls use a real dialler

	Socket SocketOptions

	// WebhookTimeout bounds the wait for a webhook's commit (default 15s).
	WebhookTimeout time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout of plain HTTP connections
	// (defaults 30s, 30s, 120s). Hijacked sockets are not subject to them.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration

	// Routes are mounted after the built-in ones; a built-in route wins on conflict.
	Routes []Route

	// Metrics is served at GET /metrics and told what this layer measures
	// (metrics.go); nil measures nothing. MetricsToken, when set, makes
	// /metrics require it as a bearer token; empty leaves /metrics open.
	Metrics      Metrics
	MetricsToken string
}

// Defaults.
const (
	DefaultMaxBodyBytes = 4 << 20
	connBufferBytes     = 4 << 10
	wsReadBufferBytes   = 512
)

// Server is the HTTP server.
type Server struct {
	opts       Options
	log        zerolog.Logger
	actors     Actors
	store      Store
	srv        *fasthttp.Server
	upgrader   *websocket.Upgrader
	maxBody    int
	drainLimit int64

	exact    map[string]map[string]handlerFunc
	prefixes []prefixRoute

	idPrefix string
	idSeq    atomic.Uint64

	pingOnce sync.Once
	stopPing chan struct{} // closed by Shutdown: the pinger ends

	mu           sync.Mutex
	shuttingDown bool
	sockets      map[*wsConn]struct{}
	socketsWG    sync.WaitGroup
}

// call is one request as the handlers see it.
type call struct {
	ctx *fasthttp.RequestCtx
	id  string
	log zerolog.Logger

	outcome string // a committed webhook's outcome, for metrics
}

type handlerFunc func(c *call)

type prefixRoute struct {
	prefix string
	method string // "" = any
	h      handlerFunc
}

// New builds a Server; it does not listen yet.
func New(o Options) *Server {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.WebhookTimeout <= 0 {
		o.WebhookTimeout = 15 * time.Second
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 120 * time.Second
	}
	so := &o.Socket
	if so.PingInterval <= 0 {
		so.PingInterval = 30 * time.Second
	}
	if so.ReadTimeout <= 0 {
		so.ReadTimeout = 75 * time.Second
	}
	if so.WriteTimeout <= 0 {
		so.WriteTimeout = 10 * time.Second
	}
	if so.MaxFrameBytes <= 0 {
		so.MaxFrameBytes = 64 << 10
	}
	if so.BufferBytes <= 0 {
		so.BufferBytes = connBufferBytes
	}
	if o.Actors == nil && o.System != nil {
		o.Actors = systemActors{o.System}
	}
	if o.Calls == nil && o.System != nil {
		o.Calls = o.System
	}
	if o.Video == nil && o.System != nil {
		o.Video = o.System
	}
	if o.Supervision == nil && o.System != nil {
		o.Supervision = o.System
	}

	s := &Server{
		opts:     o,
		log:      o.Log,
		actors:   o.Actors,
		store:    o.Store,
		maxBody:  o.MaxBodyBytes,
		exact:    make(map[string]map[string]handlerFunc),
		sockets:  make(map[*wsConn]struct{}),
		stopPing: make(chan struct{}),
		idPrefix: newIDPrefix(),
	}
	// A client that sends a body over the limit is still read to the end, up
	// to this much more, so that it receives the 413 instead of a reset.
	s.drainLimit = int64(o.MaxBodyBytes) * 4
	if s.drainLimit < 1<<20 {
		s.drainLimit = 1 << 20
	}
	s.upgrader = newUpgrader(so.BufferBytes)
	s.routes()
	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.errorHandler,
		Name:                         "urva",
		ReadBufferSize:               connBufferBytes,
		WriteBufferSize:              connBufferBytes,
		MaxRequestBodySize:           o.MaxBodyBytes,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  o.ReadTimeout,
		WriteTimeout:                 o.WriteTimeout,
		IdleTimeout:                  o.IdleTimeout,
		CloseOnShutdown:              true,
		// Upgraded sockets close their connections themselves (ws.go):
		// their handlers return early so that idle sockets hold no
		// request context.
		KeepHijackedConns: true,
		Logger:            fasthttpLogger{o.Log},
	}
	return s
}

func (s *Server) routes() {
	s.addExact("GET", "/healthz", s.healthz)
	s.addExact("HEAD", "/healthz", s.healthz)
	s.addExact("GET", "/readyz", s.readyz)
	s.addExact("HEAD", "/readyz", s.readyz)
	s.addExact("GET", "/metrics", s.metricsRoute())
	s.addExact("GET", "/webhooks/whatsapp", s.whatsAppVerify)
	s.addExact("POST", "/webhooks/whatsapp", s.whatsAppWebhook)
	s.addExact("POST", "/webhooks/sms", s.smsWebhook)
	s.addExact("POST", "/webhooks/sms/status", s.smsStatus)
	s.addExact("POST", "/api/login", s.login)
	s.addExact("GET", "/api/conversations", s.authed(s.listConversations))
	s.addExact("POST", "/api/conversations", s.authed(s.startConversation))
	s.addPrefix("", "/api/conversations/", s.authed(s.conversationSub))
	s.addExact("POST", "/api/calls", s.authed(s.startCall))
	s.addPrefix("GET", "/api/calls/", s.authed(s.getCall))
	s.addPrefix("GET", mediaPrefix, s.messageMedia)
	s.addPrefix("POST", diallerWebhookPrefix, s.diallerWebhook)
	s.addExact("GET", "/ws", s.socket)
	s.addExact("POST", "/api/video-calls", s.authed(s.startVideoCall))
	s.addExact("GET", "/api/video-invites", s.authed(s.videoInvites))
	s.addPrefix("GET", videoAPIPrefix, s.videoCallSub)
	s.addPrefix("GET", videoPagePath, s.videoPage)
	s.addPrefix("GET", videoWSPrefix, s.videoSocket)
	s.addPrefix("GET", staticPrefix, s.static)
	s.addExact("GET", "/", s.consolePage)
	s.addExact("GET", "/api/templates", s.authed(s.templates))
	s.addExact("GET", "/api/rms", s.authed(s.listRMs))
	s.addPrefix("POST", "/admin/rms/", s.admin(s.disconnectRM))
	s.addPrefix("", pprofPrefix, s.admin(s.pprof))
	if ph := s.opts.SandboxPhone; ph != nil {
		s.addExact("GET", "/sandbox/phone", s.phonePage)
		s.addPrefix("", "/sandbox/phone/", func(c *call) { ph.Handle(c.ctx) })
	}
	s.addExact("GET", "/admin/crm/backlog", s.admin(s.crmBacklog))
	s.addExact("GET", actorsPath, s.admin(s.adminActors))
	s.addPrefix("GET", actorsPrefix, s.admin(s.adminActor))
	s.addExact("GET", "/admin/crm/dead-letters", s.admin(s.crmDeadLetters))
	s.addPrefix("POST", "/admin/crm/dead-letters/", s.admin(s.crmReplay))
	if sb := s.opts.SandboxWhatsApp; sb != nil {
		s.addPrefix("", "/sandbox/graph/", func(c *call) { sb.HandleAPI(c.ctx) })
		s.addExact("POST", "/sandbox/whatsapp/inbound", func(c *call) { sb.HandleInbound(c.ctx) })
	}
	if sc := s.opts.SandboxCRM; sc != nil {
		s.addExact("POST", "/sandbox/crm/webhook", func(c *call) { sc.Handle(c.ctx) })
		s.addExact("GET", "/sandbox/crm/events", func(c *call) { sc.HandleList(c.ctx) })
	}
	if sd := s.opts.SandboxDialler; sd != nil {
		s.addPrefix("", sandbox.DiallerPrefix+"/", func(c *call) { sd.HandleAPI(c.ctx) })
	}
	if tw := s.opts.SandboxTwilio; tw != nil {
		s.addPrefix("", "/sandbox/twilio/", func(c *call) { tw.HandleAPI(c.ctx) })
		s.addExact("POST", "/sandbox/sms/inbound", func(c *call) { tw.HandleInbound(c.ctx) })
	}
	for _, r := range s.opts.Routes {
		h := r.Handler
		hf := func(c *call) { h(c.ctx) }
		if r.Admin {
			hf = s.admin(hf)
		}
		if r.Prefix {
			s.addPrefix(r.Method, r.Path, hf)
			continue
		}
		if r.Method == "" {
			for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
				s.addExact(m, r.Path, hf)
			}
			continue
		}
		s.addExact(r.Method, r.Path, hf)
	}
	// Longest prefix first, so a more specific mount wins.
	slices.SortStableFunc(s.prefixes, func(a, b prefixRoute) int { return len(b.prefix) - len(a.prefix) })
}

func (s *Server) addExact(method, path string, h handlerFunc) {
	m := s.exact[path]
	if m == nil {
		m = make(map[string]handlerFunc)
		s.exact[path] = m
	}
	if _, dup := m[method]; !dup {
		m[method] = h
	}
}

func (s *Server) addPrefix(method, p string, h handlerFunc) {
	s.prefixes = append(s.prefixes, prefixRoute{prefix: p, method: method, h: h})
}

// Handler returns the request handler (routing included), for embedding in
// another fasthttp server or for tests.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Serve serves HTTP on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info().Str("addr", ln.Addr().String()).Msg("http server listening")
	// Requests and sockets are read and written with raw system calls
	// (package rawconn).
	return s.srv.Serve(rawconn.Listener(ln))
}

// ListenAndServe listens on Options.Addr and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Shutdown stops accepting connections, closes the live sockets (close code
// 1001) and waits for in-flight requests and socket handlers to finish, or
// for ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.shuttingDown {
		close(s.stopPing)
	}
	s.shuttingDown = true
	socks := make([]*wsConn, 0, len(s.sockets))
	for w := range s.sockets {
		socks = append(socks, w)
	}
	s.mu.Unlock()

	srvDone := make(chan error, 1)
	go func() { srvDone <- s.srv.ShutdownWithContext(ctx) }()
	for _, w := range socks {
		go w.use(func() { w.closeWith(websocket.CloseGoingAway, "server shutting down") })
	}
	sockDone := make(chan struct{})
	go func() { s.socketsWG.Wait(); close(sockDone) }()

	var err error
	select {
	case <-sockDone:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if serr := <-srvDone; serr != nil && err == nil {
		err = serr
	}
	return err
}

func (s *Server) isShuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shuttingDown
}

// handle is the root handler: request id, panic guard, body limit, routing,
// access log.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	c := &call{ctx: ctx, id: s.requestID(ctx)}
	c.log = logfields.With(s.log, logfields.Str("request_id", c.id))
	ctx.Response.Header.Set("X-Request-Id", c.id)
	method := string(ctx.Method())
	path := string(ctx.Path())
	if strings.HasPrefix(path, "/webhooks/dialler/") {
		path = "/webhooks/dialler/<token>" // the path is the dialler's secret
	}

	defer func() {
		if r := recover(); r != nil {
			c.log.Error().Interface("panic", r).Str("method", method).Str("path", path).Msg("handler panicked")
			writeError(ctx, fasthttp.StatusInternalServerError, "internal error")
		}
		status := ctx.Response.StatusCode()
		ev := c.log.Info()
		if status >= 500 {
			ev = c.log.Error()
		} else if status >= 400 {
			ev = c.log.Warn()
		}
		ev.Str("method", method).Str("path", path).Int("status", status).
			Dur("duration", time.Since(start)).Str("remote", ctx.RemoteIP().String()).Msg("request")
	}()

	if !s.readBody(c) {
		s.webhookRefused(c, path, start)
		return
	}
	s.route(c, method, path)
}

func (s *Server) route(c *call, method, path string) {
	if m, ok := s.exact[path]; ok {
		if h, ok := m[method]; ok {
			h(c)
			return
		}
		allowed := make([]string, 0, len(m))
		for k := range m {
			allowed = append(allowed, k)
		}
		methodNotAllowed(c, allowed...)
		return
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(path, p.prefix) {
			if p.method != "" && p.method != method {
				methodNotAllowed(c, p.method)
				return
			}
			p.h(c)
			return
		}
	}
	writeError(c.ctx, fasthttp.StatusNotFound, "not found")
}

func methodNotAllowed(c *call, allowed ...string) {
	slices.Sort(allowed)
	c.ctx.Response.Header.Set("Allow", strings.Join(allowed, ", "))
	writeError(c.ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
}

// readBody reads the streamed request body into a buffer the request owns
// (handlers may hand it to other goroutines), enforcing MaxBodyBytes. An
// oversized body is read to its end (up to drainLimit) and answered with 413,
// so the client sees the answer rather than a reset connection. It reports
// whether the request should be routed.
func (s *Server) readBody(c *call) bool {
	req := &c.ctx.Request
	if !req.IsBodyStream() {
		b := req.Body()
		if len(b) > s.maxBody {
			writeError(c.ctx, fasthttp.StatusRequestEntityTooLarge, s.tooLargeMsg())
			return false
		}
		if len(b) > 0 {
			req.SetBodyRaw(append([]byte(nil), b...))
		}
		return true
	}
	stream := req.BodyStream()
	cl := req.Header.ContentLength()
	if cl > s.maxBody {
		s.rejectBody(c, stream, int64(cl))
		return false
	}
	var body []byte
	var err error
	if cl >= 0 {
		body = make([]byte, cl)
		_, err = io.ReadFull(stream, body)
	} else {
		// Chunked: read at most one byte past the limit to detect overflow.
		body, err = io.ReadAll(io.LimitReader(stream, int64(s.maxBody)+1))
	}
	if err != nil {
		c.log.Warn().Err(err).Int("content_length", cl).Msg("reading request body")
		c.ctx.SetConnectionClose()
		writeError(c.ctx, fasthttp.StatusBadRequest, "could not read the request body")
		return false
	}
	if len(body) > s.maxBody {
		s.rejectBody(c, stream, -1)
		return false
	}
	req.SetBodyRaw(body)
	return true
}

func (s *Server) tooLargeMsg() string {
	return "request body larger than " + strconv.Itoa(s.maxBody) + " bytes"
}

// rejectBody answers 413 after discarding the rest of the body, up to
// drainLimit; past that the connection is closed.
func (s *Server) rejectBody(c *call, stream io.Reader, contentLength int64) {
	complete := false
	if contentLength < 0 || contentLength <= s.drainLimit {
		n, err := io.Copy(io.Discard, io.LimitReader(stream, s.drainLimit+1))
		complete = err == nil && n <= s.drainLimit
	}
	if !complete {
		c.ctx.SetConnectionClose()
	}
	c.log.Warn().Int64("content_length", contentLength).Bool("drained", complete).Msg("request body too large")
	writeError(c.ctx, fasthttp.StatusRequestEntityTooLarge, s.tooLargeMsg())
}

// errorHandler answers requests fasthttp could not read.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	id := s.requestID(ctx)
	ctx.Response.Header.Set("X-Request-Id", id)
	var small *fasthttp.ErrSmallBuffer
	var nerr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeError(ctx, fasthttp.StatusRequestEntityTooLarge, s.tooLargeMsg())
	case errors.As(err, &small):
		writeError(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large")
	case errors.As(err, &nerr) && nerr.Timeout():
		writeError(ctx, fasthttp.StatusRequestTimeout, "request timeout")
	default:
		writeError(ctx, fasthttp.StatusBadRequest, "malformed request")
	}
	s.log.Warn().Str("request_id", id).Err(err).Int("status", ctx.Response.StatusCode()).Msg("unreadable request")
}

// requestID returns the client's X-Request-Id when it is sane, else a new id.
func (s *Server) requestID(ctx *fasthttp.RequestCtx) string {
	if v := ctx.Request.Header.Peek("X-Request-Id"); len(v) > 0 && len(v) <= 128 && printableASCII(v) {
		return string(v)
	}
	return s.idPrefix + "-" + strconv.FormatUint(s.idSeq.Add(1), 36)
}

func printableASCII(b []byte) bool {
	for _, ch := range b {
		if ch <= ' ' || ch > '~' {
			return false
		}
	}
	return true
}

func newIDPrefix() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// healthz answers while the process is up.
func (s *Server) healthz(c *call) {
	c.ctx.SetContentType("text/plain; charset=utf-8")
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBodyString("ok")
}

// readyz answers 200 while the actor system runs and the database answers.
func (s *Server) readyz(c *call) {
	if s.isShuttingDown() {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, "shutting down")
		return
	}
	if s.actors == nil {
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, "actor system not configured")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.actors.Ready(ctx); err != nil {
		c.log.Warn().Err(err).Msg("not ready")
		writeError(c.ctx, fasthttp.StatusServiceUnavailable, err.Error())
		return
	}
	c.ctx.SetContentType("text/plain; charset=utf-8")
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetBodyString("ok")
}

// writeJSON answers status with v encoded as JSON.
func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "internal error")
		return
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

type errorBody struct {
	Error string `json:"error"`
}

// writeError answers status with {"error": msg}.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	b, _ := json.Marshal(errorBody{Error: msg})
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// fasthttpLogger routes fasthttp's own messages to zerolog.
type fasthttpLogger struct{ log zerolog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Warn().Str("component", "fasthttp").Msgf(format, args...)
}
