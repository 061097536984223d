package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"urva/internal/config"
	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/auth"
)

// cli runs one command line in-process with an empty environment.
type cliResult struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	return cliEnv(t, nil, stdin, args...)
}

// cliEnv is cli with the given URVA_* environment.
func cliEnv(t *testing.T, environ []string, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, environ, strings.NewReader(stdin), &out, &errOut)
	return cliResult{code: code, stdout: out.String(), stderr: errOut.String()}
}

// sqliteConfig writes a configuration file pointing at a fresh SQLite file.
func sqliteConfig(t *testing.T) (path, dsn string) {
	t.Helper()
	dir := t.TempDir()
	dsn = filepath.Join(dir, "db", "urva.db")
	path = filepath.Join(dir, "config.yaml")
	body := "database:\n  driver: sqlite\n  dsn: " + dsn + "\nlog:\n  level: warn\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dsn
}

func TestVersion(t *testing.T) {
	r := cli(t, "", "version")
	if r.code != exitOK || r.stdout != version+"\n" {
		t.Fatalf("got %+v", r)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"user"}, exitUsage, "the only subcommand is add"},
		{[]string{"user", "delete"}, exitUsage, "the only subcommand is add"},
		{[]string{"migrate", "--nope"}, exitUsage, "flag provided but not defined: -nope"},
		{[]string{"migrate", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"help"}, exitOK, ""},
	}
	for _, tt := range tests {
		r := cli(t, "", tt.args...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: got %+v, want code %d and %q", tt.args, r, tt.code, tt.want)
		}
	}
}

func TestMigrate(t *testing.T) {
	path, dsn := sqliteConfig(t)
	for i := range 2 { // a second run finds nothing to do
		r := cli(t, "", "migrate", "--config", path)
		if r.code != exitOK {
			t.Fatalf("run %d: %+v", i, r)
		}
	}
	if _, err := os.Stat(dsn); err != nil {
		t.Fatalf("no database file: %v", err)
	}
}

