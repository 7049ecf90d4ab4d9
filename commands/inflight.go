package commands

import "sync"

// InFlight is the set of messages handed to the actor and not finished yet. The dispatcher adds
// to it (and skips announcements of messages already in it); the actor removes what it finishes.
type InFlight struct {
	mu  sync.Mutex
	set map[MsgRef]struct{}
}

// NewInFlight returns an empty set.
func NewInFlight() *InFlight { return &InFlight{set: make(map[MsgRef]struct{})} }

// Add adds ref and reports whether it was absent.
func (f *InFlight) Add(ref MsgRef) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.set[ref]; ok {
		return false
	}
	f.set[ref] = struct{}{}
	return true
}

// Remove forgets ref.
func (f *InFlight) Remove(ref MsgRef) {
	f.mu.Lock()
	delete(f.set, ref)
	f.mu.Unlock()
}

// Len is the number of messages in flight.
func (f *InFlight) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.set)
}
