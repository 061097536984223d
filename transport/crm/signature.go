package crm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Webhook headers.
const (
	HeaderEventID   = "X-Urva-Event-Id"
	HeaderTimestamp = "X-Urva-Timestamp"
	HeaderSignature = "X-Urva-Signature"
)

// signaturePrefix starts every X-Urva-Signature value.
const signaturePrefix = "sha256="

// DefaultTolerance is how far a webhook's timestamp may be from the
// receiver's clock when Verify is given no tolerance.
const DefaultTolerance = 5 * time.Minute

// Verification errors. Errors returned by Verify wrap one of them.
var (
	ErrMissingSignature = errors.New("crm: missing signature or timestamp")
	ErrBadSignature     = errors.New("crm: signature does not match")
	ErrStaleTimestamp   = errors.New("crm: timestamp outside tolerance")
)

// Sign returns the X-Urva-Signature value of body sent at timestamp (Unix
// seconds as a decimal string): "sha256=" and the lowercase hex HMAC-SHA256,
// keyed with secret, of timestamp + "." + body.
func Sign(secret, timestamp string, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(secret, timestamp, body))
}

func mac(secret, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a webhook as a receiver does: header is the X-Urva-Signature
// value, timestamp the X-Urva-Timestamp value and body the raw request body.
// The signature is compared in constant time. An authentic request whose
// timestamp is more than tolerance away from now (either way) is rejected
// with ErrStaleTimestamp, which bounds replays; tolerance <= 0 means
// DefaultTolerance. A malformed timestamp or signature is ErrBadSignature.
func Verify(secret, timestamp string, body []byte, header string, now time.Time, tolerance time.Duration) error {
	header = strings.TrimSpace(header)
	timestamp = strings.TrimSpace(timestamp)
	if header == "" || timestamp == "" {
		return ErrMissingSignature
	}
	hexSig, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return fmt.Errorf("%w: want a %q value", ErrBadSignature, signaturePrefix+"<hex>")
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: not a hex SHA-256 digest", ErrBadSignature)
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, timestamp)
	}
	if !hmac.Equal(got, mac(secret, timestamp, body)) {
		return ErrBadSignature
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if skew := now.Unix() - ts; skew > int64(tolerance/time.Second) || -skew > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: timestamp %d is %ds from now", ErrStaleTimestamp, ts, skew)
	}
	return nil
}
