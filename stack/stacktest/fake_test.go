package stacktest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/overlayd/overlayd/stack"
	"github.com/overlayd/overlayd/stack/stacktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFake(t *testing.T) {
	tests := []struct {
		name  string
		opts  stacktest.Options
		layer stack.Layer
	}{
		{"l3", stacktest.Options{}, stack.L3},
		{"l2", stacktest.Options{Layer: stack.L2, BatchSize: 2, QueueLen: 2}, stack.L2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := stacktest.New(tt.opts)
			defer f.Close()
			if f.Layer() != tt.layer || f.MTU() != 1450 || f.Name() != "fake" {
				t.Errorf("Layer %v MTU %d Name %q", f.Layer(), f.MTU(), f.Name())
			}
			pkts := [][]byte{[]byte("one"), []byte("two"), []byte("three")}
			go func() {
				for _, p := range pkts {
					f.Inject(p)
				}
			}()
			bufs := make([][]byte, 4)
			for i := range bufs {
				bufs[i] = make([]byte, stack.Headroom+100)
			}
			sizes := make([]int, 4)
			var got [][]byte
			for len(got) < len(pkts) {
				n, err := f.Read(bufs, sizes, stack.Headroom)
				if err != nil {
					t.Fatal(err)
				}
				if n > f.BatchSize() {
					t.Fatalf("Read = %d packets, BatchSize %d", n, f.BatchSize())
				}
				for i := range n {
					got = append(got, append([]byte(nil), bufs[i][stack.Headroom:stack.Headroom+sizes[i]]...))
				}
			}
			for i := range pkts {
				if !bytes.Equal(got[i], pkts[i]) {
					t.Errorf("Read packet %d = %q, want %q", i, got[i], pkts[i])
				}
			}

			w := [][]byte{append(make([]byte, stack.Headroom), "in"...)}
			if n, err := f.Write(w, stack.Headroom); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if p, err := f.Next(ctx); err != nil || string(p) != "in" {
				t.Errorf("Next = %q, %v; want \"in\"", p, err)
			}
		})
	}
}

func TestFakeClose(t *testing.T) {
	f := stacktest.NewPipe()
	errc := make(chan error, 1)
	go func() {
		_, err := f.Read([][]byte{make([]byte, 100)}, []int{0}, stack.Headroom)
		errc <- err
	}()
	f.Close()
	f.Close()
	if err := <-errc; !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if _, err := f.Write([][]byte{make([]byte, 100)}, stack.Headroom); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Write after Close = %v, want ErrClosed", err)
	}
	if err := f.Inject([]byte("x")); !errors.Is(err, stack.ErrClosed) {
		t.Errorf("Inject after Close = %v, want ErrClosed", err)
	}
}

func TestWire(t *testing.T) {
	a, b := stacktest.NewPipe(), stacktest.NewPipe()
	stop := stacktest.Wire(a, b)
	if err := a.Inject([]byte{0x45, 1, 2}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := b.Next(ctx)
	if err != nil || !bytes.Equal(got, []byte{0x45, 1, 2}) {
		t.Errorf("b.Next = %x, %v; want what a read, 450102", got, err)
	}
	stop()
	stop()
	if err := a.Inject([]byte{1}); err == nil {
		t.Error("Inject after stop succeeded: a is not closed")
	}
}
