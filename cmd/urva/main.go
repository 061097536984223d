// Command urva is the Urva Connect server and its operator tools:
//
//	urva serve   --config FILE [--console-log]   run the server
//	urva migrate --config FILE                   apply database migrations and exit
//	urva user add --config FILE --username U --role rm|supervisor [--phone +91...] [--name NAME]
//	                                             create an RM; the password is read from stdin
//	urva top     --addr URL --admin-token T [--interval 1s] [--count N] [--top 10]
//	                                             watch the server's actors
//	urva version                                 print the version
//
// SIGINT and SIGTERM cancel the running command's context; a second signal
// kills the process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"urva/internal/config"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal gets the default behaviour: exit now
	}()
	zerolog.TimeFieldFormat = time.RFC3339Nano
	code := run(ctx, os.Args[1:], os.Environ(), os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad command line or input
)

// usageError is a mistake in the command line or the input: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

const usageText = `Usage:
  urva serve   --config FILE [--console-log]   run the server
  urva migrate --config FILE                   apply database migrations and exit
  urva user add --config FILE --username U --role rm|supervisor [--phone +91...] [--name NAME]
                                               create an RM; the password is one line on standard input
  urva top     [--addr http://127.0.0.1:8080] [--admin-token T] [--interval 1s] [--count N] [--top 10]
                                               watch the server's actors (live, mailboxes, messages per
                                               second, latency); the token defaults to $URVA_ADMIN_TOKEN
  urva version                                 print the version

--config defaults to config.yaml. Every configuration key can be overridden by
an environment variable (http.addr -> URVA_HTTP_ADDR); see docs/configuration.md.
`

// run executes one command line and returns the process exit code.
func run(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version)
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	case "serve":
		err = cmdServe(ctx, args[1:], environ, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], environ, stdout, stderr)
	case "user":
		err = cmdUser(ctx, args[1:], environ, stdin, stdout, stderr)
	case "top":
		err = cmdTop(ctx, args[1:], environ, stdout, stderr)
	default:
		err = usagef("unknown command %q (commands: serve, migrate, user add, top, version)", args[0])
	}
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "urva: %v\n", err)
		return exitUsage
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return exitOK // stopped by a signal
	default:
		fmt.Fprintf(stderr, "urva: %v\n", err)
		return exitError
	}
}

// newFlagSet returns a flag set that reports to stderr and returns errors.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("urva "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and rejects positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func cmdServe(ctx context.Context, args, environ []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	path := fs.String("config", "config.yaml", "configuration file")
	console := fs.Bool("console-log", false, "human-readable log lines instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path, environ)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(cfg.Log, *console, stderr)
	log.Info().Str("version", version).Str("config", *path).Bool("sandbox", cfg.Sandbox.Enabled).
		Str("database", cfg.Database.Driver).Msg("starting")
	if filled := cfg.SandboxFilled(); len(filled) > 0 {
		log.Warn().Strs("keys", filled).
			Msg("sandbox mode: these keys use the published sandbox values (docs/configuration.md); never expose this server")
	}
	if err := serve(ctx, cfg, log); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// loadDatabaseConfig loads the configuration and checks only what the
// database commands need.
func loadDatabaseConfig(path string, environ []string) (*config.Config, error) {
	cfg, err := config.Load(path, environ)
	if err != nil {
		return nil, err
	}
	if err := cfg.ValidateDatabase(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// newLogger builds the process logger: JSON lines by default, console lines
// when the configuration or the --console-log flag asks for them.
func newLogger(lc config.Log, console bool, w io.Writer) zerolog.Logger {
	out := w
	if console || lc.Format == config.LogConsole {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000", NoColor: !isTerminal(w)}
	}
	level, err := zerolog.ParseLevel(lc.Level)
	if err != nil || lc.Level == "" {
		level = zerolog.InfoLevel
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// isTerminal reports whether w is a character device (colours are for people).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
