package door

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// SOCKS5 wire constants (RFC 1928).
const (
	socksVersion = 0x05

	methodNoAuth       = 0x00
	methodUserPass     = 0x02
	methodNoAcceptable = 0xff

	userPassVersion = 0x01

	cmdConnect   = 0x01
	cmdBind      = 0x02
	cmdAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// SOCKS5 reply codes (RFC 1928 section 6).
const (
	RepSucceeded            byte = 0x00
	RepGeneralFailure       byte = 0x01
	RepNotAllowed           byte = 0x02
	RepNetworkUnreachable   byte = 0x03
	RepHostUnreachable      byte = 0x04
	RepConnectionRefused    byte = 0x05
	RepTTLExpired           byte = 0x06
	RepCommandNotSupported  byte = 0x07
	RepAddrTypeNotSupported byte = 0x08
)

// socksAddr is a SOCKS5 address: an IP or a domain name, and a port.
//
//	+------+----------+----------+
//	| ATYP | DST.ADDR | DST.PORT |
//	+------+----------+----------+
//	|  1   | Variable |    2     |
//	+------+----------+----------+
//
// ATYP 0x01: 4 bytes of IPv4; 0x03: one length byte, then the name;
// 0x04: 16 bytes of IPv6.
type socksAddr struct {
	IP   netip.Addr // valid unless Name is set
	Name string
	Port uint16
}

func (a socksAddr) host() string {
	if a.Name != "" {
		return a.Name
	}
	return a.IP.String()
}

func (a socksAddr) String() string { return net.JoinHostPort(a.host(), strconv.Itoa(int(a.Port))) }

// appendTo appends a's wire form.
func (a socksAddr) appendTo(b []byte) []byte {
	switch {
	case a.Name != "":
		b = append(b, atypDomain, byte(len(a.Name)))
		b = append(b, a.Name...)
	case a.IP.Is4():
		ip := a.IP.As4()
		b = append(b, atypIPv4)
		b = append(b, ip[:]...)
	case a.IP.Is6():
		ip := a.IP.As16()
		b = append(b, atypIPv6)
		b = append(b, ip[:]...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, a.Port)
}

func addrPortToSocks(ap netip.AddrPort) socksAddr {
	return socksAddr{IP: ap.Addr().Unmap(), Port: ap.Port()}
}

// socksError is a request that gets reply code rep.
type socksError struct {
	rep    byte
	reason Reason
	err    error
}

func (e *socksError) Error() string { return e.err.Error() }
func (e *socksError) Unwrap() error { return e.err }

func malformed(format string, args ...any) error {
	return &socksError{rep: RepGeneralFailure, reason: ReasonMalformed, err: fmt.Errorf("socks5: "+format, args...)}
}

// readAddr reads ATYP, DST.ADDR and DST.PORT.
func readAddr(r io.Reader, buf []byte) (socksAddr, error) {
	var a socksAddr
	if _, err := io.ReadFull(r, buf[:1]); err != nil {
		return a, err
	}
	switch buf[0] {
	case atypIPv4:
		if _, err := io.ReadFull(r, buf[:4+2]); err != nil {
			return a, err
		}
		a.IP = netip.AddrFrom4([4]byte(buf[:4]))
		a.Port = binary.BigEndian.Uint16(buf[4:])
	case atypIPv6:
		if _, err := io.ReadFull(r, buf[:16+2]); err != nil {
			return a, err
		}
		a.IP = netip.AddrFrom16([16]byte(buf[:16])).Unmap()
		a.Port = binary.BigEndian.Uint16(buf[16:])
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return a, err
		}
		n := int(buf[0])
		if _, err := io.ReadFull(r, buf[:n+2]); err != nil {
			return a, err
		}
		name := string(buf[:n])
		if err := checkName(name); err != nil {
			return a, malformed("domain %q: %v", name, err)
		}
		// An IP literal sent as a name, bracketed or not ("[fd00::1]",
		// as some clients send an IPv6 URL's host), is that address.
		lit := name
		if len(lit) > 2 && lit[0] == '[' && lit[len(lit)-1] == ']' {
			lit = lit[1 : len(lit)-1]
		}
		if ip, err := netip.ParseAddr(lit); err == nil && ip.Zone() == "" {
			a.IP = ip.Unmap()
		} else {
			a.Name = name
		}
		a.Port = binary.BigEndian.Uint16(buf[n:])
	default:
		return a, &socksError{rep: RepAddrTypeNotSupported, reason: ReasonUnsupported,
			err: fmt.Errorf("socks5: address type %#x not supported", buf[0])}
	}
	return a, nil
}

// checkName accepts host names of printable ASCII without spaces,
// slashes or colons (an IP literal goes through too).
func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '\\' || c == '%' {
			return fmt.Errorf("byte %#x not allowed", c)
		}
	}
	return nil
}

