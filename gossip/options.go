package gossip

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"log"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Profiles of timings.
const (
	// ProfileDefault is memberlist.DefaultLANConfig: probe every 1 s (500 ms
	// timeout), gossip every 200 ms to 3 nodes, suspicion 4*log(N+1) probe
	// intervals, push/pull every 30 s. A dead node is declared in about 5 s
	// on a 10-node LAN; a delta reaches 100 nodes in about a second.
	// Tombstones are kept 30 minutes, dead owners' entries 24 hours, and
	// lost seeds and dead nodes are re-joined every 10 s.
	ProfileDefault = "default"
	// ProfileTest is for tests in one process: probe every 100 ms (50 ms
	// timeout), gossip every 20 ms, suspicion 2*log(N+1) probe intervals,
	// push/pull every 500 ms, TCP timeout 1 s, tombstones kept 5 s, dead
	// owners' entries 30 s, re-join every 200 ms. Failure detection takes
	// well under a second. Not for real networks: it is chatty and
	// mistakes a slow peer for a dead one.
	ProfileTest = "test"
)

// Options configures a Gossip instance. The zero value of a field means its
// default, given in the field comment.
type Options struct {
	// Name is the node name, unique in the cluster and stable across
	// restarts (entries are owned by name). Required; 1 to MaxNameLen bytes of printable UTF-8.
	Name string
	// BindAddr is the IP:port memberlist listens on (UDP and TCP), IPv4
	// or IPv6 ("[2001:db8::1]:7946"); port 0 picks one. Default
	// "0.0.0.0:7946". Ignored when Transport is set.
	BindAddr string
	// AdvertiseAddr is the IP:port peers should use to reach this node.
	// Default: derived from BindAddr (or the transport): BindAddr itself
	// when its IP is specified; for 0.0.0.0 a private IPv4 address of
	// this host (memberlist's choice); for [::] a unique local IPv6
	// address of this host (fc00::/7), else a global one, from the first
	// interface that is up and has one.
	AdvertiseAddr string
	// Meta is this node's VTEP and version, sent in its node metadata.
	// A VTEP, when set, is a unicast address with a port; the version is
	// printable (peers refuse a member whose metadata is not so).
	Meta Meta
	// Keys are AES-256-GCM gossip keys (32 bytes each); the first is used to
	// encrypt, all are tried to decrypt. With keys, unencrypted or
	// wrongly encrypted traffic is refused. Default: no encryption.
	Keys [][]byte
	// Profile is ProfileDefault or ProfileTest. Default ProfileDefault.
	Profile string
	// Logger receives this package's logs; memberlist's own logs go
	// through zap.NewStdLog. Default zap.NewNop().
	Logger *zap.Logger
	// TombstoneGrace is how long a tombstone is kept before it is reaped.
	// A node partitioned for longer than this may bring a deleted entry
	// back. Default 30 min (test profile 5 s).
	TombstoneGrace time.Duration
	// DeadOwnerGrace is how long the entries of a dead node are kept
	// (hidden) waiting for it to come back. Default 24 h (test profile 30 s).
	DeadOwnerGrace time.Duration
	// PushPullInterval is the period of memberlist's full-state
	// anti-entropy exchange with one random node. Default 30 s (test 500 ms).
	PushPullInterval time.Duration
	// MaxPushPullBytes caps the push/pull state and each bulk-sync message.
	// When the cluster-wide entries do not fit, the state carries digests
	// only, and networks whose digests differ are synced by bulk messages
	// of at most this size each. Default 512 KiB.
	MaxPushPullBytes int
	// RejoinInterval is the period at which lost seeds and dead nodes are
	// joined again. Default 10 s (test 200 ms).
	RejoinInterval time.Duration
	// WatchBuffer is the number of events a watcher may fall behind before
	// it gets an EventResync instead. Default 1024.
	WatchBuffer int
	// Transport replaces the network transport (tests use
	// gossiptest.Network). Default nil: real UDP and TCP sockets on BindAddr.
	Transport memberlist.Transport
	// Discover, when set, announces this node and joins the nodes it
	// finds that are not members yet (discover.go; gossip/mdns on a LAN,
	// AnnounceOnly when seeds are given). Default nil: seeds only.
	Discover Discoverer
}

