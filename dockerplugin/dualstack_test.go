package dockerplugin

import (
	"errors"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/internal/testutil"
)

// docker network create -d overlayd --ipam-driver overlayd --subnet
// 10.30.0.0/16 --ipv6 --subnet fd00:30::/64 blue; docker run --network
// blue: an IPv4 and an IPv6 pool, a dual-stack overlay network, an
// address of each family reserved and attached, both kept in the state
// file across a restart of the plugin.
func TestDockerDualStack(t *testing.T) {
	state := filepath.Join(t.TempDir(), "docker.json")
	p, b, _ := newPlugin(t, nil, state)
	var pool, pool6 requestPoolResponse
	mustPost(t, p, "IpamDriver.RequestPool", `{"AddressSpace":"overlayd","Pool":"10.30.0.0/16","Options":{},"V6":false}`, &pool)
	mustPost(t, p, "IpamDriver.RequestPool", `{"AddressSpace":"overlayd","Pool":"fd00:30::/64","Options":{},"V6":true}`, &pool6)
	if pool6.PoolID != "fd00:30::/64" || pool6.Pool != "fd00:30::/64" {
		t.Fatalf("RequestPool(V6) = %+v, want pool fd00:30::/64", pool6)
	}
	var gw6 requestAddressResponse
	mustPost(t, p, "IpamDriver.RequestAddress", `{"PoolID":"fd00:30::/64","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}`, &gw6)
	if gw6.Address != "fd00:30::/64" {
		t.Errorf("IPv6 gateway RequestAddress = %q, want the pool's network address", gw6.Address)
	}
	mustPost(t, p, "NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.enable_ipv6":true,"com.docker.network.generic":{}},`+
		`"IPv4Data":[{"AddressSpace":"overlayd","Pool":"10.30.0.0/16"}],"IPv6Data":[{"AddressSpace":"overlayd","Pool":"fd00:30::/64"}]}`, nil)
	testutil.Eventually(t, 5*time.Second, "the overlay network blue joined", func() error {
		if !slices.Contains(b.Calls(), "join blue") {
			return errors.New("not yet")
		}
		return nil
	})
	if got := b.Calls()[0]; got != "create blue 10.30.0.0/16,fd00:30::/64" {
		t.Errorf("backend call %q, want a dual-stack create", got)
	}
	var a4, a6 requestAddressResponse
	mustPost(t, p, "IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16","Address":"","Options":{}}`, &a4)
	mustPost(t, p, "IpamDriver.RequestAddress", `{"PoolID":"fd00:30::/64","Address":"","Options":{}}`, &a6)
	if a4.Address != "10.30.0.2/16" || a6.Address != "fd00:30::3/64" {
		t.Fatalf("RequestAddress = %q and %q, want a reservation of each family", a4.Address, a6.Address)
	}
	mustPost(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`",`+
		`"Interface":{"Address":"10.30.0.2/16","AddressIPv6":"fd00:30::3/64","MacAddress":""},"Options":{}}`, nil)
	if code, msg := post(t, p, "NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"e2","Interface":{"Address":"10.30.0.9/16"}}`, nil); code != http.StatusBadRequest {
		t.Errorf("CreateEndpoint without its IPv6 address = %d %q, want 400", code, msg)
	}

	// The plugin restarts: the state file keeps both subnets and addresses.
	p.Close()
	p, b, _ = newPlugin(t, nil, state)
	b.nets["blue"] = &api.NetworkInfo{Name: "blue", CIDR: "10.30.0.0/16", CIDRs: []string{"10.30.0.0/16", "fd00:30::/64"}, Joined: true}
	mustPost(t, p, "NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/`+ctrID+`","Options":{}}`, nil)
	want := "attach web-1 blue /var/run/docker/netns/" + ctrID + " 10.30.0.2,fd00:30::3 eth0"
	if !slices.Contains(b.Calls(), want) {
		t.Fatalf("Join after a restart: backend calls %q, want %q", b.Calls(), want)
	}
	var info endpointInfoResponse
	mustPost(t, p, "NetworkDriver.EndpointOperInfo", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`"}`, &info)
	if !reflect.DeepEqual([]any{info.Value["overlayd.addr"], info.Value["overlayd.addr6"]}, []any{"10.30.0.2/16", "fd00:30::3/64"}) {
		t.Errorf("EndpointOperInfo = %v, want both addresses", info.Value)
	}
}
