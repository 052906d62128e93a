package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// maxRequestHeader bounds an HTTP CONNECT request's head.
const maxRequestHeader = 64 << 10

// HTTPProxy is an HTTP CONNECT proxy: `CONNECT host:port HTTP/1.1`
// opens a tunnel into the overlay (200, then bytes both ways), with names
// resolved through the Resolver. Errors are HTTP status codes: 400 for a
// malformed request, 405 for methods other than CONNECT, 403 when the
// Dialer refuses by policy, 502 when the destination cannot be reached,
// 504 when reaching it times out, 503 when the proxy is at MaxConns.
type HTTPProxy struct {
	tcpDoor
}

// NewHTTPProxy returns an HTTP CONNECT proxy that will listen on listen
// ("127.0.0.1:8118"; port 0 picks one) when started.
func NewHTTPProxy(listen string, opts Options) (*HTTPProxy, error) {
	h := &HTTPProxy{}
	if err := h.init("http-proxy", opts); err != nil {
		return nil, err
	}
	h.listen = listen
	return h, nil
}

// Start listens and serves in the background until Close; ctx bounds the
// start only.
func (h *HTTPProxy) Start(ctx context.Context) error {
	return h.startTCP(ctx, h.handle, h.tellFull)
}

// httpError is a request answered with status.
type httpError struct {
	status int
	reason Reason
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }
func (e *httpError) Unwrap() error { return e.err }

// limitedReader reads at most n bytes from r while n ≥ 0; n < 0 means
// no limit.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

var errHeaderTooLarge = errors.New("request header too large")

// readConnect reads one request and returns its CONNECT target. Its
// errors are *httpError, or I/O errors (no answer is possible).
func readConnect(br *bufio.Reader) (host string, port uint16, err error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			return "", 0, &httpError{status: http.StatusRequestHeaderFieldsTooLarge, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: %w", err)}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err) || errors.Is(err, net.ErrClosed) {
			return "", 0, err
		}
		return "", 0, &httpError{status: http.StatusBadRequest, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: %w", err)}
	}
	if req.Method != http.MethodConnect {
		return "", 0, &httpError{status: http.StatusMethodNotAllowed, reason: ReasonUnsupported,
			err: fmt.Errorf("http-proxy: method %q not supported (CONNECT only)", req.Method)}
	}
	h, p, err := net.SplitHostPort(req.Host)
	if err != nil {
		return "", 0, &httpError{status: http.StatusBadRequest, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: CONNECT %q: %w", req.Host, err)}
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, &httpError{status: http.StatusBadRequest, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: CONNECT %q: bad port", req.Host)}
	}
	if err := checkName(h); err != nil {
		return "", 0, &httpError{status: http.StatusBadRequest, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: CONNECT %q: host: %w", req.Host, err)}
	}
	return h, uint16(n), nil
}

// statusFor maps a dial or resolve failure to an HTTP status.
func statusFor(err error) int {
	switch classify(err) {
	case ReasonNotAllowed:
		return http.StatusForbidden
	case ReasonTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// writeStatus writes a complete response with a one-line text body.
func writeStatus(w io.Writer, status int, msg string, extra string) error {
	body := msg + "\n"
	_, err := fmt.Fprintf(w, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s",
		status, http.StatusText(status), len(body), extra, body)
	return err
}

// tellFull answers a client over MaxConns with 503.
func (h *HTTPProxy) tellFull(c net.Conn) {
	br := bufio.NewReader(&limitedReader{r: c, n: maxRequestHeader})
	if _, err := http.ReadRequest(br); err != nil && !errors.Is(err, errHeaderTooLarge) {
		if errors.Is(err, io.EOF) || isTimeout(err) {
			return
		}
	}
	writeStatus(c, http.StatusServiceUnavailable, "overlayd: too many connections", "Retry-After: 1\r\n")
	linger(c)
}

func (h *HTTPProxy) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(h.opts.HandshakeTimeout))
	lr := &limitedReader{r: c, n: maxRequestHeader}
	br := bufio.NewReader(lr)
	host, port, err := readConnect(br)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			extra := ""
			if he.status == http.StatusMethodNotAllowed {
				extra = "Allow: CONNECT\r\n"
			}
			h.fail(he.reason, c.RemoteAddr(), "", err)
			writeStatus(c, he.status, he.err.Error(), extra)
			linger(c)
			return
		}
		h.fail(ReasonHandshake, c.RemoteAddr(), "", err)
		return
	}
	target := net.JoinHostPort(host, strconv.Itoa(int(port)))
	oc, err := h.dial("tcp", host, port)
	if err != nil {
		h.fail(classify(err), c.RemoteAddr(), target, err)
		writeStatus(c, statusFor(err), "overlayd: "+err.Error(), "")
		linger(c)
		return
	}
	if !h.track(oc) {
		return
	}
	defer h.untrack(oc)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		h.fail(ReasonHandshake, c.RemoteAddr(), target, err)
		return
	}
	c.SetDeadline(time.Time{})
	lr.n = -1
	h.log.Debug("connect", zap.Stringer("client", c.RemoteAddr()), zap.String("target", target))
	splice(c, br, oc, h.opts.IdleTimeout, &h.cnt)
}
