package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RunNetnsHelper is the helper's side of NetnsHelper: the main of the
// program a NetnsHelper runs, given the arguments after NetnsHelper.Args.
// It runs inside the namespaces nsenter joined (the calling process's),
// reads one request from the socket the daemon handed it, creates,
// adopts or deletes the TUN device and answers, with the descriptor. It
// returns nil once it has answered, also with a failure (the reply
// carries it), else an error of one sentence, for the program to print on
// stderr (which the daemon puts in its own error) before exiting non-zero.
func RunNetnsHelper(args []string) error {
	if !slices.Equal(args, helperArgs) || !isSeqpacket(helperSockFD) {
		return errors.New("stack: this is the rootless helper, which overlayd runs to make a device in a container's namespace; it is not for use by hand")
	}
	unix.CloseOnExec(helperSockFD)
	// nsenter has joined these and run this; the helper needs none of them.
	for _, fd := range []int{helperUsernsFD, helperNetnsFD, helperExeFD} {
		unix.Close(fd)
	}
	buf := make([]byte, helperMaxMsg+1)
	n, _, flags, _, err := unix.Recvmsg(helperSockFD, buf, nil, 0)
	switch {
	case err != nil:
		return fmt.Errorf("stack: rootless helper: read the request: %w", err)
	case n == 0:
		return errors.New("stack: rootless helper: the daemon went away before asking")
	case flags&unix.MSG_TRUNC != 0:
		return errors.New("stack: rootless helper: a request too long")
	}
	req, err := decodeHelperRequest(buf[:n])
	if err != nil {
		return fmt.Errorf("stack: rootless helper: %w", err)
	}
	fd, rep := helperDo(req)
	b, err := json.Marshal(rep)
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return fmt.Errorf("stack: rootless helper: %w", err)
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	err = unix.Sendmsg(helperSockFD, b, oob, nil, 0)
	if fd >= 0 {
		// In flight, the daemon's now; if it went away, the device goes
		// with this close (it is not persistent).
		unix.Close(fd)
	}
	if err != nil {
		return fmt.Errorf("stack: rootless helper: answer: %w", err)
	}
	return nil
}

// isSeqpacket reports whether fd is a SOCK_SEQPACKET socket.
func isSeqpacket(fd int) bool {
	t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	return err == nil && t == unix.SOCK_SEQPACKET
}

// helperDo performs req in this process's network namespace and returns
// the descriptor to pass back (-1 for none) and the reply.
func helperDo(req helperRequest) (int, helperReply) {
	switch req.Op {
	case helperOpen:
		fd, err := attachTUN(tunRequest{name: req.Name})
		if err != nil {
			return -1, failed(tunStep(err), err)
		}
		if err := configureLink(req.Name, req.MTU, req.Addrs, req.Routes); err != nil {
			unix.Close(fd) // not persistent: the device goes
			return -1, failed(stepConfigure, err)
		}
		return fd, helperReply{MTU: req.MTU}
	case helperAdopt:
		fd, err := attachTUN(tunRequest{name: req.Name, adopt: true})
		if err != nil {
			return -1, failed(tunStep(err), err)
		}
		link, err := netlink.LinkByName(req.Name)
		if err != nil {
			unix.Close(fd) // the device stays: it is persistent
			return -1, failed(stepMTU, fmt.Errorf("find link: %w", err))
		}
		return fd, helperReply{MTU: link.Attrs().MTU}
	default: // helperDelete; decodeHelperRequest knows no other
		fd, err := attachTUN(tunRequest{name: req.Name, adopt: true})
		if err != nil {
			return -1, failed(tunStep(err), err)
		}
		err = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0)
		unix.Close(fd) // with persistence off, this removes it
		if err != nil {
			return -1, failed(stepDelete, err)
		}
		return -1, helperReply{}
	}
}

// tunStep tells a /dev/net/tun closed to the user from other failures
// of attachTUN.
func tunStep(err error) string {
	if errors.Is(err, unix.EACCES) && unix.Access("/dev/net/tun", unix.R_OK|unix.W_OK) != nil {
		return stepDevTUN
	}
	return stepTUN
}

// failed is the reply for err in step.
func failed(step string, err error) helperReply {
	f := &helperFailure{Step: step, Msg: err.Error(), NoPersistent: errors.Is(err, errNoPersistentTUN), IPv6Off: errors.Is(err, ErrIPv6Disabled)}
	var errno syscall.Errno
	if errors.As(err, &errno) && errno <= 4095 {
		f.Errno = uint32(errno)
	}
	return helperReply{Err: f}
}
