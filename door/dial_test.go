package door

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// addrDialer hangs for the addresses in hang, reaches the echo server
// for the others, and records what it was asked.
type addrDialer struct {
	echo  string
	hang  map[netip.Addr]bool
	v4    bool
	v6    bool
	mu    sync.Mutex
	dials []string
}

func (d *addrDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, address)
	d.mu.Unlock()
	if d.hang[netip.MustParseAddrPort(address).Addr()] {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.echo)
}

func (d *addrDialer) Families() (bool, bool) { return d.v4, d.v6 }

func TestDialOrderAndFallThrough(t *testing.T) {
	noLeaks(t)
	echo := startEcho(t)
	a4, b4, a6 := netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.8"), netip.MustParseAddr("fd00::9")
	for _, tc := range []struct {
		name      string
		addrs     []netip.Addr
		hang      []netip.Addr
		v4, v6    bool
		wantDials []string
	}{
		{"resolver order", []netip.Addr{a6, a4}, nil, true, true, []string{"[fd00::9]:80"}},
		{"a family the dialer has first", []netip.Addr{a6, a4}, nil, true, false, []string{"10.0.0.9:80"}},
		{"mapped and duplicates folded", []netip.Addr{netip.AddrFrom16(a4.As16()), a4, a6}, nil, false, true, []string{"[fd00::9]:80"}},
		{"the first hangs: the next within the timeout", []netip.Addr{a4, b4}, []netip.Addr{a4}, true, true, []string{"10.0.0.9:80", "10.0.0.8:80"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &addrDialer{echo: echo, hang: map[netip.Addr]bool{}, v4: tc.v4, v6: tc.v6}
			for _, a := range tc.hang {
				d.hang[a] = true
			}
			var dr door
			err := dr.init("test", Options{
				Dialer:      d,
				Resolver:    func(context.Context, string) ([]netip.Addr, error) { return tc.addrs, nil },
				DialTimeout: 600 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c, err := dr.dial("tcp", "name.test", 80)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.Close()
			d.mu.Lock()
			got := d.dials
			d.mu.Unlock()
			if len(got) != len(tc.wantDials) || got[0] != tc.wantDials[0] || got[len(got)-1] != tc.wantDials[len(tc.wantDials)-1] {
				t.Errorf("dials %v, want %v", got, tc.wantDials)
			}
			if took > 600*time.Millisecond {
				t.Errorf("took %v, more than the dial timeout", took)
			}
		})
	}
	// Every address hangs: the first's error (a timeout), within the
	// timeout.
	d := &addrDialer{echo: echo, hang: map[netip.Addr]bool{a4: true, a6: true}, v4: true, v6: true}
	var dr door
	dr.init("test", Options{Dialer: d, DialTimeout: 300 * time.Millisecond,
		Resolver: func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{a4, a6}, nil }})
	if _, err := dr.dial("tcp", "name.test", 80); classify(err) != ReasonTimeout {
		t.Errorf("dial with every address hanging = %v (%v), want a timeout", err, classify(err))
	}
}
