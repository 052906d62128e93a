package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// NetstackOptions configure NewNetstack.
type NetstackOptions struct {
	// Addrs are the stack's own addresses, with the prefix they sit in.
	// At least one is required unless AddressesLater is set;
	// SetAddresses changes them later.
	Addrs []netip.Prefix
	// AddressesLater lets the stack start with no address, for a node
	// that gains its addresses as it joins networks.
	AddressesLater bool
	// MTU is the largest IP packet the stack sends or accepts; TCP's MSS
	// follows it. Default 1450 (a 1500-byte underlay less VXLAN's 50).
	MTU int
	// Routes are extra prefixes reached through the device, on top of the
	// Addrs' own prefixes, which are always routed.
	Routes []netip.Prefix
	// Logger receives lifecycle logs; nil means none.
	Logger *zap.Logger
	// QueueLen is how many outbound packets wait for Read before more are
	// dropped. Default 4096.
	QueueLen int
}

const (
	defaultMTU      = 1450
	minMTU6         = 1280 // IPv6's minimum link MTU (RFC 8200 §5)
	defaultQueueLen = 4096
	netstackBatch   = 128
	nicID           = tcpip.NICID(1)

	// TCP buffer ranges, in the manner of Tailscale's netstack tuning:
	// small minimums, 1 MiB defaults, room to grow to 8 MiB on fast links.
	tcpBufMin     = 4 << 10
	tcpBufDefault = 1 << 20
	tcpBufMax     = 8 << 20
)

// NetstackStats are the Netstack's counters. Outbound packets are those
// the stack sends (returned by Read); inbound are those given to Write.
type NetstackStats struct {
	OutPackets, OutBytes uint64
	InPackets, InBytes   uint64
	// OutGSO counts the TCP segments larger than the MTU that the stack
	// handed over (GSO) and Read cut into OutPackets.
	OutGSO uint64
	// DropQueueFull counts outbound packets dropped because Read did not
	// keep up and the queue was full.
	DropQueueFull uint64
	// DropMalformed counts Write input that is not a well-formed IPv4 or
	// IPv6 header (version, lengths).
	DropMalformed uint64
	// DropTooBig counts outbound packets larger than the Read buffer.
	DropTooBig uint64
	// DropChecksum counts Write input with a bad IPv4 header, TCP, UDP
	// or ICMP checksum, or an IPv6 packet whose extension headers do not
	// lead to its transport header within packet.MaxExtHeaders headers
	// and the packet.
	DropChecksum uint64
	// StackMalformed counts packets that passed Write's checks but
	// gVisor then found malformed (bad transport headers).
	StackMalformed uint64
}

// Netstack is the embedded gVisor TCP/IP stack as an L3 Device plus a
// socket API (DialContext, Listen, ListenPacket) on its addresses.
//
// Read returns the packets the stack sends; Write hands it the packets it
// receives. It accepts packets for its own addresses only (no spoofing, no
// promiscuous mode, no forwarding).
type Netstack struct {
	s    *gvstack.Stack
	ep   *linkEndpoint
	mtu  int
	log  *zap.Logger
	cnt  counters
	has4 atomic.Bool
	has6 atomic.Bool

	addrMu sync.Mutex     // guards addrs, routes and the stack's address and route changes
	addrs  []netip.Prefix // own addresses, unmapped
	routes []netip.Prefix // extra routes from NetstackOptions

	closeOnce sync.Once
	// readMu is held by Read; Close takes it to know no Read is running
	// before it releases the queued packets.
	readMu sync.Mutex
	gso    gsoState // guarded by readMu: the segment Read is cutting
}

var (
	_ Device        = (*Netstack)(nil)
	_ AddressSetter = (*Netstack)(nil)
	_ PartialReader = (*Netstack)(nil)
	_ PartialWriter = (*Netstack)(nil)
)

