package config

import (
	"strings"
	"testing"
)

func TestApplySections(t *testing.T) {
	const gossip = "gossip: {listen: 127.0.0.1:7946}\n"
	tests := []struct {
		name, text string
		want       string // "" means valid
	}{
		{"good", gossip + "networks:\n  - {name: blue, cidr: 10.10.0.0/16, vni: 5001}\n  - {name: red}\nservices:\n  - name: web\n    network: blue\n    ports: [80/tcp, 53/udp]\n    backends:\n      - {addr: \":8080\", weight: 0, check: tcp}\n      - {addr: 10.10.0.9:80}\n", ""},
		{"no gossip", "addr: 10.1.0.1/16\nnetworks:\n  - {name: blue}\n", "line 3: networks, services and endpoints need gossip"},
		{"bad name", gossip + "networks:\n  - {name: -x}\n", "line 3: networks[0].name"},
		{"twice", gossip + "networks:\n  - {name: a}\n  - {name: a}\n", "line 4: networks[1].name: network \"a\" is given twice"},
		{"host bits", gossip + "networks:\n  - name: a\n    cidr: 10.10.0.1/16\n", "line 4: networks[0].cidr: 10.10.0.1/16 has host bits set"},
		{"dual-stack", gossip + "networks:\n  - {name: a, cidr: [10.10.0.0/16, fd00:10::/64]}\n  - {name: b, cidr: fd00:11::/64}\n  - name: c\n    cidr:\n      - fd00:12::/64\n      - 10.12.0.0/16\n", ""},
		{"two v4", gossip + "networks:\n  - name: a\n    cidr: [10.10.0.0/16, 10.11.0.0/16]\n", "line 4: networks[0].cidr: 10.11.0.0/16: two prefixes of one family"},
		{"v6 range", gossip + "networks:\n  - name: a\n    cidr: fd00::/124\n", "line 4: networks[0].cidr: IPv6 prefix fd00::/124 must be between /48 and /122"},
		{"three", gossip + "networks:\n  - name: a\n    cidr: [10.10.0.0/16, fd00::/64, fd01::/64]\n", "line 4: networks[0].cidr: 3 prefixes"},
		{"cidr map", gossip + "networks:\n  - name: a\n    cidr: {v4: 10.10.0.0/16}\n", "line 4: networks[0].cidr"},
		{"vni alone", gossip + "networks:\n  - name: a\n    vni: 7\n", "line 4: networks[0].vni: a VNI is only used to create"},
		{"no ports", gossip + "services:\n  - name: web\n", ""},
		{"bad vip", gossip + "services:\n  - name: web\n    vip: x\n    ports: [80]\n", "line 4: services[0].vip"},
		{"bad weight", gossip + "services:\n  - name: web\n    ports: [80]\n    backends:\n      - addr: \":80\"\n        weight: 70000\n", "line 7: services[0].backends[0].weight: 70000 is out of range"},
		{"bad check", gossip + "services:\n  - name: web\n    ports: [80]\n    backends:\n      - {addr: \":80\", check: http}\n", "line 6: services[0].backends[0].check"},
		{"service port", gossip + "services:\n  - name: perf\n    ports: [5201/tcp, 8002/tcp]\n    backends:\n      - {addr: \":9000\", service_port: 8002}\n", ""},
		{"bad service port", gossip + "services:\n  - name: perf\n    ports: [5201/tcp, 8002/tcp]\n    backends:\n      - {addr: \":9000\", service_port: 8002}\n      - {addr: \":9001\", service_port: 80}\n", "line 7: services[0].backends[1].service_port: 80 is not one of the service's ports"},
		{"unknown key", gossip + "services:\n  - name: web\n    backend: []\n", "line 4: unknown key \"backend\" in service"},
		{"endpoints", gossip + "endpoints:\n  - {name: c1, netns: /var/run/netns/c1, network: blue}\n  - {name: c2, netns: /var/run/netns/c2, ip: 10.10.0.9, ifname: eth1, default_route: true}\nservices:\n  - name: web\n    backends:\n      - {addr: \"c1:80\"}\n", ""},
		{"endpoint name", gossip + "endpoints:\n  - {name: c_1, netns: /var/run/netns/c1}\n", "line 3: endpoints[0].name: \"c_1\" is not an endpoint name"},
		{"endpoint twice", gossip + "endpoints:\n  - {name: c1, netns: /a}\n  - {name: c1, netns: /b}\n", "line 4: endpoints[1].name: endpoint \"c1\" is given twice"},
		{"endpoint netns", gossip + "endpoints:\n  - name: c1\n    netns: netns/c1\n", "line 4: endpoints[0].netns: \"netns/c1\": give the namespace's absolute path"},
		{"endpoint ip", gossip + "endpoints:\n  - name: c1\n    netns: /a\n    ip: 10.1.2\n", "line 5: endpoints[0].ip"},
		{"endpoint ips", gossip + "endpoints:\n  - {name: c1, netns: /a, ip: [10.1.2.3, fd00:1::3]}\n  - {name: c2, netns: /b, ip: fd00:1::4}\n", ""},
		{"endpoint two v6", gossip + "endpoints:\n  - name: c1\n    netns: /a\n    ip: [fd00:1::3, fd00:1::4]\n", "line 5: endpoints[0].ip: fd00:1::4: two addresses of one family"},
		{"endpoint ifname", gossip + "endpoints:\n  - {name: c1, netns: /a, ifname: a-very-long-interface}\n", "line 3: endpoints[0].ifname"},
		{"endpoint key", gossip + "endpoints:\n  - {name: c1, netns: /a, ips: []}\n", "line 3: unknown key \"ips\" in endpoint"},
		{"endpoints need gossip", "addr: 10.1.0.1/16\nendpoints:\n  - {name: c1, netns: /a}\n", "line 3: networks, services and endpoints need gossip"},
		{"backend name", gossip + "services:\n  - name: web\n    backends:\n      - {addr: \"c-1:x\"}\n", "line 5: services[0].backends[0].addr"},
	}
	for _, tt := range tests {
		c, err := Decode(strings.NewReader(tt.text))
		if err == nil {
			err = c.Validate()
		}
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Validate() = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// A service without the backends key leaves this node's backends alone;
// with it, even empty, it sets them.
func TestBackendsGiven(t *testing.T) {
	c, err := Decode(strings.NewReader("services:\n  - {name: a, ports: [80]}\n  - {name: b, ports: [80], backends: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Services[0].BackendsGiven() || !c.Services[1].BackendsGiven() {
		t.Errorf("BackendsGiven = %v, %v; want false, true", c.Services[0].BackendsGiven(), c.Services[1].BackendsGiven())
	}
}
