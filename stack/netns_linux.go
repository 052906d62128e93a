package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/overlayd/overlayd/internal/fault"
)

// A device in another namespace is made in three steps, so that a helper
// process can later take the first two for a namespace this process may
// not enter (a rootless container's, owned by a user namespace: a
// multithreaded process may not setns into one):
//
//  1. openTUNIn: on a thread inside the namespace, open /dev/net/tun and
//     attach the descriptor to the device (create it, or re-attach to a
//     persistent one). Nothing in it but the descriptor outlives the step.
//  2. configureLinkAt: MTU, addresses, up, routes, through a netlink
//     handle in the namespace (netlink.NewHandleAt here; a helper already
//     inside would use netlink.NewHandle).
//  3. newNetnsTUN: wrap the descriptor as a Device and, with Persist, mark
//     the device persistent. It needs only the descriptor, not the
//     namespace: a helper's descriptor, passed back over SCM_RIGHTS,
//     goes straight here.

// OpenNetnsTUN creates a TUN device inside the network namespace at
// opts.Netns, configures it there (MTU, addresses, link up, a route to
// each of opts.Routes, optionally the default route) and returns it, its
// descriptor held by this process. On any error nothing is left behind.
//
// A path that does not exist, is not a network namespace, or may not be
// entered gets one sentence saying so; the errors wrap fault.ErrNotFound,
// fault.ErrInvalid and ErrPermission respectively. A device of that name
// already in the namespace is refused (fault.ErrConflict).
func OpenNetnsTUN(opts NetnsTUNOptions) (*NetnsTUN, error) {
	opts, routes, err := opts.prepare()
	if err != nil {
		return nil, err
	}
	ns, err := openNetns(opts.Netns)
	if err != nil {
		return nil, err
	}
	fd, err := openTUNIn(ns, opts.Netns, tunRequest{name: opts.Name})
	if err != nil {
		ns.Close()
		return nil, err
	}
	// Until newNetnsTUN has it, closing fd removes the device: it is not
	// persistent yet.
	if err := configureIn(ns, opts.Netns, opts.Name, opts.MTU, opts.Addrs, routes); err != nil {
		unix.Close(fd)
		ns.Close()
		return nil, fmt.Errorf("stack: configure TUN %q in network namespace %q: %w", opts.Name, opts.Netns, err)
	}
	t, err := newNetnsTUN(fd, ns, opts.Netns, opts.MTU, opts.Persist, opts.Logger)
	if err != nil {
		return nil, err
	}
	t.log.Info("netns tun up", zap.Stringers("addrs", opts.Addrs), zap.Stringers("routes", routes),
		zap.Int("mtu", opts.MTU), zap.Bool("persist", opts.Persist), zap.Int("batch", t.BatchSize()))
	return t, nil
}

