package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// The helper's subcommand run by hand (not by the daemon, so with no
// socket from it) says what it is and fails; it is not in the usage.
func TestNshelperByHand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"nshelper", "--socket-fd=6"}, &stdout, &stderr)
	want := "overlayd nshelper: stack: this is the rootless helper, which overlayd runs to make a device in a container's namespace; it is not for use by hand\n"
	if code != 1 || stderr.String() != want || stdout.Len() != 0 {
		t.Errorf("overlayd nshelper = %d, stdout %q, stderr %q; want 1, nothing, %q", code, stdout.String(), stderr.String(), want)
	}
	if strings.Contains(mainUsage, "nshelper") {
		t.Error("the usage names the hidden nshelper")
	}
}
