package dockerplugin

import (
	"os"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// nsfsMagic is the file system type of a namespace file (linux/magic.h).
const nsfsMagic = 0x6e736673

// isNetns reports whether path is a namespace file: the sandbox key is an
// empty file until Docker (before 28) bind-mounts the namespace on it.
func isNetns(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(path, &st) == nil && int64(st.Type) == nsfsMagic
}

// allIPv6Off reports whether the network namespace at path has IPv6
// turned off for all its devices (net.ipv6.conf.all.disable_ipv6 = 1).
// Docker before 28 does that to a namespace right after it mounts it on
// the sandbox key, before it takes it as the container's; the kernel then
// removes the IPv6 addresses of every device in it, so a device made
// before would lose its own.
func allIPv6Off(path string) (bool, error) {
	ns, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer ns.Close()
	type result struct {
		off bool
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread enters the namespace (/proc/sys/net is the reading
		// thread's) and goes back; one that cannot go back stays
		// locked, and ends with the goroutine.
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{false, err}
			return
		}
		defer self.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{false, err}
			return
		}
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6")
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{strings.TrimSpace(string(b)) == "1", err}
	}()
	r := <-ch
	return r.off, r.err
}
