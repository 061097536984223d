package auth

import (
	"errors"
	"testing"
	"time"
)

func TestLinks(t *testing.T) {
	l := NewLinks([]byte("link-secret"))
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Hour)
	tok := l.Sign(42, exp)
	got, err := l.Verify(42, tok, now)
	if err != nil || !got.Equal(exp) {
		t.Fatalf("Verify = %v, %v; want %v", got, err, exp)
	}
	cases := []struct {
		name  string
		id    int64
		token string
		now   time.Time
		want  error
	}{
		{"another call", 43, tok, now, ErrBadLink},
		{"expired", 42, tok, exp, ErrExpiredLink},
		{"tampered expiry", 42, "9" + tok, now, ErrBadLink},
		{"tampered mac", 42, tok[:len(tok)-2] + "AA", now, ErrBadLink},
		{"other secret", 42, NewLinks([]byte("other")).Sign(42, exp), now, ErrBadLink},
		{"empty", 42, "", now, ErrBadLink},
		{"no dot", 42, "12345", now, ErrBadLink},
		{"session token", 42, NewTokens([]byte("link-secret"), time.Hour).Issue(42, "rm", now), now, ErrBadLink},
	}
	for _, c := range cases {
		if _, err := l.Verify(c.id, c.token, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzLinkVerify(f *testing.F) {
	l := NewLinks([]byte("link-secret"))
	now := time.Unix(1_800_000_000, 0)
	f.Add(int64(42), l.Sign(42, now.Add(time.Hour)))
	f.Add(int64(1), "1.")
	f.Add(int64(-1), "-1.AAAA")
	f.Fuzz(func(t *testing.T, id int64, token string) {
		exp, err := l.Verify(id, token, now)
		if err == nil && (token != l.Sign(id, exp) || !exp.After(now)) {
			t.Fatalf("accepted a token it did not sign: %q for %d", token, id)
		}
	})
}