// LoadKeyFile reads gossip keys from a file: one base64-encoded 32-byte key
// per line; blank lines and lines starting with '#' are ignored; the first
// key is the primary one.
func LoadKeyFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip: key file: %w", err)
	}
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := string(bytes.TrimSpace(sc.Bytes()))
		if s == "" || s[0] == '#' {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("gossip: key file %s line %d: not base64 (generate a key with `head -c 32 /dev/urandom | base64`)", path, line)
		}
		if len(k) != 32 {
			return nil, fmt.Errorf("gossip: key file %s line %d: key is %d bytes, want 32 (AES-256)", path, line, len(k))
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("gossip: key file %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip: key file %s holds no key", path)
	}
	return keys, nil
}

// config is Options with defaults applied, plus the memberlist config.
type config struct {
	Options
	ml             *memberlist.Config
	guard          *guard // memberlist's Alive and Merge hooks, log limiter, join state
	gossipInterval time.Duration
	gossipNodes    int
	reapInterval   time.Duration
}

func (o Options) config() (*config, error) {
	c := &config{Options: o}
	if err := CheckName(o.Name); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	var ml *memberlist.Config
	switch o.Profile {
	case "", ProfileDefault:
		ml = memberlist.DefaultLANConfig()
		ml.DeadNodeReclaimTime = 30 * time.Second
		def(&c.TombstoneGrace, 30*time.Minute)
		def(&c.DeadOwnerGrace, 24*time.Hour)
		def(&c.RejoinInterval, 10*time.Second)
		c.reapInterval = 10 * time.Second
	case ProfileTest:
		ml = memberlist.DefaultLANConfig()
		ml.ProbeInterval = 100 * time.Millisecond
		ml.ProbeTimeout = 50 * time.Millisecond
		ml.GossipInterval = 20 * time.Millisecond
		ml.SuspicionMult = 2
		ml.PushPullInterval = 500 * time.Millisecond
		ml.TCPTimeout = time.Second
		ml.GossipToTheDeadTime = 2 * time.Second
		ml.DeadNodeReclaimTime = 100 * time.Millisecond
		def(&c.TombstoneGrace, 5*time.Second)
		def(&c.DeadOwnerGrace, 30*time.Second)
		def(&c.RejoinInterval, 200*time.Millisecond)
		c.reapInterval = 250 * time.Millisecond
	default:
		return nil, fmt.Errorf("gossip: unknown profile %q (want %q or %q)", o.Profile, ProfileDefault, ProfileTest)
	}
	if o.PushPullInterval > 0 {
		ml.PushPullInterval = o.PushPullInterval
	}
	c.PushPullInterval = ml.PushPullInterval
	def(&c.MaxPushPullBytes, 512<<10)
	def(&c.WatchBuffer, 1024)
	c.gossipInterval = ml.GossipInterval
	c.gossipNodes = ml.GossipNodes

	ml.Name = o.Name
	lim := newLogLimiter(logBurst, logRate)
	ml.Logger = log.New(levelWriter{c.Logger.Named("memberlist"), lim}, "", 0)
	if o.Transport != nil {
		ml.Transport = o.Transport
	} else {
		bind := o.BindAddr
		if bind == "" {
			bind = "0.0.0.0:7946"
		}
		ap, err := netip.ParseAddrPort(bind)
		if err != nil {
			return nil, fmt.Errorf("gossip: bind address %q: want IP:port, e.g. 192.0.2.1:7946 or [2001:db8::1]:7946", bind)
		}
		ml.BindAddr = ap.Addr().Unmap().String()
		ml.BindPort = int(ap.Port())
		ml.AdvertisePort = int(ap.Port())
		if ap.Addr() == netip.IPv6Unspecified() && o.AdvertiseAddr == "" {
			// memberlist would advertise "::" itself.
			ip, err := advertiseIPv6()
			if err != nil {
				return nil, fmt.Errorf("gossip: bind address %v: %w", ap, err)
			}
			ml.AdvertiseAddr = ip.String()
		}
	}
	if o.AdvertiseAddr != "" {
		ap, err := netip.ParseAddrPort(o.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("gossip: advertise address %q: want IP:port, e.g. 192.0.2.1:7946 or [2001:db8::1]:7946", o.AdvertiseAddr)
		}
		ml.AdvertiseAddr = ap.Addr().Unmap().String()
		ml.AdvertisePort = int(ap.Port())
	}
	if len(o.Keys) > 0 {
		for i, k := range o.Keys {
			if len(k) != 32 {
				return nil, fmt.Errorf("gossip: key %d is %d bytes, want 32 (AES-256)", i, len(k))
			}
		}
		kr, err := memberlist.NewKeyring(o.Keys, o.Keys[0])
		if err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		ml.Keyring = kr
		ml.GossipVerifyIncoming = true
		ml.GossipVerifyOutgoing = true
	}
	// Members that are not overlayd nodes are refused (validate.go); this
	// node must pass the same checks (its name is checked above), or
	// memberlist would refuse itself.
	if err := o.Meta.check(); err != nil {
		return nil, err
	}
	c.guard = newGuard(ml, lim)
	ml.Alive = c.guard
	ml.Merge = c.guard
	c.ml = ml
	return c, nil
}

