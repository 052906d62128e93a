package dnstest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Handler scripts a fake upstream: for each query it returns the messages
// to send back, in order (none: stay silent). tcp says how the query came.
type Handler func(req *mdns.Msg, tcp bool) []*mdns.Msg

// Upstream is a fake resolver on 127.0.0.1, UDP and TCP on the same port.
type Upstream struct {
	Addr netip.AddrPort
	// UDPQueries and TCPQueries count the queries received.
	UDPQueries, TCPQueries atomic.Int64

	h  Handler
	pc net.PacketConn
	ln net.Listener
	wg sync.WaitGroup
}

// NewUpstream starts a fake upstream answering with h; it stops when the
// test ends.
func NewUpstream(t testing.TB, h Handler) *Upstream {
	t.Helper()
	pc, ln := ListenPair(t)
	u := &Upstream{Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), h: h, pc: pc, ln: ln}
	u.wg.Add(2)
	go u.serveUDP()
	go u.serveTCP()
	t.Cleanup(u.Close)
	return u
}

// Close stops the upstream and waits for its goroutines. Safe twice.
func (u *Upstream) Close() {
	u.pc.Close()
	u.ln.Close()
	u.wg.Wait()
}

func (u *Upstream) serveUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		req := new(mdns.Msg)
		if req.Unpack(buf[:n]) != nil {
			continue
		}
		u.UDPQueries.Add(1)
		for _, m := range u.h(req, false) {
			if b, err := m.Pack(); err == nil {
				u.pc.WriteTo(b, from)
			}
		}
	}
}

func (u *Upstream) serveTCP() {
	defer u.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				b := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				req := new(mdns.Msg)
				if req.Unpack(b) != nil {
					return
				}
				u.TCPQueries.Add(1)
				for _, m := range u.h(req, true) {
					out, err := m.Pack()
					if err != nil {
						continue
					}
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
				}
			}
		}()
	}
}

// Reply returns a reply to req with the given records in the answer
// section, parsed from zone-file lines such as "a.test. 60 IN A 192.0.2.1".
func Reply(req *mdns.Msg, rrs ...string) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	for _, s := range rrs {
		rr, err := mdns.NewRR(s)
		if err != nil {
			panic(fmt.Sprintf("dnstest: record %q: %v", s, err))
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

// RequireDnsmasq skips the test when dnsmasq is not installed, with a
// message saying how to install it; under CI (CI=true) it fails instead,
// since .ci/run installs it.
func RequireDnsmasq(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("dnsmasq")
	if err == nil {
		return p
	}
	msg := "needs dnsmasq (apt-get install dnsmasq-base)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI installs it in .ci/run, so this is a failure", msg)
	}
	t.Skip(msg + "; skipped")
	return ""
}

// RequireDig skips the test when dig is not installed, with a message
// saying how to install it; under CI (CI=true) it fails instead, since
// .ci/run installs it (dnsutils).
func RequireDig(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("dig")
	if err == nil {
		return p
	}
	msg := "needs dig (apt-get install dnsutils)"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI installs it in .ci/run, so this is a failure", msg)
	}
	t.Skip(msg + "; skipped")
	return ""
}

// Dnsmasq is a dnsmasq process serving a small zone on 127.0.0.1 only, with
// no upstreams, no hosts file and no configuration file.
type Dnsmasq struct {
	Addr netip.AddrPort

	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// StartDnsmasq starts dnsmasq with args (records such as
// "--address=/example.test/192.0.2.10") on a free loopback port and waits
// until it answers. It is stopped when the test ends.
func StartDnsmasq(t testing.TB, args ...string) *Dnsmasq {
	t.Helper()
	bin := RequireDnsmasq(t)
	var lastErr error
	for try := 0; try < 5; try++ {
		port := freePort(t)
		d := &Dnsmasq{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port), out: new(syncBuffer), done: make(chan struct{})}
		base := []string{
			"--no-daemon", "--port=" + strconv.Itoa(int(port)), "--listen-address=127.0.0.1",
			"--bind-interfaces", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
			"--pid-file=", "--log-facility=-",
		}
		if os.Geteuid() == 0 {
			base = append(base, "--user=root", "--group=root")
		}
		d.cmd = exec.Command(bin, append(base, args...)...)
		d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
		if err := d.cmd.Start(); err != nil {
			t.Fatalf("dnstest: start dnsmasq: %v", err)
		}
		go func() { d.cmd.Wait(); close(d.done) }()
		if err := d.waitReady(5 * time.Second); err != nil {
			d.Stop()
			lastErr = fmt.Errorf("%v\n%s", err, d.out.String())
			continue
		}
		t.Cleanup(d.Stop)
		return d
	}
	t.Fatalf("dnstest: dnsmasq did not start: %v", lastErr)
	return nil
}

// Stop kills dnsmasq and waits for it to exit. Safe twice.
func (d *Dnsmasq) Stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Kill()
	<-d.done
}

// Pid is the dnsmasq process's ID.
func (d *Dnsmasq) Pid() int { return d.cmd.Process.Pid }

// Output is what dnsmasq has logged.
func (d *Dnsmasq) Output() string { return d.out.String() }

func (d *Dnsmasq) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &mdns.Client{Timeout: 200 * time.Millisecond}
	q := new(mdns.Msg)
	q.SetQuestion("ready.invalid.", mdns.TypeA)
	for {
		select {
		case <-d.done:
			return errors.New("dnsmasq exited")
		default:
		}
		if _, _, err := c.Exchange(q, d.Addr.String()); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("dnsmasq did not answer within " + timeout.String())
		}
	}
}

// ListenPair listens on 127.0.0.1 over UDP and TCP on the same free port.
// The caller closes both.
func ListenPair(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var err error
	for try := 0; try < 20; try++ {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			break
		}
		// The UDP port's TCP twin may be taken (an outgoing connection's
		// ephemeral port): try another.
		var ln net.Listener
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatalf("dnstest: listen on a UDP and TCP port pair: %v", err)
	return nil, nil
}

func freePort(t testing.TB) uint16 {
	pc, ln := ListenPair(t)
	pc.Close()
	ln.Close()
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
