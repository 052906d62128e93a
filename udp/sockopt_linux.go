//go:build linux

package udp

// This file holds the socket options: UDP GSO/GRO detection, buffer sizes,
// and the kernel's drop count (SO_MEMINFO).

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

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
