// Package nodetest reaches the parts of a node.Node that tests and
// benchmarks look into and that are no part of the embedding API: its
// router, its gossip instance, its balancer, and a crash (a stop without
// leaving the cluster, as kill -9 would).
package nodetest
