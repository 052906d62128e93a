// Package endpoint attaches network namespaces (containers, `ip netns`
// namespaces, rootless ones) to the node's overlay networks as endpoints:
// each gets a TUN device inside its namespace, an address leased from the
// network's IPAM under the key "NODE/NAME", the router's local switching
// and VXLAN, and a routes entry of that key that the cluster accepts from
// the lease holder only (network.Manager.Learned), so that every node
// routes and names (NAME.NET.overlay) it.
//
// On a dual-stack network an endpoint has an address of each family (each
// leased under "NODE/NAME"), its device both prefixes, and its routes
// entry both host prefixes.
//
// A Manager keeps endpoints.json in the state directory, written before
// each step of an attach or detach, so that a daemon killed halfway
// finishes the undo on its next start: nothing is left half made, no
// device without a lease nor a lease without a device. With a state
// directory the devices are persistent: a restart re-adopts them and the
// namespaces' sockets never notice. A namespace that goes away (its
// container exited) is noticed within a check interval and its endpoint
// detached.
//
// Devices are made by this process (stack.OpenNetnsTUN) or, where that is
// refused for lack of privilege (a rootless container's namespace, owned
// by a user namespace this multithreaded process may not enter), by a
// helper process (Options.Helper).
package endpoint
