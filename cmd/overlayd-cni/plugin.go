package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"

	cnins "github.com/containernetworking/cni/pkg/ns"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlayd/overlayd/api"
)

// Time bounds on the daemon: a daemon that is down answers at once (the
// socket is missing or refuses); one that hangs costs at most these.
const (
	dialTimeout = 2 * time.Second
	// attachTimeout bounds ADD: the daemon makes the device in the
	// namespace, leases the address and announces it.
	attachTimeout = 20 * time.Second
	// requestTimeout bounds DEL, CHECK, STATUS and GC, each a few
	// requests the daemon answers from memory.
	requestTimeout = 10 * time.Second
)

// plugin carries out the CNI commands. Its fields are what differs
// between the binary and its tests.
type plugin struct {
	stdout io.Writer // where ADD's result goes
	// checkLink says whether the interface ifname in the namespace at
	// netns is up with the addresses addrs (CHECK).
	checkLink func(netns, ifname string, addrs []netip.Prefix) error
	// netnsGone says whether the namespace at path is gone (DEL and GC
	// with the daemon down).
	netnsGone func(path string) bool
	// attachTimeout bounds ADD, requestTimeout the other commands.
	attachTimeout, requestTimeout time.Duration
}

// funcs are the plugin's commands for skel.
func (p *plugin) funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.add, Del: p.del, Check: p.check, Status: p.status, GC: p.gc}
}

// connect returns a client of the daemon after checking that something
// listens on its socket, so that a daemon that is down is told apart from
// one that refuses a request: down is then the sentence saying so and
// what to do, c nil.
func connect(ctx context.Context, conf *netConf) (c *api.Client, down string) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "unix", conf.Control)
	if err != nil {
		return nil, fmt.Sprintf("no overlayd answers at %s (%v); start it with 'overlayd run --gossip ...', or set \"control\" in the network configuration to its socket", conf.Control, unwrapOp(err))
	}
	conn.Close()
	return api.NewClient(conf.Control), ""
}

// downErr is the CNI error of a daemon that is down: try again later.
func downErr(down string) *types.Error {
	return types.NewError(types.ErrTryAgainLater, "overlayd-cni: "+down, "")
}

// unwrapOp keeps of a dial's error what went wrong ("no such file or
// directory"), not the "dial unix PATH:" the caller's sentence names.
func unwrapOp(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// daemonErr makes a CNI error of the daemon's answer to what (a phrase:
// "attach web to network blue"): the daemon's refusal of bad input or of
// a missing or conflicting thing is code 7 (the configuration or the
// request is wrong), its being unavailable for now 11, anything else 999.
// A request that got no answer in time is 11.
func daemonErr(err error, what string) *types.Error {
	var re *api.RemoteError
	if errors.As(err, &re) {
		code := types.ErrInternal
		switch re.Code {
		case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict:
			code = types.ErrInvalidNetworkConfig
		case http.StatusServiceUnavailable:
			code = types.ErrTryAgainLater
		}
		return types.NewError(code, fmt.Sprintf("overlayd-cni: %s: %s", what, re.Msg), "")
	}
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("overlayd-cni: %s: %s", what, reason(err)), "")
}

// reason says in a phrase why a request to the daemon failed: its own
// sentence when it answered, else what happened to the request.
func reason(err error) string {
	var re *api.RemoteError
	switch {
	case errors.As(err, &re):
		return re.Msg
	case errors.Is(err, context.DeadlineExceeded):
		return "overlayd did not answer in time; try again"
	}
	return err.Error()
}

// notFound reports whether the daemon answered that the thing asked for
// does not exist.
func notFound(err error) bool {
	var re *api.RemoteError
	return errors.As(err, &re) && re.Code == http.StatusNotFound
}

