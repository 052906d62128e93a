package stack

import (
	"sync"

	"github.com/songgao/water"
	"go.uber.org/zap"
)

// TAP is a kernel TAP device (songgao/water): an L2 Device carrying
// Ethernet II frames, one per Read.
type TAP struct {
	ifce *water.Interface
	name string
	mtu  int
	log  *zap.Logger

	closeOnce sync.Once
	closeErr  error
}

var _ Device = (*TAP)(nil)

// OpenTAP creates the TAP device, sets its MTU, adds its addresses and
// brings it up. Without privilege the error wraps ErrPermission.
func OpenTAP(opts TAPOptions) (*TAP, error) {
	if opts.Name == "" {
		opts.Name = defaultTUNName
	}
	if opts.MTU == 0 {
		opts.MTU = defaultMTU
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	cfg := water.Config{DeviceType: water.TAP}
	cfg.Name = opts.Name
	ifce, err := water.New(cfg)
	if err != nil {
		return nil, wrapCreate("TAP", opts.Name, err)
	}
	t := &TAP{ifce: ifce, name: ifce.Name(), mtu: opts.MTU}
	t.log = opts.Logger.Named("tap").With(zap.String("device", t.name))
	if err := configureLink(t.name, opts.MTU, opts.Addrs, nil); err != nil {
		ifce.Close()
		return nil, wrapCreate("TAP", t.name, err)
	}
	t.log.Info("tap up", zap.Stringers("addrs", opts.Addrs), zap.Int("mtu", opts.MTU))
	return t, nil
}

// Read implements Device: it reads one frame into bufs[0][offset:].
func (t *TAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := t.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}

// Write implements Device: one write(2) per frame.
func (t *TAP) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := t.ifce.Write(b[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}

// Layer implements Device: L2.
func (t *TAP) Layer() Layer { return L2 }

// MTU implements Device.
func (t *TAP) MTU() int { return t.mtu }

// BatchSize implements Device: one frame per Read.
func (t *TAP) BatchSize() int { return 1 }

// Name implements Device.
func (t *TAP) Name() string { return t.name }

// Close implements Device: closing the fd removes the (non-persistent)
// interface. Safe to call twice.
func (t *TAP) Close() error {
	t.closeOnce.Do(func() {
		t.closeErr = t.ifce.Close()
		t.log.Info("tap closed")
	})
	return t.closeErr
}
