package dockerplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
)

// Backend is what the plugin needs of a node: its networks (a subset of
// api.ControlBackend) and endpoints (api.EndpointBackend). *node.Node
// implements it. Its methods may be called concurrently.
type Backend interface {
	Networks(ctx context.Context) ([]api.NetworkInfo, error)
	CreateNetwork(ctx context.Context, req api.CreateNetwork) (api.NetworkInfo, error)
	JoinNetwork(ctx context.Context, name string) (api.NetworkInfo, error)
	LeaveNetwork(ctx context.Context, name string) error
	Attach(ctx context.Context, req api.Attach) (api.EndpointInfo, error)
	Detach(ctx context.Context, name string) error
	Reserve(ctx context.Context, network, addr string, family int) (api.Reservation, error)
	Unreserve(ctx context.Context, network, addr string) error
}

// Names finds the names behind Docker's IDs; *Docker (the Docker API)
// implements it.
type Names interface {
	// NetworkName returns the name of the Docker network with ID id, or an
	// ErrNotFound error while Docker has not stored it yet.
	NetworkName(ctx context.Context, id string) (string, error)
	// EndpointName returns the name Docker gave an endpoint of a
	// network: its container's.
	EndpointName(ctx context.Context, networkID, endpointID string) (string, error)
}

// Options configure a Plugin.
type Options struct {
	Backend Backend
	// Names looks Docker's names up; nil: none (a network then needs -o
	// overlayd.network=NAME, and endpoints are named after their IDs).
	Names Names
	// StatePath keeps the plugin's view of Docker's networks and endpoints
	// across restarts (Docker does not repeat CreateNetwork); "" keeps it
	// in memory only.
	StatePath string
	Logger    *zap.Logger
}

// maxBody bounds request bodies.
const maxBody = 1 << 20

// How long a call waits for the name of a network being learned, and for
// how long the plugin tries to learn it.
const (
	defaultNetworkWait = 15 * time.Second
	defaultResolve     = 30 * time.Second
)

// Plugin serves the protocol. Create it with New; Close stops what it
// started (the name lookups, the waits for namespaces).
type Plugin struct {
	b     Backend
	names Names
	state string
	log   *zap.Logger
	// isNetns reports whether path is a network namespace (a file of nsfs).
	isNetns func(path string) bool
	// netnsPoll is the first interval of the wait for a namespace.
	netnsPoll time.Duration
	// allIPv6Off reports whether the namespace at path has IPv6 off for
	// all its devices (Docker, before 28, has taken it on); an error is
	// "cannot tell".
	allIPv6Off func(path string) (bool, error)
	// networkWait and resolveTimeout: see defaultNetworkWait (short in
	// the fuzz test, where a wait is a hang).
	networkWait, resolveTimeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex           // guards networks, endpoints
	networks  map[string]*network  // by Docker network ID
	endpoints map[string]*endpoint // by Docker endpoint ID
}

// network is a Docker network of this driver.
type network struct {
	ID string
	// CIDR is its subnet of the first family (IPv4, or IPv6 on an IPv6
	// network); CIDR6 the IPv6 subnet of a dual-stack one (--ipv6).
	CIDR, CIDR6 netip.Prefix
	// Overlay is the overlay network's name; "" while it is being learned.
	Overlay string
	// Joined says the plugin joined it (the node was not attached before),
	// so deleting the Docker network leaves it.
	Joined bool
	IfName string

	ready  chan struct{} // closed once Overlay is set or err
	err    error         // why the overlay network could not be had
	cancel context.CancelFunc
}

// cidrs are n's subnets, IPv4 first.
func (n *network) cidrs() []netip.Prefix {
	out := []netip.Prefix{n.CIDR}
	if n.CIDR6.IsValid() {
		out = append(out, n.CIDR6)
	}
	return out
}

// hasPool reports whether cidr is one of n's subnets.
func (n *network) hasPool(cidr netip.Prefix) bool {
	return n.CIDR == cidr || n.CIDR6.IsValid() && n.CIDR6 == cidr
}

// addrs are e's addresses, "10.30.0.2/16,fd00:30::2/64".
func (e *endpoint) addrs() string {
	if e.Addr6.IsValid() {
		return e.Addr.String() + "," + e.Addr6.String()
	}
	return e.Addr.String()
}

// endpoint is a Docker endpoint of this driver.
type endpoint struct {
	ID      string
	Network string // Docker network ID
	// Addr is its address of the network's CIDR, Addr6 of its CIDR6.
	Addr, Addr6 netip.Prefix
	// Name is the overlay endpoint's name, set at Join.
	Name    string
	Sandbox string
	// Attached: the node holds an endpoint Name for it.
	Attached bool

	waiting bool          // Join returned before the namespace existed
	err     error         // why the attach after the wait failed
	cancel  func()        // stops the wait
	done    chan struct{} // closed when the wait has ended
}

