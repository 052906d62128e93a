package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 10 §1: the control API caps request bodies at 64 KiB. A body of
// 64 KiB is served; one byte more is answered 413 and never reaches the
// backend, whether its length is announced or chunked, and the server
// reads no more of it than the cap.
func TestBodyCap64KiB(t *testing.T) {
	const limit = 64 << 10
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	b := &fakeControl{nets: map[string]NetworkInfo{}}
	s, err := Listen(sock, b)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	// body is a network's JSON padded with spaces to size bytes.
	body := func(name string, size int) string {
		js := fmt.Sprintf(`{"name":%q,"cidr":"10.1.0.0/24"}`, name)
		return js + strings.Repeat(" ", size-len(js))
	}
	post := func(r io.Reader, size int64) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", "http://overlayd/v1/networks", r)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = size // -1: chunked
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST of %d bytes: %v", size, err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}

	if code, out := post(strings.NewReader(body("atcap", limit)), limit); code/100 != 2 {
		t.Errorf("a body of exactly 64 KiB: %d %s, want it served", code, out)
	}
	if _, ok := b.nets["atcap"]; !ok {
		t.Errorf("the 64 KiB request did not reach the backend")
	}
	for _, tc := range []struct {
		name string
		size int64
	}{{"announced", limit + 1}, {"chunked", -1}} {
		code, out := post(strings.NewReader(body("over-"+tc.name, limit+1)), tc.size)
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(out, "larger than 65536 bytes") {
			t.Errorf("%s body of 64 KiB + 1: %d %s, want 413 naming the cap", tc.name, code, out)
		}
		if _, ok := b.nets["over-"+tc.name]; ok {
			t.Errorf("%s body over the cap reached the backend", tc.name)
		}
	}

	// An endless body: answered 413 after at most the cap (and what the
	// connection buffers), not read for ever. The answer is the positive
	// event; what was sent by then is bounded by the socket's buffers.
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST /v1/networks HTTP/1.1\r\nHost: overlayd\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
	stop := make(chan struct{})
	sent := make(chan int64, 1)
	go func() {
		var n int64
		chunk := "1000\r\n" + strings.Repeat(" ", 0x1000) + "\r\n"
		for {
			select {
			case <-stop:
				sent <- n
				return
			default:
			}
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			w, err := io.WriteString(c, chunk)
			n += int64(w)
			if err != nil && !isTimeout(err) {
				sent <- n
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a generous bound
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	close(stop)
	if err != nil {
		t.Fatalf("no answer to an endless body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("endless body: %d, want 413", resp.StatusCode)
	}
	t.Logf("endless body: answered %d after %d bytes sent", resp.StatusCode, <-sent)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
