package dockerplugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/internal/statefile"
)

// savedState is the plugin's state file: what Docker told it and will not
// tell again after a restart.
type savedState struct {
	Networks  []savedNetwork  `json:"networks"`
	Endpoints []savedEndpoint `json:"endpoints"`
}

type savedNetwork struct {
	ID      string       `json:"id"`
	CIDR    netip.Prefix `json:"cidr"`
	CIDR6   netip.Prefix `json:"cidr6,omitzero"`    // a dual-stack network's IPv6 subnet
	Overlay string       `json:"overlay,omitempty"` // "" if its name was not learned yet
	Joined  bool         `json:"joined,omitempty"`
	IfName  string       `json:"ifname,omitempty"`
}

type savedEndpoint struct {
	ID       string       `json:"id"`
	Network  string       `json:"network"`
	Addr     netip.Prefix `json:"addr"`
	Addr6    netip.Prefix `json:"addr6,omitzero"`
	Name     string       `json:"name,omitempty"`
	Sandbox  string       `json:"sandbox,omitempty"`
	Attached bool         `json:"attached,omitempty"`
}

// load reads the state file, if there is one: networks whose name was
// still being learned are learned again, endpoints that waited for their
// namespace wait again.
func (p *Plugin) load() error {
	if p.state == "" {
		return nil
	}
	data, err := os.ReadFile(p.state)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dockerplugin: state file: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("dockerplugin: state file %s is damaged (%v); move it away to start over (Docker's networks of this driver must then be created again)", p.state, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range st.Networks {
		if s.ID == "" || !s.CIDR.IsValid() {
			continue
		}
		n := &network{ID: s.ID, CIDR: s.CIDR, CIDR6: s.CIDR6, Overlay: s.Overlay, Joined: s.Joined, IfName: s.IfName, ready: make(chan struct{})}
		p.networks[n.ID] = n
		if n.Overlay != "" {
			close(n.ready)
		} else if p.names != nil {
			p.resolveLocked(n)
		} else {
			n.err = fmt.Errorf("overlayd: the name of Docker network %s was never learned; remove it and create it with -o %s=NAME", short(n.ID), optNetwork)
			close(n.ready)
		}
	}
	for _, s := range st.Endpoints {
		if s.ID == "" || !s.Addr.IsValid() {
			continue
		}
		p.endpoints[s.ID] = &endpoint{ID: s.ID, Network: s.Network, Addr: s.Addr, Addr6: s.Addr6, Name: s.Name, Sandbox: s.Sandbox, Attached: s.Attached}
	}
	p.log.Info("docker plugin state loaded", zap.Int("networks", len(p.networks)), zap.Int("endpoints", len(p.endpoints)))
	return nil
}

// saveLocked writes the state file; a failure is logged (Docker's call
// succeeded, and the next change writes it again).
func (p *Plugin) saveLocked() {
	if p.state == "" {
		return
	}
	var st savedState
	for _, n := range p.networks {
		st.Networks = append(st.Networks, savedNetwork{ID: n.ID, CIDR: n.CIDR, CIDR6: n.CIDR6, Overlay: n.Overlay, Joined: n.Joined, IfName: n.IfName})
	}
	for _, e := range p.endpoints {
		st.Endpoints = append(st.Endpoints, savedEndpoint{ID: e.ID, Network: e.Network, Addr: e.Addr, Addr6: e.Addr6, Name: e.Name, Sandbox: e.Sandbox, Attached: e.Attached})
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = statefile.WriteAtomic(p.state, data)
	}
	if err != nil {
		p.log.Error("docker plugin state not saved", zap.String("path", p.state), zap.Error(err))
	}
}
