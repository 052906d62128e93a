package main

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every example configuration (examples/*.yaml and one directory down)
// passes `overlayd run --check`, and the
// launchd plist is well-formed XML.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	more, err2 := filepath.Glob("../../examples/*/*.yaml") // examples/three-hosts/...
	files = append(files, more...)
	if err != nil || err2 != nil || len(files) == 0 || len(more) == 0 {
		t.Fatalf("no example configurations found: %v %v", err, err2)
	}
	// --check reads the files a configuration names: give the examples a
	// key of their own, and a state directory that can be made.
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		args := []string{"run", "--config", f, "--check"}
		text, _ := os.ReadFile(f)
		if bytes.Contains(text, []byte("key_file:")) {
			args = append(args, "--gossip-key-file", key)
		}
		if bytes.Contains(text, []byte("state_dir:")) {
			args = append(args, "--state-dir", filepath.Join(t.TempDir(), "state"))
		}
		code, o, e := run(t, args...)
		if code != 0 || !strings.Contains(o, "configuration is valid") {
			t.Errorf("overlayd run --config %s --check = %d\n%s%s", f, code, o, e)
		}
	}
	plist, err := os.Open("../../examples/dev.overlayd.plist")
	if err != nil {
		t.Fatal(err)
	}
	defer plist.Close()
	dec := xml.NewDecoder(plist)
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("dev.overlayd.plist: %v", err)
		}
	}
}
