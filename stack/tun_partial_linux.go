//go:build linux

package stack

// This file holds the TUN's own offload path (PartialReader and
// PartialWriter): it reads and writes the virtio-net header itself, so
// that a TCP checksum the sending socket left undone stays undone through
// overlayd, and a coalesced write (GRO) is a writev of the segments'
// payloads, never a copy into one buffer. wireguard's Read and Write
// (which complete every checksum, and check every checksum before they
// coalesce) remain TUN.Read and TUN.Write.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
)

// vnetHdrLen is the length of struct virtio_net_hdr, which a TUN with
// IFF_VNET_HDR puts in front of every packet it reads and expects in
// front of every packet written to it.
const vnetHdrLen = 10

// virtio_net_hdr values (include/uapi/linux/virtio_net.h).
const (
	vnetNeedsCsum = 1 // flags: VIRTIO_NET_HDR_F_NEEDS_CSUM
	vnetGSONone   = 0
	vnetGSOTCPv4  = 1
	vnetGSOTCPv6  = 4
	vnetGSOUDPL4  = 5
	vnetGSOECN    = 0x80 // gsoType: the TCP stream has ECN; CWR on the first segment only
)

const (
	tcpFIN = 0x01
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpCWR = 0x80
)

// vnetHdr is a decoded virtio_net_hdr (host byte order on the wire).
type vnetHdr struct {
	flags, gsoType                         uint8
	hdrLen, gsoSize, csumStart, csumOffset uint16
}

func (h *vnetHdr) decode(b []byte) {
	h.flags, h.gsoType = b[0], b[1]
	h.hdrLen = binary.NativeEndian.Uint16(b[2:])
	h.gsoSize = binary.NativeEndian.Uint16(b[4:])
	h.csumStart = binary.NativeEndian.Uint16(b[6:])
	h.csumOffset = binary.NativeEndian.Uint16(b[8:])
}

func (h *vnetHdr) encode(b []byte) {
	b[0], b[1] = h.flags, h.gsoType
	binary.NativeEndian.PutUint16(b[2:], h.hdrLen)
	binary.NativeEndian.PutUint16(b[4:], h.gsoSize)
	binary.NativeEndian.PutUint16(b[6:], h.csumStart)
	binary.NativeEndian.PutUint16(b[8:], h.csumOffset)
}

// partialIO is the state of the TUN's own offload path, allocated once.
// Reads are serialized by the caller (Device: one reader) and so are
// writes.
type partialIO struct {
	file *os.File
	rc   syscall.RawConn
	rbuf []byte // one read: the virtio-net header and a super-packet

	rest [][]byte     // WritePartial's complete packets, for wireguard's Write
	iovs []unix.Iovec // one coalesced write
	wfn  func(fd uintptr) bool
	werr syscall.Errno
}

// newPartialIO returns the offload path of dev, or nil when dev has no
// virtio-net header to work with.
func newPartialIO(dev tun.Device) *partialIO {
	f, ok := dev.(interface{ File() *os.File })
	if !ok || dev.BatchSize() <= 1 { // wireguard's sign that IFF_VNET_HDR offloads are on
		return nil
	}
	rc, err := f.File().SyscallConn()
	if err != nil {
		return nil
	}
	p := &partialIO{file: f.File(), rc: rc, rbuf: make([]byte, vnetHdrLen+65535), iovs: make([]unix.Iovec, 0, 129)}
	p.wfn = p.writev
	return p
}

// ReadPartial implements PartialReader. A super-packet that would split
// into more segments than len(bufs), or that splitVirtio does not cut,
// is dropped, counted in DropRead, and ReadPartial carries on.
func (t *TUN) ReadPartial(bufs [][]byte, sizes []int, partial []bool, offset int) (int, error) {
	p := t.part
	if p == nil {
		n, err := t.Read(bufs, sizes, offset)
		clear(partial[:n])
		return n, err
	}
	for {
		n, err := p.file.Read(p.rbuf)
		if err != nil {
			if errors.Is(err, syscall.EBADFD) {
				err = os.ErrClosed
			}
			return 0, err
		}
		if n < vnetHdrLen {
			t.cnt.dropRead.Add(1)
			continue
		}
		cnt := splitVirtio(p.rbuf[:n], bufs, sizes, partial, offset)
		if cnt > 1 {
			t.cnt.outGSO.Add(1)
		}
		if cnt > 0 {
			return cnt, nil
		}
		t.cnt.dropRead.Add(1)
	}
}