// levelWriter logs memberlist's lines at the level their "[DEBUG]",
// "[INFO]", "[WARN]" or "[ERR]" prefix names (memberlist logs everything
// through one *log.Logger), so its debug chatter stays out of info logs.
// Lines that pass the level go through lim: memberlist logs one line per
// bad packet, so garbage at the gossip port would otherwise write as fast
// as it arrives (395,456 lines, 54 MB in 20 s on a keyed node).
type levelWriter struct {
	l   *zap.Logger
	lim *logLimiter
}

func (w levelWriter) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	lvl := zapcore.InfoLevel
	for _, p := range []struct {
		tag string
		lvl zapcore.Level
	}{{"[DEBUG]", zapcore.DebugLevel}, {"[INFO]", zapcore.InfoLevel}, {"[WARN]", zapcore.WarnLevel}, {"[ERR]", zapcore.ErrorLevel}} {
		if rest, ok := strings.CutPrefix(msg, p.tag); ok {
			msg, lvl = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), "memberlist:")), p.lvl
			break
		}
	}
	if ce := w.l.Check(lvl, msg); ce != nil {
		ok, dropped := w.lim.allow(time.Now())
		if !ok {
			return len(b), nil
		}
		if dropped > 0 {
			ce.Write(zap.Uint64("suppressed", dropped))
		} else {
			ce.Write()
		}
	}
	return len(b), nil
}

// Limits of memberlist's log lines: a burst of logBurst lines, then
// logRate lines a second. Normal operation logs a few lines a minute
// (joins, suspicions, failed probes), well under the limit.
const (
	logBurst = 50
	logRate  = 5
)

// logLimiter is a token bucket for memberlist's log lines. A line over
// the limit is not written but counted (Stats.LogSuppressed); the next
// written line carries the count suppressed since the previous one.
type logLimiter struct {
	burst, rate float64

	mu         sync.Mutex // guards the fields below
	tokens     float64
	last       time.Time
	dropped    uint64 // suppressed since the last written line
	suppressed uint64 // suppressed in all
	written    uint64
	closed     bool // after Close: nothing is written
}

func newLogLimiter(burst, perSecond int) *logLimiter {
	return &logLimiter{burst: float64(burst), rate: float64(perSecond), tokens: float64(burst)}
}

// allow takes a token at now. It returns whether the line may be written
// and, if so, how many lines were suppressed since the last one written.
func (l *logLimiter) allow(now time.Time) (bool, uint64) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	if l.last.IsZero() || now.After(l.last) {
		l.last = now
	}
	if l.tokens < 1 || l.closed {
		l.dropped++
		l.suppressed++
		return false, 0
	}
	l.tokens--
	l.written++
	d := l.dropped
	l.dropped = 0
	return true, d
}

// close suppresses every later line.
func (l *logLimiter) close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// counts returns the lines written and suppressed.
func (l *logLimiter) counts() (written, suppressed uint64) {
	if l == nil {
		return 0, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.written, l.suppressed
}

func def[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}
