package ipam

// This file holds the ring of owned ranges: a range's table value, and
// the ring every node derives from the ranges table.

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
)

// rng is one range of a pool.
type rng struct {
	Pool       byte
	Start, End uint64 // offsets [Start, End)
	Owner      string
	Version    uint64
	Creator    string // creator of the network the range derives from
	writer     string
}

func (r rng) key(writer string) string {
	return string(r.Pool) + "/" + strconv.FormatUint(r.Start, 10) + "/" + writer
}

func (r rng) encode() []byte {
	b := []byte{1, r.Pool}
	b = binary.AppendUvarint(b, r.Start)
	b = binary.AppendUvarint(b, r.End)
	b = binary.AppendUvarint(b, r.Version)
	b = append(b, byte(len(r.Owner)))
	b = append(b, r.Owner...)
	b = append(b, byte(len(r.Creator)))
	return append(b, r.Creator...)
}

func decodeRange(b []byte) (rng, bool) {
	var r rng
	if len(b) < 2 || b[0] != 1 {
		return r, false
	}
	r.Pool = b[1]
	b = b[2:]
	for _, p := range []*uint64{&r.Start, &r.End, &r.Version} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return r, false
		}
		*p, b = v, b[n:]
	}
	for _, p := range []*string{&r.Owner, &r.Creator} {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return r, false
		}
		*p, b = string(b[1:1+int(b[0])]), b[1+int(b[0]):]
	}
	return r, len(b) == 0 && r.Start < r.End && r.Owner != ""
}

// v6 reports whether the range is of an IPv6 pool.
func (r rng) v6() bool { return poolFamily(r.Pool) == IPv6 }

// holds reports whether s lies in the range.
func (r rng) holds(s slot) bool { return s.v6 == r.v6() && r.Start <= s.off && s.off < r.End }

func (r rng) free(leases map[slot]Lease) uint64 {
	n := r.End - r.Start
	for s := range leases {
		if r.holds(s) {
			n--
		}
	}
	return n
}

// ringLocked derives the ring: per (pool, start) the version with the
// highest (version, writer), of the network's winning creation, inside the
// pool.
func (p *IPAM) ringLocked(l *layout) []rng {
	best := map[[2]uint64]rng{}
	for _, e := range p.t.ListAll(tableRanges, l.Name) {
		r, ok := decodeRange(e.Value)
		if !ok || r.Creator != l.Creator {
			continue
		}
		if lo, hi, ok := l.pool(r.Pool); !ok || r.Start < lo || r.End > hi {
			continue
		}
		r.writer = e.Owner
		k := [2]uint64{uint64(r.Pool), r.Start}
		if b, ok := best[k]; !ok || r.Version > b.Version || r.Version == b.Version && r.writer > b.writer {
			best[k] = r
		}
	}
	ring := make([]rng, 0, len(best))
	for _, r := range best {
		ring = append(ring, r)
	}
	slices.SortFunc(ring, func(a, b rng) int {
		if c := cmp.Compare(a.Pool, b.Pool); c != 0 {
			return c
		}
		return cmp.Compare(a.Start, b.Start)
	})
	return ring
}

func (p *IPAM) putRangeLocked(network string, r rng) error {
	if err := p.t.Put(tableRanges, network, r.key(p.name), r.encode()); err != nil {
		return fmt.Errorf("ipam: network %q: write range: %w", network, err)
	}
	return nil
}
