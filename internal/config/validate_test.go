package config

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// valid returns a complete production configuration.
func valid() *Config {
	c := Default()
	c.HTTP.PublicURL = "https://urva.example.com"
	c.Auth.TokenSecret = "token-secret"
	c.Auth.AdminToken = "admin-token"
	c.WhatsApp = WhatsApp{
		APIBase:        "https://graph.facebook.com/v23.0",
		PhoneNumberID:  "100000000000123",
		AccessToken:    "EAAB",
		AppSecret:      "app-secret",
		VerifyToken:    "verify",
		BusinessNumber: "+919800000009",
	}
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		want   []string // substrings, one per expected problem; nil = valid
	}{
		{name: "complete production config", modify: func(*Config) {}},
		{
			name:   "unknown driver names the valid ones",
			modify: func(c *Config) { c.Database.Driver = "postgres" },
			want:   []string{`database.driver "postgres" is not supported: use "sqlite" or "mysql"`},
		},
		{
			name: "collector pacing bounds",
			modify: func(c *Config) {
				c.Runtime.GCInterval = -time.Second
				c.Runtime.GCHeadroomMB = -1
			},
			want: []string{"runtime.gc_interval must not be negative, got -1s", "runtime.gc_headroom_mb must be between 0 (off) and 1048576, got -1"},
		},
		{
			name:   "collector pacing off",
			modify: func(c *Config) { c.Runtime.GCInterval, c.Runtime.GCHeadroomMB = 0, 0 },
		},
		{
			name:   "driver is case-insensitive",
			modify: func(c *Config) { c.Database.Driver = " MySQL " },
		},
		{
			name:   "bad addr",
			modify: func(c *Config) { c.HTTP.Addr = "localhost" },
			want:   []string{`http.addr "localhost" is not host:port`},
		},
		{
			name:   "bad port",
			modify: func(c *Config) { c.HTTP.Addr = "127.0.0.1:99999" },
			want:   []string{`http.addr "127.0.0.1:99999" has a bad port`},
		},
		{
			name:   "port zero is allowed",
			modify: func(c *Config) { c.HTTP.Addr = "127.0.0.1:0" },
		},
		{
			name:   "bad public url",
			modify: func(c *Config) { c.HTTP.PublicURL = "urva.example.com" },
			want:   []string{`http.public_url "urva.example.com" is not an absolute http:// or https:// URL`},
		},
		{
			name:   "public url with a query",
			modify: func(c *Config) { c.HTTP.PublicURL = "https://urva.example.com/?a=b" },
			want:   []string{`must be a plain base URL`},
		},
		{
			name:   "missing public url outside sandbox",
			modify: func(c *Config) { c.HTTP.PublicURL = "" },
			want:   []string{`http.public_url is required outside sandbox mode`},
		},
		{
			name: "every missing secret at once",
			modify: func(c *Config) {
				c.Auth = Auth{TokenTTL: DefaultTokenTTL}
				c.WhatsApp = WhatsApp{}
			},
			want: []string{
				"auth.token_secret is required outside sandbox mode (environment: URVA_AUTH_TOKEN_SECRET)",
				"auth.admin_token is required outside sandbox mode (environment: URVA_AUTH_ADMIN_TOKEN)",
				"whatsapp.api_base is required outside sandbox mode",
				"whatsapp.phone_number_id is required outside sandbox mode",
				"whatsapp.access_token is required outside sandbox mode",
				"whatsapp.app_secret is required outside sandbox mode (environment: URVA_WHATSAPP_APP_SECRET)",
				"whatsapp.verify_token is required outside sandbox mode",
				"whatsapp.business_number is required outside sandbox mode",
			},
		},
		{
			name:   "business number without plus",
			modify: func(c *Config) { c.WhatsApp.BusinessNumber = "919800000009" },
			want:   []string{`whatsapp.business_number "919800000009" is not an E.164 number`},
		},
		{
			name:   "bad whatsapp api base",
			modify: func(c *Config) { c.WhatsApp.APIBase = "graph.facebook.com" },
			want:   []string{`whatsapp.api_base "graph.facebook.com" is not an absolute`},
		},
		{
			name:   "sms api base needs its keys",
			modify: func(c *Config) { c.SMS.APIBase = "https://api.twilio.com" },
			want: []string{
				"sms.account_sid is required when sms.api_base is set",
				"sms.auth_token is required when sms.api_base is set",
				"sms.from is required when sms.api_base is set",
			},
		},
		{
			name:   "dialler api base needs its keys",
			modify: func(c *Config) { c.Dialler.APIBase = "https://api.exotel.com"; c.Dialler.CallbackToken = "a/b" },
			want: []string{
				"dialler.account_sid is required when dialler.api_base is set",
				"dialler.api_key is required",
				"dialler.api_token is required",
				"dialler.caller_id is required",
				"dialler.callback_token must be usable as a URL path segment",
			},
		},
		{
			name:   "dialler first leg is case-insensitive",
			modify: func(c *Config) { c.Dialler.FirstLeg = " RM " },
		},
		{
			name:   "empty dialler first leg is the contact",
			modify: func(c *Config) { c.Dialler.FirstLeg = "" },
		},
		{
			name: "dialler first leg and reconciliation",
			modify: func(c *Config) {
				c.Dialler.FirstLeg = "agent"
				c.Dialler.ReconcileAfter = 0
			},
			want: []string{
				`dialler.first_leg "agent" is not supported: use "contact" (the contact rings first) or "rm"`,
				"dialler.reconcile_after must be positive, got 0s",
			},
		},
		{
			name: "turn needs a secret and a listen address",
			modify: func(c *Config) {
				c.TURN.Enabled = true
				c.TURN.Listen = "nope"
				c.TURN.PublicIP = "host"
				c.TURN.CredentialTTL = 0
			},
			want: []string{
				`turn.listen "nope" is not host:port`,
				`turn.public_ip "host" is not an IP address`,
				"turn.auth_secret is required when turn.enabled is true",
				"turn.credential_ttl must be positive",
			},
		},
		{
			name: "built-in turn with every new key",
			modify: func(c *Config) {
				c.TURN.Enabled = true
				c.TURN.AuthSecret = "cur"
				c.TURN.PreviousAuthSecret = "old"
				c.TURN.UDPListeners = 4
				c.TURN.MaxAllocationsPerUser = 0
				c.Video.RelayOnly = true
			},
		},
		{
			name:   "turn off and no external urls: video without a relay is allowed",
			modify: func(c *Config) { c.TURN.Enabled = false; c.TURN.AuthSecret = "" },
		},
		{
			name: "external urls need the secret",
			modify: func(c *Config) {
				c.TURN.ExternalURLs = []string{"turn:turn.example.com:3478?transport=udp", "stun:stun.example.com"}
				c.TURN.CredentialTTL = 0
			},
			want: []string{
				"turn.auth_secret is required when turn.external_urls is set (environment: URVA_TURN_AUTH_SECRET)",
				"turn.credential_ttl must be positive",
			},
		},
		{
			name: "external urls of every accepted form",
			modify: func(c *Config) {
				c.TURN.AuthSecret = "cur"
				c.TURN.ExternalURLs = []string{
					"turn:turn.example.com", "turn:turn.example.com:3478", "turn:203.0.113.7:3478?transport=udp",
					"turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349?transport=tcp",
					"turns:turn.example.com:443", "stun:stun.example.com:3478", "STUN:stun.example.com",
					"turn:[2001:db8::1]:3478?transport=udp", "stun:[2001:db8::1]", " turn:padded.example.com ",
				}
				c.Video.RelayOnly = true
			},
		},
		{
			name: "bad external urls",
			modify: func(c *Config) {
				c.TURN.AuthSecret = "cur"
				c.TURN.ExternalURLs = []string{
					"https://turn.example.com", "turn://turn.example.com:3478", "turn:", "turn:2001:db8::1:3478",
					"turn:turn.example.com:0", "turn:turn.example.com:70000", "turn:host:port",
					"stun:stun.example.com?transport=udp", "turns:turn.example.com?transport=udp",
					"turn:turn.example.com?transport=sctp", "turn:[2001:db8::1", "turn:[1.2.3.4]:3478",
					"turn:user@turn.example.com",
				}
			},
			want: []string{
				`turn.external_urls[0] "https://turn.example.com" must start with turn:, turns: or stun:`,
				`turn.external_urls[1] "turn://turn.example.com:3478" must not have '//'`,
				`turn.external_urls[2] "turn:" has no valid host`,
				`turn.external_urls[3] "turn:2001:db8::1:3478" has an IPv6 address without brackets`,
				`turn.external_urls[4] "turn:turn.example.com:0" has a bad port "0"`,
				`turn.external_urls[5] "turn:turn.example.com:70000" has a bad port "70000"`,
				`turn.external_urls[6] "turn:host:port" has a bad port "port"`,
				`turn.external_urls[7] "stun:stun.example.com?transport=udp" must have no query`,
				`turn.external_urls[8] "turns:turn.example.com?transport=udp" has an unsupported query`,
				`turn.external_urls[9] "turn:turn.example.com?transport=sctp" has an unsupported query`,
				`turn.external_urls[10] "turn:[2001:db8::1" has an unclosed '['`,
				`turn.external_urls[11] "turn:[1.2.3.4]:3478" has a bad IPv6 address`,
				`turn.external_urls[12] "turn:user@turn.example.com" has no valid host`,
			},
		},
		{
			name: "external urls while the built-in server is on",
			modify: func(c *Config) {
				c.TURN.Enabled = true
				c.TURN.AuthSecret = "cur"
				c.TURN.ExternalURLs = []string{"turn:turn.example.com:3478"}
			},
			want: []string{"turn.external_urls is used only when turn.enabled is false"},
		},
		{
			name: "turn numbers and a wildcard listen host",
			modify: func(c *Config) {
				c.TURN.Enabled = true
				c.TURN.AuthSecret = "cur"
				c.TURN.Listen = "0.0.0.0:3478"
				c.TURN.UDPListeners = -1
				c.TURN.MaxAllocationsPerUser = -2
			},
			want: []string{
				`turn.public_ip is required when turn.listen "0.0.0.0:3478" has no specific host`,
				"turn.udp_listeners must not be negative (0 = one per CPU), got -1",
				"turn.max_allocations_per_user must not be negative (0 = no limit), got -2",
			},
		},
		{
			name: "wildcard listen host with a public ip",
			modify: func(c *Config) {
				c.TURN.Enabled = true
				c.TURN.AuthSecret = "cur"
				c.TURN.Listen = ":3478"
				c.TURN.PublicIP = "203.0.113.7"
			},
		},
		{
			name: "video durations",
			modify: func(c *Config) {
				c.Video.LinkTTL = 0
				c.Video.MaxDuration = -time.Minute
				c.Video.RejoinGrace = 0
			},
			want: []string{
				"video.link_ttl must be positive, got 0s",
				"video.max_duration must be positive, got -1m0s",
				"video.rejoin_grace must be positive, got 0s",
			},
		},
		{
			name: "relay only needs a relay",
			modify: func(c *Config) {
				c.Video.RelayOnly = true
				c.TURN.AuthSecret = "cur"
				c.TURN.ExternalURLs = []string{"stun:stun.example.com"}
			},
			want: []string{"video.relay_only needs a TURN relay"},
		},
		{
			name:   "crm url needs a secret",
			modify: func(c *Config) { c.CRM.WebhookURL = "https://crm.example.com/hook" },
			want:   []string{"crm.secret is required when crm.webhook_url is set"},
		},
		{
			name:   "socket ping needs a longer read timeout",
			modify: func(c *Config) { c.HTTP.SocketReadTimeout = c.HTTP.SocketPingInterval },
			want:   []string{"http.socket_read_timeout (30s) must be longer than http.socket_ping_interval (30s)"},
		},
		{
			name:   "socket ping must be positive",
			modify: func(c *Config) { c.HTTP.SocketPingInterval = 0 },
			want:   []string{"http.socket_ping_interval must be positive, got 0s"},
		},
		{
			name: "numbers and log settings",
			modify: func(c *Config) {
				c.HTTP.MaxBodyBytes = 0
				c.Database.BatchMaxRows = -1
				c.Database.BatchMaxWait = -1
				c.Database.DSN = ""
				c.Auth.TokenTTL = 0
				c.Log = Log{Format: "xml", Level: "loud"}
			},
			want: []string{
				"http.max_body_bytes must be positive",
				"database.dsn is required",
				"database.batch_max_rows must be positive",
				"database.batch_max_wait must not be negative",
				"auth.token_ttl must be positive",
				`log.format "xml" is not supported: use "json" or "console"`,
				`log.level "loud" is not supported`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.modify(c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if len(ve.Problems) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%s", len(ve.Problems), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%s", w, err)
				}
			}
		})
	}
}

