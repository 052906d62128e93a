// Package udp implements overlayd's underlay sockets: batched UDP receive and
// send (recvmmsg/sendmmsg with UDP GSO and GRO on Linux, a plain fallback
// elsewhere).
package udp
