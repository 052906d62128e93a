package config

import (
	"strings"
	"testing"
)

// A file holds one YAML document: a second one is an error naming its
// line, never ignored. (An empty one after a trailing "---" holds nothing
// that could be lost.)
func TestSecondDocument(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"addr: 10.1.1.1/16\n---\nmode: tun\n", `config: line 3: a second YAML document; the file must hold one (remove the "---" before it, or merge the two)`},
		{"addr: 10.1.1.1/16\n---\n---\nname: x\n", "config: line 4: a second YAML document"},
		{"addr: 10.1.1.1/16\n--- [\n", "config: "},
	} {
		if _, err := Decode(strings.NewReader(tt.in)); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Decode(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
	for _, in := range []string{"addr: 10.1.1.1/16\n---\n", "addr: 10.1.1.1/16\n...\n", "---\naddr: 10.1.1.1/16\n"} {
		if c, err := Decode(strings.NewReader(in)); err != nil || c.Addr.String() != "10.1.1.1/16" {
			t.Errorf("Decode(%q) = %v, %v", in, c.Addr, err)
		}
	}
}

// Addresses in the file get the flags' messages, not net/netip's, and a
// listen address without a port takes the default one, as the flags do.
func TestAddressMessages(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"name: a\naddr: 10.200.1.1\n", `config: line 2: addr: "10.200.1.1": want an address with prefix, e.g. 10.200.1.1/16`},
		{"listen: 1.2.3\n", `config: line 1: listen: bad address "1.2.3": want IP:PORT, e.g. 192.0.2.1:4789 or [2001:db8::1]:4789`},
		{"gossip:\n  listen: x:y\n", `config: line 2: gossip.listen: bad address "x:y": want IP:PORT`},
	} {
		_, err := Decode(strings.NewReader(tt.in))
		if err == nil || err.Error() != tt.want && !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Decode(%q) = %v, want %q", tt.in, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "netip.") {
			t.Errorf("Decode(%q) = %v: net/netip's raw message", tt.in, err)
		}
	}
	c, err := Decode(strings.NewReader("listen: 192.0.2.1\ngossip:\n  listen: 192.0.2.1\naddr:\n"))
	if err != nil || c.Listen.String() != "192.0.2.1:4789" || c.Gossip.Listen.String() != "192.0.2.1:7946" || c.Addr.IsValid() {
		t.Errorf("Decode = %+v, %v; want the default ports and no addr", c, err)
	}
}

// Every mistake Validate finds in a value from the file names the value's
// line, unless a flag replaced the value since (Forget).
func TestValidateNamesTheLine(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"addr: 10.1.1.1/16\nlog:\n  format: json\n  level: loud\n", `line 4: log.level: "loud" is not one of debug, info, warn, error`},
		{"addr: 10.1.1.1/16\nlog:\n  format: xml\n", `line 3: log.format: "xml"`},
		{"addr: 10.1.1.1/16\nmode: kernel\n", `line 2: mode: "kernel"`},
		{"name: x\naddr: 10.1.0.0/16\n", "line 2: addr: 10.1.0.0/16 is the network address"},
		{"addr: 10.1.1.1/16\nvni: 16777216\n", "line 2: vni: 16777216 is out of range"},
		{"addr: 10.1.1.1/16\npeers:\n  - 10.2.0.0/16@192.0.2.1\n  - 10.1.1.0/24@192.0.2.2\n", "line 4: peers: 10.1.1.0/24@192.0.2.2:4789 covers"},
		{"addr: 10.1.1.1/16\ngossip:\n  profile: fast\n", `line 3: gossip.profile: "fast"`},
		{"addr: 10.1.1.1/16\ngossip:\n  key_file: /k\n", "line 3: gossip.key_file: a key file is given but gossip is off"},
		{"addr: 10.1.1.1/16\nunderlay:\n  source_ports: 99\n", "line 3: underlay.source_ports: 99 is out of range"},
		{"addr: 10.1.1.1/16\nmtu: 100\n", "line 2: mtu: 100 is out of range"},
		{"addr: 10.1.1.1/16\ntun_name: waytoolongforaninterface\n", "line 2: tun_name:"},
	} {
		c, err := Decode(strings.NewReader(tt.in))
		if err != nil {
			t.Fatalf("Decode(%q): %v", tt.in, err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
	c, err := Decode(strings.NewReader("addr: 10.1.1.1/16\nlog:\n  level: info\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Log.Level = "shout" // as --log-level shout does
	c.Forget("log.level")
	if err := c.Validate(); err == nil || err.Error() != `log.level: "shout" is not one of debug, info, warn, error` {
		t.Errorf("Validate after a flag replaced log.level = %v, want no line", err)
	}
}

// Each door's mistakes give an example of that door's own address (the
// metrics one used to suggest the SOCKS5 port).
func TestListenExamples(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"addr: 10.1.1.1/16\nmetrics: nowhere\n", `line 2: metrics: "nowhere": want IP:PORT, e.g. 127.0.0.1:9464`},
		{"addr: 10.1.1.1/16\nmetrics: host:9464\n", `line 2: metrics: "host:9464": the host must be an IP address (or localhost), e.g. 127.0.0.1:9464`},
		{"addr: 10.1.1.1/16\ndoors:\n  socks5: nowhere\n", `line 3: doors.socks5: "nowhere": want IP:PORT, e.g. 127.0.0.1:1080`},
		{"addr: 10.1.1.1/16\ndoors:\n  http_proxy: nowhere\n", `line 3: doors.http_proxy: "nowhere": want IP:PORT, e.g. 127.0.0.1:8118`},
		{"addr: 10.1.1.1/16\ndoors:\n  forwards: [{listen: x, target: 10.1.2.1:80}]\n", `line 3: doors.forwards[0].listen: "x": want IP:PORT, e.g. 127.0.0.1:8080`},
	} {
		c, err := Decode(strings.NewReader(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
}
