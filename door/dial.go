package door

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// resolve turns host (an IP literal or a name) and port into the
// addresses to dial, in the order to try them (see Resolver), within ctx.
func (d *door) resolve(ctx context.Context, host string, port uint16) ([]netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return nil, &resolveError{host: host, err: errors.New("zoned addresses are not supported")}
		}
		return []netip.AddrPort{netip.AddrPortFrom(ip.Unmap(), port)}, nil
	}
	if d.opts.Resolver == nil {
		return nil, &resolveError{host: host, err: errNoResolver}
	}
	ips, err := d.opts.Resolver(ctx, host)
	if err != nil {
		return nil, &resolveError{host: host, err: err}
	}
	aps := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap(), port)
		if ip.IsValid() && ip.Zone() == "" && !slices.Contains(aps, ap) {
			aps = append(aps, ap)
		}
	}
	if len(aps) == 0 {
		return nil, &resolveError{host: host, err: errors.New("no address")}
	}
	if f, ok := d.opts.Dialer.(AddressFamilies); ok && len(aps) > 1 {
		v4, v6 := f.Families()
		has := func(ap netip.AddrPort) bool { return ap.Addr().Is4() && v4 || ap.Addr().Is6() && v6 }
		// Stable: the Resolver's order within each group.
		slices.SortStableFunc(aps, func(a, b netip.AddrPort) int {
			switch ha, hb := has(a), has(b); {
			case ha && !hb:
				return -1
			case hb && !ha:
				return 1
			}
			return 0
		})
	}
	return aps, nil
}

// resolveError marks a failure to resolve a name.
type resolveError struct {
	host string
	err  error
}

func (e *resolveError) Error() string { return "resolve " + e.host + ": " + e.err.Error() }
func (e *resolveError) Unwrap() error { return e.err }

// dial resolves host and dials its addresses over network in turn until
// one answers, within DialTimeout; it returns the first address's error
// if none does.
func (d *door) dial(network, host string, port uint16) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(d.ctx, d.opts.DialTimeout)
	defer cancel()
	aps, err := d.resolve(ctx, host, port)
	if err != nil {
		return nil, err
	}
	var first error
	for i, ap := range aps {
		actx, acancel := ctx, context.CancelFunc(func() {})
		if left := len(aps) - i; left > 1 {
			if dl, ok := ctx.Deadline(); ok {
				actx, acancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/time.Duration(left)))
			}
		}
		c, err := d.opts.Dialer.DialContext(actx, network, ap.String())
		timedOut := actx.Err() == context.DeadlineExceeded
		acancel()
		if err == nil {
			return c, nil
		}
		if timedOut && !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}
