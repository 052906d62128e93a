//go:build linux

package udp

// This file holds the receive side: recvmmsg batches, and the split of
// UDP GRO reads into one datagram per buffer.

import (
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
