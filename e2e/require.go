package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Unavailable skips a test whose requirement (a tool, a privilege, a
// device) this machine lacks, saying what is missing; under CI (CI=true)
// it fails instead, as RequireRoot does, since CI has everything the
// tests need and a skip there would hide a test that never ran.
func Unavailable(t testing.TB, missing string) {
	t.Helper()
	msg := "needs " + missing
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI must have it (see .ci/run), so this is a failure", msg)
	}
	t.Skip(msg + "; skipped")
}

// RequireTools skips (or under CI fails) a test that runs these programs
// when one is not installed. Unlike RequireRoot it needs no privilege.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool+" (apt-get install "+debianPackage(tool)+")")
		}
	}
	if len(missing) > 0 {
		Unavailable(t, strings.Join(missing, ", "))
	}
}
