// Package router implements overlayd's forwarding core: the batch loops that
// move packets between an attachment, the endpoints it hosts (each on its
// own device, switched locally without the underlay) and the underlay, the
// longest-prefix route table, ARP answers and resolution inside the tunnel,
// ICMP errors, and the data path's drop reasons (the one vocabulary of
// drops, decap's included) with their counters.
package router
