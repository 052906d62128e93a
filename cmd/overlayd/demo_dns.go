package main

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/overlayd/overlayd/config"
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

// askA asks the DNS server at server (IP:PORT, over UDP) for name's A
// record and returns the first address.
func askA(server, name string) (netip.Addr, error) {
	conn, err := net.Dial("udp", server)
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	c := &mdns.Conn{Conn: conn}
	if err := c.WriteMsg(q); err != nil {
		return netip.Addr{}, err
	}
	r, err := c.ReadMsg()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
				return ip, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: %s", name, mdns.RcodeToString[r.Rcode])
}
