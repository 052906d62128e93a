// Package nodetest reaches the parts of a node.Node that tests and
// benchmarks look into and that are no part of the embedding API: its
// router, its gossip instance, its balancer, and a crash (a stop without
// leaving the cluster, as kill -9 would); and the node's unexported
// options, which replace its underlay socket, its gossip transport or its
// attachment with a test's (WithUnderlay, WithTransport, WithDevice).
// Memory puts the nodes of an in-process cluster on the in-memory fakes
// (udptest, gossiptest), so that they open no socket for either.
package nodetest
