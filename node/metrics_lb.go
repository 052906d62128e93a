package node

import "github.com/overlayd/overlayd/lb"

// balancer is the node's service load balancer (nil when it has none),
// for metrics.
func (n *Node) balancer() *lb.Balancer { return n.lb }
