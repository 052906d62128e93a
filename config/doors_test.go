package config

import (
	"strings"
	"testing"
)

func TestDecodeDoors(t *testing.T) {
	in := `
name: laptop
addr: 10.99.1.1/16
metrics: 127.0.0.1:9464
doors:
  socks5: 127.0.0.1:1080
  http_proxy: 127.0.0.1:8118
  forwards:
    - listen: 127.0.0.1:8080
      target: web.default.overlay:80
    - listen: 127.0.0.1:5353
      target: 10.99.2.1:53
      proto: udp
`
	c, err := Decode(strings.NewReader(in))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	d := c.Doors
	if d.SOCKS5 != "127.0.0.1:1080" || d.HTTPProxy != "127.0.0.1:8118" || c.Metrics != "127.0.0.1:9464" || len(d.Forwards) != 2 {
		t.Fatalf("Decode = %+v, metrics %q", d, c.Metrics)
	}
	if f := d.Forwards[1]; f.Listen != "127.0.0.1:5353" || f.Target != "10.99.2.1:53" || f.Proto != "udp" {
		t.Errorf("Forwards[1] = %+v", f)
	}
	if Default().Doors.Any() || Default().Metrics != "" {
		t.Error("doors or metrics are on by default")
	}
}

// TestDoorsErrorsNameTheLine: every mistake in the doors and metrics
// names the line it is on.
func TestDoorsErrorsNameTheLine(t *testing.T) {
	const head = "name: a\naddr: 10.99.1.1/16\n"
	tests := []struct {
		in   string
		want string
	}{
		{"metrics: 9464\n", `line 3: metrics: "9464": want IP:PORT`},
		{"metrics: example.com:9464\n", "line 3: metrics: \"example.com:9464\": the host must be an IP address"},
		{"doors:\n  socks5: 127.0.0.1:99999\n", `line 4: doors.socks5: "127.0.0.1:99999": port "99999" is not 0-65535`},
		{"doors:\n  http_proxy: nowhere\n", `line 4: doors.http_proxy: "nowhere": want IP:PORT`},
		{"doors:\n  socks5: 127.0.0.1:1080\n  http_proxy: 127.0.0.1:1080\n", "line 5: doors.http_proxy: 127.0.0.1:1080 is also the address of doors.socks5"},
		{"doors:\n  ftp: 127.0.0.1:21\n", `line 4: unknown key "ftp" in doors`},
		{"doors:\n  forwards:\n    - listen: 127.0.0.1:8080\n      target: 10.99.2.1\n", `line 6: doors.forwards[0].target: "10.99.2.1": want HOST:PORT`},
		{"doors:\n  forwards:\n    - listen: 127.0.0.1:8080\n      target: 10.99.2.1:0\n", `line 6: doors.forwards[0].target: "10.99.2.1:0": port "0" is not 1-65535`},
		{"doors:\n  forwards:\n    - listen: 127.0.0.1:8080\n      target: bad_host!:80\n", `line 6: doors.forwards[0].target: "bad_host!:80": "bad_host!" is neither`},
		{"doors:\n  forwards:\n    - target: 10.99.2.1:80\n", "line 5: doors.forwards[0].listen: a host address is required"},
		{"doors:\n  forwards:\n    - listen: 127.0.0.1:8080\n", "line 5: doors.forwards[0].target: an overlay HOST:PORT is required"},
		{"doors:\n  forwards:\n    - listen: 127.0.0.1:8080\n      target: 10.99.2.1:80\n      proto: sctp\n", `line 7: doors.forwards[0].proto: "sctp" is not tcp or udp`},
		{"doors:\n  forwards:\n    - listen: 127.0.0.1:8080\n      target: 10.99.2.1:80\n      port: 1\n", `line 7: unknown key "port" in forward`},
		{"doors:\n  socks5: 127.0.0.1:8080\n  forwards:\n    - listen: 127.0.0.1:8080\n      target: 10.99.2.1:80\n", "line 6: doors.forwards[0].listen: 127.0.0.1:8080 is also the address of doors.socks5"},
		{"doors:\n  forwards:\n    - {listen: 127.0.0.1:53, target: 10.99.2.1:53, proto: udp}\n    - {listen: 127.0.0.1:53, target: 10.99.3.1:53, proto: udp}\n", "line 6: doors.forwards[1].listen: 127.0.0.1:53 is also the address of doors.forwards[0]"},
		{"metrics: 127.0.0.1:1080\ndoors:\n  socks5: 127.0.0.1:1080\n", "line 3: metrics: 127.0.0.1:1080 is also the address of doors.socks5"},
	}
	for _, tt := range tests {
		in := head + tt.in
		c, err := Decode(strings.NewReader(in))
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Decode+Validate(%q) = %v, want an error containing %q", in, err, tt.want)
		}
	}
}

func TestDoorsGoodEdges(t *testing.T) {
	for _, in := range []string{
		"doors:\n  socks5: 127.0.0.1:0\n  http_proxy: 127.0.0.1:0\n", // port 0 twice is fine
		"doors:\n  socks5: '[::1]:1080'\n",
		"doors:\n  socks5: localhost:1080\n",
		"doors:\n  forwards:\n    - {listen: 127.0.0.1:53, target: 10.99.2.1:53}\n    - {listen: 127.0.0.1:53, target: 10.99.2.1:53, proto: udp}\n",
	} {
		c, err := Decode(strings.NewReader("name: a\naddr: 10.99.1.1/16\n" + in))
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			t.Errorf("Decode+Validate(%q) = %v, want no error", in, err)
		}
	}
}

func TestParseForward(t *testing.T) {
	tests := []struct {
		in   string
		want Forward
		err  string
	}{
		{"127.0.0.1:8080=10.99.2.1:80", Forward{Listen: "127.0.0.1:8080", Target: "10.99.2.1:80"}, ""},
		{"127.0.0.1:8080=web.default.overlay:80", Forward{Listen: "127.0.0.1:8080", Target: "web.default.overlay:80"}, ""},
		{"127.0.0.1:5300=10.99.2.1:53/udp", Forward{Listen: "127.0.0.1:5300", Target: "10.99.2.1:53", Proto: "udp"}, ""},
		{"127.0.0.1:8080", Forward{}, "want LISTEN=HOST:PORT"},
		{"127.0.0.1:8080=10.99.2.1:80/icmp", Forward{}, `proto: "icmp"`},
		{"8080=10.99.2.1:80", Forward{}, "listen:"},
	}
	for _, tt := range tests {
		got, err := ParseForward(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseForward(%q) = %v, want an error containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got.Listen != tt.want.Listen || got.Target != tt.want.Target || got.Proto != tt.want.Proto {
			t.Errorf("ParseForward(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}