func TestMigrateBadConfig(t *testing.T) {
	r := cli(t, "", "migrate", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if r.code != exitError || !strings.Contains(r.stderr, "missing.yaml") {
		t.Fatalf("got %+v", r)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("database:\n  driver: oracle\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = cli(t, "", "migrate", "--config", path)
	if r.code != exitError || !strings.Contains(r.stderr, `database.driver "oracle" is not supported: use "sqlite" or "mysql"`) {
		t.Fatalf("got %+v", r)
	}
}

func TestUserAdd(t *testing.T) {
	path, dsn := sqliteConfig(t)
	r := cli(t, "s3cret pw\n", "user", "add", "--config", path, "--username", "meera", "--role", "rm",
		"--phone", "+919800000002", "--name", "Meera Iyer")
	if r.code != exitOK || !strings.Contains(r.stdout, `created rm "meera"`) {
		t.Fatalf("first add: %+v", r)
	}
	r = cli(t, "boss\r\n", "user", "add", "--config", path, "--username", "ravi", "--role", "supervisor")
	if r.code != exitOK {
		t.Fatalf("supervisor: %+v", r)
	}

	r = cli(t, "other\n", "user", "add", "--config", path, "--username", "meera", "--role", "supervisor")
	if r.code != exitError || !strings.Contains(r.stderr, `user "meera" already exists`) {
		t.Fatalf("duplicate: %+v", r)
	}

	store, err := persistence.Open(context.Background(), persistence.Config{Driver: "sqlite", DSN: dsn}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rm, err := store.RMByUsername(context.Background(), "meera")
	if err != nil {
		t.Fatal(err)
	}
	if rm.Role != persistence.RoleRM || rm.Phone != "+919800000002" || rm.Name != "Meera Iyer" {
		t.Errorf("stored %+v", rm)
	}
	if !auth.CheckPassword(rm.PasswordHash, "s3cret pw") || auth.CheckPassword(rm.PasswordHash, "other") {
		t.Error("stored hash does not match the password given first")
	}
	boss, err := store.RMByUsername(context.Background(), "ravi")
	if err != nil {
		t.Fatal(err)
	}
	if boss.Role != persistence.RoleSupervisor || !auth.CheckPassword(boss.PasswordHash, "boss") {
		t.Errorf("stored %+v (the CRLF line ending must be trimmed)", boss)
	}
}

// The same command against MySQL, configured through the environment.
func TestUserAddMySQL(t *testing.T) {
	path, _ := sqliteConfig(t)
	env := []string{"URVA_DATABASE_DRIVER=mysql", "URVA_DATABASE_DSN=" + storetest.DSNForMySQL(t)}
	args := []string{"user", "add", "--config", path, "--username", "asha", "--role", "supervisor"}
	if r := cliEnv(t, env, "pw\n", args...); r.code != exitOK {
		t.Fatalf("first add: %+v", r)
	}
	if r := cliEnv(t, env, "pw\n", args...); r.code != exitError || !strings.Contains(r.stderr, `user "asha" already exists`) {
		t.Fatalf("duplicate: %+v", r)
	}
}

func TestUserAddBadInput(t *testing.T) {
	path, dsn := sqliteConfig(t)
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"no username", "pw\n", []string{"--role", "rm"}, "--username is required"},
		{"spaces in username", "pw\n", []string{"--username", "a b", "--role", "rm"}, "must not contain spaces"},
		{"no role", "pw\n", []string{"--username", "u"}, "--role is required: rm or supervisor"},
		{"bad role", "pw\n", []string{"--username", "u", "--role", "admin"}, `--role "admin" is not valid: use rm or supervisor`},
		{"bad phone", "pw\n", []string{"--username", "u", "--role", "rm", "--phone", "98000 00002"}, "is not an E.164 number"},
		{"phone without plus", "pw\n", []string{"--username", "u", "--role", "rm", "--phone", "919800000002"}, "is not an E.164 number"},
		{"empty password", "\n", []string{"--username", "u", "--role", "rm"}, "no password"},
		{"no stdin", "", []string{"--username", "u", "--role", "rm"}, "no password"},
		{"long password", strings.Repeat("x", 73) + "\n", []string{"--username", "u", "--role", "rm"}, "longer than 72 bytes"},
		{"two problems", "pw\n", []string{"--role", "boss"}, "--username is required; --role \"boss\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"user", "add", "--config", path}, tt.args...)
			r := cli(t, tt.stdin, args...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("got %+v, want exit %d and %q", r, exitUsage, tt.want)
			}
		})
	}
	if _, err := os.Stat(dsn); !os.IsNotExist(err) {
		t.Errorf("bad input touched the database: %v", err)
	}
}

func TestReadPassword(t *testing.T) {
	for in, want := range map[string]string{
		"pw\n":          "pw",
		"pw":            "pw",
		"pw\r\n":        "pw",
		" spaced pw \n": " spaced pw ",
		"first\nsecond": "first",
	} {
		got, err := readPassword(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("readPassword(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := readPassword(io.MultiReader()); err == nil {
		t.Error("empty input accepted")
	}
}

func TestServeRejectsInvalidConfig(t *testing.T) {
	path, _ := sqliteConfig(t) // sandbox off, no secrets
	r := cli(t, "", "serve", "--config", path)
	if r.code != exitError {
		t.Fatalf("got %+v", r)
	}
	for _, want := range []string{"invalid configuration", "auth.token_secret is required outside sandbox mode", "whatsapp.app_secret"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, r.stderr)
		}
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(config.Log{Format: "json", Level: "warn"}, false, &buf)
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"message":"shown"`) {
		t.Errorf("json log: %q", s)
	}
	buf.Reset()
	log = newLogger(config.Log{Format: "json", Level: "info"}, true, &buf)
	log.Info().Msg("hello")
	if s := buf.String(); strings.Contains(s, "{") || !strings.Contains(s, "hello") {
		t.Errorf("console log: %q", s)
	}
}