// NewNetstack builds a stack with opts' addresses and routes.
func NewNetstack(opts NetstackOptions) (*Netstack, error) {
	if len(opts.Addrs) == 0 && !opts.AddressesLater {
		return nil, errors.New("stack: netstack needs at least one address")
	}
	if opts.MTU == 0 {
		opts.MTU = defaultMTU
	}
	if opts.MTU < minMTU6 && hasV6(opts.Addrs) || opts.MTU < 576 || opts.MTU > 65535 {
		return nil, fmt.Errorf("stack: netstack MTU %d out of range (576..65535, %d with IPv6)", opts.MTU, minMTU6)
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = defaultQueueLen
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	n := &Netstack{mtu: opts.MTU, log: opts.Logger.Named("netstack")}
	n.ep = newLinkEndpoint(uint32(opts.MTU), opts.QueueLen, &n.cnt)
	n.s = gvstack.New(gvstack.Options{
		NetworkProtocols:   []gvstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocolWithOptions(ipv6Options)},
		TransportProtocols: []gvstack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		// Connections from the stack to its own addresses stay inside it.
		HandleLocal: true,
	})
	if err := n.configure(opts); err != nil {
		n.s.Destroy()
		n.ep.close()
		n.ep.drain()
		return nil, err
	}
	n.log.Info("netstack up", zap.Stringers("addrs", opts.Addrs), zap.Int("mtu", opts.MTU))
	return n, nil
}

// ipv6Options are the netstack's IPv6: an address is usable as soon as
// it is added, and the stack sends nothing of its own accord. The link
// is point-to-point with no link addresses, and every address on it
// comes from IPAM, conflict-free: no duplicate address detection (what a
// kernel device gets with IFA_F_NODAD), no router solicitations or
// SLAAC, no MLD reports, no link-local address. Echo requests are
// answered and errors (packet too big, unreachable) handled as gVisor
// does by default.
var ipv6Options = ipv6.Options{
	DADConfigs:       gvstack.DADConfigurations{DupAddrDetectTransmits: 0},
	NDPConfigs:       ipv6.NDPConfigurations{MaxRtrSolicitations: 0, HandleRAs: ipv6.HandlingRAsDisabled},
	MLD:              ipv6.MLDOptions{Enabled: false},
	AutoGenLinkLocal: false,
}

func hasV6(ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}

func (n *Netstack) configure(opts NetstackOptions) error {
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	// Reno, not CUBIC: this gVisor's CUBIC lets an ACK shrink the
	// congestion window, down to 0 after two losses close together (a
	// route withdrawn for 100 ms does it). A sender with cwnd 0 and
	// nothing in flight sends nothing and arms no timer: its flow hangs
	// for good, as issue 9 item 5 found. gVisor fixed it upstream in
	// 2026 (google/gvisor#13958); Reno never goes below one segment.
	cc := tcpip.CongestionControlOption("reno")
	tcpOpts := []tcpip.SettableTransportProtocolOption{
		&sack,
		&moderate,
		&tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpBufMax},
		&tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: tcpBufDefault, Max: tcpBufMax},
		&cc,
	}
	for _, o := range tcpOpts {
		if err := n.s.SetTransportProtocolOption(tcp.ProtocolNumber, o); err != nil {
			return fmt.Errorf("stack: netstack TCP option %T: %v", o, err)
		}
	}
	if err := n.s.CreateNIC(nicID, n.ep); err != nil {
		return fmt.Errorf("stack: netstack create NIC: %v", err)
	}
	for _, p := range opts.Routes {
		if !p.IsValid() {
			return fmt.Errorf("stack: netstack route %v is not valid", p)
		}
	}
	n.routes = append([]netip.Prefix(nil), opts.Routes...)
	return n.SetAddresses(opts.Addrs)
}

