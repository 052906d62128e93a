package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

const runDesc = `
Run an overlayd node in the foreground until SIGINT or SIGTERM.

The node listens for VXLAN on --listen (its VTEP), holds --addr on the
overlay, and reaches the overlay prefixes named by --peer at their VTEPs.

With --gossip the node joins a cluster (--join seeds) and learns routes by
itself: create networks and attach to them with 'overlayd network'; --addr
and --peer are then optional (static routes still work beside the learned
ones, e.g. for kernel vxlan peers). On one LAN, --discover mdns finds the
cluster with no seeds (--join, when given, wins: mdns then only announces).
Modes: tun (an interface, needs CAP_NET_ADMIN or root), netstack (no
interface and no privileges: programs use the Go API), tap (an Ethernet
interface), auto (tun where permitted, else netstack).

Front doors let programs on this host reach the overlay without an
interface (in every mode, and the way in for netstack mode): --socks5 and
--http-proxy open proxies, --forward a host port to one overlay address.
They listen on the host, so keep them on 127.0.0.1. --metrics serves
Prometheus metrics.

Flags override the file given with --config; the list flags (--peer,
--join, --forward, --expose, --dns-upstream) add to the file's lists.

Example, two hosts:
  host A: overlayd run --mode tun --listen 192.0.2.1:4789 --addr 10.200.1.1/16 --peer 10.200.2.0/24@192.0.2.2:4789
  host B: overlayd run --mode tun --listen 192.0.2.2:4789 --addr 10.200.2.1/16 --peer 10.200.1.0/24@192.0.2.1:4789

Example, the same over an IPv6 underlay, with both families inside
(--addr once per family; VTEPs of the --listen family, IPv6 ones in
brackets; VXLAN then adds 70 bytes, so the default MTU is 1430 on 1500):
  host A: overlayd run --mode tun --listen [2001:db8::1]:4789 --addr 10.200.1.1/16 --addr fd00:200::1/64 \
      --peer 10.200.2.0/24@[2001:db8::2]:4789 --peer fd00:200::2/128@[2001:db8::2]:4789
  host B: overlayd run --mode tun --listen [2001:db8::2]:4789 --addr 10.200.2.1/16 --addr fd00:200::2/64 \
      --peer 10.200.1.0/24@[2001:db8::1]:4789 --peer fd00:200::1/128@[2001:db8::1]:4789

Example, a gossip cluster:
  host A: overlayd run --listen 192.0.2.1:4789 --gossip 192.0.2.1:7946 --state-dir /var/lib/overlayd
  host B: overlayd run --listen 192.0.2.2:4789 --gossip 192.0.2.2:7946 --join 192.0.2.1:7946 --state-dir /var/lib/overlayd
  host A: overlayd network create blue 10.10.0.0/16 && overlayd network join blue
  host B: overlayd network join blue
  over IPv6: --gossip [2001:db8::1]:7946, --join [2001:db8::1]:7946 (or --join 2001:db8::1)
  host C, on the same LAN, with no seeds:
          overlayd run --listen 192.0.2.3:4789 --gossip 192.0.2.3:7946 --discover mdns --state-dir /var/lib/overlayd
          (A and B add --discover mdns to be found)

Example, rootless on a laptop, with front doors:
  overlayd run --mode netstack --listen 0.0.0.0:4789 --addr 10.200.1.1/16 --peer 10.200.2.0/24@192.0.2.2:4789 \
      --socks5 127.0.0.1:1080 --forward 127.0.0.1:8080=10.200.2.1:80 --metrics 127.0.0.1:9464
  curl --socks5-hostname 127.0.0.1:1080 http://10.200.2.1/`

// peerList is a repeatable --peer flag.
type peerList []config.Peer

func (p *peerList) String() string {
	s := make([]string, len(*p))
	for i, x := range *p {
		s[i] = x.String()
	}
	return strings.Join(s, ",")
}

func (p *peerList) Set(v string) error {
	for _, one := range strings.Split(v, ",") {
		q, err := config.ParsePeer(strings.TrimSpace(one))
		if err != nil {
			return err
		}
		*p = append(*p, q)
	}
	return nil
}

// addrList is the --addr flag: given once, or twice for a dual-stack
// static network (one address per family). apply checks the values.
type addrList []string

func (a *addrList) String() string { return strings.Join(*a, ",") }

func (a *addrList) Set(v string) error {
	*a = append(*a, strings.TrimSpace(v))
	return nil
}

// set puts the addresses in the configuration: the IPv4 one in Addr and
// the IPv6 one in Addr6 on a dual-stack node, the only one in Addr.
func (a addrList) set(c *config.Config) error {
	var ps []netip.Prefix
	for _, s := range a {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return usagef("--addr %q: want an address with prefix, e.g. 10.200.1.1/16 or fd00::1/64", s)
		}
		for _, q := range ps {
			if q.Addr().Is4() == p.Addr().Is4() {
				return usagef("--addr %v and %v are of one family: give --addr once, or twice for a dual-stack node (an IPv4 and an IPv6 address)", q, p)
			}
		}
		ps = append(ps, p)
	}
	c.Addr, c.Addr6 = netip.Prefix{}, netip.Prefix{}
	for _, p := range ps {
		if p.Addr().Is6() && len(ps) > 1 {
			c.Addr6 = p
		} else {
			c.Addr = p
		}
	}
	return nil
}

