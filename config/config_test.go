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
		{"ipv6 addr", func(c *Config) { c.Addr = netip.MustParsePrefix("fd00::1/64") }, "only IPv4"},
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