// prepare fills in opts' defaults and checks them; it returns the
// routes to point at the device (the default routes included).
func (opts NetnsTUNOptions) prepare() (NetnsTUNOptions, []netip.Prefix, error) {
	if opts.Name == "" {
		opts.Name = defaultNetnsTUNName
	}
	if opts.MTU == 0 {
		opts.MTU = defaultMTU
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := checkIfName(opts.Name); err != nil {
		return opts, nil, err
	}
	routes := append([]netip.Prefix(nil), opts.Routes...)
	for _, p := range append(append([]netip.Prefix(nil), opts.Addrs...), opts.Routes...) {
		if !p.IsValid() {
			return opts, nil, fault.Invalid("stack: TUN %q in network namespace %q: invalid prefix %v", opts.Name, opts.Netns, p)
		}
	}
	if opts.DefaultRoute {
		routes = append(routes, defaultRoutes(opts.Addrs)...)
	}
	return opts, routes, nil
}

// AdoptNetnsTUN re-opens the persistent TUN device name (default "eth0")
// in the network namespace at path, as OpenNetnsTUN with Persist left it, without
// touching its addresses, routes or MTU: the namespace's sockets do not
// notice that the daemon restarted. It stays persistent. A missing device
// wraps fault.ErrNotFound (and nothing is created); one held by another
// process, fault.ErrConflict.
func AdoptNetnsTUN(path, name string, log *zap.Logger) (*NetnsTUN, error) {
	if log == nil {
		log = zap.NewNop()
	}
	name, ns, err := openDevNetns(path, name)
	if err != nil {
		return nil, err
	}
	fd, err := openTUNIn(ns, path, tunRequest{name: name, adopt: true})
	if err != nil {
		ns.Close()
		return nil, err
	}
	mtu, err := linkMTUIn(ns, name)
	if err != nil {
		unix.Close(fd) // the device stays: it is persistent
		ns.Close()
		return nil, fmt.Errorf("stack: adopt TUN %q in network namespace %q: %w", name, path, err)
	}
	t, err := newNetnsTUN(fd, ns, path, mtu, true, log)
	if err != nil {
		return nil, err
	}
	t.log.Info("netns tun adopted", zap.Int("mtu", mtu), zap.Int("batch", t.BatchSize()))
	return t, nil
}

// DeleteNetnsTUN removes the persistent TUN device name (default "eth0")
// in the network namespace at path, which no process may hold (close its Device first,
// or use its Delete). A missing device wraps fault.ErrNotFound.
func DeleteNetnsTUN(path, name string) error {
	name, ns, err := openDevNetns(path, name)
	if err != nil {
		return err
	}
	defer ns.Close()
	fd, err := openTUNIn(ns, path, tunRequest{name: name, adopt: true})
	if err != nil {
		return err
	}
	err = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0)
	// With persistence off, closing the last descriptor removes it.
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("stack: delete TUN %q in network namespace %q: %w", name, path, err)
	}
	return nil
}

// Delete removes the device, persistent or not, and closes t.
func (t *NetnsTUN) Delete() error {
	var perr error
	if t.persist {
		perr = t.setPersist(false)
	}
	err := t.Close()
	if perr != nil {
		return fmt.Errorf("stack: delete TUN %q in network namespace %q: %w", t.name, t.netns, perr)
	}
	return err
}

// Gone reports whether the namespace has gone away: nothing is at its path
// any more (the container exited, its process /proc/PID is gone, the bind
// mount was removed), or something else is. It is one stat; an endpoint
// polls it to withdraw itself within seconds. The device keeps the
// namespace itself alive until Close.
func (t *NetnsTUN) Gone() bool {
	var at, held unix.Stat_t
	if err := unix.Stat(t.netns, &at); err != nil {
		return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOTDIR)
	}
	if err := unix.Fstat(int(t.ns.Fd()), &held); err != nil {
		return false // closed: nothing to say about the path
	}
	return at.Dev != held.Dev || at.Ino != held.Ino
}

func (t *NetnsTUN) setPersist(on bool) error {
	v := 0
	if on {
		v = 1
	}
	sc, err := t.dev.File().SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := sc.Control(func(fd uintptr) { ierr = unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, v) }); err != nil {
		return err
	}
	return ierr
}

// newNetnsTUN is step 3: it wraps fd, a TUN descriptor attached to the
// device in ns, as a Device and makes the device persistent if asked. It
// takes fd and ns; on error both are closed (the device goes unless it
// was persistent before).
func newNetnsTUN(fd int, ns *os.File, path string, mtu int, persist bool, log *zap.Logger) (*NetnsTUN, error) {
	// wireguard owns fd once it has made a file of it, which is after
	// its nonblock; do that first, so that an error there is ours to
	// close. (A later error leaves fd to the file's finalizer: the device
	// goes when it is collected.)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		ns.Close()
		return nil, fmt.Errorf("stack: open TUN in network namespace %q: %w", path, err)
	}
	dev, name, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("stack: open TUN in network namespace %q: %w", path, err)
	}
	t := &NetnsTUN{
		dev: dev, name: name, mtu: mtu, netns: path, ns: ns, persist: persist,
		log: log.Named("tun").With(zap.String("netns", path), zap.String("device", name)),
	}
	if persist {
		if err := t.setPersist(true); err != nil {
			t.persist = false
			t.Close()
			return nil, fmt.Errorf("stack: make TUN %q in network namespace %q persistent: %w", name, path, err)
		}
	}
	return t, nil
}

