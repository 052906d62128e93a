// Package router implements overlayd's forwarding core: the batch loops that
// move packets between an attachment and the underlay, the longest-prefix
// route table, ARP answers and resolution inside the tunnel, ICMP errors, and
// per-reason drop counters.
package router
