// Package httpx holds small HTTP helpers shared by the provider clients.
package httpx

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps a provider's Retry-After.
const MaxRetryAfter = 24 * time.Hour

// RetryAfter reads a Retry-After header value, delay seconds or an HTTP
// date, capped at MaxRetryAfter; 0 when absent, past or unreadable.
func RetryAfter(v []byte, now time.Time) time.Duration {
	s := strings.TrimSpace(string(v))
	if s == "" {
		return 0
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil && t.After(now) {
		return min(t.Sub(now), MaxRetryAfter)
	}
	return 0
}
