// Command overlayd-cni is a CNI plugin (spec 1.0.0 and 1.1.0: ADD, DEL,
// CHECK, STATUS, GC and VERSION) that puts a container's network
// namespace on an overlayd network: it asks the local daemon, through its
// control socket, to attach the namespace as an endpoint, and answers the
// runtime with the CNI result (the interface in the sandbox, its address,
// its routes and the network's DNS server and search domain).
//
// Its network configuration:
//
//	{"cniVersion": "1.0.0", "name": "blue", "type": "overlayd-cni",
//	 "network": "blue", "control": "/run/overlayd/overlayd.sock"}
//
// network is the overlay network (default: the configuration's name);
// control the daemon's socket (default as the overlayd CLI's: the
// OVERLAYD_CONTROL environment variable, else /run/overlayd/overlayd.sock
// for root); defaultRoute (false) also points the container's default
// route at the overlay; dataDir (/var/lib/cni/overlayd) is where the
// plugin records which endpoint it made for which container and
// interface, so that DEL and GC release exactly those. Unknown keys are
// errors. An address is asked for with the "ips" capability
// (runtimeConfig.ips), args.cni.ips or CNI_ARGS IP=ADDR; else the
// network's IPAM picks one.
//
// The endpoint is named after the pod (CNI_ARGS K8S_POD_NAME) where the
// runtime gives one, else after the container ID's first 12 characters,
// made a DNS label: NAME.NET.overlay resolves to it on every node. When
// another namespace on this node already holds that name (two pods of one
// name in two Kubernetes namespaces), the endpoint is NAME-HASH, HASH
// eight hex digits of the container ID and interface.
//
// DEL is idempotent and succeeds for a container it never added. With
// the daemon down it succeeds only when the namespace is gone (the
// daemon releases an endpoint whose namespace went away when it comes
// back); while the namespace is still there it fails with code 11 (try
// again later), since the address cannot be released without the daemon.
// Every request to the daemon is bounded in time: a daemon that is down
// or does not answer gives a CNI error (11, or 50 for STATUS), never a
// hang.
package main
