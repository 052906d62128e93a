// Package dns serves the overlay's names (NAME.NETWORK.overlay. A/AAAA, SRV,
// PTR) from an immutable zone snapshot and forwards every other name to
// upstream resolvers through a cache, over any net.PacketConn or
// net.Listener.
//
// # Names
//
//	NAME.NETWORK.DOMAIN.              A/AAAA  a service's VIP or a node's address
//	_PORT._PROTO.SERVICE.NETWORK.DOMAIN.  SRV  one per service port, e.g.
//	                                        _80._tcp.web.default.overlay. SRV 0 0 80 web.default.overlay.
//	D.C.B.A.in-addr.arpa. (and ip6.arpa.) PTR  names of overlay addresses
//
// SRV owner names use the port number as the service label (issue 5's
// _PORT._PROTO form), not RFC 2782's symbolic service name (_http._tcp…):
// overlay services declare ports, not protocol names. The label _PROTO is
// "_tcp" or "_udp".
//
// Negative answers follow RFC 2308: a name that exists (including an empty
// non-terminal such as default.overlay. or _tcp.web.default.overlay.) but has
// no record of the asked type is NODATA (NOERROR, empty answer); any other
// name under the domain is NXDOMAIN. Both carry the zone's SOA in the
// authority section, whose TTL and MINIMUM are the zone TTL.
//
// A reverse name is answered by the zone when its address lies in a network's
// CIDR or carries a record; other reverse names are forwarded.
//
// # Forwarding
//
// The Forwarder sends other names to upstream resolvers over UDP (EDNS0,
// 1232-byte payload, DO bit passed through), retries over TCP when the answer
// is truncated, ignores answers whose ID or question does not match, fails
// over across upstreams, and caches positive and negative answers (RFC 2308)
// in a bounded LRU. Identical queries that miss the cache together share one
// upstream query. Beyond MaxInFlight concurrent upstream queries it answers
// SERVFAIL at once (a transient failure, so stub resolvers try their next
// server; REFUSED is kept for access control). Upstream transaction IDs come
// from crypto/rand (miekg's dns.Id), each on a fresh connected socket.
//
// # Serving
//
// ServePacket reads with several goroutines per conn, in batches
// (recvmmsg/sendmmsg) on host UDP sockets and one datagram at a time on
// other conns (gVisor gonet). Zone and cached names are answered by the
// reading goroutine; queries that need an upstream get a goroutine of their
// own, so a slow upstream never delays overlay names.
//
// # Safety
//
// The Server is not an open resolver: sources not Allowed (default: loopback
// only; each conn handed to ServePacketAllowed or ServeListenerAllowed may
// have its own check) get REFUSED over UDP, have their TCP connection closed
// at accept, and never cause an upstream query. Each listener has its own
// bound on open TCP connections, and only allowed sources count against it,
// so refused sources cannot keep allowed ones out. Packets shorter than a
// header and responses (QR set) get no reply; unknown opcodes get NOTIMP;
// unparsable queries and queries with other than one question get FORMERR.
package dns
