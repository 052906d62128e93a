package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/node"
)

const attachDesc = `
Attach a network namespace (a container's, or one made with 'ip netns add')
to an overlay network as an endpoint. The daemon creates a TUN interface
inside it (default eth0) with an address from the network's IPAM (or --ip),
the path MTU and a route to the network's CIDR, holds its descriptor and
announces it: NAME.NETWORK.overlay resolves to it on every node, and every
node and endpoint of the network reaches it. Needs a daemon run with
--gossip, in tun or netstack mode.

On a dual-stack network the endpoint gets an address of each family, a
route to each CIDR (and ::/0 beside 0.0.0.0/0 with --default-route); --ip
takes either family, given twice for one of each.

--netns takes a path (/var/run/netns/NAME, /proc/PID/ns/net) or a PID.
The output ends with the resolv.conf lines for the namespace.`

const detachDesc = `
Detach an endpoint: its interface is removed from the namespace, its route
withdrawn cluster-wide and its address released.`

const endpointsDesc = `
List the endpoints attached on this node, with their addresses and counters.`

// netnsPath turns a --netns value into a namespace path: a PID names
// /proc/PID/ns/net, a relative path is made absolute.
func netnsPath(s string) (string, error) {
	if s == "" {
		return "", usagef("--netns is required: a path such as /var/run/netns/NAME or /proc/PID/ns/net, or a PID")
	}
	if pid, err := strconv.Atoi(s); err == nil {
		if pid <= 0 {
			return "", usagef("--netns %s: a PID is a positive number", s)
		}
		return fmt.Sprintf("/proc/%d/ns/net", pid), nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", usagef("--netns %q: %v", s, err)
	}
	return abs, nil
}

func attachCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("attach", flag.ContinueOnError)
	setUsage(fs, "attach NAME --netns PATH|PID [--network NET] [--ip ADDR] [--ifname eth0] [--default-route] [flags]", attachDesc)
	control, asJSON := clientFlags(fs)
	netns := fs.String("netns", "", "the network namespace: a `path` (/var/run/netns/NAME, /proc/PID/ns/net) or a PID")
	network := fs.String("network", "", "the overlay `network` (default: the node's only joined one)")
	var ips cidrList // the same repeatable, comma-separated list
	fs.Var(&ips, "ip", "the `address` to take, IPv4 or IPv6 (default: one from the network's IPAM); refused if taken; twice for one of each family")
	ifname := fs.String("ifname", "eth0", "the interface's `name` inside the namespace")
	defRoute := fs.Bool("default-route", false, "also point the namespace's default route at the interface")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want: overlayd attach NAME --netns PATH|PID")
	}
	if !node.ValidEndpointName(pos[0]) {
		return usagef("endpoint name %q: want a DNS label (letters, digits and hyphens, at most 63)", pos[0])
	}
	path, err := netnsPath(*netns)
	if err != nil {
		return err
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err != nil || a.Zone() != "" {
			return usagef("--ip %q is not an IP address such as 10.10.0.5 or fd00:10::5", ip)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	e, err := api.NewClient(*control).Attach(ctx, api.Attach{
		Name: pos[0], Network: *network, Netns: path, IPs: ips, IfName: *ifname, DefaultRoute: *defRoute,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, e)
	}
	fmt.Fprintf(stdout, "endpoint %s attached: %s on %s (%s in %s, MTU %d)\n", e.Name, commas(e.Addrs, e.Addr), e.Network, e.IfName, e.Netns, e.MTU)
	fmt.Fprintf(stdout, "name: %s\n", e.FQDN)
	if e.DNS != "" {
		fmt.Fprintf(stdout, "resolv.conf:\n")
		for _, ns := range orOne(e.DNSAddrs, e.DNS) {
			fmt.Fprintf(stdout, "  nameserver %s\n", ns)
		}
		fmt.Fprintf(stdout, "  search %s\n", e.Search)
	}
	return nil
}

func detachCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("detach", flag.ContinueOnError)
	setUsage(fs, "detach NAME [flags]", detachDesc)
	control, _ := clientFlags(fs)
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want: overlayd detach NAME")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := api.NewClient(*control).Detach(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "endpoint %s detached\n", pos[0])
	return nil
}

func endpointsCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("endpoints", flag.ContinueOnError)
	setUsage(fs, "endpoints [flags]", endpointsDesc)
	control, asJSON := clientFlags(fs)
	es, err := request(ctx, fs, args, stdout, control, 10*time.Second, (*api.Client).Endpoints)
	if err != nil {
		return err
	}
	if *asJSON {
		if es == nil {
			es = []api.EndpointInfo{}
		}
		return printJSON(stdout, es)
	}
	if len(es) == 0 {
		fmt.Fprintln(stdout, "no endpoints (attach one with: overlayd attach NAME --netns PATH)")
		return nil
	}
	printEndpoints(stdout, es)
	return nil
}

// printEndpoints prints a table of es.
func printEndpoints(w io.Writer, es []api.EndpointInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNETWORK\tADDR\tIFNAME\tNETNS\tSTATE\tOUT PKTS\tIN PKTS\tDROPS")
	for _, e := range es {
		state := "attached"
		if !e.Attached {
			state = "waiting: " + e.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", e.Name, e.Network, commas(e.Addrs, e.Addr), e.IfName, e.Netns, state,
			e.Traffic.OutPackets, e.Traffic.InPackets, e.Traffic.OutDrops+e.Traffic.InDrops)
	}
	tw.Flush()
}
