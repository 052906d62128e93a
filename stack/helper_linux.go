package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/internal/fault"
)

// The helper's inherited descriptors (exec.Cmd.ExtraFiles, from 3): nsenter
// joins the first two and runs the third; the helper talks on the fourth.
const (
	helperUsernsFD = 3
	helperNetnsFD  = 4
	helperExeFD    = 5
	helperSockFD   = 6
)

// helperArgs are the helper's own arguments, after NetnsHelper.Args.
var helperArgs = []string{fmt.Sprintf("--socket-fd=%d", helperSockFD)}

// Open is OpenNetnsTUN through the helper: it creates the TUN device in
// the network namespace at opts.Netns, configured as OpenNetnsTUN does,
// and returns it, its descriptor held by this process.
func (h *NetnsHelper) Open(opts NetnsTUNOptions) (*NetnsTUN, error) {
	opts, routes, err := opts.prepare()
	if err != nil {
		return nil, err
	}
	ns, err := openNetns(opts.Netns)
	if err != nil {
		return nil, err
	}
	req := helperRequest{Op: helperOpen, Name: opts.Name, MTU: opts.MTU, Addrs: opts.Addrs, Routes: routes}
	fd, _, err := h.run(ns, opts.Netns, req)
	if err != nil {
		ns.Close()
		return nil, err
	}
	// As in OpenNetnsTUN: until newNetnsTUN has it, closing fd removes
	// the device (the helper never makes it persistent).
	t, err := newNetnsTUN(fd, ns, opts.Netns, opts.MTU, opts.Persist, opts.Logger)
	if err != nil {
		return nil, err
	}
	t.viaHelper = true
	t.log.Info("netns tun up", zap.Bool("helper", true), zap.Stringers("addrs", opts.Addrs), zap.Stringers("routes", routes),
		zap.Int("mtu", opts.MTU), zap.Bool("persist", opts.Persist), zap.Int("batch", t.BatchSize()))
	return t, nil
}

// Adopt is AdoptNetnsTUN through the helper: it re-opens the persistent
// TUN device name (default "eth0") in the network namespace at path,
// without touching its configuration.
func (h *NetnsHelper) Adopt(path, name string, log *zap.Logger) (*NetnsTUN, error) {
	if log == nil {
		log = zap.NewNop()
	}
	name, ns, err := openDevNetns(path, name)
	if err != nil {
		return nil, err
	}
	fd, rep, err := h.run(ns, path, helperRequest{Op: helperAdopt, Name: name})
	if err != nil {
		ns.Close()
		return nil, err
	}
	t, err := newNetnsTUN(fd, ns, path, rep.MTU, true, log)
	if err != nil {
		return nil, err
	}
	t.viaHelper = true
	t.log.Info("netns tun adopted", zap.Bool("helper", true), zap.Int("mtu", rep.MTU), zap.Int("batch", t.BatchSize()))
	return t, nil
}

// Delete is DeleteNetnsTUN through the helper: it removes the persistent
// TUN device name (default "eth0") in the network namespace at path,
// which no process may hold.
func (h *NetnsHelper) Delete(path, name string) error {
	name, ns, err := openDevNetns(path, name)
	if err != nil {
		return err
	}
	defer ns.Close()
	_, _, err = h.run(ns, path, helperRequest{Op: helperDelete, Name: name})
	return err
}

