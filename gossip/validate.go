package gossip

import (
	"errors"
	"fmt"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Member validation.
//
// Without a key, memberlist takes any datagram that parses as an alive
// message for a member: random UDP at the gossip port (one datagram in
// 256 has the alive type byte, and its msgpack body decodes into whatever
// fields it happens to hold) or a forged one. Such a member has a binary
// name, no address, no metadata and protocol versions 0 (an alive message
// without a version list passes memberlist's own check). It is never
// removed, and as an alive member with protocol range [0, 0] it makes
// memberlist's protocol check of every later push/pull fail ("protocol
// version (2) is incompatible: [1, 0]"), so no node can join again.
//
// The guard refuses, through memberlist's AliveDelegate and MergeDelegate
// hooks, every member that is not an overlayd node: a name that is not
// 1 to MaxNameLen bytes of printable UTF-8, no unicast gossip address and
// port, metadata that is not this
// package's Meta, or protocol versions other than the ones this build
// speaks (memberlist's check of a push/pull needs every alive member to
// speak the current version of all the others; overlayd does not configure
// memberlist's versions, so every overlayd node speaks the same). A
// refused alive message is dropped before memberlist stores anything.
// Refusals are counted in Stats.Drops ("member_name", "member_addr",
// "member_meta", "member_version", "merge").
//
// This keeps garbage out; it does not authenticate anyone. A forged alive
// message with a valid name and metadata is accepted as a member: a
// cluster without a key trusts every host that can reach its gossip port.

// Reasons a member is refused, as Stats.Drops keys.
const (
	refuseName    = "member_name"
	refuseAddr    = "member_addr"
	refuseMeta    = "member_meta"
	refuseVersion = "member_version"
	refuseMerge   = "merge"
)

// memberError is why a node is not a valid overlayd member.
type memberError struct {
	reason string // one of the refuse* constants
	msg    string
}

func (e *memberError) Error() string { return "gossip: " + e.msg }

// guard holds the hardening state shared by memberlist's hooks and the
// Gossip: what a valid member looks like, refusal counts, the memberlist
// log limiter and the last join error. It is created with the config,
// before memberlist, whose hooks it is.
type guard struct {
	pmin, pmax, pcur uint8 // this build's memberlist protocol versions
	dmin, dmax, dcur uint8 // and delegate protocol versions

	logs *logLimiter

	mu      sync.Mutex        // guards the fields below
	refused map[string]uint64 // by reason
	joinErr string            // last failed Join attempt, "" after a success
}

var (
	_ memberlist.AliveDelegate = (*guard)(nil)
	_ memberlist.MergeDelegate = (*guard)(nil)
)

func newGuard(ml *memberlist.Config, logs *logLimiter) *guard {
	return &guard{
		pmin: memberlist.ProtocolVersionMin, pmax: memberlist.ProtocolVersionMax, pcur: ml.ProtocolVersion,
		dmin: ml.DelegateProtocolMin, dmax: ml.DelegateProtocolMax, dcur: ml.DelegateProtocolVersion,
		logs:    logs,
		refused: map[string]uint64{},
	}
}

// NotifyAlive is memberlist's AliveDelegate: an error drops the alive
// message (memberlist logs it at WARN, rate-limited by the logLimiter).
// It runs under memberlist's node lock: it only checks and counts.
func (gd *guard) NotifyAlive(n *memberlist.Node) error {
	if err := gd.check(n); err != nil {
		gd.refuse(err.reason)
		return err
	}
	return nil
}

// NotifyMerge is memberlist's MergeDelegate, called on both ends of a
// join with the other side's member list (verifyProtocol has already
// passed). It refuses a cluster that holds no overlayd node at all (the
// seed runs something else on that port); single invalid members are
// counted and left to NotifyAlive, which drops them one by one.
func (gd *guard) NotifyMerge(peers []*memberlist.Node) error {
	var first *memberError
	valid := 0
	for _, n := range peers {
		if err := gd.check(n); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		valid++
	}
	if valid == 0 && len(peers) > 0 {
		gd.refuse(refuseMerge)
		return fmt.Errorf("gossip: refusing to merge with a cluster of %d members none of which is an overlayd node (%v)", len(peers), first)
	}
	return nil
}

func (gd *guard) refuse(reason string) {
	gd.mu.Lock()
	gd.refused[reason]++
	gd.mu.Unlock()
}

// check reports why n is not an overlayd node, or nil.
func (gd *guard) check(n *memberlist.Node) *memberError {
	if err := CheckName(n.Name); err != nil {
		return &memberError{refuseName, err.Error()}
	}
	if a := nodeAddr(n); !a.IsValid() || a.Port() == 0 || a.Addr().IsUnspecified() || a.Addr().IsMulticast() {
		return &memberError{refuseAddr, fmt.Sprintf("member %q has no usable gossip address (%v port %d)", n.Name, n.Addr, n.Port)}
	}
	if len(n.Meta) == 0 {
		return &memberError{refuseMeta, fmt.Sprintf("member %q has no node metadata: not an overlayd node", n.Name)}
	}
	m, err := decodeMeta(n.Meta)
	if err == nil {
		err = m.check()
	}
	if err != nil {
		return &memberError{refuseMeta, fmt.Sprintf("member %q: %v", n.Name, err)}
	}
	if n.PMin < gd.pmin || n.PMin > gd.pcur || n.PCur != gd.pcur || n.PMax < gd.pcur ||
		n.DMin > gd.dcur || n.DCur != gd.dcur || n.DMax < gd.dcur {
		return &memberError{refuseVersion, fmt.Sprintf("member %q speaks memberlist protocol %d [%d, %d], delegate %d [%d, %d]; this node speaks %d, delegate %d",
			n.Name, n.PCur, n.PMin, n.PMax, n.DCur, n.DMin, n.DMax, gd.pcur, gd.dcur)}
	}
	return nil
}

// CheckName says whether s may name a node: 1 to MaxNameLen bytes of printable UTF-8 (no control
// characters, NUL included).
func CheckName(s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("node name %q must be 1 to %d bytes", s, MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("node name %q is not UTF-8", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("node name %q holds a control or unprintable character", s)
		}
	}
	return nil
}

var errMetaVTEP = errors.New("gossip: node metadata: VTEP has no port or an unusable address")

// check validates decoded metadata beyond its encoding: a VTEP, when set,
// is a unicast address with a port, and the version is printable.
func (m Meta) check() error {
	if m.VTEP.IsValid() {
		a := m.VTEP.Addr()
		if m.VTEP.Port() == 0 || a.IsUnspecified() || a.IsMulticast() {
			return errMetaVTEP
		}
	}
	if !utf8.ValidString(m.Version) {
		return fmt.Errorf("gossip: node metadata: version %q is not UTF-8", m.Version)
	}
	for _, r := range m.Version {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("gossip: node metadata: version %q holds an unprintable character", m.Version)
		}
	}
	return nil
}
