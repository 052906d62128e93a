// Package seam links package node to node/nodetest and nothing else: node
// registers at init an accessor to the parts of a node that are no part
// of its public API, and nodetest gives it types. It cannot name
// *node.Node (node imports it), so the accessor takes it as any.
package seam
