package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
	"github.com/overlayd/overlayd/node/nodetest" // the tour's kill -9: a stop without leaving
)

const demoDesc = `
The tour: start three overlayd nodes in this process, rootless (netstack
attachments, VXLAN and gossip over UDP on 127.0.0.1), create a network and a
service "web" with one HTTP backend on each node, then show requests to
http://web.tour.overlay/ through the nodes' SOCKS5 doors balanced across
the backends, the name resolved by the nodes' DNS, and traffic moving on to
the other two backends when one node is killed. Exits 0 only when all of it
worked. With --keep it stays up afterwards and prints commands to try
(curl, dig, overlayd status) until Ctrl-C.`

// The tour's fixed names. Everything else (ports, addresses) is picked
// at run time.
const (
	tourNetwork = "tour"
	tourCIDR    = "10.99.0.0/16"
	tourService = "web"
	tourPort    = 80
)

var tourNodes = []string{"alpha", "beta", "gamma"}

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	setUsage(fs, "demo [flags]", demoDesc)
	keep := fs.Bool("keep", false, "keep the nodes running after the tour, for you to try them, until Ctrl-C")
	requests := fs.Int("requests", 60, "`n` HTTP requests to the service before the kill (half as many after)")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if *requests < 6 || *requests > 10000 {
		return usagef("--requests %d is out of range (6-10000)", *requests)
	}
	return runTour(ctx, tourOptions{keep: *keep, requests: *requests}, stdout)
}

type tourOptions struct {
	keep     bool
	requests int
}

// tourNode is one node of the tour and what it shows.
type tourNode struct {
	name  string
	n     *node.Node
	addr  netip.Addr     // on the tour network
	socks string         // the SOCKS5 door's host address
	srv   *http.Server   // the web backend
	done  chan struct{}  // closed when srv.Serve returned
	dead  bool           // crashed by the tour
	vtep  netip.AddrPort // for the table
}

// tour holds the running nodes so that they are stopped whatever happens.
type tour struct {
	out   io.Writer
	nodes []*tourNode
	dir   string
	up    *demoUpstream
}

