package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/utils"

	"github.com/overlayd/overlayd/config"
)

// defaultDataDir is where the plugin records its attachments unless the
// configuration says otherwise (the CNI plugins' convention: /var/lib/cni/NAME).
const defaultDataDir = "/var/lib/cni/overlayd"

// netConf is the network configuration the runtime hands the plugin on stdin.
type netConf struct {
	types.PluginConf

	// Network is the overlay network to attach to; default Name.
	Network string `json:"network,omitempty"`
	// Control is the daemon's control socket; default the CLI's
	// (config.DefaultControlPath).
	Control string `json:"control,omitempty"`
	// DefaultRoute also points the container's default route at the overlay.
	DefaultRoute bool `json:"defaultRoute,omitempty"`
	// DataDir holds the plugin's records of the endpoints it made.
	DataDir string `json:"dataDir,omitempty"`

	// RuntimeConfig carries the capabilities' arguments; ips is the one
	// overlayd-cni takes.
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitzero"`
	// Args are the conventions' per-container arguments (args.cni.ips).
	Args struct {
		CNI struct {
			IPs []string `json:"ips,omitempty"`
		} `json:"cni,omitzero"`
	} `json:"args,omitzero"`
}

// knownKeys are the configuration's keys: the spec's well-known ones, the
// ones the runtime inserts, and overlayd-cni's own. Keys starting
// "cni.dev/" are the spec's (cni.dev/valid-attachments on GC) and are
// known too.
var (
	specKeys = []string{"cniVersion", "name", "type", "capabilities", "ipam", "dns", "args", "prevResult", "runtimeConfig"}
	ownKeys  = []string{"network", "control", "defaultRoute", "dataDir"}
)

// parseConfig decodes and checks the network configuration; its errors
// are CNI errors with code 6 (not JSON) or 7 (not a valid configuration).
func parseConfig(stdin []byte) (*netConf, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &keys); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "overlayd-cni: the network configuration is not a JSON object: "+jsonMistake(err), "")
	}
	var unknown []string
	for k := range keys {
		if !slices.Contains(specKeys, k) && !slices.Contains(ownKeys, k) && !strings.HasPrefix(k, "cni.dev/") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, invalidConf("unknown key %q in the network configuration (overlayd-cni's own keys are %s)", unknown[0], strings.Join(ownKeys, ", "))
	}
	var c netConf
	d := json.NewDecoder(bytes.NewReader(stdin))
	if err := d.Decode(&c); err != nil {
		return nil, invalidConf("the network configuration is not valid: %s", jsonMistake(err))
	}
	if c.Name == "" {
		return nil, invalidConf("the network configuration has no \"name\"")
	}
	// The name is a directory of dataDir: the spec's rule for it keeps
	// it one path element (skel checks it too, before any command).
	if err := utils.ValidateNetworkName(c.Name); err != nil {
		return nil, invalidConf("name %q: %s", c.Name, err.Msg)
	}
	if c.Network == "" {
		c.Network = c.Name
	}
	if strings.ContainsFunc(c.Network, func(r rune) bool { return r < ' ' || r == '/' || r == 0x7f }) {
		return nil, invalidConf("network %q is not a network name", c.Network)
	}
	if c.IPAM.Type != "" {
		return nil, invalidConf("overlayd-cni takes addresses from the overlay network's IPAM, not from the %q plugin: remove \"ipam\" (ask for an address with the ips capability or CNI_ARGS IP=ADDR)", c.IPAM.Type)
	}
	if c.Control == "" {
		c.Control = config.DefaultControlPath()
	} else if !filepath.IsAbs(c.Control) {
		return nil, invalidConf("\"control\" %q must be an absolute path to the daemon's socket", c.Control)
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	} else if !filepath.IsAbs(c.DataDir) {
		return nil, invalidConf("\"dataDir\" %q must be an absolute path", c.DataDir)
	}
	return &c, nil
}

// jsonMistake says what is wrong with JSON in a sentence of its own.
func jsonMistake(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%q is %s, it must be %s", te.Field, article(te.Value), kind(te.Type.Kind().String()))
	case errors.As(err, &te):
		return fmt.Sprintf("found %s where %s belongs", article(te.Value), kind(te.Type.Kind().String()))
	case errors.As(err, &se):
		return fmt.Sprintf("%v at byte %d", se, se.Offset)
	}
	return err.Error()
}

func article(v string) string {
	switch v {
	case "array", "object":
		return "an " + v
	}
	return "a " + v
}

func kind(k string) string {
	switch k {
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	case "int", "uint", "int64", "uint64", "float64":
		return "a number"
	}
	return "a " + k
}

func invalidConf(format string, args ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, "overlayd-cni: "+fmt.Sprintf(format, args...), "")
}

// cniArgs are the CNI_ARGS keys overlayd-cni reads; it ignores others.
type cniArgs struct {
	types.CommonArgs
	K8S_POD_NAME      types.UnmarshallableString //nolint:revive // the key's name
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive
	IP                types.UnmarshallableString
}

// parseArgs decodes CNI_ARGS (KEY=VALUE;KEY=VALUE); keys overlayd-cni
// does not know are ignored, as Kubernetes asks with IgnoreUnknown=1.
func parseArgs(s string) (*cniArgs, error) {
	a := &cniArgs{CommonArgs: types.CommonArgs{IgnoreUnknown: true}}
	if err := types.LoadArgs(s, a); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("overlayd-cni: CNI_ARGS %q is not KEY=VALUE pairs separated by ';': %v", s, err), "")
	}
	return a, nil
}

// requestedIPs are the addresses the runtime asks for, none for none:
// from the ips capability, else args.cni.ips, else CNI_ARGS IP. An
// endpoint has one address per family of its network; asking for two of
// one family (or more than two) is an error.
func (c *netConf) requestedIPs(a *cniArgs) ([]string, error) {
	ips, from := c.RuntimeConfig.IPs, "runtimeConfig.ips"
	if len(ips) == 0 {
		ips, from = c.Args.CNI.IPs, "args.cni.ips"
	}
	if len(ips) == 0 && a.IP != "" {
		ips, from = strings.Split(string(a.IP), ","), "CNI_ARGS IP"
	}
	if len(ips) > 2 {
		return nil, invalidConf("%s asks for %d addresses; an overlayd endpoint has one address per family (at most one IPv4 and one IPv6)", from, len(ips))
	}
	var out []string
	var fams [2]string
	for _, s := range ips {
		addr, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return nil, invalidConf("%s %q is not an IP address", from, s)
			}
			addr = p.Addr()
		}
		if addr.Zone() != "" {
			return nil, invalidConf("%s %q has a zone; give an overlay address", from, s)
		}
		addr = addr.Unmap()
		f := 0
		if addr.Is6() {
			f = 1
		}
		if fams[f] != "" {
			return nil, invalidConf("%s asks for %s and %s, of one family; an overlayd endpoint has one address per family", from, fams[f], addr)
		}
		fams[f] = addr.String()
		out = append(out, addr.String())
	}
	return out, nil
}
