package persistence

// Committed conversations (MySQL).
//
// The committer is the only writer of conversations and contacts (one
// committer per database, as the event cursor already assumes), so the
// conversations as its last batches committed them are the database's. A
// batch whose writes all name cached conversations by id skips the
// locking read of its conversations and the dedupe lookup of its provider
// ids (and of its outbound client ids): unless it has statuses or provider
// ids whose messages it must read (msgbatch.go), BEGIN, every insert and
// update and COMMIT travel in one request. It is optimistic, and the
// database still decides:
//   - a redelivered message (or a double send), which the skipped lookup
//     would have found, hits the unique key on provider ids (or client
//     ids); the attempt is rolled back and the batch runs again with its
//     reads, which report the duplicate;
//   - a cached conversation behind the database (another writer, a COMMIT
//     whose answer was lost) shows as a write whose seq does not match, or
//     as an event whose (conversation, seq) is taken; again the attempt is
//     rolled back, the batch's conversations leave the cache and the batch
//     runs with its reads.
//
// Only the committer goroutine uses the cache.

// convCacheSize bounds the cached conversations (a few hundred bytes each).
const convCacheSize = 1 << 16

type convCache struct {
	max       int
	byID      map[int64]*Conversation
	byContact map[int64][]int64 // cached conversation ids of a contact
}

func newConvCache(max int) *convCache {
	return &convCache{max: max, byID: map[int64]*Conversation{}, byContact: map[int64][]int64{}}
}

// get returns the cached conversation (nil when not cached); the caller
// copies it before changing anything.
func (c *convCache) get(id int64) *Conversation { return c.byID[id] }

// put caches a copy of conv as committed. Other cached conversations of
// its contact take the contact's fields from it.
func (c *convCache) put(conv *Conversation) {
	if old := c.byID[conv.ID]; old != nil {
		*old = *conv
	} else {
		if len(c.byID) >= c.max {
			for id := range c.byID { // an arbitrary one
				c.remove(id)
				break
			}
		}
		cp := *conv
		c.byID[conv.ID] = &cp
		c.byContact[conv.ContactID] = append(c.byContact[conv.ContactID], conv.ID)
	}
	for _, id := range c.byContact[conv.ContactID] {
		if o := c.byID[id]; id != conv.ID && o != nil {
			o.ContactName, o.OwnerRMID, o.SMSOptedOut = conv.ContactName, conv.OwnerRMID, conv.SMSOptedOut
		}
	}
}

func (c *convCache) remove(id int64) {
	conv := c.byID[id]
	if conv == nil {
		return
	}
	delete(c.byID, id)
	ids := c.byContact[conv.ContactID]
	for i, v := range ids {
		if v == id {
			ids = append(ids[:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(c.byContact, conv.ContactID)
	} else {
		c.byContact[conv.ContactID] = ids
	}
}

func (c *convCache) clear() {
	clear(c.byID)
	clear(c.byContact)
}

func (c *convCache) len() int { return len(c.byID) }
