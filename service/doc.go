// Package service keeps the services and backends of a node: their
// create, remove and list operations with the ownership rules, the
// balancer's services computed from a catalog snapshot, the active health
// checks of this node's backends and the persistence of this node's
// entries of the service tables.
//
// The tables and their values (catalog.TableServices, catalog.Service,
// catalog.TableBackends, catalog.Backend) are catalog's; see its doc.
//
// Which service port a backend serves (one rule, servedPorts): the port
// given as "port"; else the service port(s) with the backend's own port
// number (VIP:5201 → backends IP:5201); else, when every port of the
// service has one number (80/tcp, or 53/tcp and 53/udp), that port,
// mapped (VIP:80 → IP:8080). A flow to VIP:PORT only ever reaches a
// backend that serves PORT: each port has its own Maglev table.
//
// A service on a dual-stack network has a VIP of each family (one per
// family of the network's CIDRs; catalog.Service.VIP and VIP6), and is
// two services of the balancer side by side, never a translation: NAME
// for its first VIP and NAME/6 for its IPv6 one, each with the backends
// of its VIP's family. A backend serves the VIP of its address's family.
//
// Only an entry's owner writes it. A node changes only the services it
// created and the backends it added; asked to change another node's, it
// answers "backend X was added by node Y; run the command there" (a
// fault.OwnerError) rather than forwarding. Entries of a dead owner are
// withdrawn by gossip, so its backends leave the Maglev tables within the
// failure-detection time. A service outlives a crash of its creator: the
// balancer gets the services listed with ListAll (kept for the dead-owner
// grace, 24 h by default), so only the creator's backends leave with it;
// readers that use List (the DNS zone) hide the service's name until its
// creator returns.
//
// The package computes and applies; it runs no watch of its own. Its
// caller (node's reconciler) turns a catalog.Snapshot and a View into the
// balancer's services with Balance and hands them over with
// Manager.Apply, on every change signal, including Options.Changed.
package service
