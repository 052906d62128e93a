package router

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/overlayd/overlayd/stack"
)

// vtepCaps is the set of VTEPs that take datagrams with vxlan.FlagPartial
// (TCP checksums still to be done): those whose last ARP carried
// overlayd's trailer saying so. A VTEP that answers without it (a kernel
// vxlan device, an older overlayd) is taken out again. Read per batch,
// written on ARP only: a copy-on-write map behind an atomic pointer.
type vtepCaps struct {
	mu sync.Mutex // serialises set
	m  atomic.Pointer[map[netip.AddrPort]struct{}]
}

// partial reports whether vtep takes FlagPartial.
func (c *vtepCaps) partial(vtep netip.AddrPort) bool {
	m := c.m.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[vtep]
	return ok
}

// set records whether vtep takes FlagPartial.
func (c *vtepCaps) set(vtep netip.AddrPort, partial bool) {
	if c.partial(vtep) == partial {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[netip.AddrPort]struct{})
	if m := c.m.Load(); m != nil {
		for v := range *m {
			next[v] = struct{}{}
		}
	}
	if partial {
		next[vtep] = struct{}{}
	} else {
		delete(next, vtep)
	}
	c.m.Store(&next)
}

// resumPartial rewrites the checksum field of a partial TCP segment from
// its pseudo-header, after lb's NAT: the field of a partial segment is the
// pseudo-header's sum alone (addresses, protocol, length; never the
// ports), which the NAT's incremental update, made for complete checksums,
// gets wrong.
func resumPartial(pkt []byte) {
	ihl := int(pkt[0]&0xf) * 4
	if pkt[0]>>4 == 6 {
		ihl = 40 // IsPartialCandidate6: TCP right after the fixed header
	}
	binary.BigEndian.PutUint16(pkt[ihl+16:], stack.PseudoSum(pkt, len(pkt)-ihl))
}

// completePartial finishes a partial packet's checksum, for a device or a
// peer that does not take partial segments.
func completePartial(pkt []byte) { stack.CompleteChecksum(pkt) }
