package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Token errors. A token whose signature does not verify is ErrBadToken even
// when it has expired.
var (
	ErrBadToken     = errors.New("invalid session token")
	ErrExpiredToken = errors.New("session token expired")
)

// DefaultTokenTTL is used when NewTokens is given a ttl that is not positive.
const DefaultTokenTTL = 12 * time.Hour

// maxTokenLen bounds the input Parse looks at: a real token is under 100 bytes.
const maxTokenLen = 512

// tokenContext separates session-token MACs from any other HMAC made with
// the same secret.
const tokenContext = "urva/rm-session/v1\x00"

var b64 = base64.RawURLEncoding.Strict()

// Claims is what a session token says.
type Claims struct {
	RMID    int64
	Role    string
	Expires time.Time // whole seconds
}

// Tokens issues and verifies RM session tokens. It is safe for concurrent use.
type Tokens struct {
	secret []byte
	ttl    time.Duration
}

// NewTokens returns a Tokens signing with secret; tokens live for ttl. It
// panics on an empty secret: configuration validation guarantees one.
func NewTokens(secret []byte, ttl time.Duration) *Tokens {
	if len(secret) == 0 {
		panic("auth: empty token secret")
	}
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	return &Tokens{secret: bytes.Clone(secret), ttl: ttl}
}

// TTL is how long an issued token stays valid.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Issue returns a token for RM rmID with role, valid from now for the TTL
// (the expiry is rounded down to a whole second). rmID must be positive and
// role not empty, or Parse rejects the token.
func (t *Tokens) Issue(rmID int64, role string, now time.Time) string {
	exp := now.Add(t.ttl).Unix()
	payload := make([]byte, 0, 48)
	payload = strconv.AppendInt(payload, rmID, 10)
	payload = append(payload, '.')
	payload = strconv.AppendInt(payload, exp, 10)
	payload = append(payload, '.')
	payload = append(payload, role...)

	n := b64.EncodedLen(len(payload))
	out := make([]byte, n, n+1+b64.EncodedLen(sha256.Size))
	b64.Encode(out, payload)
	mac := t.mac(out)
	out = append(out, '.')
	out = b64.AppendEncode(out, mac)
	return string(out)
}

// Parse verifies token and returns its claims. It returns ErrBadToken for
// anything it did not issue with this secret (malformed, tampered, signed
// with another secret) and ErrExpiredToken once now reaches the expiry.
func (t *Tokens) Parse(token string, now time.Time) (Claims, error) {
	if len(token) == 0 || len(token) > maxTokenLen {
		return Claims{}, ErrBadToken
	}
	dot := strings.IndexByte(token, '.')
	if dot <= 0 || strings.IndexByte(token[dot+1:], '.') >= 0 {
		return Claims{}, ErrBadToken
	}
	p64, m64 := token[:dot], token[dot+1:]

	var mac [sha256.Size]byte
	if len(m64) != b64.EncodedLen(len(mac)) {
		return Claims{}, ErrBadToken
	}
	if n, err := b64.Decode(mac[:], []byte(m64)); err != nil || n != len(mac) {
		return Claims{}, ErrBadToken
	}
	if !hmac.Equal(mac[:], t.mac([]byte(p64))) {
		return Claims{}, ErrBadToken
	}

	payload, err := b64.DecodeString(p64)
	if err != nil {
		return Claims{}, ErrBadToken
	}
	idStr, rest, ok1 := strings.Cut(string(payload), ".")
	expStr, role, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || role == "" {
		return Claims{}, ErrBadToken
	}
	id, err1 := strconv.ParseInt(idStr, 10, 64)
	exp, err2 := strconv.ParseInt(expStr, 10, 64)
	if err1 != nil || err2 != nil || id <= 0 {
		return Claims{}, ErrBadToken
	}
	if now.Unix() >= exp {
		return Claims{}, ErrExpiredToken
	}
	return Claims{RMID: id, Role: role, Expires: time.Unix(exp, 0)}, nil
}

func (t *Tokens) mac(payload64 []byte) []byte {
	h := hmac.New(sha256.New, t.secret)
	h.Write([]byte(tokenContext))
	h.Write(payload64)
	return h.Sum(nil)
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header
// value (the scheme is case-insensitive, surrounding spaces are ignored), or
// "" when the header holds no bearer token. The result is a copy: it may
// outlive a pooled request buffer.
func BearerToken(header []byte) string {
	h := bytes.TrimSpace(header)
	const scheme = "bearer"
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) || (h[len(scheme)] != ' ' && h[len(scheme)] != '\t') {
		return ""
	}
	tok := bytes.TrimSpace(h[len(scheme):])
	if len(tok) == 0 || bytes.ContainsAny(tok, " \t") {
		return ""
	}
	return string(tok)
}
