package testutil

import (
	"os"
	"strings"
)

// Sockets returns the sockets this process holds open, by the kernel's
// name for each ("socket:[12345]"), read from /proc/self/fd; ok is false
// where there is no such directory (not Linux). A test that must open no
// socket compares the sets before and after (NewSockets).
func Sockets() (open map[string]bool, ok bool) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, false
	}
	open = map[string]bool{}
	for _, fd := range names {
		if l, err := os.Readlink("/proc/self/fd/" + fd); err == nil && strings.HasPrefix(l, "socket:") {
			open[l] = true
		}
	}
	return open, true
}

// NewSockets returns the sockets open now that were not in before (a
// result of Sockets); nil when it cannot tell.
func NewSockets(before map[string]bool) []string {
	now, ok := Sockets()
	if !ok || before == nil {
		return nil
	}
	var out []string
	for s := range now {
		if !before[s] {
			out = append(out, s)
		}
	}
	return out
}
