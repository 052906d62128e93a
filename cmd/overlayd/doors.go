package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
)

// forwardList is the repeatable --forward flag.
type forwardList []config.Forward

func (l *forwardList) String() string {
	s := make([]string, len(*l))
	for i, f := range *l {
		s[i] = f.String()
	}
	return strings.Join(s, ",")
}

func (l *forwardList) Set(v string) error {
	f, err := config.ParseForward(v)
	if err != nil {
		return err
	}
	*l = append(*l, f)
	return nil
}

// doorFlags declares the front-door and metrics flags of run on fs; the
// returned apply copies the flag called name, if it is one of them, into c.
func doorFlags(fs *flag.FlagSet) (apply func(name string, c *config.Config) error) {
	var (
		socks5    = fs.String("socks5", "", "open a SOCKS5 proxy into the overlay on this host `IP:PORT`, e.g. 127.0.0.1:1080 (port 0 picks one)")
		httpProxy = fs.String("http-proxy", "", "open an HTTP CONNECT proxy into the overlay on this host `IP:PORT`, e.g. 127.0.0.1:8118")
		metrics   = fs.String("metrics", "", "serve Prometheus metrics at http://`IP:PORT`/metrics, e.g. 127.0.0.1:9464 (empty: off)")
		forwards  forwardList
	)
	fs.Var(&forwards, "forward", "forward a host port to an overlay address or name, e.g. 127.0.0.1:8080=10.99.2.1:80 (`LISTEN=HOST:PORT[/udp]`, repeatable; added to the file's doors.forwards)")
	check := func(flagName, v string) error {
		if v == "" {
			return nil
		}
		if err := config.CheckListen(strings.ReplaceAll(flagName, "-", "_"), v); err != nil {
			return usagef("--%s: %v", flagName, err)
		}
		return nil
	}
	return func(name string, c *config.Config) error {
		switch name {
		case "socks5":
			c.Doors.SOCKS5 = *socks5
			return check(name, *socks5)
		case "http-proxy":
			c.Doors.HTTPProxy = *httpProxy
			return check(name, *httpProxy)
		case "metrics":
			c.Metrics = *metrics
			return check(name, *metrics)
		case "forward":
			c.Doors.Forwards = appendNew(c.Doors.Forwards, forwards, config.Forward.String)
		}
		return nil
	}
}

// printDoors writes the front doors and the metrics endpoint of a status.
func printDoors(w io.Writer, st api.Status) {
	if len(st.Doors) == 0 && st.Metrics == "" {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// OVER LIMIT: turned away at the connection limit (api.Door.Refused);
	// FAILED: accepted but never spliced, by reason ("refused" there is
	// the destination refusing the connection).
	fmt.Fprintln(tw, "DOOR\tLISTEN\tTARGET\tACCEPTED\tOVER LIMIT\tACTIVE\tOUT BYTES\tIN BYTES\tFAILED")
	for _, d := range st.Doors {
		target := "-"
		if d.Kind == "forward" {
			target = d.Target + "/" + d.Proto
		}
		failed := "-"
		if len(d.Failed) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(d.Failed)) {
				parts = append(parts, fmt.Sprintf("%s %d", k, d.Failed[k]))
			}
			failed = strings.Join(parts, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", strings.ReplaceAll(d.Kind, "_", "-"), d.Addr, target,
			d.Accepted, d.Refused, d.Active, d.OutBytes, d.InBytes, failed)
	}
	tw.Flush()
	if st.Metrics != "" {
		fmt.Fprintf(w, "metrics: http://%s/metrics\n", st.Metrics)
	}
}
