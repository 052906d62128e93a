package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun"
)

// ErrPermission is wrapped by OpenTUN and OpenTAP errors when the process
// may not create or configure the device. `--mode auto` falls back to the
// netstack; the CLI prints the error's one sentence.
var ErrPermission = errors.New("stack: permission denied")

// privError is a missing-privilege error: one sentence that says what to
// do, wrapping both ErrPermission and the system's error.
type privError struct {
	kind, name string
	cause      error
}

func (e *privError) Error() string {
	return fmt.Sprintf("stack: create %s %q: operation not permitted; %s", e.kind, e.name, privHint)
}

func (e *privError) Unwrap() []error { return []error{ErrPermission, e.cause} }

// wrapCreate wraps an error from creating or configuring a device, turning
// a permission error into a privError.
func wrapCreate(kind, name string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		return &privError{kind: kind, name: name, cause: err}
	}
	return fmt.Errorf("stack: create %s %q: %w", kind, name, err)
}

// TUNOptions configure OpenTUN.
type TUNOptions struct {
	// Name is the interface name. Default "ovl0" on Linux; macOS only
	// allows "utun" (the kernel picks the number, the default) or "utunN".
	Name string
	// MTU of the interface. Default 1450.
	MTU int
	// Addrs are assigned to the interface; each also routes its prefix
	// to it.
	Addrs []netip.Prefix
	// Routes are extra prefixes pointed at the interface.
	Routes []netip.Prefix
	// Logger receives lifecycle logs; nil means none.
	Logger *zap.Logger
}

// TUN is a kernel TUN device (wireguard-go's tun: IFF_VNET_HDR offloads on
// Linux, so Read splits TSO super-packets and Write coalesces with GRO;
// utun on macOS). Its Read and Write are wireguard's; on Linux it is
// also a PartialReader and PartialWriter, which handle the virtio-net
// header themselves (tun_partial_linux.go).
type TUN struct {
	dev  tun.Device
	name string
	mtu  int
	log  *zap.Logger
	part *partialIO // the offload path of ReadPartial and WritePartial; nil: none

	cnt tunCounters

	addrMu sync.Mutex     // guards addrs and changes to the interface's addresses
	addrs  []netip.Prefix // the interface's addresses

	closeOnce sync.Once
	closeErr  error
	// eventsDone is closed when the events drain ends, which is after
	// wireguard's listener goroutines have stopped.
	eventsDone chan struct{}
}

// TUNStats are a TUN's counters of what it read from the kernel.
type TUNStats struct {
	// OutGSO counts the super-packets (TSO over IPv4 or IPv6, UDP GSO)
	// that Read or ReadPartial cut into segments.
	OutGSO uint64
	// DropRead counts what a read from the kernel returned and Read or
	// ReadPartial dropped: a super-packet of more segments than the
	// batch has buffers, of a kind not cut (an IPv6 one with extension
	// headers), or a malformed one.
	DropRead uint64
}

type tunCounters struct{ outGSO, dropRead atomic.Uint64 }

// Stats returns a snapshot of the counters.
func (t *TUN) Stats() TUNStats {
	return TUNStats{OutGSO: t.cnt.outGSO.Load(), DropRead: t.cnt.dropRead.Load()}
}

var (
	_ Device        = (*TUN)(nil)
	_ AddressSetter = (*TUN)(nil)
)

// OpenTUN creates the TUN device, sets its MTU, adds its addresses, brings
// it up and adds the routes. Without privilege the error wraps
// ErrPermission and reads like "stack: create TUN "ovl0": operation not
// permitted; run as root, grant CAP_NET_ADMIN (setcap cap_net_admin+ep
// overlayd), or use --mode netstack".
func OpenTUN(opts TUNOptions) (*TUN, error) {
	opts.Name = tunName(opts.Name)
	if opts.MTU == 0 {
		opts.MTU = defaultMTU
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	for _, p := range append(append([]netip.Prefix(nil), opts.Addrs...), opts.Routes...) {
		if !p.IsValid() {
			return nil, fmt.Errorf("stack: create TUN %q: invalid prefix %v", opts.Name, p)
		}
	}
	dev, err := tun.CreateTUN(opts.Name, opts.MTU)
	if err != nil {
		return nil, wrapCreate("TUN", opts.Name, err)
	}
	t := &TUN{dev: dev, name: opts.Name, mtu: opts.MTU, part: newPartialIO(dev), eventsDone: make(chan struct{})}
	// wireguard's listeners block on a full events channel; consume it
	// until Close makes them close it.
	go func() {
		defer close(t.eventsDone)
		for range dev.Events() {
		}
	}()
	if name, err := dev.Name(); err == nil {
		t.name = name
	}
	t.log = opts.Logger.Named("tun").With(zap.String("device", t.name))
	if err := configureTUN(t.name, opts); err != nil {
		t.Close()
		return nil, wrapCreate("TUN", t.name, err)
	}
	t.addrs = append([]netip.Prefix(nil), opts.Addrs...)
	t.log.Info("tun up", zap.Stringers("addrs", opts.Addrs), zap.Int("mtu", opts.MTU), zap.Int("batch", dev.BatchSize()))
	return t, nil
}

// Read implements Device. A TSO super-packet that would split into more
// segments than len(bufs) is dropped (wireguard reports it), counted in
// DropRead, and Read carries on.
func (t *TUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
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

// Write implements Device.
func (t *TUN) Write(bufs [][]byte, offset int) (int, error) { return t.dev.Write(bufs, offset) }

// Layer implements Device: L3.
func (t *TUN) Layer() Layer { return L3 }

// MTU implements Device.
func (t *TUN) MTU() int { return t.mtu }

// BatchSize implements Device: wireguard's (128 with Linux offloads, else 1).
func (t *TUN) BatchSize() int { return t.dev.BatchSize() }

// Name implements Device: the interface name.
func (t *TUN) Name() string { return t.name }

// Close implements Device: it closes the device, which removes the
// interface with its addresses and routes, and waits for wireguard's
// goroutines to stop. Safe to call twice.
func (t *TUN) Close() error {
	t.closeOnce.Do(func() {
		t.closeErr = t.dev.Close()
		<-t.eventsDone
		t.log.Info("tun closed")
	})
	return t.closeErr
}

// SetAddresses implements AddressSetter: the interface's addresses become
// addrs (the kernel routes each one's prefix to the interface). Only on
// Linux; elsewhere it fails unless the set is unchanged.
func (t *TUN) SetAddresses(addrs []netip.Prefix) error {
	for _, p := range addrs {
		if !p.IsValid() {
			return fmt.Errorf("stack: TUN %q: invalid address %v", t.name, p)
		}
	}
	t.addrMu.Lock()
	defer t.addrMu.Unlock()
	var add, del []netip.Prefix
	for _, p := range addrs {
		if !slices.Contains(t.addrs, p) {
			add = append(add, p)
		}
	}
	for _, p := range t.addrs {
		if !slices.Contains(addrs, p) {
			del = append(del, p)
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	if err := changeAddrs(t.name, add, del); err != nil {
		return fmt.Errorf("stack: TUN %q: %w", t.name, err)
	}
	t.addrs = append(t.addrs[:0:0], addrs...)
	t.log.Info("tun addresses", zap.Stringers("addrs", addrs))
	return nil
}
