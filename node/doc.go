// Package node builds an overlayd node from a config.Config and runs it:
// it wires the attachment, the underlay socket, the router and the control
// API together, and offers the embedding API (New, Start, Close, Dial,
// Listen).
package node
