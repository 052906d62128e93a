package dns

// This file holds the answering of one query: header checks, the access
// check, the zone or the forwarder, EDNS0, truncation and the rcode counts.

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
)

const headerSize = 12

// handle answers one query from src, checked with Options.Allowed, and
// returns the reply's wire form, or nil when no reply is due. It never
// panics on any input.
func (s *Server) handle(ctx context.Context, src netip.Addr, b []byte, tcp bool) []byte {
	return s.handleAllowed(ctx, s.allowed, src, b, tcp)
}

func (s *Server) handleAllowed(ctx context.Context, allowed func(netip.Addr) bool, src netip.Addr, b []byte, tcp bool) []byte {
	out, later := s.respond(allowed, src, b, tcp, nil)
	if later != nil {
		return later(ctx)
	}
	return out
}

// respond answers b from src without blocking; sources allowed refuses
// get REFUSED. When an upstream must be asked, it returns later instead,
// which asks and returns the reply; later does not keep b. The reply may
// be packed into buf.
func (s *Server) respond(allowed func(netip.Addr) bool, src netip.Addr, b []byte, tcp bool, buf []byte) (out []byte, later func(context.Context) []byte) {
	if len(b) < headerSize {
		s.dropped.Add(1)
		return nil, nil
	}
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&(1<<15) != 0 { // QR: a response, perhaps reflected at us
		s.dropped.Add(1)
		return nil, nil
	}
	if !allowed(src) {
		return s.headerReply(b, mdns.RcodeRefused), nil
	}
	if opcode := int(flags>>11) & 0xf; opcode != mdns.OpcodeQuery {
		return s.headerReply(b, mdns.RcodeNotImplemented), nil
	}
	req := new(mdns.Msg)
	if err := req.Unpack(b); err != nil || len(req.Question) != 1 {
		return s.headerReply(b, mdns.RcodeFormatError), nil
	}
	q := req.Question[0]
	if q.Qtype < uint16(len(s.queries)) {
		s.queries[q.Qtype].Add(1)
	} else {
		s.queries[0].Add(1)
	}
	resp := new(mdns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = s.fwd != nil
	opt := req.IsEdns0()
	size := mdns.MinMsgSize
	switch {
	case tcp:
		size = mdns.MaxMsgSize
	case opt != nil:
		size = min(max(int(opt.UDPSize()), mdns.MinMsgSize), EDNSSize)
	}
	if opt != nil && opt.Version() != 0 {
		resp.Rcode = mdns.RcodeBadVers
		resp.SetEdns0(EDNSSize, opt.Do())
		return s.pack(resp, size, buf), nil
	}

	name := strings.ToLower(q.Name)
	z := s.zone.Load()
	if a, ok := z.lookup(name, q.Qtype); ok {
		resp.Authoritative = true
		switch {
		case q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY,
			q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR:
			resp.Authoritative = false
			resp.Rcode = mdns.RcodeRefused
		default:
			resp.Rcode, resp.Answer, resp.Ns, resp.Extra = a.rcode, a.answer, a.ns, a.extra
		}
		return s.finish(req, resp, size, buf), nil
	}
	if s.fwd == nil {
		resp.Rcode = mdns.RcodeRefused
		return s.finish(req, resp, size, buf), nil
	}
	m, key, ok := s.fwd.fromCache(req)
	if ok {
		s.forwarded(req, resp, m, nil)
		return s.finish(req, resp, size, buf), nil
	}
	return nil, func(ctx context.Context) []byte {
		m, err := s.fwd.exchangeMiss(ctx, req, key)
		s.forwarded(req, resp, m, err)
		return s.finish(req, resp, size, nil)
	}
}

// forwarded fills resp from the forwarder's answer m (or SERVFAIL on err).
// m may be shared with other queries (a cache hit) and is not modified.
func (s *Server) forwarded(req, resp, m *mdns.Msg, err error) {
	if err != nil {
		resp.Rcode = mdns.RcodeServerFailure
		return
	}
	resp.Rcode, resp.Answer, resp.Ns, resp.Extra = m.Rcode, m.Answer, m.Ns, m.Extra
	opt := req.IsEdns0()
	resp.AuthenticatedData = m.AuthenticatedData && (req.AuthenticatedData || opt != nil && opt.Do())
	// A cached answer may carry another client's spelling of the name:
	// answer with the asker's, on copies.
	q := req.Question[0]
	cloned := false
	for i, rr := range resp.Answer {
		if h := rr.Header(); h.Name != q.Name && strings.EqualFold(h.Name, q.Name) {
			if !cloned {
				resp.Answer, cloned = slices.Clone(resp.Answer), true
			}
			rr = mdns.Copy(rr)
			rr.Header().Name = q.Name
			resp.Answer[i] = rr
		}
	}
}

// finish adds the OPT record the client's EDNS0 calls for and packs resp.
func (s *Server) finish(req, resp *mdns.Msg, size int, buf []byte) []byte {
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(EDNSSize, opt.Do())
	}
	return s.pack(resp, size, buf)
}

func (s *Server) pack(resp *mdns.Msg, size int, buf []byte) []byte {
	resp.Truncate(size) // compresses only when the reply would not fit otherwise
	out, err := resp.PackBuffer(buf)
	if err != nil {
		s.countRcode(mdns.RcodeServerFailure)
		bare := new(mdns.Msg)
		bare.MsgHdr = resp.MsgHdr
		bare.Rcode = mdns.RcodeServerFailure
		out, _ = bare.Pack()
		return out
	}
	s.countRcode(resp.Rcode)
	return out
}

func (s *Server) countRcode(rcode int) {
	if rcode >= 0 && rcode < len(s.rcodes)-1 {
		s.rcodes[rcode].Add(1)
	} else {
		s.rcodes[len(s.rcodes)-1].Add(1)
	}
}

// headerReply is a bare reply to the query header in req: same ID and
// opcode, RD copied, QR set, no sections.
func (s *Server) headerReply(req []byte, rcode int) []byte {
	s.countRcode(rcode)
	out := make([]byte, headerSize)
	copy(out, req[:2])
	flags := binary.BigEndian.Uint16(req[2:])
	flags = 1<<15 | flags&(0xf<<11|1<<8) | uint16(rcode&0xf)
	binary.BigEndian.PutUint16(out[2:], flags)
	return out
}
