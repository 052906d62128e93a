package door

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

func startHTTP(t *testing.T, opts Options) *HTTPProxy {
	t.Helper()
	h, err := NewHTTPProxy("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// httpRequest sends raw and returns the response and the connection.
func httpRequest(t *testing.T, addr, raw string) (*http.Response, *bufio.Reader, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("request %q: reading response: %v", raw, err)
	}
	return resp, br, c
}

func TestHTTPConnectStatus(t *testing.T) {
	noLeaks(t)
	opts, d := testOptions(t)
	h := startHTTP(t, opts)
	tests := []struct {
		name     string
		raw      string
		want     int
		wantDial string
		reason   Reason
	}{
		{"connect ip", "CONNECT 10.99.2.1:80 HTTP/1.1\r\nHost: 10.99.2.1:80\r\n\r\n", 200, "tcp 10.99.2.1:80", -1},
		{"connect name", "CONNECT echo.test:443 HTTP/1.1\r\nHost: echo.test:443\r\n\r\n", 200, "tcp 10.99.2.1:443", -1},
		{"connect ipv6", "CONNECT [fd00::2]:22 HTTP/1.1\r\n\r\n", 200, "tcp [fd00::2]:22", -1},
		{"origin form", "GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n", 400, "", ReasonMalformed},
		{"not http", "GET ftp://echo.test/ HTTP/1.1\r\nHost: echo.test\r\n\r\n", 400, "", ReasonMalformed},
		{"garbage", "\x00\x01hello\r\n\r\n", 400, "", ReasonMalformed},
		{"no port", "CONNECT echo.test HTTP/1.1\r\n\r\n", 400, "", ReasonMalformed},
		{"port 0", "CONNECT echo.test:0 HTTP/1.1\r\n\r\n", 400, "", ReasonMalformed},
		{"port too big", "CONNECT echo.test:65536 HTTP/1.1\r\n\r\n", 400, "", ReasonMalformed},
		{"unresolvable", "CONNECT nope.test:80 HTTP/1.1\r\n\r\n", 502, "", ReasonResolve},
		{"refused", "CONNECT 10.99.2.1:1 HTTP/1.1\r\n\r\n", 502, "", ReasonRefused},
		{"unreachable", "CONNECT 10.99.2.1:3 HTTP/1.1\r\n\r\n", 502, "", ReasonUnreachable},
		{"timeout", "CONNECT 10.99.2.1:4 HTTP/1.1\r\n\r\n", 504, "", ReasonTimeout},
		{"not allowed", "CONNECT 10.99.2.1:5 HTTP/1.1\r\n\r\n", 403, "", ReasonNotAllowed},
		{"header too large", "CONNECT 10.99.2.1:80 HTTP/1.1\r\nX: " + strings.Repeat("a", maxRequestHeader) + "\r\n\r\n", 431, "", ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.Stats()
			resp, br, c := httpRequest(t, h.Addr().String(), tt.raw)
			if resp.StatusCode != tt.want {
				t.Fatalf("%q: status %d, want %d", tt.raw, resp.StatusCode, tt.want)
			}
			if tt.wantDial != "" {
				if got := d.lastDial(); got != tt.wantDial {
					t.Errorf("overlay dial = %q, want %q", got, tt.wantDial)
				}
			}
			if tt.want == 200 {
				msg := "through " + tt.name
				io.WriteString(c, msg)
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
					t.Fatalf("through the tunnel: %q, %v; want %q", got, err, msg)
				}
				return
			}
			io.Copy(io.Discard, resp.Body)
			c.Close()
			testutil.EventuallyEqual(t, 5*time.Second, "failure counted as "+tt.reason.String(), func() uint64 { return h.Stats().Failed[tt.reason] }, before.Failed[tt.reason]+1)
		})
	}
}

// Bytes the client sends right after the CONNECT, before the 200, reach
// the destination (they sit in the request reader's buffer).
func TestHTTPConnectEarlyData(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	h := startHTTP(t, opts)
	resp, br, _ := httpRequest(t, h.Addr().String(), "CONNECT 10.99.2.1:80 HTTP/1.1\r\n\r\nearly bytes")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := make([]byte, len("early bytes"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early bytes" {
		t.Fatalf("early data came back as %q, %v", got, err)
	}
}

func TestHTTPLimit(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.MaxConns = 1
	h := startHTTP(t, opts)
	resp, _, held := httpRequest(t, h.Addr().String(), "CONNECT 10.99.2.1:80 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("first: status %d", resp.StatusCode)
	}
	resp, _, _ = httpRequest(t, h.Addr().String(), "CONNECT 10.99.2.1:80 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the limit: status %d, want 503", resp.StatusCode)
	}
	if st := h.Stats(); st.Refused != 1 || st.Accepted != 1 {
		t.Fatalf("stats: accepted %d refused %d, want 1 and 1", st.Accepted, st.Refused)
	}
	held.Close()
	testutil.EventuallyEqual(t, 5*time.Second, "the slot to free", func() int64 { return h.Stats().Active }, 0)
	resp, _, _ = httpRequest(t, h.Addr().String(), "CONNECT 10.99.2.1:80 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("after the first closed: status %d", resp.StatusCode)
	}
}

func TestHTTPProxyAuth(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.Authenticate = func(user, password string) bool { return user == "alice" && password == "s3cret" }
	h := startHTTP(t, opts)
	for _, tt := range []struct {
		name, header string
		want         int
	}{
		{"none", "", 407},
		{"wrong", "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("alice:guess")) + "\r\n", 407},
		{"not basic", "Proxy-Authorization: Bearer abc\r\n", 407},
		{"good", "Proxy-Authorization: basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) + "\r\n", 200},
	} {
		resp, _, _ := httpRequest(t, h.Addr().String(), "CONNECT 10.99.2.1:80 HTTP/1.1\r\n"+tt.header+"\r\n")
		if resp.StatusCode != tt.want {
			t.Errorf("%s credentials: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
		if tt.want == 407 && resp.Header.Get("Proxy-Authenticate") == "" {
			t.Errorf("%s credentials: 407 without Proxy-Authenticate", tt.name)
		}
	}
	if got := h.Stats().Failed[ReasonAuth]; got != 3 {
		t.Errorf("auth failures counted %d, want 3", got)
	}
}

func FuzzHTTPProxyRequest(f *testing.F) {
	f.Add([]byte("CONNECT web.default.overlay:80 HTTP/1.1\r\nHost: web.default.overlay:80\r\n\r\n"))
	f.Add([]byte("CONNECT [fd00::1]:443 HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET http://web.default.overlay/x?y HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("CONNECT :80 HTTP/1.0\r\n\r\n"))
	f.Add([]byte("CONNECT fd00::1:443 HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET http://[fd00::1]:8080/x HTTP/1.1\r\nHost: [fd00::1]:8080\r\n\r\n"))
	f.Add([]byte("GET http://[fe80::1%25eth0]/ HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(&limitedReader{r: bytes.NewReader(b), n: maxRequestHeader})
		pr, err := readProxyRequest(br)
		if err != nil {
			var he *httpError
			if errors.As(err, &he) && he.status != 400 && he.status != 431 {
				t.Fatalf("readProxyRequest(%q): status %d", b, he.status)
			}
			return
		}
		if pr.host == "" || pr.port == 0 || checkName(pr.host) != nil {
			t.Fatalf("readProxyRequest(%q) = %q, %d", b, pr.host, pr.port)
		}
		proxyAuth(pr.req.Header)
	})
}