// SetAddresses implements AddressSetter: the stack's own addresses become
// addrs, and its route table their prefixes plus NetstackOptions.Routes.
// A host-length prefix (/32, /128) is a service address: the stack answers
// on it but never picks it as the source of a connection it opens.
func (n *Netstack) SetAddresses(addrs []netip.Prefix) error {
	want := make(map[netip.Addr]netip.Prefix, len(addrs))
	for _, p := range addrs {
		if !p.IsValid() {
			return fmt.Errorf("stack: netstack address %v is not valid", p)
		}
		if n.mtu < minMTU6 && p.Addr().Is6() && !p.Addr().Is4In6() {
			return fmt.Errorf("stack: netstack address %v: the MTU %d is below IPv6's minimum of %d; raise it to carry IPv6", p, n.mtu, minMTU6)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
		want[p.Addr()] = p
	}
	n.addrMu.Lock()
	defer n.addrMu.Unlock()
	var kept []netip.Prefix
	for _, p := range n.addrs {
		if w, ok := want[p.Addr()]; ok && w == p {
			kept = append(kept, p)
			delete(want, p.Addr())
			continue
		}
		if err := n.s.RemoveAddress(nicID, tcpip.AddrFromSlice(p.Addr().AsSlice())); err != nil {
			return fmt.Errorf("stack: netstack remove address %v: %v", p, err)
		}
	}
	n.addrs = kept
	for _, p := range addrs {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits())
		if _, ok := want[p.Addr()]; !ok {
			continue
		}
		delete(want, p.Addr())
		proto := ipv4.ProtocolNumber
		if p.Addr().Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{
			Protocol: proto,
			AddressWithPrefix: tcpip.AddressWithPrefix{
				Address:   tcpip.AddrFromSlice(p.Addr().AsSlice()),
				PrefixLen: p.Bits(),
			},
		}
		var props gvstack.AddressProperties
		if p.IsSingleIP() {
			// A service address (a network's DNS address): answered, but
			// never the source of the stack's own connections, which
			// would otherwise pick it by longest matching prefix.
			props.PEB = gvstack.NeverPrimaryEndpoint
		}
		if err := n.s.AddProtocolAddress(nicID, pa, props); err != nil {
			return fmt.Errorf("stack: netstack add address %v: %v", p, err)
		}
		n.addrs = append(n.addrs, p)
	}
	has4, has6 := false, false
	for _, p := range n.addrs {
		has4 = has4 || p.Addr().Is4()
		has6 = has6 || p.Addr().Is6()
	}
	seen := map[netip.Prefix]bool{}
	var routes []tcpip.Route
	for _, p := range append(append([]netip.Prefix(nil), n.addrs...), n.routes...) {
		p = p.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		a := tcpip.AddrFromSlice(p.Addr().AsSlice())
		routes = append(routes, tcpip.Route{
			Destination: tcpip.AddressWithPrefix{Address: a, PrefixLen: p.Bits()}.Subnet(),
			NIC:         nicID,
		})
	}
	n.has4.Store(has4)
	n.has6.Store(has6)
	n.s.SetRouteTable(routes)
	return nil
}

// Families reports whether the stack has an address of each family now:
// the families it can open connections in. The doors ask it (an optional
// capability of their Dialer) to try a name's addresses of a family the
// stack has first.
func (n *Netstack) Families() (ipv4, ipv6 bool) { return n.has4.Load(), n.has6.Load() }

// Read implements Device: it blocks until the stack has sent at least one
// packet, then copies up to len(bufs) queued packets into bufs[i][offset:].
// A packet larger than len(bufs[i])-offset is dropped and counted.
func (n *Netstack) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	return n.read(bufs, sizes, nil, offset)
}

// ReadPartial implements PartialReader: Read, but the IPv4 TCP segments
// the stack handed over for segmentation (GSO) keep their checksums
// undone (partial[i] set); the router completes them unless the peer
// takes them so.
func (n *Netstack) ReadPartial(bufs [][]byte, sizes []int, partial []bool, offset int) (int, error) {
	return n.read(bufs, sizes, partial, offset)
}

