package dockerplugin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/fault"
	"github.com/overlayd/overlayd/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	netID = "4b5f8d3b1c3a9e0f2d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e"
	epID  = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	ctrID = "0123456789ab"
)

// newPlugin returns a plugin over a fake backend whose sandbox keys are
// namespaces (ready says so) and whose Docker API knows network netID as
// "blue" and endpoint epID's container as "web_1".
func newPlugin(t *testing.T, ready *atomic.Bool, statePath string) (*Plugin, *fakeBackend, *fakeNames) {
	t.Helper()
	b := newFakeBackend()
	names := &fakeNames{networks: map[string]string{netID: "blue"}, endpoints: map[string]string{epID: "web_1"}, notYet: 2}
	p, err := New(Options{Backend: b, Names: names, StatePath: statePath})
	if err != nil {
		t.Fatal(err)
	}
	p.isNetns = func(string) bool { return ready == nil || ready.Load() }
	p.netnsPoll = time.Millisecond
	t.Cleanup(func() { p.Close() })
	return p, b, names
}

// post calls method with body and decodes the answer into out (if not
// nil); it returns the HTTP status and the Err of the answer.
func post(t *testing.T, p *Plugin, method, body string, out any) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/"+method, strings.NewReader(body)))
	var e errResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("%s: answer %q is not JSON: %v", method, rec.Body.String(), err)
	}
	if rec.Code == http.StatusOK && out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s: answer %q: %v", method, rec.Body.String(), err)
		}
	}
	return rec.Code, e.Err
}

// mustPost is post that fails the test on an error answer.
func mustPost(t *testing.T, p *Plugin, method, body string, out any) {
	t.Helper()
	if code, msg := post(t, p, method, body, out); code != http.StatusOK || msg != "" {
		t.Fatalf("%s(%s) = %d %q, want 200", method, body, code, msg)
	}
}

func TestActivateAndCapabilities(t *testing.T) {
	p, _, _ := newPlugin(t, nil, "")
	var act struct{ Implements []string }
	mustPost(t, p, "Plugin.Activate", "", &act)
	if !reflect.DeepEqual(act.Implements, []string{"NetworkDriver", "IpamDriver"}) {
		t.Errorf("Plugin.Activate = %v, want NetworkDriver and IpamDriver", act.Implements)
	}
	var caps map[string]any
	mustPost(t, p, "NetworkDriver.GetCapabilities", "null", &caps)
	if caps["Scope"] != "local" {
		t.Errorf("NetworkDriver.GetCapabilities = %v, want Scope local", caps)
	}
	var ipamCaps map[string]any
	mustPost(t, p, "IpamDriver.GetCapabilities", "{}", &ipamCaps)
	if ipamCaps["RequiresMACAddress"] != false {
		t.Errorf("IpamDriver.GetCapabilities = %v, want RequiresMACAddress false", ipamCaps)
	}
	var spaces map[string]string
	mustPost(t, p, "IpamDriver.GetDefaultAddressSpaces", "", &spaces)
	if spaces["LocalDefaultAddressSpace"] != "overlayd" || spaces["GlobalDefaultAddressSpace"] != "overlayd" {
		t.Errorf("GetDefaultAddressSpaces = %v", spaces)
	}
}