func TestValidateSandboxFillsSecrets(t *testing.T) {
	c := Default()
	c.Sandbox.Enabled = true
	c.TURN.Enabled = true
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.HTTP.PublicURL != "http://127.0.0.1:8080" {
		t.Errorf("public_url = %q", c.HTTP.PublicURL)
	}
	if c.Auth.TokenSecret != SandboxTokenSecret || c.Auth.AdminToken != SandboxAdminToken {
		t.Errorf("auth = %+v", c.Auth)
	}
	wantWA := WhatsApp{
		PhoneNumberID:  SandboxPhoneNumberID,
		AccessToken:    SandboxWhatsAppToken,
		AppSecret:      SandboxWhatsAppSecret,
		VerifyToken:    SandboxVerifyToken,
		BusinessNumber: "+919800000001",
	}
	if !reflect.DeepEqual(c.WhatsApp, wantWA) {
		t.Errorf("whatsapp = %+v", c.WhatsApp)
	}
	if c.SMS.AuthToken == "" || c.Dialler.CallbackToken == "" || c.TURN.AuthSecret == "" || c.CRM.Secret == "" {
		t.Errorf("not filled: %+v %+v %+v %+v", c.SMS, c.Dialler, c.TURN, c.CRM)
	}
	filled := c.SandboxFilled()
	for _, key := range []string{"http.public_url", "auth.token_secret", "whatsapp.app_secret", "turn.auth_secret"} {
		if !contains(filled, key) {
			t.Errorf("SandboxFilled() = %v, missing %s", filled, key)
		}
	}

	// A second Validate changes nothing.
	before := *c
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before.WhatsApp, c.WhatsApp) || before.Auth != c.Auth {
		t.Error("second Validate changed the configuration")
	}
}

