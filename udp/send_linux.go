//go:build linux

package udp

// This file holds the send side: sendmmsg batches grouped by source
// socket, coalesced into UDP GSO sends where the kernel has them.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
