package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Listen leaves the process's umask alone: files an embedding program
// creates meanwhile get the modes its own umask gives them. (It used to
// set the umask to 0177 around the bind, process-wide.)
func TestListenLeavesUmaskAlone(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wrong atomic.Int64
	var created atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the embedding program, creating files all along
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			p := filepath.Join(files, fmt.Sprint(i%64))
			os.Remove(p)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
			if err != nil {
				continue
			}
			fi, _ := f.Stat()
			f.Close()
			created.Add(1)
			if fi.Mode().Perm() != 0o644 {
				wrong.Add(1)
			}
		}
	}()
	sock := filepath.Join(dir, "ctl.sock")
	for i := 0; i < 300 && wrong.Load() == 0; i++ {
		s, err := Listen(sock, fakeBackend{})
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		fi, err := os.Lstat(sock)
		if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("control socket: %v, %v; want a socket of mode 0600", fi.Mode(), err)
		}
		s.Close()
	}
	stop.Store(true)
	wg.Wait()
	if n := wrong.Load(); n > 0 {
		t.Errorf("%d of %d files created during Listen did not get mode 0644 from the process's umask 022", n, created.Load())
	}
	if created.Load() == 0 {
		t.Fatal("no file was created alongside Listen")
	}
	// Nothing is left beside the socket: no private directory.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "files" {
			t.Errorf("left in the socket's directory after Close: %s", e.Name())
		}
	}
}

// Even with a umask that would make it world-writable, the socket is 0600
// from the moment it has its name, and a stale socket of a dead daemon is
// replaced.
func TestSocketModeUnderOpenUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl.sock")
	// A stale socket: bound, then its listener gone without removing it.
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s, err := Listen(sock, fakeBackend{st: Status{Name: "n"}})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	st, err := NewClient(sock).Status(context.Background())
	if err != nil || st.Name != "n" {
		t.Errorf("Status through the renamed socket = %+v, %v", st, err)
	}
	if _, err := Listen(sock, fakeBackend{}); err == nil || !strings.Contains(err.Error(), "in use by a running overlayd") {
		t.Errorf("a second Listen on a live socket = %v", err)
	}
}

// slowControl answers CreateNetwork after a while, as a join or an apply
// that waits for the cluster does, and fails if its context ended.
type slowControl struct {
	fakeControl
	wait time.Duration
}

func (s *slowControl) CreateNetwork(ctx context.Context, req CreateNetwork) (NetworkInfo, error) {
	select {
	case <-time.After(s.wait):
	case <-ctx.Done():
		return NetworkInfo{}, Errorf(http.StatusServiceUnavailable, "cancelled: %v", ctx.Err())
	}
	return s.fakeControl.CreateNetwork(ctx, req)
}

// A client that sends headers and then holds the body back is answered 408
// and cut off after bodyTimeout, while a request whose work takes longer
// than that still gets its answer.
func TestBodyTimeout(t *testing.T) {
	defer func(d time.Duration) { bodyTimeout = d }(bodyTimeout)
	bodyTimeout = 300 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	b := &slowControl{fakeControl: fakeControl{nets: map[string]NetworkInfo{}}, wait: 4 * bodyTimeout}
	s, err := Listen(sock, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST /v1/networks HTTP/1.1\r\nHost: overlayd\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
	c.SetReadDeadline(time.Now().Add(10 * time.Second)) // a generous bound; the server must answer long before
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a request whose body never came (after %v): %v", time.Since(start), err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "the request body did not arrive within 300ms") {
		t.Errorf("answer %d %s, want 408 saying the body did not arrive", resp.StatusCode, body)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the connection stayed open after the 408: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := NewClient(sock).CreateNetwork(ctx, CreateNetwork{Name: "blue", CIDR: "10.1.0.0/24"})
	if err != nil || n.Name != "blue" {
		t.Errorf("a request that takes %v (longer than the body timeout) = %+v, %v", b.wait, n, err)
	}
}
