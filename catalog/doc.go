// Package catalog is the replicated schema of overlayd: the names of the
// gossip tables that node writes and reads, the typed records they hold
// (routes, services, backends), their value encodings and keys, one
// Snapshot of a set of networks read at once, and one
// coalesced change signal over a network's tables. Nothing else knows a
// table name or a value format; ipam alone keeps its own private tables
// (ipam.WatchTables, ipam.WatchNetworks).
//
// The wire formats are fixed: nodes of different versions read each
// other's entries, so an encoder here writes exactly the bytes older
// nodes wrote.
//
//   - table "overlayd.routes" (TableRoutes), network-scoped, key = the
//     node's name (RouteKey), owner = that node, value = "ADDR/32 VTEP"
//     (IPv4 network), "ADDR6/128 VTEP" (IPv6) or "ADDR/32 ADDR6/128 VTEP"
//     (dual-stack): the node's addresses on the network, one per family,
//     and the underlay address that hosts them. An endpoint (a network namespace attached on the node)
//     has an entry of the same value keyed "NODE/NAME"
//     (EndpointRouteKey), owner = its node.
//   - table "overlayd.services" (TableServices), network-scoped (network =
//     the service's network), key = service name, owner = the node that
//     created it, value = JSON {"name":"web","network":"default",
//     "vip":"10.200.255.1","ports":[{"port":80,"proto":"tcp"}]} plus, on a
//     dual-stack network, "vip6": the service's IPv6 VIP ("vip" is the
//     IPv6 one on an IPv6 network).
//   - table "overlayd.backends" (TableBackends), network-scoped, key =
//     "<service>/<ip:port>" (BackendKey), owner = the node that added the
//     backend, value = JSON {"service":"web","addr":"10.200.1.1:8080" (or
//     "[fd00:10::3]:8080"),
//     "weight":1,"healthy":true} plus an optional "check" ("tcp" or
//     "udp"; absent means none) and an optional "port": the number of the
//     service port the backend serves (absent: by node's rule).
//
// Only an entry's owner writes it.
package catalog