// createBlue runs Docker's calls for `docker network create -d overlayd
// --ipam-driver overlayd --subnet 10.30.0.0/16 blue`, in Docker's order
// and with its JSON, and waits for the plugin to learn the name.
func createBlue(t *testing.T, p *Plugin, b *fakeBackend) {
	t.Helper()
	var pool requestPoolResponse
	mustPost(t, p, "IpamDriver.RequestPool", `{"AddressSpace":"overlayd","Pool":"10.30.0.0/16","SubPool":"","Options":{},"V6":false}`, &pool)
	if pool.PoolID != "10.30.0.0/16" || pool.Pool != "10.30.0.0/16" {
		t.Fatalf("RequestPool = %+v, want pool 10.30.0.0/16", pool)
	}
	var gw requestAddressResponse
	mustPost(t, p, "IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}`, &gw)
	if gw.Address != "10.30.0.0/16" {
		t.Fatalf("gateway RequestAddress = %q, want the pool's network address 10.30.0.0/16", gw.Address)
	}
	mustPost(t, p, "NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{}},`+
		`"IPv4Data":[{"AddressSpace":"overlayd","Gateway":"10.30.0.0/16","Pool":"10.30.0.0/16"}],"IPv6Data":[]}`, nil)
	testutil.Eventually(t, 5*time.Second, "the overlay network blue joined", func() error {
		if !slices.Contains(b.Calls(), "join blue") {
			return errors.New("calls: " + strings.Join(b.Calls(), "; "))
		}
		return nil
	})
}

func TestDockerLifecycle(t *testing.T) {
	p, b, _ := newPlugin(t, nil, "")
	createBlue(t, p, b)
	if got := b.Calls(); !reflect.DeepEqual(got, []string{"create blue 10.30.0.0/16", "join blue"}) {
		t.Fatalf("network create: backend calls %q, want create and join of blue", got)
	}

	// docker run --network blue --name web_1: the address, the endpoint,
	// the join.
	var addr requestAddressResponse
	mustPost(t, p, "IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16","Address":"","Options":{}}`, &addr)
	if addr.Address != "10.30.0.2/16" {
		t.Fatalf("RequestAddress = %q, want the node's reservation 10.30.0.2/16", addr.Address)
	}
	var ce map[string]any
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`",`+
		`"Interface":{"Address":"10.30.0.2/16","AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.endpoint.exposedports":[]}}`, &ce)
	if ce["Interface"] != nil {
		t.Errorf("CreateEndpoint = %v, want no Interface (Docker gave the address)", ce)
	}
	var join map[string]any
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/`+ctrID+`","Options":{}}`, &join)
	if join["InterfaceName"] != nil || join["DisableGatewayService"] != true {
		t.Errorf("Join = %v, want no InterfaceName and DisableGatewayService", join)
	}
	wantAttach := "attach web-1 blue /var/run/docker/netns/" + ctrID + " 10.30.0.2 eth0"
	if !slices.Contains(b.Calls(), wantAttach) {
		t.Fatalf("Join: backend calls %q, want %q", b.Calls(), wantAttach)
	}
	var info endpointInfoResponse
	mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, &info)
	if info.Value["overlayd.state"] != "attached" || info.Value["overlayd.fqdn"] != "web-1.blue.overlay" {
		t.Errorf("EndpointOperInfo = %v, want attached, web-1.blue.overlay", info.Value)
	}
	mustPost(t, p, "NetworkDriver.ProgramExternalConnectivity", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Options":{}}`, nil)
	mustPost(t, p, "NetworkDriver.DiscoverNew", `{"DiscoveryType":1,"DiscoveryData":{"Address":"192.0.2.1","self":true}}`, nil)

	// docker stop / rm, then docker network rm blue.
	mustPost(t, p, "NetworkDriver.RevokeExternalConnectivity", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	mustPost(t, p, "NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	mustPost(t, p, "NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	mustPost(t, p, "IpamDriver.ReleaseAddress", `{"PoolID":"10.30.0.0/16","Address":"10.30.0.2"}`, nil)
	mustPost(t, p, "IpamDriver.ReleaseAddress", `{"PoolID":"10.30.0.0/16","Address":"10.30.0.0"}`, nil)
	mustPost(t, p, "NetworkDriver.DeleteNetwork", `{"NetworkID":"`+netID+`"}`, nil)
	mustPost(t, p, "IpamDriver.ReleasePool", `{"PoolID":"10.30.0.0/16"}`, nil)
	want := []string{"create blue 10.30.0.0/16", "join blue", "reserve blue ", wantAttach,
		"detach web-1", "unreserve blue 10.30.0.2", "leave blue"}
	if got := b.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("backend calls:\n  %q\nwant\n  %q", got, want)
	}
	// Twice is done, as Docker may repeat a delete after a failure.
	mustPost(t, p, "NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	mustPost(t, p, "NetworkDriver.DeleteNetwork", `{"NetworkID":"`+netID+`"}`, nil)
}

// Docker before 28 joins before runc has made the namespace: Join
// returns at once and the attach follows when the sandbox key becomes a
// namespace; a Leave before that ends the wait with no attach.
func TestJoinBeforeNamespace(t *testing.T) {
	var ready atomic.Bool
	p, b, _ := newPlugin(t, &ready, "")
	createBlue(t, p, b)
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.30.0.7/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/`+ctrID+`"}`, nil)
	var info endpointInfoResponse
	mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, &info)
	if s, _ := info.Value["overlayd.state"].(string); !strings.HasPrefix(s, "waiting") {
		t.Errorf("before the namespace: state %q, want waiting", s)
	}
	for _, c := range b.Calls() {
		if strings.HasPrefix(c, "attach") {
			t.Fatalf("attached before the namespace existed: %q", b.Calls())
		}
	}
	ready.Store(true)
	testutil.Eventually(t, 5*time.Second, "the attach once the namespace exists", func() error {
		mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, &info)
		if info.Value["overlayd.state"] != "attached" {
			return errors.New("state " + info.Value["overlayd.state"].(string))
		}
		return nil
	})
	mustPost(t, p, "NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	if !slices.Contains(b.Calls(), "detach web-1") {
		t.Errorf("Leave: calls %q, want detach web-1", b.Calls())
	}

	// A second endpoint that leaves before its namespace appears.
	ready.Store(false)
	const ep2 = "ffb2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`","Interface":{"Address":"10.30.0.8/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`","SandboxKey":"/var/run/docker/netns/fedcba987654"}`, nil)
	mustPost(t, p, "NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`"}`, nil)
	mustPost(t, p, "NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`"}`, nil)
	for _, c := range b.Calls() {
		if strings.Contains(c, "fedcba987654") {
			t.Errorf("an endpoint that left before its namespace existed was attached: %q", c)
		}
	}
}

// -o overlayd.network=NAME picks the overlay network at once; one the node
// is on already is used and not left with the Docker network; one with
// another subnet is refused.
func TestNetworkOption(t *testing.T) {
	p, b, _ := newPlugin(t, nil, "")
	b.nets["green"] = &api.NetworkInfo{Name: "green", CIDR: "10.40.0.0/16", Joined: true}
	create := func(id, cidr, opts string) (int, string) {
		return post(t, p, "NetworkDriver.CreateNetwork", `{"NetworkID":"`+id+`","Options":{"com.docker.network.generic":{`+opts+`}},"IPv4Data":[{"Pool":"`+cidr+`"}]}`, nil)
	}
	if code, msg := create("n1", "10.40.0.0/16", `"overlayd.network":"green","com.example.label":"x"`); code != 200 {
		t.Fatalf("CreateNetwork with -o overlayd.network=green = %d %q", code, msg)
	}
	if code, msg := create("n2", "10.41.0.0/16", `"overlayd.network":"green"`); code != http.StatusConflict || !strings.Contains(msg, "has subnet 10.40.0.0/16, not 10.41.0.0/16") {
		t.Errorf("CreateNetwork on green with another subnet = %d %q, want 409 naming both subnets", code, msg)
	}
	if code, msg := create("n3", "10.42.0.0/16", `"overlayd.colour":"red"`); code != http.StatusBadRequest || !strings.Contains(msg, "unknown option -o overlayd.colour") {
		t.Errorf("CreateNetwork with an unknown option = %d %q, want 400 naming it", code, msg)
	}
	if code, msg := create("n4", "10.43.0.0/16", `"overlayd.network":"red","overlayd.ifname":"eth 0"`); code != http.StatusBadRequest || !strings.Contains(msg, "interface name") {
		t.Errorf("CreateNetwork with a bad ifname = %d %q, want 400", code, msg)
	}
	mustPost(t, p, "NetworkDriver.DeleteNetwork", `{"NetworkID":"n1"}`, nil)
	if slices.Contains(b.Calls(), "leave green") {
		t.Errorf("the node was on green before Docker; DeleteNetwork left it: %q", b.Calls())
	}
}

// A container on two networks of the driver gets eth0 and eth1, and its
// name on the second network has that network's name after it; an
// address asked for (docker run --ip) is reserved as asked.
func TestSecondNetwork(t *testing.T) {
	p, b, names := newPlugin(t, nil, "")
	createBlue(t, p, b)
	mustPost(t, p, "NetworkDriver.CreateNetwork", `{"NetworkID":"n2","Options":{"com.docker.network.generic":{"overlayd.network":"red"}},"IPv4Data":[{"Pool":"10.31.0.0/16"}]}`, nil)
	names.networks["n2"] = "red"
	names.endpoints["e2"] = "web_1"
	var addr requestAddressResponse
	mustPost(t, p, "IpamDriver.RequestAddress", `{"PoolID":"10.31.0.0/16","Address":"10.31.0.77","Options":{}}`, &addr)
	if addr.Address != "10.31.0.77/16" {
		t.Errorf("RequestAddress of 10.31.0.77 = %q, want 10.31.0.77/16", addr.Address)
	}
	if !slices.Contains(b.Calls(), "reserve red 10.31.0.77") {
		t.Errorf("calls %q, want a reservation of 10.31.0.77 on red", b.Calls())
	}
	sandbox := `"SandboxKey":"/var/run/docker/netns/` + ctrID + `"`
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.30.0.2/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`",`+sandbox+`}`, nil)
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"n2","EndpointID":"e2","Interface":{"Address":"10.31.0.77/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"n2","EndpointID":"e2",`+sandbox+`}`, nil)
	for _, want := range []string{
		"attach web-1 blue /var/run/docker/netns/" + ctrID + " 10.30.0.2 eth0",
		"attach web-1-red red /var/run/docker/netns/" + ctrID + " 10.31.0.77 eth1",
	} {
		if !slices.Contains(b.Calls(), want) {
			t.Errorf("calls %q, want %q", b.Calls(), want)
		}
	}
}

// A Docker network deleted while its name is being learned leaves the
// node on no network, and a request for its pool says it is gone.
func TestDeleteWhileResolving(t *testing.T) {
	p, b, names := newPlugin(t, nil, "")
	names.notYet = 1 << 30
	mustPost(t, p, "NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","IPv4Data":[{"Pool":"10.30.0.0/16"}]}`, nil)
	mustPost(t, p, "NetworkDriver.DeleteNetwork", `{"NetworkID":"`+netID+`"}`, nil)
	if code, msg := post(t, p, "IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16"}`, nil); code != http.StatusNotFound {
		t.Errorf("RequestAddress after the delete = %d %q, want 404", code, msg)
	}
	p.Close()
	for _, n := range b.nets {
		if n.Joined {
			t.Errorf("the node is on %s after its Docker network was deleted", n.Name)
		}
	}
}

