// Package vxlan implements the VXLAN (RFC 7348) wire format: typed views over
// the VXLAN header, the inner Ethernet II header, ARP and IPv6 neighbour
// discovery (NDP solicitations and advertisements), encapsulation into
// headroom without copying the payload, and decapsulation checks.
package vxlan
