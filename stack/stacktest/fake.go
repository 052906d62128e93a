package stacktest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/overlayd/overlayd/stack"
)

// Options configure New. Zero values pick the defaults.
type Options struct {
	// Layer is L3 (IP packets, the default) or L2 (Ethernet frames).
	Layer stack.Layer
	// MTU reported by the device. Default 1450.
	MTU int
	// BatchSize is the most packets one Read returns. Default 16.
	BatchSize int
	// Name reported by the device. Default "fake".
	Name string
	// QueueLen bounds both the injected and the captured queues.
	// Default 1024.
	QueueLen int
}

// Fake is an in-memory stack.Device. Inject queues a packet that Read
// returns (outbound: from the host towards the overlay); packets given to
// Write are copied and can be taken with Next or Captured (inbound).
// Write drops, and counts, packets when the capture queue is full, so a
// test that does not read captures never blocks the router.
type Fake struct {
	opts     Options
	in       chan []byte
	out      chan []byte
	done     chan struct{}
	once     sync.Once
	dropped  atomic.Uint64
	written  atomic.Uint64
	injected atomic.Uint64
}

var _ stack.Device = (*Fake)(nil)

// New returns a Fake device.
func New(opts Options) *Fake {
	if opts.MTU == 0 {
		opts.MTU = 1450
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 16
	}
	if opts.Name == "" {
		opts.Name = "fake"
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 1024
	}
	return &Fake{
		opts: opts,
		in:   make(chan []byte, opts.QueueLen),
		out:  make(chan []byte, opts.QueueLen),
		done: make(chan struct{}),
	}
}

// NewPipe returns an L3 Fake with the defaults.
func NewPipe() *Fake { return New(Options{}) }

// Inject queues a copy of pkt for Read. It blocks while the queue is full
// and returns stack.ErrClosed after Close.
func (f *Fake) Inject(pkt []byte) error {
	p := append([]byte(nil), pkt...)
	select {
	case <-f.done:
		return stack.ErrClosed
	default:
	}
	select {
	case f.in <- p:
		f.injected.Add(1)
		return nil
	case <-f.done:
		return stack.ErrClosed
	}
}

// Next waits for the next packet given to Write and returns it (the
// caller owns it), or ctx's error.
func (f *Fake) Next(ctx context.Context) ([]byte, error) {
	select {
	case p := <-f.out:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Captured is the queue of packets given to Write, oldest first.
func (f *Fake) Captured() <-chan []byte { return f.out }

// Dropped counts packets Write dropped because the capture queue was full.
func (f *Fake) Dropped() uint64 { return f.dropped.Load() }

// Written counts packets given to Write and captured.
func (f *Fake) Written() uint64 { return f.written.Load() }

// Read implements stack.Device.
func (f *Fake) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-f.in:
	case <-f.done:
		return 0, stack.ErrClosed
	}
	n := 0
	for {
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) || n == f.opts.BatchSize {
			return n, nil
		}
		select {
		case p = <-f.in:
		default:
			return n, nil
		}
	}
}

// Write implements stack.Device: each packet is copied into the capture
// queue.
func (f *Fake) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case <-f.done:
		return 0, stack.ErrClosed
	default:
	}
	for _, b := range bufs {
		p := append([]byte(nil), b[offset:]...)
		select {
		case f.out <- p:
			f.written.Add(1)
		default:
			f.dropped.Add(1)
		}
	}
	return len(bufs), nil
}

// Layer implements stack.Device.
func (f *Fake) Layer() stack.Layer { return f.opts.Layer }

// MTU implements stack.Device.
func (f *Fake) MTU() int { return f.opts.MTU }

// BatchSize implements stack.Device.
func (f *Fake) BatchSize() int { return f.opts.BatchSize }

// Name implements stack.Device.
func (f *Fake) Name() string { return f.opts.Name }

// Close implements stack.Device: Read, Write and Inject return
// stack.ErrClosed afterwards. Safe to call twice.
func (f *Fake) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}
