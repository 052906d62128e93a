//go:build linux

package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// maxGSOSegments is the kernel's limit on segments in one UDP GSO send
	// (UDP_MAX_SEGMENTS); GRO never coalesces more either.
	maxGSOSegments = 64
	// maxGSOPayload4 and maxGSOPayload6 bound one GSO send's payload: the
	// IP length field less the IPv4 and UDP headers (IPv6's payload
	// length does not count its own header).
	maxGSOPayload4 = 1<<16 - 1 - 20 - 8
	maxGSOPayload6 = 1<<16 - 1 - 8
	// maxRead is the largest datagram, coalesced or not, a read can
	// return: a GRO read into a shorter buffer would be truncated.
	maxRead = 1<<16 - 1
	// scratchReads is how many coalesced reads go into the Conn's own
	// buffers when the caller's are shorter than maxRead.
	scratchReads = 8
	// oobLen is the control buffer per message: room for one UDP_GRO or
	// UDP_SEGMENT message (a 4- or 2-byte payload) with margin, and a
	// multiple of 8 so every message's buffer stays aligned.
	oobLen = 64
)

// mmsghdr is struct mmsghdr from <sys/socket.h>; Go pads it to the
// alignment of unix.Msghdr, as C does, on 32- and 64-bit targets.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// Conn is a UDP underlay socket: batched receive and send with recvmmsg
// and sendmmsg, UDP GSO on send and UDP GRO on receive where the kernel
// has them. It implements router.Underlay and router.KernelDropper (udp
// may not import router; udp_test asserts both).
//
// ReadBatch is meant for one goroutine (calls are serialized); WriteBatch
// may be called from any number at once. After Close both return an error
// that errors.Is(err, net.ErrClosed).
type Conn struct {
	socks  []sock // send sockets; socks[0] is the listening one
	laddr  netip.AddrPort
	is6    bool
	batch  int
	gro    bool        // set at Listen, never changes
	gso    atomic.Bool // cleared for good if the kernel rejects a GSO send
	closed atomic.Bool

	closeOnce sync.Once
	closeErr  error

	rmu sync.Mutex // guards r
	r   reader

	wmu   sync.Mutex // guards wfree
	wfree []*writer  // idle write states; one per concurrent WriteBatch
}

type sock struct {
	pc *net.UDPConn
	rc syscall.RawConn
}

func newConn(pcs []*net.UDPConn, laddr netip.AddrPort, opts Options) (*Conn, error) {
	c := &Conn{laddr: laddr, is6: laddr.Addr().Is6(), batch: opts.BatchSize}
	for _, pc := range pcs {
		rc, err := pc.SyscallConn()
		if err != nil {
			return nil, err
		}
		c.socks = append(c.socks, sock{pc: pc, rc: rc})
	}
	if !opts.DisableOffload {
		gso, gro := enableOffload(c.socks[0].rc)
		c.gso.Store(gso)
		c.gro = gro
	}
	c.r.init(c)
	c.wfree = append(c.wfree, newWriter(c))
	return c, nil
}

// enableOffload turns UDP GRO on, and reports whether the kernel has UDP
// GSO (UDP_SEGMENT is readable) and GRO (UDP_GRO reads back as on; kernels
// before 5.12 cannot read it, and their GRO we leave off).
func enableOffload(rc syscall.RawConn) (gso, gro bool) {
	rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		gso = err == nil
		if unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) != nil {
			return
		}
		v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO)
		gro = err == nil && v == 1
		if !gro {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 0)
		}
	})
	return gso, gro
}

// setBuffers sets the socket buffers, beyond the sysctl maxima when
// permitted (SO_*BUFFORCE needs CAP_NET_ADMIN), else up to them. A
// non-positive size leaves that buffer alone.
func setBuffers(pc *net.UDPConn, rbuf, wbuf int) error {
	rc, err := pc.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) {
		set := func(force, plain, size int) {
			if size <= 0 {
				return
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, size)
			}
		}
		set(unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, rbuf)
		set(unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, wbuf)
	})
}

