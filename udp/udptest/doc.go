// Package udptest provides an in-memory underlay for tests: a Network of
// Conns with the same batch methods as udp.Conn, with bounded queues,
// counted drops and a hook to drop, duplicate or corrupt datagrams.
package udptest
