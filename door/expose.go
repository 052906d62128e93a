package door

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"go.uber.org/zap"
)

// Exposer is the reverse of a Forwarder: it accepts TCP connections on a
// listener it is given (an overlay address of the netstack) and splices
// each to a new connection to Target, a host address dialed with the
// Dialer (a *net.Dialer for the host's own programs). Half-close, idle
// timeout, MaxConns and the counters are those of the other doors; its
// "out" bytes go overlay client → Target.
type Exposer struct {
	tcpDoor
	given  net.Listener
	target netip.AddrPort
}

// NewExpose returns an Exposer serving ln, not yet accepting. target is
// an IP:PORT on the host. The Exposer owns ln from Start on (Close
// closes it).
func NewExpose(ln net.Listener, target string, opts Options) (*Exposer, error) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		if herr := bracketHint(target); herr != nil {
			return nil, fmt.Errorf("door: expose: target %w", herr)
		}
		return nil, fmt.Errorf("door: expose: target %q: want IP:PORT, e.g. 127.0.0.1:3000 or [::1]:3000", target)
	}
	e := &Exposer{given: ln, target: ap}
	if err := e.init("expose", opts); err != nil {
		return nil, err
	}
	e.log = e.log.With(zap.Stringer("target", ap))
	e.listen = ln.Addr().String()
	return e, nil
}

// Start serves the listener in the background until Close; ctx is not
// used after Start returns.
func (e *Exposer) Start(context.Context) error {
	if err := e.start(); err != nil {
		e.given.Close()
		return err
	}
	if !e.track(e.given) {
		return fmt.Errorf("door: expose: %w", net.ErrClosed)
	}
	e.mu.Lock()
	e.ln = e.given
	e.mu.Unlock()
	e.log.Info("listening", zap.Stringer("addr", e.given.Addr()))
	e.serveListener(e.given, e.handle, func(net.Conn) {})
	return nil
}

func (e *Exposer) handle(c net.Conn) {
	hc, err := e.dial("tcp", e.target.Addr().String(), e.target.Port())
	if err != nil {
		e.fail(classify(err), c.RemoteAddr(), e.target.String(), err)
		return
	}
	if !e.track(hc) {
		return
	}
	defer e.untrack(hc)
	splice(c, nil, hc, e.opts.spliceTimeouts(), &e.cnt)
}

var _ Door = (*Exposer)(nil)
