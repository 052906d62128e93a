package door

import (
	"context"
	"fmt"
	"net"

	"go.uber.org/zap"
)

// tcpDoor is a door that accepts TCP connections on a host address.
type tcpDoor struct {
	door
	listen string
	ln     net.Listener
}

// startTCP listens on the door's address and serves it.
func (t *tcpDoor) startTCP(ctx context.Context, handle, tell func(net.Conn)) error {
	if err := t.start(); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", t.listen)
	if err != nil {
		return fmt.Errorf("door: %s: %w", t.kind, err)
	}
	if !t.track(ln) {
		return fmt.Errorf("door: %s: %w", t.kind, net.ErrClosed)
	}
	t.mu.Lock()
	t.ln = ln
	t.mu.Unlock()
	t.log.Info("listening", zap.Stringer("addr", ln.Addr()))
	t.serveListener(ln, handle, tell)
	return nil
}

// Addr returns the address the door listens on, or nil before Start.
func (t *tcpDoor) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Stats returns a snapshot of the door's counters.
func (t *tcpDoor) Stats() Stats { return t.cnt.snapshot() }

// Close stops accepting, closes every connection through the door and
// waits for its goroutines. Safe to call twice.
func (t *tcpDoor) Close() error {
	t.close()
	return nil
}
