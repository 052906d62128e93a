package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
	"github.com/overlayd/overlayd/node"
)

// tunCloseBound is how long Close of a tun node may take (issue 10 §3: a
// tun-mode node did not exit within 3 s of SIGTERM). Close tells the
// cluster it leaves, waiting at most a second for that, and the rest is
// closing sockets and the device.
const tunCloseBound = 3 * time.Second

// TestTUNNodeCloseBounded runs a tun-mode gossip node in a namespace (the
// test binary again, as TestTUNCloseHelper), with a peer, a seed that
// does not answer, a joined network, overlay DNS on its TUN, a SOCKS5 door
// and a ping flood through its TUN, and sends it SIGTERM as a user would:
// its Close returns within tunCloseBound, and the process exits.
func TestTUNNodeCloseBounded(t *testing.T) {
	e2e.RequireRoot(t, "ping", "env")
	lab := e2e.NewLab(t, 2, 1500)
	h1, h2 := lab.Hosts[0], lab.Hosts[1]
	peer := h2.StartOverlayd("--mode", "tun",
		"--listen", h2.Underlay.String()+":4789",
		"--gossip", h2.Underlay.String()+":7946",
		"--state-dir", filepath.Join(t.TempDir(), "h2"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := peer.Client().CreateNetwork(ctx, api.CreateNetwork{Name: "blue", CIDR: "10.61.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Client().JoinNetwork(ctx, "blue"); err != nil {
		t.Fatal(err)
	}

	// A second seed that never answers: h1 routes it to h2, which does
	// not forward, so a join or rejoin dialling it hangs (before gossip's
	// 46e169a, Close waited for that dial: memberlist's TCP timeout, 10 s).
	h1.Run("ip", "route", "add", "192.0.2.0/24", "via", h2.Underlay.String())
	helper := h1.Start("env", "OVERLAYD_NODE_HELPER=tunclose", os.Args[0], "-test.run=^TestTUNCloseHelper$", "--",
		h1.Underlay.String(), h2.Underlay.String()+":7946,192.0.2.1:7946", filepath.Join(t.TempDir(), "h1"))
	ready := regexp.MustCompile(`ready (\S+)`)
	var addr string
	testutil.Eventually(t, 30*time.Second, "helper node up", func() error {
		if m := ready.FindStringSubmatch(helper.Output()); m != nil {
			addr = m[1]
			return nil
		}
		if err := helper.Wait(0); err == nil || !strings.Contains(err.Error(), "still running") {
			return fmt.Errorf("helper exited: %v\n%s", err, helper.Output())
		}
		return fmt.Errorf("not yet:\n%s", helper.Output())
	})
	// Traffic through the TUN while it closes: the flood's packets are
	// seen arriving at the peer first.
	testutil.Eventually(t, 20*time.Second, "peer routes the helper's address", func() error {
		st, err := peer.Status()
		if err != nil {
			return err
		}
		for _, r := range st.Routes {
			if r.Prefix == addr+"/32" {
				return nil
			}
		}
		return fmt.Errorf("routes %+v", st.Routes)
	})
	pinger := h2.Start("ping", "-f", "-w", "20", addr)
	testutil.Eventually(t, 20*time.Second, "ping flood through the helper's TUN", func() error {
		st, err := peer.Status()
		if err != nil {
			return err
		}
		if st.Traffic.Inbound.Packets < 1000 {
			return fmt.Errorf("peer inbound %d packets, outbound %d; routes %+v refused %v drops %v\nping: %s", st.Traffic.Inbound.Packets, st.Traffic.Outbound.Packets, st.Routes, st.RoutesRefused, st.Traffic.Drops, pinger.Output())
		}
		return nil
	})
	helper.Cmd.Process.Signal(syscall.SIGTERM)
	if err := helper.Wait(tunCloseBound + 10*time.Second); err != nil {
		t.Fatalf("helper after SIGTERM: %v\n%s", err, helper.Output())
	}
	m := regexp.MustCompile(`closed in (\S+)`).FindStringSubmatch(helper.Output())
	if m == nil {
		t.Fatalf("helper did not report its Close:\n%s", helper.Output())
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatal(err)
	}
	if d > tunCloseBound {
		t.Errorf("Close of the tun node took %v, more than %v:\n%s", d, tunCloseBound, helper.Output())
	}
	t.Logf("Close of the tun node: %v (load %s)", d, loadavg())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

// TestTUNCloseHelper is not a test: TestTUNNodeCloseBounded runs the test
// binary in a namespace with OVERLAYD_NODE_HELPER=tunclose; it starts a
// tun node (args: underlay IP, seed, state directory), joins network
// blue, prints "ready ADDR", and on SIGTERM prints how long Close took
// (and every goroutine's stack if Close is slower than tunCloseBound).
func TestTUNCloseHelper(t *testing.T) {
	if os.Getenv("OVERLAYD_NODE_HELPER") != "tunclose" {
		return
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	if err := tunCloseHelper(args); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func tunCloseHelper(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: UNDERLAY-IP SEED STATE-DIR")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := config.Default()
	cfg.Name = "closer"
	cfg.Mode = config.ModeTUN
	cfg.TUNName = "ovlclose0"
	cfg.Listen = netip.MustParseAddrPort(args[0] + ":4789")
	cfg.Control = ""
	cfg.Gossip.Listen = netip.MustParseAddrPort(args[0] + ":7946")
	cfg.Gossip.Join = strings.Split(args[1], ",")
	cfg.StateDir = args[2]
	cfg.Doors.SOCKS5 = "127.0.0.1:0"
	log, err := zap.NewDevelopment()
	if err != nil {
		return err
	}
	n, err := node.New(cfg, node.WithLogger(log))
	if err != nil {
		return err
	}
	if err := n.Start(context.Background()); err != nil {
		n.Close()
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	ni, err := n.JoinNetwork(jctx, "blue")
	cancel()
	if err != nil {
		n.Close()
		return err
	}
	fmt.Printf("ready %s\n", netip.MustParsePrefix(ni.Addr).Addr())
	<-ctx.Done()
	watchdog := time.AfterFunc(tunCloseBound, func() {
		buf := make([]byte, 1<<20)
		fmt.Fprintf(os.Stderr, "Close still running after %v:\n%s\n", tunCloseBound, buf[:runtime.Stack(buf, true)])
	})
	t0 := time.Now()
	err = n.Close()
	d := time.Since(t0)
	watchdog.Stop()
	fmt.Printf("closed in %v (err %v)\n", d, err)
	return nil
}
