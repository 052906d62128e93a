package node

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/endpoint"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/gossip/mdns"
	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/network"
)

// Check reports every mistake that would stop a node with cfg from
// starting, short of binding sockets and opening devices: cfg.Validate's,
// then those in the files a start reads, with the start's own messages
// (the gossip key file; the state directory, which must be a directory the
// node can write or create and that not every user may write); the
// directory of the control socket; the VTEP address peers are told. It
// binds and opens nothing, so a port in use or a missing privilege (a TUN
// needs CAP_NET_ADMIN) shows only at start. Warnings are what the start
// would log and get past: a state file it cannot use (it moves it aside
// and recovers from the other files and the node's peers), a state
// directory its group may write. `overlayd run --check` is this, and
// `overlayd run` calls it before it starts.
func Check(cfg config.Config) (warnings []string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if cfg.Gossip.Enabled() {
		if cfg.Gossip.KeyFile != "" {
			if _, err := gossip.LoadKeyFile(cfg.Gossip.KeyFile); err != nil {
				errs = append(errs, err)
			}
		}
		var seeds []string
		for _, s := range cfg.Gossip.Join {
			ap, _ := config.ParseAddrPort(s, config.DefaultGossipPort)
			seeds = append(seeds, ap.String())
		}
		if _, err := advertiseVTEP(cfg, cfg.Listen, seeds); err != nil {
			errs = append(errs, err)
		}
		if ip := cfg.Gossip.Listen.Addr(); cfg.Gossip.Discover == config.DiscoverMDNS && !ip.IsUnspecified() {
			if err := mdns.CheckAddr(ip); err != nil {
				errs = append(errs, err)
			}
		}
		if cfg.StateDir != "" {
			w, err := network.CheckStateDir(cfg.StateDir)
			warnings = append(warnings, w...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if cfg.Control != "" {
		if err := statefile.CheckCreatable(filepath.Dir(cfg.Control)); err != nil {
			errs = append(errs, fmt.Errorf("api: control socket %s: %w", cfg.Control, err))
		}
	}
	return warnings, errors.Join(errs...)
}

// ValidNetworkName reports whether s may name a network (1 to 63 letters,
// digits, '-', '_' or '.', not starting with '.' or '-'), the rule the
// control plane applies, for clients that check before they ask.
func ValidNetworkName(s string) bool { return network.ValidName(s) }

// ValidEndpointName reports whether s can name an endpoint (a DNS label).
func ValidEndpointName(s string) bool { return endpoint.ValidName(s) }

// CheckCIDRs checks a network's CIDRs as a create takes them (one or two,
// at most one per family; IPv4 /8 to /26, IPv6 /48 to /122), for the CLI
// to say a mistake before asking the daemon.
func CheckCIDRs(cidrs []string) error {
	_, err := network.ParseCIDRs(cidrs)
	return err
}