// read is Read, and ReadPartial when partial is not nil.
func (n *Netstack) read(bufs [][]byte, sizes []int, partial []bool, offset int) (int, error) {
	n.readMu.Lock()
	defer n.readMu.Unlock()
	e := n.ep
	i := 0
	var bytes uint64
	defer func() {
		n.cnt.outPackets.Add(uint64(i))
		n.cnt.outBytes.Add(bytes)
	}()
	for {
		// A TCP segment larger than the MTU, maybe begun by the last Read.
		for n.gso.pkt != nil && i < len(bufs) {
			c, part, done := n.gso.next(bufs[i][offset:], partial != nil)
			if c >= 0 {
				if partial != nil {
					partial[i] = part
				}
				sizes[i] = c
				bytes += uint64(c)
				i++
			} else {
				n.cnt.dropTooBig.Add(1)
			}
			if done {
				n.gso.release()
			}
		}
		if i == len(bufs) {
			return i, nil
		}
		var pkt *gvstack.PacketBuffer
		if i == 0 {
			select {
			case pkt = <-e.queue:
			case <-e.done:
				return 0, ErrClosed
			}
		} else {
			select {
			case pkt = <-e.queue:
			default:
				return i, nil
			}
		}
		if pkt.GSOOptions.Type != gvstack.GSONone && pkt.GSOOptions.NeedsCsum {
			// Cut into MSS-sized packets (or just completed: the
			// checksum is partial), in the loop above.
			segs := gsoSegments(pkt)
			if segs > 1 {
				n.cnt.outGSO.Add(1)
			}
			n.gso.start(pkt, segs)
			continue
		}
		if c := copyPacket(bufs[i][offset:], pkt); c >= 0 {
			if partial != nil {
				partial[i] = false
			}
			sizes[i] = c
			bytes += uint64(c)
			i++
		} else {
			n.cnt.dropTooBig.Add(1)
		}
		pkt.DecRef()
	}
}

// Write implements Device: each bufs[i][offset:] is handed to the stack as
// a received IP packet. Packets that are not well-formed IPv4 or IPv6 are
// dropped and counted, not reported as errors; Write returns len(bufs).
func (n *Netstack) Write(bufs [][]byte, offset int) (int, error) {
	return n.write(bufs, nil, offset)
}

// WritePartial implements PartialWriter: Write, where partial[i] says
// packet i is an IPv4 TCP segment whose checksum its sender left undone
// (an overlayd peer's ReadPartial). Its TCP checksum is not checked: the
// underlay's UDP checksum covered it on the way.
func (n *Netstack) WritePartial(bufs [][]byte, partial []bool, offset int) (int, error) {
	return n.write(bufs, partial, offset)
}

// write is Write, and WritePartial when partial is not nil.
func (n *Netstack) write(bufs [][]byte, partial []bool, offset int) (int, error) {
	e := n.ep
	e.mu.RLock()
	d, closed := e.dispatcher, e.closed
	e.mu.RUnlock()
	if closed || d == nil {
		return 0, ErrClosed
	}
	var bytes uint64
	var ok, bad uint64
	g := e.gro.get(d)
	defer e.gro.put(g)
	for i, b := range bufs {
		p := b[offset:]
		if e.inject(g, p, partial != nil && partial[i]) {
			ok++
			bytes += uint64(len(p))
		} else {
			bad++
		}
	}
	n.cnt.inPackets.Add(ok)
	n.cnt.inBytes.Add(bytes)
	if bad > 0 {
		n.cnt.dropMalformed.Add(bad)
	}
	return len(bufs), nil
}

// Layer implements Device: L3.
func (n *Netstack) Layer() Layer { return L3 }

// MTU implements Device.
func (n *Netstack) MTU() int { return n.mtu }

// BatchSize implements Device.
func (n *Netstack) BatchSize() int { return netstackBatch }

// Name implements Device: "netstack".
func (n *Netstack) Name() string { return "netstack" }

