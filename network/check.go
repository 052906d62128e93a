package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/ipam"
)

// CheckStateDir checks, creating and touching nothing, that dir can hold
// the node's state as the start takes it (statefile.Check), and reads the
// Manager's state files in it: one the start could not use is a warning
// (the start moves it aside and recovers what it held), as is a directory
// its group may write.
func CheckStateDir(dir string) (warnings []string, err error) {
	warn, exists, err := statefile.Check(dir)
	if err != nil || !exists {
		return nil, err
	}
	if warn != "" {
		warnings = append(warnings, warn)
	}
	unusable := func(path string, err error) {
		warnings = append(warnings, fmt.Sprintf("state file %s cannot be used (%v): the start moves it aside to %s.corrupt and recovers what it held from the other state files and the node's peers", path, err, filepath.Base(path)))
	}
	path := filepath.Join(dir, JoinedFile)
	if b, err := os.ReadFile(path); err == nil {
		if _, err := decodeJoined(b); err != nil {
			unusable(path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		unusable(path, err)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "ipam-*.state"))
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err == nil {
			_, err = ipam.DecodeState(b)
		}
		if err != nil {
			unusable(path, err)
		}
	}
	return warnings, nil
}