// seedList is the repeatable --join flag, comma-separated seeds each
// (checked by Validate, which names a bad one).
type seedList []string

func (s *seedList) String() string { return strings.Join(*s, ",") }

func (s *seedList) Set(v string) error {
	for _, one := range strings.Split(v, ",") {
		if one = strings.TrimSpace(one); one != "" {
			*s = append(*s, one)
		}
	}
	return nil
}

// appendNew appends to list the items of add whose key is not in it yet:
// list flags (--peer, --join, --forward, --expose, --dns-upstream) add to
// the lists of the --config file, and one given in both counts once.
func appendNew[T any](list, add []T, key func(T) string) []T {
	seen := make(map[string]bool, len(list))
	for _, x := range list {
		seen[key(x)] = true
	}
	for _, x := range add {
		if k := key(x); !seen[k] {
			seen[k] = true
			list = append(list, x)
		}
	}
	return list
}

// flagKeys maps the flags that replace a value of the file to its key.
var flagKeys = map[string]string{
	"name": "name", "mode": "mode", "listen": "listen", "addr": "addr", "vni": "vni", "tun-name": "tun_name",
	"mtu": "mtu", "control": "control", "log-level": "log.level", "log-format": "log.format",
	"no-offload": "underlay.disable_offload", "source-ports": "underlay.source_ports", "underlay-mtu": "underlay.mtu",
	"gossip": "gossip.listen", "gossip-key-file": "gossip.key_file", "gossip-profile": "gossip.profile", "discover": "gossip.discover",
	"state-dir": "state_dir", "socks5": "doors.socks5", "http-proxy": "doors.http_proxy", "metrics": "metrics",
	"dns": "dns.listen", "dns-domain": "dns.domain", "dns-ttl": "dns.ttl",
}