// Stats returns a snapshot of the counters.
func (n *Netstack) Stats() NetstackStats {
	return NetstackStats{
		OutPackets:     n.cnt.outPackets.Load(),
		OutBytes:       n.cnt.outBytes.Load(),
		InPackets:      n.cnt.inPackets.Load(),
		InBytes:        n.cnt.inBytes.Load(),
		OutGSO:         n.cnt.outGSO.Load(),
		DropQueueFull:  n.cnt.dropQueueFull.Load(),
		DropMalformed:  n.cnt.dropMalformed.Load(),
		DropTooBig:     n.cnt.dropTooBig.Load(),
		DropChecksum:   n.cnt.dropChecksum.Load(),
		StackMalformed: n.s.Stats().IP.MalformedPacketsReceived.Value(),
	}
}

// Close implements Device: it aborts every connection, stops the stack's
// goroutines and waits for them, then releases the queued packets. Read
// and Write return ErrClosed afterwards; sockets return errors. Safe to
// call twice.
func (n *Netstack) Close() error {
	n.closeOnce.Do(func() {
		n.ep.close()
		n.s.Destroy()
		n.readMu.Lock()
		n.gso.release()
		n.ep.drain()
		n.readMu.Unlock()
		n.log.Info("netstack closed")
	})
	return nil
}

// DialContext connects to address ("IP:port", no names) over network
// "tcp", "tcp4", "tcp6", "udp", "udp4" or "udp6". Cancelling ctx aborts a
// TCP handshake. Errors read "stack: dial tcp 10.1.2.3:80: connection
// refused" and wrap a syscall.Errno where one fits.
func (n *Netstack) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	fa, proto, err := n.parseAddr(network, address, false)
	if err != nil {
		return nil, fmt.Errorf("stack: dial %s %s: %w", network, address, err)
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
		c, err := n.dialTCP(ctx, fa, proto)
		if err != nil {
			return nil, fmt.Errorf("stack: dial %s %s: %w", network, address, err)
		}
		return c, nil
	default: // udp; parseAddr checked
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("stack: dial %s %s: %w", network, address, err)
		}
		c, err := gonet.DialUDP(n.s, nil, &fa, proto)
		if err != nil {
			return nil, fmt.Errorf("stack: dial %s %s: %w", network, address, unwrapOpError(err))
		}
		return c, nil
	}
}

func (n *Netstack) dialTCP(ctx context.Context, fa tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var wq waiter.Queue
	ep, terr := n.s.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr != nil {
		return nil, tcpipError(terr)
	}
	// Connect completes by making the endpoint writable (or failing it).
	we, ready := waiter.NewChannelEntry(waiter.WritableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	terr = ep.Connect(fa)
	if _, ok := terr.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ready:
			terr = ep.LastError()
		case <-ctx.Done():
			ep.Close()
			return nil, ctx.Err()
		}
	}
	if terr != nil {
		ep.Close()
		return nil, tcpipError(terr)
	}
	return gonet.NewTCPConn(&wq, ep), nil
}

// Listen listens for TCP connections on address ("IP:port" or
// "[IPv6]:port"). network is "tcp", "tcp4" or "tcp6", as for net.Listen:
// with "tcp", an empty host or "::" listens on every address of both
// families (one dual-stack socket: IPv4 peers are seen as IPv4
// addresses) — of IPv4 only while the stack has only IPv4 — and
// "0.0.0.0" on the IPv4 ones; with "tcp6" the socket is IPv6 only.
func (n *Netstack) Listen(network, address string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("stack: listen %s %s: network not supported", network, address)
	}
	fa, proto, err := n.parseAddr(network, address, true)
	if err != nil {
		return nil, fmt.Errorf("stack: listen %s %s: %w", network, address, err)
	}
	var wq waiter.Queue
	ep, terr := n.s.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if terr == nil {
		terr = n.bind(ep, network, fa, proto)
	}
	if terr == nil {
		terr = ep.Listen(listenBacklog)
	}
	if terr != nil {
		if ep != nil {
			ep.Close()
		}
		return nil, fmt.Errorf("stack: listen %s %s: %w", network, address, tcpipError(terr))
	}
	return gonet.NewTCPListener(n.s, &wq, ep), nil
}

