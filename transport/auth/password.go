// Package auth holds the credentials RMs and operators present: bcrypt
// password hashes, the signed session tokens handed out at login, and the
// parsing of Authorization: Bearer headers.
//
// A session token is compact and self-contained: base64url(payload) "."
// base64url(HMAC-SHA256(secret, payload)), where the payload carries the RM
// id, the expiry (Unix seconds) and the role. Verifying one needs no database
// access; rotating the secret signs every RM out.
package auth

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// MaxPasswordBytes is the longest password bcrypt can hash.
const MaxPasswordBytes = 72

// Password errors.
var (
	ErrEmptyPassword   = errors.New("password is empty")
	ErrPasswordTooLong = fmt.Errorf("password is longer than %d bytes", MaxPasswordBytes)
)

// HashPassword returns the bcrypt hash of pw at bcrypt's default cost. It
// rejects an empty password and one longer than MaxPasswordBytes (bcrypt
// would silently ignore the rest).
func HashPassword(pw string) (string, error) {
	return HashPasswordCost(pw, bcrypt.DefaultCost)
}

// HashPasswordCost is HashPassword at a chosen bcrypt cost; tests use
// bcrypt.MinCost to stay fast. Production code uses HashPassword.
func HashPasswordCost(pw string, cost int) (string, error) {
	if pw == "" {
		return "", ErrEmptyPassword
	}
	if len(pw) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// unknownUserHash is a bcrypt hash (default cost) of a password nobody uses.
// CheckPassword compares against it when it has no hash, so that a login
// for an unknown username takes as long as one for a known username.
const unknownUserHash = "$2a$10$MqW5AuBDvlKQXW7L9W4D8OyTqUcWzqnSnzt6XKjukzGniWgE0Vjq."

// CheckPassword reports whether pw matches the bcrypt hash. An empty hash
// (the username does not exist) still costs one bcrypt comparison and
// reports false, so answer times do not reveal which usernames exist.
func CheckPassword(hash, pw string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword([]byte(unknownUserHash), []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}
