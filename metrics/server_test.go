package metrics

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The server serves the registry's metrics at /metrics, and Close (twice)
// stops it and its goroutines.
func TestServer(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := Listen("127.0.0.1:0", registry(Sources{Info: Info{Node: "n1", Version: "dev", Mode: "tun"}}), nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, "http://"+s.Addr()+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, `overlayd_build_info{mode="tun",node="n1",version="dev"} 1`) {
		t.Errorf("GET /metrics = %d\n%s\nwant 200 and overlayd_build_info", code, body)
	}
	if code, _ := get(t, "http://"+s.Addr()+"/"); code != http.StatusNotFound {
		t.Errorf("GET / = %d, want 404", code)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// An address in use is refused with the address named.
func TestListenTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	s, err := Listen(addr, registry(Sources{}), nil)
	if err == nil {
		s.Close()
		t.Fatalf("Listen(%s) on a taken address: no error", addr)
	}
	if want := "metrics on " + addr + ": listen tcp " + addr + ": "; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("Listen(%s) = %q, want %q and the address in use", addr, err, want)
	}
}

// A scrape still being received when the server closes makes Close wait
// its second and then say it dropped the connection.
func TestCloseShutdownError(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := Listen("127.0.0.1:0", registry(Sources{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	defer c.Close()
	// Half a request, then a whole scrape on a second connection: the
	// server tracks a connection before it accepts the next, so the
	// answer proves the first is tracked.
	fmt.Fprint(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
	if code, _ := get(t, "http://"+s.Addr()+"/metrics"); code != http.StatusOK {
		s.Close()
		t.Fatalf("GET /metrics = %d", code)
	}
	want := "metrics on " + s.Addr() + ": shutdown: context deadline exceeded; the connections still open were closed"
	if err := s.Close(); err == nil || err.Error() != want {
		t.Errorf("Close = %v, want %q", err, want)
	}
}
