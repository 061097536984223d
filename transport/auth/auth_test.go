package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPassword(t *testing.T) {
	h, err := HashPasswordCost("correct horse", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$2") {
		t.Errorf("hash %q is not bcrypt", h)
	}
	if !CheckPassword(h, "correct horse") {
		t.Error("the right password does not match")
	}
	for _, wrong := range []string{"", "correct horse ", "Correct horse", "correct"} {
		if CheckPassword(h, wrong) {
			t.Errorf("%q matches", wrong)
		}
	}
	if CheckPassword("", "correct horse") || CheckPassword("not a hash", "correct horse") {
		t.Error("a missing or broken hash matches")
	}
}

func TestHashPasswordDefaultCost(t *testing.T) {
	h, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != bcrypt.DefaultCost {
		t.Errorf("cost %d, %v", cost, err)
	}
	if !CheckPassword(h, "pw") {
		t.Error("no match")
	}
}

func TestHashPasswordRejects(t *testing.T) {
	tests := []struct {
		pw   string
		want error
	}{
		{"", ErrEmptyPassword},
		{strings.Repeat("x", 73), ErrPasswordTooLong},
		{strings.Repeat("é", 37), ErrPasswordTooLong}, // 74 bytes, 37 characters
	}
	for _, tt := range tests {
		if _, err := HashPasswordCost(tt.pw, bcrypt.MinCost); !errors.Is(err, tt.want) {
			t.Errorf("HashPassword(%d bytes) = %v, want %v", len(tt.pw), err, tt.want)
		}
	}
	if _, err := HashPasswordCost(strings.Repeat("x", 72), bcrypt.MinCost); err != nil {
		t.Errorf("72 bytes: %v", err)
	}
	if !strings.Contains(ErrPasswordTooLong.Error(), "72 bytes") {
		t.Errorf("message %q does not say the limit", ErrPasswordTooLong)
	}
}

func TestUnknownUserHashIsBcrypt(t *testing.T) {
	if cost, err := bcrypt.Cost([]byte(unknownUserHash)); err != nil || cost != bcrypt.DefaultCost {
		t.Fatalf("cost %d, %v", cost, err)
	}
}

var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

func TestTokenRoundTrip(t *testing.T) {
	tok := NewTokens([]byte("secret"), time.Hour)
	for _, tt := range []struct {
		id   int64
		role string
	}{{1, "rm"}, {42, "supervisor"}, {1<<63 - 1, "rm"}, {7, "role.with.dots"}} {
		s := tok.Issue(tt.id, tt.role, t0)
		c, err := tok.Parse(s, t0.Add(59*time.Minute))
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		want := Claims{RMID: tt.id, Role: tt.role, Expires: t0.Add(time.Hour)}
		if c.RMID != want.RMID || c.Role != want.Role || !c.Expires.Equal(want.Expires) {
			t.Errorf("claims %+v, want %+v", c, want)
		}
		if strings.ContainsAny(s, "+/= ") || strings.Count(s, ".") != 1 {
			t.Errorf("token %q is not compact base64url", s)
		}
	}
}

func TestTokenExpiry(t *testing.T) {
	tok := NewTokens([]byte("secret"), time.Hour)
	s := tok.Issue(1, "rm", t0)
	if _, err := tok.Parse(s, t0.Add(time.Hour-time.Second)); err != nil {
		t.Errorf("a second before expiry: %v", err)
	}
	for _, at := range []time.Duration{time.Hour, time.Hour + time.Nanosecond, 48 * time.Hour} {
		if _, err := tok.Parse(s, t0.Add(at)); !errors.Is(err, ErrExpiredToken) {
			t.Errorf("at +%s: err = %v, want ErrExpiredToken", at, err)
		}
	}
}

func TestTokenWrongSecret(t *testing.T) {
	s := NewTokens([]byte("secret"), time.Hour).Issue(1, "supervisor", t0)
	if _, err := NewTokens([]byte("secreT"), time.Hour).Parse(s, t0); !errors.Is(err, ErrBadToken) {
		t.Errorf("err = %v, want ErrBadToken", err)
	}
	// An expired token under the wrong secret is bad, not expired.
	if _, err := NewTokens([]byte("other"), time.Hour).Parse(s, t0.Add(2*time.Hour)); !errors.Is(err, ErrBadToken) {
		t.Errorf("err = %v, want ErrBadToken", err)
	}
}

