package door

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// maxRequestHeader bounds an HTTP CONNECT request's head.
const maxRequestHeader = 64 << 10

// HTTPProxy is an HTTP proxy into the overlay: `CONNECT host:port`
// opens a tunnel (200, then bytes both ways), and a request for an
// absolute http:// URL is forwarded (one request per client connection),
// with names resolved through the Resolver. Errors are HTTP status
// codes: 400 for a malformed or non-proxy request, 407 without valid
// credentials (when Options.Authenticate is set), 403 when the Dialer
// refuses by policy, 502 when the destination cannot be reached, 504 when
// reaching it times out, 503 when the proxy is at MaxConns.
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

// proxyRequest is a request the proxy serves: a CONNECT tunnel, or a
// plain HTTP request in absolute form to forward.
type proxyRequest struct {
	req     *http.Request
	connect bool
	host    string
	port    uint16
}

func badRequest(format string, args ...any) error {
	return &httpError{status: http.StatusBadRequest, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: "+format, args...)}
}

// readProxyRequest reads one request head. Its errors are *httpError, or
// I/O errors (no answer is possible).
func readProxyRequest(br *bufio.Reader) (*proxyRequest, error) {
	hint := connectHint(br)
	req, err := http.ReadRequest(br)
	if err != nil {
		if hint != nil {
			return nil, badRequest("CONNECT %w", hint)
		}
		if errors.Is(err, errHeaderTooLarge) {
			return nil, &httpError{status: http.StatusRequestHeaderFieldsTooLarge, reason: ReasonMalformed, err: fmt.Errorf("http-proxy: %w", err)}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err) || errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		return nil, badRequest("%w", err)
	}
	pr := &proxyRequest{req: req, connect: req.Method == http.MethodConnect}
	var hostport string
	if pr.connect {
		hostport = req.Host
	} else {
		if !req.URL.IsAbs() || req.URL.Scheme != "http" || req.URL.Host == "" {
			req.Body.Close()
			return nil, badRequest("%s %q is not a proxy request (CONNECT host:port, or an absolute http:// URL)", req.Method, req.RequestURI)
		}
		hostport = req.URL.Host
		if req.URL.Port() == "" {
			hostport = net.JoinHostPort(req.URL.Hostname(), "80")
		}
	}
	h, p, err := splitHostPort(hostport)
	if err != nil {
		return nil, badRequest("%s %w", req.Method, err)
	}
	pr.host, pr.port = h, p
	return pr, nil
}

// connectHint looks at the request line waiting in br: for "CONNECT T"
// with T an IPv6 address and port without brackets, which Go's parser
// refuses as "invalid port", it returns the error that shows the
// bracketed form (bracketHint); nil otherwise. It consumes nothing.
func connectHint(br *bufio.Reader) error {
	if _, err := br.Peek(1); err != nil {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	rest, ok := bytes.CutPrefix(b, []byte("CONNECT "))
	if !ok {
		return nil
	}
	target, _, _ := bytes.Cut(rest, []byte(" "))
	if bytes.Count(target, []byte(":")) < 2 || bytes.IndexByte(target, '[') >= 0 {
		return nil
	}
	return bracketHint(string(target))
}

// proxyAuth returns the credentials of a Proxy-Authorization: Basic header.
func proxyAuth(h http.Header) (user, password string, ok bool) {
	v := h.Get("Proxy-Authorization")
	scheme, cred, found := strings.Cut(v, " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(b), ":")
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
	pr, err := readProxyRequest(br)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			h.fail(he.reason, c.RemoteAddr(), "", err)
			writeStatus(c, he.status, he.err.Error(), "")
			linger(c)
			return
		}
		h.fail(ReasonHandshake, c.RemoteAddr(), "", err)
		return
	}
	// The request head is in; what is left is to reach the destination
	// (bounded by DialTimeout) and to reply.
	c.SetDeadline(time.Now().Add(h.opts.DialTimeout + h.opts.HandshakeTimeout))
	target := net.JoinHostPort(pr.host, strconv.Itoa(int(pr.port)))
	if h.opts.Authenticate != nil {
		user, password, ok := proxyAuth(pr.req.Header)
		if !ok || !h.opts.Authenticate(user, password) {
			h.fail(ReasonAuth, c.RemoteAddr(), target, fmt.Errorf("http-proxy: user %q: bad or missing credentials", user))
			writeStatus(c, http.StatusProxyAuthRequired, "overlayd: proxy authentication required",
				"Proxy-Authenticate: Basic realm=\"overlayd\"\r\n")
			linger(c)
			return
		}
	}
	oc, err := h.dial("tcp", pr.host, pr.port)
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
	lr.n = -1
	if !pr.connect {
		h.forward(c, br, oc, pr.req, target)
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		h.fail(ReasonHandshake, c.RemoteAddr(), target, err)
		return
	}
	c.SetDeadline(time.Time{})
	h.log.Debug("connect", zap.Stringer("client", c.RemoteAddr()), zap.String("target", target))
	splice(c, br, oc, h.opts.spliceTimeouts(), &h.cnt)
}

// hopHeaders are the hop-by-hop headers a proxy drops (RFC 9110 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Upgrade",
}

func removeHopHeaders(hd http.Header) {
	for _, f := range hd.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				hd.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		hd.Del(name)
	}
}

// forward relays one plain HTTP request and its response, then closes
// the client connection: one request per connection, the whole exchange
// bounded by IdleTimeout.
func (h *HTTPProxy) forward(c net.Conn, br *bufio.Reader, oc net.Conn, req *http.Request, target string) {
	deadline := time.Now().Add(h.opts.IdleTimeout)
	c.SetDeadline(deadline)
	oc.SetDeadline(deadline)
	removeHopHeaders(req.Header)
	req.Close = true // ask the server to close after its response
	req.RequestURI = ""
	h.log.Debug("forward", zap.Stringer("client", c.RemoteAddr()), zap.String("target", target), zap.String("method", req.Method))
	// Send the request (and its body, read from br) while reading the
	// response, so that a server that answers early does not deadlock us.
	werr := make(chan error, 1)
	go func() { werr <- req.Write(countWriter{oc, &h.cnt.outBytes}) }()
	defer func() {
		oc.Close()
		<-werr
	}()
	obr := bufio.NewReader(oc)
	for {
		resp, err := http.ReadResponse(obr, req)
		if err != nil {
			h.fail(ReasonDial, c.RemoteAddr(), target, err)
			writeStatus(c, http.StatusBadGateway, "overlayd: reading the response: "+err.Error(), "")
			linger(c)
			return
		}
		removeHopHeaders(resp.Header)
		interim := resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols
		if !interim {
			resp.Close = true
		}
		err = resp.Write(countWriter{c, &h.cnt.inBytes})
		resp.Body.Close()
		if err != nil || !interim {
			return
		}
	}
}
