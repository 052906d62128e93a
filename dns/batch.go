package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// batchConn reads and writes several datagrams per system call
// (recvmmsg/sendmmsg on Linux). ipv6.Message is the same type as
// ipv4.Message, so both families' PacketConns satisfy it.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

var (
	_ batchConn = (*ipv4.PacketConn)(nil)
	_ batchConn = (*ipv6.PacketConn)(nil)
)

const (
	batchSize    = 32
	batchBufSize = 4096 // larger queries are cut and answered FORMERR
)

// asBatchConn returns a batchConn for host UDP sockets.
func asBatchConn(pc net.PacketConn) (batchConn, bool) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return nil, false
	}
	la, ok := uc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, false
	}
	if la.IP.To4() != nil {
		return ipv4.NewPacketConn(uc), true
	}
	return ipv6.NewPacketConn(uc), true
}

// readBatches is readPackets for host UDP sockets: a batch of queries per
// read, their replies in one write.
func (s *Server) readBatches(pc net.PacketConn, bc batchConn, allowed func(netip.Addr) bool) error {
	in := make([]ipv4.Message, batchSize)
	out := make([]ipv4.Message, batchSize)
	obufs := make([][]byte, batchSize)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, batchBufSize)}
		out[i].Buffers = make([][]byte, 1)
		obufs[i] = make([]byte, batchBufSize)
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("dns: read %v: %w", pc.LocalAddr(), err)
		}
		nout := 0
		for i := range n {
			m := &in[i]
			src, ok := addrOf(m.Addr)
			if !ok {
				s.dropped.Add(1)
				continue
			}
			reply, later := s.respond(allowed, src, m.Buffers[0][:m.N], false, obufs[i])
			if later != nil {
				if !s.later(pc, later, m.Addr) {
					return nil
				}
				continue
			}
			if reply != nil {
				out[nout].Buffers[0] = reply
				out[nout].Addr = m.Addr
				nout++
			}
		}
		for sent := 0; sent < nout; {
			k, err := bc.WriteBatch(out[sent:nout], 0)
			if err != nil {
				break // the clients retry; a write error is not the reader's end
			}
			sent += k
		}
	}
}
