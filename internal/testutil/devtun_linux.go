package testutil

import (
	"os"
	"syscall"
	"testing"
)

// OpenDevTUN makes /dev/net/tun mode 0666, as distributions ship it
// (rootless tools rely on it; these machines have 0600), until the test
// ends, when the mode it had comes back, also if the test fails. Tests
// that change the mode hold a lock meanwhile (across packages, whose test
// binaries run at once), so that one does not put the mode back under
// another. Root only.
func OpenDevTUN(t testing.TB) {
	t.Helper()
	lock, err := os.OpenFile("/run/lock/overlayd-test-dev-net-tun.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("lock for /dev/net/tun's mode: %v", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		t.Fatalf("lock for /dev/net/tun's mode: %v", err)
	}
	fi, err := os.Stat("/dev/net/tun")
	if err != nil {
		lock.Close()
		t.Fatalf("/dev/net/tun: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Chmod("/dev/net/tun", fi.Mode().Perm()); err != nil {
			t.Errorf("put back /dev/net/tun's mode %v: %v", fi.Mode().Perm(), err)
		}
		lock.Close()
	})
	if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
		t.Fatalf("chmod 0666 /dev/net/tun: %v", err)
	}
}
