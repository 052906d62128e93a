package door

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Ports the fakeDialer maps to failures; any other port reaches the echo
// server.
const (
	portRefused     = 1
	portNetUnreach  = 2
	portHostUnreach = 3
	portHang        = 4
	portNotAllowed  = 5
	portOther       = 6
)

// fakeDialer stands in for the overlay: it dials a local echo server
// whatever the IP, or fails by port.
type fakeDialer struct {
	echo    string // address of the TCP echo server
	udpEcho string // address of the UDP echo server

	mu    sync.Mutex
	dials []string // addresses asked for
}

func (d *fakeDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, network+" "+address)
	d.mu.Unlock()
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("fake: dial %s: not IP:port: %w", address, err)
	}
	switch ap.Port() {
	case portRefused:
		return nil, fmt.Errorf("fake: dial %s: %w", address, syscall.ECONNREFUSED)
	case portNetUnreach:
		return nil, fmt.Errorf("fake: dial %s: %w", address, syscall.ENETUNREACH)
	case portHostUnreach:
		return nil, fmt.Errorf("fake: dial %s: %w", address, syscall.EHOSTUNREACH)
	case portHang:
		<-ctx.Done()
		return nil, ctx.Err()
	case portNotAllowed:
		return nil, fmt.Errorf("fake: dial %s: %w", address, ErrNotAllowed)
	case portOther:
		return nil, errors.New("fake: something else went wrong")
	}
	var nd net.Dialer
	if network == "udp" {
		return nd.DialContext(ctx, network, d.udpEcho)
	}
	return nd.DialContext(ctx, network, d.echo)
}

func (d *fakeDialer) lastDial() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dials) == 0 {
		return ""
	}
	return d.dials[len(d.dials)-1]
}

// mapResolver resolves the names in m (to a comma-separated list of
// addresses); others fail.
func mapResolver(m map[string]string) Resolver {
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		a, ok := m[host]
		if !ok {
			return nil, fmt.Errorf("no such host %q", host)
		}
		var out []netip.Addr
		for _, s := range strings.Split(a, ",") {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

// startEcho runs a TCP echo server on 127.0.0.1 until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

func testOptions(t *testing.T) (Options, *fakeDialer) {
	d := &fakeDialer{echo: startEcho(t), udpEcho: startUDPEcho(t)}
	return Options{
		Dialer:           d,
		Resolver:         mapResolver(map[string]string{"echo.test": "10.99.2.1"}),
		DialTimeout:      300 * time.Millisecond,
		HandshakeTimeout: 2 * time.Second,
	}, d
}

// noLeaks checks, after everything else the test set up is cleaned up,
// that the test left no goroutines behind. Call it first.
func noLeaks(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// startUDPEcho runs a UDP echo server on 127.0.0.1 until the test ends.
func startUDPEcho(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}
