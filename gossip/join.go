package gossip

// This file holds Join, and the sentences a failed join is explained in.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Join contacts seeds (IP:port, an IPv6 one as [2001:db8::2]:7946) until
// at least one answers or ctx ends, retrying with exponential backoff.
// The seeds are remembered: until Close, any seed that is not a live
// member is joined again every RejoinInterval, so a node that lost its
// seeds (partition, restart) finds the cluster again. An IP:port seed is
// taken in its canonical form (v4-mapped addresses unmapped, IPv6
// compressed), the form members' addresses are compared in.
func (g *Gossip) Join(ctx context.Context, seeds []string) error {
	seeds = canonicalSeeds(seeds)
	g.mu.Lock()
	if g.closed || g.left {
		g.mu.Unlock()
		return ErrClosed
	}
	for _, s := range seeds {
		if !slices.Contains(g.seeds, s) {
			g.seeds = append(g.seeds, s)
		}
	}
	g.mu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		n, err := g.ml.Join(seeds)
		if n > 0 {
			g.joinSucceeded(seeds, n) // join.go (hardening)
			g.introduce(seeds)
			g.hello()
			g.store.SyncJoined()
			return nil
		}
		err = g.joinFailed(seeds, err) // join.go (hardening): explained, kept in Stats, logged once per change
		select {
		case <-ctx.Done():
			return joinContextError(err, ctx.Err())
		case <-g.stop:
			return ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// canonicalSeeds returns seeds with every IP:port in netip's form, the
// form of memberlist's node addresses ("[2001:db8::2]:7946"), so that
// rejoin finds a live seed among the members; others are left as given.
func canonicalSeeds(seeds []string) []string {
	out := make([]string, len(seeds))
	for i, s := range seeds {
		out[i] = s
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out[i] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
		}
	}
	return out
}

// Why a join failed, from memberlist's error for a seed. memberlist says
// it in the words of its stream decoder; these are the sentences a user
// needs. The seed answers a push/pull it cannot read with an error
// message, which the joining node then fails to read in turn, so each key
// mistake shows on the joining node as one of the first three.
var joinCauses = []struct{ memberlist, say string }{
	{"remote state is encrypted and encryption is not configured", "refused: the cluster encrypts gossip and this node has no key"},
	{"encryption is configured but remote state is not encrypted", "refused: this node encrypts gossip and the seed does not (it has no key)"},
	{"no installed keys could decrypt", "refused: the seed encrypts gossip with another key (this node's key is not the cluster's)"},
	{"connection refused", "nothing listens there (connection refused): is overlayd running with gossip on that address?"},
	{"i/o timeout", "no answer (timed out): check the address and that the port is open"},
	{"no route to host", "no route to the seed (no route to host)"},
	{"is incompatible", "refused: the seed's cluster speaks another memberlist protocol version"},
}

// explainJoin rewrites err from memberlist.Join(seeds) as one clause per
// seed: "gossip: join 192.0.2.1:7946: refused: ...; join ...".
func explainJoin(seeds []string, err error) error {
	if err == nil {
		return errors.New("gossip: join " + strings.Join(seeds, ", ") + ": no seed answered")
	}
	var errs []error
	if w, ok := err.(interface{ WrappedErrors() []error }); ok {
		errs = w.WrappedErrors()
	}
	if len(errs) == 0 {
		errs = []error{err}
	}
	var clauses []string
	for _, e := range errs {
		msg := e.Error()
		addr, cause := strings.Join(seeds, ", "), msg
		for _, p := range []string{"failed to join ", "failed to resolve "} {
			if rest, ok := strings.CutPrefix(msg, p); ok {
				if a, c, ok := strings.Cut(rest, ": "); ok {
					addr, cause = a, c
				}
				if p == "failed to resolve " {
					cause = "cannot resolve the address: " + cause
				}
				break
			}
		}
		for _, jc := range joinCauses {
			if strings.Contains(strings.ToLower(cause), jc.memberlist) {
				if strings.HasPrefix(jc.say, "refused: the seed's cluster speaks") {
					cause = jc.say + " (" + cause + ")"
				} else {
					cause = jc.say
				}
				break
			}
		}
		clauses = append(clauses, "join "+addr+": "+cause)
	}
	return errors.New("gossip: " + strings.Join(clauses, "; "))
}

// joinFailed explains a failed memberlist.Join of seeds, keeps it for
// Stats.JoinError and logs it at WARN when it differs from the last one
// (Join retries with backoff; the same failure is logged once).
func (g *Gossip) joinFailed(seeds []string, err error) error {
	err = explainJoin(seeds, err)
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return err // a dial that Close ended: nothing to tell
	}
	gd := g.cfg.guard
	gd.mu.Lock()
	changed := gd.joinErr != err.Error()
	gd.joinErr = err.Error()
	gd.mu.Unlock()
	if changed {
		g.log.Warn("cannot join the cluster", zap.Error(err))
	}
	return err
}

// joinSucceeded clears the join error; n seeds answered.
func (g *Gossip) joinSucceeded(seeds []string, n int) {
	gd := g.cfg.guard
	gd.mu.Lock()
	failed := gd.joinErr != ""
	gd.joinErr = ""
	gd.mu.Unlock()
	msg := "joined the cluster"
	if failed {
		msg = "joined the cluster after failed attempts"
	}
	g.log.Info(msg, zap.Strings("seeds", seeds), zap.Int("answered", n))
}

// joinContextError is Join's error when ctx ends before a seed answered.
func joinContextError(last error, ctxErr error) error {
	return fmt.Errorf("%w (gave up: %w)", last, ctxErr)
}
