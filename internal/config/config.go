// Package config loads and checks the server's configuration: a YAML file
// (config.yaml) whose every key can be overridden by an environment variable
// named URVA_ + the key path in upper case with '.' as '_' (http.addr ->
// URVA_HTTP_ADDR).
//
// Load reads the file and the environment over the built-in defaults and
// rejects keys it does not know. Validate checks the result, lists every
// problem at once, and in sandbox mode completes missing secrets with fixed,
// publicly known sandbox values (see the Sandbox* constants). The package
// never logs: callers decide what to say about the configuration.
package config

import (
	"runtime"
	"time"
)

// EnvPrefix starts the name of every environment variable that overrides a key.
const EnvPrefix = "URVA_"

// Database drivers the store implements.
const (
	DriverSQLite = "sqlite"
	DriverMySQL  = "mysql"
)

// Log formats.
const (
	LogJSON    = "json"
	LogConsole = "console"
)

// Config is the whole configuration. The koanf tags are the key names in
// config.yaml; nested structs are sections.
type Config struct {
	HTTP     HTTP     `koanf:"http"`
	Database Database `koanf:"database"`
	Auth     Auth     `koanf:"auth"`
	WhatsApp WhatsApp `koanf:"whatsapp"`
	SMS      SMS      `koanf:"sms"`
	Dialler  Dialler  `koanf:"dialler"`
	TURN     TURN     `koanf:"turn"`
	Video    Video    `koanf:"video"`
	CRM      CRM      `koanf:"crm"`
	Sandbox  Sandbox  `koanf:"sandbox"`
	Log      Log      `koanf:"log"`
	Metrics  Metrics  `koanf:"metrics"`
	Runtime  Runtime  `koanf:"runtime"`

	// sandboxFilled lists the keys Validate completed with sandbox values.
	sandboxFilled []string
}

// HTTP is the listener.
type HTTP struct {
	// Addr is the listen address, host:port.
	Addr string `koanf:"addr"`
	// PublicURL is the base URL people and providers use to reach the server
	// (links, callback URLs), without a trailing slash.
	PublicURL string `koanf:"public_url"`
	// MaxBodyBytes caps a request body.
	MaxBodyBytes int `koanf:"max_body_bytes"`
	// SocketPingInterval is how often the server pings each live socket
	// (RM and video signalling): keep it under the idle timeout of any
	// proxy in front of the server.
	SocketPingInterval time.Duration `koanf:"socket_ping_interval"`
	// SocketReadTimeout ends a socket from which neither a frame nor a pong
	// came for this long; it must exceed SocketPingInterval.
	SocketReadTimeout time.Duration `koanf:"socket_read_timeout"`
}

// Database selects and tunes the store.
type Database struct {
	// Driver is DriverSQLite or DriverMySQL.
	Driver string `koanf:"driver"`
	// DSN is the SQLite file path, or a go-sql-driver/mysql DSN.
	DSN string `koanf:"dsn"`
	// BatchMaxRows closes a group-commit batch once it holds this many writes.
	BatchMaxRows int `koanf:"batch_max_rows"`
	// BatchMaxWait closes a group-commit batch this long after its first write.
	BatchMaxWait time.Duration `koanf:"batch_max_wait"`
}

// Auth holds the RM session token key and the operator token.
type Auth struct {
	// TokenSecret signs RM session tokens.
	TokenSecret string `koanf:"token_secret"`
	// AdminToken authorises the operator endpoints (/admin/...).
	AdminToken string `koanf:"admin_token"`
	// TokenTTL is how long an RM session token stays valid.
	TokenTTL time.Duration `koanf:"token_ttl"`
}

// WhatsApp is the Meta WhatsApp Cloud API.
type WhatsApp struct {
	// APIBase includes the API version, e.g. https://graph.facebook.com/v23.0.
	// Empty in sandbox mode means the in-process sandbox provider.
	APIBase       string `koanf:"api_base"`
	PhoneNumberID string `koanf:"phone_number_id"`
	AccessToken   string `koanf:"access_token"`
	// AppSecret verifies X-Hub-Signature-256 on webhooks.
	AppSecret string `koanf:"app_secret"`
	// VerifyToken answers Meta's webhook verification.
	VerifyToken string `koanf:"verify_token"`
	// BusinessNumber is our WhatsApp number in E.164, e.g. +919800000001.
	BusinessNumber string `koanf:"business_number"`
	// Templates are the approved message templates the console offers
	// (outside the 24-hour window only templates may be sent).
	Templates []Template `koanf:"templates"`
}

// Template is an approved WhatsApp message template.
type Template struct {
	Name     string `koanf:"name"`
	Language string `koanf:"language"`
	// Body is the template's text with {{1}}, {{2}}, ... for its parameters.
	Body string `koanf:"body"`
}

