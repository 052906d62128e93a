package dns

import (
	"container/list"
	"slices"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// cacheKey identifies a cached answer: the question (name lower case) and
// the DNSSEC bits that change what an upstream returns.
type cacheKey struct {
	name   string
	qtype  uint16
	qclass uint16
	do, cd bool
}

type cacheEntry struct {
	key     cacheKey
	msg     *mdns.Msg // response without OPT; never modified after insertion
	stored  time.Time
	expires time.Time

	// aged is msg with TTLs lowered by agedSecs, shared by every hit in
	// that second; guarded by cache.mu, read-only once published.
	aged     *mdns.Msg
	agedSecs uint32
}

// cache is a bounded LRU of upstream answers that expire with their TTL.
type cache struct {
	max int
	now func() time.Time

	mu    sync.Mutex // guards lru and items
	lru   *list.List // of *cacheEntry, most recent first
	items map[cacheKey]*list.Element
}

func newCache(max int, now func() time.Time) *cache {
	return &cache{max: max, now: now, lru: list.New(), items: make(map[cacheKey]*list.Element)}
}

// get returns the cached answer for k with TTLs lowered by its age, or nil.
// The answer is shared with other callers and must not be modified (its
// section slices are clipped, so appending to them copies).
func (c *cache) get(k cacheKey) *mdns.Msg {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.items, k)
		return nil
	}
	c.lru.MoveToFront(el)
	age := uint32(now.Sub(e.stored) / time.Second)
	if e.aged != nil && e.agedSecs == age {
		return e.aged
	}
	m := e.msg.Copy()
	for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	m.Answer, m.Ns, m.Extra = slices.Clip(m.Answer), slices.Clip(m.Ns), slices.Clip(m.Extra)
	e.aged, e.agedSecs = m, age
	return m
}

// put stores m for k for ttl, evicting the least recently used entry when
// full.
func (c *cache) put(k cacheKey, m *mdns.Msg, ttl time.Duration) {
	if ttl <= 0 || c.max <= 0 {
		return
	}
	now := c.now()
	e := &cacheEntry{key: k, msg: m, stored: now, expires: now.Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.items[k] = c.lru.PushFront(e)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// cacheTTL is how long m may be cached: the smallest TTL of its records for
// a positive answer; for a negative answer (NXDOMAIN, or NOERROR with no
// answer) the smaller of the SOA's TTL and MINIMUM (RFC 2308 §5), and not at
// all without an SOA. Other rcodes and truncated answers are not cached. The
// result is capped at max.
func cacheTTL(m *mdns.Msg, max time.Duration) time.Duration {
	if m.Truncated || m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError {
		return 0
	}
	var ttl uint32
	found := false
	if m.Rcode == mdns.RcodeNameError || len(m.Answer) == 0 {
		for _, rr := range m.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				ttl = min(soa.Hdr.Ttl, soa.Minttl)
				found = true
				break
			}
		}
	} else {
		for _, sec := range [][]mdns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				if rr.Header().Rrtype == mdns.TypeOPT {
					continue
				}
				if !found || rr.Header().Ttl < ttl {
					ttl = rr.Header().Ttl
					found = true
				}
			}
		}
	}
	if !found {
		return 0
	}
	return min(time.Duration(ttl)*time.Second, max)
}
