package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/overlayd/overlayd/api"
)

func statusCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	setUsage(fs, "status [--json] [--control PATH]", "Show a running node's mode, addresses, routes and packet counters.")
	control, asJSON := clientFlags(fs)
	st, err := request(ctx, fs, args, stdout, control, 5*time.Second, (*api.Client).Status)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	printStatus(stdout, st)
	return nil
}

func printStatus(w io.Writer, st api.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s (overlayd %s)\n", st.Name, st.Version)
	fmt.Fprintf(tw, "mode\t%s, device %s, MTU %d (path MTU %d)\n", st.Mode, st.Device, st.MTU, st.PathMTU)
	vtep := st.VTEP
	if st.VTEPAdvertised != "" && st.VTEPAdvertised != st.VTEP {
		vtep += ", peers send to " + st.VTEPAdvertised // what 'overlayd peers' shows
	}
	fmt.Fprintf(tw, "vtep\t%s (GSO %s, GRO %s, %d source ports)\n", vtep, onOff(st.Underlay.GSO), onOff(st.Underlay.GRO), st.Underlay.SourcePorts)
	fmt.Fprintf(tw, "mac\t%s\n", st.MAC)
	if !st.Started.IsZero() {
		fmt.Fprintf(tw, "up\t%s\n", time.Since(st.Started).Round(time.Second))
	}
	for _, n := range st.Networks {
		name := n.Name
		if name == "" {
			name = "static" // --addr, as in DNS names and metrics
		}
		fmt.Fprintf(tw, "network\t%s: vni %d, address %s\n", name, n.VNI, commas(n.Addrs, n.Addr))
	}
	if s := st.Services; s != nil {
		fmt.Fprintf(tw, "services\t%s\n", servicesLine(s)) // cmd/overlayd/service.go
	}
	if g := st.Gossip; g != nil {
		fmt.Fprintf(tw, "gossip\t%s\n", gossipLine(g))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tVTEP\tVNI\tOWNER")
	for _, r := range st.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", r.Prefix, r.VTEP, r.VNI, r.Owner)
	}
	if len(st.Routes) == 0 {
		fmt.Fprintln(tw, "(none)\t\t\t")
	}
	tw.Flush()
	if len(st.RoutesRefused) > 0 {
		fmt.Fprint(w, "routes refused:")
		for _, k := range slices.Sorted(maps.Keys(st.RoutesRefused)) {
			fmt.Fprintf(w, " %s %d", k, st.RoutesRefused[k])
		}
		fmt.Fprintln(w)
	}

	if len(st.Endpoints) > 0 {
		fmt.Fprintln(w)
		printEndpoints(w, st.Endpoints) // cmd/overlayd/endpoint.go
	}
	printDoors(w, st)
	printDNS(w, st)

	t := st.Traffic
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DIRECTION\tPACKETS\tBYTES\t")
	fmt.Fprintf(tw, "outbound\t%d\t%d\t\n", t.Outbound.Packets, t.Outbound.Bytes)
	fmt.Fprintf(tw, "inbound\t%d\t%d\t\n", t.Inbound.Packets, t.Inbound.Bytes)
	if t.Local.Packets > 0 || len(st.Endpoints) > 0 {
		fmt.Fprintf(tw, "local\t%d\t%d\t\n", t.Local.Packets, t.Local.Bytes) // switched on this node: endpoints and the attachment
	}
	tw.Flush()
	fmt.Fprintf(w, "\narp: %d asked, %d answered, %d neighbours; icmp errors sent: %d\n", t.ARPAsked, t.ARPAnswers, t.Neighbors, t.ICMPSent)
	if len(t.Drops) == 0 {
		fmt.Fprintln(w, "drops: none")
		return
	}
	fmt.Fprintln(w, "drops:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range slices.Sorted(maps.Keys(t.Drops)) {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", k, t.Drops[k], dropMeaning[k])
	}
	tw.Flush()
}

// dropMeaning says what each of the router's drop reasons (router.DropReason
// names) counts, for status.
var dropMeaning = map[string]string{
	"short":          "datagrams shorter than the VXLAN and Ethernet headers",
	"flags":          "VXLAN headers without the I flag",
	"unknown_vni":    "a VNI of no network this node is on",
	"not_peer":       "from an underlay address that is no member's VTEP",
	"not_for_us":     "to an overlay address (or MAC) this node does not hold",
	"malformed":      "packets or frames that do not parse",
	"unsupported":    "neither IP (4 or 6) nor ARP: another EtherType or IP version; the overlay carries IPv4 and IPv6",
	"no_route":       "no route (or no VTEP) for the destination; IPv4 multicast and broadcast too (the overlay carries unicast)",
	"too_big":        "larger than the path MTU (DF: answered with ICMP fragmentation needed) or the attachment's MTU",
	"arp_unresolved": "no ARP answer in time for the next hop",
	"queue_full":     "a bounded queue (ARP wait, batch, replies) had no room",
	"write_error":    "the underlay socket or the attachment refused the write",
	"lb_reset":       "to a VIP whose backend is gone: answered with a TCP RST or ICMP unreachable",
	"lb_refused":     "refused by the load balancer (a fragment to a VIP, a full connection table, a stray packet)",
	"not_owner":      "from an overlay address whose route names another VTEP than the sender's (stray or forged)",
	"kernel_rcvbuf":  "dropped by the kernel at the underlay socket before overlayd read them (receive buffer full)",
	"spoofed_source": "from an endpoint, with a source address that is not the endpoint's own",
	"other_network":  "from an endpoint, to an address on another network than the endpoint's (networks are isolated)",
	"ext_headers":    "IPv6 with an extension header chain overlayd refuses (more than 8 headers, hop-by-hop not first, or cut short)",
}

// gossipLine sums up the membership: "3 members: 2 alive, 1 dead",
// then the join error and the refused would-be members, if any.
func gossipLine(g *api.GossipStatus) string {
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{g.Alive, "alive"}, {g.Suspect, "suspect"}, {g.Dead, "dead"}, {g.Left, "left"}} {
		if c.n > 0 || c.what == "alive" {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	n := g.Alive + g.Suspect + g.Dead + g.Left
	s := fmt.Sprintf("%d members: %s", n, strings.Join(parts, ", "))
	if n == 1 {
		s = "1 member: " + strings.Join(parts, ", ")
	}
	if g.JoinError != "" {
		s += "; not joined: " + strings.TrimPrefix(g.JoinError, "gossip: ")
	}
	if len(g.Refused) > 0 {
		var rs []string
		for _, k := range slices.Sorted(maps.Keys(g.Refused)) {
			rs = append(rs, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "member_"), g.Refused[k]))
		}
		s += "; refused as not overlayd nodes: " + strings.Join(rs, ", ")
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
