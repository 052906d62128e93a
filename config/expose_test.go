package config

import (
	"strings"
	"testing"
)

func TestParseExpose(t *testing.T) {
	tests := []struct {
		in, want string // want: the error's text, "" for none
	}{
		{"web:80/tcp=127.0.0.1:3000", ""},
		{"web.blue:8080=127.0.0.1:3000", ""},
		{"web=127.0.0.1:3000", "want SERVICE:PORT/tcp=IP:PORT"},
		{"web:80/udp=127.0.0.1:3000", "only TCP ports are exposed"},
		{"web:0=127.0.0.1:3000", `port "0"`},
		{"-web:80=127.0.0.1:3000", "is not SERVICE or SERVICE.NETWORK"},
		{"web:80=localhost:3000", "want the local program's IP:PORT"},
	}
	for _, tt := range tests {
		_, err := ParseExpose(tt.in)
		if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseExpose(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
	e, _ := ParseExpose("web.blue:8080=127.0.0.1:3000")
	if name, nw := e.ServiceNetwork(); name != "web" || nw != "blue" || e.PortNumber() != 8080 {
		t.Errorf("ServiceNetwork, PortNumber = %q %q %d", name, nw, e.PortNumber())
	}
}

func TestExposesValidate(t *testing.T) {
	c, err := Decode(strings.NewReader("gossip: {listen: 127.0.0.1:7946}\nexposes:\n  - service: web\n    port: 80/tcp\n    target: 127.0.0.1:x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "line 5: exposes[0].target") {
		t.Errorf("Validate() = %v, want line 5: exposes[0].target", err)
	}
	c, _ = Decode(strings.NewReader("addr: 10.1.0.1/16\nexposes:\n  - {service: web, port: 80, target: 127.0.0.1:3000}\n"))
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "line 3: exposes: services need gossip") {
		t.Errorf("Validate() = %v, want line 3: exposes: services need gossip", err)
	}
}
