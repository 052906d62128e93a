package bench_test

import (
	"bufio"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
)

// wireguardModule is the module overlayd depends on for its TUN offloads;
// its root package is wireguard-go's main package.
const wireguardModule = "golang.zx2c4.com/wireguard"

// buildWireguardGo builds the wireguard-go daemon from the version of
// golang.zx2c4.com/wireguard in our go.mod and returns its path and that
// version. It builds in a scratch module that requires just that version,
// so our go.mod and go.sum need no entries for what only the daemon
// imports (its crypto) and go mod tidy stays clean.
func buildWireguardGo(b *testing.B) (bin, version string) {
	b.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", wireguardModule).CombinedOutput()
	if err != nil {
		b.Fatalf("go list -m %s: %v\n%s", wireguardModule, err, out)
	}
	version = strings.TrimSpace(string(out))
	dir := b.TempDir()
	mod := fmt.Sprintf("module overlayd.bench/wireguard-go\n\ngo 1.22\n\nrequire %s %s\n", wireguardModule, version)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		b.Fatal(err)
	}
	bin = filepath.Join(dir, "wireguard-go")
	cmd := exec.Command("go", "build", "-mod=mod", "-o", bin, wireguardModule)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s (wireguard-go %s, from go.mod): %v\n%s", wireguardModule, version, err, out)
	}
	return bin, version
}

// wgKey is a WireGuard key pair in the UAPI's hex encoding.
type wgKey struct{ private, public string }

func newWGKey(b *testing.B) wgKey {
	b.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	return wgKey{hex.EncodeToString(k.Bytes()), hex.EncodeToString(k.PublicKey().Bytes())}
}

// wgSocketDir is where wireguard-go puts its UAPI sockets. It is not
// per network namespace, so interface names must be unique on the machine.
const wgSocketDir = "/var/run/wireguard"

// startWireguardGo runs wireguard-go in the foreground in h with interface
// iface, configures it through its UAPI socket (set=1, the text protocol of
// wireguard.com/xplatform; no wireguard-tools needed), gives the interface
// addr and brings it up. It returns the daemon's process.
func startWireguardGo(b *testing.B, bin string, h *e2e.Host, iface, addr string, key wgKey, port int, peer wgKey, endpoint, allowed string) *e2e.Proc {
	b.Helper()
	sock := filepath.Join(wgSocketDir, iface+".sock")
	os.Remove(sock) // a stale socket from a killed run would be dialed, and refuse
	b.Cleanup(func() { os.Remove(sock) })
	// env execs wireguard-go, and ip netns exec execs env: the process is the daemon.
	p := h.Start("env", "WG_PROCESS_FOREGROUND=1", bin, iface)
	conf := fmt.Sprintf("set=1\nprivate_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n\n",
		key.private, port, peer.public, endpoint, allowed)
	var c net.Conn
	if _, err := testutil.Poll(15*time.Second, func() (err error) {
		if c, err = net.Dial("unix", sock); err == nil {
			return nil
		}
		if syscall.Kill(p.Cmd.Process.Pid, 0) == syscall.ESRCH {
			b.Fatalf("%s: wireguard-go %s exited\n%s", h.Name, iface, p.Output())
		}
		return err
	}); err != nil {
		b.Fatalf("%s: wireguard-go %s: no UAPI socket %s: %v\n%s", h.Name, iface, sock, err, p.Output())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(conf)); err != nil {
		b.Fatalf("%s: wireguard-go %s: UAPI set: %v", h.Name, iface, err)
	}
	// The reply is "errno=N\n\n"; 0 means the whole set was applied.
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(reply) != "errno=0" {
		b.Fatalf("%s: wireguard-go %s: UAPI set answered %q, %v\n%s", h.Name, iface, reply, err, p.Output())
	}
	h.Run("ip", "addr", "add", addr, "dev", iface)
	h.Run("ip", "link", "set", iface, "up")
	return p
}
