package stack

// Segmentation and coalescing inside the Netstack, the way Tailscale's
// netstack went from 2 to 10 Gbit/s: gVisor's TCP hands the link endpoint
// segments of up to gsoMaxSize bytes (host GSO: one TCP header, a partial
// checksum) and Read cuts them into MTU-sized packets with full
// checksums; Write coalesces the TCP packets of one batch (gVisor's GRO)
// before the stack sees them. Either way gVisor's TCP handles one large
// segment where it handled dozens of small ones: per-segment work (the
// sender's and receiver's state machines, ACKs, refcounts, queue locks)
// is what its profile is made of.

import (
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
)

// gsoMaxSize is the largest segment gVisor's TCP hands the endpoint (its
// headers included): what fits an IPv4 total length.
const gsoMaxSize = 1<<16 - 1

// GSOMaxSize implements gvstack.GSOEndpoint.
func (e *linkEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements gvstack.GSOEndpoint: "host" GSO, which gives the
// endpoint the whole segment with a partial checksum; Read segments it.
// Not above an MTU of half gsoMaxSize: a segment would be one packet and
// a tail (gVisor fills segments to gsoMaxSize, not to a multiple of the
// MSS), where without GSO it is one packet.
func (e *linkEndpoint) SupportedGSO() gvstack.SupportedGSO {
	if 2*e.mtu > gsoMaxSize {
		return gvstack.GSONotSupported
	}
	return gvstack.HostGSOSupported
}

var _ gvstack.GSOEndpoint = (*linkEndpoint)(nil)

// gsoSegments is how many packets pkt becomes on Read: 1, or more for a
// TCP segment longer than its MSS.
func gsoSegments(pkt *gvstack.PacketBuffer) int {
	g := pkt.GSOOptions
	if g.Type == gvstack.GSONone || g.MSS == 0 {
		return 1
	}
	payload := pkt.Size() - pkt.HeaderSize()
	if payload <= int(g.MSS) {
		return 1
	}
	return (payload + int(g.MSS) - 1) / int(g.MSS)
}

// viewReader reads a packet's bytes in order across its views.
type viewReader struct {
	v    *buffer.View
	skip int // bytes of v already read
}

func newViewReader(pkt *gvstack.PacketBuffer) viewReader {
	vl, skip := pkt.AsViewList()
	r := viewReader{v: vl.Front()}
	r.discard(skip)
	return r
}

// discard skips n bytes.
func (r *viewReader) discard(n int) {
	for n > 0 && r.v != nil {
		s := r.v.Size() - r.skip
		if n < s {
			r.skip += n
			return
		}
		n -= s
		r.v, r.skip = r.v.Next(), 0
	}
}

// read fills dst and reports whether the packet had that many bytes.
func (r *viewReader) read(dst []byte) bool {
	for len(dst) > 0 {
		if r.v == nil {
			return false
		}
		c := copy(dst, r.v.AsSlice()[r.skip:])
		dst = dst[c:]
		r.skip += c
		if r.skip == r.v.Size() {
			r.v, r.skip = r.v.Next(), 0
		}
	}
	return true
}

// gsoState is a TCP segment being cut into packets by Read, one packet
// per call of next; it carries over between Reads when the caller's
// buffers run out mid-segment.
type gsoState struct {
	pkt     *gvstack.PacketBuffer // holds a reference; nil: none
	seg, n  int                   // next segment, and how many there are
	hdrLen  int                   // network + transport header bytes
	netLen  int                   // network header bytes
	mss     int
	payload int // payload bytes in pkt
	r       viewReader
	v4      bool
	seq0    uint32
	id0     uint16
	flags0  header.TCPFlags
}

// start begins cutting pkt (with n > 1 segments, or a single GSO segment
// whose checksum is to be completed). It takes pkt's reference.
func (g *gsoState) start(pkt *gvstack.PacketBuffer, n int) {
	nh, th := pkt.NetworkHeader().Slice(), pkt.TransportHeader().Slice()
	*g = gsoState{
		pkt:     pkt,
		n:       n,
		netLen:  len(nh),
		hdrLen:  len(nh) + len(th),
		mss:     int(pkt.GSOOptions.MSS),
		payload: pkt.Size() - len(nh) - len(th),
		v4:      pkt.GSOOptions.Type == gvstack.GSOTCPv4,
		r:       newViewReader(pkt),
	}
	if len(th) >= header.TCPMinimumSize {
		t := header.TCP(th)
		g.seq0, g.flags0 = t.SequenceNumber(), t.Flags()
	}
	if g.v4 && len(nh) >= header.IPv4MinimumSize {
		g.id0 = header.IPv4(nh).ID()
	}
	if n == 1 {
		g.mss = g.payload
	}
	g.r.discard(g.hdrLen)
}

// next writes the next segment into dst and returns its size, or -1 if
// dst is too short or the packet is not a TCP segment (the segment is
// skipped: it counts as too big). done reports that it was the last.
// With leave, an IPv4 segment's TCP checksum is left undone (its field
// holds the pseudo-header's sum, as PartialReader says) and partial is
// set.
func (g *gsoState) next(dst []byte, leave bool) (size int, partial, done bool) {
	seg := g.seg
	g.seg++
	done = g.seg == g.n
	pay := min(g.mss, g.payload-seg*g.mss)
	size = g.hdrLen + pay
	if size > len(dst) || g.hdrLen-g.netLen < header.TCPMinimumSize || pay < 0 {
		g.r.discard(max(pay, 0))
		return -1, false, done
	}
	d := dst[:size]
	nh, th := g.pkt.NetworkHeader().Slice(), g.pkt.TransportHeader().Slice()
	copy(d, nh)
	copy(d[g.netLen:], th)
	if !g.r.read(d[g.hdrLen:]) {
		return -1, false, true
	}
	tcp := header.TCP(d[g.netLen:])
	var xsum uint16
	if g.v4 {
		ip := header.IPv4(d)
		ip.SetTotalLength(uint16(size))
		ip.SetID(g.id0 + uint16(seg))
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		xsum = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(size-g.netLen))
	} else {
		ip := header.IPv6(d)
		ip.SetPayloadLength(uint16(size - header.IPv6MinimumSize))
		xsum = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(size-g.netLen))
	}
	tcp.SetSequenceNumber(g.seq0 + uint32(seg*g.mss))
	flags := g.flags0
	if !done {
		flags &^= header.TCPFlagFin | header.TCPFlagPsh
	}
	if seg > 0 {
		flags &^= header.TCPFlagCwr
	}
	tcp.SetFlags(uint8(flags))
	if leave && g.v4 {
		tcp.SetChecksum(xsum)
		return size, true, done
	}
	tcp.SetChecksum(0)
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	return size, false, done
}

// release drops the segment's reference.
func (g *gsoState) release() {
	if g.pkt != nil {
		g.pkt.DecRef()
		g.pkt = nil
	}
}

// groPool holds the GRO engines Write coalesces with, one per concurrent
// Write (each engine is single-threaded; it is empty between Writes).
type groPool struct{ p sync.Pool }

func (gp *groPool) get(d gvstack.NetworkDispatcher) *gro.GRO {
	g, _ := gp.p.Get().(*gro.GRO)
	if g == nil {
		g = new(gro.GRO)
		g.Init(true)
	}
	g.Dispatcher = d
	return g
}

func (gp *groPool) put(g *gro.GRO) {
	g.Flush()
	g.Dispatcher = nil
	gp.p.Put(g)
}
