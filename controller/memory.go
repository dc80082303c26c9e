package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// memory is what the controller remembers between syncs, by object: what
// it said (so that an unchanged problem is not said at every sync), which
// specs met someone else's object, which Deployments had their template
// put back, and since when deleted specs' Services wait out their grace.
// Workers and informer handlers share it.
type memory struct {
	mu        sync.Mutex
	reported  map[types.UID]time.Time        // when each foreign object was last reported
	blockedBy map[types.UID]bool             // specs that met a foreign object in their last sync
	verdicts  map[types.UID]string           // the last verdict said on each spec
	replaced  map[types.UID]int64            // Deployments whose template was put back, at that generation
	gone      map[cache.ObjectName]time.Time // deleted specs whose Services wait out the grace
}

func newMemory() *memory {
	return &memory{reported: make(map[types.UID]time.Time), blockedBy: make(map[types.UID]bool),
		verdicts: make(map[types.UID]string), replaced: make(map[types.UID]int64), gone: make(map[cache.ObjectName]time.Time)}
}

// forgetSpec drops what was said about a deleted spec.
func (m *memory) forgetSpec(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.verdicts, uid)
	delete(m.blockedBy, uid)
}

// setBlocked records whether a spec's sync met someone else's object.
func (m *memory) setBlocked(uid types.UID, blocked bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if blocked {
		m.blockedBy[uid] = true
	} else {
		delete(m.blockedBy, uid)
	}
}

func (m *memory) blocked(uid types.UID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.blockedBy[uid]
}

// newVerdict records verdict as the last said on a spec and reports
// whether it differs from the one before.
func (m *memory) newVerdict(uid types.UID, verdict string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := m.verdicts[uid] == verdict
	m.verdicts[uid] = verdict
	return !seen
}

// reportDue reports whether a problem about an object is to be said at
// now: never said, or last said every ago; and then records it. What was
// reported long ago is forgotten, so the memory stays bounded by what is
// reported within a few periods.
func (m *memory) reportDue(uid types.UID, now time.Time, every time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	last, seen := m.reported[uid]
	if seen && now.Sub(last) < every {
		return false
	}
	m.reported[uid] = now
	for id, t := range m.reported {
		if now.Sub(t) > 3*every {
			delete(m.reported, id)
		}
	}
	return true
}

// setReplaced records that a Deployment's template was put back, as of
// its generation then.
func (m *memory) setReplaced(uid types.UID, generation int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replaced[uid] = generation
}

func (m *memory) replacedAt(uid types.UID) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	gen, ok := m.replaced[uid]
	return gen, ok
}

// forgetObject drops what was remembered of a deleted owned object.
func (m *memory) forgetObject(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.replaced, uid)
}

// goneSince is when a deleted spec was first seen gone, now if it was not.
func (m *memory) goneSince(key cache.ObjectName, now time.Time) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	since, seen := m.gone[key]
	if !seen {
		since = now
		m.gone[key] = since
	}
	return since
}

// notGone forgets that a spec was gone: it is back, or its Services are.
func (m *memory) notGone(key cache.ObjectName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.gone, key)
}
