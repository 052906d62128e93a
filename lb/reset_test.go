package lb

import (
	"net/netip"
	"testing"
)

func TestResetBuildersFollowMayAnswer(t *testing.T) {
	vp := netip.AddrPortFrom(vip, 80)
	host255 := netip.AddrPortFrom(netip.MustParseAddr("10.1.0.255"), 4000)
	if _, err := BuildTCPReset(tcpPkt(host255, vp, fSYN), make([]byte, 40)); err != nil {
		t.Errorf("BuildTCPReset refused a client at %v: %v", host255, err)
	}
	if _, err := BuildICMPPortUnreachable(udpPkt(host255, netip.AddrPortFrom(vip, 53)), make([]byte, 576)); err != nil {
		t.Errorf("BuildICMPPortUnreachable refused a client at %v: %v", host255, err)
	}
	mcast := netip.AddrPortFrom(netip.MustParseAddr("224.0.0.9"), 4000)
	if _, err := BuildTCPReset(tcpPkt(mcast, vp, fSYN), make([]byte, 40)); err == nil {
		t.Errorf("BuildTCPReset answered %v", mcast)
	}
}
