package main

import (
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
	for _, f := range files {
		code, o, e := run(t, "run", "--config", f, "--check")
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
