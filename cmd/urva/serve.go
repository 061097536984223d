package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/metric"

	"urva/actors"
	"urva/internal/config"
	"urva/internal/gcpace"
	"urva/internal/metrics"
	"urva/persistence"
	"urva/transport/auth"
	"urva/transport/crm"
	"urva/transport/exotel"
	"urva/transport/httpapi"
	"urva/transport/sandbox"
	"urva/transport/turn"
	"urva/transport/twilio"
	"urva/transport/whatsapp"
)

// shutdownGrace bounds a graceful stop.
const shutdownGrace = 15 * time.Second

// serve runs the server with a validated configuration until ctx is
// cancelled: it wires the store, the actor system and the HTTP server, and
// returns once they have shut down.
func serve(ctx context.Context, cfg *config.Config, log zerolog.Logger) error {
	if p := gcpace.Start(cfg.Runtime.GCInterval, uint64(cfg.Runtime.GCHeadroomMB)<<20); p != nil {
		defer p.Stop()
		log.Info().Dur("gc_interval", cfg.Runtime.GCInterval).Int("gc_headroom_mb", cfg.Runtime.GCHeadroomMB).Msg("collector paced while busy")
	}
	// CRM sync: the configured webhook, or the in-process sandbox CRM in
	// sandbox mode; off (no outbox rows) otherwise. A commit that writes
	// outbox rows wakes the CRM sync actor, which starts after the store.
	crmOn := cfg.CRM.WebhookURL != "" || cfg.Sandbox.Enabled
	var running atomic.Pointer[actors.System]
	// Metrics (GET /metrics): the layers expose hooks and read functions,
	// connected here (see internal/metrics).
	m, err := metrics.New()
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer m.Shutdown(context.Background())
	store, err := openStore(ctx, cfg, log, func(pc *persistence.Config) {
		pc.OnBatch = m.Batch
		pc.Outbox = crmOn
		pc.OutboxMaxAge = cfg.CRM.MaxAge
		pc.OnOutbox = func() {
			if sys := running.Load(); sys != nil {
				sys.WakeCRM()
			}
		}
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error().Err(err).Msg("close store")
		}
	}()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if cs, ok := store.(persistence.CommitStatsReader); ok {
		m.WatchCommits(cs.CommitStats)
	}
	if cfg.Sandbox.Enabled {
		if err := seedSandboxUsers(ctx, store, log); err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTP.Addr, err)
	}
	publicURL := strings.TrimRight(cfg.HTTP.PublicURL, "/")
	if publicURL == "" {
		publicURL, _ = config.DerivePublicURL(ln.Addr().String())
	}

	// WhatsApp: the real Cloud API, or the in-process sandbox when no api_base is set.
	var sbWhatsApp *sandbox.WhatsApp
	waBase := cfg.WhatsApp.APIBase
	if waBase == "" && cfg.Sandbox.Enabled {
		sbWhatsApp = sandbox.NewWhatsApp(sandbox.WhatsAppOptions{
			AppSecret:     cfg.WhatsApp.AppSecret,
			AccessToken:   cfg.WhatsApp.AccessToken,
			PhoneNumberID: cfg.WhatsApp.PhoneNumberID,
			DisplayNumber: strings.TrimPrefix(cfg.WhatsApp.BusinessNumber, "+"),
			WebhookURL:    publicURL + "/webhooks/whatsapp",
			AutoRead:      true,
			Log:           log.With().Str("component", "sandbox_whatsapp").Logger(),
		})
		defer sbWhatsApp.Close()
		waBase = publicURL + "/sandbox/graph/v23.0"
	}
	waClient := whatsapp.NewClient(whatsapp.ClientOptions{
		APIBase:       waBase,
		PhoneNumberID: cfg.WhatsApp.PhoneNumberID,
		AccessToken:   cfg.WhatsApp.AccessToken,
		Timeout:       actors.DefaultTuning().ProviderTimeout,
	})
	business, err := actors.NormalizePhone(cfg.WhatsApp.BusinessNumber)
	if err != nil {
		return fmt.Errorf("whatsapp.business_number: %w", err)
	}

	providers := map[string]actors.ProviderClient{persistence.ChannelWhatsApp: waClient}
	businessNumbers := map[string]string{persistence.ChannelWhatsApp: business}
	media := map[string]httpapi.MediaFetcher{persistence.ChannelWhatsApp: waClient}

	// SMS: real Twilio when sms.api_base is set, the sandbox in sandbox mode, else off.
	var sbTwilio *sandbox.Twilio
	smsBase := cfg.SMS.APIBase
	if smsBase == "" && cfg.Sandbox.Enabled {
		sbTwilio = sandbox.NewTwilio(sandbox.TwilioOptions{
			AccountSID: cfg.SMS.AccountSID,
			AuthToken:  cfg.SMS.AuthToken,
			Number:     cfg.SMS.From,
			InboundURL: publicURL + "/webhooks/sms",
			PublicURL:  publicURL,
			Log:        log.With().Str("component", "sandbox_twilio").Logger(),
		})
		defer sbTwilio.Close()
		smsBase = publicURL + "/sandbox/twilio"
	}
	if smsBase != "" {
		// A number in E.164 as Twilio writes it; a short code or an
		// alphanumeric sender stays as it is.
		from := twilio.NormalizeNumber(cfg.SMS.From)
		smsClient := twilio.NewClient(twilio.ClientOptions{
			APIBase:        smsBase,
			AccountSID:     cfg.SMS.AccountSID,
			AuthToken:      cfg.SMS.AuthToken,
			From:           from,
			StatusCallback: publicURL + "/webhooks/sms/status",
			Timeout:        actors.DefaultTuning().ProviderTimeout,
		})
		providers[persistence.ChannelSMS], media[persistence.ChannelSMS] = smsClient, smsClient
		businessNumbers[persistence.ChannelSMS] = from
	}

	// Calls: a real dialler when dialler.api_base is set, the sandbox in
	// sandbox mode, else off.
	var callOpts *actors.CallOptions
	var sbDialler *sandbox.Dialler
	var diallerClient *exotel.Client
	diallerBase := cfg.Dialler.APIBase
	if diallerBase == "" && cfg.Sandbox.Enabled {
		// The fake reaches the server on the address it bound, so that its
		// callbacks arrive even when public_url is a proxy in front of it.
		localURL, _ := config.DerivePublicURL(ln.Addr().String())
		sbDialler = sandbox.NewDialler(sandbox.DiallerOptions{
			AccountSID: cfg.Dialler.AccountSID,
			APIKey:     cfg.Dialler.APIKey,
			APIToken:   cfg.Dialler.APIToken,
			CallerID:   cfg.Dialler.CallerID,
			PublicURL:  publicURL,
			LocalURL:   localURL,
			Log:        log.With().Str("component", "sandbox_dialler").Logger(),
		})
		defer sbDialler.Close()
		diallerBase = publicURL + sandbox.DiallerPrefix
	}
	if diallerBase != "" {
		diallerClient = exotel.NewClient(exotel.ClientOptions{
			APIBase:    diallerBase,
			AccountSID: cfg.Dialler.AccountSID,
			APIKey:     cfg.Dialler.APIKey,
			APIToken:   cfg.Dialler.APIToken,
			Timeout:    actors.DefaultTuning().ProviderTimeout,
		})
		defer diallerClient.CloseIdleConnections()
		firstLeg := persistence.CallLegContact
		if cfg.Dialler.FirstLeg == config.FirstLegRM {
			firstLeg = persistence.CallLegRM
		}
		callOpts = &actors.CallOptions{
			Dialler:        &exotel.Dialler{Client: diallerClient},
			CallerID:       cfg.Dialler.CallerID,
			FirstLeg:       firstLeg,
			CallbackURL:    publicURL + "/webhooks/dialler/" + cfg.Dialler.CallbackToken,
			ReconcileAfter: cfg.Dialler.ReconcileAfter,
			Record:         true,
			RecordingsDir:  cfg.Dialler.RecordingsDir,
		}
	}

	var crmOpts *actors.CRMOptions
	var sbCRM *sandbox.CRM
	var outbox persistence.Outbox
	if crmOn {
		outbox = store.(persistence.Outbox)
		m.WatchOutbox(outbox.OutboxBacklog)
		crmURL := cfg.CRM.WebhookURL
		if crmURL == "" {
			sbCRM = sandbox.NewCRM(sandbox.CRMOptions{Secret: cfg.CRM.Secret,
				Log: log.With().Str("component", "sandbox_crm").Logger()})
			crmURL = publicURL + "/sandbox/crm/webhook"
		}
		crmOpts = &actors.CRMOptions{
			Sender: crm.OutboxSender{Adapter: crm.NewWebhook(crm.WebhookOptions{URL: crmURL, Secret: cfg.CRM.Secret, Timeout: cfg.CRM.Timeout})},
			Outbox: outbox,
			MaxAge: cfg.CRM.MaxAge,
		}
	}

	// The sandbox customer phone plays contacts on the sandbox providers.
	var sbPhone *sandbox.Phone
	if sbWhatsApp != nil || sbTwilio != nil {
		sbPhone = sandbox.NewPhone(sandbox.PhoneOptions{WhatsApp: sbWhatsApp, Twilio: sbTwilio,
			Log: log.With().Str("component", "sandbox_phone").Logger()})
	}

	// Video: the built-in TURN server (or an external one sharing the
	// secret), signed links, and the ICE servers handed to the call page.
	iceURIs := cfg.TURN.ExternalURLs
	if cfg.TURN.Enabled {
		ts, err := turn.Start(turn.Options{
			Listen:                cfg.TURN.Listen,
			PublicIP:              cfg.TURN.PublicIP,
			Realm:                 cfg.TURN.Realm,
			Secrets:               cfg.TURN.Secrets(),
			MaxAllocationsPerUser: cfg.TURN.MaxAllocationsPerUser,
			UDPListeners:          cfg.TURN.UDPListenerCount(),
			GoroutineRelay:        !cfg.TURN.RelayLoop,
			RelayPorts:            turn.PortRange{Min: uint16(cfg.TURN.RelayPortMin), Max: uint16(cfg.TURN.RelayPortMax)},
			Log:                   log.With().Str("component", "turn").Logger(),
		})
		if err != nil {
			ln.Close()
			return err
		}
		defer ts.Close()
		m.WatchTURN(ts.Stats)
		iceURIs = turn.URIs(turnHost(cfg.TURN, ts.Addr(), publicURL), ts.Addr().(*net.UDPAddr).Port)
	}
	links := auth.NewLinks([]byte(cfg.Auth.TokenSecret))
	videoOpts := &actors.VideoOptions{
		LinkTTL:     cfg.Video.LinkTTL,
		MaxDuration: cfg.Video.MaxDuration,
		RejoinGrace: cfg.Video.RejoinGrace,
		Link: func(id int64, expires time.Time) string {
			return publicURL + "/v/" + strconv.FormatInt(id, 10) + "?t=" + links.Sign(id, expires)
		},
	}
	iceServers := func(user string) turn.ICEConfig {
		return turn.NewICEConfig(cfg.TURN.AuthSecret, user, cfg.TURN.CredentialTTL, time.Now(), iceURIs, cfg.Video.RelayOnly)
	}

	sys, err := actors.Start(ctx, actors.Options{
		Store:           store,
		Providers:       providers,
		BusinessNumbers: businessNumbers,
		Tuning:          actors.DefaultTuning(),
		Log:             log,
		CRM:             crmOpts,
		Calls:           callOpts,
		Video:           videoOpts,
		MeterProvider:   actorMeter(cfg, m),
		OnSend:          m.OutboundSend,
		OnSlowClient:    m.SlowClient,
	})
	if err != nil {
		ln.Close()
		return err
	}
	m.WatchActors(sys.ActorStats)
	m.WatchWorkers(sys.WorkerStats)
	running.Store(sys)
	sys.WakeCRM() // events left by the previous run

	// The callback token is only honoured while calls are on.
	diallerToken := ""
	if callOpts != nil {
		diallerToken = cfg.Dialler.CallbackToken
	}
	srv := httpapi.New(httpapi.Options{
		Addr:         cfg.HTTP.Addr,
		PublicURL:    publicURL,
		MaxBodyBytes: cfg.HTTP.MaxBodyBytes,
		Socket: httpapi.SocketOptions{
			PingInterval: cfg.HTTP.SocketPingInterval,
			ReadTimeout:  cfg.HTTP.SocketReadTimeout,
		},
		Log:                  log,
		System:               sys,
		Store:                store,
		Tokens:               auth.NewTokens([]byte(cfg.Auth.TokenSecret), cfg.Auth.TokenTTL),
		AdminToken:           cfg.Auth.AdminToken,
		WhatsAppAppSecret:    cfg.WhatsApp.AppSecret,
		WhatsAppVerifyToken:  cfg.WhatsApp.VerifyToken,
		SMSAuthToken:         cfg.SMS.AuthToken,
		SandboxWhatsApp:      sbWhatsApp,
		SandboxTwilio:        sbTwilio,
		SandboxCRM:           sbCRM,
		SandboxDialler:       sbDialler,
		DiallerCallbackToken: diallerToken,
		Outbox:               outbox,
		CRMWake:              sys.WakeCRM,
		CRMMaxAge:            cfg.CRM.MaxAge,
		Links:                links,
		ICEServers:           iceServers,
		Templates:            templates(cfg.WhatsApp.Templates),
		SandboxPhone:         sbPhone,
		Media:                media,
		Metrics:              m,
	})
	if sbPhone != nil {
		defer sbPhone.Close()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info().Str("addr", ln.Addr().String()).Str("public_url", publicURL).
		Str("database", cfg.Database.Driver).Bool("sandbox", cfg.Sandbox.Enabled).Bool("calls", callOpts != nil).
		Strs("turn", iceURIs).Msg("listening")

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		if err != nil {
			return fmt.Errorf("http server: %w", err)
		}
	}
	log.Info().Msg("shutting down: finishing in-flight requests and batches")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("http shutdown")
	}
	if err := sys.Shutdown(sctx); err != nil {
		log.Warn().Err(err).Msg("actor shutdown")
	}
	return nil // the deferred store.Close commits what is queued
}

