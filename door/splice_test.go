package door

import (
	"net"
	"testing"
	"time"
)

// A splice whose far side stops taking data ends after ProgressTimeout,
// closing both sides, long before the idle timeout; one whose far side
// reads slowly lives on past many progress timeouts.
func TestSpliceProgressTimeout(t *testing.T) {
	noLeaks(t)
	app, doorClient := net.Pipe()   // the local program and the door's side of it
	doorOverlay, peer := net.Pipe() // the door's overlay conn and the overlay peer
	defer app.Close()
	defer peer.Close()
	var cnt counters
	const progress = 200 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		splice(doorClient, nil, doorOverlay, spliceTimeouts{idle: time.Hour, progress: progress}, &cnt)
	}()
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := app.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
	}()
	// The peer reads 1 KiB every 50 ms for a second: slow, but moving.
	buf := make([]byte, 1<<10)
	for i := range 20 {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := peer.Read(buf); err != nil {
			t.Fatalf("read %d from the splice: %v (it ended while data moved)", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the splice ended while its peer was still reading")
	default:
	}
	// Now the peer stops reading: the splice must end within a generous
	// bound (the idle timeout is an hour away).
	stopped := time.Now()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the splice still runs %v after its peer stopped reading (progress timeout %v)", time.Since(stopped), progress)
	}
	if err := <-wrote; err == nil {
		t.Error("the program's writes did not fail after the splice ended")
	}
	if n := cnt.outBytes.Load(); n < 20<<10 {
		t.Errorf("counted %d bytes out, want at least the %d the peer read", n, 20<<10)
	}
}
