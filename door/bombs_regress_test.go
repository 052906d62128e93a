package door

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/overlayd/overlayd/internal/testutil"
)

// dialCount is how many dials d has been asked for.
func (d *fakeDialer) dialCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials)
}

// sendBomb writes head, then body (if any) until the server stops
// reading or closes: a writer that never blocks the test.
func sendBomb(c net.Conn, head string, body func(w io.Writer) error) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.WriteString(c, head); err != nil || body == nil {
			return
		}
		for {
			c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if err := body(c); err != nil {
				return
			}
		}
	}()
	return done
}

// Issue 10 §1: header bombs at the HTTP proxy door. A head of many small
// lines, an endless request line, an endless header value and a header
// dripped out byte by byte are each answered (431, or closed at the
// handshake timeout), counted, and never dialled; a head just under the
// 64 KiB limit is served.
func TestHTTPHeaderBombs(t *testing.T) {
	noLeaks(t)
	opts, d := testOptions(t)
	opts.HandshakeTimeout = 500 * time.Millisecond
	h := startHTTP(t, opts)
	const limit = 64 << 10
	line := "CONNECT 10.99.2.1:80 HTTP/1.1\r\n"
	repeat := func(s string) func(io.Writer) error {
		return func(w io.Writer) error { _, err := io.WriteString(w, s); return err }
	}
	tests := []struct {
		name   string
		head   string
		body   func(io.Writer) error // written for ever after head
		status int                   // 0: closed without an answer
		reason Reason
	}{
		// Cut by the limit within "X-A: b", the head is answered 400
		// ("malformed MIME header: missing colon"), not 431: net/textproto
		// takes the cut line for a whole one. Either refuses it.
		{"many header lines", line + strings.Repeat("X-A: b\r\n", 2*limit/8) + "\r\n", nil, 400, ReasonMalformed},
		{"endless header lines", line, repeat(strings.Repeat("X-Bomb: lol\r\n", 256)), 431, ReasonMalformed},
		{"endless request line", "CONNECT ", repeat(strings.Repeat("a", 4096)), 431, ReasonMalformed},
		{"endless header value", line + "X: ", repeat(strings.Repeat("a", 4096)), 431, ReasonMalformed},
		{"dripped header", line + "X: ", func(w io.Writer) error {
			time.Sleep(50 * time.Millisecond)
			_, err := io.WriteString(w, "a")
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}, 0, ReasonHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, dials := h.Stats().Failed[tt.reason], d.dialCount()
			c, err := net.Dial("tcp", h.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sent := sendBomb(c, tt.head, tt.body)
			c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a generous bound
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			switch {
			case tt.status == 0 && err == nil:
				t.Errorf("answered %d, want the connection closed at the handshake timeout", resp.StatusCode)
			case tt.status == 0 && errors.Is(err, os.ErrDeadlineExceeded):
				t.Errorf("the door held the dripping client for 30 s (handshake timeout %v)", opts.HandshakeTimeout)
			case tt.status != 0 && err != nil:
				t.Fatalf("no answer: %v", err)
			case tt.status != 0 && resp.StatusCode != tt.status && !(tt.status == 400 && resp.StatusCode == 431):
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("answered %d %q, want %d", resp.StatusCode, b, tt.status)
			}
			if err == nil {
				resp.Body.Close()
				if _, err := io.Copy(io.Discard, br); err != nil {
					t.Errorf("the connection stayed open after the answer: %v", err)
				}
			}
			c.Close()
			<-sent
			testutil.EventuallyEqual(t, 5*time.Second, "failure counted as "+tt.reason.String(), func() uint64 { return h.Stats().Failed[tt.reason] }, before+1)
			if n := d.dialCount(); n != dials {
				t.Errorf("the door dialled for a bomb: %d dials, want %d", n, dials)
			}
		})
	}
	// Just under the limit: served.
	pad := limit - len(line) - len("X-Pad: \r\n\r\n") - 16
	resp, _, _ := httpRequest(t, h.Addr().String(), line+"X-Pad: "+strings.Repeat("p", pad)+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("a head of %d bytes (under the 64 KiB limit): %d, want 200", limit-16, resp.StatusCode)
	}
}

// failReply is the reply of a failed request: rep, and a zero IPv4
// bound address.
func failReply(rep byte) []byte { return []byte{5, rep, 0, atypIPv4, 0, 0, 0, 0, 0, 0} }