// Bad requests are answered with an error status and a message in Err,
// never a panic.
func TestBadRequests(t *testing.T) {
	p, b, _ := newPlugin(t, nil, "")
	createBlue(t, p, b)
	for _, tc := range []struct {
		method, body string
		code         int
		want         string
	}{
		{"NetworkDriver.Frobnicate", `{}`, 404, "no such plugin call"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":`, 400, "malformed request"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":"x","IPv4Data":[]}`, 400, "a network takes one IPv4 subnet, one IPv6 subnet (--ipv6) or one of each (it has 0 and 0)"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":"x","IPv4Data":[{"Pool":"10.1.0.0/16"},{"Pool":"10.2.0.0/16"}]}`, 400, "it has 2 and 0"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":"x","IPv4Data":[{"Pool":"fd00::/64"}]}`, 400, "of the wrong family"},
		{"NetworkDriver.CreateNetwork", `{"NetworkID":"x","IPv4Data":[{"Pool":"banana"}]}`, 400, "want a CIDR such as 10.30.0.0/16 or fd00:30::/64"},
		{"NetworkDriver.CreateNetwork", `{"IPv4Data":[{"Pool":"10.1.0.0/16"}]}`, 400, "no NetworkID"},
		{"NetworkDriver.CreateEndpoint", `{"NetworkID":"` + netID + `","EndpointID":"e1"}`, 400, "the endpoint has no address"},
		{"NetworkDriver.CreateEndpoint", `{"NetworkID":"` + netID + `","EndpointID":"e1","Interface":{"Address":"10.99.0.2/16"}}`, 400, "outside the network's subnet"},
		{"NetworkDriver.CreateEndpoint", `{"NetworkID":"unknown","EndpointID":"e1","Interface":{"Address":"10.30.0.2/16"}}`, 404, "not known to this overlayd"},
		{"NetworkDriver.Join", `{"NetworkID":"` + netID + `","EndpointID":"nope","SandboxKey":"/var/run/docker/netns/x"}`, 404, "no endpoint nope"},
		{"NetworkDriver.Join", `{"NetworkID":"` + netID + `","EndpointID":"nope","SandboxKey":"netns"}`, 400, "absolute path"},
		{"NetworkDriver.EndpointOperInfo", `{"NetworkID":"` + netID + `","EndpointID":"nope"}`, 404, "no endpoint"},
		{"IpamDriver.RequestPool", `{"Pool":"10.1.0.0/16","V6":true}`, 400, "is not of the family Docker asks a pool of"},
		{"IpamDriver.RequestPool", `{"V6":true}`, 400, "give the network's IPv6 subnet too"},
		{"IpamDriver.RequestPool", `{"Pool":""}`, 400, "give the network's IPv4 subnet (Docker asks for an IPv4 pool of every network, also of one with --ipv6)"},
		{"IpamDriver.RequestPool", `{"Pool":"10.1.0.0/31"}`, 400, "too small"},
		{"IpamDriver.RequestPool", `{"Pool":"10.1.0.0/16","SubPool":"10.1.1.0/24"}`, 400, "--ip-range"},
		{"IpamDriver.RequestAddress", `{"PoolID":"pool-7"}`, 404, "no pool"},
		{"IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16","Address":"10.31.0.1"}`, 400, "not an address of the subnet"},
		{"IpamDriver.RequestAddress", `{"PoolID":"10.50.0.0/16"}`, 404, "no Docker network of this driver has subnet 10.50.0.0/16"},
		{"IpamDriver.ReleaseAddress", `{"PoolID":"10.30.0.0/16","Address":"x"}`, 400, "not an address"},
		{"NetworkDriver.Leave", `{"NetworkID":"n","EndpointID":"` + strings.Repeat("a", 200) + `"}`, 400, "Docker's IDs are 64"},
	} {
		code, msg := post(t, p, tc.method, tc.body, nil)
		if code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s(%s) = %d %q, want %d with %q", tc.method, tc.body, code, msg, tc.code, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/Plugin.Activate", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "takes POST") {
		t.Errorf("GET /Plugin.Activate = %d %s, want 400 asking for POST", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/NetworkDriver.Join", strings.NewReader(strings.Repeat(" ", maxBody+1))))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a body over %d bytes = %d, want 400", maxBody, rec.Code)
	}
}

// A failed attach fails the Join with the node's message and status, and
// the endpoint can join again.
func TestJoinAttachFails(t *testing.T) {
	p, b, _ := newPlugin(t, nil, "")
	createBlue(t, p, b)
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.30.0.9/16"}}`, nil)
	b.attachErr = fault.Conflict("address 10.30.0.9 is in use by endpoint db on node h2")
	join := `{"NetworkID":"` + netID + `","EndpointID":"` + epID + `","SandboxKey":"/var/run/docker/netns/` + ctrID + `"}`
	if code, msg := post(t, p, "NetworkDriver.Join", join, nil); code != http.StatusConflict || !strings.Contains(msg, "in use by endpoint db") {
		t.Errorf("Join with a failing attach = %d %q, want 409 with the node's message", code, msg)
	}
	mustPost(t, p, "NetworkDriver.Join", join, nil)
}

