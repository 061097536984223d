package persistence_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"urva/persistence"
	"urva/persistence/storetest"
)

// TestLiteralText: what the committer's scripts write for each kind of
// value; a quote, a backslash or a control character never appears in the
// text, whatever the value.
func TestLiteralText(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 5, 6, 789000, time.UTC)
	for _, tc := range []struct {
		arg  any
		want string
	}{
		{nil, "NULL"},
		{int64(-42), "-42"},
		{7, "7"},
		{true, "1"},
		{false, "0"},
		{"wamid.ABC=", "'wamid.ABC='"},
		{"नमस्ते 🙏", "'नमस्ते 🙏'"},
		{"line\nbreak\ttab", "'line\nbreak\ttab'"},
		{"O'Brien", "_utf8mb4 X'4f27427269656e'"},
		{`a\b`, "_utf8mb4 X'615c62'"},
		{"nul\x00", "_utf8mb4 X'6e756c00'"},
		{"\xc3", "_utf8mb4 X'c3'"}, // not UTF-8
		{[]byte(`{"a":1}`), `_binary'{"a":1}'`},
		{[]byte{0, 0x27}, "X'0027'"},
		{json.RawMessage(`"x"`), `_binary'"x"'`},
		{at, "'2026-11-24 10:05:06.000789'"},
	} {
		got, err := persistence.InterpolateForTest("v = ?", tc.arg)
		if err != nil || got != "v = "+tc.want {
			t.Errorf("%#v: %q, %v; want %q", tc.arg, got, err, "v = "+tc.want)
		}
	}
	if _, err := persistence.InterpolateForTest("?, ?", 1); err == nil {
		t.Error("a placeholder without a value: no error")
	}
	if _, err := persistence.InterpolateForTest("?", 1, 2); err == nil {
		t.Error("a value without a placeholder: no error")
	}
	if _, err := persistence.InterpolateForTest("?", struct{}{}); err == nil {
		t.Error("a value of no SQL type: no error")
	}
	// A value's own ? is not a placeholder.
	if got, err := persistence.InterpolateForTest("(?, ?)", "why?", 2); err != nil || got != "('why?', 2)" {
		t.Errorf("value with a question mark: %q %v", got, err)
	}
}

// literalValues are the seeds of the round trip: quotes and backslashes in
// every position, control characters, multi-byte text, invalid UTF-8, SQL.
var literalValues = []string{
	"", "plain", "O'Brien", "''", "\\", "\\'", "'\\", "end\\", "\\\\'; DROP TABLE lit; --",
	"\x00", "\x1a", "a\x00b", "\r\n\t", "\"quoted\"", "`tick`", "?", "??'?",
	"नमस्ते", "emoji 😀 👩‍💻", "\xc3", "\xc3'", "\xff\xfe", "é\\'", "%_", "/* c */", "\u00a0\u2028",
	strings.Repeat("x'", 500),
}

// TestLiteralRoundTrip: every seed value, written by the scripts' literals
// into a text, a JSON and a binary column of MariaDB, reads back the same,
// under the default SQL mode and with NO_BACKSLASH_ESCAPES and ANSI_QUOTES.
func TestLiteralRoundTrip(t *testing.T) {
	for _, mode := range []string{"", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES"} {
		t.Run("mode="+mode, func(t *testing.T) {
			conn := literalConn(t, mode)
			for _, v := range literalValues {
				roundTrip(t, conn, v)
			}
		})
	}
}

// FuzzLiteral: any value round-trips through MariaDB (go test runs the seeds).
func FuzzLiteral(f *testing.F) {
	for _, v := range literalValues {
		f.Add(v)
	}
	conn := literalConn(f, "NO_BACKSLASH_ESCAPES")
	f.Fuzz(func(t *testing.T, v string) { roundTrip(t, conn, v) })
}

var literalID atomic.Int64

// literalConn is a connection to a fresh database, as the store's writers
// speak (utf8mb4, UTC), with mode added to the session's SQL mode.
func literalConn(t testing.TB, mode string) *sql.Conn {
	t.Helper()
	cfg, err := mysql.ParseDSN(storetest.DSNForMySQL(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Apply(mysql.Charset("utf8mb4", "utf8mb4_unicode_ci")); err != nil {
		t.Fatal(err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stmts := []string{`CREATE TABLE lit (id BIGINT PRIMARY KEY, t LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
		j JSON NULL, b LONGBLOB NULL) ENGINE=InnoDB`}
	if mode != "" {
		stmts = append(stmts, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',"+mode+"')")
	}
	for _, st := range stmts {
		if _, err := conn.ExecContext(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

func roundTrip(t *testing.T, conn *sql.Conn, v string) {
	t.Helper()
	ctx := context.Background()
	id := literalID.Add(1)
	var text any // NULL for invalid UTF-8: a utf8mb4 column refuses it
	if utf8.ValidString(v) {
		text = v
	}
	js, _ := json.Marshal(v)
	q, err := persistence.InterpolateForTest(`INSERT INTO lit (id, t, j, b) VALUES (?, ?, ?, ?)`, id, text, string(js), []byte(v))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, q); err != nil {
		t.Fatalf("%q: %s: %v", v, q, err)
	}
	var gotT sql.NullString
	var gotJ, gotB []byte
	if err := conn.QueryRowContext(ctx, `SELECT t, j, b FROM lit WHERE id = ?`, id).Scan(&gotT, &gotJ, &gotB); err != nil {
		t.Fatal(err)
	}
	var fromJSON string
	if err := json.Unmarshal(gotJ, &fromJSON); err != nil {
		t.Fatalf("%q: JSON column %q: %v", v, gotJ, err)
	}
	var sent string // json.Marshal replaced any invalid UTF-8
	if err := json.Unmarshal(js, &sent); err != nil {
		t.Fatal(err)
	}
	if (text != nil && gotT.String != v) || fromJSON != sent || !bytes.Equal(gotB, []byte(v)) {
		t.Fatalf("%q came back as text %q, JSON %q, bytes %q", v, gotT.String, fromJSON, gotB)
	}
}
