package actors

import (
	"context"
	"sync"
	"time"
)

// rmLoad is the initial assignment's view of how many open conversations
// each RM has, so that picking the least-loaded online RM for a new
// conversation costs no query. An RM's count is read from the store the
// first time it is a candidate (one query for all such RMs) and read again
// after refreshAfter; assignments made here count at once, so a burst of
// new contacts is spread over the online RMs instead of landing on whichever
// RM was least loaded when the burst began. Reassignments and conversations
// created elsewhere (another node) are seen at the next refresh.
type rmLoad struct {
	counts func(ctx context.Context, rmIDs []int64) (map[int64]int64, error)
	now    func() time.Time

	mu       sync.Mutex
	open     map[int64]int64
	loadedAt time.Time
}

// refreshAfter bounds how stale the counts may get.
const refreshAfter = time.Minute

// pick returns the online RM with the fewest open conversations (the lowest
// id among equals) and counts the new conversation for it; 0 when nobody is
// online. A failed read counts unknown RMs as empty and returns the error
// with the pick.
func (l *rmLoad) pick(ctx context.Context, online []int64) (int64, error) {
	if len(online) == 0 {
		return 0, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.open == nil || now.Sub(l.loadedAt) >= refreshAfter {
		l.open = map[int64]int64{}
		l.loadedAt = now
	}
	var missing []int64
	for _, id := range online {
		if _, ok := l.open[id]; !ok {
			missing = append(missing, id)
		}
	}
	var err error
	if len(missing) > 0 {
		var got map[int64]int64
		got, err = l.counts(ctx, missing)
		for _, id := range missing {
			l.open[id] = got[id] // 0 when the read failed
		}
	}
	best, bestN := int64(0), int64(-1)
	for _, id := range online {
		n := l.open[id]
		if bestN < 0 || n < bestN || (n == bestN && id < best) {
			best, bestN = id, n
		}
	}
	l.open[best]++
	return best, err
}