// BatchSize is the most datagrams one ReadBatch returns.
func (c *Conn) BatchSize() int { return c.batch }

// Offload reports whether UDP GSO (send) and UDP GRO (receive) are in use.
// GSO turns off for good if the kernel rejects a GSO send.
func (c *Conn) Offload() (gso, gro bool) { return c.gso.Load(), c.gro }

// KernelDrops returns how many datagrams the kernel dropped at the
// listening socket since Listen, before ReadBatch could take them: nearly
// always because the receive buffer was full (a flood, or a reader that
// fell behind), else for lack of memory or a bad UDP checksum. It is the
// socket's own drop count (sk_drops, which SO_RXQ_OVFL also reports),
// read with SO_MEMINFO when asked, so the data path pays nothing for it.
// ok is false when the kernel does not say, or after Close.
func (c *Conn) KernelDrops() (n uint64, ok bool) {
	var mem [unix.SK_MEMINFO_VARS]uint32
	err := c.socks[0].rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(mem))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
		ok = e == 0 && l > unix.SK_MEMINFO_DROPS*4
	})
	if err != nil || !ok {
		return 0, false
	}
	return uint64(mem[unix.SK_MEMINFO_DROPS]), true
}

// Close closes every socket of c; a blocked ReadBatch returns. It is safe
// to call more than once; calls after the first return nil.
func (c *Conn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		var errs []error
		for _, s := range c.socks {
			errs = append(errs, s.pc.Close())
		}
		c.closeErr = errors.Join(errs...)
		err = c.closeErr
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// opError wraps an error from the socket layer; it keeps net.ErrClosed
// visible to errors.Is.
func (c *Conn) opError(op string, err error) error {
	if c.closed.Load() || errors.Is(err, net.ErrClosed) {
		return errClosed
	}
	return fmt.Errorf("udp: %s: %w", op, err)
}

// ---- receive ----

// reader is the receive state, allocated once: the recvmmsg arrays and
// the datagrams a GRO split could not fit into the caller's batch.
type reader struct {
	rc    syscall.RawConn
	gro   bool
	msgs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	oob   []byte
	segs  []int // per message: segment size after a GRO split
	cnt   []int // per message: datagrams it holds
	fn    func(fd uintptr) bool

	// Set by recv.
	nmsg  int
	got   int
	errno syscall.Errno

	// groSegs is the most segments per message seen lately; a read asks
	// for batch/groSegs messages so that splitting them rarely overflows.
	groSegs int

	// pend holds datagrams received but not yet returned: pend[head:].
	pend    []chunk
	head    int
	spill   []byte // backs pend chunks copied out of callers' buffers
	scratch []byte // scratchReads*maxRead, for GRO reads into short buffers
}

// chunk is one received message not yet handed out: data holds
// datagrams of seg bytes each, the last possibly shorter.
type chunk struct {
	data []byte
	seg  int
	src  netip.AddrPort
}

func (r *reader) init(c *Conn) {
	n := c.batch
	r.rc = c.socks[0].rc
	r.gro = c.gro
	r.msgs = make([]mmsghdr, n)
	r.iovs = make([]unix.Iovec, n)
	r.names = make([]unix.RawSockaddrInet6, n)
	r.oob = make([]byte, n*oobLen)
	r.segs = make([]int, n)
	r.cnt = make([]int, n)
	r.pend = make([]chunk, 0, n)
	r.groSegs = 1
	r.fn = r.recv
}

// recv is the RawConn.Read callback: one recvmmsg, false to wait for the
// socket to become readable.
func (r *reader) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(r.nmsg), 0, 0, 0)
		switch e {
		case 0:
			r.got, r.errno = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.got, r.errno = 0, e
			return true
		}
	}
}

