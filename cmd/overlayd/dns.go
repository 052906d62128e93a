package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
)

// upstreamList is the repeatable --dns-upstream flag.
type upstreamList []string

func (u *upstreamList) String() string { return strings.Join(*u, ",") }

func (u *upstreamList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			if _, err := config.ParseUpstream(s); err != nil {
				return err
			}
			*u = append(*u, s)
		}
	}
	return nil
}

// dnsFlags declares --dns, --dns-upstream, --dns-domain and --dns-ttl; the
// function returned copies the one named into a configuration (and ignores
// other names).
func dnsFlags(fs *flag.FlagSet) func(name string, c *config.Config) error {
	d := config.DefaultDNS()
	var (
		listen    = fs.String("dns", d.Listen, "serve DNS (overlay names, the rest forwarded) on this host `IP:PORT` as well as on each network's DNS address; port 0 picks one; off: no DNS")
		domain    = fs.String("dns-domain", d.Domain, "the overlay's DNS `domain`: NAME.NETWORK.DOMAIN")
		ttl       = fs.Duration("dns-ttl", d.TTL, "TTL of overlay records and negative answers (whole seconds)")
		upstreams upstreamList
	)
	fs.Var(&upstreams, "dns-upstream", "forward other names to this resolver `IP[:PORT]` (repeatable, added to the file's dns.upstreams; default: the nameservers of /etc/resolv.conf)")
	return func(name string, c *config.Config) error {
		switch name {
		case "dns":
			c.DNS.Listen = *listen
			if err := config.CheckDNSListen(*listen); err != nil {
				return usagef("--dns: %v", err)
			}
		case "dns-domain":
			c.DNS.Domain = *domain
		case "dns-ttl":
			c.DNS.TTL = *ttl
		case "dns-upstream":
			c.DNS.Upstreams = appendNew(c.DNS.Upstreams, upstreams, func(s string) string { return s })
		}
		return nil
	}
}

// printDNS writes the DNS server's addresses and counters of a status.
func printDNS(w io.Writer, st api.Status) {
	d := st.DNS
	if d == nil {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "dns: %s on %s", d.Domain, d.Listen)
	for _, a := range d.Addrs {
		fmt.Fprintf(w, ", %s:53", a)
	}
	fmt.Fprintf(w, "; upstreams %s\n", orNone(strings.Join(d.Upstreams, ", ")))
	fmt.Fprintf(w, "  responses: %s\n", orNone(counts(d.Responses)))
	fmt.Fprintf(w, "  queries: %s\n", orNone(counts(d.Queries)))
	fmt.Fprintf(w, "  cache: %d hits, %d misses, %d entries; upstream errors %d, busy %d, dropped %d\n",
		d.CacheHits, d.CacheMisses, d.CacheEntries, d.UpstreamErrors, d.Busy, d.Dropped)
}

func counts(m map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
