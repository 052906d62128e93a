package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/overlayd/overlayd/api"
)

const serviceDesc = `
Manage service VIPs (needs a daemon run with --gossip). A service is a VIP
with ports on one network; every node balances its own clients' new flows
over the backends of the port with a Maglev table, and established flows
never move.

  service create NAME --port 80/tcp [--port 53/udp] [--vip IP] [--network NET]
                                          define a service; the VIP comes from
                                          the network's VIP range unless given
                                          (a dual-stack network: a VIP of each
                                          family; --vip twice gives both)
  service ls                              list the services
  service show NAME                       backends, weights, health and flows
  service add-backend NAME IP:PORT [--weight W] [--check tcp|udp|none] [--service-port N]
                                          add (or update) a backend; it can be
                                          changed only on the node that adds it
  service drain NAME IP:PORT              weight 0: no new flows, existing ones finish
  service remove-backend NAME IP:PORT     remove a backend (its clients get a reset)
  service rm NAME                         remove a service (on the node that created it)

Which service port a backend serves: a flow to VIP:PORT only ever reaches
a backend of that port. A backend IP:PORT serves the service port with its
own number (service perf --port 5201/tcp --port 8002/tcp: backend
10.70.0.5:5201 takes VIP:5201, 10.70.0.5:8002 takes VIP:8002). A service
whose ports all have one number (--port 80/tcp) also takes a backend on
any other port, mapped (VIP:80 → 10.70.0.5:8080). Otherwise say which
port the backend serves with --service-port (--service-port 8002 for a
backend 10.70.0.5:9000: VIP:8002 → 10.70.0.5:9000).

A backend serves the VIP of its family: on a dual-stack network
10.70.0.5:80 takes the IPv4 VIP's flows and [fd00:70::5]:80 the IPv6
VIP's; there is no translation between families.

A backend takes new flows only while it is active: healthy (its check
passes), weight above 0, and its address routed to a live node (else it is
shown unreachable). A node balances its own clients over the other nodes'
backends only.

A backend can be changed only on the node that added it, and a service
removed only on the node that created it.`

// portsFlag collects repeated --port flags.
type portsFlag []string

func (p *portsFlag) String() string { return strings.Join(*p, ",") }
func (p *portsFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*p = append(*p, v)
		}
	}
	return nil
}

func serviceCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("service", flag.ContinueOnError)
	setUsage(fs, "service create|ls|show|add-backend|drain|remove-backend|rm [arguments] [flags]", serviceDesc)
	control, asJSON := clientFlags(fs)
	network := fs.String("network", "", "the service's `network` (default: the node's only joined network, or the one holding NAME)")
	var ports portsFlag
	fs.Var(&ports, "port", "`PORT/PROTO` of the service, such as 80/tcp or 53/udp; repeat for several (create)")
	var vips cidrList // the same repeatable, comma-separated list
	fs.Var(&vips, "vip", "the service's `IP` (create; default: one from the network's VIP range; on a dual-stack network give one of each family, twice, or one and the other is picked)")
	weight := fs.Int("weight", 1, "backend's relative share of new flows, `0-65535` (add-backend; 0 drains)")
	check := fs.String("check", "none", "active health check of the backend, from the node that adds it, every 2s: `tcp, udp or none` (add-backend)")
	servicePort := fs.Int("service-port", 0, "the service `port` the backend serves (add-backend; default: the one with the backend's port number, or the service's only port)")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("say what to do: service create, ls, show, add-backend, drain, remove-backend or rm")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	sub, pos := pos[0], pos[1:]
	only := func(flagName string, subs ...string) error {
		for _, s := range subs {
			if s == sub {
				return nil
			}
		}
		if set[flagName] {
			return usagef("--%s is for service %s", flagName, strings.Join(subs, " and "))
		}
		return nil
	}
	for _, f := range [][]string{{"port", "create"}, {"vip", "create"}, {"weight", "add-backend"}, {"check", "add-backend"}, {"service-port", "add-backend"}} {
		if err := only(f[0], f[1:]...); err != nil {
			return err
		}
	}
	want := func(n int, synopsis string) error {
		if len(pos) != n {
			return usagef("want: overlayd service %s", synopsis)
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := api.NewClient(*control)
	switch sub {
	case "create":
		if err := want(1, "create NAME --port PORT/PROTO [--port ...] [--vip IP] [--network NET]"); err != nil {
			return err
		}
		if len(ports) == 0 {
			return usagef("give the service's ports with --port, such as --port 80/tcp")
		}
		s, err := c.CreateService(ctx, api.CreateService{Name: pos[0], Network: *network, Ports: ports, VIPs: vips})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, s)
		}
		fmt.Fprintf(stdout, "service %s created on network %s: VIP %s, ports %s\n", s.Name, s.Network, commas(s.VIPs, s.VIP), strings.Join(s.Ports, " "))
	case "ls", "list":
		if err := want(0, "ls"); err != nil {
			return err
		}
		ss, err := c.Services(ctx)
		if err != nil {
			return err
		}
		if *network != "" {
			var keep []api.ServiceInfo
			for _, s := range ss {
				if s.Network == *network {
					keep = append(keep, s)
				}
			}
			ss = keep
		}
		if *asJSON {
			if ss == nil {
				ss = []api.ServiceInfo{}
			}
			return printJSON(stdout, ss)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tNETWORK\tVIP\tPORTS\tBACKENDS\tFLOWS\tCREATOR")
		for _, s := range ss {
			active := 0
			for _, b := range s.Backends {
				if b.State == "active" {
					active++
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", s.Name, s.Network, commas(s.VIPs, s.VIP), strings.Join(s.Ports, ","), active, len(s.Backends), s.Flows, s.Creator)
		}
		if len(ss) == 0 {
			fmt.Fprintln(tw, "(none: create one with 'overlayd service create NAME --port 80/tcp')")
		}
		tw.Flush()
		for _, s := range ss {
			if s.Error != "" {
				fmt.Fprintf(stdout, "service %s is not balanced by this node: %s\n", s.Name, s.Error)
			}
		}
	case "show":
		if err := want(1, "show NAME"); err != nil {
			return err
		}
		s, err := c.Service(ctx, *network, pos[0])
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, s)
		}
		printService(stdout, s)
	case "add-backend":
		if err := want(2, "add-backend NAME IP:PORT [--weight W] [--check tcp|udp|none] [--service-port N]"); err != nil {
			return err
		}
		if *servicePort < 0 || *servicePort > 65535 {
			return usagef("--service-port %d: want a port of the service, 1 to 65535", *servicePort)
		}
		if *weight < 0 || *weight > 65535 {
			return usagef("--weight %d: want a number from 0 to 65535", *weight)
		}
		switch *check {
		case "tcp", "udp", "none":
		default:
			return usagef("--check %q: want tcp, udp or none", *check)
		}
		s, err := c.AddBackend(ctx, api.AddBackend{Service: pos[0], Network: *network, Addr: pos[1], Weight: uint32(*weight), Check: *check, ServicePort: uint16(*servicePort)})
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, s)
		}
		serves := ""
		for _, b := range s.Backends {
			if b.Addr == pos[1] && len(b.Ports) > 0 {
				serves = ", serving VIP port " + strings.Join(b.Ports, " ")
			}
		}
		fmt.Fprintf(stdout, "backend %s added to %s (VIP %s) with weight %d, check %s%s\n", pos[1], s.Name, commas(s.VIPs, s.VIP), *weight, *check, serves)
	case "drain", "remove-backend":
		if err := want(2, sub+" NAME IP:PORT"); err != nil {
			return err
		}
		drain := sub == "drain"
		s, err := c.RemoveBackend(ctx, api.BackendRef{Service: pos[0], Network: *network, Addr: pos[1]}, drain)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, s)
		}
		if drain {
			fmt.Fprintf(stdout, "backend %s of %s draining: no new flows, established ones continue\n", pos[1], s.Name)
		} else {
			fmt.Fprintf(stdout, "backend %s removed from %s\n", pos[1], s.Name)
		}
	case "rm", "remove":
		if err := want(1, "rm NAME"); err != nil {
			return err
		}
		if err := c.RemoveService(ctx, *network, pos[0]); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, map[string]string{"removed": pos[0]})
		}
		fmt.Fprintf(stdout, "service %s removed\n", pos[0])
	default:
		return usagef("unknown service command %q: want create, ls, show, add-backend, drain, remove-backend or rm", sub)
	}
	return nil
}

func printService(w io.Writer, s api.ServiceInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "service\t%s\n", s.Name)
	fmt.Fprintf(tw, "network\t%s\n", s.Network)
	fmt.Fprintf(tw, "vip\t%s\n", commas(s.VIPs, s.VIP))
	fmt.Fprintf(tw, "ports\t%s\n", strings.Join(s.Ports, " "))
	fmt.Fprintf(tw, "creator\t%s\n", s.Creator)
	fmt.Fprintf(tw, "flows\t%d (this node's clients)\n", s.Flows)
	if s.Error != "" {
		fmt.Fprintf(tw, "error\tnot balanced by this node: %s\n", s.Error)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tPORTS\tWEIGHT\tSTATE\tCHECK\tOWNER\tFLOWS\tPICKED")
	for _, b := range s.Backends {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", b.Addr, cmp.Or(strings.Join(b.Ports, ","), "-"), b.Weight, b.State, b.Check, b.Owner, b.Flows, strconv.FormatUint(b.Selections, 10))
	}
	if len(s.Backends) == 0 {
		fmt.Fprintf(tw, "(none: add one with 'overlayd service add-backend %s IP:PORT' on its node)\n", s.Name)
	}
	tw.Flush()
}

// servicesLine is the services line of 'overlayd status': the services and
// backends counted as 'service ls' counts them (BACKENDS active/all), then
// this node's balancer.
func servicesLine(s *api.ServicesSummary) string {
	line := fmt.Sprintf("%d, backends %d/%d active (%d in this node's tables, which leave out its own)", s.Services, s.Active, s.Backends, s.InTables)
	if s.Rejected > 0 {
		line += fmt.Sprintf(", %d not balanced (see 'overlayd service ls')", s.Rejected)
	}
	return line + fmt.Sprintf("; %d flows (of %d), %d new, %d resets", s.Flows, s.MaxFlows, s.NewFlows, s.Resets)
}
