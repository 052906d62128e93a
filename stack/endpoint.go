package stack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkEndpoint is the gVisor link endpoint under the Netstack. Packets the
// stack sends (outbound) are queued, by reference, on a buffered channel
// that Netstack.Read drains; packets Netstack.Write injects (inbound) go
// straight to the stack's dispatcher. It carries bare IP packets: no link
// header, no link address, no offloads, so gVisor computes and checks every
// checksum itself.
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
}

var _ gvstack.LinkEndpoint = (*linkEndpoint)(nil)

// counters are the Netstack's packet counters.
type counters struct {
	outPackets, outBytes atomic.Uint64
	inPackets, inBytes   atomic.Uint64
	dropQueueFull        atomic.Uint64
	dropMalformed        atomic.Uint64
	dropTooBig           atomic.Uint64
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

// inject hands one inbound IP packet to the stack. It reports whether the
// packet passed the header checks; gVisor copies it, so p is the caller's
// again on return.
func (e *linkEndpoint) inject(d gvstack.NetworkDispatcher, p []byte) bool {
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
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		Payload: buffer.MakeWithData(p),
	})
	d.DeliverNetworkPacket(proto, pkt)
	pkt.DecRef()
	return true
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

// Capabilities implements gvstack.NetworkLinkEndpoint: none, so the stack
// checksums what it sends and verifies what it receives.
func (*linkEndpoint) Capabilities() gvstack.LinkEndpointCapabilities { return 0 }

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
