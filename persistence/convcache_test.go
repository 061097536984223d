package persistence

import "testing"

// TestConvCache: the cache holds at most its bound, keeps its contact index
// in step with its conversations, and gives a contact's new fields to the
// contact's other conversations.
func TestConvCache(t *testing.T) {
	c := newConvCache(3)
	for id := int64(1); id <= 5; id++ {
		c.put(&Conversation{ID: id, ContactID: 100 + id%2, LastSeq: id})
		if c.len() > 3 {
			t.Fatalf("%d cached after %d puts, bound 3", c.len(), id)
		}
	}
	indexed := 0
	for contact, ids := range c.byContact {
		for _, id := range ids {
			if cv := c.byID[id]; cv == nil || cv.ContactID != contact {
				t.Fatalf("index: contact %d lists %d, cached %+v", contact, id, cv)
			}
			indexed++
		}
	}
	if indexed != c.len() {
		t.Fatalf("index lists %d conversations, %d cached", indexed, c.len())
	}

	c.clear()
	if c.len() != 0 || len(c.byContact) != 0 {
		t.Fatalf("after clear: %d cached, index %v", c.len(), c.byContact)
	}
	c = newConvCache(10)
	c.put(&Conversation{ID: 1, ContactID: 7, ContactName: "A", LastSeq: 4})
	c.put(&Conversation{ID: 2, ContactID: 7, ContactName: "A", LastSeq: 9})
	c.put(&Conversation{ID: 3, ContactID: 8, ContactName: "B"})
	c.put(&Conversation{ID: 2, ContactID: 7, ContactName: "A2", OwnerRMID: 5, SMSOptedOut: true, LastSeq: 10})
	if got := c.get(1); got.ContactName != "A2" || got.OwnerRMID != 5 || !got.SMSOptedOut || got.LastSeq != 4 {
		t.Fatalf("the contact's other conversation: %+v", got)
	}
	if got := c.get(3); got.ContactName != "B" {
		t.Fatalf("another contact's conversation: %+v", got)
	}
	// put keeps a copy.
	conv := &Conversation{ID: 4, ContactID: 9, LastSeq: 1}
	c.put(conv)
	conv.LastSeq = 99
	if c.get(4).LastSeq != 1 {
		t.Fatal("the cache shares the caller's conversation")
	}
	c.remove(1)
	c.remove(2)
	if c.get(1) != nil || c.byContact[7] != nil || c.len() != 2 {
		t.Fatalf("after removing contact 7's conversations: %d cached, index %v", c.len(), c.byContact)
	}
}