// listenBacklog is a listener's backlog, gonet's.
const listenBacklog = 4096

// ListenPacket opens a UDP socket bound to address ("IP:port" or
// "[IPv6]:port"). network is "udp", "udp4" or "udp6"; an empty host is
// as for Listen: with "udp", one socket that sends to and receives from
// both families.
func (n *Netstack) ListenPacket(network, address string) (net.PacketConn, error) {
	if network != "udp" && network != "udp4" && network != "udp6" {
		return nil, fmt.Errorf("stack: listen %s %s: network not supported", network, address)
	}
	fa, proto, err := n.parseAddr(network, address, true)
	if err != nil {
		return nil, fmt.Errorf("stack: listen %s %s: %w", network, address, err)
	}
	var wq waiter.Queue
	ep, terr := n.s.NewEndpoint(udp.ProtocolNumber, proto, &wq)
	if terr == nil {
		terr = n.bind(ep, network, fa, proto)
	}
	if terr != nil {
		if ep != nil {
			ep.Close()
		}
		return nil, fmt.Errorf("stack: listen %s %s: %w", network, address, tcpipError(terr))
	}
	return gonet.NewUDPConn(&wq, ep), nil
}

// bind binds ep to fa; an IPv6 socket of network "tcp6" or "udp6" takes
// IPv6 only (IPV6_V6ONLY, as Go's net sets it).
func (n *Netstack) bind(ep tcpip.Endpoint, network string, fa tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) tcpip.Error {
	if proto == ipv6.ProtocolNumber && (network == "tcp6" || network == "udp6") {
		ep.SocketOptions().SetV6Only(true)
	}
	return ep.Bind(fa)
}

// parseAddr turns "IP:port" into a gVisor address for network. With
// listen, the IP may be empty: all addresses of the family network
// names, or of both for "tcp" and "udp" (an IPv6 socket that takes IPv4
// too) unless the stack has IPv4 addresses only.
func (n *Netstack) parseAddr(network, address string, listen bool) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, error) {
	var want byte // 0: any, 4 or 6
	switch network {
	case "tcp", "udp":
	case "tcp4", "udp4":
		want = 4
	case "tcp6", "udp6":
		want = 6
	default:
		return tcpip.FullAddress{}, 0, errors.New("network not supported")
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return tcpip.FullAddress{}, 0, err
	}
	port, err := parsePort(portStr)
	if err != nil {
		return tcpip.FullAddress{}, 0, err
	}
	if host == "" && listen {
		v6 := want == 6 || want == 0 && (n.has6.Load() || !n.has4.Load())
		if v6 {
			return tcpip.FullAddress{NIC: nicID, Port: port}, ipv6.ProtocolNumber, nil
		}
		return tcpip.FullAddress{NIC: nicID, Port: port}, ipv4.ProtocolNumber, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return tcpip.FullAddress{}, 0, fmt.Errorf("address %q is not an IP address (no name resolution here)", host)
	}
	if ip.Zone() != "" {
		return tcpip.FullAddress{}, 0, fmt.Errorf("address %q has a zone; overlay addresses have none", host)
	}
	ip = ip.Unmap()
	if ip.Is4() && want == 6 || ip.Is6() && want == 4 {
		return tcpip.FullAddress{}, 0, errors.New("address family does not match network")
	}
	proto := ipv4.ProtocolNumber
	if ip.Is6() {
		proto = ipv6.ProtocolNumber
	}
	fa := tcpip.FullAddress{Addr: tcpip.AddrFromSlice(ip.AsSlice()), Port: port}
	if ip.IsUnspecified() {
		if listen && ip.Is6() && want == 0 && !n.has6.Load() && n.has4.Load() {
			proto = ipv4.ProtocolNumber // "::" on a stack of IPv4 only: as an empty host
		}
		fa.Addr = tcpip.Address{}
	}
	return fa, proto, nil
}