// SMS is Twilio (or a Twilio-compatible API).
type SMS struct {
	// APIBase is e.g. https://api.twilio.com. Empty means: the sandbox
	// provider in sandbox mode, no SMS channel otherwise.
	APIBase    string `koanf:"api_base"`
	AccountSID string `koanf:"account_sid"`
	// AuthToken authenticates API calls and verifies X-Twilio-Signature.
	AuthToken string `koanf:"auth_token"`
	// From is the sending number (E.164) or sender id.
	From string `koanf:"from"`
}

// Dialler is an Exotel-compatible click-to-call API.
type Dialler struct {
	// APIBase is the API root. Empty means: the sandbox dialler in sandbox
	// mode, no calls otherwise.
	APIBase    string `koanf:"api_base"`
	AccountSID string `koanf:"account_sid"`
	APIKey     string `koanf:"api_key"`
	APIToken   string `koanf:"api_token"`
	// CallerID is the number the dialler shows to both legs.
	CallerID string `koanf:"caller_id"`
	// CallbackToken is the secret path segment of the status callback URL.
	CallbackToken string `koanf:"callback_token"`
	// FirstLeg is who the dialler rings first: FirstLegContact (the
	// contact; once they answer, the RM) or FirstLegRM.
	FirstLeg string `koanf:"first_leg"`
	// ReconcileAfter: a call with no final status callback this long after
	// it was placed is finished from the dialler's call-details API.
	ReconcileAfter time.Duration `koanf:"reconcile_after"`
	// RecordingsDir is where call recordings are downloaded to; empty keeps
	// only the dialler's recording URLs.
	RecordingsDir string `koanf:"recordings_dir"`
}

// Who a click-to-call rings first (dialler.first_leg).
const (
	FirstLegContact = "contact"
	FirstLegRM      = "rm"
)

// TURN is the built-in TURN server (TURN REST API credentials), or an
// external one that shares its secret.
type TURN struct {
	// Enabled runs the built-in TURN server.
	Enabled bool `koanf:"enabled"`
	// Listen is the UDP and TCP listen address, host:port.
	Listen string `koanf:"listen"`
	// PublicIP is the address given to peers; empty means the listen host.
	PublicIP string `koanf:"public_ip"`
	Realm    string `koanf:"realm"`
	// AuthSecret derives time-limited credentials (shared with an external
	// coturn using static-auth-secret, if one is used instead).
	AuthSecret string `koanf:"auth_secret"`
	// PreviousAuthSecret is still accepted by the built-in server during a
	// rotation; credentials are only ever derived from AuthSecret.
	PreviousAuthSecret string        `koanf:"previous_auth_secret"`
	CredentialTTL      time.Duration `koanf:"credential_ttl"`
	// UDPListeners is the number of UDP sockets sharing the listen port
	// (SO_REUSEPORT), each with its own read loop; 0 means one per CPU
	// (see UDPListenerCount).
	UDPListeners int `koanf:"udp_listeners"`
	// RelayLoop relays ChannelData on a thread per UDP socket that waits on
	// it and its allocations' relay sockets with epoll (Linux); false leaves
	// every packet to pion's goroutines.
	RelayLoop bool `koanf:"relay_loop"`
	// MaxAllocationsPerUser caps one user's live allocations; 0 = no cap.
	MaxAllocationsPerUser int `koanf:"max_allocations_per_user"`
	// RelayPortMin and RelayPortMax bound the UDP ports relay sockets are
	// opened on (both 0: any port the kernel gives).
	RelayPortMin int `koanf:"relay_port_min"`
	RelayPortMax int `koanf:"relay_port_max"`
	// ExternalURLs are turn:, turns: and stun: URIs handed to clients when
	// Enabled is false: an external TURN server using AuthSecret.
	ExternalURLs []string `koanf:"external_urls"`
}

// UDPListenerCount is UDPListeners, with 0 resolved to the number of CPUs.
func (t TURN) UDPListenerCount() int {
	if t.UDPListeners > 0 {
		return t.UDPListeners
	}
	return runtime.NumCPU()
}

// Secrets lists the secrets the built-in server accepts: AuthSecret first,
// then PreviousAuthSecret when set (and different).
func (t TURN) Secrets() []string {
	var out []string
	if t.AuthSecret != "" {
		out = append(out, t.AuthSecret)
	}
	if t.PreviousAuthSecret != "" && t.PreviousAuthSecret != t.AuthSecret {
		out = append(out, t.PreviousAuthSecret)
	}
	return out
}

// Video is the browser video call.
type Video struct {
	// LinkTTL is how long a video call link stays valid for joining.
	LinkTTL time.Duration `koanf:"link_ttl"`
	// MaxDuration ends a call that has lasted this long.
	MaxDuration time.Duration `koanf:"max_duration"`
	// RejoinGrace is how long a participant who dropped out may come back
	// before the call ends.
	RejoinGrace time.Duration `koanf:"rejoin_grace"`
	// RelayOnly makes the page use TURN relays only (iceTransportPolicy
	// "relay"), so that neither side learns the other's IP address.
	RelayOnly bool `koanf:"relay_only"`
}

