package gossip

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// netTransport is memberlist's NetTransport whose outgoing dials end when
// it shuts down. memberlist dials with a plain timeout (TCPTimeout, 10 s at
// the default profile), and Shutdown does not stop a dial in progress: a
// join, a rejoin or a bulk sync towards a host that does not answer kept
// Close waiting that long. memberlist.Shutdown calls Shutdown, which
// cancels the dials first, then closes the sockets.
type netTransport struct {
	*memberlist.NetTransport
	ctx    context.Context
	cancel context.CancelFunc
}

var _ memberlist.NodeAwareTransport = (*netTransport)(nil)

// DialTimeout implements memberlist.Transport.
func (t *netTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *netTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(t.ctx, "tcp", a.Addr)
}

// Shutdown implements memberlist.Transport: it ends the dials in progress
// and closes the sockets, returning when the listeners have stopped.
func (t *netTransport) Shutdown() error {
	t.cancel()
	return t.NetTransport.Shutdown()
}

// listen opens the sockets of the default transport, as memberlist.Create
// would (a few tries when the port is picked by the kernel, which may
// give a port whose TCP or UDP twin is taken), and makes it the
// memberlist transport. It does nothing when Options.Transport is set.
// The caller shuts the transport down if memberlist.Create fails.
func (c *config) listen() error {
	if c.ml.Transport != nil {
		return nil
	}
	nc := &memberlist.NetTransportConfig{
		BindAddrs: []string{c.ml.BindAddr},
		BindPort:  c.ml.BindPort,
		Logger:    c.ml.Logger,
	}
	tries := 1
	if c.ml.BindPort == 0 {
		tries = 10
	}
	var nt *memberlist.NetTransport
	var err error
	for range tries {
		if nt, err = memberlist.NewNetTransport(nc); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return fmt.Errorf("gossip: listen on %s: address already in use (another overlayd holds it, or one still exiting; choose another with --gossip)",
				net.JoinHostPort(c.ml.BindAddr, strconv.Itoa(c.ml.BindPort)))
		}
		return fmt.Errorf("gossip: listen on %s: %w", net.JoinHostPort(c.ml.BindAddr, strconv.Itoa(c.ml.BindPort)), err)
	}
	if c.ml.BindPort == 0 {
		c.ml.BindPort = nt.GetAutoBindPort()
		c.ml.AdvertisePort = c.ml.BindPort
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.ml.Transport = &netTransport{NetTransport: nt, ctx: ctx, cancel: cancel}
	return nil
}

// unlisten shuts down the transport listen opened, after a failed
// memberlist.Create.
func (c *config) unlisten() {
	if t, ok := c.ml.Transport.(*netTransport); ok {
		t.Shutdown()
	}
}