// run runs one helper for req in the namespace ns (at path) and returns
// its answer: the TUN descriptor for an open or an adopt (-1 for a
// delete) and the reply. On error it has closed every descriptor it
// received, and the helper has exited.
func (h *NetnsHelper) run(ns *os.File, path string, req helperRequest) (int, helperReply, error) {
	log := h.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("nshelper").With(zap.String("netns", path), zap.String("device", req.Name), zap.String("op", req.Op))
	userns, err := ownerUserns(ns, path)
	if err != nil {
		return -1, helperReply{}, err
	}
	defer userns.Close()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return -1, helperReply{}, fault.Unavailable("stack: the rootless helper for network namespace %q needs nsenter, which is not in PATH; install util-linux", path)
	}
	exePath := h.Path
	if exePath == "" {
		exePath = "/proc/self/exe"
	}
	// Run the binary through a descriptor: /proc/self/exe read by
	// nsenter would be nsenter, and a path could change meanwhile.
	exe, err := os.Open(exePath)
	if err != nil {
		return -1, helperReply{}, fmt.Errorf("stack: the rootless helper for network namespace %q: %w", path, err)
	}
	defer exe.Close()
	conn, theirs, err := helperSocketpair()
	if err != nil {
		return -1, helperReply{}, fmt.Errorf("stack: the rootless helper for network namespace %q: %w", path, err)
	}
	defer conn.Close()

	timeout := h.Timeout
	if timeout <= 0 {
		timeout = defaultHelperTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := []string{
		fmt.Sprintf("--user=/proc/self/fd/%d", helperUsernsFD),
		fmt.Sprintf("--net=/proc/self/fd/%d", helperNetnsFD),
		// Not setgroups and setuid(0), which a user namespace with
		// setgroups denied (unshare --map-root-user) refuses: the user's
		// own uid is root in a rootless container's user namespace, so
		// the helper has its capabilities there as it is.
		"--preserve-credentials",
		"--", fmt.Sprintf("/proc/self/fd/%d", helperExeFD),
	}
	args = append(append(args, h.Args...), helperArgs...)
	cmd := exec.CommandContext(ctx, nsenter, args...)
	cmd.ExtraFiles = []*os.File{userns, ns, exe, theirs}
	stderr := &tailBuffer{max: 2048}
	cmd.Stderr = stderr
	cmd.WaitDelay = time.Second // a child that kept stderr open does not hold us
	start := time.Now()
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return -1, helperReply{}, fmt.Errorf("stack: start the rootless helper for network namespace %q: %w", path, err)
	}
	fd, rep, xerr := exchange(ctx, conn, req)
	werr := cmd.Wait()
	fail := func(what string, err error) (int, helperReply, error) {
		if fd >= 0 {
			unix.Close(fd)
		}
		if ctx.Err() != nil {
			return -1, helperReply{}, fmt.Errorf("stack: the rootless helper for network namespace %q did not answer within %v", path, timeout)
		}
		msg := fmt.Sprintf("stack: the rootless helper for network namespace %q %s: %v", path, what, err)
		if s := stderr.String(); s != "" {
			msg += ": " + s
		}
		return -1, helperReply{}, errors.New(msg)
	}
	switch {
	case errors.Is(xerr, errNoAnswer) && werr == nil:
		return fail("exited without answering", errors.New("exit status 0"))
	case errors.Is(xerr, errNoAnswer):
		return fail("failed before answering", werr)
	case xerr != nil:
		return fail("answered garbage", xerr)
	case werr != nil:
		return fail("failed after answering", werr)
	}
	log.Debug("helper answered", zap.Duration("took", time.Since(start)))
	if rep.Err != nil {
		return -1, helperReply{}, rep.Err.err(path, req)
	}
	if req.Op != helperDelete {
		if err := checkTUNFD(fd, req.Name); err != nil {
			return fail("answered garbage", err)
		}
	}
	return fd, rep, nil
}

// errNoAnswer: the helper closed its socket without a reply.
var errNoAnswer = errors.New("no answer")

// exchange sends req on conn and reads the reply, with the descriptor
// that comes with it (-1 if none). On error no descriptor stays open.
func exchange(ctx context.Context, conn *net.UnixConn, req helperRequest) (int, helperReply, error) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return -1, helperReply{}, err
	}
	// A helper gone already may have answered before it went: read on.
	if _, err := conn.Write(b); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		return -1, helperReply{}, err
	}
	buf := make([]byte, helperMaxMsg+1)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room to see a descriptor too many
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	fds, perr := receivedFDs(oob[:oobn])
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	switch {
	case err != nil:
		closeAll()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return -1, helperReply{}, errNoAnswer
		}
		return -1, helperReply{}, err
	case n == 0 && oobn == 0:
		return -1, helperReply{}, errNoAnswer
	case perr != nil:
		closeAll()
		return -1, helperReply{}, perr
	case flags&(unix.MSG_CTRUNC|unix.MSG_TRUNC) != 0:
		closeAll()
		return -1, helperReply{}, errors.New("a reply too long")
	}
	rep, err := decodeHelperReply(buf[:n], req)
	if err != nil {
		closeAll()
		return -1, helperReply{}, err
	}
	want := 1
	if rep.Err != nil || req.Op == helperDelete {
		want = 0
	}
	if len(fds) != want {
		closeAll()
		return -1, helperReply{}, fmt.Errorf("%d descriptors with the reply, want %d", len(fds), want)
	}
	if want == 0 {
		return -1, rep, nil
	}
	return fds[0], rep, nil
}