// socksRequest is a SOCKS5 request.
//
//	+----+-----+-------+------+----------+----------+
//	|VER | CMD |  RSV  | ATYP | DST.ADDR | DST.PORT |
//	+----+-----+-------+------+----------+----------+
//	| 1  |  1  | X'00' |  1   | Variable |    2     |
//	+----+-----+-------+------+----------+----------+
type socksRequest struct {
	Cmd  byte
	Addr socksAddr
}

// readRequest reads a request. Its errors are *socksError (the request
// was read far enough to know the reply) or I/O errors.
func readRequest(r io.Reader) (socksRequest, error) {
	var req socksRequest
	buf := make([]byte, 258)
	if _, err := io.ReadFull(r, buf[:3]); err != nil {
		return req, err
	}
	if buf[0] != socksVersion {
		return req, malformed("request version %d", buf[0])
	}
	req.Cmd = buf[1]
	a, err := readAddr(r, buf)
	if err != nil {
		return req, err
	}
	req.Addr = a
	switch req.Cmd {
	case cmdConnect, cmdAssociate:
		return req, nil
	}
	return req, &socksError{rep: RepCommandNotSupported, reason: ReasonUnsupported,
		err: fmt.Errorf("socks5: command %#x not supported", req.Cmd)}
}

// appendRequest appends req's wire form (for tests and the fuzzer).
func appendRequest(b []byte, req socksRequest) []byte {
	b = append(b, socksVersion, req.Cmd, 0)
	return req.Addr.appendTo(b)
}

// readGreeting reads the client's method selection and says whether it
// offers method.
//
//	+----+----------+----------+
//	|VER | NMETHODS | METHODS  |
//	+----+----------+----------+
//	| 1  |    1     | 1 to 255 |
//	+----+----------+----------+
func readGreeting(r io.Reader, method byte) (bool, error) {
	var buf [255]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return false, err
	}
	if buf[0] != socksVersion {
		return false, malformed("%w: version %d", errBadGreeting, buf[0])
	}
	n := int(buf[1])
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return false, err
	}
	for _, m := range buf[:n] {
		if m == method {
			return true, nil
		}
	}
	return false, nil
}

// readUserPass reads a username/password request (RFC 1929).
//
//	+----+------+----------+------+----------+
//	|VER | ULEN |  UNAME   | PLEN |  PASSWD  |
//	+----+------+----------+------+----------+
//	| 1  |  1   | 1 to 255 |  1   | 1 to 255 |
//	+----+------+----------+------+----------+
func readUserPass(r io.Reader) (user, password string, err error) {
	var buf [256]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return "", "", err
	}
	if buf[0] != userPassVersion {
		return "", "", malformed("username/password version %d", buf[0])
	}
	n := int(buf[1])
	if _, err := io.ReadFull(r, buf[:n+1]); err != nil {
		return "", "", err
	}
	user = string(buf[:n])
	n = int(buf[n])
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return "", "", err
	}
	return user, string(buf[:n]), nil
}

// socksReply is the server's reply.
//
//	+----+-----+-------+------+----------+----------+
//	|VER | REP |  RSV  | ATYP | BND.ADDR | BND.PORT |
//	+----+-----+-------+------+----------+----------+
//	| 1  |  1  | X'00' |  1   | Variable |    2     |
//	+----+-----+-------+------+----------+----------+
func socksReply(rep byte, bnd socksAddr) []byte {
	return bnd.appendTo([]byte{socksVersion, rep, 0})
}

// replyFor maps a dial or resolve failure to a SOCKS5 reply code.
func replyFor(err error) byte {
	var se *socksError
	if errors.As(err, &se) {
		return se.rep
	}
	switch classify(err) {
	case ReasonNotAllowed:
		return RepNotAllowed
	case ReasonUnsupported:
		return RepAddrTypeNotSupported
	case ReasonResolve, ReasonTimeout:
		return RepHostUnreachable
	case ReasonRefused:
		return RepConnectionRefused
	case ReasonUnreachable:
		if errors.Is(err, syscall.ENETUNREACH) {
			return RepNetworkUnreachable
		}
		return RepHostUnreachable
	}
	return RepGeneralFailure
}

// SOCKS5 is a SOCKS5 server (RFC 1928), with username/password
// authentication (RFC 1929) when Options.Authenticate is set: CONNECT
// to IPv4, IPv6 and domain-name destinations (names resolved through the
// Resolver, so `curl --socks5-hostname` reaches overlay names), and UDP
// ASSOCIATE relaying datagrams between the client's host UDP socket and
// the overlay. BIND is refused with "command not supported".
type SOCKS5 struct {
	tcpDoor
}

// NewSOCKS5 returns a SOCKS5 server that will listen on listen
// ("127.0.0.1:1080"; port 0 picks one) when started.
func NewSOCKS5(listen string, opts Options) (*SOCKS5, error) {
	s := &SOCKS5{}
	if err := s.init("socks5", opts); err != nil {
		return nil, err
	}
	s.listen = listen
	return s, nil
}

