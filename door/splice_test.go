package door

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"slices"
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

// sizedReader returns reads of the sizes given, in turn, then EOF; it
// records the size of the buffer each read was given.
type sizedReader struct {
	data  []byte
	sizes []int
	bufs  []int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	r.bufs = append(r.bufs, len(p))
	if len(r.sizes) == 0 || len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes[0], len(p), len(r.data))
	r.sizes = r.sizes[1:]
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// copyBulk copies byte-exact, reads into the small buffer until a read
// fills it, then into the large one, and back to the small one when a
// read would have fitted there again.
func TestCopyBulk(t *testing.T) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	sizes := []int{100, spliceSmall, spliceLarge, spliceLarge, 10, 100}
	r := &sizedReader{data: data, sizes: sizes}
	var out bytes.Buffer
	n, err := copyBulk(&out, r)
	want := 100 + spliceSmall + 2*spliceLarge + 10 + 100
	if err != nil || n != int64(want) || !bytes.Equal(out.Bytes(), data[:want]) {
		t.Fatalf("copyBulk = %d, %v (%d bytes equal: %v); want %d, nil, byte-exact", n, err, out.Len(), bytes.Equal(out.Bytes(), data[:out.Len()]), want)
	}
	wantBufs := []int{spliceSmall, spliceSmall, spliceLarge, spliceLarge, spliceLarge, spliceSmall, spliceSmall}
	if !slices.Equal(r.bufs, wantBufs) {
		t.Errorf("read buffer sizes %v, want %v", r.bufs, wantBufs)
	}
}
