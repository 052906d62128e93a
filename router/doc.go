// Package router implements overlayd's forwarding core: the batch loops that
// move packets between an attachment, the endpoints it hosts (each on its
// own device, switched locally without the underlay) and the underlay, for
// IPv4 and IPv6 alike: the longest-prefix route table, ARP and NDP answers
// and resolution inside the tunnel, ICMP and ICMPv6 errors, and the data
// path's drop reasons (the one vocabulary of drops, decap's included) with
// their counters.
package router
