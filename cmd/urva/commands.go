package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/rs/zerolog"

	"urva/internal/config"
	"urva/persistence"
	"urva/transport/auth"
)

// openStore opens the configured database; adjust, when given, completes
// the store's configuration (the server turns the CRM outbox on).
func openStore(ctx context.Context, cfg *config.Config, log zerolog.Logger, adjust ...func(*persistence.Config)) (persistence.Store, error) {
	pc := persistence.Config{
		Driver:       cfg.Database.Driver,
		DSN:          cfg.Database.DSN,
		BatchMaxRows: cfg.Database.BatchMaxRows,
		BatchMaxWait: cfg.Database.BatchMaxWait,
	}
	for _, f := range adjust {
		f(&pc)
	}
	store, err := persistence.Open(ctx, pc, log)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", cfg.Database.Driver, err)
	}
	return store, nil
}

func cmdMigrate(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", stderr)
	path := fs.String("config", "config.yaml", "configuration file")
	console := fs.Bool("console-log", false, "human-readable log lines instead of JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadDatabaseConfig(*path, environ)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, *console, stderr)
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stdout, "migrations applied (%s)\n", cfg.Database.Driver)
	return nil
}

func cmdUser(ctx context.Context, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "add" {
		return usagef("user: the only subcommand is add: urva user add --config FILE --username U --role rm|supervisor [--phone +91...] [--name NAME]")
	}
	fs := newFlagSet("user add", stderr)
	path := fs.String("config", "config.yaml", "configuration file")
	username := fs.String("username", "", "login name (required)")
	role := fs.String("role", "", "rm or supervisor (required)")
	phone := fs.String("phone", "", "the RM's phone number in E.164, e.g. +919800000002 (optional)")
	name := fs.String("name", "", "display name (optional)")
	console := fs.Bool("console-log", false, "human-readable log lines instead of JSON")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	rm := &persistence.RM{Username: *username, Role: *role, Phone: *phone, Name: strings.TrimSpace(*name)}
	if err := checkNewRM(rm); err != nil {
		return err
	}
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(stderr, "Password (shown as typed): ")
	}
	pw, err := readPassword(stdin)
	if err != nil {
		return err
	}
	cfg, err := loadDatabaseConfig(*path, environ)
	if err != nil {
		return err
	}
	if rm.PasswordHash, err = auth.HashPassword(pw); err != nil {
		return usagef("user add: %v", err)
	}
	log := newLogger(cfg.Log, *console, stderr)
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	id, err := store.CreateRM(ctx, rm)
	if errors.Is(err, persistence.ErrExists) {
		return fmt.Errorf("user add: user %q already exists", rm.Username)
	}
	if err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	fmt.Fprintf(stdout, "created %s %q (id %d)\n", rm.Role, rm.Username, id)
	return nil
}

// checkNewRM validates what the command line says about a new RM.
func checkNewRM(rm *persistence.RM) error {
	var problems []string
	switch {
	case rm.Username == "":
		problems = append(problems, "--username is required")
	case len(rm.Username) > 64:
		problems = append(problems, "--username is longer than 64 bytes")
	case strings.IndexFunc(rm.Username, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		problems = append(problems, fmt.Sprintf("--username %q must not contain spaces or control characters", rm.Username))
	}
	switch rm.Role {
	case persistence.RoleRM, persistence.RoleSupervisor:
	case "":
		problems = append(problems, "--role is required: rm or supervisor")
	default:
		problems = append(problems, fmt.Sprintf("--role %q is not valid: use rm or supervisor", rm.Role))
	}
	if rm.Phone != "" && !config.IsE164(rm.Phone) {
		problems = append(problems, fmt.Sprintf("--phone %q is not an E.164 number ('+' then 7 to 15 digits, e.g. +919800000002)", rm.Phone))
	}
	if len(rm.Name) > 200 {
		problems = append(problems, "--name is longer than 200 bytes")
	}
	if len(problems) > 0 {
		return usagef("user add: %s", strings.Join(problems, "; "))
	}
	return nil
}

// readPassword reads one line from r without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", usagef("user add: no password: write it as one line on standard input, e.g. printf '%%s\\n' \"$PASSWORD\" | urva user add ...")
	}
	return line, nil
}
