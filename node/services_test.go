package node

import (
	"encoding/json"
	"testing"

	"github.com/overlayd/overlayd/lb"
)

// The service tables' values are read by other packages (the DNS zone)
// without importing node: their JSON must not change.
func TestServiceSchema(t *testing.T) {
	sv, _ := json.Marshal(serviceValue{Name: "web", Network: "default", VIP: "10.200.255.1", Ports: []portValue{{Port: 80, Proto: "tcp"}}})
	if want := `{"name":"web","network":"default","vip":"10.200.255.1","ports":[{"port":80,"proto":"tcp"}]}`; string(sv) != want {
		t.Errorf("services value %s, want %s", sv, want)
	}
	bv, _ := json.Marshal(backendValue{Service: "web", Addr: "10.200.1.1:8080", Weight: 1, Healthy: true})
	if want := `{"service":"web","addr":"10.200.1.1:8080","weight":1,"healthy":true}`; string(bv) != want {
		t.Errorf("backends value %s, want %s", bv, want)
	}
	if tableServices != "overlayd.services" || tableBackends != "overlayd.backends" {
		t.Errorf("tables %q %q", tableServices, tableBackends)
	}
}

func TestParsePort(t *testing.T) {
	tests := []struct {
		in   string
		want lb.PortProto
		ok   bool
	}{
		{"80/tcp", lb.PortProto{Port: 80, Proto: lb.TCP}, true},
		{"53/udp", lb.PortProto{Port: 53, Proto: lb.UDP}, true},
		{"8080", lb.PortProto{Port: 8080, Proto: lb.TCP}, true},
		{"53/UDP", lb.PortProto{Port: 53, Proto: lb.UDP}, true},
		{"0/tcp", lb.PortProto{}, false},
		{"70000/tcp", lb.PortProto{}, false},
		{"80/sctp", lb.PortProto{}, false},
		{"http", lb.PortProto{}, false},
	}
	for _, tt := range tests {
		got, err := parsePort(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parsePort(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestValidServiceName(t *testing.T) {
	for name, want := range map[string]bool{
		"web": true, "api-v2": true, "A1": true, "": false, "-web": false, "web-": false,
		"a.b": false, "a/b": false, "a_b": false, "x234567890123456789012345678901234567890123456789012345678901234": false,
	} {
		if got := validServiceName(name); got != want {
			t.Errorf("validServiceName(%q) = %v, want %v", name, got, want)
		}
	}
}
