package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Sandbox values: Validate puts them in place of missing secrets when
// sandbox.enabled is true. They are published here and in
// docs/configuration.md, so anyone can sign a webhook or a token with them:
// they are for the sandbox only, never for a server reachable by others.
const (
	SandboxTokenSecret     = "urva-sandbox-token-secret-not-secret"
	SandboxAdminToken      = "urva-sandbox-admin-token"
	SandboxWhatsAppToken   = "urva-sandbox-whatsapp-access-token"
	SandboxWhatsAppSecret  = "urva-sandbox-whatsapp-app-secret"
	SandboxVerifyToken     = "urva-sandbox-verify-token"
	SandboxPhoneNumberID   = "100000000000001"
	SandboxBusinessNumber  = "+919800000001"
	SandboxSMSAccountSID   = "AC00000000000000000000000000000000"
	SandboxSMSAuthToken    = "urva-sandbox-sms-auth-token"
	SandboxDiallerSID      = "urva-sandbox"
	SandboxDiallerAPIKey   = "urva-sandbox-dialler-key"
	SandboxDiallerAPIToken = "urva-sandbox-dialler-token"
	SandboxDiallerCallback = "urva-sandbox-dialler-callback"
	SandboxTURNSecret      = "urva-sandbox-turn-secret"
	SandboxCRMSecret       = "urva-sandbox-crm-secret"
)

// ValidationError lists every problem Validate found.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0]
	}
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

type problems []string

