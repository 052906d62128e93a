package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	const want = "200 OK hello 10.98.1.1, this is the web node over the overlay\n"
	if out.String() != want {
		t.Errorf("run printed %q, want %q", out.String(), want)
	}
}

// The example builds and runs as a program, and exits 0.
func TestBuildAndRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	bin := filepath.Join(t.TempDir(), "embed")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil || !bytes.Contains(out, []byte("200 OK hello 10.98.1.1")) {
		t.Fatalf("embed = %v, printed %q", err, out)
	}
}