func (t *tour) close() {
	for _, tn := range t.nodes {
		if tn.srv != nil {
			tn.srv.Close()
			<-tn.done
		}
		if !tn.dead {
			nodetest.Crash(tn.n) // nobody is left to be told
		}
	}
	if t.up != nil {
		t.up.close()
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

// waitFor polls cond every 10 ms until it holds or d has passed; the
// error says what did not happen.
func waitFor(ctx context.Context, d time.Duration, what string, cond func() bool) (time.Duration, error) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			return 0, fmt.Errorf("demo: %s: not within %v", what, d)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("demo: %s: %w", what, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

func runTour(ctx context.Context, opts tourOptions, out io.Writer) (err error) {
	begin := time.Now()
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := &tour{out: out}
	defer t.close()
	if t.up, err = startDemoUpstream(); err != nil {
		return err
	}
	if opts.keep {
		if t.dir, err = os.MkdirTemp("", "overlayd-demo-"); err != nil {
			return fmt.Errorf("demo: a directory for the control socket: %w", err)
		}
	}
	if err := t.start(tctx); err != nil {
		return err
	}
	vip, err := t.setUp(tctx)
	if err != nil {
		return err
	}
	t.printNodes(vip)
	name := tourService + "." + tourNetwork + ".overlay"
	if err := t.showDNS(name, vip); err != nil {
		return err
	}

	url := "http://" + name + "/"
	alive := t.nodes
	fmt.Fprintf(out, "%d requests to %s, spread over the three SOCKS5 doors:\n", opts.requests, url)
	counts, err := t.requests(tctx, alive, url, opts.requests)
	if err != nil {
		return err
	}
	t.printCounts(counts)
	for _, tn := range t.nodes {
		if c := counts[tn.name]; c < opts.requests/6 {
			return fmt.Errorf("demo: the load was not balanced: backend %s served %d of %d requests", tn.name, c, opts.requests)
		}
	}
	fmt.Fprintf(out, "  balanced: every backend served its share (a node's door balances over the\n")
	fmt.Fprintf(out, "  other nodes' backends: the router does not hairpin to its own)\n\n")

	victim := t.nodes[2]
	backend := netip.AddrPortFrom(victim.addr, tourPort)
	fmt.Fprintf(out, "Killing %s (no goodbye: like kill -9)...\n", victim.name)
	victim.srv.Close()
	<-victim.done
	victim.srv = nil
	victim.dead = true
	crashed := time.Now()
	if err := nodetest.Crash(victim.n); err != nil {
		return fmt.Errorf("demo: crash %s: %w", victim.name, err)
	}
	alive = t.nodes[:2]
	_, err = waitFor(tctx, 15*time.Second, "the dead backend "+victim.name+" leaving the other nodes' tables", func() bool {
		for _, tn := range alive {
			if inBalancer(tn.n, backend) {
				return false
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %s declared dead and its backend %s withdrawn in %v\n", victim.name, backend, time.Since(crashed).Round(time.Millisecond))
	after := opts.requests / 2
	fmt.Fprintf(out, "%d requests to %s through the doors of %s and %s:\n", after, url, alive[0].name, alive[1].name)
	counts, err = t.requests(tctx, alive, url, after)
	if err != nil {
		return err
	}
	t.printCounts(counts)
	if counts[victim.name] != 0 {
		return fmt.Errorf("demo: %d requests still went to the dead backend %s", counts[victim.name], victim.name)
	}
	for _, tn := range alive {
		if counts[tn.name] == 0 {
			return fmt.Errorf("demo: traffic did not move on: backend %s served none of %d requests", tn.name, after)
		}
	}
	fmt.Fprintf(out, "  traffic moved on: none to %s, the other two served all %d\n\n", victim.name, after)
	fmt.Fprintf(out, "tour ok (%v)\n", time.Since(begin).Round(100*time.Millisecond))
	if !opts.keep {
		return nil
	}
	t.printTry(name)
	<-ctx.Done()
	fmt.Fprintf(out, "\nstopping\n")
	return nil
}

// start starts the three nodes, each joining the gossip through the first.
func (t *tour) start(ctx context.Context) error {
	for i, name := range tourNodes {
		c := config.Default()
		c.Name = name
		c.Mode = config.ModeNetstack
		c.Listen = netip.MustParseAddrPort("127.0.0.1:0")
		c.Control = ""
		if i == 0 && t.dir != "" {
			c.Control = filepath.Join(t.dir, "control.sock")
		}
		c.Gossip.Listen = netip.MustParseAddrPort("127.0.0.1:0")
		c.Gossip.Profile = "test"
		if i > 0 {
			seed, err := gossipAddr(ctx, t.nodes[0].n)
			if err != nil {
				return err
			}
			c.Gossip.Join = []string{seed}
		}
		c = withDemoDNS(c, t.up)
		c.DNS.TTL = time.Second
		c.Doors.SOCKS5 = "127.0.0.1:0"
		n, err := node.New(c)
		if err != nil {
			return fmt.Errorf("demo: node %s: %w", name, err)
		}
		// ctx bounds the start only: the nodes live until t.close.
		if err := n.Start(ctx); err != nil {
			nodetest.Crash(n)
			return fmt.Errorf("demo: start node %s: %w", name, err)
		}
		tn := &tourNode{name: name, n: n, vtep: n.VTEP()}
		t.nodes = append(t.nodes, tn)
		st, err := n.Status(ctx)
		if err != nil {
			return err
		}
		for _, d := range st.Doors {
			if d.Kind == "socks5" {
				tn.socks = d.Addr
			}
		}
		if tn.socks == "" {
			return fmt.Errorf("demo: node %s has no SOCKS5 door", name)
		}
	}
	return nil
}

// setUp creates the network and the service, joins every node, starts a
// backend on each and waits until every node balances over the others'
// backends and answers the service's name. It returns the service's VIP.
func (t *tour) setUp(ctx context.Context) (netip.Addr, error) {
	first := t.nodes[0].n
	if _, err := first.CreateNetwork(ctx, api.CreateNetwork{Name: tourNetwork, CIDR: tourCIDR}); err != nil {
		return netip.Addr{}, fmt.Errorf("demo: create network: %w", err)
	}
	for _, tn := range t.nodes {
		var last error
		if _, err := waitFor(ctx, 10*time.Second, tn.name+" joining network "+tourNetwork, func() bool {
			ni, err := tn.n.JoinNetwork(ctx, tourNetwork)
			if last = err; err != nil {
				return false
			}
			p, err := netip.ParsePrefix(ni.Addr)
			tn.addr, last = p.Addr(), err
			return err == nil
		}); err != nil {
			return netip.Addr{}, fmt.Errorf("%w (%v)", err, last)
		}
	}
	for _, tn := range t.nodes {
		ln, err := tn.n.Listen("tcp", netip.AddrPortFrom(tn.addr, tourPort).String())
		if err != nil {
			return netip.Addr{}, fmt.Errorf("demo: %s: listen: %w", tn.name, err)
		}
		name := tn.name
		tn.srv = &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, name+"\n")
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		tn.done = make(chan struct{})
		go func() { defer close(tn.done); tn.srv.Serve(ln) }()
	}
	svc, err := first.CreateService(ctx, api.CreateService{Name: tourService, Network: tourNetwork, Ports: []string{fmt.Sprintf("%d/tcp", tourPort)}})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("demo: create service: %w", err)
	}
	vip, err := netip.ParseAddr(svc.VIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("demo: service VIP %q: %w", svc.VIP, err)
	}
	for _, tn := range t.nodes {
		// A backend is added by its own node, once gossip brought it the service.
		if _, err := waitFor(ctx, 10*time.Second, "service "+tourService+" reaching "+tn.name, func() bool {
			_, err := tn.n.Service(ctx, tourNetwork, tourService)
			return err == nil
		}); err != nil {
			return netip.Addr{}, err
		}
		b := api.AddBackend{Service: tourService, Network: tourNetwork, Addr: netip.AddrPortFrom(tn.addr, tourPort).String(), Weight: 1}
		if _, err := tn.n.AddBackend(ctx, b); err != nil {
			return netip.Addr{}, fmt.Errorf("demo: %s: add backend: %w", tn.name, err)
		}
	}
	name := tourService + "." + tourNetwork + ".overlay"
	_, err = waitFor(ctx, 15*time.Second, "routes, backends and names reaching every node", func() bool {
		for _, tn := range t.nodes {
			rs, err := tn.n.Routes(ctx)
			if err != nil || len(rs.Routes) < len(t.nodes)-1 {
				return false
			}
			// A node balances its clients over the other nodes' backends.
			for _, o := range t.nodes {
				if o != tn && !inBalancer(tn.n, netip.AddrPortFrom(o.addr, tourPort)) {
					return false
				}
			}
			if a, err := askA(tn.n.DNSAddr().String(), name); err != nil || a != vip {
				return false
			}
		}
		return true
	})
	return vip, err
}

// gossipAddr is n's own gossip address, which the other nodes join.
func gossipAddr(ctx context.Context, n *node.Node) (string, error) {
	peers, err := n.Peers(ctx)
	if err != nil {
		return "", err
	}
	for _, p := range peers {
		if p.Self {
			return p.Addr, nil
		}
	}
	return "", errors.New("demo: the first node does not list itself among its peers")
}

// inBalancer reports whether n's balancer sends new flows of the tour's
// service to backend.
func inBalancer(n *node.Node, backend netip.AddrPort) bool {
	for _, s := range nodetest.Balancer(n).Stats().Services {
		if s.Name != tourService {
			continue
		}
		for _, b := range s.Backends {
			if b.Addr == backend && b.Weight > 0 {
				return true
			}
		}
	}
	return false
}

func (t *tour) printNodes(vip netip.Addr) {
	fmt.Fprintf(t.out, "overlayd demo: three rootless nodes in one process (netstack), VXLAN and gossip on 127.0.0.1\n\n")
	fmt.Fprintf(t.out, "  %-6s  %-13s  %-15s  %-15s  %-15s  %s\n", "NODE", "OVERLAY", "VTEP", "SOCKS5", "DNS", "BACKEND")
	for _, tn := range t.nodes {
		fmt.Fprintf(t.out, "  %-6s  %-13s  %-15s  %-15s  %-15s  %s\n", tn.name, tn.addr, tn.vtep, tn.socks, tn.n.DNSAddr(),
			netip.AddrPortFrom(tn.addr, tourPort))
	}
	fmt.Fprintf(t.out, "\n  network %s %s; service %s, VIP %s port %d/tcp, one backend on each node\n\n", tourNetwork, tourCIDR, tourService, vip, tourPort)
}

// showDNS resolves name on every node's DNS host listener.
func (t *tour) showDNS(name string, vip netip.Addr) error {
	for _, tn := range t.nodes {
		a, err := askA(tn.n.DNSAddr().String(), name)
		if err != nil {
			return fmt.Errorf("demo: %s's DNS could not resolve %s: %w", tn.name, name, err)
		}
		if a != vip {
			return fmt.Errorf("demo: %s's DNS resolved %s to %s, not the service's VIP %s", tn.name, name, a, vip)
		}
	}
	fmt.Fprintf(t.out, "dig @%s -p %d %s → %s (the VIP; the same on all three nodes)\n\n",
		t.nodes[0].n.DNSAddr().Addr(), t.nodes[0].n.DNSAddr().Port(), name, vip)
	return nil
}

// requests makes n GET requests to url, round-robin over the SOCKS5 doors
// of nodes, each on a new connection (a new flow), and counts the answers
// by the backend that served them.
func (t *tour) requests(ctx context.Context, nodes []*tourNode, url string, n int) (map[string]int, error) {
	var (
		mu       sync.Mutex
		counts   = map[string]int{}
		firstErr error
		wg       sync.WaitGroup
		sem      = make(chan struct{}, 4)
	)
	for k := range n {
		door := nodes[k%len(nodes)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			who, err := getThrough(ctx, door.socks, url)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("demo: GET %s through %s's SOCKS5 door %s: %w", url, door.name, door.socks, err)
				}
				return
			}
			counts[who]++
		})
	}
	wg.Wait()
	return counts, firstErr
}

// getThrough fetches url through the SOCKS5 proxy at door, the name
// resolved by the proxy, and returns the body without its newline.
func getThrough(ctx context.Context, door, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return socks5Dial(ctx, door, addr)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// socks5Dial connects to addr (HOST:PORT, the host sent as a name, as
// curl --socks5-hostname does) through the SOCKS5 proxy at proxy (RFC
// 1928, no authentication).
func socks5Dial(ctx context.Context, proxy, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var p uint16
	if _, err := fmt.Sscan(port, &p); err != nil || len(host) > 255 {
		return nil, fmt.Errorf("socks5: bad address %q", addr)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req := []byte{5, 1, 0} // version 5, one method: no authentication
	req = append(req, 5, 1, 0, 3, byte(len(host)))
	req = append(append(req, host...), byte(p>>8), byte(p))
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socks5: %w", err)
	}
	// Method choice (2 bytes), then the reply's head (4) and, for an IPv4
	// bound address, 4+2 more; an IPv6 one has 16+2.
	var rep [10]byte
	if _, err := io.ReadFull(conn, rep[:6]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socks5: %w", err)
	}
	if rep[0] != 5 || rep[1] != 0 {
		conn.Close()
		return nil, fmt.Errorf("socks5: the proxy refused no-authentication")
	}
	if rep[3] != 0 {
		conn.Close()
		return nil, fmt.Errorf("socks5: CONNECT %s: reply code %d", addr, rep[3])
	}
	rest := 4 + 2
	switch rep[5] {
	case 4:
		rest = 16 + 2
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(conn, l[:]); err != nil {
			conn.Close()
			return nil, fmt.Errorf("socks5: %w", err)
		}
		rest = int(l[0]) + 2
	}
	if _, err := io.CopyN(io.Discard, conn, int64(rest)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socks5: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// printCounts draws the requests per backend as a bar each.
func (t *tour) printCounts(counts map[string]int) {
	for _, tn := range t.nodes {
		c := counts[tn.name]
		bar := strings.Repeat("#", c)
		if tn.dead {
			bar = "(dead)"
		}
		fmt.Fprintf(t.out, "  %-6s %4d  %s\n", tn.name, c, bar)
	}
	var others []string
	for k := range counts {
		if !slices.Contains(tourNodes, k) {
			others = append(others, k)
		}
	}
	slices.Sort(others)
	for _, k := range others {
		fmt.Fprintf(t.out, "  %-6s %4d  (an unexpected answer)\n", k, counts[k])
	}
}

// invokedAs is how to run this program again, from its argv[0]: the path
// the user typed ("./bin/overlayd" after make demo), "go run
// ./cmd/overlayd" for a binary go run built, "overlayd" for anything else
// (a test binary).
func invokedAs(argv0 string) string {
	switch {
	case strings.Contains(argv0, "go-build"):
		return "go run ./cmd/overlayd"
	case filepath.Base(argv0) == "overlayd":
		return argv0
	}
	return "overlayd"
}

// printTry tells the user how to reach the running tour.
func (t *tour) printTry(name string) {
	a := t.nodes[0]
	fmt.Fprintf(t.out, "\nThe nodes keep running (%s and %s; %s is dead). Try:\n\n", a.name, t.nodes[1].name, t.nodes[2].name)
	fmt.Fprintf(t.out, "  curl --socks5-hostname %s http://%s/\n", a.socks, name)
	fmt.Fprintf(t.out, "  dig @%s -p %d %s\n", a.n.DNSAddr().Addr(), a.n.DNSAddr().Port(), name)
	self := invokedAs(os.Args[0])
	fmt.Fprintf(t.out, "  %s status --control %s\n", self, filepath.Join(t.dir, "control.sock"))
	fmt.Fprintf(t.out, "  %s service list --control %s\n", self, filepath.Join(t.dir, "control.sock"))
	fmt.Fprintf(t.out, "\n(A node balances its own clients over the other nodes' backends, so curl\n")
	fmt.Fprintf(t.out, "through %s's door is answered by %s.) Ctrl-C stops.\n", a.name, t.nodes[1].name)
}
