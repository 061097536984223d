// Package turn is the built-in TURN server.
//
// It runs a pion/turn/v2 server on UDP (optionally several sockets bound to
// one port with SO_REUSEPORT) and TCP, authenticates clients with TURN REST
// credentials compatible with coturn's use-auth-secret scheme, enforces a
// per-user allocation quota and counts allocations and relayed bytes. On
// Linux a relay loop (relayloop_linux.go) relays the UDP allocations'
// ChannelData itself, on the bindings pion has made; pion handles the rest.
package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // mandated by the TURN REST credential scheme
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Credentials returns TURN REST credentials for user, valid for ttl from now:
// username is "<expiry unix seconds>:<user>" and password is
// base64(HMAC-SHA1(secret, username)).
func Credentials(secret, user string, ttl time.Duration, now time.Time) (username, password string, expires time.Time) {
	expires = now.Add(ttl).Truncate(time.Second)
	username = strconv.FormatInt(expires.Unix(), 10) + ":" + user
	return username, computePassword(secret, username), expires
}

func computePassword(secret, username string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// parseUsername splits a TURN REST username at the first ':' into its expiry
// and user id. A bare timestamp is accepted with an empty user id.
func parseUsername(username string) (expiry time.Time, user string, ok bool) {
	ts, user, _ := strings.Cut(username, ":")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", false
	}
	return time.Unix(sec, 0), user, true
}
