package catalog

import (
	"sync"

	"github.com/overlayd/overlayd/gossip"
)

// Watcher is the part of gossip that watches a table.
type Watcher interface {
	Watch(table, network string) (<-chan gossip.Event, func())
}

var _ Watcher = (*gossip.Gossip)(nil)

// ServiceTables are the tables of a network's services and their backends.
func ServiceTables() []string { return []string{TableServices, TableBackends} }

// ZoneTables are the tables a network's DNS zone is built from: the
// nodes' routes (their addresses) and the services (their VIPs).
func ZoneTables() []string { return []string{TableRoutes, TableServices} }

// Watch watches tables of network and signals kick after every change (or
// resync) of any of them, with a send that never blocks: changes that
// arrive while kick is full coalesce into the one signal pending, so a
// loop that rebuilds from a fresh List on each receive misses nothing.
// kick is usually the loop's own channel of capacity 1. The watch ends
// when stop is called (stop waits for it; it is safe to call twice) or
// when the gossip closes.
func Watch(w Watcher, network string, kick chan<- struct{}, tables ...string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	cancels := make([]func(), 0, len(tables))
	for _, table := range tables {
		ch, cancel := w.Watch(table, network)
		cancels = append(cancels, cancel)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case _, ok := <-ch:
					if !ok {
						return
					}
					select {
					case kick <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			for _, cancel := range cancels {
				cancel()
			}
			wg.Wait()
		})
	}
}
