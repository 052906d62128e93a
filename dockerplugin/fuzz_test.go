package dockerplugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzHandlers: any path and body get a JSON answer, an error one with a
// message, never a panic or a hang.
func FuzzHandlers(f *testing.F) {
	seeds := []struct{ path, body string }{
		{"/Plugin.Activate", ""},
		{"/NetworkDriver.GetCapabilities", "null"},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"n1","Options":{"com.docker.network.generic":{"overlayd.network":"blue"}},"IPv4Data":[{"Pool":"10.30.0.0/16"}]}`},
		{"/NetworkDriver.CreateNetwork", `{"NetworkID":"n2","Options":{"com.docker.network.generic":{"overlayd.ifname":7}},"IPv4Data":[{"Pool":"10.31.0.0/16"}]}`},
		{"/NetworkDriver.DeleteNetwork", `{"NetworkID":"n1"}`},
		{"/NetworkDriver.CreateEndpoint", `{"NetworkID":"n1","EndpointID":"e1","Interface":{"Address":"10.30.0.2/16"}}`},
		{"/NetworkDriver.Join", `{"NetworkID":"n1","EndpointID":"e1","SandboxKey":"/var/run/docker/netns/0123456789ab"}`},
		{"/NetworkDriver.EndpointOperInfo", `{"NetworkID":"n1","EndpointID":"e1"}`},
		{"/NetworkDriver.Leave", `{"NetworkID":"n1","EndpointID":"e1"}`},
		{"/NetworkDriver.DeleteEndpoint", `{"NetworkID":"n1","EndpointID":"e1"}`},
		{"/NetworkDriver.DiscoverNew", `{"DiscoveryType":1,"DiscoveryData":null}`},
		{"/IpamDriver.RequestPool", `{"Pool":"10.30.0.0/16"}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16","Options":{"RequestAddressType":"com.docker.network.gateway"}}`},
		{"/IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16","Address":"10.30.0.9"}`},
		{"/IpamDriver.ReleaseAddress", `{"PoolID":"10.30.0.0/16","Address":"10.30.0.9"}`},
		{"/IpamDriver.ReleasePool", `{"PoolID":"10.30.0.0/16"}`},
		{"/nope", `[1,2`},
	}
	for _, s := range seeds {
		f.Add(s.path, s.body)
	}
	b := newFakeBackend()
	p, err := New(Options{Backend: b, Names: &fakeNames{networks: map[string]string{}, endpoints: map[string]string{}}})
	if err != nil {
		f.Fatal(err)
	}
	p.isNetns = func(string) bool { return true }
	p.networkWait, p.resolveTimeout = 20*time.Millisecond, 50*time.Millisecond
	defer p.Close()
	h := p.Handler()
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.URL.Path = path
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var e errResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
			t.Fatalf("POST %q %q: answer %q is not JSON: %v", path, body, rec.Body.String(), err)
		}
		if rec.Code != http.StatusOK && e.Err == "" {
			t.Fatalf("POST %q %q: status %d without a message", path, body, rec.Code)
		}
		if rec.Code == http.StatusOK && e.Err != "" {
			t.Fatalf("POST %q %q: status 200 with error %q", path, body, e.Err)
		}
	})
}
