package router

import (
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// cowMap is a map read per packet without locks and written rarely: every
// change copies it and swaps the pointer. Writers serialise on mu.
type cowMap[K comparable, V comparable] struct {
	mu  sync.Mutex // serialises writers
	max int
	p   atomic.Pointer[map[K]V]
}

func newCOWMap[K comparable, V comparable](max int) *cowMap[K, V] {
	c := &cowMap[K, V]{max: max}
	m := make(map[K]V)
	c.p.Store(&m)
	return c
}

func (c *cowMap[K, V]) get(k K) (V, bool) {
	v, ok := (*c.p.Load())[k]
	return v, ok
}

// set stores k=v unless it is there already; it reports false when the map
// is full and k is new.
func (c *cowMap[K, V]) set(k K, v V) bool {
	if old, ok := c.get(k); ok && old == v {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.p.Load()
	if old, ok := cur[k]; ok && old == v {
		return true
	}
	if _, ok := cur[k]; !ok && len(cur) >= c.max {
		return false
	}
	next := maps.Clone(cur)
	if next == nil {
		next = make(map[K]V)
	}
	next[k] = v
	c.p.Store(&next)
	return true
}

// getOrAdd returns k's value, storing mk() first if k is absent (and the
// map not full: then it returns mk() without storing it).
func (c *cowMap[K, V]) getOrAdd(k K, mk func() V) V {
	if v, ok := c.get(k); ok {
		return v
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := *c.p.Load()
	if v, ok := cur[k]; ok {
		return v
	}
	v := mk()
	if len(cur) >= c.max {
		return v
	}
	next := maps.Clone(cur)
	if next == nil {
		next = make(map[K]V)
	}
	next[k] = v
	c.p.Store(&next)
	return v
}

func (c *cowMap[K, V]) len() int { return len(*c.p.Load()) }

func (c *cowMap[K, V]) snapshot() map[K]V { return *c.p.Load() }

// neighKey names an overlay address on one network.
type neighKey struct {
	vni uint32
	ip  netip.Addr
}

// pendingQueue holds packets waiting for an ARP answer, a few per
// neighbour, as Linux does (unres_qlen).
type pendingQueue struct {
	mu sync.Mutex // guards m
	m  map[neighKey]*pending
}

func newPendingQueue() *pendingQueue {
	return &pendingQueue{m: make(map[neighKey]*pending)}
}

type pending struct {
	vtep  netip.AddrPort
	pkts  [][]byte // copies of IP packets, each at offset Headroom
	sent  time.Time
	tries int
}

const (
	maxPendingPerNeighbor = 8
	maxPendingNeighbors   = 256
	arpRetry              = time.Second
	arpTries              = 3
)

// add queues a copy of pkt for dst. It reports whether an ARP request
// should go out now (first packet for dst) and whether the packet was kept.
func (q *pendingQueue) add(dst neighKey, vtep netip.AddrPort, pkt []byte, now time.Time) (ask, kept bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.m[dst]
	if !ok {
		if len(q.m) >= maxPendingNeighbors {
			return false, false
		}
		p = &pending{vtep: vtep, sent: now, tries: 1}
		q.m[dst] = p
		ask = true
	}
	if len(p.pkts) >= maxPendingPerNeighbor {
		return ask, false
	}
	c := make([]byte, headroom+len(pkt))
	copy(c[headroom:], pkt)
	p.pkts = append(p.pkts, c)
	return ask, true
}

// take removes and returns what waits for dst.
func (q *pendingQueue) take(dst neighKey) *pending {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := q.m[dst]
	delete(q.m, dst)
	return p
}

// arpAsk is an ARP request to send: who has dst, asked of vtep.
type arpAsk struct {
	dst  neighKey
	vtep netip.AddrPort
}

// expire appends to asks the neighbours to ask again, drops those that
// have been asked arpTries times, and returns how many packets it dropped.
// The caller sends the requests after the lock is released.
func (q *pendingQueue) expire(now time.Time, asks []arpAsk) (_ []arpAsk, dropped int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for dst, p := range q.m {
		if now.Sub(p.sent) < arpRetry {
			continue
		}
		if p.tries >= arpTries {
			dropped += len(p.pkts)
			delete(q.m, dst)
			continue
		}
		p.tries++
		p.sent = now
		asks = append(asks, arpAsk{dst: dst, vtep: p.vtep})
	}
	return asks, dropped
}

func (q *pendingQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.m)
}
