package dockerplugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
)

// How long a Join that came before the container's namespace existed
// waits for it.
const netnsWait = 2 * time.Minute

// createEndpoint records an endpoint and the address Docker's IPAM step
// gave it; the node attaches it at Join, when the namespace is known.
func (p *Plugin) createEndpoint(ctx context.Context, req createEndpointRequest) (any, error) {
	if err := checkID("NetworkID", req.NetworkID); err != nil {
		return nil, err
	}
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	if req.Interface == nil || req.Interface.Address == "" && req.Interface.AddressIPv6 == "" {
		return nil, fault.Invalid("overlayd: the endpoint has no address; create the network with --ipam-driver overlayd")
	}
	n, err := p.overlay(ctx, req.NetworkID)
	if err != nil {
		return nil, err
	}
	// One address per subnet of the network, each of its subnet.
	var addrs []netip.Prefix
	for _, c := range n.cidrs() {
		s := req.Interface.Address
		if c.Addr().Is6() {
			s = req.Interface.AddressIPv6
		}
		if s == "" {
			return nil, fault.Invalid("overlayd: the endpoint has no address of the network's subnet %s; create the network with --ipam-driver overlayd", c)
		}
		a, err := netip.ParsePrefix(s)
		if err != nil || !c.Contains(a.Addr()) {
			return nil, fault.Invalid("overlayd: endpoint address %s is outside the network's subnet %s", s, c)
		}
		addrs = append(addrs, a)
	}
	if !n.CIDR6.IsValid() && (n.CIDR.Addr().Is4() && req.Interface.AddressIPv6 != "" || n.CIDR.Addr().Is6() && req.Interface.Address != "") {
		return nil, fault.Invalid("overlayd: the endpoint has addresses %s and %s; network %s has the subnet %s only", req.Interface.Address, req.Interface.AddressIPv6, short(req.NetworkID), n.CIDR)
	}
	addr, addr6 := addrs[0], netip.Prefix{}
	if len(addrs) > 1 {
		addr6 = addrs[1]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.endpoints[req.EndpointID]; ok {
		if e.Addr != addr || e.Addr6 != addr6 || e.Network != req.NetworkID {
			return nil, fault.Conflict("overlayd: endpoint %s exists with address %s", short(req.EndpointID), e.addrs())
		}
		return createEndpointResponse{}, nil
	}
	p.endpoints[req.EndpointID] = &endpoint{ID: req.EndpointID, Network: req.NetworkID, Addr: addr, Addr6: addr6}
	p.saveLocked()
	return createEndpointResponse{}, nil
}

// join attaches the endpoint inside the container's namespace, named
// after the container. The namespace may not exist yet: Docker before 28
// joins the endpoints first and has runc create the namespace after
// (its prestart hook then bind-mounts it at the sandbox key), while 28
// and later create it first. If it is not there, Join returns and the
// attach follows as soon as the namespace appears (see README: a
// container's first milliseconds may run without the interface there).
func (p *Plugin) join(ctx context.Context, req joinRequest) (any, error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	if req.SandboxKey == "" || !filepath.IsAbs(req.SandboxKey) {
		return nil, fault.Invalid("overlayd: Join needs the sandbox key, the absolute path of the container's network namespace; got %q", req.SandboxKey)
	}
	p.mu.Lock()
	e, ok := p.endpoints[req.EndpointID]
	p.mu.Unlock()
	if !ok {
		return nil, fault.NotFound("overlayd: no endpoint %s on this driver", short(req.EndpointID))
	}
	n, err := p.overlay(ctx, e.Network)
	if err != nil {
		return nil, err
	}
	name := p.endpointName(ctx, e.Network, e.ID)
	at := api.Attach{Name: name, Network: n.Overlay, Netns: req.SandboxKey, IP: e.Addr.Addr().String(), IfName: n.IfName}
	if e.Addr6.IsValid() {
		at.IPs = []string{e.Addr6.Addr().String()}
	}

	p.mu.Lock()
	if e.Attached || e.waiting {
		p.mu.Unlock()
		return nil, fault.Conflict("overlayd: endpoint %s has joined a sandbox already", short(e.ID))
	}
	if at.IfName == "" {
		at.IfName = p.ifNameLocked(req.SandboxKey)
	}
	// Endpoint names are the node's: a container on two networks of the
	// driver is NAME on the first and NAME-NETWORK on the next.
	for _, o := range p.endpoints {
		if o != e && o.Name == at.Name && (o.Attached || o.waiting) {
			at.Name = label(at.Name + "-" + n.Overlay)
			name = at.Name
			break
		}
	}
	e.Name, e.Sandbox, e.err = name, req.SandboxKey, nil
	if !p.isNetns(req.SandboxKey) {
		wctx, cancel := context.WithTimeout(p.ctx, netnsWait)
		e.waiting, e.cancel, e.done = true, cancel, make(chan struct{})
		p.wg.Add(1)
		go p.attachLater(wctx, e, at)
		p.saveLocked()
		p.mu.Unlock()
		p.log.Info("endpoint waits for its container's namespace", zap.String("endpoint", name), zap.String("netns", req.SandboxKey))
		return joinResponse{DisableGatewayService: true}, nil
	}
	p.mu.Unlock()

	if _, err := p.b.Attach(ctx, at); err != nil {
		return nil, err
	}
	p.mu.Lock()
	e.Attached = true
	p.saveLocked()
	p.mu.Unlock()
	p.log.Info("endpoint attached", zap.String("endpoint", name), zap.String("network", n.Overlay), zap.String("addr", e.addrs()))
	return joinResponse{DisableGatewayService: true}, nil
}

// ifNameLocked names the interface of a new endpoint in sandbox: eth0,
// or ethN for a container on N networks of this driver already (Docker
// does not know the interfaces the node makes; its own drivers' are
// named ethN too, so a container on networks of both may need -o
// overlayd.ifname).
func (p *Plugin) ifNameLocked(sandbox string) string {
	n := 0
	for _, o := range p.endpoints {
		if o.Sandbox == sandbox && (o.Attached || o.waiting) {
			n++
		}
	}
	return fmt.Sprintf("eth%d", n)
}

// attachLater waits for the namespace at.Netns and attaches it.
func (p *Plugin) attachLater(ctx context.Context, e *endpoint, at api.Attach) {
	defer p.wg.Done()
	defer close(e.done)
	defer e.cancel()
	err := p.waitNetns(ctx, at.Netns)
	if err == nil {
		p.waitSetUp(ctx, at.Netns)
		_, err = p.b.Attach(ctx, at)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e.waiting = false
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			return // Leave, or the plugin closing
		}
		e.err = err
		p.log.Error("endpoint not attached", zap.String("endpoint", at.Name), zap.String("netns", at.Netns), zap.Error(err))
		return
	}
	e.Attached = true
	p.saveLocked()
	p.log.Info("endpoint attached", zap.String("endpoint", at.Name), zap.String("network", at.Network), zap.String("addr", at.IP))
}

