package twilio

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SignatureHeader is the header Twilio signs webhooks and callbacks with.
const SignatureHeader = "X-Twilio-Signature"

// Signature errors.
var (
	ErrMissingSignature = errors.New("twilio: missing X-Twilio-Signature")
	ErrBadSignature     = errors.New("twilio: bad X-Twilio-Signature")
)

// Signature returns the X-Twilio-Signature Twilio sends for a POST of params
// to url: base64 of the HMAC-SHA1, keyed with the auth token, of the full URL
// followed by every parameter sorted by name (the values of a repeated name
// sorted too), each as name then value with no separators. params is not
// modified.
func Signature(authToken, url string, params map[string][]string) string {
	return base64.StdEncoding.EncodeToString(signatureMAC(authToken, url, params))
}

func signatureMAC(authToken, url string, params map[string][]string) []byte {
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(url))
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	slices.Sort(names)
	var values []string
	for _, name := range names {
		values = append(values[:0], params[name]...)
		slices.Sort(values)
		for _, v := range values {
			mac.Write([]byte(name))
			mac.Write([]byte(v))
		}
	}
	return mac.Sum(nil)
}

// VerifySignature checks header (the X-Twilio-Signature value) against the
// signature of params posted to url. The comparison is constant-time. An
// empty auth token never verifies.
func VerifySignature(authToken, url string, params map[string][]string, header string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrMissingSignature
	}
	if authToken == "" {
		return fmt.Errorf("%w: no auth token configured", ErrBadSignature)
	}
	want := Signature(authToken, url, params)
	if len(header) != len(want) {
		return fmt.Errorf("%w: not a base64 HMAC-SHA1", ErrBadSignature)
	}
	if subtle.ConstantTimeCompare([]byte(header), []byte(want)) != 1 {
		return ErrBadSignature
	}
	return nil
}

// CandidateURLs returns the URLs Twilio may have signed for a request to
// path with query rawQuery (without '?') on a server whose public base URL is
// publicURL: publicURL (without a trailing '/') followed by path and the
// query, first as built, then with the scheme's default port (https 443, http
// 80) added when the URL has none, or removed when it has it. Twilio's
// libraries sign either form, depending on the version.
func CandidateURLs(publicURL, path, rawQuery string) []string {
	u := strings.TrimRight(publicURL, "/")
	if path != "" && path[0] != '/' {
		u += "/"
	}
	u += path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	if alt, ok := portVariant(u); ok && alt != u {
		return []string{u, alt}
	}
	return []string{u}
}

// portVariant adds the default port to an absolute http(s) URL without one,
// or removes it from one that has it.
func portVariant(u string) (string, bool) {
	i := strings.Index(u, "://")
	if i <= 0 {
		return "", false
	}
	var port string
	switch strings.ToLower(u[:i]) {
	case "https":
		port = "443"
	case "http":
		port = "80"
	default:
		return "", false
	}
	start := i + 3
	end := len(u)
	if j := strings.IndexAny(u[start:], "/?#"); j >= 0 {
		end = start + j
	}
	authority := u[start:end]
	hostStart := strings.LastIndexByte(authority, '@') + 1 // after any user info
	host := authority[hostStart:]
	if host == "" {
		return "", false
	}
	colon := strings.LastIndexByte(host, ':')
	if colon >= 0 && strings.LastIndexByte(host, ']') > colon { // an IPv6 literal without a port
		colon = -1
	}
	if colon < 0 {
		return u[:end] + ":" + port + u[end:], true
	}
	if host[colon+1:] == port {
		cut := start + hostStart + colon
		return u[:cut] + u[end:], true
	}
	return "", false
}

// VerifyRequest checks a webhook's signature against every URL CandidateURLs
// gives for publicURL, path and rawQuery; one match is enough. It returns
// ErrMissingSignature without a header, an error wrapping ErrBadSignature when
// no candidate matches.
func VerifyRequest(authToken, publicURL, path, rawQuery string, params map[string][]string, header string) error {
	var last error
	for _, u := range CandidateURLs(publicURL, path, rawQuery) {
		err := VerifySignature(authToken, u, params, header)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrMissingSignature) {
			return err
		}
		last = err
	}
	return last
}