// splitVirtio turns what one TUN read returned (virtio-net header, then
// the packet) into packets in bufs[i][offset:], and returns how many (0:
// dropped). TCP checksums the kernel left undone, IPv4's and IPv6's, stay
// undone (partial[i]); every other checksum is completed. A super-packet (TSO, UDP GSO) is
// cut into its segments as the kernel's GSO would (tcp_gso_segment,
// udp4/udp6 GSO): the same headers, IPv4 IDs counting up, sequence
// numbers advancing, FIN and PSH on the last segment only; an IPv6 one
// is splitVirtio6's.
func splitVirtio(in []byte, bufs [][]byte, sizes []int, partial []bool, offset int) int {
	var h vnetHdr
	h.decode(in)
	pkt := in[vnetHdrLen:]
	if h.gsoType == vnetGSONone {
		out := bufs[0][offset:]
		if len(pkt) > len(out) {
			return 0
		}
		out = out[:copy(out, pkt)]
		sizes[0], partial[0] = len(out), false
		if h.flags&vnetNeedsCsum == 0 {
			return 1
		}
		if h.csumOffset == 16 && (IsPartialCandidate(out) && int(h.csumStart) == int(out[0]&0xf)*4 ||
			IsPartialCandidate6(out) && h.csumStart == ipv6HeaderLen) {
			partial[0] = true
			return 1
		}
		at := int(h.csumStart) + int(h.csumOffset)
		if at+2 > len(out) {
			return 0
		}
		initial := binary.BigEndian.Uint16(out[at:])
		out[at], out[at+1] = 0, 0
		binary.BigEndian.PutUint16(out[at:], ^checksum.Checksum(out[h.csumStart:], initial))
		return 1
	}
	if h.gsoSize == 0 || len(pkt) < 20 {
		return 0
	}
	if pkt[0]>>4 != 4 {
		return splitVirtio6(&h, pkt, bufs, sizes, partial, offset)
	}
	ihl := int(pkt[0]&0xf) * 4
	if ihl < 20 {
		return 0
	}
	var l4 int // transport header length
	switch {
	case h.gsoType == vnetGSOTCPv4 && IsPartialCandidate(pkt):
		l4 = int(pkt[ihl+12]>>4) * 4
		if l4 < 20 {
			return 0
		}
	case h.gsoType == vnetGSOUDPL4 && pkt[9] == 17:
		l4 = 8
	default:
		return 0
	}
	hl := ihl + l4
	if int(h.csumStart) != ihl || len(pkt) < hl {
		return 0
	}
	tcp := pkt[9] == 6
	seg := int(h.gsoSize)
	n := (len(pkt) - hl + seg - 1) / seg
	if n > len(bufs) || n == 0 {
		return 0
	}
	id := binary.BigEndian.Uint16(pkt[4:6])
	seq := binary.BigEndian.Uint32(pkt[ihl+4:])
	for i := range n {
		from := hl + i*seg
		data := pkt[from:min(from+seg, len(pkt))]
		total := hl + len(data)
		out := bufs[i][offset:]
		if len(out) < total {
			return 0
		}
		out = out[:total]
		copy(out, pkt[:hl])
		copy(out[hl:], data)
		binary.BigEndian.PutUint16(out[2:4], uint16(total))
		binary.BigEndian.PutUint16(out[4:6], id+uint16(i))
		ipv4HeaderChecksum(out[:ihl])
		sizes[i] = total
		if tcp {
			binary.BigEndian.PutUint32(out[ihl+4:], seq+uint32(i*seg))
			if i < n-1 {
				out[ihl+13] &^= tcpFIN | tcpPSH
			}
			binary.BigEndian.PutUint16(out[ihl+16:], PseudoSum(out, total-ihl))
			partial[i] = true
			continue
		}
		u := out[ihl:]
		binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
		u[6], u[7] = 0, 0
		s := checksum.Checksum(u, pseudoSum(out, 17, len(u)))
		if s = ^s; s == 0 {
			s = 0xffff
		}
		binary.BigEndian.PutUint16(u[6:8], s)
		partial[i] = false
	}
	return n
}

// splitVirtio6 is splitVirtio for a super-packet pkt that is not IPv4
// (h its virtio-net header): IPv6 TSO or UDP GSO, TCP or UDP right after
// the fixed header (no extension headers, as the kernel's TCP and UDP
// sockets send it), TCP segments partial as IPv4's, UDP datagrams with
// their complete checksum; CWR stays
// on the first segment of an ECN stream. Anything else is dropped (0).
func splitVirtio6(h *vnetHdr, pkt []byte, bufs [][]byte, sizes []int, partial []bool, offset int) int {
	if len(pkt) < ipv6HeaderLen || pkt[0]>>4 != 6 {
		return 0
	}
	var l4 int // transport header length
	switch gso, proto := h.gsoType&^vnetGSOECN, pkt[6]; {
	case proto == 6 && gso == vnetGSOTCPv6 && len(pkt) >= ipv6HeaderLen+20:
		l4 = int(pkt[ipv6HeaderLen+12]>>4) * 4
		if l4 < 20 {
			return 0
		}
	case proto == 17 && gso == vnetGSOUDPL4:
		l4 = 8
	default:
		return 0
	}
	hl := ipv6HeaderLen + l4
	if int(h.csumStart) != ipv6HeaderLen || len(pkt) < hl {
		return 0
	}
	seg := int(h.gsoSize)
	n := (len(pkt) - hl + seg - 1) / seg
	if n > len(bufs) || n == 0 {
		return 0
	}
	return cutSegments6(pkt, bufs, sizes, partial, offset, hl, seg, n, pkt[6] == 6, binary.BigEndian.Uint32(pkt[ipv6HeaderLen+4:]))
}

