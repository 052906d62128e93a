package door_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/door"
	"github.com/overlayd/overlayd/e2e"
	"github.com/overlayd/overlayd/internal/testutil"
)

// TestMain checks that no test leaves goroutines behind; fuzzing (whose
// coordinator and workers manage goroutines of their own) is left out.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

// overlay is a two-node in-process cluster: clients reach it through
// doors on node 0; node 1 serves HTTP on :80, TCP echo on :9000 and UDP
// echo on :9001, and nothing on :81. "name.test" resolves to node 1.
type overlay struct {
	c     *e2e.Cluster
	srv   netip.Addr
	opts  door.Options
	names map[string]netip.Addr
}

const httpBody = "hello from node1 over the overlay\n"

func newOverlay(t *testing.T) *overlay {
	t.Helper()
	c := e2e.NewCluster(t, 2, e2e.ClusterOptions{})
	o := &overlay{c: c, srv: e2e.NodeAddr(1).Addr()}
	o.names = map[string]netip.Addr{"name.test": o.srv}
	o.opts = door.Options{
		Dialer:         door.DialerFunc(c.Nodes[0].Dial),
		PacketListener: c.Nodes[0],
		Resolver: func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := o.names[host]; ok {
				return []netip.Addr{a}, nil
			}
			return nil, fmt.Errorf("%s: no such host", host)
		},
		DialTimeout: 5 * time.Second,
	}
	srv := c.Nodes[1]

	hl, err := srv.Listen("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s: %s", r.Method, r.URL, b)
			return
		}
		io.WriteString(w, httpBody)
	})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); hs.Serve(hl) }()

	el, err := srv.Listen("tcp", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	var emu sync.Mutex
	var econns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := el.Accept()
			if err != nil {
				return
			}
			emu.Lock()
			econns = append(econns, conn)
			emu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(conn, conn)
				conn.(interface{ CloseWrite() error }).CloseWrite()
			}()
		}
	}()

	pc, err := srv.ListenPacket("udp", ":9001")
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		hs.Close()
		el.Close()
		pc.Close()
		emu.Lock()
		for _, c := range econns {
			c.Close()
		}
		emu.Unlock()
		wg.Wait()
	})
	return o
}

func start[D door.Door](t *testing.T, d D, err error) D {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// curl runs curl with args and returns its output.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCurl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runCurl runs curl with args and returns its output or its failure.
func runCurl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl not found: install Debian's curl package (CI must run this test)")
		}
		t.Skip("curl not found: install Debian's curl package to run this test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-sS", "--max-time", "20"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()} // no *_proxy from the environment
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out), nil
}

