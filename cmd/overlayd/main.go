package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/overlayd/overlayd/api"
	"github.com/overlayd/overlayd/node"
)

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

const mainUsage = `overlayd — a userspace overlay router (VXLAN over UDP, rootless where it can be)

Usage:
  overlayd <command> [flags] [arguments]

Daemon:
  run        run a node in the foreground
  demo       the tour: three rootless nodes in this process, a balanced service, DNS, SOCKS5 doors, a crash

Client (talk to a running daemon through its control socket):
  status     show the node's mode, addresses, routes and packet counters
  network    create, list, join and leave overlay networks (gossip mode)
  peers      list the cluster's members
  routes     show the routes in force with their owners
  service    create, list and show service VIPs; add, drain and remove backends
  conntrack  list the flows this node balances, with their backend and state
  attach     attach a network namespace (a container) to a network as an endpoint
  detach     detach an endpoint: its interface, route and address go
  endpoints  list the endpoints attached on this node, with their counters
  networks   list the networks (the same as 'network ls')
  services   list the services (the same as 'service ls')
  apply      reconcile a running node to a file's networks and services: apply -f FILE

Other:
  version    print the version
  help       show help for a command: overlayd help run

Flags may stand before or after arguments. Run 'overlayd <command> --help' for a command's flags.
`

type command struct {
	name  string
	short string
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run a node in the foreground", runCmd},
		{"demo", "run the three-node rootless tour in this process", demoCmd},
		{"status", "show a running node's status", statusCmd},
		{"network", "create, list, join and leave networks", networkCmd},
		{"peers", "list the cluster's members", peersCmd},
		{"routes", "show the routes in force", routesCmd},
		{"service", "manage service VIPs and their backends", serviceCmd},
		{"attach", "attach a network namespace (a container) as an endpoint", attachCmd},
		{"detach", "detach an endpoint", detachCmd},
		{"endpoints", "list the endpoints attached on this node", endpointsCmd},
		{"conntrack", "list the balanced flows", conntrackCmd},
		{"networks", "list networks (network ls)", alias(networkCmd, "ls")},
		{"services", "list services (service ls)", alias(serviceCmd, "ls")},
		{"apply", "reconcile a running node to a file's networks and services", applyCmd},
		{"version", "print the version", versionCmd},
		{nshelperName, "the rootless helper (hidden)", nshelperCmd},
	}
}

// alias runs cmd with sub before the arguments ("networks" is "network ls").
func alias(cmd func(context.Context, []string, io.Writer, io.Writer) error, sub string) func(context.Context, []string, io.Writer, io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return cmd(ctx, append([]string{sub}, args...), stdout, stderr)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs overlayd with args and returns the exit code: 0 success, 1 a
// failure at run time, 2 a mistake on the command line (a flag, an
// argument, or a configuration file or a file it names that cannot work,
// also when the daemon is the one that finds it).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		fmt.Fprint(stdout, mainUsage)
		return 0
	case "--version", "-version":
		name = "version"
	case "help":
		// "help", "help help" and "help --help" show the overview.
		if len(rest) == 0 || isHelp(rest[0]) || rest[0] == "help" {
			fmt.Fprint(stdout, mainUsage)
			return 0
		}
		name, rest = rest[0], []string{"--help"}
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, rest, stdout, stderr)
		var remote *api.RemoteError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &remote) && remote.Mistake():
			// The daemon refused the arguments (a bad name, port, ...):
			// a mistake on the command line, as if caught here.
			fmt.Fprintf(stderr, "overlayd %s: %v\n", name, err)
			return 2
		case errors.As(err, new(usageError)):
			fmt.Fprintf(stderr, "overlayd %s: %v\nRun 'overlayd %s --help' for usage.\n", name, err, name)
			return 2
		default:
			fmt.Fprintf(stderr, "overlayd %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "overlayd: unknown command %q\n\n%s", name, mainUsage)
	return 2
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" }

// parseFlags parses args with fs, letting flags stand before or after the
// positional arguments (as docker and kubectl do); "--" ends the flags.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, flag.ErrHelp
		}
		if err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// setUsage gives fs a usage text: a synopsis, a description and the flags.
func setUsage(fs *flag.FlagSet, synopsis, desc string) {
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: overlayd %s\n\n%s\n", synopsis, strings.TrimSpace(desc))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if !hasFlags {
			return
		}
		fmt.Fprintf(out, "\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			dash := "--"
			if len(f.Name) == 1 { // -f, as the synopses write it
				dash = "-"
			}
			fmt.Fprintf(out, "  %s%s", dash, f.Name)
			if name != "" {
				fmt.Fprintf(out, " %s", name)
			}
			fmt.Fprintf(out, "\n        %s", usage)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				fmt.Fprintf(out, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
}

func versionCmd(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	setUsage(fs, "version", "Print overlayd's version.")
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("version takes no arguments")
	}
	fmt.Fprintf(stdout, "overlayd %s\n", node.Version)
	return nil
}