// The container's name comes from the Docker API; without it (or for an
// endpoint it does not show) the endpoint is named after its ID.
func TestEndpointNames(t *testing.T) {
	p, b, names := newPlugin(t, nil, "")
	createBlue(t, p, b)
	names.endpoints["e"+strings.Repeat("1", 63)] = "My.App_2"
	for i, want := range []string{"my-app-2", "ep-e" + strings.Repeat("2", 11)} {
		ep := "e" + strings.Repeat(string(rune('1'+i)), 63)
		mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+ep+`","Interface":{"Address":"10.30.1.`+string(rune('1'+i))+`/16"}}`, nil)
		mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+ep+`","SandboxKey":"/var/run/docker/netns/0000000000`+string(rune('a'+i))+`"}`, nil)
		var info endpointInfoResponse
		mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+ep+`"}`, &info)
		if info.Value["overlayd.endpoint"] != want {
			t.Errorf("endpoint %s: named %v, want %s", short(ep), info.Value["overlayd.endpoint"], want)
		}
	}
}

// Docker does not repeat CreateNetwork to a restarted plugin: the state
// file carries the networks and endpoints over.
func TestStateAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docker.json")
	p, b, _ := newPlugin(t, nil, path)
	createBlue(t, p, b)
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.30.0.2/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/`+ctrID+`"}`, nil)
	p.Close()

	p2, err := New(Options{Backend: b, StatePath: path})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	mustPost(t, p2, "NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	mustPost(t, p2, "NetworkDriver.DeleteEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)
	mustPost(t, p2, "IpamDriver.ReleaseAddress", `{"PoolID":"10.30.0.0/16","Address":"10.30.0.2"}`, nil)
	mustPost(t, p2, "NetworkDriver.DeleteNetwork", `{"NetworkID":"`+netID+`"}`, nil)
	calls := b.Calls()
	for _, want := range []string{"detach web-1", "unreserve blue 10.30.0.2", "leave blue"} {
		if !slices.Contains(calls, want) {
			t.Errorf("after a restart: calls %q, want %q", calls, want)
		}
	}
}