// New returns a plugin over opts.Backend, loading opts.StatePath if it
// exists.
func New(opts Options) (*Plugin, error) {
	if opts.Backend == nil {
		return nil, errors.New("dockerplugin: no backend")
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Plugin{
		b: opts.Backend, names: opts.Names, state: opts.StatePath, log: log.Named("docker"),
		isNetns: isNetns, netnsPoll: 5 * time.Millisecond, allIPv6Off: allIPv6Off,
		networkWait: defaultNetworkWait, resolveTimeout: defaultResolve,
		ctx: ctx, cancel: cancel,
		networks: map[string]*network{}, endpoints: map[string]*endpoint{},
	}
	if err := p.load(); err != nil {
		cancel()
		return nil, err
	}
	return p, nil
}

// Close stops the plugin's lookups and waits, and waits for them to end.
// Safe twice.
func (p *Plugin) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}

// call is one method of the protocol: it decodes its body into a request
// and answers with a response or an error.
type call func(ctx context.Context, body []byte) (any, error)

// Handler returns the protocol's HTTP handler: POST /Plugin.Activate,
// /NetworkDriver.*, /IpamDriver.*.
func (p *Plugin) Handler() http.Handler {
	calls := map[string]call{
		"/Plugin.Activate": func(context.Context, []byte) (any, error) {
			return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}, nil
		},
		"/NetworkDriver.GetCapabilities": func(context.Context, []byte) (any, error) {
			return capabilitiesResponse{Scope: "local", ConnectivityScope: "global"}, nil
		},
		"/NetworkDriver.CreateNetwork":               with(p.createNetwork),
		"/NetworkDriver.DeleteNetwork":               with(p.deleteNetwork),
		"/NetworkDriver.CreateEndpoint":              with(p.createEndpoint),
		"/NetworkDriver.DeleteEndpoint":              with(p.deleteEndpoint),
		"/NetworkDriver.EndpointOperInfo":            with(p.endpointInfo),
		"/NetworkDriver.Join":                        with(p.join),
		"/NetworkDriver.Leave":                       with(p.leave),
		"/NetworkDriver.DiscoverNew":                 with(discover),
		"/NetworkDriver.DiscoverDelete":              with(discover),
		"/NetworkDriver.ProgramExternalConnectivity": with(p.externalConnectivity),
		"/NetworkDriver.RevokeExternalConnectivity":  with(p.externalConnectivity),
		"/IpamDriver.GetCapabilities": func(context.Context, []byte) (any, error) {
			return ipamCapabilitiesResponse{}, nil
		},
		"/IpamDriver.GetDefaultAddressSpaces": func(context.Context, []byte) (any, error) {
			return addressSpacesResponse{LocalDefaultAddressSpace: addressSpace, GlobalDefaultAddressSpace: addressSpace}, nil
		},
		"/IpamDriver.RequestPool":    with(p.requestPool),
		"/IpamDriver.ReleasePool":    with(p.releasePool),
		"/IpamDriver.RequestAddress": with(p.requestAddress),
		"/IpamDriver.ReleaseAddress": with(p.releaseAddress),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := calls[r.URL.Path]
		if !ok {
			reply(w, nil, fault.NotFound("overlayd: no such plugin call %s (this plugin implements NetworkDriver and IpamDriver)", r.URL.Path))
			return
		}
		if r.Method != http.MethodPost {
			reply(w, nil, fault.Invalid("overlayd: %s takes POST, not %s", r.URL.Path, r.Method))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			reply(w, nil, fault.Invalid("overlayd: %s: request body unreadable or larger than %d bytes", r.URL.Path, maxBody))
			return
		}
		v, err := c(r.Context(), body)
		if err != nil {
			p.log.Warn("docker plugin call failed", zap.String("call", r.URL.Path[1:]), zap.Error(err))
		}
		reply(w, v, err)
	})
}

// with makes a call of a handler of typed requests: the body (empty or
// null for a zero request) decodes into Req; fields Docker may add later
// are ignored.
func with[Req any](h func(context.Context, Req) (any, error)) call {
	return func(ctx context.Context, body []byte) (any, error) {
		var req Req
		if b := bytes.TrimSpace(body); len(b) > 0 && !bytes.Equal(b, []byte("null")) {
			if err := json.Unmarshal(b, &req); err != nil {
				return nil, fault.Invalid("overlayd: malformed request: %v", err)
			}
		}
		return h(ctx, req)
	}
}

// reply writes v, or err as {"Err": "..."} with the status of its kind.
func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", contentType)
	if err != nil {
		w.WriteHeader(api.StatusOf(err))
		json.NewEncoder(w).Encode(errResponse{Err: err.Error()})
		return
	}
	b, merr := json.Marshal(v)
	if merr != nil {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(errResponse{Err: fmt.Sprintf("overlayd: encoding the response: %v", merr)})
		return
	}
	w.Write(b)
}

func discover(context.Context, discoveryRequest) (any, error) { return empty{}, nil }

// externalConnectivity answers Program/RevokeExternalConnectivity: an
// overlay endpoint has no ports published on the host to program.
func (p *Plugin) externalConnectivity(_ context.Context, req endpointRequest) (any, error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	return empty{}, nil
}

// checkID refuses a missing or absurd Docker ID.
func checkID(field, id string) error {
	if id == "" {
		return fault.Invalid("overlayd: the request has no %s", field)
	}
	if len(id) > 128 {
		return fault.Invalid("overlayd: %s is %d characters long; Docker's IDs are 64", field, len(id))
	}
	return nil
}
