package crm

import (
	"math/rand/v2"
	"time"
)

// Backoff returns the delay before the next attempt after attempt failed
// attempts (1 after the first failure). The exponential value is
// base * 2^(attempt-1), capped at max; the delay is drawn uniformly between
// half of it and all of it ("equal jitter"), so retries of many events spread
// out while each delay stays at least half the exponential value:
//
//	exp   = min(base << (attempt-1), max)
//	delay = exp/2 + rnd() * exp/2        // in [exp/2, exp]
//
// attempt < 1 counts as 1. max <= 0 means no cap (the value saturates instead
// of overflowing). base <= 0 returns 0. rnd returns a number in [0, 1), as
// math/rand/v2's Float64 does, which is used when rnd is nil; values outside
// [0, 1] are clamped.
func Backoff(attempt int, base, max time.Duration, rnd func() float64) time.Duration {
	if base <= 0 {
		return 0
	}
	if attempt < 1 {
		attempt = 1
	}
	limit := max
	if limit <= 0 {
		limit = time.Duration(1<<63 - 1)
	}
	exp := base
	for i := 1; i < attempt && exp < limit; i++ {
		if exp > limit/2 {
			exp = limit
			break
		}
		exp *= 2
	}
	if exp > limit {
		exp = limit
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	f := rnd()
	switch {
	case f < 0 || f != f: // negative or NaN
		f = 0
	case f > 1:
		f = 1
	}
	half := exp / 2
	jitter := time.Duration(f * float64(half))
	if jitter > half { // float rounding of very large values
		jitter = half
	}
	return exp - half + jitter
}
