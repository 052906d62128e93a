package main

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"slices"
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

// The systemd unit's ExecStart checks its configuration before it starts
// and exits 2 on a mistake, which RestartPreventExitStatus=2 keeps from
// being restarted in a loop; with a good configuration it passes --check.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../examples/overlayd.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec []string
	for _, line := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = strings.Fields(rest)
		}
		if strings.HasPrefix(line, "ExecStartPre=") {
			t.Errorf("the unit checks in ExecStartPre, whose failure RestartPreventExitStatus does not cover: %s", line)
		}
	}
	if !strings.Contains(string(unit), "\nRestartPreventExitStatus=2\n") || !strings.Contains(string(unit), "\nRestart=on-failure\n") {
		t.Errorf("the unit lacks Restart=on-failure with RestartPreventExitStatus=2")
	}
	if len(exec) < 3 || exec[1] != "run" {
		t.Fatalf("ExecStart = %q, want /usr/local/bin/overlayd run ...", exec)
	}
	args := exec[1:]
	// The configuration does not exist here: a mistake, exit 2.
	if code, _, e := run(t, append(slices.Clone(args), "--check")...); code != 2 || !strings.Contains(e, "/etc/overlayd/overlayd.yaml") {
		t.Errorf("ExecStart with a missing configuration = %d %s, want 2", code, e)
	}
	for i, a := range args {
		if a == "/etc/overlayd/overlayd.yaml" {
			args[i] = "../../examples/laptop.yaml"
		}
		if a == "/run/overlayd/overlayd.sock" {
			args[i] = filepath.Join(t.TempDir(), "ctl.sock")
		}
	}
	if code, o, e := run(t, append(args, "--check")...); code != 0 || o != "configuration is valid\n" {
		t.Errorf("ExecStart %q --check = %d\n%s%s", args, code, o, e)
	}
}

// The Makefile's help for the demo says what the demo is: three nodes.
func TestMakefileDemoComment(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "\n## demo: build overlayd and run its rootless three-node tour") || strings.Contains(string(mk), "two-node") {
		t.Errorf("the Makefile's demo comment does not say three-node:\n%s", mk)
	}
	if !strings.Contains(demoDesc, "three overlayd nodes") {
		t.Errorf("demo --help does not say three nodes")
	}
}
