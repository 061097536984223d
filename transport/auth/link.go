package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"strconv"
	"strings"
	"time"
)

// Link errors. A link whose signature does not verify is ErrBadLink even
// when it has expired.
var (
	ErrBadLink     = errorString("invalid call link")
	ErrExpiredLink = errorString("call link expired")
)

type errorString string

func (e errorString) Error() string { return string(e) }

// linkContext separates call-link MACs from session-token MACs made with
// the same secret.
const linkContext = "urva/video-link/v1\x00"

// Links signs and verifies the tokens of video call links
// (/v/{id}?t=<token>): "<expiry unix seconds>.<base64url HMAC-SHA256>" over
// the call id and the expiry. It is safe for concurrent use.
type Links struct {
	secret []byte
}

// NewLinks returns Links signing with secret. It panics on an empty secret:
// configuration validation guarantees one.
func NewLinks(secret []byte) *Links {
	if len(secret) == 0 {
		panic("auth: empty link secret")
	}
	return &Links{secret: bytes.Clone(secret)}
}

// Sign returns the token of call id's link, valid until expires (rounded
// down to a whole second).
func (l *Links) Sign(callID int64, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + b64.EncodeToString(l.mac(callID, exp))
}

// Verify checks a link token for call id and returns its expiry:
// ErrBadLink for anything not signed for this call with this secret,
// ErrExpiredLink once now reaches the expiry.
func (l *Links) Verify(callID int64, token string, now time.Time) (time.Time, error) {
	if len(token) == 0 || len(token) > maxTokenLen {
		return time.Time{}, ErrBadLink
	}
	exp, m64, ok := strings.Cut(token, ".")
	if !ok || exp == "" {
		return time.Time{}, ErrBadLink
	}
	var mac [sha256.Size]byte
	if len(m64) != b64.EncodedLen(len(mac)) {
		return time.Time{}, ErrBadLink
	}
	if n, err := b64.Decode(mac[:], []byte(m64)); err != nil || n != len(mac) {
		return time.Time{}, ErrBadLink
	}
	if !hmac.Equal(mac[:], l.mac(callID, exp)) {
		return time.Time{}, ErrBadLink
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return time.Time{}, ErrBadLink
	}
	expires := time.Unix(sec, 0)
	if now.Unix() >= sec {
		return expires, ErrExpiredLink
	}
	return expires, nil
}

func (l *Links) mac(callID int64, exp string) []byte {
	h := hmac.New(sha256.New, l.secret)
	h.Write([]byte(linkContext))
	h.Write(strconv.AppendInt(nil, callID, 10))
	h.Write([]byte{'.'})
	h.Write([]byte(exp))
	return h.Sum(nil)
}