// add attaches the container's namespace and prints the result.
func (p *plugin) add(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ca, err := parseArgs(args.Args)
	if err != nil {
		return err
	}
	ips, err := conf.requestedIPs(ca)
	if err != nil {
		return err
	}
	// The plugin's own namespace (the host's) is never a container's;
	// skel says so too, but only after ADD has attached it.
	if o := strings.ToLower(args.NetnsOverride); o != "1" && o != "true" {
		if same, e := cnins.CheckNetNS(args.Netns); e != nil {
			return e
		} else if same {
			return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("overlayd-cni: CNI_NETNS %s is the plugin's own network namespace, not a container's", args.Netns), "")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.attachTimeout)
	defer cancel()
	c, down := connect(ctx, conf)
	if down != "" {
		return downErr(down)
	}
	st, err := openStore(conf.DataDir, conf.Name)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, found, err := st.get(args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	if !found {
		name, err := pickName(ctx, c, endpointName(string(ca.K8S_POD_NAME), args.ContainerID), args)
		if err != nil {
			return err
		}
		rec = record{ContainerID: args.ContainerID, IfName: args.IfName, Network: conf.Network, Name: name, Netns: args.Netns}
		// The record comes first: an attach whose answer is lost (a
		// timeout) may still have happened, and the DEL the runtime
		// sends after a failed ADD must find what to release.
		if err := st.put(rec); err != nil {
			return err
		}
	}
	e, err := c.Attach(ctx, api.Attach{
		Name:         rec.Name,
		Network:      conf.Network,
		Netns:        args.Netns,
		IPs:          ips,
		IfName:       args.IfName,
		DefaultRoute: conf.DefaultRoute,
	})
	if err != nil {
		var re *api.RemoteError
		if !found && errors.As(err, &re) {
			st.remove(rec) // refused: nothing was made
		}
		return daemonErr(err, fmt.Sprintf("attach %s to network %s", rec.Name, conf.Network))
	}
	r, err := result(e, args.Netns, args.IfName)
	if err != nil {
		return err
	}
	out, err := r.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "overlayd-cni: "+err.Error(), "")
	}
	return out.PrintTo(p.stdout)
}

// pickName returns the endpoint's name: base, unless another namespace
// (or another interface of this one) on this node holds it, then its
// fallback. A name the daemon already gives this very namespace and
// interface is this attachment's (an ADD repeated after its record was
// lost).
func pickName(ctx context.Context, c *api.Client, base string, args *skel.CmdArgs) (string, error) {
	names := []string{base, fallbackName(base, args.ContainerID, args.IfName)}
	for _, name := range names {
		e, err := c.Endpoint(ctx, name)
		switch {
		case notFound(err):
			return name, nil
		case err != nil:
			return "", daemonErr(err, "look up endpoint "+name)
		case e.Netns == args.Netns && e.IfName == args.IfName:
			return name, nil
		}
	}
	return "", types.NewError(types.ErrInternal, fmt.Sprintf("overlayd-cni: endpoint names %s and %s are both held by other namespaces on this node; detach one ('overlayd detach NAME') or give the pod another name", names[0], names[1]), "")
}

// del releases the endpoint ADD made for the container and interface;
// one it never made, or already released, is no error.
func (p *plugin) del(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	st, err := openStore(conf.DataDir, conf.Name)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, found, err := st.get(args.ContainerID, args.IfName)
	if err != nil || !found {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.requestTimeout)
	defer cancel()
	if err := p.release(ctx, conf, rec); err != nil {
		return err
	}
	return st.remove(rec)
}

// release detaches the endpoint of rec, if it is still the one rec made
// (its name now another namespace's is left alone). With the daemon down
// it succeeds only when the namespace is gone: the daemon releases such
// an endpoint itself when it comes back.
func (p *plugin) release(ctx context.Context, conf *netConf, rec record) error {
	what := fmt.Sprintf("release endpoint %s of container %s", rec.Name, rec.ContainerID)
	c, down := connect(ctx, conf)
	if down != "" {
		if p.netnsGone(rec.Netns) {
			return nil
		}
		return downErr(fmt.Sprintf("%s; endpoint %s in %s keeps its address until overlayd releases it: start overlayd and DEL again", down, rec.Name, rec.Netns))
	}
	e, err := c.Endpoint(ctx, rec.Name)
	switch {
	case notFound(err):
		return nil
	case err != nil:
		return daemonErr(err, what)
	case e.Netns != rec.Netns:
		return nil
	}
	if err := c.Detach(ctx, rec.Name); err != nil && !notFound(err) {
		return daemonErr(err, what)
	}
	return nil
}