// ReadBatch blocks until at least one datagram has arrived, then returns
// up to min(len(bufs), BatchSize()) of them, each in bufs[i][:sizes[i]]
// from srcs[i]; len(sizes) and len(srcs) must be at least that. A GRO
// read is split so that every bufs[i] holds exactly one datagram;
// datagrams that do not fit are kept for the next call. A datagram longer
// than its buffer is truncated.
//
// With GRO on, buffers of at least 65535 bytes (as the router's are) are
// read into directly; shorter ones cost a copy per datagram. Calls are
// serialized; the steady state allocates nothing.
func (c *Conn) ReadBatch(bufs [][]byte, sizes []int, srcs []netip.AddrPort) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	nb := min(len(bufs), c.batch)
	if nb == 0 {
		return 0, nil
	}
	bufs, sizes, srcs = bufs[:nb], sizes[:nb], srcs[:nb]
	c.rmu.Lock()
	defer c.rmu.Unlock()
	r := &c.r
	if r.head < len(r.pend) {
		return r.drain(bufs, sizes, srcs, 0), nil
	}

	direct := true
	m := nb
	if r.gro {
		m = max(1, nb/r.groSegs)
		for _, b := range bufs {
			if len(b) < maxRead {
				direct = false
				break
			}
		}
		if !direct {
			if r.scratch == nil {
				r.scratch = make([]byte, scratchReads*maxRead)
			}
			m = min(m, scratchReads)
		}
	}
	for j := range m {
		b := bufs[j]
		if !direct {
			b = r.scratch[j*maxRead : (j+1)*maxRead]
		}
		r.iovs[j] = iovec(b)
		h := &r.msgs[j].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[j]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &r.iovs[j]
		h.SetIovlen(1)
		if r.gro {
			h.Control = &r.oob[j*oobLen]
			h.SetControllen(oobLen)
		}
		h.Flags = 0
		r.msgs[j].n = 0
	}
	r.nmsg = m
	if err := r.rc.Read(r.fn); err != nil {
		return 0, c.opError("read", err)
	}
	if r.errno != 0 {
		return 0, c.opError("read", os.NewSyscallError("recvmmsg", r.errno))
	}
	got := r.got
	if !r.gro {
		for j := range got {
			sizes[j] = int(r.msgs[j].n)
			srcs[j] = parseSockaddr(&r.names[j])
		}
		return got, nil
	}

	most := 1
	for j := range got {
		size := int(r.msgs[j].n)
		seg := groSize(r.oob[j*oobLen:][:r.msgs[j].hdr.Controllen])
		if seg <= 0 || seg >= size {
			seg = size
		}
		r.segs[j] = seg
		r.cnt[j] = 1
		if seg > 0 {
			r.cnt[j] = (size + seg - 1) / seg
		}
		most = max(most, r.cnt[j])
	}
	if most > r.groSegs {
		r.groSegs = most
	} else if most < r.groSegs {
		r.groSegs = max(1, r.groSegs/2)
	}
	if !direct {
		for j := range got {
			r.pend = append(r.pend, chunk{
				data: r.scratch[j*maxRead:][:r.msgs[j].n],
				seg:  r.segs[j],
				src:  parseSockaddr(&r.names[j]),
			})
		}
		return r.drain(bufs, sizes, srcs, 0), nil
	}
	return r.split(bufs, sizes, srcs, got), nil
}

// split spreads the got messages read straight into bufs over bufs, one
// datagram each, and keeps what does not fit in r.pend. Message j moves
// to positions at[j] >= j onwards; going from the last message back, no
// move overwrites a message not yet moved.
func (r *reader) split(bufs [][]byte, sizes []int, srcs []netip.AddrPort, got int) int {
	nb := len(bufs)
	total := 0
	for j := range got {
		total += r.cnt[j]
	}
	n := min(total, nb)
	at := total
	spillFrom := len(r.pend)
	for j := got - 1; j >= 0; j-- {
		at -= r.cnt[j]
		data := bufs[j][:r.msgs[j].n]
		seg := r.segs[j]
		src := parseSockaddr(&r.names[j])
		fit := r.cnt[j]
		if at+fit > nb {
			fit = max(0, nb-at)
			rest := data[min(fit*seg, len(data)):]
			off := len(r.spill)
			r.spill = append(r.spill, rest...)
			r.pend = append(r.pend, chunk{data: r.spill[off:len(r.spill):len(r.spill)], seg: seg, src: src})
		}
		for s := fit - 1; s >= 0; s-- {
			p := at + s
			d := data[s*seg : min((s+1)*seg, len(data))]
			if p != j {
				copy(bufs[p], d)
			}
			sizes[p] = len(d)
			srcs[p] = src
		}
	}
	// Spilled chunks were appended last message first.
	for a, b := spillFrom, len(r.pend)-1; a < b; a, b = a+1, b-1 {
		r.pend[a], r.pend[b] = r.pend[b], r.pend[a]
	}
	return n
}