// cutSegments6 is splitVirtio's loop for an IPv6 super-packet pkt of hl
// bytes of headers (the fixed header, then TCP or UDP) cut into n
// segments of seg bytes of payload: each gets its payload length, and a
// TCP segment its pseudo-header sum (partial[i]), a UDP datagram its
// complete checksum. It returns n, or 0 if a buffer is short.
func cutSegments6(pkt []byte, bufs [][]byte, sizes []int, partial []bool, offset, hl, seg, n int, tcp bool, seq uint32) int {
	for i := range n {
		from := hl + i*seg
		data := pkt[from:min(from+seg, len(pkt))]
		total := hl + len(data)
		out := bufs[i][offset:]
		if len(out) < total {
			return 0
		}
		out = out[:total]
		copy(out, pkt[:hl])
		copy(out[hl:], data)
		binary.BigEndian.PutUint16(out[4:6], uint16(total-ipv6HeaderLen))
		sizes[i], partial[i] = total, false
		l := out[ipv6HeaderLen:]
		if tcp {
			binary.BigEndian.PutUint32(l[4:], seq+uint32(i*seg))
			if i < n-1 {
				l[13] &^= tcpFIN | tcpPSH
			}
			if i > 0 {
				l[13] &^= tcpCWR
			}
			binary.BigEndian.PutUint16(l[16:], pseudoSum6(out, 6, len(l)))
			partial[i] = true
			continue
		}
		binary.BigEndian.PutUint16(l[4:6], uint16(len(l)))
		l[6], l[7] = 0, 0
		s := ^checksum.Checksum(l, pseudoSum6(out, 17, len(l)))
		if s == 0 {
			s = 0xffff
		}
		binary.BigEndian.PutUint16(l[6:8], s)
	}
	return n
}

// WritePartial implements PartialWriter. Runs of partial segments of one
// flow (same addresses, ports, IP and TCP options, acknowledgment; in
// sequence; all of one size but a shorter last; nothing but ACK, and PSH
// on the last) go as one TSO write of their headers and payloads; a lone
// partial segment goes as CHECKSUM_PARTIAL; complete packets go through
// wireguard's Write, in order with the rest. It returns how many packets
// it wrote.
func (t *TUN) WritePartial(bufs [][]byte, partial []bool, offset int) (int, error) {
	p := t.part
	if p == nil {
		for i, b := range bufs {
			if partial[i] {
				CompleteChecksum(b[offset:])
			}
		}
		if _, err := t.dev.Write(bufs, offset); err != nil {
			return 0, err
		}
		return len(bufs), nil
	}
	var (
		n    int
		errs error
	)
	flush := func() {
		if len(p.rest) == 0 {
			return
		}
		if _, err := t.dev.Write(p.rest, offset); err != nil {
			errs = errors.Join(errs, err)
		} else {
			n += len(p.rest)
		}
		p.rest = p.rest[:0]
	}
	for i := 0; i < len(bufs); {
		if !partial[i] {
			p.rest = append(p.rest, bufs[i])
			i++
			continue
		}
		flush()
		j := coalesceEnd(bufs, partial, offset, i)
		if err := p.writeRun(bufs[i:j], offset); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return n, err
			}
			errs = errors.Join(errs, err)
		} else {
			n += j - i
		}
		i = j
	}
	flush()
	return n, errs
}

