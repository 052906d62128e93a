package dockerplugin

// The request and response bodies of the protocol, as libnetwork's
// docs/remote.md (NetworkDriver.*) and docs/ipam.md (IpamDriver.*) give
// them. Every response carries Err; a failure is also answered with an
// HTTP error status (Docker reads the message from Err either way).

// errResponse is every failed call's body.
type errResponse struct {
	Err string
}

// activateResponse answers Plugin.Activate.
type activateResponse struct {
	Implements []string
}

// capabilitiesResponse answers NetworkDriver.GetCapabilities.
type capabilitiesResponse struct {
	Scope             string // local: each host's Docker keeps its own networks
	ConnectivityScope string
}

// ipamData is one address pool of a network, as IPAM gave it.
type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]string
}

// createNetworkRequest is NetworkDriver.CreateNetwork's body. Options
// holds libnetwork's generic options; the -o options of `docker network
// create` are under "com.docker.network.generic".
type createNetworkRequest struct {
	NetworkID string
	Options   map[string]any
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

// networkRequest is the body of NetworkDriver.DeleteNetwork.
type networkRequest struct {
	NetworkID string
}

// endpointInterface is the interface of an endpoint: the addresses Docker's
// IPAM step gave it.
type endpointInterface struct {
	Address     string // CIDR
	AddressIPv6 string
	MacAddress  string
}

// createEndpointRequest is NetworkDriver.CreateEndpoint's body.
type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]any
}

// createEndpointResponse answers CreateEndpoint. Interface stays nil:
// Docker gave the address, and a driver must not change it.
type createEndpointResponse struct {
	Interface *endpointInterface
}

// endpointRequest is the body of DeleteEndpoint, EndpointOperInfo, Leave
// and RevokeExternalConnectivity.
type endpointRequest struct {
	NetworkID  string
	EndpointID string
	Options    map[string]any // ProgramExternalConnectivity's
}

// endpointInfoResponse answers EndpointOperInfo.
type endpointInfoResponse struct {
	Value map[string]any
}

// joinRequest is NetworkDriver.Join's body. SandboxKey is the path of the
// container's network namespace (/var/run/docker/netns/ID, ID the first
// 12 hex digits of the container's ID).
type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]any
}

// interfaceName names a device for Docker to move into the sandbox.
type interfaceName struct {
	SrcName   string
	DstPrefix string
}

// staticRoute is a route Docker adds in the sandbox.
type staticRoute struct {
	Destination string
	RouteType   int
	NextHop     string
}

// joinResponse answers Join. InterfaceName stays nil: the node creates
// the TUN device inside the namespace itself, with its address and
// routes, so Docker has nothing to move. DisableGatewayService keeps
// Docker from adding its docker_gwbridge network for a default route
// (this driver gives no gateway).
type joinResponse struct {
	InterfaceName         *interfaceName
	Gateway               string
	StaticRoutes          []staticRoute
	DisableGatewayService bool
}

// discoveryRequest is the body of DiscoverNew and DiscoverDelete.
type discoveryRequest struct {
	DiscoveryType int
	DiscoveryData any
}

// ipamCapabilitiesResponse answers IpamDriver.GetCapabilities.
type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

// addressSpacesResponse answers IpamDriver.GetDefaultAddressSpaces.
type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

// requestPoolRequest is IpamDriver.RequestPool's body.
type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

// requestPoolResponse answers RequestPool.
type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}

// releasePoolRequest is IpamDriver.ReleasePool's body.
type releasePoolRequest struct {
	PoolID string
}

// requestAddressRequest is IpamDriver.RequestAddress's body. Options has
// RequestAddressType "com.docker.network.gateway" for the gateway.
type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

// requestAddressResponse answers RequestAddress; Address is a CIDR.
type requestAddressResponse struct {
	Address string
	Data    map[string]string
}

// releaseAddressRequest is IpamDriver.ReleaseAddress's body.
type releaseAddressRequest struct {
	PoolID  string
	Address string
}

// empty answers the calls that return nothing but Err.
type empty struct{}

// Docker's names for the things above.
const (
	contentType   = "application/vnd.docker.plugins.v1.2+json"
	genericOption = "com.docker.network.generic"
	gatewayType   = "com.docker.network.gateway"
	requestType   = "RequestAddressType"
	addressSpace  = "overlayd"

	// The -o options of `docker network create -d overlayd`.
	optNetwork = "overlayd.network" // the overlay network's name (default: the Docker network's)
	optIfName  = "overlayd.ifname"  // the interface's name in the containers (default eth0)
)