// Start listens and serves in the background until Close; ctx bounds the
// start only.
func (s *SOCKS5) Start(ctx context.Context) error {
	return s.startTCP(ctx, s.handle, s.tellFull)
}

// method is the authentication method the server requires.
func (s *SOCKS5) method() byte {
	if s.opts.Authenticate != nil {
		return methodUserPass
	}
	return methodNoAuth
}

// negotiate runs method selection and, with Authenticate, RFC 1929
// authentication; it reports and counts failures itself. With check
// false (a client over the limit) any credentials pass.
func (s *SOCKS5) negotiate(c net.Conn, check bool) bool {
	m := s.method()
	ok, err := readGreeting(c, m)
	if err != nil {
		if check {
			s.failHandshake(c, err, "")
		}
		return false
	}
	if !ok {
		if check {
			s.fail(ReasonAuth, c.RemoteAddr(), "", fmt.Errorf("socks5: client does not offer method %#x", m))
		}
		c.Write([]byte{socksVersion, methodNoAcceptable})
		linger(c)
		return false
	}
	if _, err := c.Write([]byte{socksVersion, m}); err != nil {
		if check {
			s.fail(ReasonHandshake, c.RemoteAddr(), "", err)
		}
		return false
	}
	if m != methodUserPass {
		return true
	}
	user, password, err := readUserPass(c)
	if err != nil {
		if check {
			s.failHandshake(c, err, "")
		}
		return false
	}
	if check && !s.opts.Authenticate(user, password) {
		s.fail(ReasonAuth, c.RemoteAddr(), "", fmt.Errorf("socks5: user %q: bad credentials", user))
		c.Write([]byte{userPassVersion, 0x01})
		linger(c)
		return false
	}
	_, err = c.Write([]byte{userPassVersion, 0x00})
	if err != nil && check {
		s.fail(ReasonHandshake, c.RemoteAddr(), "", err)
	}
	return err == nil
}

// tellFull answers a client over MaxConns: methods, then the request gets
// "general failure".
func (s *SOCKS5) tellFull(c net.Conn) {
	if !s.negotiate(c, false) {
		return
	}
	if _, err := readRequest(c); err != nil && !errors.As(err, new(*socksError)) {
		return
	}
	c.Write(socksReply(RepGeneralFailure, socksAddr{}))
	linger(c)
}

func (s *SOCKS5) handle(c net.Conn) {
	c.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout))
	if !s.negotiate(c, true) {
		return
	}
	req, err := readRequest(c)
	if err != nil {
		s.failHandshake(c, err, req.Addr.String())
		return
	}
	// The request is in; what is left is to reach the destination (bounded
	// by DialTimeout) and to reply.
	c.SetDeadline(time.Now().Add(s.opts.DialTimeout + s.opts.HandshakeTimeout))
	switch req.Cmd {
	case cmdConnect:
		s.connect(c, req.Addr)
	case cmdAssociate:
		s.associate(c, req.Addr)
	}
}

// failHandshake replies to a bad request where it can and counts it.
func (s *SOCKS5) failHandshake(c net.Conn, err error, target string) {
	var se *socksError
	if errors.As(err, &se) {
		s.fail(se.reason, c.RemoteAddr(), target, err)
		if !errors.Is(err, errBadGreeting) {
			c.Write(socksReply(se.rep, socksAddr{}))
		}
		linger(c)
		return
	}
	s.fail(ReasonHandshake, c.RemoteAddr(), target, err)
}

// errBadGreeting marks a first message that is not SOCKS5; it gets no
// reply.
var errBadGreeting = errors.New("not a SOCKS5 greeting")

func (s *SOCKS5) connect(c net.Conn, dst socksAddr) {
	oc, err := s.dial("tcp", dst.host(), dst.Port)
	if err != nil {
		s.fail(classify(err), c.RemoteAddr(), dst.String(), err)
		c.Write(socksReply(replyFor(err), socksAddr{}))
		linger(c)
		return
	}
	if !s.track(oc) {
		return
	}
	defer s.untrack(oc)
	var bnd socksAddr
	if ap, err := netip.ParseAddrPort(oc.LocalAddr().String()); err == nil {
		bnd = addrPortToSocks(ap)
	}
	if _, err := c.Write(socksReply(RepSucceeded, bnd)); err != nil {
		s.fail(ReasonHandshake, c.RemoteAddr(), dst.String(), err)
		return
	}
	c.SetDeadline(time.Time{})
	s.log.Debug("connect", zap.Stringer("client", c.RemoteAddr()), zap.Stringer("target", dst))
	splice(c, nil, oc, s.opts.spliceTimeouts(), &s.cnt)
}