func TestThroughCluster(t *testing.T) {
	o := newOverlay(t)
	s, err := door.NewSOCKS5("127.0.0.1:0", o.opts)
	socks := start(t, s, err)
	h, err := door.NewHTTPProxy("127.0.0.1:0", o.opts)
	hp := start(t, h, err)

	t.Run("curl socks5-hostname", func(t *testing.T) {
		got := curl(t, "--socks5-hostname", socks.Addr().String(), "http://name.test:80/")
		if got != httpBody {
			t.Fatalf("curl through SOCKS5 = %q, want %q", got, httpBody)
		}
		got = curl(t, "--socks5", socks.Addr().String(), "http://"+o.srv.String()+":80/")
		if got != httpBody {
			t.Fatalf("curl through SOCKS5 to an IP = %q, want %q", got, httpBody)
		}
	})
	t.Run("curl socks5 with user and password", func(t *testing.T) {
		opts := o.opts
		opts.Authenticate = func(user, password string) bool { return user == "alice" && password == "s3cret" }
		s, err := door.NewSOCKS5("127.0.0.1:0", opts)
		authed := start(t, s, err)
		got := curl(t, "--proxy", "socks5h://alice:s3cret@"+authed.Addr().String(), "http://name.test/")
		if got != httpBody {
			t.Fatalf("curl through SOCKS5 with credentials = %q, want %q", got, httpBody)
		}
		if _, err := runCurl(t, "--proxy", "socks5h://alice:guess@"+authed.Addr().String(), "http://name.test/"); err == nil {
			t.Fatal("curl with a wrong password got through")
		}
		if got := authed.Stats().Failed[door.ReasonAuth]; got != 1 {
			t.Fatalf("auth failures counted %d, want 1", got)
		}
	})
	t.Run("curl http connect", func(t *testing.T) {
		got := curl(t, "-p", "--proxy", "http://"+hp.Addr().String(), "http://name.test:80/")
		if got != httpBody {
			t.Fatalf("curl through HTTP CONNECT = %q, want %q", got, httpBody)
		}
	})
	t.Run("curl http forward", func(t *testing.T) {
		got := curl(t, "--proxy", "http://"+hp.Addr().String(), "http://name.test/")
		if got != httpBody {
			t.Fatalf("curl through the HTTP proxy (absolute URL) = %q, want %q", got, httpBody)
		}
		got = curl(t, "--proxy", "http://"+hp.Addr().String(), "--data-binary", "posted body", "http://name.test:80/post?q=1")
		if want := "POST /post?q=1: posted body"; got != want {
			t.Fatalf("curl POST through the HTTP proxy = %q, want %q", got, want)
		}
		// A large body: curl sends "Expect: 100-continue" and waits for the
		// server's 100 through the proxy.
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<17) // 2 MiB
		file := t.TempDir() + "/big"
		if err := os.WriteFile(file, big, 0o600); err != nil {
			t.Fatal(err)
		}
		got = curl(t, "--proxy", "http://"+hp.Addr().String(), "--data-binary", "@"+file, "http://name.test/big")
		if want := "POST /big: " + string(big); got != want {
			t.Fatalf("curl POST of %d bytes through the HTTP proxy came back as %d bytes", len(big), len(got))
		}
	})
	t.Run("refused overlay port", func(t *testing.T) {
		if rep := socksConnect(t, socks.Addr().String(), "name.test", 81); rep != door.RepConnectionRefused {
			t.Errorf("SOCKS5 CONNECT to a closed overlay port: REP %#x, want %#x", rep, door.RepConnectionRefused)
		}
		if rep := socksConnect(t, socks.Addr().String(), "other.test", 80); rep != door.RepHostUnreachable {
			t.Errorf("SOCKS5 CONNECT to an unknown name: REP %#x, want %#x", rep, door.RepHostUnreachable)
		}
		c, err := net.Dial("tcp", hp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT name.test:81 HTTP/1.1\r\nHost: name.test:81\r\n\r\n")
		line, _ := io.ReadAll(c)
		if !bytes.HasPrefix(line, []byte("HTTP/1.1 502 ")) {
			t.Errorf("HTTP CONNECT to a closed overlay port: %q, want 502", line)
		}
		if socks.Stats().Failed[door.ReasonRefused] != 1 || hp.Stats().Failed[door.ReasonRefused] != 1 {
			t.Errorf("refusals not counted: socks %v, http %v", socks.Stats().Failed, hp.Stats().Failed)
		}
	})
	t.Run("tcp forward byte-exact", func(t *testing.T) {
		f, err := door.NewForward(door.Forward{Listen: "127.0.0.1:0", Target: "name.test:9000"}, o.opts)
		fw := start(t, f, err)
		const size = 4 << 20
		data := make([]byte, size)
		rand.Read(data)
		c, err := net.Dial("tcp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.(*net.TCPConn).CloseWrite()
			}
			werr <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("reading the echo: %v", err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("writing: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("echo through the forward: %d bytes, differ from the %d sent", len(got), len(data))
		}
		c.Close()
		testutil.EventuallyEqual(t, 10*time.Second, "the connection to end", func() int64 { return fw.Stats().Active }, 0)
		if st := fw.Stats(); st.OutBytes != size || st.InBytes != size || st.Accepted != 1 {
			t.Fatalf("stats = %+v; want 1 connection, %d bytes each way", st, size)
		}
	})
	t.Run("udp forward byte-exact", func(t *testing.T) {
		f, err := door.NewForward(door.Forward{Listen: "127.0.0.1:0", Target: "name.test:9001", Proto: "udp"}, o.opts)
		fw := start(t, f, err)
		c, err := net.Dial("udp", fw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sent := 0
		for _, size := range []int{1, 17, 512, 1000, 1400} {
			msg := make([]byte, size)
			rand.Read(msg)
			if !udpEcho(c, nil, msg) {
				t.Fatalf("%d-byte datagram through the UDP forward: no exact echo", size)
			}
			sent += size
		}
		// The last reply is counted just after it is sent.
		testutil.Eventually(t, 10*time.Second, "the counters to catch up", func() error {
			if st := fw.Stats(); st.InBytes < uint64(sent) || st.OutBytes < uint64(sent) {
				return fmt.Errorf("in %d, out %d bytes, want at least %d each", st.InBytes, st.OutBytes, sent)
			}
			return nil
		})
		if st := fw.Stats(); st.OutBytes < uint64(sent) || st.InBytes < uint64(sent) || st.Accepted != 1 {
			t.Fatalf("stats = %+v; want 1 session, ≥%d bytes each way", st, sent)
		}
	})
	t.Run("socks5 udp associate", func(t *testing.T) {
		ctl, relay := socksAssociate(t, socks.Addr().String())
		defer ctl.Close()
		uc, err := net.Dial("udp", relay.String())
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		for _, dst := range []struct {
			hdr  []byte
			name string
		}{
			{datagramHeader(0, 3, append([]byte{9}, "name.test"...), 9001), "by name"},
			{datagramHeader(0, 1, o.srv.AsSlice(), 9001), "by address"},
		} {
			msg := make([]byte, 1200)
			rand.Read(msg)
			wantHdr := datagramHeader(0, 1, o.srv.AsSlice(), 9001)
			if !udpEcho(uc, dst.hdr, msg, wantHdr...) {
				t.Fatalf("UDP ASSOCIATE %s: no exact echo with header %x", dst.name, wantHdr)
			}
		}
		before := socks.Stats().Dropped[door.ReasonFragmented]
		uc.Write(append(datagramHeader(1, 1, o.srv.AsSlice(), 9001), "fragment"...))
		testutil.EventuallyEqual(t, 10*time.Second, "the fragment to be dropped", func() uint64 { return socks.Stats().Dropped[door.ReasonFragmented] }, before+1)
		active := socks.Stats().Active
		ctl.Close()
		testutil.EventuallyEqual(t, 10*time.Second, "the association to end with its control connection", func() int64 { return socks.Stats().Active }, active-1)
	})
	socks.Close()
	hp.Close()
	for _, d := range []door.Door{socks, hp} {
		if st := d.Stats(); st.Active != 0 {
			t.Errorf("after Close: %d connections active", st.Active)
		}
	}
}

// udpEcho sends hdr+msg on c and waits for want+msg back (want is hdr
// when not given), retrying a few times: UDP may drop.
func udpEcho(c net.Conn, hdr, msg []byte, want ...byte) bool {
	if want == nil {
		want = hdr
	}
	buf := make([]byte, 65535)
	for range 5 {
		c.Write(append(append([]byte(nil), hdr...), msg...))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break
			}
			if bytes.Equal(buf[:n], append(append([]byte(nil), want...), msg...)) {
				return true
			}
		}
	}
	return false
}

