package table

// Watcher is a bounded, non-blocking event queue, the delivery of Watch
// (and of package gossip's WatchMembers): Send never blocks; on overflow
// the queued events are discarded and replaced by one resync event. Its
// methods are not safe for concurrent use: its owner calls them with its
// own lock held.
type Watcher[T any] struct {
	ch     chan T
	resync T
	closed bool
}

// NewWatcher returns a Watcher that holds up to n events and sends resync
// when one does not fit.
func NewWatcher[T any](n int, resync T) *Watcher[T] {
	return &Watcher[T]{ch: make(chan T, n), resync: resync}
}

// C is the channel the events are received from; Close closes it.
func (w *Watcher[T]) C() <-chan T { return w.ch }

// Send queues v, or replaces everything queued by the resync event if v
// does not fit. After Close it does nothing.
func (w *Watcher[T]) Send(v T) {
	if w.closed {
		return
	}
	select {
	case w.ch <- v:
		return
	default:
	}
	for drained := false; !drained; {
		select {
		case <-w.ch:
		default:
			drained = true
		}
	}
	select {
	case w.ch <- w.resync:
	default:
	}
}

// Close closes the channel. Safe to call twice.
func (w *Watcher[T]) Close() {
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
}