// check says whether the attachment is as ADD left it: the daemon has the
// endpoint, in this namespace, with the address of the previous result,
// and the interface in the namespace is up with that address.
func (p *plugin) check(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "overlayd-cni: the previous result (prevResult) is not a CNI result: "+err.Error(), "")
	}
	st, err := openStore(conf.DataDir, conf.Name)
	if err != nil {
		return err
	}
	rec, found, err := st.get(args.ContainerID, args.IfName)
	st.Close()
	if err != nil {
		return err
	}
	if !found {
		return checkErr("no attachment of container %s on interface %s is recorded for network configuration %s; ADD it first", args.ContainerID, args.IfName, conf.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.requestTimeout)
	defer cancel()
	c, down := connect(ctx, conf)
	if down != "" {
		return downErr(down)
	}
	e, err := c.Endpoint(ctx, rec.Name)
	switch {
	case notFound(err):
		return checkErr("endpoint %s of container %s is no longer attached in overlayd (detached, or its namespace went away); DEL and ADD it again", rec.Name, args.ContainerID)
	case err != nil:
		return daemonErr(err, "look up endpoint "+rec.Name)
	case e.Netns != args.Netns:
		return checkErr("endpoint %s is attached to namespace %s, not %s", rec.Name, e.Netns, args.Netns)
	}
	var addrs []netip.Prefix
	for _, s := range orOne(e.Addrs, e.Addr) {
		a, err := netip.ParsePrefix(s)
		if err != nil {
			return checkErr("overlayd answered the address %q for endpoint %s, not an address with its prefix length", s, rec.Name)
		}
		addrs = append(addrs, a)
	}
	if conf.PrevResult != nil {
		if err := matchPrev(conf.PrevResult, addrs, args); err != nil {
			return err
		}
	}
	if err := p.checkLink(args.Netns, args.IfName, addrs); err != nil {
		return checkErr("%v", err)
	}
	return nil
}

// matchPrev checks that the previous result gave the interface in this
// sandbox the endpoint's addresses (each of them, one per family).
func matchPrev(prev types.Result, addrs []netip.Prefix, args *skel.CmdArgs) error {
	r, err := types100.NewResultFromResult(prev)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "overlayd-cni: the previous result (prevResult) is not a CNI result: "+err.Error(), "")
	}
	var on []string
	have := map[netip.Addr]bool{}
	for _, ip := range r.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(r.Interfaces) {
			continue
		}
		i := r.Interfaces[*ip.Interface]
		if i.Name != args.IfName || i.Sandbox != args.Netns {
			continue
		}
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
			have[a.Unmap()] = true
		}
		on = append(on, ip.Address.String())
	}
	if len(on) == 0 {
		return checkErr("the previous result has no address on %s in %s", args.IfName, args.Netns)
	}
	for _, a := range addrs {
		if !have[a.Addr()] {
			return checkErr("the previous result gave %s in %s the address %s; overlayd has %s for it", args.IfName, args.Netns, strings.Join(on, ","), a)
		}
	}
	return nil
}

// orOne is xs, or {one} when xs is empty (an answer from a daemon
// without IPv6).
func orOne(xs []string, one string) []string {
	if len(xs) == 0 {
		return []string{one}
	}
	return xs
}

func checkErr(format string, args ...any) *types.Error {
	return types.NewError(types.ErrInternal, "overlayd-cni: "+fmt.Sprintf(format, args...), "")
}

// status says whether ADD can be served: the daemon answers and this node
// has joined the network. Anything else is code 50 (plugin not
// available), saying what to do.
func (p *plugin) status(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.requestTimeout)
	defer cancel()
	unavailable := func(format string, args ...any) error {
		return types.NewError(types.ErrPluginNotAvailable, "overlayd-cni: "+fmt.Sprintf(format, args...), "")
	}
	c, down := connect(ctx, conf)
	if down != "" {
		return unavailable("%s", down)
	}
	nets, err := c.Networks(ctx)
	if err != nil {
		return unavailable("overlayd at %s did not list its networks: %s", conf.Control, reason(err))
	}
	for _, n := range nets {
		if n.Name != conf.Network {
			continue
		}
		if !n.Joined {
			return unavailable("this node has not joined network %s; join it with 'overlayd network join %s'", conf.Network, conf.Network)
		}
		return nil
	}
	return unavailable("the cluster has no network %s; create it with 'overlayd network create %s CIDR'", conf.Network, conf.Network)
}

// gc releases the endpoints this plugin made for the network
// configuration whose container and interface are not among the runtime's
// valid attachments.
func (p *plugin) gc(args *skel.CmdArgs) error {
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	st, err := openStore(conf.DataDir, conf.Name)
	if err != nil {
		return err
	}
	defer st.Close()
	recs, err := st.list()
	if err != nil {
		return err
	}
	valid := map[types.GCAttachment]bool{}
	for _, a := range conf.ValidAttachments {
		valid[a] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.requestTimeout)
	defer cancel()
	var first error
	for _, rec := range recs {
		if valid[types.GCAttachment{ContainerID: rec.ContainerID, IfName: rec.IfName}] {
			continue
		}
		err := p.release(ctx, conf, rec)
		if err == nil {
			err = st.remove(rec)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