func datagramHeader(frag, atyp byte, addr []byte, port uint16) []byte {
	b := append([]byte{0, 0, frag, atyp}, addr...)
	return binary.BigEndian.AppendUint16(b, port)
}

// socksHandshake opens a SOCKS5 connection, sends req and returns the
// reply code and bound address.
func socksHandshake(t *testing.T, addr string, req []byte) (net.Conn, byte, netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 0})
	buf := make([]byte, 22)
	if _, err := io.ReadFull(c, buf[:2]); err != nil || buf[0] != 5 || buf[1] != 0 {
		t.Fatalf("method reply %x, %v", buf[:2], err)
	}
	c.Write(req)
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	rep := buf[1]
	var bnd netip.AddrPort
	switch buf[3] {
	case 1:
		if _, err := io.ReadFull(c, buf[:6]); err != nil {
			t.Fatal(err)
		}
		bnd = netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[:4])), binary.BigEndian.Uint16(buf[4:6]))
	case 4:
		if _, err := io.ReadFull(c, buf[:18]); err != nil {
			t.Fatal(err)
		}
		bnd = netip.AddrPortFrom(netip.AddrFrom16([16]byte(buf[:16])), binary.BigEndian.Uint16(buf[16:18]))
	default:
		t.Fatalf("reply address type %d", buf[3])
	}
	c.SetDeadline(time.Time{})
	return c, rep, bnd
}

func socksConnect(t *testing.T, addr, host string, port uint16) byte {
	t.Helper()
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	c, rep, _ := socksHandshake(t, addr, binary.BigEndian.AppendUint16(req, port))
	c.Close()
	return rep
}

func socksAssociate(t *testing.T, addr string) (net.Conn, netip.AddrPort) {
	t.Helper()
	c, rep, bnd := socksHandshake(t, addr, []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	if rep != 0 {
		t.Fatalf("UDP ASSOCIATE: REP %#x", rep)
	}
	return c, bnd
}
