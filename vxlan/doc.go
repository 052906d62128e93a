// Package vxlan implements the VXLAN (RFC 7348) wire format: typed views over
// the VXLAN header, the inner Ethernet II header and ARP, encapsulation into
// headroom without copying the payload, and decapsulation checks.
package vxlan