// Docker before 28 mounts the namespace on the sandbox key and only then
// turns IPv6 off for all its devices, which would take the IPv6
// addresses of a device made in between: the attach waits for that, and
// for no more than setUpWait where it does not come.
func TestJoinWaitsForDockerSetUp(t *testing.T) {
	var ready, off atomic.Bool
	p, b, _ := newPlugin(t, &ready, "")
	var asked atomic.Int32
	p.allIPv6Off = func(string) (bool, error) { asked.Add(1); return off.Load(), nil }
	createBlue(t, p, b)
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"10.30.0.7/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/`+ctrID+`"}`, nil)
	ready.Store(true)
	testutil.Eventually(t, 5*time.Second, "the plugin looks at the mounted namespace", func() error {
		if asked.Load() < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	for _, c := range b.Calls() {
		if strings.HasPrefix(c, "attach") {
			t.Fatalf("attached before Docker turned IPv6 off in the namespace: %q", b.Calls())
		}
	}
	off.Store(true)
	var info endpointInfoResponse
	testutil.Eventually(t, 5*time.Second, "the attach once Docker has set the namespace up", func() error {
		mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, &info)
		if info.Value["overlayd.state"] != "attached" {
			return errors.New("state " + info.Value["overlayd.state"].(string))
		}
		return nil
	})
	mustPost(t, p, "NetworkDriver.Leave", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, nil)

	// A namespace where it never comes is attached after setUpWait.
	off.Store(false)
	ready.Store(false)
	const ep2 = "ffb2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`","Interface":{"Address":"10.30.0.8/16"}}`, nil)
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`","SandboxKey":"/var/run/docker/netns/fedcba987654"}`, nil)
	ready.Store(true)
	took := testutil.Eventually(t, setUpWait+5*time.Second, "the attach without Docker's set-up", func() error {
		mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+ep2+`"}`, &info)
		if info.Value["overlayd.state"] != "attached" {
			return errors.New("state " + info.Value["overlayd.state"].(string))
		}
		return nil
	})
	if took < setUpWait/2 {
		t.Errorf("attached after %v without Docker's set-up, want about %v", took, setUpWait)
	}
}
