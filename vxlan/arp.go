package vxlan

import (
	"encoding/binary"
	"net/netip"
)

// ARPLen is the length of an Ethernet/IPv4 ARP packet.
const ARPLen = 28

// TrailerLen is the length of overlayd's ARP trailer: bytes after the ARP
// packet, inside the Ethernet frame, where other hosts only see padding
// (a Linux host reads ARPLen bytes and no more):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      "ovld" (0x6f766c64)                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Version (1)  |  Capabilities |           Reserved            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// It is how two overlayd VTEPs find out what the other takes beyond RFC
// 7348, with nothing that a kernel vxlan peer could misread.
const TrailerLen = 8

// TrailerPartial is the capability bit of a VTEP that takes datagrams
// with FlagPartial.
const TrailerPartial = 0x01

var trailerMagic = [4]byte{'o', 'v', 'l', 'd'}

// EncodeTrailer writes overlayd's trailer with caps into t, which must be
// at least TrailerLen long (the bytes right after an ARP packet).
func EncodeTrailer(t []byte, caps uint8) {
	_ = t[TrailerLen-1]
	copy(t, trailerMagic[:])
	t[4], t[5], t[6], t[7] = 1, caps, 0, 0
}

// Trailer returns the capabilities in the trailer of a, a valid ARP packet
// and whatever followed it in its frame, and whether there is one.
func (a ARP) Trailer() (caps uint8, ok bool) {
	if len(a) < ARPLen+TrailerLen || [4]byte(a[ARPLen:ARPLen+4]) != trailerMagic || a[ARPLen+4] != 1 {
		return 0, false
	}
	return a[ARPLen+5], true
}

// ARP operations (RFC 826).
const (
	ARPRequest = 1
	ARPReply   = 2
)

// ARP is a view of an ARP packet for IPv4 over Ethernet (RFC 826), the only
// kind overlayd sends or answers:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Hardware Type (1)        |    Protocol Type (0x0800)     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  HW Len (6)   | Proto Len (4) |       Operation (1 or 2)      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Sender MAC Address (octets 0-3)               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Sender MAC (octets 4-5)     |   Sender IPv4 (octets 0-1)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|   Sender IPv4 (octets 2-3)    |   Target MAC (octets 0-1)     |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                 Target MAC Address (octets 2-5)               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Target IPv4 Address                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Check IsValid before reading; the accessors panic on a view shorter than
// ARPLen. The encoders need len(a) >= ARPLen.
type ARP []byte

// IsValid reports whether a is at least ARPLen long and is Ethernet/IPv4
// ARP: hardware type 1, protocol type 0x0800, lengths 6 and 4. It does not
// check the operation.
func (a ARP) IsValid() bool {
	return len(a) >= ARPLen &&
		binary.BigEndian.Uint16(a[0:2]) == 1 &&
		binary.BigEndian.Uint16(a[2:4]) == EtherTypeIPv4 &&
		a[4] == 6 && a[5] == 4
}

// Op returns the operation (ARPRequest, ARPReply or another).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[6:8]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[8:14]) }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(a[14:18])) }

// TargetMAC returns the target hardware address (zero in requests).
func (a ARP) TargetMAC() MAC { return MAC(a[18:24]) }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(a[24:28])) }

// EncodeRequest writes a request from senderMAC/senderIP asking who has
// targetIP (target MAC zero). The addresses must be IPv4 (or IPv4-mapped);
// anything else is a programmer error and panics.
func (a ARP) EncodeRequest(senderMAC MAC, senderIP, targetIP netip.Addr) {
	a.encode(ARPRequest, senderMAC, senderIP, MAC{}, targetIP)
}

// EncodeReply writes a reply telling targetMAC/targetIP (the requester) that
// senderIP is at senderMAC. The addresses must be IPv4 (or IPv4-mapped);
// anything else is a programmer error and panics.
func (a ARP) EncodeReply(senderMAC MAC, senderIP netip.Addr, targetMAC MAC, targetIP netip.Addr) {
	a.encode(ARPReply, senderMAC, senderIP, targetMAC, targetIP)
}

func (a ARP) encode(op uint16, sm MAC, sip netip.Addr, tm MAC, tip netip.Addr) {
	_ = a[ARPLen-1]
	s, t := sip.As4(), tip.As4()
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], sm[:])
	copy(a[14:18], s[:])
	copy(a[18:24], tm[:])
	copy(a[24:28], t[:])
}
