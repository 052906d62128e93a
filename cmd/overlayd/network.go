package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

const networkDesc = `
Manage the cluster's overlay networks (needs a daemon run with --gossip).

  network create NAME CIDR [--vni N]   define a network cluster-wide: CIDR is
                                       IPv4 (10.10.0.0/16) or IPv6 (fd00:10::/64);
                                       --cidr C (repeatable) gives one of each:
                                       network create blue --cidr 10.10.0.0/16 --cidr fd00:10::/64
  network ls                           list the networks
  network join NAME                    attach this node (it gets an address)
  network leave NAME                   detach this node (its address is released)`

// clientFlags declares the flags every client command has.
func clientFlags(fs *flag.FlagSet) (control *string, asJSON *bool) {
	control = fs.String("control", config.DefaultControlPath(), "`path` of the daemon's control socket (env OVERLAYD_CONTROL; else /run/overlayd/overlayd.sock as root, $XDG_RUNTIME_DIR/overlayd.sock, or /tmp/overlayd-UID.sock)")
	asJSON = fs.Bool("json", false, "print JSON for scripts")
	return control, asJSON
}

// request is the prologue of a client command that takes flags but no
// arguments: it parses args with fs, then asks the daemon once, bounded by
// timeout, with get.
func request[T any](ctx context.Context, fs *flag.FlagSet, args []string, stdout io.Writer, control *string,
	timeout time.Duration, get func(*api.Client, context.Context) (T, error)) (T, error) {
	var zero T
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return zero, err
	}
	if len(pos) > 0 {
		return zero, usagef("unexpected argument %q", pos[0])
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return get(api.NewClient(*control), ctx)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// cidrList is the repeatable --cidr flag.
type cidrList []string

func (l *cidrList) String() string { return strings.Join(*l, ",") }

func (l *cidrList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// commas is xs joined with commas, or one when xs is empty (an answer
// from a daemon without IPv6).
func commas(xs []string, one string) string {
	if len(xs) == 0 {
		return one
	}
	return strings.Join(xs, ",")
}

// orOne is xs, or {one} when xs is empty (an answer from a daemon
// without IPv6).
func orOne(xs []string, one string) []string {
	if len(xs) == 0 {
		return []string{one}
	}
	return xs
}

func networkCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("network", flag.ContinueOnError)
	setUsage(fs, "network create|ls|join|leave [arguments] [flags]", networkDesc)
	control, asJSON := clientFlags(fs)
	vni := fs.String("vni", "", "VXLAN network identifier for create (`0-16777215`; default: one no network uses)")
	var cidrs cidrList
	fs.Var(&cidrs, "cidr", "a `CIDR` of the network for create, IPv4 or IPv6 (repeatable: one of each family for a dual-stack network; beside or instead of the CIDR argument)")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("say what to do: network create, ls, join or leave")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := api.NewClient(*control)
	sub, pos := pos[0], pos[1:]
	want := func(n int, synopsis string) error {
		if len(pos) != n {
			return usagef("want: overlayd network %s", synopsis)
		}
		return nil
	}
	if sub != "create" && *vni != "" {
		return usagef("--vni is for network create")
	}
	if sub != "create" && len(cidrs) > 0 {
		return usagef("--cidr is for network create")
	}
	// Check what can be checked here before asking the daemon, so that
	// a mistake is reported as one (exit 2) even with no daemon running.
	if sub == "create" || sub == "join" || sub == "leave" {
		if len(pos) > 0 && !node.ValidNetworkName(pos[0]) {
			return usagef("network name %q is not valid: use 1 to 63 letters, digits, '-', '_' or '.'", pos[0])
		}
	}
	switch sub {
	case "create":
		if len(pos) == 2 {
			cidrs = append(cidrList{pos[1]}, cidrs...)
			pos = pos[:1]
		}
		const synopsis = "create NAME CIDR [--vni N] (CIDR such as 10.10.0.0/16 or fd00:10::/64; --cidr CIDR twice for one of each)"
		if err := want(1, synopsis); err != nil {
			return err
		}
		if len(cidrs) == 0 {
			return usagef("want: overlayd network %s", synopsis)
		}
		if err := node.CheckCIDRs(cidrs); err != nil {
			return usagef("%v", err)
		}
		req := api.CreateNetwork{Name: pos[0], CIDRs: cidrs}
		if *vni != "" {
			v, err := strconv.ParseUint(*vni, 10, 32)
			if err != nil || v > 1<<24-1 {
				return usagef("--vni %q: want a number from 0 to 16777215", *vni)
			}
			v32 := uint32(v)
			req.VNI = &v32
		}
		n, err := c.CreateNetwork(ctx, req)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, n)
		}
		fmt.Fprintf(stdout, "network %s created: %s, VNI %d, DNS address %s\n", n.Name, commas(n.CIDRs, n.CIDR), n.VNI, commas(n.DNSAddrs, n.DNS))
	case "ls", "list":
		if err := want(0, "ls"); err != nil {
			return err
		}
		ns, err := c.Networks(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, ns)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCIDR\tVNI\tCREATOR\tJOINED\tADDRESS\tMEMBERS")
		for _, n := range ns {
			addr, members := "-", "-"
			if n.Joined {
				addr, members = commas(n.Addrs, n.Addr), strconv.Itoa(n.Members)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", n.Name, commas(n.CIDRs, n.CIDR), n.VNI, n.Creator, yesNo(n.Joined), addr, members)
		}
		if len(ns) == 0 {
			fmt.Fprintln(tw, "(none: create one with 'overlayd network create NAME CIDR')")
		}
		tw.Flush()
	case "join":
		if err := want(1, "join NAME"); err != nil {
			return err
		}
		n, err := c.JoinNetwork(ctx, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, n)
		}
		fmt.Fprintf(stdout, "joined %s (VNI %d) with address %s\n", n.Name, n.VNI, commas(n.Addrs, n.Addr))
	case "leave":
		if err := want(1, "leave NAME"); err != nil {
			return err
		}
		if err := c.LeaveNetwork(ctx, pos[0]); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, map[string]string{"left": pos[0]})
		}
		fmt.Fprintf(stdout, "left %s\n", pos[0])
	default:
		return usagef("unknown network command %q: want create, ls, join or leave", sub)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func peersCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	setUsage(fs, "peers [--json]", "List the cluster's members: state, gossip address, VTEP and version.")
	control, asJSON := clientFlags(fs)
	ps, err := request(ctx, fs, args, stdout, control, 5*time.Second, (*api.Client).Peers)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, ps)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tGOSSIP\tVTEP\tVERSION")
	for _, p := range ps {
		name := p.Name
		if p.Self {
			name += " (self)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, p.State, p.Addr, p.VTEP, p.Version)
	}
	return tw.Flush()
}

func routesCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("routes", flag.ContinueOnError)
	setUsage(fs, "routes [--json]", "Show the routes in force (learned and static) with their owners, this node's own addresses, and each joined network's state digest (equal on nodes that have converged); --json prints the same as JSON.")
	control, asJSON := clientFlags(fs)
	rs, err := request(ctx, fs, args, stdout, control, 5*time.Second, (*api.Client).Routes)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, rs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tVTEP\tVNI\tOWNER")
	for _, n := range rs.Local {
		for _, a := range orOne(n.Addrs, n.Addr) {
			fmt.Fprintf(tw, "%s\t(local)\t%d\t%s\n", a, n.VNI, "self")
		}
	}
	for _, r := range rs.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Prefix, r.VTEP, r.VNI, r.Owner)
	}
	tw.Flush()
	for _, name := range slices.Sorted(maps.Keys(rs.Digests)) {
		fmt.Fprintf(stdout, "digest %s: %s\n", name, rs.Digests[name])
	}
	return nil
}