func (p *problems) addf(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// Validate checks the configuration and reports every problem at once as a
// *ValidationError. It also completes what can be derived:
//
//   - names are normalised (database.driver, dialler.first_leg and log
//     settings in lower case, an empty dialler.first_leg the default,
//     http.public_url without a trailing slash);
//   - in sandbox mode, a missing http.public_url becomes http:// + http.addr
//     (with port 0 it stays empty: the server derives it from the address it
//     bound, see DerivePublicURL), and missing secrets become the fixed
//     Sandbox* values: the auth, TURN and CRM secrets always, provider keys
//     for each provider whose api_base is empty (that provider is the
//     in-process sandbox). SandboxFilled lists the keys filled.
//
// Outside sandbox mode the auth secrets and the WhatsApp keys are required;
// SMS and dialler keys are required when their api_base is set, and so is
// crm.secret when crm.webhook_url is set.
func (c *Config) Validate() error {
	var p problems
	c.normalise()
	if c.Sandbox.Enabled {
		c.fillSandbox()
	}

	checkHostPort(&p, "http.addr", c.HTTP.Addr)
	switch {
	case c.HTTP.PublicURL != "":
		checkURL(&p, "http.public_url", c.HTTP.PublicURL, true)
	case !c.Sandbox.Enabled:
		p.addf("http.public_url is required outside sandbox mode: the URL people and providers reach this server at, e.g. https://urva.example.com")
	case !strings.HasSuffix(c.HTTP.Addr, ":0"):
		p.addf("http.public_url is required: it cannot be derived from http.addr %q", c.HTTP.Addr)
	}
	if c.HTTP.MaxBodyBytes <= 0 {
		p.addf("http.max_body_bytes must be positive, got %d", c.HTTP.MaxBodyBytes)
	}
	switch {
	case c.HTTP.SocketPingInterval <= 0:
		p.addf("http.socket_ping_interval must be positive, got %s", c.HTTP.SocketPingInterval)
	case c.HTTP.SocketReadTimeout <= c.HTTP.SocketPingInterval:
		p.addf("http.socket_read_timeout (%s) must be longer than http.socket_ping_interval (%s): a client answering every ping would be cut off",
			c.HTTP.SocketReadTimeout, c.HTTP.SocketPingInterval)
	}

	switch c.Database.Driver {
	case DriverSQLite, DriverMySQL:
	default:
		p.addf("database.driver %q is not supported: use %q or %q", c.Database.Driver, DriverSQLite, DriverMySQL)
	}
	if c.Database.DSN == "" {
		p.addf("database.dsn is required: a SQLite file path, or a MySQL DSN such as user:pass@tcp(127.0.0.1:3306)/urva")
	}
	if c.Database.BatchMaxRows <= 0 {
		p.addf("database.batch_max_rows must be positive, got %d", c.Database.BatchMaxRows)
	}
	if c.Database.BatchMaxWait < 0 {
		p.addf("database.batch_max_wait must not be negative, got %s", c.Database.BatchMaxWait)
	}
	if c.Runtime.GCInterval < 0 {
		p.addf("runtime.gc_interval must not be negative, got %s", c.Runtime.GCInterval)
	}
	if c.Runtime.GCHeadroomMB < 0 || c.Runtime.GCHeadroomMB > maxGCHeadroomMB {
		p.addf("runtime.gc_headroom_mb must be between 0 (off) and %d, got %d", maxGCHeadroomMB, c.Runtime.GCHeadroomMB)
	}

	mode := "outside sandbox mode"
	required(&p, mode, "auth.token_secret", c.Auth.TokenSecret)
	required(&p, mode, "auth.admin_token", c.Auth.AdminToken)
	if c.Auth.TokenTTL <= 0 {
		p.addf("auth.token_ttl must be positive, got %s", c.Auth.TokenTTL)
	}

	wa := c.WhatsApp
	waMode := mode
	if c.Sandbox.Enabled {
		waMode = "when whatsapp.api_base is set"
	}
	if !c.Sandbox.Enabled {
		required(&p, mode, "whatsapp.api_base", wa.APIBase)
	}
	if wa.APIBase != "" {
		checkURL(&p, "whatsapp.api_base", wa.APIBase, false)
	}
	required(&p, waMode, "whatsapp.phone_number_id", wa.PhoneNumberID)
	required(&p, waMode, "whatsapp.access_token", wa.AccessToken)
	required(&p, waMode, "whatsapp.app_secret", wa.AppSecret)
	required(&p, waMode, "whatsapp.verify_token", wa.VerifyToken)
	required(&p, waMode, "whatsapp.business_number", wa.BusinessNumber)
	checkE164(&p, "whatsapp.business_number", wa.BusinessNumber)
	seenTemplates := map[string]bool{}
	for i, t := range wa.Templates {
		if t.Name == "" || t.Language == "" {
			p.addf("whatsapp.templates[%d] needs a name and a language", i)
		}
		if seenTemplates[t.Name+"/"+t.Language] {
			p.addf("whatsapp.templates[%d]: %s (%s) is listed twice", i, t.Name, t.Language)
		}
		seenTemplates[t.Name+"/"+t.Language] = true
	}

	if c.SMS.APIBase != "" {
		checkURL(&p, "sms.api_base", c.SMS.APIBase, false)
		m := "when sms.api_base is set"
		required(&p, m, "sms.account_sid", c.SMS.AccountSID)
		required(&p, m, "sms.auth_token", c.SMS.AuthToken)
		required(&p, m, "sms.from", c.SMS.From)
	}
	if c.Dialler.APIBase != "" {
		checkURL(&p, "dialler.api_base", c.Dialler.APIBase, false)
		m := "when dialler.api_base is set"
		required(&p, m, "dialler.account_sid", c.Dialler.AccountSID)
		required(&p, m, "dialler.api_key", c.Dialler.APIKey)
		required(&p, m, "dialler.api_token", c.Dialler.APIToken)
		required(&p, m, "dialler.caller_id", c.Dialler.CallerID)
		required(&p, m, "dialler.callback_token", c.Dialler.CallbackToken)
	}
	if c.Dialler.CallbackToken != "" && strings.ContainsAny(c.Dialler.CallbackToken, "/?#% ") {
		p.addf("dialler.callback_token must be usable as a URL path segment (no '/', '?', '#', '%%' or spaces)")
	}
	switch c.Dialler.FirstLeg {
	case FirstLegContact, FirstLegRM:
	default:
		p.addf("dialler.first_leg %q is not supported: use %q (the contact rings first) or %q", c.Dialler.FirstLeg, FirstLegContact, FirstLegRM)
	}
	if c.Dialler.ReconcileAfter <= 0 {
		p.addf("dialler.reconcile_after must be positive, got %s", c.Dialler.ReconcileAfter)
	}

	t := c.TURN
	if t.Enabled {
		checkHostPort(&p, "turn.listen", t.Listen)
		if t.PublicIP != "" && net.ParseIP(t.PublicIP) == nil {
			p.addf("turn.public_ip %q is not an IP address", t.PublicIP)
		}
		if host, _, err := net.SplitHostPort(t.Listen); err == nil && t.PublicIP == "" && isWildcard(host) {
			p.addf("turn.public_ip is required when turn.listen %q has no specific host: browsers must be given an address they can reach", t.Listen)
		}
		if t.Realm == "" {
			p.addf("turn.realm is required when turn.enabled is true")
		}
		if len(t.ExternalURLs) > 0 {
			p.addf("turn.external_urls is used only when turn.enabled is false: switch the built-in server off or clear the list")
		}
	}
	if t.Enabled || len(t.ExternalURLs) > 0 {
		when := "when turn.enabled is true"
		if !t.Enabled {
			when = "when turn.external_urls is set"
		}
		required(&p, when, "turn.auth_secret", t.AuthSecret)
		if t.CredentialTTL <= 0 {
			p.addf("turn.credential_ttl must be positive, got %s", t.CredentialTTL)
		}
	}
	for i, u := range t.ExternalURLs {
		if err := checkICEURL(u); err != nil {
			p.addf("turn.external_urls[%d] %q %v", i, u, err)
		}
	}
	if t.RelayPortMin != 0 || t.RelayPortMax != 0 {
		if t.RelayPortMin < 1 || t.RelayPortMax > 65535 || t.RelayPortMin > t.RelayPortMax {
			p.addf("turn.relay_port_min and turn.relay_port_max must be a range within 1-65535 (or both 0), got %d-%d", t.RelayPortMin, t.RelayPortMax)
		}
	}
	if t.UDPListeners < 0 {
		p.addf("turn.udp_listeners must not be negative (0 = one per CPU), got %d", t.UDPListeners)
	}
	if t.MaxAllocationsPerUser < 0 {
		p.addf("turn.max_allocations_per_user must not be negative (0 = no limit), got %d", t.MaxAllocationsPerUser)
	}

	v := c.Video
	if v.LinkTTL <= 0 {
		p.addf("video.link_ttl must be positive, got %s", v.LinkTTL)
	}
	if v.MaxDuration <= 0 {
		p.addf("video.max_duration must be positive, got %s", v.MaxDuration)
	}
	if v.RejoinGrace <= 0 {
		p.addf("video.rejoin_grace must be positive, got %s", v.RejoinGrace)
	}
	if v.RelayOnly && !t.Enabled && !hasRelayURL(t.ExternalURLs) {
		p.addf("video.relay_only needs a TURN relay: set turn.enabled to true, or give a turn: or turns: URI in turn.external_urls")
	}

	if c.CRM.WebhookURL != "" {
		checkURL(&p, "crm.webhook_url", c.CRM.WebhookURL, false)
		required(&p, "when crm.webhook_url is set", "crm.secret", c.CRM.Secret)
	}
	if c.CRM.MaxAge <= 0 {
		p.addf("crm.max_age must be positive, got %s", c.CRM.MaxAge)
	}
	if c.CRM.Timeout <= 0 {
		p.addf("crm.timeout must be positive, got %s", c.CRM.Timeout)
	}

	switch c.Log.Format {
	case LogJSON, LogConsole:
	default:
		p.addf("log.format %q is not supported: use %q or %q", c.Log.Format, LogJSON, LogConsole)
	}
	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled":
	default:
		p.addf("log.level %q is not supported: use trace, debug, info, warn, error, fatal, panic or disabled", c.Log.Level)
	}

	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// ValidateDatabase checks only the database section: what the migrate and
// user commands need.
func (c *Config) ValidateDatabase() error {
	c.normalise()
	var p problems
	switch c.Database.Driver {
	case DriverSQLite, DriverMySQL:
	default:
		p.addf("database.driver %q is not supported: use %q or %q", c.Database.Driver, DriverSQLite, DriverMySQL)
	}
	if c.Database.DSN == "" {
		p.addf("database.dsn is required")
	}
	if c.Database.BatchMaxRows <= 0 {
		p.addf("database.batch_max_rows must be positive, got %d", c.Database.BatchMaxRows)
	}
	if c.Database.BatchMaxWait < 0 {
		p.addf("database.batch_max_wait must not be negative, got %s", c.Database.BatchMaxWait)
	}
	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

func (c *Config) normalise() {
	c.Database.Driver = strings.ToLower(strings.TrimSpace(c.Database.Driver))
	c.Log.Format = strings.ToLower(strings.TrimSpace(c.Log.Format))
	c.Log.Level = strings.ToLower(strings.TrimSpace(c.Log.Level))
	if c.Log.Format == "" {
		c.Log.Format = LogJSON
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	c.HTTP.PublicURL = strings.TrimRight(strings.TrimSpace(c.HTTP.PublicURL), "/")
	c.WhatsApp.APIBase = strings.TrimRight(strings.TrimSpace(c.WhatsApp.APIBase), "/")
	c.SMS.APIBase = strings.TrimRight(strings.TrimSpace(c.SMS.APIBase), "/")
	c.Dialler.APIBase = strings.TrimRight(strings.TrimSpace(c.Dialler.APIBase), "/")
	c.Dialler.FirstLeg = strings.ToLower(strings.TrimSpace(c.Dialler.FirstLeg))
	if c.Dialler.FirstLeg == "" {
		c.Dialler.FirstLeg = FirstLegContact
	}
	c.Dialler.RecordingsDir = strings.TrimSpace(c.Dialler.RecordingsDir)
	if c.TURN.ExternalURLs != nil {
		urls := make([]string, 0, len(c.TURN.ExternalURLs))
		for _, u := range c.TURN.ExternalURLs {
			if u = strings.TrimSpace(u); u != "" {
				urls = append(urls, u)
			}
		}
		c.TURN.ExternalURLs = urls
	}
}

// fillSandbox completes missing secrets with the Sandbox* values.
func (c *Config) fillSandbox() {
	fill := func(key string, v *string, sandbox string) {
		if *v == "" {
			*v = sandbox
			c.sandboxFilled = append(c.sandboxFilled, key)
		}
	}
	if c.HTTP.PublicURL == "" {
		if u, ok := DerivePublicURL(c.HTTP.Addr); ok {
			c.HTTP.PublicURL = u
			c.sandboxFilled = append(c.sandboxFilled, "http.public_url")
		}
	}
	fill("auth.token_secret", &c.Auth.TokenSecret, SandboxTokenSecret)
	fill("auth.admin_token", &c.Auth.AdminToken, SandboxAdminToken)
	if c.WhatsApp.APIBase == "" {
		w := &c.WhatsApp
		fill("whatsapp.phone_number_id", &w.PhoneNumberID, SandboxPhoneNumberID)
		fill("whatsapp.access_token", &w.AccessToken, SandboxWhatsAppToken)
		fill("whatsapp.app_secret", &w.AppSecret, SandboxWhatsAppSecret)
		fill("whatsapp.verify_token", &w.VerifyToken, SandboxVerifyToken)
		fill("whatsapp.business_number", &w.BusinessNumber, SandboxBusinessNumber)
	}
	if c.SMS.APIBase == "" {
		s := &c.SMS
		fill("sms.account_sid", &s.AccountSID, SandboxSMSAccountSID)
		fill("sms.auth_token", &s.AuthToken, SandboxSMSAuthToken)
		fill("sms.from", &s.From, SandboxBusinessNumber)
	}
	if c.Dialler.APIBase == "" {
		d := &c.Dialler
		fill("dialler.account_sid", &d.AccountSID, SandboxDiallerSID)
		fill("dialler.api_key", &d.APIKey, SandboxDiallerAPIKey)
		fill("dialler.api_token", &d.APIToken, SandboxDiallerAPIToken)
		fill("dialler.caller_id", &d.CallerID, SandboxBusinessNumber)
		fill("dialler.callback_token", &d.CallbackToken, SandboxDiallerCallback)
	}
	fill("turn.auth_secret", &c.TURN.AuthSecret, SandboxTURNSecret)
	fill("crm.secret", &c.CRM.Secret, SandboxCRMSecret)
}

// DerivePublicURL turns a listen address into a local base URL: http:// +
// host:port, a wildcard or empty host becoming 127.0.0.1. It fails for an
// unparsable address or port 0; give it the bound address instead.
func DerivePublicURL(addr string) (string, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || port == "0" {
		return "", false
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), true
}

func required(p *problems, when, key, v string) {
	if strings.TrimSpace(v) == "" {
		p.addf("%s is required %s (environment: %s)", key, when, EnvName(key))
	}
}

func checkHostPort(p *problems, key, v string) {
	if v == "" {
		p.addf("%s is required: host:port, e.g. 127.0.0.1:8080", key)
		return
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.addf("%s %q is not host:port (e.g. 127.0.0.1:8080 or :8080)", key, v)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.addf("%s %q has a bad port %q: use a number from 0 to 65535", key, v, port)
	}
}

// checkURL accepts absolute http(s) URLs; a base URL (public_url) must have
// no query or fragment.
func checkURL(p *problems, key, v string, base bool) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.addf("%s %q is not an absolute http:// or https:// URL", key, v)
		return
	}
	if base && (u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		p.addf("%s %q must be a plain base URL (no user, query or fragment)", key, v)
	}
}

func isWildcard(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// checkICEURL accepts the URIs a browser takes in RTCIceServer.urls:
// stun:host[:port], turn:host[:port][?transport=udp|tcp] and
// turns:host[:port][?transport=tcp], an IPv6 host in brackets.
func checkICEURL(v string) error {
	scheme, rest, ok := strings.Cut(v, ":")
	scheme = strings.ToLower(scheme)
	if !ok || scheme != "turn" && scheme != "turns" && scheme != "stun" {
		return errors.New("must start with turn:, turns: or stun:")
	}
	if strings.HasPrefix(rest, "//") {
		return fmt.Errorf("must not have '//' after %s: (write %s:host:port)", scheme, scheme)
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	var host, port string
	hasPort := false
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return errors.New("has an unclosed '[' in its host")
		}
		host = hostport[1:end]
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return fmt.Errorf("has a bad IPv6 address %q", host)
		}
		after := hostport[end+1:]
		if after != "" && !strings.HasPrefix(after, ":") {
			return fmt.Errorf("has %q after its host: write :port", after)
		}
		port, hasPort = strings.CutPrefix(after, ":")
	} else {
		if strings.Count(hostport, ":") > 1 {
			return errors.New("has an IPv6 address without brackets: write turn:[2001:db8::1]:3478")
		}
		host, port, hasPort = strings.Cut(hostport, ":")
		if !validHostName(host) {
			return errors.New("has no valid host name or IPv4 address")
		}
	}
	if hasPort {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("has a bad port %q: use a number from 1 to 65535", port)
		}
	}
	if hasQuery {
		switch {
		case scheme == "stun":
			return errors.New("must have no query: stun: takes no transport")
		case query == "transport=tcp", query == "transport=udp" && scheme == "turn":
		default:
			return fmt.Errorf("has an unsupported query %q: use ?transport=udp or ?transport=tcp (turns: only tcp)", query)
		}
	}
	return nil
}

// validHostName accepts a DNS name or IPv4 address: letters, digits, '-',
// '_' and '.'.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// hasRelayURL reports whether urls holds a turn: or turns: URI.
func hasRelayURL(urls []string) bool {
	for _, u := range urls {
		l := strings.ToLower(u)
		if strings.HasPrefix(l, "turn:") || strings.HasPrefix(l, "turns:") {
			return true
		}
	}
	return false
}

// checkE164 accepts '+' followed by 7 to 15 digits, the first not 0.
func checkE164(p *problems, key, v string) {
	if v == "" || IsE164(v) {
		return
	}
	hint := ""
	if v[0] != '+' && IsE164("+"+v) {
		hint = fmt.Sprintf("; did you mean \"+%s\"?", v)
	}
	p.addf("%s %q is not an E.164 number ('+' then 7 to 15 digits, e.g. +919800000001)%s", key, v, hint)
}

// IsE164 accepts '+' followed by 7 to 15 digits, the first not 0.
func IsE164(v string) bool {
	if len(v) < 8 || len(v) > 16 || v[0] != '+' || v[1] == '0' {
		return false
	}
	for i := 1; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}
