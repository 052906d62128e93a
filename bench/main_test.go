package bench_test

import (
	"os"
	"testing"

	"github.com/overlayd/overlayd/e2e"
)

// TestMain removes the overlayd binary the comparison built.
func TestMain(m *testing.M) {
	code := m.Run()
	e2e.RemoveBinary()
	os.Exit(code)
}
