package deptest

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/overlayd/overlayd"

type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Doc        string
	Imports    []string
	Deps       []string
	Name       string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) string {
	return strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
}

// TestPackageDocs: every package says what it is, in the first sentence
// of its doc.go (STYLE.md; Tailscale fails its build the same way): a
// library's comment starts "Package NAME ", a command's "Command NAME "
// (NAME its directory). The doc lives in doc.go alone, so no other file
// of the package carries a package comment. The programs under examples/
// are exempt from doc.go: each is one main.go whose comment is the doc.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "Command " + path.Base(p.ImportPath) + " "
		}
		if !strings.HasPrefix(p.Doc, want) {
			t.Errorf("package %s: doc %q does not start with %q", name, p.Doc, want)
		}
		if p.Name == "main" && (name == "examples" || strings.HasPrefix(name, "examples/")) {
			continue
		}
		if !slices.Contains(p.GoFiles, "doc.go") {
			t.Errorf("package %s has no doc.go (its package comment, starting %q, belongs there)", name, want)
			continue
		}
		for _, f := range p.GoFiles {
			doc := packageComment(t, filepath.Join(p.Dir, f))
			switch {
			case f == "doc.go" && !strings.HasPrefix(doc, want):
				t.Errorf("%s/doc.go: package comment %q does not start with %q", name, doc, want)
			case f != "doc.go" && doc != "":
				t.Errorf("%s/%s has a package comment; it belongs in doc.go alone", name, f)
			}
		}
	}
}

// packageComment returns the text of file's package comment, "" if none.
func packageComment(t *testing.T, file string) string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		t.Fatalf("parse %s: %v", file, err)
	}
	return f.Doc.Text()
}

// allowed lists, per package, the overlayd packages it may import
// (DESIGN.md, "Packages"); internal/... is open to all. Packages not
// listed may import only internal/....
var allowed = map[string][]string{
	"cmd/overlayd": {"node", "api", "config", "node/nodetest", "stack", "dockerplugin"}, // nodetest: the demo's kill -9, a stop without leaving; stack: the rootless helper's side (nshelper), run before any node; dockerplugin: run --docker-plugin
	"node":         {"*"},
	"router":       {"stack", "vxlan", "lb", "lb/maglev", "packet"},
	"stack":        {"packet"},
	"door":         {}, // host-side servers over a Dialer and a Resolver; node hands them the netstack
	"vxlan":        {}, // the wire format alone: decap reports its refusals, router counts them
	"udp":          {},
	"lb":           {"lb/maglev", "packet"},
	"packet":       {}, // the packet vocabulary: parsed view, 5-tuple, flow hash, ICMP/RST builders
	"lb/maglev":    {},
	"gossip":       {"gossip/table"},
	"gossip/table": {},         // the replicated tables' state: entries, merge, wire format, watches, participation
	"gossip/mdns":  {"gossip"}, // the Discoverer of a LAN (multicast DNS); node hands it to gossip
	"ipam":         {"gossip"},
	"catalog":      {"gossip"},                          // the replicated schema: table names, records, encodings
	"service":      {"catalog", "gossip", "ipam", "lb"}, // services and backends; lb for its types and a setter, never router or node
	"network":      {"catalog", "gossip", "ipam"},       // the networks this node is attached to; never router, lb, dns or node
	"endpoint":     {"catalog", "ipam", "stack"},        // network namespaces attached as endpoints: leases, devices, the router, routes entries; never node
	"dns":          {},
	"metrics":      {"router", "gossip", "lb", "dns", "door"}, // the Prometheus names and the collector over the parts' Stats; only node imports it
	"api":          {},
	"dockerplugin": {"api"}, // Docker's network and IPAM driver protocol over a node's networks and endpoints (an interface); never node
	"config":       {},
	"bench":        {"*"},
	"e2e":          {"*"},
	"examples":     {"node", "api", "config"}, // programs that embed a node, as users would

	// node's overlay DNS wiring (upstreams, the server, the zone from a
	// catalog snapshot, the networks' DNS addresses, who may ask); it
	// reads the DNS part of config, takes ipam's one rule for a network's
	// DNS address, says its status in api's words, and knows nothing of
	// the router, the balancer or the stack.
	"node/internal/nodedns": {"api", "catalog", "config", "dns", "ipam"},

	// node's parts for tests (router, gossip, balancer, crash) and its
	// unexported options (underlay, gossip transport, device), reached
	// through node/internal/seam; no test hooks on node's public API.
	// Memory builds on the fakes udp/udptest and gossip/gossiptest.
	"node/nodetest": {"node", "router", "gossip", "lb", "stack", "config", "udp/udptest", "gossip/gossiptest"},

	// The CNI plugin speaks to the daemon through api alone; config only
	// for its one rule of where the control socket is by default.
	"cmd/overlayd-cni": {"api", "config"},
}

