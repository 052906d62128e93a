// Package mdns is gossip's Discoverer of a LAN: multicast DNS (RFC 6762)
// with DNS-SD records (RFC 6763), as SocketPlane's ZeroConf. A node
// announces its gossip address on the interface that holds it and joins
// the nodes it hears (gossip.Options.Discover); the key is never sent, so
// nodes of another cluster are found and memberlist refuses them.
package mdns
