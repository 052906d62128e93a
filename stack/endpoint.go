package stack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/overlayd/overlayd/packet"
)

// linkEndpoint is the gVisor link endpoint under the Netstack. Packets the
// stack sends (outbound) are queued, by reference, on a buffered channel
// that Netstack.Read drains; packets Netstack.Write injects (inbound) go
// to the stack's dispatcher through gVisor's GRO, which coalesces the TCP
// segments of one Write. It carries bare IP packets: no link header, no
// link address; see netstack_gso.go for its segmentation offload and
// Capabilities for the checksums.
type linkEndpoint struct {
	mtu uint32

	// queue holds outbound packets; each holds one reference that the
	// reader (or drain) releases.
	queue chan *gvstack.PacketBuffer
	// done is closed by close; Read returns ErrClosed once it is.
	done chan struct{}

	// mu guards dispatcher and closed. WritePackets holds it for reading
	// so that close, once it holds it for writing, knows no packet can be
	// queued after its drain.
	mu         sync.RWMutex
	dispatcher gvstack.NetworkDispatcher
	closed     bool

	stats *counters
	gro   groPool // Write's coalescing engines
}

var _ gvstack.LinkEndpoint = (*linkEndpoint)(nil)

// counters are the Netstack's packet counters.
type counters struct {
	outPackets, outBytes atomic.Uint64
	inPackets, inBytes   atomic.Uint64
	outGSO               atomic.Uint64
	dropQueueFull        atomic.Uint64
	dropMalformed        atomic.Uint64
	dropTooBig           atomic.Uint64
	dropChecksum         atomic.Uint64
}

func newLinkEndpoint(mtu uint32, queueLen int, c *counters) *linkEndpoint {
	return &linkEndpoint{
		mtu:   mtu,
		queue: make(chan *gvstack.PacketBuffer, queueLen),
		done:  make(chan struct{}),
		stats: c,
	}
}

// WritePackets implements gvstack.LinkWriter: it queues the stack's
// outbound packets for Read. When the queue is full the rest of the list is
// dropped and counted; TCP retransmits.
func (e *linkEndpoint) WritePackets(pkts gvstack.PacketBufferList) (int, tcpip.Error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return 0, &tcpip.ErrClosedForSend{}
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		// The send's operand, and so IncRef, is evaluated even when the
		// queue is full; default gives that reference back.
		select {
		case e.queue <- pkt.IncRef():
			n++
		default:
			pkt.DecRef()
			e.stats.dropQueueFull.Add(uint64(pkts.Len() - n))
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			return n, nil
		}
	}
	return n, nil
}

// inject hands one inbound IP packet to the stack through g, which may
// hold it to coalesce it with the next ones until its Flush. partial says
// p is an IPv4 TCP segment whose checksum is left undone: only its IP
// header checksum is checked. It reports whether the packet passed the
// header checks; gVisor copies it, so p is the caller's again on return.
func (e *linkEndpoint) inject(g *gro.GRO, p []byte, partial bool) bool {
	var proto tcpip.NetworkProtocolNumber
	switch header.IPVersion(p) {
	case header.IPv4Version:
		if !header.IPv4(p).IsValid(len(p)) {
			return false
		}
		proto = header.IPv4ProtocolNumber
	case header.IPv6Version:
		if !header.IPv6(p).IsValid(len(p)) {
			return false
		}
		proto = header.IPv6ProtocolNumber
	default:
		return false
	}
	if partial && IsPartialCandidate(p) {
		if !header.IPv4(p).IsChecksumValid() {
			e.stats.dropChecksum.Add(1)
			return true
		}
	} else if !checksumsValid(p, proto) {
		e.stats.dropChecksum.Add(1)
		return true
	}
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		Payload: buffer.MakeWithData(p),
	})
	pkt.NetworkProtocolNumber = proto
	pkt.RXChecksumValidated = true
	g.Enqueue(pkt)
	pkt.DecRef()
	return true
}

