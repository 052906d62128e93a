package door

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
var errIdle = errors.New("door: idle timeout")

// errStalled ends a splice whose data made no progress for
// ProgressTimeout.
var errStalled = errors.New("door: no progress")

// spliceTimeouts bound a splice.
type spliceTimeouts struct {
	// idle: no traffic either way for this long ends it.
	idle time.Duration
	// progress: a write either way that moves no byte for this long ends
	// it (the far side stopped taking data).
	progress time.Duration
}

// closeWriter is the half-close of *net.TCPConn, gonet.TCPConn and
// *net.UnixConn.
type closeWriter interface{ CloseWrite() error }

// splice copies client ↔ overlay until both directions end, with
// half-close: when one side's input ends, the other side's output is shut
// with CloseWrite and the other direction carries on. An error either way
// (other than EOF), no traffic either way for to.idle, or a write that
// moves nothing for to.progress, closes both: no splice outlives a peer
// that stopped. clientR, when not nil, is read instead of client (it
// holds bytes buffered during the handshake). splice closes neither conn
// on a clean end; the caller does.
func splice(client net.Conn, clientR io.Reader, overlay net.Conn, to spliceTimeouts, cnt *counters) {
	idle := to.idle
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
		pipe(overlay, out, &cnt.outBytes, to.progress, abort)
	}()
	pipe(client, in, &cnt.inBytes, to.progress, abort)
	<-done
}

// Buffers of one direction of a splice: small while it trickles or waits
// (an idle connection holds only that), large while a read fills the
// small one, so that a bulk transfer takes few reads and writes (each a
// syscall on the host side and a pass through gVisor's locks on the
// overlay side).
const (
	spliceSmall = 32 << 10
	spliceLarge = 256 << 10
)

var spliceBufs = sync.Pool{New: func() any { b := make([]byte, spliceLarge); return &b }}

// copyBulk is io.Copy with the splice's buffers: it reads src into a
// small buffer, takes a large one from spliceBufs once a read fills the
// small one and gives it back once a read would have fitted in the small
// one again. It returns nil at EOF, as io.Copy does.
func copyBulk(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, spliceSmall)
	buf := small
	var large *[]byte
	defer func() {
		if large != nil {
			spliceBufs.Put(large)
		}
	}()
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			if w != n {
				return total, io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		switch {
		case large == nil && n == len(small):
			large = spliceBufs.Get().(*[]byte)
			buf = *large
		case large != nil && n < len(small):
			spliceBufs.Put(large)
			large, buf = nil, small
		}
	}
}

// pipe copies r to dst, counting bytes, then half-closes dst, or aborts
// both conns on error or when a write makes no progress for progress.
func pipe(dst net.Conn, r *idleReader, n *atomic.Uint64, progress time.Duration, abort func()) {
	_, err := copyBulk(&progressWriter{c: dst, n: n, progress: progress}, r)
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

// progressWriter writes to c, counting bytes, and fails with errStalled
// when a write moves no byte for progress (0: no bound): each write gets
// a deadline that is pushed back as long as bytes move.
type progressWriter struct {
	c        net.Conn
	n        *atomic.Uint64
	progress time.Duration
}

func (w *progressWriter) Write(p []byte) (int, error) {
	total := 0
	for {
		if w.progress > 0 {
			w.c.SetWriteDeadline(time.Now().Add(w.progress))
		}
		n, err := w.c.Write(p[total:])
		total += n
		w.n.Add(uint64(n))
		switch {
		case err == nil || total == len(p):
			return total, nil
		case isTimeout(err) && n > 0:
			continue // it moved: a new deadline for the rest
		case isTimeout(err):
			return total, errStalled
		}
		return total, err
	}
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

// countWriter writes to w, counting bytes.
type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}
