package table

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Wire format. Every message package gossip sends, whether a memberlist user
// message (deltas, bulk sync, hello) or the push/pull state, starts with a version
// byte and a type byte. Integers are unsigned varints (uvarint), strings and
// byte slices are a uvarint length followed by the bytes. Every length and
// count is checked against the limits below and the bytes left before
// anything is allocated, so a hostile or corrupt message costs at most its own
// size; any violation is a counted drop, never a panic.
//
//	message:
//	+---------+--------+-------------------------------------+
//	| version | type   | body (by type)                      |
//	| 1 byte  | 1 byte |                                     |
//	+---------+--------+-------------------------------------+
//
//	deltas body: count, entry * count
//	bulk body:   sender, network, flags (1 byte), count, entry * count
//	             (entries of the network, and the cluster-wide participation
//	             entries of it: table gossip.net, key network NUL node)
//	state body:  sender, flags (1 byte), [count, entry * count], ndigests,
//	             (network, digest 8 bytes big endian) * ndigests
//	hello body:  sender, address (memberlist's IP:port, as text)
//
//	entry:
//	+-------+---------+-----+-------+------+-------+-------+
//	| table | network | key | owner | time | flags | value |
//	| str   | str     | str | str   | uvar | 1 byte| bytes |
//	+-------+---------+-----+-------+------+-------+-------+
//	flags bit 0: deleted (a tombstone has an empty value)

const wireVersion = 1

// Message types.
const (
	msgDeltas byte = 1 // entries pushed by gossip (broadcasts)
	msgBulk   byte = 2 // a network's full state, sent point to point
	msgState  byte = 3 // push/pull state: global entries and per-network digests
	msgHello  byte = 4 // a node that just joined, to every member it knows: its name and address
)

// Bulk flags.
const (
	bulkReply byte = 1 << 0 // the receiver answers with its own entries of the network
)

// State flags.
const (
	stateHasGlobal byte = 1 << 0 // global entries included (under the size cap)
)

// Limits. An entry at the limits still fits one UDP gossip packet
// (memberlist's 1400-byte UDPBufferSize, minus encryption and framing), so a
// delta always travels as a broadcast.
const (
	MaxTableLen   = 64  // bytes in a table name
	MaxNetworkLen = 64  // bytes in a network name
	MaxKeyLen     = 192 // bytes in a key
	MaxNameLen    = 64  // bytes in a node name
	MaxValueLen   = 768 // bytes in a value

	minEntryLen = 4 + 1 + 1 + 1 // four empty strings, time, flags, empty value
)

var (
	errTruncated = errors.New("truncated")
	errTooLong   = errors.New("field too long")
	errVersion   = errors.New("unknown version")
	errType      = errors.New("unknown message type")
	errTrailing  = errors.New("trailing bytes")
	errInvalid   = errors.New("invalid entry")
)

// dropReason names a decode error for the drop counters.
func dropReason(err error) string {
	switch {
	case errors.Is(err, errTruncated):
		return "truncated"
	case errors.Is(err, errTooLong):
		return "too_long"
	case errors.Is(err, errVersion):
		return "version"
	case errors.Is(err, errType):
		return "type"
	case errors.Is(err, errTrailing):
		return "trailing"
	case errors.Is(err, errInvalid):
		return "invalid"
	}
	return "other"
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendEntry(b []byte, e *Entry) []byte {
	b = appendString(b, e.Table)
	b = appendString(b, e.Network)
	b = appendString(b, e.Key)
	b = appendString(b, e.Owner)
	b = binary.AppendUvarint(b, e.Time)
	var flags byte
	if e.Deleted {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(e.Value)))
	return append(b, e.Value...)
}

// entryLen is the encoded size of e.
func entryLen(e *Entry) int {
	n := 0
	for _, l := range []int{len(e.Table), len(e.Network), len(e.Key), len(e.Owner), len(e.Value)} {
		n += uvarintLen(uint64(l)) + l
	}
	return n + uvarintLen(e.Time) + 1
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// decoder reads the wire format from a byte slice it does not retain: every
// string and value it returns is a copy.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bytes(max int) []byte {
	l := d.uvarint()
	if d.err != nil {
		return nil
	}
	if l > uint64(max) {
		d.err = errTooLong
		return nil
	}
	if l > uint64(len(d.b)) {
		d.err = errTruncated
		return nil
	}
	v := d.b[:l:l]
	d.b = d.b[l:]
	return v
}

func (d *decoder) string(max int) string { return string(d.bytes(max)) }

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = errTruncated
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// count reads a count of items each at least min bytes long and checks it
// against what is left, so a lying count cannot force a large allocation.
func (d *decoder) count(min int) int {
	c := d.uvarint()
	if d.err != nil {
		return 0
	}
	if c > uint64(len(d.b)/min) {
		d.err = errTruncated
		return 0
	}
	return int(c)
}

func (d *decoder) entry() Entry {
	var e Entry
	e.Table = d.string(MaxTableLen)
	e.Network = d.string(MaxNetworkLen)
	e.Key = d.string(MaxKeyLen)
	e.Owner = d.string(MaxNameLen)
	e.Time = d.uvarint()
	flags := d.byte()
	v := d.bytes(MaxValueLen)
	if d.err != nil {
		return Entry{}
	}
	if flags&^1 != 0 || e.Table == "" || e.Owner == "" {
		d.err = errInvalid
		return Entry{}
	}
	e.Deleted = flags&1 != 0
	if e.Deleted && len(v) != 0 {
		d.err = errInvalid
		return Entry{}
	}
	if !e.Deleted {
		e.Value = append([]byte{}, v...)
	}
	return e
}

