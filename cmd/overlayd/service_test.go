package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/api"
)

// fakeServices is a daemon with one service, web, and one flow.
type fakeServices struct {
	created api.CreateService
	added   api.AddBackend
}

var web = api.ServiceInfo{Name: "web", Network: "blue", VIP: "10.70.240.0", Ports: []string{"80/tcp", "53/udp"}, Creator: "n0", Flows: 1,
	Backends: []api.BackendInfo{
		{Addr: "10.70.120.1:8080", Ports: []string{"80/tcp"}, Weight: 1, Healthy: true, Check: "tcp", Owner: "n1", State: "active", InTable: true, Flows: 1, Selections: 7},
		{Addr: "10.70.60.1:8080", Ports: []string{"80/tcp"}, Weight: 0, Healthy: true, Check: "none", Owner: "n2", State: "draining"},
		{Addr: "10.70.60.1:53", Ports: []string{"53/udp"}, Weight: 1, Healthy: true, Check: "none", Owner: "n0", State: "unreachable"},
	}}

// clash is a service that another claimed the VIP port of first.
var clash = api.ServiceInfo{Name: "clash", Network: "blue", VIP: "10.70.240.0", Ports: []string{"80/tcp"}, Creator: "n3", Backends: []api.BackendInfo{},
	Error: `lb: service "blue/clash": 10.70.240.0 80/tcp is already served by "blue/web"`}

func (f *fakeServices) Status(context.Context) (api.Status, error) { return api.Status{}, nil }
func (f *fakeServices) Services(context.Context) ([]api.ServiceInfo, error) {
	return []api.ServiceInfo{web, clash}, nil
}
func (f *fakeServices) Service(_ context.Context, _, name string) (api.ServiceInfo, error) {
	if name != "web" {
		return api.ServiceInfo{}, api.Errorf(http.StatusNotFound, "no service %q on network %q", name, "blue")
	}
	return web, nil
}
func (f *fakeServices) CreateService(_ context.Context, req api.CreateService) (api.ServiceInfo, error) {
	f.created = req
	return api.ServiceInfo{Name: req.Name, Network: "blue", VIP: "10.70.240.1", Ports: req.Ports}, nil
}
func (f *fakeServices) RemoveService(context.Context, string, string) error {
	return api.Errorf(http.StatusConflict, "service web was created by node n0; run the command there")
}
func (f *fakeServices) AddBackend(_ context.Context, req api.AddBackend) (api.ServiceInfo, error) {
	f.added = req
	return web, nil
}
func (f *fakeServices) RemoveBackend(_ context.Context, ref api.BackendRef, _ bool) (api.ServiceInfo, error) {
	return api.ServiceInfo{}, api.Errorf(http.StatusConflict, "backend %s was added by node n2; run the command there", ref.Addr)
}
func (f *fakeServices) Conntrack(context.Context) ([]api.Flow, error) {
	return []api.Flow{{Network: "blue", Service: "web", Proto: "tcp", Client: "10.70.0.2:40000", VIP: "10.70.240.0:80",
		Backend: "10.70.120.1:8080", State: "ESTABLISHED", Age: 12, Idle: 1}}, nil
}

var _ api.ServiceBackend = (*fakeServices)(nil)

