package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// errIdle ends a splice with no traffic either way for IdleTimeout.
var errIdle = errors.New("proxy: idle timeout")

// closeWriter is the half-close of *net.TCPConn, gonet.TCPConn and
// *net.UnixConn.
type closeWriter interface{ CloseWrite() error }

// splice copies client ↔ overlay until both directions end, with
// half-close: when one side's input ends, the other side's output is shut
// with CloseWrite and the other direction carries on. An error either way
// (other than EOF), or no traffic either way for idle, closes both.
// clientR, when not nil, is read instead of client (it holds bytes
// buffered during the handshake). splice closes neither conn on a clean
// end; the caller does.
func splice(client net.Conn, clientR io.Reader, overlay net.Conn, idle time.Duration, cnt *counters) {
	if clientR == nil {
		clientR = client
	}
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	var once sync.Once
	abort := func() {
		once.Do(func() {
			client.Close()
			overlay.Close()
		})
	}
	out := &idleReader{c: client, r: clientR, idle: idle, last: &last}
	in := &idleReader{c: overlay, r: overlay, idle: idle, last: &last}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(overlay, out, &cnt.outBytes, abort)
	}()
	pipe(client, in, &cnt.inBytes, abort)
	<-done
}

// pipe copies r to dst, counting bytes, then half-closes dst, or aborts
// both conns on error.
func pipe(dst net.Conn, r *idleReader, n *atomic.Uint64, abort func()) {
	_, err := io.Copy(countWriter{dst, n}, r)
	if err != nil {
		abort()
		return
	}
	if cw, ok := dst.(closeWriter); ok {
		if cw.CloseWrite() != nil {
			abort()
		}
		return
	}
	abort()
}

type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

// idleReader reads r (from conn c) and fails with errIdle only when
// neither direction of a splice has moved for idle: a read deadline that
// fires while the other direction is busy is pushed back.
type idleReader struct {
	c    net.Conn
	r    io.Reader
	idle time.Duration
	last *atomic.Int64
	set  bool
}

func (ir *idleReader) Read(p []byte) (int, error) {
	if !ir.set {
		ir.set = true
		ir.c.SetReadDeadline(time.Unix(0, ir.last.Load()).Add(ir.idle))
	}
	for {
		n, err := ir.r.Read(p)
		if n > 0 {
			ir.last.Store(time.Now().UnixNano())
		}
		if err != nil && n == 0 && isTimeout(err) {
			deadline := time.Unix(0, ir.last.Load()).Add(ir.idle)
			if !time.Now().Before(deadline) {
				return 0, errIdle
			}
			ir.c.SetReadDeadline(deadline)
			continue
		}
		return n, err
	}
}

// isTimeout reports a deadline error, from the net package
// (os.ErrDeadlineExceeded) or from gVisor's gonet (a net.Error that says
// Timeout).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