// openDevNetns checks the device name (default "eth0") of an adopt or a
// delete and opens the namespace at path for it.
func openDevNetns(path, name string) (string, *os.File, error) {
	if name == "" {
		name = defaultNetnsTUNName
	}
	if err := checkIfName(name); err != nil {
		return "", nil, err
	}
	ns, err := openNetns(path)
	return name, ns, err
}

// openNetns opens and checks the namespace file at path.
func openNetns(path string) (*os.File, error) {
	const give = "give a path like /var/run/netns/NAME or /proc/PID/ns/net"
	if path == "" {
		return nil, fault.Invalid("stack: no network namespace given; %s", give)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fault.NotFound("stack: network namespace %q does not exist; %s", path, give)
	case errors.Is(err, os.ErrPermission):
		return nil, nsPermError("open", path, err)
	case err != nil:
		return nil, fmt.Errorf("stack: open network namespace %q: %w", path, err)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		f.Close()
		return nil, fmt.Errorf("stack: open network namespace %q: %w", path, err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fault.Invalid("stack: %q is not a network namespace (not a namespace file); %s", path, give)
	}
	kind, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stack: open network namespace %q: namespace type: %w", path, err)
	}
	if kind != unix.CLONE_NEWNET {
		f.Close()
		return nil, fault.Invalid("stack: %q is %s namespace, not a network namespace; %s", path, nsKind(kind), give)
	}
	return f, nil
}

func nsKind(kind int) string {
	switch kind {
	case unix.CLONE_NEWNS:
		return "a mount"
	case unix.CLONE_NEWUTS:
		return "a uts"
	case unix.CLONE_NEWIPC:
		return "an ipc"
	case unix.CLONE_NEWUSER:
		return "a user"
	case unix.CLONE_NEWPID:
		return "a pid"
	case unix.CLONE_NEWCGROUP:
		return "a cgroup"
	case unix.CLONE_NEWTIME:
		return "a time"
	}
	return "another kind of"
}

// permError is a missing privilege: one sentence that says what to do,
// wrapping ErrPermission and the system's errors.
type permError struct {
	msg    string
	causes []error
}

func (e *permError) Error() string   { return e.msg }
func (e *permError) Unwrap() []error { return append([]error{ErrPermission}, e.causes...) }

// nsPermError is a namespace this process may not op.
func nsPermError(op, path string, cause error) error {
	return &permError{fmt.Sprintf("stack: %s network namespace %q: operation not permitted; run as root (CAP_SYS_ADMIN and CAP_NET_ADMIN)", op, path), []error{cause}}
}

// tunRequest says what openTUNIn asks the kernel for.
type tunRequest struct {
	name string
	// adopt attaches to an existing persistent TUN; otherwise a new one
	// is created, never an existing device taken over.
	adopt bool
}

// openTUNIn is step 1: on a thread inside ns it opens /dev/net/tun and
// attaches the descriptor to the device req asks for, which it returns.
func openTUNIn(ns *os.File, path string, req tunRequest) (int, error) {
	fd := -1
	err := inNetns(ns, path, func() error {
		var err error
		fd, err = attachTUN(req)
		return err
	})
	if err != nil {
		return -1, tunError(path, req, err)
	}
	return fd, nil
}

// errNoPersistentTUN: adopting found no persistent TUN of that name.
var errNoPersistentTUN = errors.New("no persistent TUN")

