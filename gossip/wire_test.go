package gossip

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range []Meta{{}, {VTEP: netip.MustParseAddrPort("10.0.0.1:4789"), Version: "v0.1.0"}, {VTEP: netip.MustParseAddrPort("[fd00::1]:4789"), leaving: true}} {
		got, err := decodeMeta(m.encode())
		if err != nil || got != m {
			t.Errorf("decodeMeta(encode(%+v)) = %+v, %v", m, got, err)
		}
	}
	mapped := Meta{VTEP: netip.MustParseAddrPort("[::ffff:10.0.0.1]:4789"), Version: "v"}
	if got, err := decodeMeta(mapped.encode()); err != nil || got.VTEP != netip.MustParseAddrPort("10.0.0.1:4789") {
		t.Errorf("decodeMeta of a v4-mapped VTEP = %+v, %v, want 10.0.0.1:4789", got, err)
	}
	for _, b := range [][]byte{{2}, {1, 0, 9}, {1, 2, 0, 0}} {
		if _, err := decodeMeta(b); err == nil {
			t.Errorf("decodeMeta(%x) succeeded", b)
		}
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "# keys\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\nHx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=\n")
	keys, err := LoadKeyFile(good)
	if err != nil || len(keys) != 2 || keys[0][1] != 1 || keys[1][0] != 31 {
		t.Errorf("LoadKeyFile(good) = %v, %v", keys, err)
	}
	for name, content := range map[string]string{
		"short":  "AAECAwQFBgcICQoLDA0ODw==\n",
		"notb64": "not base64!\n",
		"empty":  "# nothing\n",
	} {
		if _, err := LoadKeyFile(write(name, content)); err == nil || !strings.Contains(err.Error(), "gossip: key file") {
			t.Errorf("LoadKeyFile(%s) = %v, want a clear error", name, err)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadKeyFile(missing) succeeded")
	}
}

// TestWatchOverflow: a watcher that does not read gets a resync, never
// blocks the writer, and sees events again afterwards.
func TestWatchOverflow(t *testing.T) {
	c := newCluster(t)
	g, err := New(Options{Name: "a", Profile: ProfileTest, WatchBuffer: 4, Transport: c.net.NewTransport("a")})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ch, cancel := g.Watch("t", "")
	defer cancel()
	for i := range 10 {
		if err := g.Put("t", "", string(rune('a'+i)), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var types []EventType
	for len(ch) > 0 {
		types = append(types, (<-ch).Type)
	}
	if !reflectContains(types, EventResync) {
		t.Errorf("events after overflow = %v, want a resync", types)
	}
	if err := g.Put("t", "", "z", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if ev.Type != EventPut || ev.Entry.Key != "z" {
			t.Errorf("event after resync = %+v", ev)
		}
	case <-time.After(time.Second):
		t.Error("no event after resync")
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
}

func reflectContains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