func TestValidateSandboxKeepsGivenValues(t *testing.T) {
	c := Default()
	c.Sandbox.Enabled = true
	c.HTTP.Addr = "0.0.0.0:9090"
	c.Auth.TokenSecret = "mine"
	c.WhatsApp.AppSecret = "my-app-secret"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Auth.TokenSecret != "mine" || c.WhatsApp.AppSecret != "my-app-secret" {
		t.Errorf("given values replaced: %+v %+v", c.Auth, c.WhatsApp)
	}
	if contains(c.SandboxFilled(), "auth.token_secret") || contains(c.SandboxFilled(), "whatsapp.app_secret") {
		t.Errorf("SandboxFilled() = %v lists given keys", c.SandboxFilled())
	}
	if c.HTTP.PublicURL != "http://127.0.0.1:9090" {
		t.Errorf("public_url = %q, want the wildcard host replaced by 127.0.0.1", c.HTTP.PublicURL)
	}
}

// A real provider in sandbox mode still needs its real keys.
func TestValidateSandboxWithRealWhatsApp(t *testing.T) {
	c := Default()
	c.Sandbox.Enabled = true
	c.WhatsApp.APIBase = "https://graph.facebook.com/v23.0"
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, w := range []string{
		"whatsapp.app_secret is required when whatsapp.api_base is set",
		"whatsapp.access_token is required when whatsapp.api_base is set",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%s", w, err)
		}
	}
	if strings.Contains(err.Error(), "auth.token_secret") {
		t.Errorf("auth secrets should be filled in sandbox mode:\n%s", err)
	}
}

