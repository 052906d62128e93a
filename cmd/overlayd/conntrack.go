package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/overlayd/overlayd/api"
)

func conntrackCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("conntrack", flag.ContinueOnError)
	setUsage(fs, "conntrack [--service NAME] [--json]", "List the flows this node's clients have open to service VIPs, with the backend each is pinned to and its connection-tracking state.")
	control, asJSON := clientFlags(fs)
	service := fs.String("service", "", "only the flows of this service `NAME`")
	fl, err := request(ctx, fs, args, stdout, control, 10*time.Second, (*api.Client).Conntrack)
	if err != nil {
		return err
	}
	flows := []api.Flow{}
	for _, f := range fl {
		if *service == "" || f.Service == *service {
			flows = append(flows, f)
		}
	}
	if *asJSON {
		return printJSON(stdout, flows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tCLIENT\tVIP\tBACKEND\tSTATE\tSERVICE\tAGE\tIDLE")
	for _, f := range flows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\n", f.Proto, f.Client, f.VIP, f.Backend, f.State, f.Network, f.Service,
			seconds(f.Age), seconds(f.Idle))
	}
	if len(flows) == 0 {
		fmt.Fprintln(tw, "(no flows)")
	}
	return tw.Flush()
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}
