// Package e2e holds overlayd's multi-node tests: clusters of nodes in one
// process on 127.0.0.1 (no privileges needed), and hosts in network
// namespaces with real TUN devices and kernel VXLAN peers (root).
package e2e
