package service

import (
	"testing"

	"github.com/overlayd/overlayd/lb"
)

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
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}
