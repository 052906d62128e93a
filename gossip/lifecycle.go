package gossip

import (
	"fmt"
	"time"

	"go.uber.org/zap"
)

// leave announces the leave within timeout in all. Two broadcasts go out:
// the metadata with the leaving flag (so peers record the node as left,
// not dead), then memberlist's leave message, which replaces the first in
// memberlist's queue (both are about this node), so the first must have
// been sent before the second is queued. memberlist waits for each to be
// retransmitted in full; one gossip round already hands it to
// GossipNodes peers, who relay it. The metadata gets at most half the
// timeout and two gossip intervals; the leave message the rest. Before,
// each step had the whole timeout (Leave(1 s) took up to 2 s).
func (g *Gossip) leave(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	g.leaving.Store(true)
	if err := g.ml.UpdateNode(min(timeout/2, 2*g.cfg.gossipInterval)); err != nil {
		g.log.Debug("announcing leave", zap.Error(err))
	}
	rest := time.Until(deadline)
	if rest <= 0 {
		rest = time.Millisecond // memberlist waits forever on 0
	}
	if err := g.ml.Leave(rest); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// shutdown stops memberlist before this package's loops: its sockets are
// closed first, so a restart can bind the port at once, and dials in
// progress end (netTransport), so the loops waiting on one return at
// once. The loops' sends after this fail and are counted as drops.
// memberlist lines logged after this (its goroutines finishing) are
// suppressed: they would land in the log of the next process.
func (g *Gossip) shutdown() error {
	err := g.ml.Shutdown()
	g.cfg.guard.logs.close()
	if err != nil {
		return fmt.Errorf("gossip: shutdown: %w", err)
	}
	return nil
}
