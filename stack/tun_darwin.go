package stack

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

const (
	defaultTUNName = "utun"
	privHint       = "run as root (sudo), or use --mode netstack"
)

// configureTUN adds the addresses, brings the utun up and adds the routes
// with ifconfig(8) and route(8); wireguard's CreateTUN has set the MTU.
func configureTUN(name string, opts TUNOptions) error {
	for _, p := range opts.Addrs {
		a := p.Addr().Unmap()
		var args []string
		if a.Is4() {
			// utun is point-to-point: the destination is the address itself.
			args = []string{name, "inet", p.String(), a.String(), "alias"}
		} else {
			args = []string{name, "inet6", p.String(), "alias"}
		}
		if err := run("ifconfig", args...); err != nil {
			return err
		}
	}
	if err := run("ifconfig", name, "up"); err != nil {
		return err
	}
	routes := make([]string, 0, len(opts.Addrs)+len(opts.Routes))
	for _, p := range opts.Addrs {
		routes = append(routes, p.Masked().String())
	}
	for _, p := range opts.Routes {
		routes = append(routes, p.Masked().String())
	}
	for i, r := range routes {
		family := "-inet"
		if strings.Contains(r, ":") {
			family = "-inet6"
		}
		err := run("route", "-q", "-n", "add", family, r, "-interface", name)
		if err != nil && i >= len(opts.Addrs) {
			return err
		}
	}
	return nil
}

func run(cmd string, args ...string) error {
	out, err := exec.Command(cmd, args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "ermission denied") || strings.Contains(msg, "not permitted") {
			err = os.ErrPermission
		}
		return fmt.Errorf("%s %s: %w (%s)", cmd, strings.Join(args, " "), err, msg)
	}
	return nil
}

// CanCreateTUN reports, cheaply, whether OpenTUN can be expected to work:
// on macOS, creating a utun needs root.
func CanCreateTUN() bool { return os.Geteuid() == 0 }

// tunName maps a name to one macOS accepts: "utun" (the kernel picks the
// unit) or "utunN"; any other name ("ovl0" from a Linux config) becomes
// "utun".
func tunName(name string) string {
	if !strings.HasPrefix(name, "utun") {
		return defaultTUNName
	}
	return name
}

// changeAddrs adds and removes utun addresses with ifconfig(8) and routes
// each added prefix to the interface.
func changeAddrs(name string, add, del []netip.Prefix) error {
	for _, p := range del {
		a := p.Addr().Unmap()
		fam := "inet"
		if a.Is6() {
			fam = "inet6"
		}
		if err := run("ifconfig", name, fam, a.String(), "-alias"); err != nil {
			return err
		}
	}
	if len(add) == 0 {
		return nil
	}
	return configureTUN(name, TUNOptions{Addrs: add})
}
