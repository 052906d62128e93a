//go:build linux

package udp

// This file holds the pieces of a struct mmsghdr that receive and send
// share: raw socket addresses, iovecs, and the UDP_GRO control message.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>; Go pads it to the
// alignment of unix.Msghdr, as C does, on 32- and 64-bit targets.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
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
// returns its length, or 0 if dst cannot be reached from the socket: an
// IPv4 socket reaches IPv4 destinations (v4-mapped ones unmapped), an
// IPv6 socket, which is IPv6-only (Listen), only IPv6 ones, so an IPv4
// destination, mapped or not, is refused here rather than by the kernel
// (ENETUNREACH, a datagram at a time).
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
	if !ip.Is6() || ip.Is4In6() {
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
