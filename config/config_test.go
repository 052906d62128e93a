package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeGood(t *testing.T) {
	in := `
name: alpha
mode: tun
listen: 192.0.2.1:4789
addr: 10.200.1.1/16
vni: 7
peers:
  - 10.200.2.0/24@192.0.2.2:4789
  - 10.200.3.1@192.0.2.3
mtu: 1400
underlay:
  disable_offload: true
  source_ports: 4
log:
  level: debug
  format: json
`
	c, err := Decode(strings.NewReader(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := []Peer{
		{netip.MustParsePrefix("10.200.2.0/24"), netip.MustParseAddrPort("192.0.2.2:4789")},
		{netip.MustParsePrefix("10.200.3.1/32"), netip.MustParseAddrPort("192.0.2.3:4789")},
	}
	if len(c.Peers) != len(want) || c.Peers[0] != want[0] || c.Peers[1] != want[1] {
		t.Errorf("Peers = %v, want %v", c.Peers, want)
	}
	if c.Name != "alpha" || c.Mode != ModeTUN || c.VNI != 7 || c.MTU != 1400 || !c.Underlay.DisableOffload ||
		c.Underlay.SourcePorts != 4 || c.Log.Level != "debug" || c.Log.Format != "json" || c.TUNName != "ovl0" {
		t.Errorf("Decode = %+v", c)
	}
}

func TestDecodeErrorsNameTheLine(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"name: a\nbogus: 1\n", `line 2: unknown key "bogus"`},
		{"name: a\nlog:\n  level: info\n  colour: red\n", `line 4: unknown key "colour" in log`},
		{"listen: nope\n", "line 1: listen:"},
		{"name: a\naddr: 10.1.1.1\n", "line 2: addr:"},
		{"vni: lots\n", "line 1: vni:"},
		{"peers:\n  - 10.1.0.0/16@1.2.3.4\n  - 10.2.0.0/16\n", "line 3: peers[1]:"},
		{"name: a\nname: b\n", `line 2: key "name" given twice`},
		{"name: [unclosed\n", "line 1"},
	}
	for _, tt := range tests {
		_, err := Decode(strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode(%q) = %v, want an error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Default()
	good.Addr = netip.MustParsePrefix("10.200.1.1/16")
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no addr", func(c *Config) { c.Addr = netip.Prefix{} }, "addr: this node's overlay address is required"},
		{"ipv6 network addr", func(c *Config) { c.Addr = netip.MustParsePrefix("fd00::/64") }, "fd00::/64 is the network address"},
		{"ipv6 host prefix", func(c *Config) { c.Addr = netip.MustParsePrefix("fd00::1/127") }, "use /126 or shorter"},
		{"ipv6 link-local", func(c *Config) { c.Addr = netip.MustParsePrefix("fe80::1/64") }, "fe80::1/64 is not a unicast address an overlay can use"},
		{"v4-mapped addr", func(c *Config) { c.Addr = netip.MustParsePrefix("::ffff:10.200.1.1/112") }, "give the IPv4 address itself, e.g. 10.200.1.1/16"},
		{"addr6 alone", func(c *Config) {
			c.Addr = netip.Prefix{}
			c.Gossip.Listen = netip.MustParseAddrPort("192.0.2.1:7946")
			c.Addr6 = netip.MustParsePrefix("fd00::1/64")
		}, "addr6: fd00::1/64 is given without addr; an IPv6-only node gives its address in addr"},
		{"addr6 of IPv4", func(c *Config) { c.Addr6 = netip.MustParsePrefix("10.201.0.1/16") }, "a dual-stack node has an IPv4 addr and an IPv6 addr6"},
		{"two IPv6", func(c *Config) {
			c.Addr = netip.MustParsePrefix("fd00::1/64")
			c.Addr6 = netip.MustParsePrefix("fd01::1/64")
		}, "a dual-stack node has an IPv4 addr and an IPv6 addr6"},
		{"addr6 network addr", func(c *Config) { c.Addr6 = netip.MustParsePrefix("fd00::/64") }, "addr6: fd00::/64 is the network address"},
		{"ipv6 peer covers addr6", func(c *Config) {
			c.Addr6 = netip.MustParsePrefix("fd00::1/64")
			c.Peers = []Peer{{netip.MustParsePrefix("fd00::/120"), netip.MustParseAddrPort("1.2.3.4:4789")}}
		}, "covers this node's own address fd00::1"},
		{"ipv6 peer without an ipv6 addr", func(c *Config) {
			c.Peers = []Peer{{netip.MustParsePrefix("fd00::2/128"), netip.MustParseAddrPort("1.2.3.4:4789")}}
		}, "peers: fd00::2/128@1.2.3.4:4789 is an IPv6 prefix, but this node has no IPv6 address on the static network"},
		{"ipv4 peer on an ipv6-only node", func(c *Config) {
			c.Addr = netip.MustParsePrefix("fd00::1/64")
			c.Peers = []Peer{{netip.MustParsePrefix("10.200.2.0/24"), netip.MustParseAddrPort("1.2.3.4:4789")}}
		}, "is an IPv4 prefix, but this node has no IPv4 address"},
		{"ipv6 VTEP on ipv4 listen", func(c *Config) {
			c.Peers = []Peer{{netip.MustParsePrefix("10.200.2.0/24"), netip.MustParseAddrPort("[2001:db8::2]:4789")}}
		}, "the VTEP is IPv6 but this node listens on 0.0.0.0:4789 (IPv4)"},
		{"ipv4 VTEP on ipv6 listen", func(c *Config) {
			c.Listen = netip.MustParseAddrPort("[::]:4789")
			c.Peers = []Peer{{netip.MustParsePrefix("10.200.2.0/24"), netip.MustParseAddrPort("192.0.2.2:4789")}}
		}, "the VTEP is IPv4 but this node listens on [::]:4789 (IPv6)"},
		{"ipv6 mtu", func(c *Config) {
			c.Addr6 = netip.MustParsePrefix("fd00::1/64")
			c.MTU = 1200
		}, "mtu: 1200 is below 1280, the least MTU an overlay carrying IPv6 may have"},
		{"ipv6 underlay mtu", func(c *Config) {
			c.Listen = netip.MustParseAddrPort("[::]:4789")
			c.Underlay.MTU = 1000
		}, "underlay.mtu: 1000 is out of range for an IPv6 underlay (1280-65535)"},
		{"ipv4 underlay mtu", func(c *Config) { c.Underlay.MTU = 600 }, "underlay.mtu: 600 is out of range (626-65535)"},
		{"underlay mtu too small for ipv6 inside", func(c *Config) {
			c.Listen = netip.MustParseAddrPort("[2001:db8::1]:4789")
			c.Addr = netip.MustParsePrefix("fd00::1/64")
			c.Underlay.MTU = 1300
		}, "underlay.mtu: 1300 leaves the overlay an MTU of 1230 (70 less), below the 1280 IPv6 needs; raise it to 1350 or more"},
		{"network addr", func(c *Config) { c.Addr = netip.MustParsePrefix("10.200.0.0/16") }, "is the network address"},
		{"host prefix", func(c *Config) { c.Addr = netip.MustParsePrefix("10.200.0.1/32") }, "leaves no room"},
		{"mode", func(c *Config) { c.Mode = "kernel" }, `mode: "kernel" is not one of`},
		{"vni", func(c *Config) { c.VNI = 1 << 24 }, "vni: 16777216 is out of range"},
		{"mtu", func(c *Config) { c.MTU = 100 }, "mtu: 100 is out of range"},
		{"peer covers self", func(c *Config) {
			c.Peers = []Peer{{netip.MustParsePrefix("10.200.0.0/16"), netip.MustParseAddrPort("1.2.3.4:4789")}}
		}, "covers this node's own address"},
		{"tun name", func(c *Config) { c.TUNName = "a-very-long-interface-name" }, "tun_name"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level"},
		{"source ports", func(c *Config) { c.Underlay.SourcePorts = 1000 }, "source_ports"},
		{"join without gossip", func(c *Config) { c.Gossip.Join = []string{"192.0.2.1:7946"} }, "gossip.join: seeds are given but gossip is off"},
		{"bad seed", func(c *Config) {
			c.Gossip.Listen = netip.MustParseAddrPort("192.0.2.1:7946")
			c.Gossip.Join = []string{"nowhere"}
		}, "gossip.join[0]: bad address"},
		{"profile", func(c *Config) { c.Gossip.Profile = "fast" }, `gossip.profile: "fast"`},
		{"gossip on the VTEP", func(c *Config) {
			c.Listen = netip.MustParseAddrPort("192.0.2.1:4789")
			c.Gossip.Listen = c.Listen
		}, "is also the VTEP"},
		{"tap without addr", func(c *Config) {
			c.Mode = ModeTAP
			c.Addr = netip.Prefix{}
			c.Gossip.Listen = netip.MustParseAddrPort("192.0.2.1:7946")
		}, "tap mode carries exactly one network"},
	}
	for _, tt := range tests {
		c := good
		tt.edit(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestDecodeGossip(t *testing.T) {
	in := `
name: beta
listen: 192.0.2.2:4789
gossip:
  listen: 192.0.2.2:7946
  join: [192.0.2.1:7946, 192.0.2.3]
  key_file: /etc/overlayd/gossip.key
  profile: test
state_dir: /var/lib/overlayd
`
	c, err := Decode(strings.NewReader(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate (gossip on, no addr): %v", err)
	}
	g := c.Gossip
	if !g.Enabled() || g.Listen != netip.MustParseAddrPort("192.0.2.2:7946") || len(g.Join) != 2 ||
		g.KeyFile != "/etc/overlayd/gossip.key" || g.Profile != "test" || c.StateDir != "/var/lib/overlayd" {
		t.Errorf("Decode = %+v", c)
	}
	if Default().Gossip.Enabled() {
		t.Error("gossip is on by default")
	}
	if _, err := Decode(strings.NewReader("gossip:\n  listen: 1.2.3.4:1\n  seeds: []\n")); err == nil || !strings.Contains(err.Error(), `line 3: unknown key "seeds" in gossip`) {
		t.Errorf("unknown gossip key: %v", err)
	}
}

func TestParsePeer(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"10.1.0.0/16@192.0.2.1:4789", "10.1.0.0/16@192.0.2.1:4789", false},
		{"10.1.2.3/16@192.0.2.1:5000", "10.1.0.0/16@192.0.2.1:5000", false},
		{"10.1.2.3@192.0.2.1", "10.1.2.3/32@192.0.2.1:4789", false},
		{"10.1.0.0/16@[2001:db8::1]:4789", "10.1.0.0/16@[2001:db8::1]:4789", false},
		{"fd00::2/128@[2001:db8::2]:4789", "fd00::2/128@[2001:db8::2]:4789", false},
		{"fd00::2@[2001:db8::2]:5000", "fd00::2/128@[2001:db8::2]:5000", false},
		{"fd00::2@2001:db8::2", "fd00::2/128@[2001:db8::2]:4789", false},
		{"fd00::2@[2001:db8::2]", "fd00::2/128@[2001:db8::2]:4789", false},
		{"fd00:0:0:1::5/64@[2001:DB8::2]:4789", "fd00:0:0:1::/64@[2001:db8::2]:4789", false},
		{"10.1.2.3@[::ffff:192.0.2.1]:4789", "10.1.2.3/32@192.0.2.1:4789", false},
		{"10.1.2.3@::ffff:192.0.2.1", "10.1.2.3/32@192.0.2.1:4789", false},
		{"::ffff:10.1.0.0/112@192.0.2.1", "", true},
		{"fd00::2%eth0@[2001:db8::2]:4789", "", true},
		{"fd00::2@[fe80::1%eth0]:4789", "", true},
		{"fd00::2@[::]:4789", "", true},
		{"fd00::2@[ff02::1]:4789", "", true},
		{"fd00::2@[2001:db8::2]:0", "", true},
		{"fd00::2@[2001:db8::2]:99999", "", true},
		{"fd00::2/129@[2001:db8::2]", "", true},
		{"10.1.0.0/16", "", true},
		{"bogus@192.0.2.1", "", true},
		{"10.1.0.0/16@nowhere", "", true},
		{"10.1.0.0/16@192.0.2.1:0", "", true},
	}
	for _, tt := range tests {
		p, err := ParsePeer(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && p.String() != tt.want) {
			t.Errorf("ParsePeer(%q) = %v, %v; want %q, error %v", tt.in, p, err, tt.want, tt.wantErr)
		}
	}
}

// TestDecodeIPv6: an IPv6 underlay, an IPv6-only static network, and a
// dual-stack one (addr and addr6), as the flags take them; Addrs lists
// the addresses IPv4 first.
func TestDecodeIPv6(t *testing.T) {
	for _, tc := range []struct {
		in    string
		addrs []string
	}{
		{"listen: '[2001:db8::1]:4789'\naddr: fd00::1/64\npeers:\n  - fd00::2/128@[2001:db8::2]:4789\n  - fd00::3@2001:db8::3\n", []string{"fd00::1/64"}},
		{"listen: '[::]'\naddr: 10.200.1.1/16\naddr6: fd00::1/64\npeers: ['10.200.2.0/24@[2001:db8::2]', 'fd00::2@[2001:db8::2]']\n", []string{"10.200.1.1/16", "fd00::1/64"}},
		{"listen: '[2001:db8::1]:4789'\ngossip:\n  listen: '[2001:db8::1]'\n  join: ['[2001:db8::2]:7946', '2001:db8::3', '[2001:db8::4]']\n", nil},
	} {
		c, err := Decode(strings.NewReader(tc.in))
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("Decode+Validate(%q): %v", tc.in, err)
			continue
		}
		if c.Listen.Port() != DefaultPort || !c.Listen.Addr().Is6() {
			t.Errorf("Decode(%q).Listen = %v, want IPv6 port %d", tc.in, c.Listen, DefaultPort)
		}
		var got []string
		for _, a := range c.Addrs() {
			got = append(got, a.String())
		}
		if strings.Join(got, ",") != strings.Join(tc.addrs, ",") {
			t.Errorf("Decode(%q).Addrs() = %v, want %v", tc.in, got, tc.addrs)
		}
		if c.Gossip.Enabled() && (c.Gossip.Listen.Port() != DefaultGossipPort || len(c.Gossip.Join) != 3) {
			t.Errorf("Decode(%q).Gossip = %+v, want port %d and three seeds", tc.in, c.Gossip, DefaultGossipPort)
		}
		for _, p := range c.Peers {
			if !p.VTEP.Addr().Is6() || p.VTEP.Port() != DefaultPort {
				t.Errorf("Decode(%q): peer %v, want an IPv6 VTEP on port %d", tc.in, p, DefaultPort)
			}
		}
	}
	_, err := Decode(strings.NewReader("addr: 10.200.1.1/16\naddr6: fd00::1\n"))
	if err == nil || !strings.Contains(err.Error(), `line 2: addr6: "fd00::1": want an address with prefix`) {
		t.Errorf("addr6 without a prefix: %v", err)
	}
	c, err := Decode(strings.NewReader("addr: 10.200.1.1/16\naddr6: fd00::1/128\n"))
	if err == nil {
		err = c.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "line 2: addr6: fd00::1/128: the prefix /128 leaves no room for peers; use /126 or shorter") {
		t.Errorf("addr6 /128: %v", err)
	}
}

// TestParseAddrPort: either family, brackets for an IPv6 address with a
// port, the default port for a bare address, v4-mapped addresses
// unmapped.
func TestParseAddrPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:5000", "192.0.2.1:5000"},
		{"192.0.2.1", "192.0.2.1:4789"},
		{"[2001:db8::1]:5000", "[2001:db8::1]:5000"},
		{"[2001:db8::1]", "[2001:db8::1]:4789"},
		{"2001:db8::1", "[2001:db8::1]:4789"},
		{"::", "[::]:4789"},
		{"[::]:0", "[::]:0"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1:5000"},
		{"::ffff:192.0.2.1", "192.0.2.1:4789"},
		{"[fe80::1%eth0]:5000", "[fe80::1%eth0]:5000"},
		{"2001:db8::1]", ""},
		{"[2001:db8::1", ""},
		{"[2001:db8::1]:", ""},
		{"[2001:db8::1]:x", ""},
		{"host:4789", ""},
		{"", ""},
	} {
		ap, err := ParseAddrPort(tc.in, DefaultPort)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("ParseAddrPort(%q) = %v, want an error", tc.in, ap)
		case tc.want != "" && (err != nil || ap.String() != tc.want):
			t.Errorf("ParseAddrPort(%q) = %v, %v, want %s", tc.in, ap, err, tc.want)
		case err != nil && !strings.Contains(err.Error(), "[2001:db8::1]:4789"):
			t.Errorf("ParseAddrPort(%q) error %q gives no IPv6 example", tc.in, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, []byte("name: x\naddr: 10.9.0.1/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.Name != "x" || c.Addr != netip.MustParsePrefix("10.9.0.1/24") {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("Load(missing) succeeded")
	}
	if _, err := Decode(strings.NewReader("")); err != nil {
		t.Errorf("Decode(empty) = %v, want defaults", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add("name: a\naddr: 10.1.1.1/16\npeers: [10.2.0.0/16@1.2.3.4:4789]\n")
	f.Add("log: {level: x}\n")
	f.Add("- a\n- b\n")
	f.Add("addr: 10.200.1.1\nlisten: 192.0.2.1\ngossip: {listen: 192.0.2.1}\n")
	f.Add("addr: 10.1.1.1/16\n---\nmode: tun\n---\n")
	f.Add("log: {level: loud}\npeers: [10.1.0.0/16@1.2.3.4]\n")
	f.Add("underlay:\n  mtu: 9000\n")
	f.Add("gossip:\n  listen: 127.0.0.1:7946\n  join: [127.0.0.1:7947]\nstate_dir: /tmp/x\n")
	f.Add("metrics: 127.0.0.1:0\ndoors:\n  socks5: 127.0.0.1:1080\n  forwards:\n    - {listen: 127.0.0.1:53, target: a.b.overlay:53, proto: udp}\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Decode(strings.NewReader(in))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: ") {
				t.Fatalf("error %q lacks the component prefix", err)
			}
			return
		}
		_ = c.Validate()
	})
}

// TestDecodeDiscover: gossip.discover is mdns or empty, needs gossip, and
// a bad value's error names its line.
func TestDecodeDiscover(t *testing.T) {
	const head = "name: beta\nlisten: 192.0.2.2:4789\n"
	for _, tc := range []struct{ name, in, want, discover string }{
		{"mdns", head + "gossip:\n  listen: 192.0.2.2:7946\n  discover: mdns\n", "", "mdns"},
		{"off", head + "gossip:\n  listen: 192.0.2.2:7946\n  discover: \"\"\n", "", ""},
		{"unknown", head + "gossip:\n  listen: 192.0.2.2:7946\n  discover: consul\n", `line 5: gossip.discover: "consul" is not mdns`, ""},
		{"no gossip", head + "addr: 10.1.0.1/16\ngossip:\n  discover: mdns\n", "line 5: gossip.discover: mdns is asked for but gossip is off", ""},
	} {
		c, err := Decode(strings.NewReader(tc.in))
		if err == nil {
			err = c.Validate()
		}
		if tc.want == "" && (err != nil || c.Gossip.Discover != tc.discover) {
			t.Errorf("%s: Decode+Validate = %v, Discover %q", tc.name, err, c.Gossip.Discover)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Decode+Validate = %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