// receivedFDs returns the descriptors in the control messages oob; any
// other control message is an error (the descriptors are still returned,
// for the caller to close).
func receivedFDs(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("control message of level %d type %d", m.Header.Level, m.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("control message: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// checkTUNFD checks that fd is a TUN descriptor attached to the device
// name, with the flags wireguard's tun needs.
func checkTUNFD(fd int, name string) error {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return fmt.Errorf("the descriptor is not a TUN device's: %w", err)
	}
	want := uint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if got := ifr.Name(); got != name || ifr.Uint16()&want != want {
		return fmt.Errorf("the descriptor is TUN %q with flags %#x, want %q with %#x", got, ifr.Uint16(), name, want)
	}
	return nil
}

// helperSocketpair makes the socketpair to a helper: this end as a
// connection, the other as a file for the child (close-on-exec here;
// exec.Cmd hands it on).
func helperSocketpair() (*net.UnixConn, *os.File, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "nshelper")
	theirs := os.NewFile(uintptr(pair[1]), "nshelper")
	c, err := net.FileConn(ours)
	ours.Close() // FileConn has its own copy
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return c.(*net.UnixConn), theirs, nil
}

// ownerUserns returns the user namespace that owns the network namespace
// ns, checked to be one a helper can join for this process: a user
// namespace of this user's, not this process's own.
func ownerUserns(ns *os.File, path string) (*os.File, error) {
	fd, err := unix.IoctlRetInt(int(ns.Fd()), unix.NS_GET_USERNS)
	if errors.Is(err, unix.EPERM) {
		return nil, helperPermError(path, "it belongs to a user namespace outside this process's", err)
	}
	if err != nil {
		return nil, fmt.Errorf("stack: network namespace %q: its user namespace: %w", path, err)
	}
	userns := os.NewFile(uintptr(fd), "userns") // close-on-exec: the kernel opens it so
	var own, owner unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &own); err != nil {
		userns.Close()
		return nil, fmt.Errorf("stack: this process's user namespace: %w", err)
	}
	if err := unix.Fstat(fd, &owner); err != nil {
		userns.Close()
		return nil, fmt.Errorf("stack: network namespace %q: its user namespace: %w", path, err)
	}
	if own.Dev == owner.Dev && own.Ino == owner.Ino {
		userns.Close()
		return nil, helperPermError(path, "it is not a rootless container's (its user namespace is this process's own)", unix.EPERM)
	}
	uid, err := unix.IoctlGetUint32(fd, unix.NS_GET_OWNER_UID)
	if err != nil {
		userns.Close()
		return nil, fmt.Errorf("stack: network namespace %q: its user namespace's owner: %w", path, err)
	}
	if me := os.Geteuid(); me != 0 && uid != uint32(me) {
		userns.Close()
		return nil, helperPermError(path, fmt.Sprintf("it belongs to user %d, not to this user (%d)", uid, me), unix.EPERM)
	}
	return userns, nil
}

// helperPermError is a namespace the helper may not enter for this
// process, and why.
func helperPermError(path, why string, cause error) error {
	return &permError{fmt.Sprintf("stack: enter network namespace %q: operation not permitted: %s; run overlayd as root, or as the user whose container it is", path, why), []error{cause}}
}

// devTUNPermError: /dev/net/tun is not open to the user.
func devTUNPermError(name, path string, cause error) error {
	return &permError{fmt.Sprintf("stack: create TUN %q in network namespace %q: /dev/net/tun is not open to this user; make it mode 0666 (chmod 0666 /dev/net/tun), as distributions ship it", name, path),
		[]error{os.ErrPermission, cause}}
}

// helperError is the error a helper reported: its text, and its system
// error number for errors.Is.
type helperError struct {
	msg   string
	errno syscall.Errno
}

func (e *helperError) Error() string { return e.msg }

func (e *helperError) Unwrap() error {
	if e.errno == 0 {
		return nil
	}
	return e.errno
}

// err turns a helper's failure for req into the error the direct path
// gives for the same failure.
func (f *helperFailure) err(path string, req helperRequest) error {
	cause := &helperError{msg: f.Msg, errno: syscall.Errno(f.Errno)}
	treq := tunRequest{name: req.Name, adopt: req.Op != helperOpen}
	switch f.Step {
	case stepTUN:
		if f.NoPersistent {
			return tunError(path, treq, errNoPersistentTUN)
		}
		return tunError(path, treq, cause)
	case stepDevTUN:
		return devTUNPermError(req.Name, path, cause)
	case stepConfigure:
		if f.IPv6Off {
			return fmt.Errorf("stack: configure TUN %q in network namespace %q: %w", req.Name, path, &ipv6OffError{f.Msg})
		}
		return fmt.Errorf("stack: configure TUN %q in network namespace %q: %w", req.Name, path, cause)
	case stepMTU:
		return fmt.Errorf("stack: adopt TUN %q in network namespace %q: %w", req.Name, path, cause)
	}
	return fmt.Errorf("stack: delete TUN %q in network namespace %q: %w", req.Name, path, cause)
}

// tailBuffer keeps the last max bytes written to it, as one line.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(strings.Fields(string(bytes.ToValidUTF8(t.b, nil))), " ")
}