// drain hands out pending datagrams into bufs[n:] and returns the new n.
func (r *reader) drain(bufs [][]byte, sizes []int, srcs []netip.AddrPort, n int) int {
	for r.head < len(r.pend) && n < len(bufs) {
		ch := &r.pend[r.head]
		seg := len(ch.data)
		if ch.seg > 0 && ch.seg < seg {
			seg = ch.seg
		}
		sizes[n] = copy(bufs[n], ch.data[:seg])
		srcs[n] = ch.src
		n++
		ch.data = ch.data[seg:]
		if len(ch.data) == 0 {
			*ch = chunk{}
			r.head++
		}
	}
	if r.head == len(r.pend) {
		r.pend, r.head = r.pend[:0], 0
		r.spill = r.spill[:0]
	}
	return n
}

// groSize returns the segment size in a UDP_GRO control message, or 0.
func groSize(oob []byte) int {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
			switch {
			case len(data) >= 4:
				return int(binary.NativeEndian.Uint32(data))
			case len(data) >= 2:
				return int(binary.NativeEndian.Uint16(data))
			}
		}
		oob = rest
	}
	return 0
}

// parseSockaddr reads a raw IPv4 or IPv6 socket address without
// allocating (except for a link-local zone above 99).
func parseSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), beUint16(&sa4.Port))
	case unix.AF_INET6:
		ip := netip.AddrFrom16(sa.Addr)
		if ip.Is4In6() {
			ip = ip.Unmap()
		} else if sa.Scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(ip, beUint16(&sa.Port))
	}
	return netip.AddrPort{}
}