func TestServiceCommands(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl.sock")
	f := &fakeServices{}
	s, err := api.Listen(ctl, f)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{[]string{"service"}, 2, "", "say what to do"},
		{[]string{"service", "bogus"}, 2, "", `unknown service command "bogus"`},
		{[]string{"service", "create", "web"}, 2, "", "give the service's ports with --port"},
		{[]string{"service", "ls", "--port", "80"}, 2, "", "--port is for service create"},
		{[]string{"service", "add-backend", "web", "10.70.1.1:80", "--weight", "70000"}, 2, "", "--weight 70000"},
		{[]string{"service", "add-backend", "web", "10.70.1.1:80", "--check", "http"}, 2, "", `--check "http"`},
		{[]string{"service", "show"}, 2, "", "want: overlayd service show NAME"},
		{[]string{"service", "create", "api", "--port", "80/tcp", "--port", "53/udp"}, 0, "service api created on network blue: VIP 10.70.240.1, ports 80/tcp 53/udp", ""},
		{[]string{"service", "ls"}, 0, "web    blue     10.70.240.0  80/tcp,53/udp  1/3", ""},
		{[]string{"service", "ls"}, 0, `service clash is not balanced by this node: lb: service "blue/clash": 10.70.240.0 80/tcp is already served by "blue/web"`, ""},
		{[]string{"service", "show", "web"}, 0, "10.70.60.1:8080   80/tcp  0       draining", ""},
		{[]string{"service", "show", "web"}, 0, "10.70.60.1:53     53/udp  1       unreachable", ""},
		{[]string{"service", "add-backend", "web", "10.70.1.1:9000", "--service-port", "70000"}, 2, "", "--service-port 70000"},
		{[]string{"service", "drain", "web", "10.70.1.1:9000", "--service-port", "80"}, 2, "", "--service-port is for service add-backend"},
		{[]string{"service", "show", "nope"}, 1, "", `no service "nope" on network "blue"`},
		{[]string{"service", "rm", "web"}, 1, "", "was created by node n0; run the command there"},
		{[]string{"service", "drain", "web", "10.70.60.1:8080"}, 1, "", "backend 10.70.60.1:8080 was added by node n2; run the command there"},
		{[]string{"service", "add-backend", "web", "10.70.120.1:8080", "--check", "tcp", "--service-port", "80"}, 0, "backend 10.70.120.1:8080 added to web (VIP 10.70.240.0) with weight 1, check tcp, serving VIP port 80/tcp", ""},
		{[]string{"conntrack"}, 0, "tcp    10.70.0.2:40000  10.70.240.0:80  10.70.120.1:8080  ESTABLISHED  blue/web  12s", ""},
		{[]string{"conntrack", "--service", "other"}, 0, "(no flows)", ""},
	}
	for _, tt := range tests {
		code, o, e := run(t, append(tt.args, "--control", ctl)...)
		if code != tt.code || !strings.Contains(o, tt.inStdout) || !strings.Contains(e, tt.inStderr) {
			t.Errorf("overlayd %q = %d\nstdout: %s\nstderr: %s\nwant %d, stdout containing %q, stderr containing %q",
				tt.args, code, o, e, tt.code, tt.inStdout, tt.inStderr)
		}
	}
	if strings.Join(f.created.Ports, " ") != "80/tcp 53/udp" {
		t.Errorf("create sent ports %q", f.created.Ports)
	}
	if f.added.ServicePort != 80 || f.added.Check != "tcp" {
		t.Errorf("add-backend sent %+v, want service port 80 and check tcp", f.added)
	}
	for _, args := range [][]string{{"service", "ls", "--json"}, {"service", "show", "web", "--json"}, {"conntrack", "--json"}} {
		code, o, e := run(t, append(args, "--control", ctl)...)
		var v any
		if code != 0 || json.Unmarshal([]byte(o), &v) != nil {
			t.Errorf("overlayd %q = %d, stdout %q stderr %q: want JSON", args, code, o, e)
		}
	}
}

// The status line counts services and backends as 'service ls' does
// (issue 10: "services 1, 1 backends in the tables" beside BACKENDS 2/2).
func TestServicesLine(t *testing.T) {
	for _, tc := range []struct {
		s    api.ServicesSummary
		want string
	}{
		{api.ServicesSummary{Services: 1, Backends: 2, Active: 2, InTables: 1, MaxFlows: 262144},
			"1, backends 2/2 active (1 in this node's tables, which leave out its own); 0 flows (of 262144), 0 new, 0 resets"},
		{api.ServicesSummary{Services: 3, Rejected: 1, Backends: 4, Active: 3, InTables: 3, Flows: 2, MaxFlows: 10, NewFlows: 5, Resets: 1},
			"3, backends 3/4 active (3 in this node's tables, which leave out its own), 1 not balanced (see 'overlayd service ls'); 2 flows (of 10), 5 new, 1 resets"},
	} {
		if got := servicesLine(&tc.s); got != tc.want {
			t.Errorf("servicesLine(%+v) =\n%s\nwant\n%s", tc.s, got, tc.want)
		}
	}
}
