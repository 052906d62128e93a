//go:build !linux

package dockerplugin

import "errors"

// isNetns says yes where there are no network namespaces to wait for: the
// node's attach then says what is wrong.
func isNetns(string) bool { return true }

// allIPv6Off cannot tell without Linux's network namespaces.
func allIPv6Off(string) (bool, error) {
	return false, errors.New("network namespaces need Linux")
}
