package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Modes of attachment.
const (
	ModeAuto     = "auto"     // tun where permitted, else netstack
	ModeTUN      = "tun"      // a kernel TUN interface (needs CAP_NET_ADMIN / root)
	ModeNetstack = "netstack" // the embedded gVisor stack only (rootless)
	ModeTAP      = "tap"      // a kernel TAP interface carrying Ethernet (needs CAP_NET_ADMIN)
)

// DefaultPort is the IANA VXLAN port.
const DefaultPort = 4789

// Config is everything a node needs. The zero value is not valid; start
// from Default().
type Config struct {
	// Name identifies the node in the cluster; default: the host name.
	Name string `yaml:"name"`
	// Mode is how local programs reach the overlay: auto, tun, netstack or tap.
	Mode string `yaml:"mode"`
	// Listen is the VTEP: the underlay UDP address this node receives
	// VXLAN on, IPv4 or IPv6 ([2001:db8::1]:4789). Port 0 picks a free
	// port. The underlay is of its one family: an IPv6 socket, [::]
	// included, is IPv6-only, and every peer's VTEP must be of the same
	// family.
	Listen netip.AddrPort `yaml:"listen"`
	// Addr is this node's overlay address with the network's prefix
	// length, e.g. 10.200.1.1/16 or fd00::1/64: a static network, without
	// gossip. Required unless Gossip.Listen is set (then networks are
	// created and joined with 'overlayd network', and Addr is optional).
	// On a dual-stack static network Addr is the IPv4 address and Addr6
	// the IPv6 one (Addrs lists both).
	Addr netip.Prefix `yaml:"addr"`
	// Addr6 is the IPv6 address of a dual-stack static network, beside
	// an IPv4 Addr, e.g. fd00::1/64 (--addr given twice). An IPv6-only
	// node gives its address in Addr.
	Addr6 netip.Prefix `yaml:"addr6"`
	// VNI is the VXLAN network identifier of the overlay network (0-16777215).
	VNI uint32 `yaml:"vni"`
	// Peers are static routes: an overlay prefix that lives at a VTEP.
	Peers []Peer `yaml:"peers"`
	// TUNName is the interface name in tun and tap modes.
	TUNName string `yaml:"tun_name"`
	// MTU of the attachment; 0 means the underlay MTU minus what VXLAN
	// adds: 50 bytes over an IPv4 underlay, 70 over IPv6 (Overhead).
	MTU int `yaml:"mtu"`
	// Control is the path of the control API's unix socket; empty: none.
	Control string `yaml:"control"`
	// Gossip configures the control plane (membership, learned routes,
	// IPAM); off unless Gossip.Listen is set.
	Gossip Gossip `yaml:"gossip"`
	// StateDir keeps what must survive a restart (address leases, joined
	// networks), written atomically. Empty: nothing is kept.
	StateDir string `yaml:"state_dir"`
	// Underlay tunes the underlay socket.
	Underlay Underlay `yaml:"underlay"`
	// Log sets up logging.
	Log Log `yaml:"log"`
	// Doors are the front doors on the host (SOCKS5, HTTP CONNECT, port
	// forwards) into the overlay; all off by default.
	Doors Doors `yaml:"doors"`
	// Metrics is the host address of the Prometheus endpoint (/metrics),
	// e.g. 127.0.0.1:9464; empty: off.
	Metrics string `yaml:"metrics"`
	// DNS is the node's DNS server (overlay names and a forwarder).
	DNS DNS `yaml:"dns"`
	// Networks are created when missing and joined, at start and by
	// 'overlayd apply' (gossip only).
	Networks []Network `yaml:"networks"`
	// Services are created when missing, and this node's backends of them
	// set, at start and by 'overlayd apply' (gossip only).
	Services []Service `yaml:"services"`
	// Exposes make programs on this host backends of overlay services.
	Exposes []Expose `yaml:"exposes"`
	// Endpoints are network namespaces attached to networks, at start
	// and by 'overlayd apply' (gossip only).
	Endpoints []Endpoint `yaml:"endpoints"`

	lines     map[string]int // top-level key → line in the file; nil from flags
	peerLines []int          // peers[i] → line
}

// Underlay tunes the underlay UDP socket.
type Underlay struct {
	// DisableOffload turns UDP GSO/GRO off (on where the kernel has them).
	DisableOffload bool `yaml:"disable_offload"`
	// SourcePorts is how many source ports outbound VXLAN is spread over
	// by inner flow (RFC 7348 §5); 1 sends everything from the VTEP port.
	SourcePorts int `yaml:"source_ports"`
	// MTU of the underlay path; 0 means: read it off the interface that
	// holds the listen address (1500 when that is unspecified).
	MTU int `yaml:"mtu"`

	lines map[string]int
}

