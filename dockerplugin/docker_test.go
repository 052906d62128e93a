package dockerplugin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/internal/fault"
)

// fakeDockerAPI serves the two Docker API calls the plugin makes on a
// unix socket.
func fakeDockerAPI(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /networks/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != netID {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"network x not found"}`))
			return
		}
		// Docker's shape: containers by ID, or "ep-"+endpoint ID before
		// the endpoint has a sandbox.
		w.Write([]byte(`{"Name":"blue","Id":"` + netID + `","Driver":"overlayd","Scope":"local","Containers":{` +
			`"ep-ffff":{"Name":"other","EndpointID":"ffff","IPv4Address":"10.30.0.3/16"},` +
			`"` + ctrID + `":{"Name":"web1","EndpointID":"` + epID + `","MacAddress":"","IPv4Address":"10.30.0.2/16","IPv6Address":""}}}`))
	})
	mux.HandleFunc("GET /_ping", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK")) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

func TestDockerAPI(t *testing.T) {
	d, err := NewDocker(fakeDockerAPI(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.hc.CloseIdleConnections()
	ctx := context.Background()
	if err := d.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if n, err := d.NetworkName(ctx, netID); n != "blue" || err != nil {
		t.Errorf("NetworkName(%s) = %q, %v, want blue", short(netID), n, err)
	}
	if _, err := d.NetworkName(ctx, "0000"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("NetworkName of a network Docker has not stored = %v, want ErrNotFound", err)
	}
	if n, err := d.EndpointName(ctx, netID, epID); n != "web1" || err != nil {
		t.Errorf("EndpointName(%s) = %q, %v, want web1", short(epID), n, err)
	}
	if _, err := d.EndpointName(ctx, netID, "abcabcabcabc"); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("EndpointName of no endpoint = %v, want ErrNotFound", err)
	}
}

func TestDockerAPIDown(t *testing.T) {
	d, err := NewDocker("unix://" + filepath.Join(t.TempDir(), "none.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.NetworkName(context.Background(), netID); !errors.Is(err, fault.ErrUnavailable) || !strings.Contains(err.Error(), "does not answer") {
		t.Errorf("NetworkName with no Docker = %v, want ErrUnavailable saying it does not answer", err)
	}
}

func TestNewDocker(t *testing.T) {
	for _, tc := range []struct{ host, err string }{
		{"unix:///var/run/docker.sock", ""},
		{"tcp://127.0.0.1:2375", ""},
		{"http://127.0.0.1:2375", ""},
		{"https://127.0.0.1:2376", "TLS"},
		{"unix://", "want unix:///var/run/docker.sock"},
		{"unix://host", "needs a path"},
		{"ftp://x", "want unix:///PATH"},
		{"::", "want unix:///var/run/docker.sock"},
	} {
		_, err := NewDocker(tc.host)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("NewDocker(%q) = %v, want error containing %q", tc.host, err, tc.err)
		}
	}
	t.Setenv("DOCKER_HOST", "tcp://192.0.2.1:2375")
	if h := DockerHost(); h != "tcp://192.0.2.1:2375" {
		t.Errorf("DockerHost with DOCKER_HOST set = %q", h)
	}
	os.Unsetenv("DOCKER_HOST")
	if h := DockerHost(); h != DefaultDockerHost {
		t.Errorf("DockerHost = %q, want %q", h, DefaultDockerHost)
	}
}

// The whole thing over a real socket: the plugin on its socket, the names
// from the Docker API.
func TestListen(t *testing.T) {
	d, err := NewDocker(fakeDockerAPI(t))
	if err != nil {
		t.Fatal(err)
	}
	defer d.hc.CloseIdleConnections()
	b := newFakeBackend()
	p, err := New(Options{Backend: b, Names: d})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.isNetns = func(string) bool { return true }
	sock := filepath.Join(t.TempDir(), "plugins", "overlayd.sock")
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sock, nil, 0o600); err != nil { // a stale file in the way
		t.Fatal(err)
	}
	s, err := Listen(sock, p.Handler())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	if _, err := Listen(sock, p.Handler()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second Listen on a live socket = %v, want in use", err)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	call := func(method, body string, out any) {
		t.Helper()
		resp, err := hc.Post("http://plugin/"+method, contentType, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			var e errResponse
			json.NewDecoder(resp.Body).Decode(&e)
			t.Fatalf("%s = %s %q", method, resp.Status, e.Err)
		}
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
	}
	call("Plugin.Activate", "{}", nil)
	call("NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","IPv4Data":[{"Pool":"10.30.0.0/16"}]}`, nil)
	var addr requestAddressResponse
	call("IpamDriver.RequestAddress", `{"PoolID":"10.30.0.0/16"}`, &addr) // waits for the name
	call("NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","Interface":{"Address":"`+addr.Address+`"}}`, nil)
	call("NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+epID+`","SandboxKey":"/var/run/docker/netns/`+ctrID+`"}`, nil)
	b.mu.Lock()
	got, ok := b.attached["web1"]
	b.mu.Unlock()
	if !ok || got.Network != "blue" || got.IP != "10.30.0.2" {
		t.Errorf("attached %+v, want web1 on blue with 10.30.0.2", got)
	}
	s.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket is left after Close: %v", err)
	}
}