// attachTUN runs in the target namespace (the calling thread's).
func attachTUN(req tunRequest) (int, error) {
	if req.adopt {
		// Look first: TUNSETIFF would create a missing device.
		if _, err := netlink.LinkByName(req.name); err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return -1, errNoPersistentTUN
			}
			return -1, err
		}
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	ifr, err := unix.NewIfreq(req.name)
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	// IFF_VNET_HDR as wireguard's CreateTUN: offloads and batches.
	flags := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if !req.adopt {
		flags |= unix.IFF_TUN_EXCL
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if req.adopt {
		// The device may have gone since the look: then TUNSETIFF made a
		// new one, which closing removes.
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil || ifr.Uint16()&unix.IFF_PERSIST == 0 {
			unix.Close(fd)
			return -1, errNoPersistentTUN
		}
	}
	return fd, nil
}

// tunError turns an error from openTUNIn's steps into one sentence.
func tunError(path string, req tunRequest, err error) error {
	var perm *permError
	switch {
	case errors.As(err, &perm):
		return err
	case errors.Is(err, errNoPersistentTUN):
		return fault.NotFound("stack: no persistent TUN %q in network namespace %q", req.name, path)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return nsPermError(fmt.Sprintf("create TUN %q in", req.name), path, err)
	case errors.Is(err, unix.EBUSY) && req.adopt:
		return fault.Conflict("stack: TUN %q in network namespace %q is held by another process; stop it first", req.name, path)
	case errors.Is(err, unix.EBUSY):
		return fault.Conflict("stack: network namespace %q has a device %q already; pick another name", path, req.name)
	case errors.Is(err, unix.EINVAL) && req.adopt:
		return fault.Invalid("stack: %q in network namespace %q is not a TUN device", req.name, path)
	}
	return fmt.Errorf("stack: open TUN %q in network namespace %q: %w", req.name, path, err)
}

// inNetns runs f on a fresh locked OS thread moved into ns, then moves
// the thread back. If it cannot move back, the thread stays locked and
// the runtime ends it with its goroutine: no other goroutine ever runs in
// the wrong namespace.
//
// The descriptor of the thread's own namespace is closed before the
// result is sent, so that nothing of the call is left open once it
// returns.
func inNetns(ns *os.File, path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- func() error {
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				runtime.UnlockOSThread()
				return fmt.Errorf("this thread's network namespace: %w", err)
			}
			defer orig.Close()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				if errors.Is(err, unix.EPERM) {
					return nsPermError("enter", path, err)
				}
				return fmt.Errorf("enter: %w", err)
			}
			ferr := f()
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				return errors.Join(ferr, fmt.Errorf("leave: %w", err)) // thread stays locked, discarded
			}
			runtime.UnlockOSThread()
			return ferr
		}()
	}()
	return <-errc
}

// configureIn is step 2 from this process: configureLinkAt through a
// netlink handle in ns.
func configureIn(ns *os.File, path, name string, mtu int, addrs, routes []netip.Prefix) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(int(ns.Fd())))
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	enable6 := func() error { return inNetns(ns, path, func() error { return enableIPv6(name) }) }
	return configureLinkAt(h, enable6, name, mtu, addrs, routes)
}

// linkMTUIn reads the MTU of the interface name in ns.
func linkMTUIn(ns *os.File, name string) (int, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(int(ns.Fd())))
	if err != nil {
		return 0, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find link: %w", err)
	}
	return link.Attrs().MTU, nil
}

// defaultRoutes are the default routes of the address families in addrs
// (IPv4 when there are none).
func defaultRoutes(addrs []netip.Prefix) []netip.Prefix {
	var v4, v6 bool
	for _, p := range addrs {
		if p.Addr().Unmap().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	var out []netip.Prefix
	if v4 || !v6 {
		out = append(out, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	}
	if v6 {
		out = append(out, netip.PrefixFrom(netip.IPv6Unspecified(), 0))
	}
	return out
}

// checkIfName refuses a name the kernel would refuse, in one sentence.
func checkIfName(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n") {
		return fault.Invalid("stack: %q is not a valid interface name; use 1 to %d letters, digits, '-' or '_'", name, unix.IFNAMSIZ-1)
	}
	return nil
}
