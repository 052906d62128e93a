package stack

import (
	"os"

	"golang.org/x/sys/unix"
)

const (
	defaultTUNName = "ovl0"
	privHint       = "run as root, grant CAP_NET_ADMIN (setcap cap_net_admin+ep overlayd), or use --mode netstack"
)

func configureTUN(name string, opts TUNOptions) error {
	// wireguard's CreateTUN has set the MTU already.
	return configureLink(name, 0, opts.Addrs, opts.Routes)
}

// CanCreateTUN reports, cheaply, whether OpenTUN can be expected to work:
// /dev/net/tun opens and CAP_NET_ADMIN is in the effective set.
func CanCreateTUN() bool {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return hasNetAdmin()
}

func hasNetAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

func tunName(name string) string {
	if name == "" {
		return defaultTUNName
	}
	return name
}
