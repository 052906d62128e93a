//go:build !linux

package stack

import "go.uber.org/zap"

// Open creates a TUN device inside a network namespace: Linux only.
func (h *NetnsHelper) Open(NetnsTUNOptions) (*NetnsTUN, error) { return nil, errNoNetns() }

// Adopt re-opens a persistent TUN device in a network namespace: Linux
// only.
func (h *NetnsHelper) Adopt(string, string, *zap.Logger) (*NetnsTUN, error) {
	return nil, errNoNetns()
}

// Delete removes a persistent TUN device in a network namespace: Linux
// only.
func (h *NetnsHelper) Delete(string, string) error { return errNoNetns() }

// RunNetnsHelper is the rootless helper's side: Linux only.
func RunNetnsHelper([]string) error { return errNoNetns() }