func (d *decoder) entries() []Entry {
	n := d.count(minEntryLen)
	if d.err != nil {
		return nil
	}
	es := make([]Entry, 0, n)
	for range n {
		e := d.entry()
		if d.err != nil {
			return nil
		}
		es = append(es, e)
	}
	return es
}

// DecodeEntry decodes one entry as encoded by appendEntry (the unit inside
// every message). The input must hold exactly one entry.
func DecodeEntry(b []byte) (Entry, error) {
	d := decoder{b: b}
	e := d.entry()
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	if d.err != nil {
		return Entry{}, fmt.Errorf("gossip: decode entry: %w", d.err)
	}
	return e, nil
}

// digest is one network's anti-entropy digest in a push/pull state.
type digest struct {
	Network string
	Sum     uint64
}

// message is any decoded message; only the fields of its Type are set.
type message struct {
	Type      byte
	Sender    string         // bulk, state, hello
	Addr      netip.AddrPort // hello
	Network   string         // bulk
	Flags     byte           // bulk, state
	Entries   []Entry        // deltas, bulk, state (global entries)
	Digests   []digest
	HasGlobal bool // state
}

func appendHeader(b []byte, typ byte) []byte { return append(b, wireVersion, typ) }

// EncodeDeltas encodes a deltas message of es.
func EncodeDeltas(es []Entry) []byte {
	n := 3
	for i := range es {
		n += entryLen(&es[i])
	}
	b := appendHeader(make([]byte, 0, n+8), msgDeltas)
	b = binary.AppendUvarint(b, uint64(len(es)))
	for i := range es {
		b = appendEntry(b, &es[i])
	}
	return b
}

// PackDeltas frames entries taken from a network's Queue (each one
// encoded entry) as one deltas message.
func PackDeltas(entries [][]byte) []byte {
	b := appendHeader(nil, msgDeltas)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for _, m := range entries {
		b = append(b, m...)
	}
	return b
}

func encodeBulk(sender, network string, flags byte, es []Entry) []byte {
	b := appendHeader(nil, msgBulk)
	b = appendString(b, sender)
	b = appendString(b, network)
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(es)))
	for i := range es {
		b = appendEntry(b, &es[i])
	}
	return b
}

// maxAddrLen bounds the text of an address in a hello.
const maxAddrLen = 64

// EncodeHello encodes a hello message: sender's name and memberlist
// address (see Hello).
func EncodeHello(sender string, addr netip.AddrPort) []byte {
	b := appendHeader(nil, msgHello)
	b = appendString(b, sender)
	return appendString(b, addr.String())
}

func encodeState(sender string, global []Entry, hasGlobal bool, ds []digest) []byte {
	b := appendHeader(nil, msgState)
	b = appendString(b, sender)
	var flags byte
	if hasGlobal {
		flags |= stateHasGlobal
	}
	b = append(b, flags)
	if hasGlobal {
		b = binary.AppendUvarint(b, uint64(len(global)))
		for i := range global {
			b = appendEntry(b, &global[i])
		}
	}
	b = binary.AppendUvarint(b, uint64(len(ds)))
	for _, d := range ds {
		b = appendString(b, d.Network)
		b = binary.BigEndian.AppendUint64(b, d.Sum)
	}
	return b
}

// isParticipation reports whether e is a participation entry of network
// (a bulk sync of the network may carry these).
func isParticipation(e *Entry, network string) bool {
	return e.Network == "" && e.Table == tableNet && strings.HasPrefix(e.Key, network+"\x00")
}

// decodeMessage decodes any message. It never panics and never retains b.
func decodeMessage(b []byte) (message, error) {
	var m message
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != wireVersion {
		d.err = errVersion
	}
	m.Type = d.byte()
	if d.err == nil {
		switch m.Type {
		case msgDeltas:
			m.Entries = d.entries()
		case msgBulk:
			m.Sender = d.string(MaxNameLen)
			m.Network = d.string(MaxNetworkLen)
			m.Flags = d.byte()
			m.Entries = d.entries()
			if d.err == nil && (m.Sender == "" || m.Flags&^bulkReply != 0) {
				d.err = errInvalid
			}
			for i := range m.Entries {
				if d.err == nil && m.Entries[i].Network != m.Network && !isParticipation(&m.Entries[i], m.Network) {
					d.err = errInvalid
				}
			}
		case msgHello:
			m.Sender = d.string(MaxNameLen)
			a := d.string(maxAddrLen)
			if d.err == nil {
				ap, err := netip.ParseAddrPort(a)
				if m.Sender == "" || err != nil || ap.Port() == 0 || !ap.Addr().IsValid() || ap.Addr().IsUnspecified() {
					d.err = errInvalid
				}
				m.Addr = ap
			}
		case msgState:
			m.Sender = d.string(MaxNameLen)
			m.Flags = d.byte()
			if d.err == nil && (m.Sender == "" || m.Flags&^stateHasGlobal != 0) {
				d.err = errInvalid
			}
			m.HasGlobal = m.Flags&stateHasGlobal != 0
			if m.HasGlobal {
				m.Entries = d.entries()
			}
			for i := range m.Entries {
				if d.err == nil && m.Entries[i].Network != "" {
					d.err = errInvalid
				}
			}
			n := d.count(1 + 8)
			if d.err == nil {
				m.Digests = make([]digest, 0, n)
			}
			for i := 0; i < n && d.err == nil; i++ {
				var dg digest
				dg.Network = d.string(MaxNetworkLen)
				dg.Sum = d.uint64()
				m.Digests = append(m.Digests, dg)
			}
		default:
			d.err = errType
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	if d.err != nil {
		return message{}, fmt.Errorf("gossip: decode message: %w", d.err)
	}
	return m, nil
}
