package door

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

func startForward(t *testing.T, f Forward, opts Options) *Forwarder {
	t.Helper()
	fw, err := NewForward(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	return fw
}

func TestNewForwardErrors(t *testing.T) {
	opts := Options{Dialer: &fakeDialer{}}
	for _, tt := range []struct {
		f    Forward
		opts Options
		want string
	}{
		{Forward{Listen: "127.0.0.1:0", Target: "10.0.0.1:80", Proto: "sctp"}, opts, "protocol"},
		{Forward{Listen: "127.0.0.1", Target: "10.0.0.1:80"}, opts, "listen address"},
		{Forward{Listen: "127.0.0.1:0", Target: "10.0.0.1"}, opts, "target"},
		{Forward{Listen: "127.0.0.1:0", Target: "10.0.0.1:0"}, opts, `target "10.0.0.1:0": port "0" is not 1-65535`},
		{Forward{Listen: "127.0.0.1:0", Target: "fd00::1:80"}, opts, `target "fd00::1:80": an IPv6 address takes brackets before its port: [fd00::1]:80`},
		{Forward{Listen: "::1:8080", Target: "[fd00::1]:80"}, opts, `listen address: "::1:8080": an IPv6 address takes brackets before its port: [::1]:8080`},
		{Forward{Listen: "127.0.0.1:0", Target: "web.default.overlay:80"}, opts, "no resolver"},
		{Forward{Listen: "127.0.0.1:0", Target: "10.0.0.1:80"}, Options{}, "needs a Dialer"},
	} {
		if _, err := NewForward(tt.f, tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewForward(%+v) = %v, want an error about %q", tt.f, err, tt.want)
		}
	}
}

func TestTCPForwardLimitAndFailure(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.MaxConns = 1
	fw := startForward(t, Forward{Listen: "127.0.0.1:0", Target: "echo.test:80"}, opts)
	held, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.SetDeadline(time.Now().Add(5 * time.Second))
	held.Write([]byte("x"))
	if _, err := io.ReadFull(held, make([]byte, 1)); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	c, err := net.Dial("tcp", fw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection over the limit read %d, %v; want it closed", n, err)
	}
	if st := fw.Stats(); st.Refused != 1 || st.Accepted != 1 {
		t.Fatalf("stats: accepted %d refused %d, want 1 and 1", st.Accepted, st.Refused)
	}

	refused := startForward(t, Forward{Listen: "127.0.0.1:0", Target: "10.99.2.1:1"}, opts)
	c2, err := net.Dial("tcp", refused.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	if n, err := c2.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("forward to a refusing port read %d, %v; want it closed", n, err)
	}
	testutil.EventuallyEqual(t, 5*time.Second, "refusal counted", func() uint64 { return refused.Stats().Failed[ReasonRefused] }, 1)
}

func TestUDPForwardSessions(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.MaxConns = 2
	opts.UDPIdleTimeout = 500 * time.Millisecond
	fw := startForward(t, Forward{Listen: "127.0.0.1:0", Target: "echo.test:53", Proto: "udp"}, opts)
	var clients []net.Conn
	for i := range 3 {
		c, err := net.Dial("udp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
		msg := []byte{byte(i), 1, 2, 3}
		c.Write(msg)
		got := make([]byte, 100)
		if i < 2 {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := c.Read(got); err != nil || !bytes.Equal(got[:n], msg) {
				t.Fatalf("client %d: echo %x, %v; want %x", i, got[:n], err, msg)
			}
			continue
		}
		// Over the limit: once the forwarder has counted the datagram
		// refused, nothing will answer it; anything it had answered
		// would be queued already.
		testutil.EventuallyEqual(t, 5*time.Second, "the datagram over the session limit refused", func() uint64 { return fw.Stats().Refused }, 1)
		c.SetReadDeadline(time.Now())
		if n, err := c.Read(got); err == nil {
			t.Fatalf("client %d over the session limit got %x", i, got[:n])
		}
	}
	testutil.Eventually(t, 5*time.Second, "the counters to catch up", func() error {
		if st := fw.Stats(); st.InPackets != 2 || st.OutPackets != 2 {
			return fmt.Errorf("in %d, out %d packets, want 2 each", st.InPackets, st.OutPackets)
		}
		return nil
	})
	st := fw.Stats()
	if st.Accepted != 2 || st.Refused != 1 || st.OutPackets != 2 || st.InPackets != 2 || st.OutBytes != 8 {
		t.Fatalf("stats = %+v; want 2 sessions, 1 refused, 2 datagrams of 4 bytes each way", st)
	}
	testutil.EventuallyEqual(t, 5*time.Second, "idle sessions to end", func() int64 { return fw.Stats().Active }, 0)
	// The third client gets a session now.
	clients[2].Write([]byte("again"))
	clients[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 100)
	if n, err := clients[2].Read(got); err != nil || string(got[:n]) != "again" {
		t.Fatalf("after idle sessions ended: %q, %v", got[:n], err)
	}
}