// waitNetns polls path until it is a network namespace: every netnsPoll
// for the first second, then ten times less often.
func (p *Plugin) waitNetns(ctx context.Context, path string) error {
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("overlayd: %s did not become a network namespace within %v", path, netnsWait)
			}
			return ctx.Err()
		case <-t.C:
		}
		if p.isNetns(path) {
			return nil
		}
		d := p.netnsPoll
		if time.Since(start) > time.Second {
			d *= 10
		}
		t.Reset(d)
	}
}

// setUpWait bounds the wait for Docker to take on a namespace it mounted
// on the sandbox key (see waitSetUp).
const setUpWait = 2 * time.Second

// waitSetUp waits, up to setUpWait, until Docker (before 28) has turned
// IPv6 off for all the devices of the namespace at path, which it does
// just after it mounts the namespace on the sandbox key: done after the
// node made the device, that would take the device's IPv6 addresses
// (found with dockerd 20.10: the containers of a network created with
// --ipv6 had none). A device made after it has IPv6 on again for itself
// (the node turns it on for its own device). A namespace that cannot be
// looked at is not waited for.
func (p *Plugin) waitSetUp(ctx context.Context, path string) {
	ctx, cancel := context.WithTimeout(ctx, setUpWait)
	defer cancel()
	for {
		off, err := p.allIPv6Off(path)
		if off || err != nil {
			return
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				p.log.Info("the container's namespace still has IPv6 on for all devices; attaching", zap.String("netns", path), zap.Duration("waited", setUpWait))
			}
			return
		case <-time.After(p.netnsPoll):
		}
	}
}

