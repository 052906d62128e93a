package router

import (
	"encoding/binary"
	"iter"
	"maps"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/overlayd/overlayd/vxlan"
)

// cowMap is a small map read per packet without locks and written rarely
// (the per-network counters): every change copies it and swaps the
// pointer. Writers serialise on mu. Learned tables, which grow with the
// traffic, use a shardedMap instead.
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

func (c *cowMap[K, V]) snapshot() map[K]V { return *c.p.Load() }

// shardKey is a key of a shardedMap: it hashes itself with the map's seed
// to pick its shard.
type shardKey interface {
	comparable
	hash(shardSeed) uint64
}

// shardSeed keys the shard hash: random per table.
type shardSeed [2]uint64

// mix is wyhash's mixing step, the 128-bit product of a and b folded.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// shardedMap is a table learned from traffic (IP→MAC, MAC→VTEP): read per
// packet without locks, written on every new or changed entry. It is split
// in shards, each an immutable slice of entries behind an atomic pointer;
// a write copies its shard only and swaps that pointer. A table of max
// entries has about max/targetShardLen shards, so a shard of a full table
// holds about 16 entries (a lookup scans them) and a write copies as many,
// whatever the table holds: n new entries cost O(n), not the O(n²) of
// copying the whole table each time. (The shard pointers take half a byte
// per allowed entry, 32 KiB for the default 65,536; beyond maxShards, for
// a max above a million, the shards grow longer.) The seed is random per
// table, so a peer choosing its MACs cannot pile them into one shard. A
// lookup, and a write that changes nothing, allocate nothing.
type shardedMap[K shardKey, V comparable] struct {
	mu     sync.Mutex // serialises writers
	max    int
	n      atomic.Int64 // entries, for the limit and Stats
	seed   shardSeed
	shards []atomic.Pointer[[]shardEntry[K, V]] // nil: an empty shard
}

type shardEntry[K, V any] struct {
	k K
	v V
}

const (
	targetShardLen = 16 // entries per shard of a full table
	maxShards      = 1 << 16
)

func newShardedMap[K shardKey, V comparable](max int) *shardedMap[K, V] {
	n := 1
	for n < maxShards && n*targetShardLen < max {
		n <<= 1
	}
	return &shardedMap[K, V]{max: max, seed: shardSeed{rand.Uint64(), rand.Uint64()}, shards: make([]atomic.Pointer[[]shardEntry[K, V]], n)}
}

func (m *shardedMap[K, V]) shard(k K) *atomic.Pointer[[]shardEntry[K, V]] {
	return &m.shards[k.hash(m.seed)&uint64(len(m.shards)-1)]
}

func (m *shardedMap[K, V]) get(k K) (V, bool) {
	if p := m.shard(k).Load(); p != nil {
		for i := range *p {
			if e := &(*p)[i]; e.k == k {
				return e.v, true
			}
		}
	}
	var zero V
	return zero, false
}

// set stores k=v unless it is there already; it reports false when the
// table is full and k is new.
func (m *shardedMap[K, V]) set(k K, v V) bool {
	if old, ok := m.get(k); ok && old == v {
		return true
	}
	s := m.shard(k)
	m.mu.Lock()
	defer m.mu.Unlock()
	var cur []shardEntry[K, V] // nil: an empty shard
	if p := s.Load(); p != nil {
		cur = *p
	}
	at := -1
	for i := range cur {
		if cur[i].k == k {
			at = i
			break
		}
	}
	if at >= 0 && cur[at].v == v {
		return true
	}
	if at < 0 && m.n.Load() >= int64(m.max) {
		return false
	}
	var next []shardEntry[K, V]
	if at >= 0 {
		next = slices.Clone(cur)
		next[at].v = v
	} else {
		next = make([]shardEntry[K, V], len(cur), len(cur)+1)
		copy(next, cur)
		next = append(next, shardEntry[K, V]{k, v})
		m.n.Add(1)
	}
	s.Store(&next)
	return true
}

func (m *shardedMap[K, V]) len() int { return int(m.n.Load()) }

// all yields every entry, one shard's snapshot at a time.
func (m *shardedMap[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for i := range m.shards {
			p := m.shards[i].Load()
			if p == nil {
				continue
			}
			for _, e := range *p {
				if !yield(e.k, e.v) {
					return
				}
			}
		}
	}
}

// neighKey names an overlay address on one network.
type neighKey struct {
	vni uint32
	ip  netip.Addr
}

func (k neighKey) hash(seed shardSeed) uint64 {
	a := k.ip.As16()
	hi, lo := binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:])
	return mix(hi^uint64(k.vni)<<32^seed[0], lo^seed[1])
}

// macKey names a MAC on one network (L2 mode).
type macKey struct {
	vni uint32
	mac vxlan.MAC
}

func (k macKey) hash(seed shardSeed) uint64 {
	m := k.mac
	mac := uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
	return mix(uint64(k.vni)^seed[0], mac^seed[1])
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
