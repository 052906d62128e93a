package nodedns

import (
	"context"
	"net"
	"net/netip"

	"github.com/overlayd/overlayd/dns"
)

// fromLoopback is the host listener's access check: the host's own
// programs (see the package doc).
func fromLoopback(a netip.Addr) bool { return a.Unmap().IsLoopback() }

// fromAnywhere is the access check of sockets that only the host's own
// programs reach (bound to the loopback device).
func fromAnywhere(netip.Addr) bool { return true }

// fromOverlay is the access check of sockets that only the overlay
// reaches: a source in one of the networks the node is on.
func (d *Service) fromOverlay(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range *d.cidrs.Load() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// fromOverlayOrLoopback is the access check of an unbound host socket on a
// DNS address, where the way in cannot be told (not Linux).
func (d *Service) fromOverlayOrLoopback(a netip.Addr) bool {
	return fromLoopback(a) || d.fromOverlay(a)
}

// netstack is the netstack to serve the DNS addresses through; nil in tun
// mode.
func (d *Service) netstack() Netstack {
	if d.opts.Netstack == nil {
		return nil
	}
	return d.opts.Netstack()
}

// listen opens UDP and TCP on ap: through the netstack, or with host
// sockets on the TUN's address, one pair bound to the TUN and one to the
// loopback device (see the package doc).
func (d *Service) listen(ap netip.AddrPort) ([]dns.Way, error) {
	if ns := d.netstack(); ns != nil {
		pc, err := ns.ListenPacket("udp", ap.String())
		if err != nil {
			return nil, err
		}
		ln, err := ns.Listen("tcp", ap.String())
		if err != nil {
			pc.Close()
			return nil, err
		}
		return []dns.Way{{Packet: pc, Stream: ln, Allowed: d.fromOverlay}}, nil
	}
	if !deviceBinding {
		d.unbound.Do(func() {
			d.log.Warn("this system cannot bind the DNS address's sockets to the TUN: a host on the underlay that routes the DNS address here can reach it (from a source in the overlay's CIDR, it is answered)")
		})
		w, err := listenHost(ap, "", d.fromOverlayOrLoopback)
		if err != nil {
			return nil, err
		}
		return []dns.Way{w}, nil
	}
	var ways []dns.Way
	for _, w := range []struct {
		dev     string
		allowed func(netip.Addr) bool
	}{{d.opts.Device(), d.fromOverlay}, {loopbackDevice, fromAnywhere}} {
		way, err := listenHost(ap, w.dev, w.allowed)
		if err != nil {
			dns.CloseWays(ways)
			return nil, err
		}
		ways = append(ways, way)
	}
	return ways, nil
}

// listenHost opens a host UDP and TCP socket on ap, bound to the device
// dev unless it is empty.
func listenHost(ap netip.AddrPort, dev string, allowed func(netip.Addr) bool) (dns.Way, error) {
	var lc net.ListenConfig
	if dev != "" {
		lc.Control = bindToDevice(dev)
	}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, "udp", ap.String())
	if err != nil {
		return dns.Way{}, err
	}
	ln, err := lc.Listen(ctx, "tcp", ap.String())
	if err != nil {
		pc.Close()
		return dns.Way{}, err
	}
	return dns.Way{Packet: pc, Stream: ln, Allowed: allowed}, nil
}
