package auth

import (
	"errors"
	"testing"
	"time"
)

// FuzzParse feeds Parse arbitrary input: it must never panic, must fail with
// ErrBadToken or ErrExpiredToken, and may accept only a token that Issue
// produces byte for byte from the claims it returns.
func FuzzParse(f *testing.F) {
	tok := NewTokens([]byte("fuzz-secret"), time.Hour)
	good := tok.Issue(42, "supervisor", t0)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(tok.Issue(1, "rm", t0.Add(-2*time.Hour)))
	f.Add("")
	f.Add(".")
	f.Add("a.b")
	f.Add("MS4xLnJt.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := tok.Parse(s, t0)
		if err != nil {
			if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpiredToken) {
				t.Fatalf("Parse(%q) = %v", s, err)
			}
			if c != (Claims{}) {
				t.Fatalf("Parse(%q) failed but returned claims %+v", s, c)
			}
			return
		}
		if c.RMID <= 0 || c.Role == "" || !c.Expires.After(t0) {
			t.Fatalf("Parse(%q) accepted claims %+v", s, c)
		}
		if again := tok.Issue(c.RMID, c.Role, c.Expires.Add(-tok.TTL())); again != s {
			t.Fatalf("Parse accepted %q, which Issue writes as %q", s, again)
		}
	})
}
