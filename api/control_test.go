package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// fakeControl is a Backend with a control plane that checks its input the
// way the node does (names and CIDRs are the node's business; here only
// presence).
type fakeControl struct {
	fakeBackend
	nets map[string]NetworkInfo
}

func (f *fakeControl) Networks(context.Context) ([]NetworkInfo, error) {
	var out []NetworkInfo
	for _, n := range f.nets {
		out = append(out, n)
	}
	return out, nil
}

func (f *fakeControl) CreateNetwork(_ context.Context, req CreateNetwork) (NetworkInfo, error) {
	if req.Name == "" || req.CIDR == "" {
		return NetworkInfo{}, Errorf(http.StatusBadRequest, "a network needs a name and a CIDR")
	}
	if _, ok := f.nets[req.Name]; ok {
		return NetworkInfo{}, Errorf(http.StatusConflict, "network %q exists already", req.Name)
	}
	n := NetworkInfo{Name: req.Name, CIDR: req.CIDR}
	if req.VNI != nil {
		n.VNI = *req.VNI
	}
	f.nets[req.Name] = n
	return n, nil
}

func (f *fakeControl) JoinNetwork(_ context.Context, name string) (NetworkInfo, error) {
	n, ok := f.nets[name]
	if !ok {
		return NetworkInfo{}, Errorf(http.StatusNotFound, "unknown network %q", name)
	}
	n.Joined, n.Addr = true, "10.1.0.2/24"
	return n, nil
}

func (f *fakeControl) LeaveNetwork(_ context.Context, name string) error {
	if _, ok := f.nets[name]; !ok {
		return Errorf(http.StatusNotFound, "unknown network %q", name)
	}
	return nil
}

func (f *fakeControl) Peers(context.Context) ([]Peer, error) {
	return []Peer{{Name: "a", State: "alive", Self: true}}, nil
}

func (f *fakeControl) Routes(context.Context) (Routes, error) {
	return Routes{Routes: []Route{{Prefix: "10.1.0.3/32", Owner: "b"}}, Digests: map[string]string{"blue": "abc"}}, nil
}

func TestControlRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := Listen(path, &fakeControl{nets: map[string]NetworkInfo{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, ctx := NewClient(path), context.Background()
	vni := uint32(7)
	if n, err := c.CreateNetwork(ctx, CreateNetwork{Name: "blue", CIDR: "10.1.0.0/24", VNI: &vni}); err != nil || n.VNI != 7 {
		t.Fatalf("CreateNetwork = %+v, %v", n, err)
	}
	if _, err := c.CreateNetwork(ctx, CreateNetwork{Name: "blue", CIDR: "10.1.0.0/24"}); err == nil || !strings.Contains(err.Error(), `network "blue" exists already`) {
		t.Errorf("second CreateNetwork: %v", err)
	}
	if n, err := c.JoinNetwork(ctx, "blue"); err != nil || n.Addr != "10.1.0.2/24" {
		t.Errorf("JoinNetwork = %+v, %v", n, err)
	}
	if _, err := c.JoinNetwork(ctx, "a/b c"); err == nil || !strings.Contains(err.Error(), `unknown network "a/b c"`) {
		t.Errorf("JoinNetwork(odd name): %v", err)
	}
	if err := c.LeaveNetwork(ctx, "blue"); err != nil {
		t.Error(err)
	}
	if ns, err := c.Networks(ctx); err != nil || len(ns) != 1 {
		t.Errorf("Networks = %+v, %v", ns, err)
	}
	if ps, err := c.Peers(ctx); err != nil || len(ps) != 1 || !ps[0].Self {
		t.Errorf("Peers = %+v, %v", ps, err)
	}
	if rs, err := c.Routes(ctx); err != nil || rs.Digests["blue"] != "abc" {
		t.Errorf("Routes = %+v, %v", rs, err)
	}
}

func TestControlNeedsCapability(t *testing.T) {
	h := Handler(fakeBackend{})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/peers", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no control plane") {
		t.Errorf("GET /v1/peers on a backend without control = %d %s", w.Code, w.Body)
	}
}

func TestCreateNetworkBadBodies(t *testing.T) {
	h := Handler(&fakeControl{nets: map[string]NetworkInfo{}})
	for _, body := range []string{
		``, `{`, `[]`, `"x"`, `{"name": 1}`, `{"name":"a","cidr":"b","vni":-1}`, `{"name":"a","cidr":"b","vni":99999999999}`,
		`{"name":"a","cidr":"b","colour":"red"}`, `{"name":"a","cidr":"b"} {}`, `{"name":"` + strings.Repeat("a", 70000) + `"}`,
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/networks", strings.NewReader(body)))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("POST /v1/networks %.40q = %d %s, want 400 with an error", body, w.Code, w.Body)
		}
	}
}

// FuzzHandlers: whatever the body or path, the API answers with JSON and
// never a panic or a 500.
func FuzzHandlers(f *testing.F) {
	f.Add("POST", "/v1/networks", `{"name":"blue","cidr":"10.1.0.0/24","vni":7}`)
	f.Add("POST", "/v1/networks", `{"name":"","cidr":""}`)
	f.Add("POST", "/v1/networks/blue/join", ``)
	f.Add("POST", "/v1/networks/%2f/leave", `{}`)
	f.Add("GET", "/v1/routes", ``)
	f.Add("DELETE", "/v1/networks", `null`)
	f.Fuzz(func(t *testing.T, method, path, body string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n#?") || method == "" || strings.ContainsAny(method, " \t\r\n/") {
			return
		}
		req, err := http.NewRequest(method, "http://overlayd"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		Handler(&fakeControl{nets: map[string]NetworkInfo{"blue": {Name: "blue"}}}).ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s %q = %d %s", method, path, body, w.Code, w.Body)
		}
	})
}
