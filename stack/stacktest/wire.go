package stacktest

import (
	"sync"

	"github.com/overlayd/overlayd/stack"
)

// Wire connects two L3 devices back to back, as if a link joined them:
// one goroutine per direction moves each batch that a's Read returns to
// b's Write and b's to a's, until either device is closed. The returned
// stop closes both devices and waits for the goroutines. Two Netstacks
// wired so are two hosts on one link, without a router between them.
func Wire(a, b stack.Device) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(2)
	go pump(a, b, &wg)
	go pump(b, a, &wg)
	var once sync.Once
	return func() {
		once.Do(func() {
			a.Close()
			b.Close()
			wg.Wait()
		})
	}
}

// pump moves src's packets to dst until either is closed.
func pump(src, dst stack.Device, wg *sync.WaitGroup) {
	defer wg.Done()
	n := src.BatchSize()
	size := stack.Headroom + max(src.MTU(), dst.MTU())
	bufs := make([][]byte, n)
	out := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	sizes := make([]int, n)
	for {
		k, err := src.Read(bufs, sizes, stack.Headroom)
		if err != nil {
			return
		}
		for i := range k {
			out[i] = bufs[i][:stack.Headroom+sizes[i]]
		}
		if _, err := dst.Write(out[:k], stack.Headroom); err != nil {
			return
		}
	}
}