// forbiddenExternal lists outside modules a package must not import.
var forbiddenExternal = map[string][]string{
	"config":    {"gvisor.dev/", "golang.zx2c4.com/wireguard"},
	"api":       {"gvisor.dev/", "golang.zx2c4.com/wireguard"},
	"gossip":    {"gvisor.dev/", "golang.zx2c4.com/wireguard"},
	"ipam":      {"gvisor.dev/", "golang.zx2c4.com/wireguard"},
	"dns":       {"gvisor.dev/", "golang.zx2c4.com/wireguard"},
	"lb/maglev": {"gvisor.dev/", "golang.zx2c4.com/wireguard", "github.com/"},
	"router":    {"github.com/hashicorp/memberlist"}, // wireguard comes in through stack, as DESIGN allows
	"lb":        {"golang.zx2c4.com/wireguard", "github.com/hashicorp/memberlist"},

	// The DNS wiring serves through a netstack it is handed; it never
	// pulls in the stack itself.
	"node/internal/nodedns": {"gvisor.dev/", "golang.zx2c4.com/wireguard"},
}

// onlyImports lists, for a package held to a few outside packages, the
// outside packages it may import directly (beyond the standard library).
// packet is written over gVisor's header (and the tcpip address and
// checksum types header's API is made of), nothing else.
var onlyImports = map[string][]string{
	"packet": {"gvisor.dev/gvisor/pkg/tcpip/header", "gvisor.dev/gvisor/pkg/tcpip", "gvisor.dev/gvisor/pkg/tcpip/checksum"},
	// lb parses nothing itself (packet does); it keeps gVisor's checksum
	// arithmetic for its incremental updates.
	"lb": {"gvisor.dev/gvisor/pkg/tcpip/checksum"},
}

// onlyExternal lists, for a package held to the standard library, the
// outside modules it may still depend on: the house logger (STYLE.md:
// a *zap.Logger is passed in), nothing else.
var onlyExternal = map[string][]string{
	"door": {"go.uber.org/zap", "go.uber.org/multierr"},

	// The Docker plugin speaks HTTP/JSON with net/http, to dockerd and to
	// the Docker API alike; no Docker client module.
	"dockerplugin": {"go.uber.org/zap", "go.uber.org/multierr", "golang.org/x/sys"},

	// The replicated tables are pure state on the standard library
	// alone: gossip drives them, and only gossip knows memberlist.
	"gossip/table": {},
}

// standard reports whether an import path is the standard library's
// (its first element has no dot; the standard library's vendored
// golang.org/x copies live under vendor/).
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func TestImportDirections(t *testing.T) {
	for _, p := range listPackages(t) {
		name := rel(p.ImportPath)
		top := topOf(name)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := rel(imp)
			// internal/... is open to all; a package's subpackages (its
			// fakes, e.g. stack/stacktest) may import it and each other.
			if strings.HasPrefix(dep, "internal/") || topOf(dep) == top {
				continue
			}
			if top == "internal" {
				t.Errorf("%s imports %s: internal packages import only the standard library and each other", name, dep)
				continue
			}
			ok := false
			for _, a := range allowed[top] {
				if a == "*" || a == dep || a == topOf(dep) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s, against the directions in DESIGN.md", name, dep)
			}
		}
		if only, ok := onlyExternal[top]; ok {
			var extra []string
			for _, d := range p.Deps {
				if standard(d) || strings.HasPrefix(d, module+"/") {
					continue
				}
				if !slices.ContainsFunc(only, func(m string) bool { return d == m || strings.HasPrefix(d, m+"/") }) {
					extra = append(extra, d)
				}
			}
			if len(extra) > 0 {
				t.Errorf("%s depends on %s and %d more outside packages (through its imports); it may use only the standard library and %s",
					name, extra[0], len(extra)-1, strings.Join(only, ", "))
			}
		}
		if only, ok := onlyImports[top]; ok && top == name {
			for _, imp := range p.Imports {
				if !standard(imp) && !strings.HasPrefix(imp, module+"/") && !slices.Contains(only, imp) {
					t.Errorf("%s imports %s; it may import only the standard library, overlayd packages and %s", name, imp, strings.Join(only, ", "))
				}
			}
		}
		for _, bad := range forbiddenExternal[top] {
			for _, d := range p.Deps {
				if strings.HasPrefix(d, bad) && !strings.HasPrefix(d, module) {
					t.Errorf("%s depends on %s (through its imports); it must not", name, d)
					break
				}
			}
		}
	}
}

// topOf names the row of allowed that governs a package: the longest
// key that is the package or one of its parents; "internal" for
// internal/...; the package itself when no row matches.
func topOf(name string) string {
	if name == "internal" || strings.HasPrefix(name, "internal/") {
		return "internal"
	}
	best := ""
	for k := range allowed {
		if (name == k || strings.HasPrefix(name, k+"/")) && len(k) > len(best) {
			best = k
		}
	}
	if best == "" {
		return name
	}
	return best
}