// beUint16 reads a port stored in network byte order.
func beUint16(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func putBEUint16(p *uint16, v uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(v>>8), byte(v)
}

// putSockaddr writes dst as the socket's address family wants it and
// returns its length, or 0 if dst cannot be reached from the socket.
func putSockaddr(sa *unix.RawSockaddrInet6, dst netip.AddrPort, is6 bool) uint32 {
	ip := dst.Addr()
	if !is6 {
		ip = ip.Unmap()
		if !ip.Is4() {
			return 0
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
		putBEUint16(&sa4.Port, dst.Port())
		return unix.SizeofSockaddrInet4
	}
	if !ip.IsValid() {
		return 0
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
	if z := ip.Zone(); z != "" {
		sa.Scope_id = zoneIndex(z)
	}
	putBEUint16(&sa.Port, dst.Port())
	return unix.SizeofSockaddrInet6
}

// zoneIndex turns an IPv6 zone (an interface name or index) into a scope.
func zoneIndex(zone string) uint32 {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

func iovec(b []byte) unix.Iovec {
	var v unix.Iovec
	if len(b) > 0 {
		v.Base = &b[0]
		v.SetLen(len(b))
	}
	return v
}

// ---- send ----

// writer is the state of one WriteBatch, allocated once and reused.
type writer struct {
	c      *Conn
	msgs   []mmsghdr
	iovs   []unix.Iovec
	names  []unix.RawSockaddrInet6
	oob    []byte
	first  []int   // per message: its first datagram's position in the run
	dgrams []int   // per message: how many datagrams it carries
	order  []int32 // datagram indices grouped by source socket
	counts []int   // per source socket (+1): datagrams, then offsets
	fn     func(fd uintptr) bool

	// Set by build and send.
	start, end int
	sent       int
	errno      syscall.Errno
}

func newWriter(c *Conn) *writer {
	n := c.batch
	w := &writer{
		c:      c,
		msgs:   make([]mmsghdr, n),
		iovs:   make([]unix.Iovec, n),
		names:  make([]unix.RawSockaddrInet6, n),
		oob:    make([]byte, n*oobLen),
		first:  make([]int, n),
		dgrams: make([]int, n),
		order:  make([]int32, n),
		counts: make([]int, len(c.socks)+1),
	}
	w.fn = w.send
	return w
}

func (c *Conn) getWriter() *writer {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if k := len(c.wfree); k > 0 {
		w := c.wfree[k-1]
		c.wfree = c.wfree[:k-1]
		return w
	}
	return newWriter(c)
}

func (c *Conn) putWriter(w *writer) {
	c.wmu.Lock()
	c.wfree = append(c.wfree, w)
	c.wmu.Unlock()
}

// WriteBatch sends bufs[i] to dsts[i]; flows[i], when flows is not nil,
// picks the source socket when Options.SourcePorts > 1. Runs to one
// destination from one socket, all of one length but a shorter last, go
// as one UDP GSO send of up to 64 datagrams when GSO is on, pointing at
// the callers' buffers (nothing is copied, bufs are not written).
//
// It returns how many datagrams the kernel accepted. A datagram the
// kernel refuses (an unreachable destination, say) is skipped and the
// rest still go; the first such error is returned. With SourcePorts > 1
// the unsent datagrams need not be the last ones. Safe for concurrent
// use; the steady state allocates nothing.
func (c *Conn) WriteBatch(bufs [][]byte, dsts []netip.AddrPort, flows []uint32) (int, error) {
	if c.closed.Load() {
		return 0, errClosed
	}
	w := c.getWriter()
	defer c.putWriter(w)
	var (
		n        int
		firstErr error
	)
	for off := 0; off < len(bufs); off += c.batch {
		end := min(len(bufs), off+c.batch)
		var fl []uint32
		if flows != nil {
			fl = flows[off:end]
		}
		k, err := w.write(bufs[off:end], dsts[off:end], fl)
		n += k
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return n, err
			}
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return n, firstErr
}

// write sends at most c.batch datagrams, grouped by source socket.
func (w *writer) write(bufs [][]byte, dsts []netip.AddrPort, flows []uint32) (int, error) {
	socks := w.c.socks
	if len(socks) == 1 || flows == nil {
		return w.writeSock(socks[0], bufs, dsts, nil)
	}
	// A stable counting sort of the datagrams by socket keeps each flow's
	// datagrams in order and makes each socket's run contiguous.
	ns := uint32(len(socks))
	counts := w.counts
	clear(counts)
	for _, f := range flows[:len(bufs)] {
		counts[f%ns+1]++
	}
	for s := 1; s < len(counts); s++ {
		counts[s] += counts[s-1]
	}
	for i, f := range flows[:len(bufs)] {
		s := f % ns
		w.order[counts[s]] = int32(i)
		counts[s]++
	}
	// counts[s] is now the end of socket s's run.
	var (
		n        int
		firstErr error
		begin    int
	)
	for s := range socks {
		end := counts[s]
		if end > begin {
			k, err := w.writeSock(socks[s], bufs, dsts, w.order[begin:end])
			n += k
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return n, err
				}
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		begin = end
	}
	return n, firstErr
}

// writeSock sends bufs[idx[k]] (bufs[k] when idx is nil) from s.
func (w *writer) writeSock(s sock, bufs [][]byte, dsts []netip.AddrPort, idx []int32) (int, error) {
	count := len(bufs)
	if idx != nil {
		count = len(idx)
	}
	gso := w.c.gso.Load()
	var firstErr error
	nm, bad := w.build(bufs, dsts, idx, 0, count, gso)
	if bad > 0 {
		firstErr = fmt.Errorf("udp: write: %d datagrams to addresses a %s socket cannot reach", bad, w.family())
	}
	w.start, w.end, w.sent = 0, nm, 0
	for w.start < w.end {
		w.errno = 0
		if err := s.rc.Write(w.fn); err != nil {
			return w.sent, w.c.opError("write", err)
		}
		if w.errno == 0 {
			continue
		}
		if gso && w.dgrams[w.start] > 1 && disablesGSO(w.errno) {
			// Resend without GSO from the refused message on.
			w.c.gso.Store(false)
			gso = false
			nm, _ = w.build(bufs, dsts, idx, w.first[w.start], count, false)
			w.start, w.end = 0, nm
			continue
		}
		if firstErr == nil {
			firstErr = w.c.opError("write", os.NewSyscallError("sendmmsg", w.errno))
		}
		w.start++
	}
	return w.sent, firstErr
}

func (w *writer) family() string {
	if w.c.is6 {
		return "IPv6"
	}
	return "IPv4"
}

// disablesGSO reports whether a GSO send failed because of GSO: EIO when
// the device lacks checksum offload, EINVAL or EOPNOTSUPP when the kernel
// or the route will not segment.
func disablesGSO(e syscall.Errno) bool {
	return e == unix.EIO || e == unix.EINVAL || e == unix.EOPNOTSUPP || e == unix.ENOPROTOOPT
}

// build fills w.msgs with the datagrams at positions [from, count) of the
// run (bufs[idx[k]], or bufs[k] when idx is nil), coalescing with GSO
// when gso is set. It returns the number of messages, and how many
// datagrams it left out because their destination does not fit the
// socket's family.
func (w *writer) build(bufs [][]byte, dsts []netip.AddrPort, idx []int32, from, count int, gso bool) (nm, bad int) {
	at := func(k int) int {
		if idx == nil {
			return k
		}
		return int(idx[k])
	}
	limit := maxGSOPayload4
	if w.c.is6 {
		limit = maxGSOPayload6
	}
	ni := 0
	for k := from; k < count; {
		i := at(k)
		dst := dsts[i]
		sa := &w.names[nm]
		namelen := putSockaddr(sa, dst, w.c.is6)
		if namelen == 0 {
			bad++
			k++
			continue
		}
		seg := len(bufs[i])
		m := &w.msgs[nm]
		w.first[nm] = k
		iov0 := ni
		w.iovs[ni] = iovec(bufs[i])
		ni++
		cnt, total := 1, seg
		if gso && seg > 0 {
			for k+cnt < count && cnt < maxGSOSegments {
				j := at(k + cnt)
				l := len(bufs[j])
				if l == 0 || l > seg || total+l > limit || dsts[j] != dst {
					break
				}
				w.iovs[ni] = iovec(bufs[j])
				ni++
				cnt++
				total += l
				if l < seg {
					break
				}
			}
		}
		m.hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(sa)), Namelen: namelen, Iov: &w.iovs[iov0]}
		m.hdr.SetIovlen(cnt)
		m.n = 0
		if cnt > 1 {
			oob := w.oob[nm*oobLen : (nm+1)*oobLen]
			h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			h.Level = unix.SOL_UDP
			h.Type = unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
			m.hdr.Control = &oob[0]
			m.hdr.SetControllen(unix.CmsgSpace(2))
		}
		w.dgrams[nm] = cnt
		nm++
		k += cnt
	}
	return nm, bad
}

// send is the RawConn.Write callback: sendmmsg until every message in
// msgs[start:end] is sent or one fails; false to wait for room.
func (w *writer) send(fd uintptr) bool {
	for w.start < w.end {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.msgs[w.start])), uintptr(w.end-w.start), 0, 0, 0)
		switch e {
		case 0:
			if n == 0 {
				w.errno = unix.EIO
				return true
			}
			for k := w.start; k < w.start+int(n); k++ {
				w.sent += w.dgrams[k]
			}
			w.start += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			w.errno = e
			return true
		}
	}
	return true
}
