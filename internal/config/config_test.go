package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// production is a complete configuration outside sandbox mode.
const production = `
http:
  addr: 0.0.0.0:8443
  public_url: https://urva.example.com/
database:
  driver: mysql
  dsn: urva:pw@tcp(db:3306)/urva
  batch_max_rows: 128
  batch_max_wait: 5ms
auth:
  token_secret: s3cret
  admin_token: adm1n
  token_ttl: 8h
whatsapp:
  api_base: https://graph.facebook.com/v23.0
  phone_number_id: 100000000000123
  access_token: EAAB
  app_secret: appsecret
  verify_token: verify
  business_number: +919800000009
sandbox:
  enabled: false
log:
  format: console
  level: debug
`

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		file    string // "" = no file
		environ []string
		check   func(t *testing.T, c *Config)
	}{
		{
			name: "defaults without a file",
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(c, Default()) {
					t.Errorf("got %+v, want the defaults %+v", c, Default())
				}
				if c.HTTP.MaxBodyBytes != 4<<20 || c.Database.Driver != "sqlite" || c.Database.DSN != "data/urva.db" ||
					c.Database.BatchMaxRows != 256 || c.Database.BatchMaxWait != 2*time.Millisecond || c.Auth.TokenTTL != 12*time.Hour {
					t.Errorf("defaults changed: %+v", c)
				}
				if c.Dialler.FirstLeg != "contact" || c.Dialler.ReconcileAfter != 10*time.Minute || c.Dialler.RecordingsDir != "" {
					t.Errorf("dialler defaults changed: %+v", c.Dialler)
				}
				if c.TURN.UDPListeners != 0 || !c.TURN.RelayLoop || c.TURN.MaxAllocationsPerUser != 10 || c.TURN.ExternalURLs != nil ||
					c.TURN.PreviousAuthSecret != "" || c.TURN.Enabled {
					t.Errorf("turn defaults changed: %+v", c.TURN)
				}
				if c.Video != (Video{LinkTTL: time.Hour, MaxDuration: 2 * time.Hour, RejoinGrace: 30 * time.Second}) {
					t.Errorf("video defaults changed: %+v", c.Video)
				}
			},
		},
		{
			name: "file values",
			file: production,
			check: func(t *testing.T, c *Config) {
				want := Default()
				want.HTTP = HTTP{Addr: "0.0.0.0:8443", PublicURL: "https://urva.example.com/", MaxBodyBytes: 4 << 20,
					SocketPingInterval: DefaultSocketPing, SocketReadTimeout: DefaultSocketRead}
				want.Database = Database{Driver: "mysql", DSN: "urva:pw@tcp(db:3306)/urva", BatchMaxRows: 128, BatchMaxWait: 5 * time.Millisecond}
				want.Auth = Auth{TokenSecret: "s3cret", AdminToken: "adm1n", TokenTTL: 8 * time.Hour}
				want.WhatsApp = WhatsApp{
					APIBase: "https://graph.facebook.com/v23.0", PhoneNumberID: "100000000000123", AccessToken: "EAAB",
					AppSecret: "appsecret", VerifyToken: "verify", BusinessNumber: "+919800000009",
				}
				want.Log = Log{Format: "console", Level: "debug"}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got\n%+v\nwant\n%+v", c, want)
				}
			},
		},
		{
			name: "environment overrides file and defaults",
			file: production,
			environ: []string{
				"URVA_HTTP_ADDR=127.0.0.1:9000",
				"URVA_DATABASE_DSN=other",
				"URVA_DATABASE_BATCH_MAX_WAIT=1s",
				"URVA_DATABASE_BATCH_MAX_ROWS=7",
				"URVA_SANDBOX_ENABLED=true",
				"URVA_WHATSAPP_APP_SECRET=from-env",
				"URVA_WHATSAPP_VERIFY_TOKEN=", // set empty on purpose
				"URVA_TURN_CREDENTIAL_TTL=90m",
				"URVA_CRM_WEBHOOK_URL=https://crm.example.com/hook",
				"URVA_HTTP_MAX_BODY_BYTES=1024",
				"URVA_UNRELATED_SETTING=ignored",
				"HTTP_ADDR=not-ours",
				"URVA_HTTP_ADDR=127.0.0.1:9001", // the later entry wins
			},
			check: func(t *testing.T, c *Config) {
				if c.HTTP.Addr != "127.0.0.1:9001" {
					t.Errorf("http.addr = %q", c.HTTP.Addr)
				}
				if c.Database.DSN != "other" || c.Database.BatchMaxWait != time.Second || c.Database.BatchMaxRows != 7 {
					t.Errorf("database = %+v", c.Database)
				}
				if !c.Sandbox.Enabled {
					t.Error("sandbox.enabled not overridden")
				}
				if c.WhatsApp.AppSecret != "from-env" || c.WhatsApp.VerifyToken != "" || c.WhatsApp.AccessToken != "EAAB" {
					t.Errorf("whatsapp = %+v", c.WhatsApp)
				}
				if c.TURN.CredentialTTL != 90*time.Minute {
					t.Errorf("turn.credential_ttl = %s", c.TURN.CredentialTTL)
				}
				if c.CRM.WebhookURL != "https://crm.example.com/hook" || c.HTTP.MaxBodyBytes != 1024 {
					t.Errorf("crm/http = %+v %+v", c.CRM, c.HTTP)
				}
			},
		},
		{
			name:    "dialler keys from the file and the environment",
			file:    "dialler:\n  first_leg: rm\n  reconcile_after: 90s\n  recordings_dir: /var/lib/urva/recordings\n",
			environ: []string{"URVA_DIALLER_RECONCILE_AFTER=15m"},
			check: func(t *testing.T, c *Config) {
				if c.Dialler.FirstLeg != "rm" || c.Dialler.ReconcileAfter != 15*time.Minute ||
					c.Dialler.RecordingsDir != "/var/lib/urva/recordings" {
					t.Errorf("dialler = %+v", c.Dialler)
				}
			},
		},
		{
			name:    "environment without a file",
			environ: []string{"URVA_DATABASE_DRIVER=mysql", "URVA_TURN_ENABLED=1"},
			check: func(t *testing.T, c *Config) {
				if c.Database.Driver != "mysql" || !c.TURN.Enabled || c.Database.DSN != DefaultDSN {
					t.Errorf("got %+v %+v", c.Database, c.TURN)
				}
			},
		},
		{
			name: "turn and video keys from the file",
			file: `
turn:
  enabled: false
  auth_secret: current
  previous_auth_secret: previous
  udp_listeners: 4
  max_allocations_per_user: 0
  external_urls:
    - turn:turn.example.com:3478?transport=udp
    - turns:turn.example.com:5349?transport=tcp
    - stun:stun.example.com
video:
  link_ttl: 30m
  max_duration: 90m
  rejoin_grace: 45s
  relay_only: true
sandbox:
  enabled: true
`,
			check: func(t *testing.T, c *Config) {
				want := Default().TURN
				want.AuthSecret, want.PreviousAuthSecret = "current", "previous"
				want.UDPListeners, want.MaxAllocationsPerUser = 4, 0
				want.ExternalURLs = []string{
					"turn:turn.example.com:3478?transport=udp",
					"turns:turn.example.com:5349?transport=tcp",
					"stun:stun.example.com",
				}
				if !reflect.DeepEqual(c.TURN, want) {
					t.Errorf("turn = %+v, want %+v", c.TURN, want)
				}
				if c.Video != (Video{LinkTTL: 30 * time.Minute, MaxDuration: 90 * time.Minute, RejoinGrace: 45 * time.Second, RelayOnly: true}) {
					t.Errorf("video = %+v", c.Video)
				}
				if err := c.Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
			},
		},
		{
			name: "turn list and video keys from the environment",
			file: "turn:\n  external_urls:\n    - stun:from-file\n",
			environ: []string{
				"URVA_TURN_EXTERNAL_URLS= turn:a.example.com:3478?transport=udp , turns:[2001:db8::1]:5349,,stun:b.example.com ",
				"URVA_TURN_UDP_LISTENERS=3",
				"URVA_TURN_MAX_ALLOCATIONS_PER_USER=0",
				"URVA_TURN_PREVIOUS_AUTH_SECRET=old",
				"URVA_VIDEO_LINK_TTL=15m",
				"URVA_VIDEO_MAX_DURATION=1h",
				"URVA_VIDEO_REJOIN_GRACE=10s",
				"URVA_VIDEO_RELAY_ONLY=true",
			},
			check: func(t *testing.T, c *Config) {
				want := []string{"turn:a.example.com:3478?transport=udp", "turns:[2001:db8::1]:5349", "stun:b.example.com"}
				if !reflect.DeepEqual(c.TURN.ExternalURLs, want) {
					t.Errorf("turn.external_urls = %q, want %q", c.TURN.ExternalURLs, want)
				}
				if c.TURN.UDPListeners != 3 || c.TURN.MaxAllocationsPerUser != 0 || c.TURN.PreviousAuthSecret != "old" {
					t.Errorf("turn = %+v", c.TURN)
				}
				if c.Video != (Video{LinkTTL: 15 * time.Minute, MaxDuration: time.Hour, RejoinGrace: 10 * time.Second, RelayOnly: true}) {
					t.Errorf("video = %+v", c.Video)
				}
			},
		},
		{
			name:    "an empty list variable clears the file's list",
			file:    "turn:\n  external_urls: [stun:from-file]\n",
			environ: []string{"URVA_TURN_EXTERNAL_URLS="},
			check: func(t *testing.T, c *Config) {
				if c.TURN.ExternalURLs == nil || len(c.TURN.ExternalURLs) != 0 {
					t.Errorf("turn.external_urls = %#v, want an empty list", c.TURN.ExternalURLs)
				}
			},
		},
		{
			name: "numbers stay as written",
			file: "whatsapp:\n  business_number: +919800000001\n  phone_number_id: 0012\n",
			check: func(t *testing.T, c *Config) {
				if c.WhatsApp.BusinessNumber != "+919800000001" || c.WhatsApp.PhoneNumberID != "0012" {
					t.Errorf("got %+v", c.WhatsApp)
				}
			},
		},
		{
			name: "empty file and empty sections",
			file: "# nothing\nhttp:\ncrm: {}\n",
			check: func(t *testing.T, c *Config) {
				if !reflect.DeepEqual(c, Default()) {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "null value keeps the default",
			file: "database:\n  dsn:\n",
			check: func(t *testing.T, c *Config) {
				if c.Database.DSN != DefaultDSN {
					t.Errorf("dsn = %q", c.Database.DSN)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			c, err := Load(path, tt.environ)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		environ []string
		want    []string // substrings of the error
	}{
		{"unknown key", "http:\n  adr: 1.2.3.4:80\n", nil, []string{`unknown key "http.adr"`}},
		{"unknown section", "smtp:\n  host: x\n", nil, []string{`unknown key "smtp.host"`}},
		{"several unknown keys", "http:\n  adr: x\ndatabase:\n  dns: y\n", nil, []string{`unknown keys`, `"database.dns"`, `"http.adr"`}},
		{"section given a value", "http: 8080\n", nil, []string{`"http" (a section`}},
		{"value given a section", "http:\n  addr:\n    host: x\n", nil, []string{`unknown key "http.addr.host"`}},
		{"dotted key", "http.addr: 1.2.3.4:5\n", nil, []string{`key "http.addr" contains '.'`}},
		{"duplicate key", "http:\n  addr: a\n  addr: b\n", nil, []string{`"addr" appears twice`}},
		{"bad yaml", "http: [\n", nil, []string{"config.yaml"}},
		{"not a mapping", "- a\n- b\n", nil, []string{"must be a mapping"}},
		{"bare number duration", "database:\n  batch_max_wait: 5\n", nil, []string{"batch_max_wait", `Go duration such as "2ms"`}},
		{"bad duration", "auth:\n  token_ttl: 12 hours\n", nil, []string{"token_ttl", `"12 hours" is not a duration`}},
		{"bad env duration", "", []string{"URVA_AUTH_TOKEN_TTL=soon"}, []string{"token_ttl", `"soon" is not a duration`}},
		{"bad env int", "", []string{"URVA_DATABASE_BATCH_MAX_ROWS=many"}, []string{"batch_max_rows"}},
		{"bad env bool", "", []string{"URVA_SANDBOX_ENABLED=perhaps"}, []string{"enabled"}},
		{"bare number reconcile_after", "dialler:\n  reconcile_after: 600\n", nil, []string{"reconcile_after"}},
		{"bare number video duration", "video:\n  rejoin_grace: 30\n", nil, []string{"rejoin_grace", "Go duration"}},
		{"bad env listeners", "", []string{"URVA_TURN_UDP_LISTENERS=all"}, []string{"udp_listeners"}},
		{"list given a mapping", "turn:\n  external_urls:\n    url: stun:x\n", nil, []string{"external_urls"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			_, err := Load(path, tt.environ)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}

// TestShippedConfig keeps config.yaml loadable, valid and in step with the keys.
func TestShippedConfig(t *testing.T) {
	path := filepath.Join("..", "..", "config.yaml")
	c, err := Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != "127.0.0.1:8080" || c.HTTP.PublicURL != "http://127.0.0.1:8080" ||
		c.Database.Driver != "sqlite" || c.Database.DSN != "data/urva.db" ||
		!c.Sandbox.Enabled || c.WhatsApp.APIBase != "" || !c.TURN.Enabled || c.TURN.Listen != "127.0.0.1:3478" {
		t.Errorf("config.yaml is not the embedded default: %+v", c)
	}
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range Keys() {
		section, name, _ := strings.Cut(key, ".")
		if !strings.Contains(string(body), "\n"+section+":") || !strings.Contains(string(body), "\n  "+name+":") {
			t.Errorf("config.yaml does not show key %s", key)
		}
	}
}

// TestDocumentedKeys keeps docs/configuration.md listing every key and variable.
func TestDocumentedKeys(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range Keys() {
		if !strings.Contains(string(body), "`"+key+"`") {
			t.Errorf("docs/configuration.md does not document %s", key)
		}
		if !strings.Contains(string(body), "`"+EnvName(key)+"`") {
			t.Errorf("docs/configuration.md does not name %s", EnvName(key))
		}
	}
}

func TestKeysAndEnvNames(t *testing.T) {
	keys := Keys()
	wantKeys := []string{
		"http.addr", "http.public_url", "http.max_body_bytes", "http.socket_ping_interval", "http.socket_read_timeout",
		"database.driver", "database.dsn",
		"database.batch_max_rows", "database.batch_max_wait", "auth.token_secret", "auth.admin_token",
		"auth.token_ttl", "whatsapp.api_base", "whatsapp.phone_number_id", "whatsapp.access_token",
		"whatsapp.app_secret", "whatsapp.verify_token", "whatsapp.business_number", "whatsapp.templates", "sms.api_base",
		"sms.account_sid", "sms.auth_token", "sms.from", "dialler.api_base", "dialler.account_sid",
		"dialler.api_key", "dialler.api_token", "dialler.caller_id", "dialler.callback_token",
		"dialler.first_leg", "dialler.reconcile_after", "dialler.recordings_dir",
		"turn.enabled", "turn.listen", "turn.public_ip", "turn.realm", "turn.auth_secret",
		"turn.previous_auth_secret", "turn.credential_ttl", "turn.udp_listeners", "turn.relay_loop", "turn.max_allocations_per_user",
		"turn.relay_port_min", "turn.relay_port_max",
		"turn.external_urls", "video.link_ttl", "video.max_duration", "video.rejoin_grace", "video.relay_only",
		"crm.webhook_url", "crm.secret", "crm.max_age", "crm.timeout", "sandbox.enabled", "log.format", "log.level", "metrics.actor_runtime",
		"runtime.gc_interval", "runtime.gc_headroom_mb",
	}
	if len(keys) != len(wantKeys) {
		t.Errorf("%d keys, want %d: %v", len(keys), len(wantKeys), keys)
	}
	for _, want := range wantKeys {
		found := false
		for _, k := range keys {
			found = found || k == want
		}
		if !found {
			t.Errorf("key %s missing", want)
		}
	}
	if got := EnvName("whatsapp.app_secret"); got != "URVA_WHATSAPP_APP_SECRET" {
		t.Errorf("EnvName = %s", got)
	}
}

func TestTemplates(t *testing.T) {
	path := writeFile(t, "whatsapp:\n  templates:\n    - {name: followup, language: en, body: \"Hi {{1}}\"}\n")
	c, err := Load(path, nil)
	if err != nil || len(c.WhatsApp.Templates) != 1 || c.WhatsApp.Templates[0] != (Template{Name: "followup", Language: "en", Body: "Hi {{1}}"}) {
		t.Fatalf("from the file: %+v %v", c, err)
	}
	c, err = Load(path, []string{`URVA_WHATSAPP_TEMPLATES=[{"name":"a","language":"hi","body":"x"},{"name":"b","language":"en","body":"y"}]`})
	if err != nil || len(c.WhatsApp.Templates) != 2 || c.WhatsApp.Templates[1].Name != "b" {
		t.Fatalf("from the environment: %+v %v", c, err)
	}
	for _, bad := range []string{
		"whatsapp:\n  templates:\n    - {name: a, language: en, bdy: x}\n",
		"whatsapp:\n  templates: [plain]\n",
	} {
		if _, err := Load(writeFile(t, bad), nil); err == nil || !strings.Contains(err.Error(), "whatsapp.templates") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, err := Load(path, []string{"URVA_WHATSAPP_TEMPLATES=not json"}); err == nil {
		t.Error("a template list that is not JSON was accepted")
	}
}