func TestValidateDatabase(t *testing.T) {
	c := Default() // no secrets: only the database matters here
	if err := c.ValidateDatabase(); err != nil {
		t.Fatal(err)
	}
	c.Database.Driver = "oracle"
	err := c.ValidateDatabase()
	if err == nil || !strings.Contains(err.Error(), `database.driver "oracle" is not supported: use "sqlite" or "mysql"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestIsE164(t *testing.T) {
	for v, want := range map[string]bool{
		"+919800000001":     true,
		"+14155550100":      true,
		"+1234567":          true,
		"+123456":           false,
		"+1234567890123456": false,
		"919800000001":      false,
		"+0919800000001":    false,
		"+91 98000 00001":   false,
		"":                  false,
		"+":                 false,
	} {
		if got := IsE164(v); got != want {
			t.Errorf("IsE164(%q) = %v", v, got)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// With port 0 the public URL is left for the server to derive once bound.
func TestValidateSandboxPortZero(t *testing.T) {
	c := Default()
	c.Sandbox.Enabled = true
	c.HTTP.Addr = "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HTTP.PublicURL != "" {
		t.Errorf("public_url = %q, want it left empty", c.HTTP.PublicURL)
	}
	c.Sandbox.Enabled = false
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "http.public_url is required outside sandbox mode") {
		t.Errorf("outside sandbox: %v", err)
	}
}

func TestDerivePublicURL(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		":8080":          "http://127.0.0.1:8080",
		"0.0.0.0:9000":   "http://127.0.0.1:9000",
		"[::]:9000":      "http://127.0.0.1:9000",
		"[::1]:9000":     "http://[::1]:9000",
		"urva.local:80":  "http://urva.local:80",
		"127.0.0.1:0":    "",
		"no-port":        "",
	} {
		got, ok := DerivePublicURL(addr)
		if got != want || ok != (want != "") {
			t.Errorf("DerivePublicURL(%q) = %q, %v; want %q", addr, got, ok, want)
		}
	}
}

func TestValidateNormalisesDialler(t *testing.T) {
	for in, want := range map[string]string{"": FirstLegContact, " RM ": FirstLegRM, "Contact": FirstLegContact} {
		c := valid()
		c.Dialler.FirstLeg = in
		c.Dialler.RecordingsDir = " data/recordings "
		if err := c.Validate(); err != nil {
			t.Fatalf("first_leg %q: %v", in, err)
		}
		if c.Dialler.FirstLeg != want || c.Dialler.RecordingsDir != "data/recordings" {
			t.Errorf("first_leg %q: got %+v, want first leg %q", in, c.Dialler, want)
		}
	}
}

func TestValidateSandboxFillsTURNSecretForExternalURLs(t *testing.T) {
	c := Default()
	c.Sandbox.Enabled = true
	c.TURN.ExternalURLs = []string{"turn:127.0.0.1:3478"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.TURN.AuthSecret != SandboxTURNSecret || !contains(c.SandboxFilled(), "turn.auth_secret") {
		t.Errorf("turn.auth_secret = %q, filled %v", c.TURN.AuthSecret, c.SandboxFilled())
	}
	if c.TURN.PreviousAuthSecret != "" {
		t.Errorf("turn.previous_auth_secret filled: %q", c.TURN.PreviousAuthSecret)
	}
}

func TestTURNHelpers(t *testing.T) {
	tc := TURN{AuthSecret: "new", PreviousAuthSecret: "old"}
	if got := tc.Secrets(); !reflect.DeepEqual(got, []string{"new", "old"}) {
		t.Errorf("Secrets() = %q", got)
	}
	tc.PreviousAuthSecret = "new"
	if got := tc.Secrets(); !reflect.DeepEqual(got, []string{"new"}) {
		t.Errorf("Secrets() with the same previous secret = %q", got)
	}
	if got := (TURN{}).Secrets(); got != nil {
		t.Errorf("Secrets() without secrets = %q", got)
	}
	if got := (TURN{UDPListeners: 3}).UDPListenerCount(); got != 3 {
		t.Errorf("UDPListenerCount() = %d", got)
	}
	if got := (TURN{}).UDPListenerCount(); got != runtime.NumCPU() {
		t.Errorf("UDPListenerCount() with 0 = %d, want %d", got, runtime.NumCPU())
	}
}

func TestValidateTrimsExternalURLs(t *testing.T) {
	c := valid()
	c.TURN.AuthSecret = "cur"
	c.TURN.ExternalURLs = []string{" turn:a.example.com ", "", "stun:b.example.com"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"turn:a.example.com", "stun:b.example.com"}; !reflect.DeepEqual(c.TURN.ExternalURLs, want) {
		t.Errorf("external_urls = %q, want %q", c.TURN.ExternalURLs, want)
	}
}
