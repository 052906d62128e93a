package config

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// laughs is the billion-laughs chain as the items of a flow sequence:
// &l0 "lol", then nine levels each a list of nine aliases of the one
// before (9^9, 387 million strings once expanded).
func laughs() string {
	var b strings.Builder
	b.WriteString(`[&l0 "lol"`)
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, ", &l%d [", i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]")
	}
	b.WriteString("]")
	return b.String()
}

// laughsTopLevel is the classic form: one anchored key per level.
func laughsTopLevel() string {
	var b strings.Builder
	b.WriteString("lol0: &l0 \"lol\"\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "lol%d: &l%d [", i, i)
		for j := range 9 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// deepBlock nests n block mappings under log:, one more indent each.
func deepBlock(n int) string {
	var b strings.Builder
	b.WriteString("log:\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%sk:\n", strings.Repeat(" ", i))
	}
	fmt.Fprintf(&b, "%s1\n", strings.Repeat(" ", n+1))
	return b.String()
}

// Issue 10 §1: YAML bombs are rejected. A billion-laughs alias expansion,
// deep nesting and an endless file give an error (not a hang, an
// out-of-memory or a stack overflow), allocating a bounded amount of
// memory, wherever the bomb sits.
func TestYAMLBombsRejected(t *testing.T) {
	endless := &repeatReader{line: []byte("# lol lol lol lol lol lol lol\n"), max: 64 << 20}
	tests := []struct {
		name string
		in   io.Reader
		want string // in the error
	}{
		{"laughs under unknown keys", strings.NewReader(laughsTopLevel()), `unknown key "lol0"`},
		{"laughs in a list of strings", strings.NewReader("gossip:\n  join: " + laughs() + "\n"), "gossip.join"},
		{"laughs in a list of peers", strings.NewReader("peers: " + laughs() + "\n"), "peers"},
		{"laughs in a list of networks", strings.NewReader("networks: " + laughs() + "\n"), "networks"},
		{"laughs as a string field", strings.NewReader("name: " + laughs() + "\n"), "name"},
		{"deep flow nesting", strings.NewReader("peers: " + strings.Repeat("[", 200000) + strings.Repeat("]", 200000) + "\n"), "depth"},
		{"deep flow mapping in a struct", strings.NewReader("log: " + strings.Repeat("{a: ", 100000) + "1" + strings.Repeat("}", 100000) + "\n"), "depth"},
		{"deep block nesting", strings.NewReader(deepBlock(1000)), "log"},
		// 64 MiB of comments: read no further than the 1 MiB limit.
		{"endless file", endless, "larger than 1 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			done := make(chan error, 1)
			go func() {
				_, err := Decode(tt.in)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second): // a generous bound: a bomb may never return
				t.Fatal("Decode of a bomb has not returned after 60 s")
			}
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("Decode of a bomb succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want the config: prefix and %q", err, tt.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
				t.Errorf("Decode allocated %d MiB", alloc>>20)
			}
			t.Logf("%v", err)
		})
	}
	if endless.read > 1<<20+64<<10 {
		t.Errorf("Decode read %d bytes of an endless file, want at most its 1 MiB limit", endless.read)
	}
}

// repeatReader repeats line up to max bytes, counting what was read.
type repeatReader struct {
	line      []byte
	off       int
	read, max int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.read >= r.max {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.max-r.read)]
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	r.read += n
	return n, nil
}
