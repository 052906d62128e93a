// Package gossiptest provides an in-memory memberlist transport: every node
// of a cluster lives in one process and talks through a Network, with no
// sockets, and tests can cut and heal the network between groups of nodes.
package gossiptest