// leave detaches the endpoint (or stops waiting for its namespace).
func (p *Plugin) leave(ctx context.Context, req endpointRequest) (any, error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	p.mu.Lock()
	e, ok := p.endpoints[req.EndpointID]
	p.mu.Unlock()
	if !ok {
		return empty{}, nil
	}
	return empty{}, p.detach(ctx, e)
}

// detach ends e's wait, if any, and detaches it from the node.
func (p *Plugin) detach(ctx context.Context, e *endpoint) error {
	p.mu.Lock()
	cancel, done := e.cancel, e.done
	p.mu.Unlock()
	if done != nil {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	attached, name := e.Attached, e.Name
	p.mu.Unlock()
	if attached {
		if err := p.b.Detach(ctx, name); err != nil && !errors.Is(err, fault.ErrNotFound) {
			return err
		}
		p.log.Info("endpoint detached", zap.String("endpoint", name))
	}
	p.mu.Lock()
	e.Attached, e.done, e.cancel, e.err = false, nil, nil, nil
	p.saveLocked()
	p.mu.Unlock()
	return nil
}

// deleteEndpoint detaches the endpoint if it is still attached and
// forgets it; its address goes with ReleaseAddress.
func (p *Plugin) deleteEndpoint(ctx context.Context, req endpointRequest) (any, error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	p.mu.Lock()
	e, ok := p.endpoints[req.EndpointID]
	p.mu.Unlock()
	if !ok {
		return empty{}, nil
	}
	if err := p.detach(ctx, e); err != nil {
		return nil, err
	}
	p.mu.Lock()
	delete(p.endpoints, req.EndpointID)
	p.saveLocked()
	p.mu.Unlock()
	return empty{}, nil
}

// endpointInfo answers EndpointOperInfo with the endpoint's overlay side.
func (p *Plugin) endpointInfo(_ context.Context, req endpointRequest) (any, error) {
	if err := checkID("EndpointID", req.EndpointID); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.endpoints[req.EndpointID]
	if !ok {
		return nil, fault.NotFound("overlayd: no endpoint %s on this driver", short(req.EndpointID))
	}
	v := map[string]any{"overlayd.addr": e.Addr.String()}
	if e.Addr6.IsValid() {
		v["overlayd.addr6"] = e.Addr6.String()
	}
	if n, ok := p.networks[e.Network]; ok && n.Overlay != "" {
		v["overlayd.network"] = n.Overlay
		if e.Name != "" {
			v["overlayd.fqdn"] = e.Name + "." + n.Overlay + ".overlay"
		}
	}
	switch {
	case e.Attached:
		v["overlayd.state"] = "attached"
	case e.waiting:
		v["overlayd.state"] = "waiting for the container's network namespace"
	case e.err != nil:
		v["overlayd.state"] = "failed: " + e.err.Error()
	default:
		v["overlayd.state"] = "created"
	}
	if e.Name != "" {
		v["overlayd.endpoint"] = e.Name
	}
	return endpointInfoResponse{Value: v}, nil
}

// endpointName names the endpoint after its container, from the Docker
// API (see Docker.EndpointName). Without the Docker API, or if the
// look-up fails, the name is "ep-" and the endpoint ID's short form.
func (p *Plugin) endpointName(ctx context.Context, networkID, endpointID string) string {
	fallback := "ep-" + label(short(endpointID))
	if p.names == nil {
		return fallback
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	name, err := p.names.EndpointName(ctx, networkID, endpointID)
	if err == nil {
		if l := label(name); l != "" {
			return l
		}
	}
	p.log.Warn("endpoint named after its ID: no container name from the Docker API", zap.String("docker_endpoint", short(endpointID)), zap.String("endpoint", fallback), zap.Error(err))
	return fallback
}
