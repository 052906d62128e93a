// Package dockerplugin serves Docker's libnetwork remote network driver and
// IPAM driver protocol (HTTP/JSON on a unix socket, where dockerd looks for
// plugins) over a node's networks and endpoints: `docker network create -d
// overlayd --ipam-driver overlayd --subnet CIDR NAME` creates or joins the
// overlay network NAME through gossip, and a container on it becomes an
// endpoint of that network named after the container (its DNS name
// NAME.NET.overlay), with a TUN device that the node creates inside the
// container's namespace.
//
// The protocol gives a driver only Docker's IDs, so the plugin asks the
// Docker API (Docker) for the names: the network's once Docker has stored
// it (just after CreateNetwork returns), the container's at Join from the
// network's endpoints. The request and response shapes are those of
// libnetwork's docs/remote.md and docs/ipam.md.
package dockerplugin