// Gossip configures the control plane.
type Gossip struct {
	// Listen is the memberlist address (UDP and TCP), IP:PORT; port 0
	// picks one. The zero value turns gossip off (static mode).
	Listen netip.AddrPort `yaml:"listen"`
	// Join are seeds, IP:PORT (port 7946 if left out), contacted at start
	// and again whenever they are not live members.
	Join []string `yaml:"join"`
	// KeyFile holds AES-256-GCM gossip keys, one base64 line each (the
	// first encrypts). Empty: gossip is not encrypted.
	KeyFile string `yaml:"key_file"`
	// Profile is memberlist's timing profile: default (LAN, failure
	// detection in about 5 s) or test (chatty, well under 1 s).
	Profile string `yaml:"profile"`
	// Discover finds the cluster without seeds: "mdns" announces this
	// node on the LAN of the gossip address over multicast DNS and joins
	// the nodes found there (with Join given, the seeds are joined and
	// mDNS only announces). Empty: off.
	Discover string `yaml:"discover"`

	lines map[string]int
}

// DiscoverMDNS is Gossip.Discover's one method: multicast DNS on the LAN.
const DiscoverMDNS = "mdns"

// DefaultGossipPort is memberlist's usual port, used for join seeds given
// without one.
const DefaultGossipPort = 7946

// Enabled reports whether the control plane is on.
func (g Gossip) Enabled() bool { return g.Listen.IsValid() }

// Log sets up logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is console or json.
	Format string `yaml:"format"`

	lines map[string]int
}

// Overhead is what VXLAN adds to an inner packet on an underlay of
// listen's family: 50 bytes over IPv4 (outer IPv4 20, UDP 8, VXLAN 8,
// inner Ethernet 14), 70 over IPv6 (its header is 40). The default
// attachment MTU is the underlay's less this. (vxlan.Overhead and
// Overhead6; config imports no lower package.)
func Overhead(listen netip.Addr) int {
	if listen.Is6() && !listen.Is4In6() {
		return 70
	}
	return 50
}

// Peer is a static route: Prefix lives at VTEP. Written PREFIX@IP:PORT,
// with an IPv6 VTEP in brackets: fd00::2/128@[2001:db8::2]:4789.
type Peer struct {
	Prefix netip.Prefix
	VTEP   netip.AddrPort
}

// ParsePeer parses PREFIX@IP[:PORT] of either family: a bare address is
// a /32 (IPv4) or a /128 (IPv6), a missing port is 4789, and an IPv6 VTEP
// with a port is written in brackets ([2001:db8::2]:4789; a bare
// 2001:db8::2 takes port 4789). A v4-mapped VTEP is its IPv4 address; a
// v4-mapped prefix and a VTEP with a zone (fe80::1%eth0) are refused.
func ParsePeer(s string) (Peer, error) {
	pfx, vtep, ok := strings.Cut(s, "@")
	if !ok {
		return Peer{}, fmt.Errorf("peer %q: want PREFIX@IP:PORT, e.g. 10.200.2.0/24@192.0.2.2:4789 or fd00::2/128@[2001:db8::2]:4789", s)
	}
	var p Peer
	var err error
	if strings.Contains(pfx, "/") {
		p.Prefix, err = netip.ParsePrefix(pfx)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(pfx)
		if err == nil && a.Zone() != "" {
			err = errors.New("zone")
		}
		p.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return Peer{}, fmt.Errorf("peer %q: bad overlay prefix %q: want an address or a prefix, e.g. 10.200.2.0/24 or fd00::2", s, pfx)
	}
	if p.Prefix.Addr().Is4In6() {
		return Peer{}, fmt.Errorf("peer %q: %v is a v4-mapped IPv6 prefix; write the IPv4 prefix itself", s, p.Prefix)
	}
	p.Prefix = p.Prefix.Masked()
	p.VTEP, err = ParseAddrPort(vtep, DefaultPort)
	if err != nil {
		return Peer{}, fmt.Errorf("peer %q: %v", s, err)
	}
	if p.VTEP.Port() == 0 {
		return Peer{}, fmt.Errorf("peer %q: the VTEP needs a port", s)
	}
	if a := p.VTEP.Addr(); a.Zone() != "" {
		return Peer{}, fmt.Errorf("peer %q: the VTEP %v has a zone: link-local underlay addresses are not supported; give a global or unique local one", s, a)
	} else if a.IsUnspecified() || a.IsMulticast() {
		return Peer{}, fmt.Errorf("peer %q: the VTEP %v is not a unicast address", s, a)
	}
	return p, nil
}