// Issue 10 §1: SOCKS5 with bad lengths. Lengths that promise more than
// is sent, or that sit at the top of their range, are a counted
// handshake failure or a clear reply, never a dial nor a hang.
func TestSOCKSBadLengths(t *testing.T) {
	noLeaks(t)
	opts, d := testOptions(t)
	opts.HandshakeTimeout = 300 * time.Millisecond
	s := startSOCKS(t, opts)
	authOpts := opts
	authOpts.Authenticate = func(user, password string) bool { return user == "alice" && password == "s3cret" }
	auth := startSOCKS(t, authOpts)
	hello := []byte{5, 1, 0}
	long := strings.Repeat("a", 255)
	longName := strings.Repeat("abcdefg.", 31) + "abcdefg" // 255 bytes, labels of 7
	tests := []struct {
		name      string
		srv       *SOCKS5
		send      []byte
		closeSend bool   // half-close after send (else hold the connection open)
		want      []byte // the replies before the door closes
		reason    Reason
	}{
		{"255 methods, 3 sent, held", s, []byte{5, 255, 0, 1, 2}, false, nil, ReasonHandshake},
		{"255 methods, 3 sent, closed", s, []byte{5, 255, 0, 1, 2}, true, nil, ReasonHandshake},
		{"name of 255 bytes, 10 sent", s, append(append(hello, 5, 1, 0, atypDomain, 255), "0123456789"...), true, []byte{5, 0}, ReasonHandshake},
		{"name of 255 bytes, 10 sent, held", s, append(append(hello, 5, 1, 0, atypDomain, 255), "0123456789"...), false, []byte{5, 0}, ReasonHandshake},
		{"name of 255 bytes, no port", s, append(append(hello, 5, 1, 0, atypDomain, 255), longName...), true, []byte{5, 0}, ReasonHandshake},
		{"name of one 255-byte label, unknown", s, append(append(append(hello, 5, 1, 0, atypDomain, 255), long...), 0, 80), true, append([]byte{5, 0}, failReply(RepHostUnreachable)...), ReasonResolve},
		{"name of 255 bytes, unknown", s, append(append(append(hello, 5, 1, 0, atypDomain, 255), longName...), 0, 80), true, append([]byte{5, 0}, failReply(RepHostUnreachable)...), ReasonResolve},
		{"ipv6 address cut short", s, append(hello, 5, 1, 0, atypIPv6, 1, 2, 3), true, []byte{5, 0}, ReasonHandshake},
		{"user of 255 bytes, 5 sent", auth, append([]byte{5, 1, 2, 1, 255}, "alice"...), true, []byte{5, 2}, ReasonHandshake},
		{"user of 255 bytes, 5 sent, held", auth, append([]byte{5, 1, 2, 1, 255}, "alice"...), false, []byte{5, 2}, ReasonHandshake},
		{"password of 255 bytes, none sent", auth, append([]byte{5, 1, 2, 1, 5}, "alice\xff"...), true, []byte{5, 2}, ReasonHandshake},
		{"user and password of 255 bytes", auth, append(append(append([]byte{5, 1, 2, 1, 255}, long...), 255), long...), true, []byte{5, 2, 1, 1}, ReasonAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, dials := tt.srv.Stats().Failed[tt.reason], d.dialCount()
			c, err := net.Dial("tcp", tt.srv.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tt.send)
			if tt.closeSend {
				c.(*net.TCPConn).CloseWrite()
			}
			c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a generous bound
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("after %d bytes: %v (the door held the connection)", len(tt.send), err)
			}
			if string(got) != string(tt.want) {
				t.Errorf("replies %x, want %x and close", got, tt.want)
			}
			testutil.EventuallyEqual(t, 5*time.Second, "failure counted as "+tt.reason.String(), func() uint64 { return tt.srv.Stats().Failed[tt.reason] }, before+1)
			if n := d.dialCount(); n != dials {
				t.Errorf("the door dialled: %d dials, want %d", n, dials)
			}
		})
	}
}

// Issue 10 §1: door limits against clients that open connections and
// send nothing. Stalled handshakes count against MaxConns (a client over
// it is refused at once, not queued), and each is cut at the handshake
// timeout, after which the door serves again.
func TestDoorLimitStalledHandshakes(t *testing.T) {
	noLeaks(t)
	opts, _ := testOptions(t)
	opts.MaxConns = 3
	opts.HandshakeTimeout = 500 * time.Millisecond
	s := startSOCKS(t, opts)
	h := startHTTP(t, opts)
	for _, door := range []struct {
		name  string
		addr  string
		stats func() Stats
		use   func() bool // one good request
	}{
		{"socks5", s.Addr().String(), s.Stats, func() bool {
			c, rep := socksConnect(t, s.Addr().String(), connectReq(atypIPv4, ip4, 80))
			c.Close()
			return rep == 0
		}},
		{"http", h.Addr().String(), h.Stats, func() bool {
			resp, _, c := httpRequest(t, h.Addr().String(), "CONNECT 10.99.2.1:80 HTTP/1.1\r\n\r\n")
			c.Close()
			return resp.StatusCode == 200
		}},
	} {
		t.Run(door.name, func(t *testing.T) {
			refused := door.stats().Refused
			var stalled []net.Conn
			for range opts.MaxConns {
				c, err := net.Dial("tcp", door.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				stalled = append(stalled, c)
			}
			testutil.EventuallyEqual(t, 5*time.Second, "the stalled clients admitted", func() int64 { return door.stats().Active }, int64(opts.MaxConns))
			if door.use() {
				t.Error("a request beyond MaxConns stalled clients was served, want it refused")
			}
			if got := door.stats().Refused; got != refused+1 {
				t.Errorf("refused %d, want %d", got, refused+1)
			}
			for i, c := range stalled {
				c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a generous bound
				if _, err := io.ReadAll(c); err != nil {
					t.Fatalf("stalled client %d: %v, want closed at the handshake timeout", i, err)
				}
			}
			testutil.EventuallyEqual(t, 5*time.Second, "the stalled slots freed", func() int64 { return door.stats().Active }, 0)
			if !door.use() {
				t.Error("after the stalled clients were cut, a request was not served")
			}
		})
	}
}
