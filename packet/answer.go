package packet

import "net/netip"

// Answer is an error the router or the balancer answers a packet with,
// named without its family: BuildAnswer writes the ICMP, ICMPv6 or TCP
// message of the packet's family.
type Answer uint8

// The answers.
const (
	// AnswerTooBig: ICMP fragmentation needed (3/4), ICMPv6 packet too
	// big (2/0), with the MTU.
	AnswerTooBig Answer = iota + 1
	// AnswerNoRoute: ICMP net unreachable (3/0), ICMPv6 no route to
	// destination (1/0).
	AnswerNoRoute
	// AnswerHostUnreachable: ICMP host unreachable (3/1), ICMPv6 address
	// unreachable (1/3).
	AnswerHostUnreachable
	// AnswerPortUnreachable: ICMP port unreachable (3/3), ICMPv6 port
	// unreachable (1/4).
	AnswerPortUnreachable
	// AnswerReset: a flow the balancer cannot serve: a TCP RST for TCP
	// (BuildTCPReset), port unreachable for UDP (BuildICMPPortUnreachable);
	// other protocols get ErrNoReply.
	AnswerReset
)

// MaxAnswerLen is the most BuildAnswer writes: an ICMPv6 error of 1280
// bytes (an ICMPv4 one is at most 576, a RST 60). A shorter out gets an
// ICMPv6 error whose quote is cut to fit.
const MaxAnswerLen = 1280

// BuildAnswer writes to out answer a about p, a packet of either family,
// from p's destination back to its source; mtu is the MTU of
// AnswerTooBig (clamped to 65535 for IPv4), ignored otherwise. It returns
// the length written, or the errors of the builder it calls (ErrNoReply
// when MayAnswer(p, network) says no).
func BuildAnswer(p *IP, network netip.Prefix, a Answer, mtu int, out []byte) (int, error) {
	var code4, code6 uint8
	switch a {
	case AnswerReset:
		switch p.Proto {
		case TCP:
			return BuildTCPReset(p, network, out)
		case UDP:
			return BuildICMPPortUnreachable(p, network, out)
		}
		return 0, ErrNoReply
	case AnswerTooBig:
		if p.v6 {
			return BuildICMPv6Error(p, network, ICMPv6PacketTooBig, 0, uint32(max(mtu, 0)), out)
		}
		return BuildICMPError(p, network, ICMPDestUnreachable, ICMPFragNeeded, uint16(min(max(mtu, 0), 65535)), out)
	case AnswerNoRoute:
		code4, code6 = ICMPNetUnreachable, ICMPv6NoRoute
	case AnswerHostUnreachable:
		code4, code6 = ICMPHostUnreachable, ICMPv6AddressUnreachable
	case AnswerPortUnreachable:
		code4, code6 = ICMPPortUnreachable, ICMPv6PortUnreachable
	default:
		return 0, ErrNoReply
	}
	if p.v6 {
		return BuildICMPv6Error(p, network, ICMPv6DestUnreachable, code6, 0, out)
	}
	return BuildICMPError(p, network, ICMPDestUnreachable, code4, 0, out)
}
