package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

// demoUpstream is the demo's own resolver on loopback (the demo never
// forwards to the host's): it answers NAME.example.test with 192.0.2.80
// and everything else NXDOMAIN.
type demoUpstream struct {
	addr netip.AddrPort
	srv  *mdns.Server
}

func startDemoUpstream() (*demoUpstream, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: upstream resolver: %w", err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		if mdns.IsSubDomain("example.test.", q.Name) && q.Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 80)})
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	started := make(chan struct{})
	u := &demoUpstream{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), srv: &mdns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: func() { close(started) }}}
	go u.srv.ActivateAndServe()
	<-started
	return u, nil
}

func (u *demoUpstream) close() { u.srv.Shutdown() }

// withDemoDNS turns DNS on in a demo node: a host listener on a free
// loopback port, forwarding to the demo's upstream.
func withDemoDNS(c config.Config, up *demoUpstream) config.Config {
	c.DNS.Listen = "127.0.0.1:0"
	c.DNS.Upstreams = []string{up.addr.String()}
	return c
}

// demoDNS asks n's DNS for an overlay name through its netstack, at the
// network's DNS address, and for a forwarded name on its host listener.
func demoDNS(ctx context.Context, n *node.Node, out io.Writer) error {
	dnsAddr := n.Addr().Masked().Addr().Next().String() + ":53"
	query := func(conn net.Conn, name string) (string, error) {
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		q := new(mdns.Msg)
		q.SetQuestion(name, mdns.TypeA)
		c := &mdns.Conn{Conn: conn}
		if err := c.WriteMsg(q); err != nil {
			return "", err
		}
		r, err := c.ReadMsg()
		if err != nil {
			return "", err
		}
		if len(r.Answer) == 0 {
			return "", fmt.Errorf("%s: %s", name, mdns.RcodeToString[r.Rcode])
		}
		return r.Answer[0].(*mdns.A).A.String(), nil
	}
	st, err := n.Status(ctx)
	if err != nil {
		return err
	}
	conn, err := n.Dial(ctx, "udp", dnsAddr)
	if err != nil {
		return fmt.Errorf("demo: dns: %w", err)
	}
	name := st.Name + ".static.overlay."
	a, err := query(conn, name)
	if err != nil {
		return fmt.Errorf("demo: dns through the overlay: %w", err)
	}
	fmt.Fprintf(out, "%s: dig @%s %s → %s (through its netstack)\n", st.Name, dnsAddr, name, a)
	if conn, err = net.Dial("udp", n.DNSAddr().String()); err != nil {
		return fmt.Errorf("demo: dns: %w", err)
	}
	if a, err = query(conn, "www.example.test."); err != nil {
		return fmt.Errorf("demo: dns forwarded: %w", err)
	}
	fmt.Fprintf(out, "%s: dig @%s www.example.test → %s (forwarded to the demo's resolver on loopback)\n\n", st.Name, n.DNSAddr(), a)
	return nil
}
