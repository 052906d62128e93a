// Package door implements overlayd's rootless front doors: a SOCKS5 server
// (RFC 1928: CONNECT and UDP ASSOCIATE), an HTTP CONNECT proxy, and TCP and
// UDP port forwards, each listening on the host and reaching the overlay
// through a Dialer (in practice the node's netstack).
//
// Every door limits its concurrent connections, times out idle ones and
// ones whose data stopped moving, reports errors to the client in its own
// protocol (SOCKS reply codes, HTTP status), and counts what it did in
// Stats. Start opens the door's host socket; Close shuts it and every
// connection through it and waits for their goroutines.
package door