// seedSandboxUsers creates the demo RM and supervisor in an empty sandbox database.
func seedSandboxUsers(ctx context.Context, store persistence.Store, log zerolog.Logger) error {
	n, err := store.CountRMs(ctx)
	if err != nil {
		return fmt.Errorf("count users: %w", err)
	}
	if n > 0 {
		return nil
	}
	for _, u := range []struct{ name, role, phone string }{
		{"demo", persistence.RoleRM, "+919800000101"},
		{"admin", persistence.RoleSupervisor, ""},
	} {
		hash, err := auth.HashPassword(u.name)
		if err != nil {
			return err
		}
		_, err = store.CreateRM(ctx, &persistence.RM{Username: u.name, Name: u.name, Role: u.role, Phone: u.phone, PasswordHash: hash})
		if err != nil && !errors.Is(err, persistence.ErrExists) {
			return fmt.Errorf("create sandbox user %s: %w", u.name, err)
		}
	}
	log.Warn().Msg("sandbox: created demo users demo/demo (rm) and admin/admin (supervisor); never outside the sandbox")
	return nil
}

// turnHost is the host clients reach the built-in TURN server at:
// turn.public_ip, else the listen host when it is a specific address, else
// the host of the public URL.
func turnHost(t config.TURN, bound net.Addr, publicURL string) string {
	if t.PublicIP != "" {
		return t.PublicIP
	}
	if ua, ok := bound.(*net.UDPAddr); ok && !ua.IP.IsUnspecified() {
		return ua.IP.String()
	}
	if u, err := url.Parse(publicURL); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return "127.0.0.1"
}

// templates turns the configured WhatsApp templates into the console's.
func templates(list []config.Template) []httpapi.Template {
	out := make([]httpapi.Template, len(list))
	for i, t := range list {
		out[i] = httpapi.Template{Name: t.Name, Language: t.Language, Body: t.Body}
	}
	return out
}

// actorMeter is where Proto.Actor's own metrics go: the metrics registry
// when metrics.actor_runtime is set, nowhere otherwise.
func actorMeter(cfg *config.Config, m *metrics.Metrics) metric.MeterProvider {
	if !cfg.Metrics.ActorRuntime {
		return nil
	}
	return m.MeterProvider()
}