// ParseAddrPort parses IP:PORT or a bare IP with defPort, of either
// family: an IPv6 address with a port is written in brackets
// ([2001:db8::1]:4789); a bare one, with or without brackets, takes
// defPort. A v4-mapped address is the IPv4 one (::ffff:192.0.2.1 is
// 192.0.2.1).
func ParseAddrPort(s string, defPort uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	h := s
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return netip.AddrPortFrom(a.Unmap(), defPort), nil
	}
	return netip.AddrPort{}, fmt.Errorf("bad address %q: want IP:PORT, e.g. 192.0.2.1:4789 or [2001:db8::1]:4789", s)
}

// Addrs are the node's static overlay addresses: Addr, and Addr6 beside
// it on a dual-stack static network; none when Addr is not set.
func (c Config) Addrs() []netip.Prefix {
	var out []netip.Prefix
	if c.Addr.IsValid() {
		out = append(out, c.Addr)
		if c.Addr6.IsValid() {
			out = append(out, c.Addr6)
		}
	}
	return out
}

func (p Peer) String() string { return p.Prefix.String() + "@" + p.VTEP.String() }

// MarshalText writes PREFIX@IP:PORT.
func (p Peer) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads PREFIX@IP:PORT.
func (p *Peer) UnmarshalText(b []byte) error {
	q, err := ParsePeer(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// Default returns the configuration a node runs with when nothing is said.
func Default() Config {
	name, _ := os.Hostname()
	if name == "" {
		name = "overlayd"
	}
	return Config{
		Name:     name,
		Mode:     ModeAuto,
		Listen:   netip.AddrPortFrom(netip.IPv4Unspecified(), DefaultPort),
		VNI:      42,
		TUNName:  "ovl0",
		Control:  DefaultControlPath(),
		Gossip:   Gossip{Profile: "default"},
		Underlay: Underlay{SourcePorts: 8},
		Log:      Log{Level: "info", Format: "console"},
		DNS:      DefaultDNS(),
	}
}

// DefaultControlPath is where the daemon's control socket lives unless
// told otherwise: $OVERLAYD_CONTROL, else /run/overlayd/overlayd.sock for
// root, else $XDG_RUNTIME_DIR/overlayd.sock, else a per-user path in /tmp.
func DefaultControlPath() string {
	if p := os.Getenv("OVERLAYD_CONTROL"); p != "" {
		return p
	}
	if os.Geteuid() == 0 {
		return "/run/overlayd/overlayd.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "overlayd.sock")
	}
	return filepath.Join(os.TempDir(), "overlayd-"+strconv.Itoa(os.Geteuid())+".sock")
}

// Validate checks a configuration and returns every mistake it finds.
func (c *Config) Validate() error {
	var errs []error
	// bad reports a mistake in the value of key (dotted, "log.level"),
	// naming its line when it came from the file.
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s", atLine(c.line(key), fmt.Sprintf(format, args...))))
	}
	if c.Name == "" {
		bad("name", "name: must not be empty")
	}
	switch c.Mode {
	case ModeAuto, ModeTUN, ModeNetstack, ModeTAP:
	default:
		bad("mode", "mode: %q is not one of auto, tun, netstack, tap", c.Mode)
	}
	if !c.Listen.IsValid() {
		bad("listen", "listen: want IP:PORT, e.g. 0.0.0.0:4789 or [::]:4789")
	}
	if !c.Addr.IsValid() {
		if !c.Gossip.Enabled() {
			bad("addr", "addr: this node's overlay address is required, e.g. 10.200.1.1/16 or fd00::1/64 (or turn gossip on with gossip.listen / --gossip)")
		} else if c.Mode == ModeTAP {
			bad("addr", "addr: tap mode carries exactly one network, so it needs addr even with gossip")
		}
		if c.Addr6.IsValid() {
			bad("addr6", "addr6: %v is given without addr; an IPv6-only node gives its address in addr", c.Addr6)
		}
	} else if msg := checkHostAddr(c.Addr); msg != "" {
		bad("addr", "addr: %s", msg)
	}
	if c.Addr.IsValid() && c.Addr6.IsValid() {
		if !c.Addr.Addr().Is4() || !c.Addr6.Addr().Is6() {
			bad("addr6", "addr6: %v beside addr %v: a dual-stack node has an IPv4 addr and an IPv6 addr6 (--addr once per family)", c.Addr6, c.Addr)
		} else if msg := checkHostAddr(c.Addr6); msg != "" {
			bad("addr6", "addr6: %s", msg)
		}
	}
	if c.VNI > 1<<24-1 {
		bad("vni", "vni: %d is out of range (0-16777215)", c.VNI)
	}
	own := c.Addrs()
	for i, p := range c.Peers {
		key := fmt.Sprintf("peers[%d]", i)
		for _, a := range own {
			if p.Prefix.Contains(a.Addr()) {
				bad(key, "peers: %v covers this node's own address %v", p, a.Addr())
			}
		}
		if fam := family(p.Prefix.Addr()); !c.Gossip.Enabled() && !slices.ContainsFunc(own, func(a netip.Prefix) bool { return family(a.Addr()) == fam }) && len(own) > 0 {
			bad(key, "peers: %v is an %s prefix, but this node has no %s address on the static network (give one with a second --addr, or addr6 in the file)", p, fam, fam)
		}
		if c.Listen.IsValid() && family(p.VTEP.Addr()) != family(c.Listen.Addr()) {
			bad(key, "peers: %v: the VTEP is %s but this node listens on %v (%s): the underlay carries one family; give every VTEP, and --listen, addresses of one family", p, family(p.VTEP.Addr()), c.Listen, family(c.Listen.Addr()))
		}
	}
	if !c.Gossip.Enabled() && len(c.Gossip.Join) > 0 {
		bad("gossip.join", "gossip.join: seeds are given but gossip is off; set gossip.listen (--gossip IP:PORT)")
	}
	if !c.Gossip.Enabled() && c.Gossip.KeyFile != "" {
		bad("gossip.key_file", "gossip.key_file: a key file is given but gossip is off; set gossip.listen (--gossip IP:PORT)")
	}
	for i, s := range c.Gossip.Join {
		if _, err := ParseAddrPort(s, DefaultGossipPort); err != nil {
			bad("gossip.join", "gossip.join[%d]: %v", i, err)
		}
	}
	switch c.Gossip.Discover {
	case "":
	case DiscoverMDNS:
		if !c.Gossip.Enabled() {
			bad("gossip.discover", "gossip.discover: mdns is asked for but gossip is off; set gossip.listen (--gossip IP:PORT)")
		}
	default:
		bad("gossip.discover", "gossip.discover: %q is not mdns (or empty: off)", c.Gossip.Discover)
	}
	switch c.Gossip.Profile {
	case "default", "test":
	default:
		bad("gossip.profile", "gossip.profile: %q is not one of default, test", c.Gossip.Profile)
	}
	if c.Gossip.Enabled() && c.Gossip.Listen.Port() != 0 && c.Gossip.Listen == c.Listen {
		bad("gossip.listen", "gossip.listen: %v is also the VTEP (listen); give gossip another port", c.Gossip.Listen)
	}
	v6inside := slices.ContainsFunc(own, func(a netip.Prefix) bool { return a.Addr().Is6() })
	switch {
	case c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535):
		bad("mtu", "mtu: %d is out of range (576-65535)", c.MTU)
	case c.MTU != 0 && c.MTU < minMTU6 && v6inside:
		bad("mtu", "mtu: %d is below %d, the least MTU an overlay carrying IPv6 may have (RFC 8200)", c.MTU, minMTU6)
	}
	overhead := Overhead(c.Listen.Addr())
	switch {
	case c.Underlay.MTU == 0:
	case c.Listen.Addr().Is6() && (c.Underlay.MTU < minMTU6 || c.Underlay.MTU > 65535):
		bad("underlay.mtu", "underlay.mtu: %d is out of range for an IPv6 underlay (%d-65535)", c.Underlay.MTU, minMTU6)
	case c.Underlay.MTU < 576+overhead || c.Underlay.MTU > 65535:
		bad("underlay.mtu", "underlay.mtu: %d is out of range (%d-65535)", c.Underlay.MTU, 576+overhead)
	case c.MTU == 0 && v6inside && c.Underlay.MTU-overhead < minMTU6:
		bad("underlay.mtu", "underlay.mtu: %d leaves the overlay an MTU of %d (%d less), below the %d IPv6 needs; raise it to %d or more", c.Underlay.MTU, c.Underlay.MTU-overhead, overhead, minMTU6, minMTU6+overhead)
	}
	if c.Underlay.SourcePorts < 0 || c.Underlay.SourcePorts > 64 {
		bad("underlay.source_ports", "underlay.source_ports: %d is out of range (0-64)", c.Underlay.SourcePorts)
	}
	if (c.Mode == ModeTUN || c.Mode == ModeTAP || c.Mode == ModeAuto) && (c.TUNName == "" || len(c.TUNName) > 15) {
		bad("tun_name", "tun_name: %q must be 1 to 15 characters", c.TUNName)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "log.level: %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		bad("log.format", "log.format: %q is not one of console, json", c.Log.Format)
	}
	errs = append(errs, c.validateDoors()...)
	errs = append(errs, c.validateDNS()...)
	errs = append(errs, c.validateApply()...)
	errs = append(errs, c.validateApplyNeedsGossip()...)
	errs = append(errs, c.validateExposes()...)
	return errors.Join(errs...)
}

