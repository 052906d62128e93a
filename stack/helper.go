package stack

import (
	"time"

	"go.uber.org/zap"
)

// NetnsHelper makes, adopts and deletes TUN devices in network namespaces
// this process may not enter: a rootless container's, owned by a user
// namespace of this user's (what `unshare --user --map-root-user --net`,
// podman rootless and rootlesskit make). A multithreaded Go process may
// not join a user namespace, so the work is done by a helper process: the
// binary at Path, run through nsenter(1) (util-linux), which joins the
// namespace's owning user namespace and the network namespace before the
// helper's Go runtime starts. The helper (RunNetnsHelper) opens
// /dev/net/tun there, creates and configures the device and passes its
// descriptor back over a socketpair (SCM_RIGHTS), as slirp4netns does;
// this process holds it, with its own open of the namespace for Gone.
//
// Its methods behave as OpenNetnsTUN, AdoptNetnsTUN and DeleteNetnsTUN,
// with the same sentences and fault kinds for the same mistakes; the
// devices they return say ViaHelper. Besides, the helper can fail on its
// own (nsenter missing, the helper crashed, timed out or answered
// garbage): one sentence saying so, and nothing left behind (no
// descriptor, no device). /dev/net/tun must be open to the user (mode
// 0666, as distributions ship it).
//
// The zero value runs "/proc/self/exe" with no arguments, which is right
// only for a program whose main calls RunNetnsHelper first thing; overlayd
// sets Args to its hidden subcommand. Methods may run concurrently.
type NetnsHelper struct {
	// Path is the binary to run as the helper. Default "/proc/self/exe"
	// (this program, even if its file was replaced since it started).
	Path string
	// Args come before the helper's own arguments: the subcommand that
	// calls RunNetnsHelper with the arguments after them.
	Args []string
	// Timeout bounds one helper's run, from start to answer. Default 10 s.
	Timeout time.Duration
	// Logger receives lifecycle logs; nil means none.
	Logger *zap.Logger
}

// defaultHelperTimeout bounds a helper's run when Timeout is 0.
const defaultHelperTimeout = 10 * time.Second

// ViaHelper reports whether a NetnsHelper made or adopted the device: a
// later Adopt or Delete of it needs the helper too.
func (t *NetnsTUN) ViaHelper() bool { return t.viaHelper }