// runFlags declares run's flags on fs; apply copies the ones given into a
// configuration.
func runFlags(fs *flag.FlagSet) (apply func(*config.Config) error, configPath *string, check *bool) {
	d := config.Default()
	var (
		cfgPath   = fs.String("config", "", "read the node's configuration from this YAML `file` (flags override it)")
		chk       = fs.Bool("check", false, "validate the configuration and flags, print the result and exit")
		name      = fs.String("name", d.Name, "the node's `name` in the cluster")
		mode      = fs.String("mode", d.Mode, "attachment: auto, tun, netstack or tap")
		listen    = fs.String("listen", d.Listen.String(), "the VTEP: underlay `IP:PORT` to receive VXLAN on, IPv4 or IPv6 ([2001:db8::1]:4789; [::]:4789 is IPv6 only), the one family of every peer's VTEP (port 0 picks one)")
		addrs     addrList
		vni       = fs.Uint("vni", uint(d.VNI), "VXLAN network identifier (`0-16777215`)")
		peers     peerList
		tunName   = fs.String("tun-name", d.TUNName, "interface `name` in tun and tap modes")
		mtu       = fs.Int("mtu", 0, "attachment `MTU` (default: the underlay MTU minus 50 over an IPv4 underlay, minus 70 over IPv6)")
		control   = fs.String("control", d.Control, "`path` of the control socket, mode 0600 (env OVERLAYD_CONTROL; else /run/overlayd/overlayd.sock as root, $XDG_RUNTIME_DIR/overlayd.sock, or /tmp/overlayd-UID.sock); empty: none")
		logLevel  = fs.String("log-level", d.Log.Level, "debug, info, warn or error")
		logFormat = fs.String("log-format", d.Log.Format, "console or json")
		noOffload = fs.Bool("no-offload", false, "turn UDP GSO/GRO off on the underlay socket")
		srcPorts  = fs.Int("source-ports", d.Underlay.SourcePorts, "spread outbound VXLAN over this many UDP source `ports` by inner flow (1: the VTEP port only)")
		underMTU  = fs.Int("underlay-mtu", 0, "underlay path `MTU` (default: read off the listen address's interface, else 1500)")
		gossipAt  = fs.String("gossip", "", "turn the control plane on: gossip (memberlist) on this `IP:PORT` (port 0 picks one)")
		join      seedList
		keyFile   = fs.String("gossip-key-file", "", "AES-256-GCM gossip keys, one base64 line each (`file`); nodes without the key are refused")
		profile   = fs.String("gossip-profile", d.Gossip.Profile, "gossip timings: default (LAN) or test (fast failure detection, chatty)")
		discover  = fs.String("discover", "", "find the cluster without seeds: mdns announces this node over multicast DNS on the LAN of the --gossip IP (its interface only) and joins the nodes found there with the same gossip key; with --join, the seeds are joined and mdns only announces this node, so nodes with --discover alone find the cluster through it (default off)")
		stateDir  = fs.String("state-dir", "", "keep addresses and joined networks across restarts in this `directory`")
	)
	fs.Var(&addrs, "addr", "this node's overlay address and prefix, e.g. 10.200.1.1/16 or fd00::1/64 (`CIDR`); twice, once per family, for a dual-stack static network")
	fs.Var(&join, "join", "seeds to join, `IP:PORT[,IP:PORT]`, an IPv6 one as [2001:db8::2]:7946 (port 7946 if left out; repeatable, added to the file's gossip.join)")
	fs.Var(&peers, "peer", "static route `PREFIX@IP:PORT`: that overlay prefix lives at that VTEP, e.g. 10.200.2.0/24@192.0.2.2:4789 or fd00::2/128@[2001:db8::2]:4789 (a bare address is one host, the port 4789 if left out; repeatable, added to the file's peers)")
	applyDoors := doorFlags(fs)    // --socks5, --http-proxy, --forward, --metrics (doors.go)
	applyDNS := dnsFlags(fs)       // --dns, --dns-upstream, --dns-domain, --dns-ttl (dns.go)
	applyExpose := exposeFlags(fs) // --expose (expose.go)
	apply = func(c *config.Config) error {
		var err error
		fs.Visit(func(f *flag.Flag) {
			if err != nil {
				return
			}
			if key, ok := flagKeys[f.Name]; ok {
				c.Forget(key) // a mistake in it is the flag's, not the file's line
			}
			switch f.Name {
			case "name":
				c.Name = *name
			case "mode":
				c.Mode = *mode
			case "listen":
				c.Listen, err = config.ParseAddrPort(*listen, config.DefaultPort)
				if err != nil {
					err = usagef("--listen: %v", err)
				}
			case "addr":
				c.Forget("addr6") // --addr replaces the file's addr and addr6
				err = addrs.set(c)
			case "vni":
				c.VNI = uint32(*vni)
				if *vni > 1<<24-1 {
					err = usagef("--vni %d is out of range (0-16777215)", *vni)
				}
			case "peer":
				c.Peers = appendNew(c.Peers, peers, config.Peer.String)
			case "tun-name":
				c.TUNName = *tunName
			case "mtu":
				c.MTU = *mtu
			case "control":
				c.Control = *control
			case "log-level":
				c.Log.Level = *logLevel
			case "log-format":
				c.Log.Format = *logFormat
			case "no-offload":
				c.Underlay.DisableOffload = *noOffload
			case "source-ports":
				c.Underlay.SourcePorts = *srcPorts
			case "underlay-mtu":
				c.Underlay.MTU = *underMTU
			case "gossip":
				c.Gossip.Listen, err = config.ParseAddrPort(*gossipAt, config.DefaultGossipPort)
				if err != nil {
					err = usagef("--gossip: %v", err)
				}
			case "join":
				c.Gossip.Join = appendNew(c.Gossip.Join, join, func(s string) string { return s })
			case "gossip-key-file":
				c.Gossip.KeyFile = *keyFile
			case "gossip-profile":
				c.Gossip.Profile = *profile
			case "discover":
				c.Gossip.Discover = *discover
			case "state-dir":
				c.StateDir = *stateDir
			default:
				if err = applyDNS(f.Name, c); err == nil {
					err = applyDoors(f.Name, c)
				}
				if err == nil {
					err = applyExpose(f.Name, c)
				}
			}
		})
		return err
	}
	return apply, cfgPath, chk
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	setUsage(fs, "run [flags]", runDesc)
	apply, cfgPath, check := runFlags(fs)
	docker := dockerFlags(fs) // --docker-plugin, --docker-host (docker.go)
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (run takes flags only)", pos[0])
	}
	cfg := config.Default()
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return usagef("%v", err)
		}
	}
	if err := apply(&cfg); err != nil {
		return err
	}
	// One rule for --check and the start: a configuration, or a file it
	// names, that cannot work is a mistake (exit 2), found before anything
	// is bound; what fails after that is a failure at run time (exit 1).
	warnings, err := node.Check(cfg)
	if err != nil {
		return usagef("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	if err := docker.check(cfg); err != nil {
		return err
	}
	if *check {
		for _, w := range warnings { // the start logs these itself
			fmt.Fprintf(stderr, "overlayd run: warning: %s\n", w)
		}
	}
	if *check {
		fmt.Fprintln(stdout, "configuration is valid")
		return nil
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()

	n, err := node.New(cfg, node.WithLogger(log), node.WithNetnsHelper(netnsHelper(log)))
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		return err
	}
	stopDocker, err := docker.start(n, cfg, log)
	if err != nil {
		n.Close()
		return err
	}
	<-ctx.Done()
	log.Info("stopping")
	stopDocker()
	return n.Close()
}

// newLogger builds the daemon's zap logger.
func newLogger(c config.Log, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", c.Level)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch c.Format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, usagef("--log-format %q: want console or json", c.Format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