// coalesceEnd returns the end of the run of partial segments that
// bufs[i] starts and later packets may join (see WritePartial).
func coalesceEnd(bufs [][]byte, partial []bool, offset, i int) int {
	a := bufs[i][offset:]
	v6 := a[0]>>4 == 6
	ihl := ipHeaderLen(a)
	hl := ihl + int(a[ihl+12]>>4)*4
	size := len(a) - hl
	if size <= 0 || a[ihl+13] != tcpACK || len(a) < hl {
		return i + 1
	}
	next := binary.BigEndian.Uint32(a[ihl+4:]) + uint32(size)
	total := len(a)
	j := i + 1
	for ; j < len(bufs) && partial[j]; j++ {
		b := bufs[j][offset:]
		l := len(b) - hl
		if l <= 0 || l > size || total+l > 65535 ||
			!sameIPHeader(a, b, ihl, v6) ||
			// ports; data offset; acknowledgment; TCP options.
			!bytes.Equal(a[ihl:ihl+4], b[ihl:ihl+4]) || a[ihl+12] != b[ihl+12] ||
			!bytes.Equal(a[ihl+8:ihl+12], b[ihl+8:ihl+12]) || !bytes.Equal(a[ihl+20:hl], b[ihl+20:hl]) ||
			binary.BigEndian.Uint32(b[ihl+4:]) != next || b[ihl+13]&^tcpPSH != tcpACK {
			break
		}
		next += uint32(l)
		total += l
		if l < size || b[ihl+13]&tcpPSH != 0 {
			return j + 1
		}
	}
	return j
}

// ipHeaderLen is the length of the IP header of a, an IPv4 or IPv6 TCP
// segment (IsPartialTCP).
func ipHeaderLen(a []byte) int {
	if a[0]>>4 == 6 {
		return ipv6HeaderLen
	}
	return int(a[0]&0xf) * 4
}

// sameIPHeader reports whether the IP headers (ihl bytes) of segments a
// and b may go in one coalesced packet: IPv4's version, IHL, TOS, flags,
// fragment, TTL, protocol, addresses and options; IPv6's version,
// traffic class, flow label, next header, hop limit and addresses. Only
// the lengths, IDs and checksums may differ.
func sameIPHeader(a, b []byte, ihl int, v6 bool) bool {
	if v6 {
		return bytes.Equal(a[0:4], b[0:4]) && bytes.Equal(a[6:ihl], b[6:ihl])
	}
	return a[0] == b[0] && a[1] == b[1] && bytes.Equal(a[6:10], b[6:10]) && bytes.Equal(a[12:ihl], b[12:ihl])
}

// writeRun writes the partial segments run (coalesceEnd's) as one packet:
// the first's headers, adjusted, and every payload, from where they lie.
func (p *partialIO) writeRun(run [][]byte, offset int) error {
	a := run[0][offset:]
	v6 := a[0]>>4 == 6
	ihl := ipHeaderLen(a)
	hl := ihl + int(a[ihl+12]>>4)*4
	h := vnetHdr{flags: vnetNeedsCsum, hdrLen: uint16(hl), csumStart: uint16(ihl), csumOffset: 16}
	first := run[0][offset-vnetHdrLen:]
	if len(run) == 1 {
		h.encode(first)
		_, err := p.file.Write(first)
		return p.writeError(err)
	}
	total := len(a)
	for _, b := range run[1:] {
		total += len(b) - offset - hl
	}
	h.gsoType, h.gsoSize = vnetGSOTCPv4, uint16(len(a)-hl)
	if v6 {
		binary.BigEndian.PutUint16(a[4:6], uint16(total-ihl))
		h.gsoType = vnetGSOTCPv6
	} else {
		binary.BigEndian.PutUint16(a[2:4], uint16(total))
		ipv4HeaderChecksum(a[:ihl])
	}
	a[ihl+13] |= run[len(run)-1][offset+ihl+13] & tcpPSH
	binary.BigEndian.PutUint16(a[ihl+16:], PseudoSum(a, total-ihl))
	h.encode(first)
	p.iovs = append(p.iovs[:0], iovec(first))
	for _, b := range run[1:] {
		p.iovs = append(p.iovs, iovec(b[offset+hl:]))
	}
	p.werr = 0
	if err := p.rc.Write(p.wfn); err != nil {
		return p.writeError(err)
	}
	if p.werr != 0 {
		return p.writeError(os.NewSyscallError("writev", p.werr))
	}
	return nil
}

// writev is the RawConn.Write callback for writeRun.
func (p *partialIO) writev(fd uintptr) bool {
	for {
		_, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&p.iovs[0])), uintptr(len(p.iovs)))
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		p.werr = e
		return true
	}
}

func (p *partialIO) writeError(err error) error {
	if err != nil && (errors.Is(err, syscall.EBADFD) || errors.Is(err, os.ErrClosed)) {
		return os.ErrClosed
	}
	return err
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: unsafe.SliceData(b)}
	v.SetLen(len(b))
	return v
}

// WritesPartial6 implements PartialWriter6: WritePartial takes partial
// IPv6 TCP segments as it takes IPv4's.
func (t *TUN) WritesPartial6() bool { return true }

var (
	_ PartialReader  = (*TUN)(nil)
	_ PartialWriter6 = (*TUN)(nil)
)