// minMTU6 is the least MTU of a link that carries IPv6 (RFC 8200 §5).
const minMTU6 = 1280

// family names an address's family as the messages say it.
func family(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IPv4"
	}
	return "IPv6"
}

// checkHostAddr says what is wrong with a node's static overlay address
// of either family, or "".
func checkHostAddr(p netip.Prefix) string {
	a := p.Addr()
	most := 30 // a /31 or /32 leaves no address for a peer
	if a.Is6() {
		most = 126
	}
	switch {
	case a.Is4In6():
		return fmt.Sprintf("%v is a v4-mapped IPv6 address; give the IPv4 address itself, e.g. %v/%d", p, a.Unmap(), max(0, p.Bits()-96))
	case a.Is6() && !a.IsGlobalUnicast():
		return fmt.Sprintf("%v is not a unicast address an overlay can use (link-local, loopback and multicast ones cannot); give a unique local one, e.g. fd00::1/64", p)
	case p.Bits() > most:
		return fmt.Sprintf("%v: the prefix /%d leaves no room for peers; use /%d or shorter", p, p.Bits(), most)
	case a == p.Masked().Addr():
		return fmt.Sprintf("%v is the network address, not a host address", p)
	}
	return ""
}

// line is the line in the file of a key, dotted ("log.level") or a peer
// ("peers[2]"); 0 when the value did not come from the file.
func (c *Config) line(key string) int {
	var i int
	if _, err := fmt.Sscanf(key, "peers[%d]", &i); err == nil {
		if i < len(c.peerLines) {
			return c.peerLines[i]
		}
		return 0
	}
	section, sub, nested := strings.Cut(key, ".")
	if !nested {
		return c.lines[section]
	}
	switch section {
	case "log":
		return c.Log.lines[sub]
	case "gossip":
		return c.Gossip.lines[sub]
	case "underlay":
		return c.Underlay.lines[sub]
	case "doors":
		return c.Doors.lines[sub]
	case "dns":
		return c.DNS.lines[sub]
	}
	return 0
}

