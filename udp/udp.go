package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// Options configure a Conn. The zero value is ready to use: every field
// has its default in code.
type Options struct {
	// BatchSize is the most datagrams one ReadBatch returns and one
	// sendmmsg carries; buffers for that many are allocated once, at
	// Listen. 0 means 128; at most 1024.
	BatchSize int

	// DisableOffload turns UDP GSO (send) and UDP GRO (receive) off, so
	// that every datagram is its own system-call message.
	DisableOffload bool

	// SourcePorts is how many UDP source ports outbound datagrams spread
	// over. 0 or 1 sends everything from the listening socket. N > 1
	// also opens N-1 send-only sockets on the same IP with kernel-chosen
	// ports, and sends datagram i from socket flows[i] % N, so that the
	// outer source port follows the inner flow (RFC 7348 §5). At most 256.
	SourcePorts int

	// ReadBuffer is the listening socket's receive buffer in bytes. 0
	// means 7 MiB; a negative value leaves the system default. Beyond
	// net.core.rmem_max it needs CAP_NET_ADMIN, and is silently capped
	// without it.
	ReadBuffer int

	// WriteBuffer is every socket's send buffer in bytes. 0 means 7 MiB;
	// a negative value leaves the system default. Beyond
	// net.core.wmem_max it needs CAP_NET_ADMIN, and is silently capped
	// without it.
	WriteBuffer int
}

const (
	defaultBatchSize  = 128
	maxBatchSize      = 1024
	maxSourcePorts    = 256
	defaultBufferSize = 7 << 20
)

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.BatchSize == 0:
		o.BatchSize = defaultBatchSize
	case o.BatchSize < 0 || o.BatchSize > maxBatchSize:
		return o, fmt.Errorf("udp: batch size %d is out of range (1 to %d, or 0 for %d)", o.BatchSize, maxBatchSize, defaultBatchSize)
	}
	if o.SourcePorts < 0 || o.SourcePorts > maxSourcePorts {
		return o, fmt.Errorf("udp: %d source ports is out of range (0 to %d)", o.SourcePorts, maxSourcePorts)
	}
	if o.SourcePorts == 0 {
		o.SourcePorts = 1
	}
	if o.ReadBuffer == 0 {
		o.ReadBuffer = defaultBufferSize
	}
	if o.WriteBuffer == 0 {
		o.WriteBuffer = defaultBufferSize
	}
	return o, nil
}

// errClosed is returned by ReadBatch and WriteBatch after Close.
var errClosed = fmt.Errorf("udp: %w", net.ErrClosed)

// Listen opens an underlay socket bound to exactly addr (IPv4 or IPv6;
// port 0 picks a free port, which LocalAddr reports). With
// opts.SourcePorts > 1 it also opens the send-only sockets.
//
// A socket carries one family, that of addr: an IPv6 one, [::] included,
// is IPv6-only (IPV6_V6ONLY), so it neither receives IPv4 datagrams as
// v4-mapped addresses nor sends to IPv4 peers (WriteBatch refuses them),
// and an IPv4 node may listen on 0.0.0.0 at the same port beside it. A
// v4-mapped addr (::ffff:192.0.2.1) is taken as the IPv4 address it maps.
// LocalAddr and the sources ReadBatch reports are never v4-mapped.
//
// Errors a user can fix (the port is taken, a privileged port, an address
// this host does not have) are one sentence that says what to do, and
// wrap the errno: errors.Is(err, syscall.EADDRINUSE) holds.
func Listen(addr netip.AddrPort, opts Options) (*Conn, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("udp: listen %v: not an ip:port (give one such as 0.0.0.0:4789 with --listen)", addr)
	}
	ip := addr.Addr()
	network := "udp6"
	if ip.Is4() || ip.Is4In6() {
		ip = ip.Unmap()
		addr = netip.AddrPortFrom(ip, addr.Port())
		network = "udp4"
	}
	pc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, listenError(addr, err)
	}
	socks := []*net.UDPConn{pc}
	closeAll := func() {
		for _, s := range socks {
			s.Close()
		}
	}
	if err := setBuffers(pc, opts.ReadBuffer, opts.WriteBuffer); err != nil {
		closeAll()
		return nil, fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	for range opts.SourcePorts - 1 {
		s, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("udp: open source-port socket on %v: %w", ip, err)
		}
		socks = append(socks, s)
		// Never read: the smallest receive buffer the kernel allows.
		if err := setBuffers(s, 1, opts.WriteBuffer); err != nil {
			closeAll()
			return nil, fmt.Errorf("udp: open source-port socket on %v: %w", ip, err)
		}
	}
	laddr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	laddr = netip.AddrPortFrom(laddr.Addr().Unmap(), laddr.Port())
	c, err := newConn(socks, laddr, opts)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	return c, nil
}

// LocalAddr is the address the socket listens on (the VTEP).
func (c *Conn) LocalAddr() netip.AddrPort { return c.laddr }

// errnoError is a user-facing socket error: one sentence, with the errno
// underneath for errors.Is.
type errnoError struct {
	msg   string
	errno syscall.Errno
}

func (e *errnoError) Error() string { return e.msg }
func (e *errnoError) Unwrap() error { return e.errno }

func listenError(addr netip.AddrPort, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("udp: listen %v: %w", addr, err)
	}
	var what string
	switch errno {
	case syscall.EADDRINUSE:
		what = "address already in use (another overlayd or a kernel vxlan device holds it; choose another with --listen)"
	case syscall.EACCES, syscall.EPERM:
		what = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a higher port with --listen)"
	case syscall.EADDRNOTAVAIL:
		what = "address not available (no interface of this host has it; give one of this host's addresses, or 0.0.0.0, with --listen)"
	case syscall.EAFNOSUPPORT:
		what = "address family not supported (IPv6 may be disabled on this host; listen on an IPv4 address with --listen)"
	default:
		what = errno.Error()
	}
	return &errnoError{msg: fmt.Sprintf("udp: listen %v: %s", addr, what), errno: errno}
}
