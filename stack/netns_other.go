//go:build !linux

package stack

import (
	"fmt"
	"runtime"

	"go.uber.org/zap"
)

func errNoNetns() error {
	return fmt.Errorf("stack: network namespaces are Linux only, not %s", runtime.GOOS)
}

// OpenNetnsTUN creates a TUN device inside a network namespace: Linux
// only.
func OpenNetnsTUN(NetnsTUNOptions) (*NetnsTUN, error) { return nil, errNoNetns() }

// AdoptNetnsTUN re-opens a persistent TUN device in a network namespace:
// Linux only.
func AdoptNetnsTUN(string, string, *zap.Logger) (*NetnsTUN, error) { return nil, errNoNetns() }

// DeleteNetnsTUN removes a persistent TUN device in a network namespace:
// Linux only.
func DeleteNetnsTUN(string, string) error { return errNoNetns() }

// Delete closes t (there is none to close on this OS).
func (t *NetnsTUN) Delete() error { return t.Close() }

// Gone reports whether the namespace has gone away: always, on this OS.
func (t *NetnsTUN) Gone() bool { return true }
