package whatsapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// SignatureHeader is the header Meta signs webhook bodies with.
const SignatureHeader = "X-Hub-Signature-256"

const signaturePrefix = "sha256="

// Signature errors.
var (
	ErrMissingSignature = errors.New("whatsapp: missing X-Hub-Signature-256")
	ErrBadSignature     = errors.New("whatsapp: bad X-Hub-Signature-256")
)

// VerifySignature checks header (the X-Hub-Signature-256 value,
// "sha256=<hex>") against the HMAC-SHA256 of the raw body keyed with the app
// secret. The comparison is constant-time. An empty app secret never verifies.
func VerifySignature(appSecret string, body []byte, header string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrMissingSignature
	}
	if appSecret == "" {
		return fmt.Errorf("%w: no app secret configured", ErrBadSignature)
	}
	if len(header) < len(signaturePrefix) || !strings.EqualFold(header[:len(signaturePrefix)], signaturePrefix) {
		return fmt.Errorf("%w: not a sha256 signature", ErrBadSignature)
	}
	hexSum := header[len(signaturePrefix):]
	if len(hexSum) != 2*sha256.Size {
		return fmt.Errorf("%w: wrong length", ErrBadSignature)
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], []byte(hexSum)); err != nil {
		return fmt.Errorf("%w: not hex", ErrBadSignature)
	}
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	var want [sha256.Size]byte
	if !hmac.Equal(mac.Sum(want[:0]), got[:]) {
		return ErrBadSignature
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value Meta would send for body:
// "sha256=" and the lowercase hex HMAC-SHA256 keyed with the app secret.
func Sign(appSecret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

// VerifySubscription answers Meta's GET verification handshake
// (hub.mode, hub.verify_token, hub.challenge). It returns the challenge to
// echo with 200 and true when mode is "subscribe" and the token matches the
// configured verify token (compared in constant time); false means 403. An
// empty configured verify token never matches.
func VerifySubscription(mode, token, challenge, verifyToken string) (string, bool) {
	if mode != "subscribe" || verifyToken == "" {
		return "", false
	}
	// Hash both sides so the comparison takes the same time whatever the lengths.
	a := sha256.Sum256([]byte(token))
	b := sha256.Sum256([]byte(verifyToken))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return "", false
	}
	return challenge, true
}