// checksumsValid checks what a NIC with receive checksum offload checks,
// since the endpoint says it has one (Capabilities): the IPv4 header
// checksum and the TCP, UDP, ICMPv4 or ICMPv6 checksum of an unfragmented
// packet (a UDP checksum of 0 over IPv4 means none; over IPv6 it is
// wrong), behind an IPv6 packet's extension headers too (walked by
// packet.IP, with its bound of packet.MaxExtHeaders).
// gVisor then checks none of them again, and its GRO can coalesce TCP
// segments without recomputing them. The transport checksum of a
// fragment cannot be checked here and is not checked: between overlayd
// nodes the underlay's UDP checksum covers the whole inner packet. An
// IPv6 packet whose extension headers cannot be walked to the end is not
// valid.
func checksumsValid(p []byte, proto tcpip.NetworkProtocolNumber) bool {
	var src, dst tcpip.Address
	var l4 []byte
	var tp tcpip.TransportProtocolNumber
	if proto == header.IPv4ProtocolNumber {
		ip := header.IPv4(p)
		if !ip.IsChecksumValid() {
			return false
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return true
		}
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
		l4 = p[ip.HeaderLength():ip.TotalLength()]
		tp = ip.TransportProtocol()
	} else {
		// packet's view walks the extension headers, with its bound.
		var v packet.IP
		if !v.ParseHeader(p) {
			return false
		}
		if v.Fragment() {
			return true // as an IPv4 fragment
		}
		ip := header.IPv6(p)
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
		l4 = v.Payload()
		tp = tcpip.TransportProtocolNumber(v.Proto)
	}
	var off int
	switch tp {
	case header.TCPProtocolNumber:
		off = header.TCPChecksumOffset
	case header.UDPProtocolNumber:
		if proto == header.IPv4ProtocolNumber && len(l4) >= header.UDPMinimumSize && header.UDP(l4).Checksum() == 0 {
			return true
		}
		off = 6 // the UDP checksum field
	case header.ICMPv4ProtocolNumber:
		if proto != header.IPv4ProtocolNumber {
			return true
		}
		return len(l4) >= header.ICMPv4MinimumSize && checksum.Checksum(l4, 0) == 0xffff
	case header.ICMPv6ProtocolNumber:
		if proto != header.IPv6ProtocolNumber {
			return true
		}
		off = header.ICMPv6ChecksumOffset
	default:
		return true // no checksum to check
	}
	if len(l4) < off+2 {
		return false
	}
	xsum := header.PseudoHeaderChecksum(tp, src, dst, uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}

// copyPacket copies pkt's bytes into dst and returns how many it copied,
// or -1 if dst is too short. It walks the packet's views in place, without
// gathering them into a new slice.
func copyPacket(dst []byte, pkt *gvstack.PacketBuffer) int {
	size := pkt.Size()
	if size > len(dst) {
		return -1
	}
	vl, skip := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil && n < size; v = v.Next() {
		s := v.AsSlice()
		if skip >= len(s) {
			skip -= len(s)
			continue
		}
		n += copy(dst[n:size], s[skip:])
		skip = 0
	}
	return n
}

// close stops the endpoint: WritePackets refuses packets from now on and
// the queued ones are released. Safe to call twice.
func (e *linkEndpoint) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.done)
	e.mu.Unlock()
}

// drain releases the queued packets. Call it after close, once no reader
// is left.
func (e *linkEndpoint) drain() {
	for {
		select {
		case pkt := <-e.queue:
			pkt.DecRef()
		default:
			return
		}
	}
}

// MTU implements gvstack.NetworkLinkEndpoint; gVisor derives the TCP MSS
// from it.
func (e *linkEndpoint) MTU() uint32 { return e.mtu }

// SetMTU implements gvstack.NetworkLinkEndpoint. The MTU is fixed at
// creation; the call is ignored.
func (e *linkEndpoint) SetMTU(uint32) {}

// MaxHeaderLength implements gvstack.NetworkLinkEndpoint: no link header.
func (*linkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements gvstack.NetworkLinkEndpoint: no link address.
func (*linkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements gvstack.NetworkLinkEndpoint; ignored.
func (*linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements gvstack.NetworkLinkEndpoint: receive checksum
// offload, because inject checks the checksums (checksumsValid) before the
// stack sees a packet. The stack checksums what it sends (Read completes
// the checksums of GSO segments).
func (*linkEndpoint) Capabilities() gvstack.LinkEndpointCapabilities {
	return gvstack.CapabilityRXChecksumOffload
}

// Attach implements gvstack.NetworkLinkEndpoint.
func (e *linkEndpoint) Attach(d gvstack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements gvstack.NetworkLinkEndpoint.
func (e *linkEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait implements gvstack.NetworkLinkEndpoint: the endpoint starts no
// goroutines.
func (*linkEndpoint) Wait() {}

// ARPHardwareType implements gvstack.NetworkLinkEndpoint.
func (*linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements gvstack.NetworkLinkEndpoint: no link header.
func (*linkEndpoint) AddHeader(*gvstack.PacketBuffer) {}

// ParseHeader implements gvstack.NetworkLinkEndpoint: no link header.
func (*linkEndpoint) ParseHeader(*gvstack.PacketBuffer) bool { return true }

// Close implements gvstack.NetworkLinkEndpoint; gVisor calls it when the
// NIC is removed.
func (e *linkEndpoint) Close() { e.close() }

// SetOnCloseAction implements gvstack.NetworkLinkEndpoint; there is no
// device to destroy.
func (*linkEndpoint) SetOnCloseAction(func()) {}