// Forget drops the file's line of a key (as line takes it) whose value
// something else has replaced, a flag, so that a mistake in it is not
// blamed on the file.
func (c *Config) Forget(key string) {
	section, sub, nested := strings.Cut(key, ".")
	if !nested {
		delete(c.lines, section)
		return
	}
	switch section {
	case "log":
		delete(c.Log.lines, sub)
	case "gossip":
		delete(c.Gossip.lines, sub)
	case "underlay":
		delete(c.Underlay.lines, sub)
	case "doors":
		delete(c.Doors.lines, sub)
	case "dns":
		delete(c.DNS.lines, sub)
	}
}

// setLines records where the file's keys are, for Validate's messages;
// decodeNode calls it.
func (c *Config) setLines(n *yaml.Node) {
	c.lines = keyLines(n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "peers" && n.Content[i+1].Kind == yaml.SequenceNode {
			c.peerLines = nil
			for _, item := range n.Content[i+1].Content {
				c.peerLines = append(c.peerLines, item.Line)
			}
		}
	}
}

func (l *Log) setLines(n *yaml.Node)      { l.lines = keyLines(n) }
func (g *Gossip) setLines(n *yaml.Node)   { g.lines = keyLines(n) }
func (u *Underlay) setLines(n *yaml.Node) { u.lines = keyLines(n) }

// Decode reads a YAML configuration over Default(). Unknown keys are
// errors, and errors name their line.
func Decode(r io.Reader) (Config, error) {
	c := Default()
	data, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if len(data) > 1<<20 {
		return c, errors.New("config: file is larger than 1 MiB")
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		return c, fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := decodeNode(&root, reflect.ValueOf(&c), ""); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	// One document per file: a second one (after "---") would otherwise
	// be ignored without a word.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return c, fmt.Errorf("config: %s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
			return c, fmt.Errorf("config: line %d: a second YAML document; the file must hold one (remove the \"---\" before it, or merge the two)", next.Content[0].Line)
		}
	}
}

// Load reads and decodes a configuration file.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Default(), fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	c, err := Decode(f)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
