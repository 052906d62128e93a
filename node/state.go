package node

import (
	"github.com/overlayd/overlayd/internal/statefile"
)

// stateDir is the state directory (--state-dir) as the node's own files
// use it: the networks keep theirs through network.Manager; services.json
// (services.go) is kept here, by statefile's rules.
type stateDir struct {
	*statefile.Dir
	dir string
}

// readState reads the state file name by statefile's one rule.
func (s *stateDir) readState(name, recovery string, decode func([]byte) error) statefile.Result {
	return s.Read(name, recovery, decode)
}

// stateOK is what readState returns for a sound file.
const stateOK = statefile.OK

// writeFileAtomic replaces path with data so that a crash leaves either
// the old file or the new one, never a mix.
func writeFileAtomic(path string, data []byte) error { return statefile.WriteAtomic(path, data) }