// CRM is the CRM sync target.
type CRM struct {
	// WebhookURL receives signed event POSTs; empty disables CRM sync.
	WebhookURL string `koanf:"webhook_url"`
	// Secret signs them (X-Urva-Signature).
	Secret string `koanf:"secret"`
	// MaxAge: an event still failing after this becomes a dead letter.
	MaxAge time.Duration `koanf:"max_age"`
	// Timeout bounds one delivery attempt.
	Timeout time.Duration `koanf:"timeout"`
}

// Sandbox switches on the in-process simulated providers.
type Sandbox struct {
	Enabled bool `koanf:"enabled"`
}

// Metrics configures GET /metrics.
type Metrics struct {
	// ActorRuntime also exports Proto.Actor's own metrics (protoactor_*),
	// which it records on every actor message: about a tenth of the
	// server's CPU under load. The urva_actor_* families, per actor kind,
	// are always exported.
	ActorRuntime bool `koanf:"actor_runtime"`
}

// Runtime tunes the Go runtime the server runs on.
type Runtime struct {
	// GCInterval paces the garbage collector while the server is busy: it
	// collects about once per interval, no more often than GOGC would, as
	// long as GCHeadroomMB allows (0: off, GOGC alone decides). An idle
	// server allocates next to nothing and keeps GOGC's memory (see
	// internal/gcpace).
	GCInterval time.Duration `koanf:"gc_interval"`
	// GCHeadroomMB caps the heap, in MiB over the live heap, that pacing
	// may let garbage take (0: off).
	GCHeadroomMB int `koanf:"gc_headroom_mb"`
}

// Log configures the server log.
type Log struct {
	// Format is LogJSON or LogConsole.
	Format string `koanf:"format"`
	// Level is trace, debug, info, warn, error, fatal, panic or disabled.
	Level string `koanf:"level"`
}

// Defaults.
const (
	DefaultAddr           = "127.0.0.1:8080"
	DefaultMaxBodyBytes   = 4 << 20
	DefaultSocketPing     = 30 * time.Second
	DefaultSocketRead     = 75 * time.Second
	DefaultDSN            = "data/urva.db"
	DefaultBatchMaxRows   = 256
	DefaultBatchMaxWait   = 2 * time.Millisecond
	DefaultTokenTTL       = 12 * time.Hour
	DefaultTURNListen     = "127.0.0.1:3478"
	DefaultTURNRealm      = "urva"
	DefaultCredentialTTL  = 12 * time.Hour
	DefaultReconcileAfter = 10 * time.Minute
	DefaultGCInterval     = 4 * time.Second
	DefaultGCHeadroomMB   = 256
	// maxGCHeadroomMB (1 TiB) keeps the byte count far from overflow.
	maxGCHeadroomMB = 1 << 20

	DefaultMaxAllocationsPerUser = 10
	DefaultVideoLinkTTL          = time.Hour
	DefaultVideoMaxDuration      = 2 * time.Hour
	DefaultVideoRejoinGrace      = 30 * time.Second
)

// Default returns the configuration used for every key that neither the file
// nor the environment sets. Sandbox mode and TURN are off: config.yaml turns
// them on for the embedded default.
func Default() *Config {
	return &Config{
		HTTP: HTTP{
			Addr:               DefaultAddr,
			MaxBodyBytes:       DefaultMaxBodyBytes,
			SocketPingInterval: DefaultSocketPing,
			SocketReadTimeout:  DefaultSocketRead,
		},
		Database: Database{
			Driver:       DriverSQLite,
			DSN:          DefaultDSN,
			BatchMaxRows: DefaultBatchMaxRows,
			BatchMaxWait: DefaultBatchMaxWait,
		},
		Auth: Auth{TokenTTL: DefaultTokenTTL},
		Dialler: Dialler{
			FirstLeg:       FirstLegContact,
			ReconcileAfter: DefaultReconcileAfter,
		},
		CRM: CRM{MaxAge: 72 * time.Hour, Timeout: 10 * time.Second},
		TURN: TURN{
			Listen:                DefaultTURNListen,
			Realm:                 DefaultTURNRealm,
			CredentialTTL:         DefaultCredentialTTL,
			MaxAllocationsPerUser: DefaultMaxAllocationsPerUser,
			RelayLoop:             true,
		},
		Video: Video{
			LinkTTL:     DefaultVideoLinkTTL,
			MaxDuration: DefaultVideoMaxDuration,
			RejoinGrace: DefaultVideoRejoinGrace,
		},
		Log:     Log{Format: LogJSON, Level: "info"},
		Runtime: Runtime{GCInterval: DefaultGCInterval, GCHeadroomMB: DefaultGCHeadroomMB},
	}
}

// SandboxFilled lists the keys the last Validate completed with sandbox
// values, in key order, so the caller can say so in its log.
func (c *Config) SandboxFilled() []string {
	return append([]string(nil), c.sandboxFilled...)
}