// Every single-character change of a token breaks it.
func TestTokenTampering(t *testing.T) {
	tok := NewTokens([]byte("secret"), time.Hour)
	s := tok.Issue(5, "rm", t0)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
	for i := range len(s) {
		for _, r := range alphabet {
			if byte(r) == s[i] {
				continue
			}
			bad := s[:i] + string(r) + s[i+1:]
			if _, err := tok.Parse(bad, t0); !errors.Is(err, ErrBadToken) {
				t.Fatalf("tampered token %q: err = %v", bad, err)
			}
		}
	}
	// A forged payload (RM 1 as supervisor) with the original signature.
	_, sig, _ := strings.Cut(s, ".")
	forged := b64.EncodeToString([]byte("1.9999999999.supervisor")) + "." + sig
	if _, err := tok.Parse(forged, t0); !errors.Is(err, ErrBadToken) {
		t.Errorf("forged payload: err = %v", err)
	}
}

func TestTokenMalformed(t *testing.T) {
	tok := NewTokens([]byte("secret"), time.Hour)
	good := tok.Issue(5, "rm", t0)
	p64, sig, _ := strings.Cut(good, ".")
	signed := func(payload string) string {
		p := b64.EncodeToString([]byte(payload))
		return p + "." + b64.EncodeToString(tok.mac([]byte(p)))
	}
	for name, s := range map[string]string{
		"empty":         "",
		"no dot":        p64 + sig,
		"two dots":      good + ".x",
		"empty payload": "." + sig,
		"empty mac":     p64 + ".",
		"padded mac":    p64 + "." + sig + "=",
		"short mac":     p64 + "." + sig[:20],
		"too long":      strings.Repeat("a", 600) + "." + sig,
		"missing role":  signed("5.1767265200"),
		"empty role":    signed("5.1767265200."),
		"bad id":        signed("x.1767265200.rm"),
		"zero id":       signed("0.1767265200.rm"),
		"bad expiry":    signed("5.soon.rm"),
		"payload not b64": func() string {
			p := "!!!"
			return p + "." + b64.EncodeToString(tok.mac([]byte(p)))
		}(),
	} {
		if _, err := tok.Parse(s, t0); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: err = %v, want ErrBadToken", name, err)
		}
	}
}

func TestNewTokens(t *testing.T) {
	if got := NewTokens([]byte("s"), 0).TTL(); got != DefaultTokenTTL {
		t.Errorf("TTL = %s", got)
	}
	secret := []byte("secret")
	tok := NewTokens(secret, time.Hour)
	s := tok.Issue(1, "rm", t0)
	secret[0] = 'X' // the caller's slice is copied
	if _, err := tok.Parse(s, t0); err != nil {
		t.Errorf("Parse after the caller changed its slice: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewTokens accepted an empty secret")
		}
	}()
	NewTokens(nil, time.Hour)
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc.def":      "abc.def",
		"bearer abc":          "abc",
		"BEARER  abc  ":       "abc",
		"  Bearer\tabc":       "abc",
		"Bearer":              "",
		"Bearer ":             "",
		"Bearerabc":           "",
		"Basic dXNlcjpwdw==":  "",
		"":                    "",
		"abc":                 "",
		"Bearer abc def":      "",
		"Token abc":           "",
		"Bearer abc.def.ghi ": "abc.def.ghi",
	} {
		if got := BearerToken([]byte(header)); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", header, got, want)
		}
	}
	buf := []byte("Bearer abc")
	got := BearerToken(buf)
	copy(buf, "XXXXXXXXXX")
	if got != "abc" {
		t.Errorf("result shares the header buffer: %q", got)
	}
}

func BenchmarkParse(b *testing.B) {
	tok := NewTokens([]byte("secret"), time.Hour)
	s := tok.Issue(42, "rm", t0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.Parse(s, t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	tok := NewTokens([]byte("secret"), time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		_ = tok.Issue(42, "rm", t0)
	}
}
