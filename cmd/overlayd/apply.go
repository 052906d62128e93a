package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/node"
)

const applyDesc = `
Reconcile a running node (started with --gossip) to the networks,
services and endpoints sections of a configuration file (the same YAML as
run --config):

  networks:
    - {name: blue, cidr: 10.10.0.0/16, vni: 5001}   # created if missing, joined
    - {name: red}                                    # joined (created elsewhere)
  services:
    - name: web
      network: blue
      ports: [80/tcp]
      vip: 10.10.240.1                              # optional
      backends:                                     # this node's backends of web
        - {addr: ":8080", weight: 2, check: tcp}    # :PORT = this node's address
        - {addr: 10.10.0.7:80}
    - name: api                                     # no ports: created elsewhere,
      network: red                                  # only this node's backends set
      backends: [{addr: ":9000"}, {addr: "c1:9000"}]  # c1: an endpoint here
  endpoints:                                        # attached if missing
    - {name: c1, netns: /var/run/netns/c1, network: red, ip: 10.20.0.50}

Missing networks are created (when a cidr is given) and joined, missing
services created (when ports are given), this node's own backends of each
service that has a backends key added, reweighted or removed to match it
(an empty list removes them all), and missing endpoints attached as
'overlayd attach' does (one attached already with the same namespace and
network is left as it is; one of that name elsewhere is an error). It
prints what it changed, one line each, or "no changes"; applying the same
file twice changes nothing the second time.

Things the file does not mention are left alone: networks it does not
list are not left, services it does not list are not removed, endpoints
it does not list are not detached, another node's backends are never
touched, and a service without a backends key keeps this node's backends
as they are. An existing service whose VIP or ports differ from the file
is an error, not changed. The node's own settings (name, mode, listen,
gossip, doors, DNS, ...) take effect only at run and are not looked at here.`

func applyCmd(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	setUsage(fs, "apply -f FILE [flags]", applyDesc)
	control, asJSON := clientFlags(fs)
	file := fs.String("f", "", "the YAML `file` to apply (required)")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q (give the file with -f FILE)", pos[0])
	}
	if *file == "" {
		return usagef("say which file to apply: -f FILE")
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return usagef("%v", err)
	}
	if err := cfg.ValidateApply(); err != nil {
		return usagef("%s:\n  %s", *file, strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := api.NewClient(*control).Apply(ctx, node.ApplyRequest(cfg))
	if err != nil {
		var re *api.RemoteError
		if errors.As(err, &re) && strings.HasPrefix(re.Msg, "line ") {
			return &api.RemoteError{Code: re.Code, Msg: *file + ": " + re.Msg}
		}
		return err
	}
	if *asJSON {
		return printJSON(stdout, res)
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(stdout, "no changes")
	}
	for _, c := range res.Changes {
		fmt.Fprintln(stdout, c)
	}
	return nil
}
