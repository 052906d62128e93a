package stack

import (
	"errors"
	"net/netip"
	"os"
	"sync"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun"
)

// defaultNetnsTUNName is an endpoint's interface name inside its
// namespace, as a container expects it.
const defaultNetnsTUNName = "eth0"

// NetnsTUNOptions configure OpenNetnsTUN.
type NetnsTUNOptions struct {
	// Netns is the network namespace's path: a bind mount such as
	// /var/run/netns/NAME, or /proc/PID/ns/net.
	Netns string
	// Name is the interface name inside the namespace. Default "eth0".
	Name string
	// MTU of the interface. Default 1450.
	MTU int
	// Addrs are assigned to the interface; the kernel routes each one's
	// prefix to it.
	Addrs []netip.Prefix
	// Routes are extra prefixes pointed at the interface.
	Routes []netip.Prefix
	// DefaultRoute points the default route of each address family in
	// Addrs (IPv4 if Addrs is empty) at the interface.
	DefaultRoute bool
	// Persist keeps the device, with its addresses and routes, after its
	// Device is closed and after the process exits, so that the
	// namespace's sockets outlive a restart of the daemon; AdoptNetnsTUN
	// opens it again, Delete or DeleteNetnsTUN removes it.
	Persist bool
	// Logger receives lifecycle logs; nil means none.
	Logger *zap.Logger
}

// NetnsTUN is an L3 TUN device inside another network namespace (an
// endpoint's interface), its descriptor held by this process. Its Read
// and Write are wireguard-go's tun (IFF_VNET_HDR offloads: Read splits
// TSO super-packets, Write coalesces with GRO), as for TUN.
//
// It holds the namespace open while it is open, so that the kernel does
// not reuse the namespace's inode number and Gone stays truthful; closing
// it lets a namespace that nothing else holds go, and its devices with it.
type NetnsTUN struct {
	dev     tun.Device
	name    string
	mtu     int
	netns   string
	ns      *os.File // the namespace, held open; closed by Close
	persist bool
	// viaHelper: a NetnsHelper made or adopted the device (ViaHelper).
	viaHelper bool
	log       *zap.Logger
	cnt       tunCounters

	closeOnce sync.Once
	closeErr  error
}

var _ Device = (*NetnsTUN)(nil)

// Read implements Device. A TSO super-packet that would split into more
// segments than len(bufs) is dropped, counted in DropRead, and Read
// carries on.
func (t *NetnsTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	for {
		n, err := t.dev.Read(bufs, sizes, offset)
		if n == 0 && errors.Is(err, tun.ErrTooManySegments) {
			t.cnt.dropRead.Add(1)
			continue
		}
		if n > 1 {
			t.cnt.outGSO.Add(1)
		}
		return n, err
	}
}

// Stats returns a snapshot of the counters (as TUN's).
func (t *NetnsTUN) Stats() TUNStats {
	return TUNStats{OutGSO: t.cnt.outGSO.Load(), DropRead: t.cnt.dropRead.Load()}
}

// Write implements Device.
func (t *NetnsTUN) Write(bufs [][]byte, offset int) (int, error) { return t.dev.Write(bufs, offset) }

// Layer implements Device: L3.
func (t *NetnsTUN) Layer() Layer { return L3 }

// MTU implements Device: the MTU the interface had when it was opened or
// adopted.
func (t *NetnsTUN) MTU() int { return t.mtu }

// BatchSize implements Device: wireguard's (128 with offloads, else 1).
func (t *NetnsTUN) BatchSize() int { return t.dev.BatchSize() }

// Name implements Device: the interface name inside the namespace.
func (t *NetnsTUN) Name() string { return t.name }

// Netns is the namespace's path, as given.
func (t *NetnsTUN) Netns() string { return t.netns }

// Persistent reports whether the device outlives Close.
func (t *NetnsTUN) Persistent() bool { return t.persist }

// Close implements Device: it releases the descriptor and the namespace.
// A device that is not persistent goes with its addresses and routes; a
// persistent one stays, for AdoptNetnsTUN. Read and Write then return
// os.ErrClosed. Safe to call twice.
func (t *NetnsTUN) Close() error {
	t.closeOnce.Do(func() {
		t.closeErr = t.dev.Close()
		if err := t.ns.Close(); t.closeErr == nil {
			t.closeErr = err
		}
		t.log.Info("netns tun closed", zap.Bool("persist", t.persist))
	})
	return t.closeErr
}
