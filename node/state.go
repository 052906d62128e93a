package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/ipam"
)

// stateDir keeps what must survive a restart: the joined networks
// (networks.json) and, per network, this node's IPAM ranges and leases
// (ipam-NAME.state, ipam's checksummed export). Every file is written
// atomically: a temporary file, fsync, rename, fsync of the directory.
type stateDir struct {
	dir string
	log *zap.Logger
}

const joinedFile = "networks.json"

// joinedState is networks.json.
type joinedState struct {
	Version int         `json:"version"`
	Joined  []joinedNet `json:"joined"`
}

// openStateDir opens (creating it 0700) the state directory. One that
// every local user may write is refused: any of them could then change
// which networks and addresses this node claims, or remove what it keeps.
// One that its group may write is accepted with a warning.
func openStateDir(dir string, log *zap.Logger) (*stateDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	warn, err := checkStateMode(dir)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		log.Warn(warn, zap.String("dir", dir))
	}
	return &stateDir{dir: dir, log: log}, nil
}

// checkStateMode refuses a state directory every user may write, and
// returns a warning for one its group may write.
func checkStateMode(dir string) (warn string, err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("node: state directory: %w", err)
	}
	switch mode := fi.Mode().Perm(); {
	case mode&0o002 != 0:
		return "", fmt.Errorf("node: state directory %s is writable by every user (mode %04o), so any local user could change the addresses this node claims; make it private with 'chmod 700 %s'", dir, mode, dir)
	case mode&0o020 != 0:
		return fmt.Sprintf("the state directory is writable by its group (mode %04o); members of the group can change the addresses this node claims", mode), nil
	}
	return "", nil
}

// fileState is what readState found.
type fileState int

const (
	stateOK      fileState = iota
	stateMissing           // no such file
	stateBad               // unreadable or corrupt: reported and moved aside
)

// readState is the one rule for every state file: a missing file is the
// caller's to judge (a first start has none), and a file that cannot be
// read or that decode rejects is reported naming it, with what the node
// does instead (recover, from its peers or its other files), and moved
// aside to NAME.corrupt, kept for inspection and out of the way of the
// next save. The node never stops for a state file, and never forgets
// one silently.
func (s *stateDir) readState(name, recovery string, decode func([]byte) error) fileState {
	path := filepath.Join(s.dir, name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return stateMissing
	}
	if err == nil {
		err = decode(b)
	}
	if err == nil {
		return stateOK
	}
	fields := []zap.Field{zap.String("file", path), zap.Error(err), zap.String("recovery", recovery)}
	aside := path + ".corrupt"
	if rerr := os.Rename(path, aside); rerr == nil {
		fields = append(fields, zap.String("moved_to", aside))
	} else if !errors.Is(rerr, os.ErrNotExist) {
		fields = append(fields, zap.NamedError("move_err", rerr))
	}
	s.log.Error("state file unreadable", fields...)
	return stateBad
}

// reportMissing says that a state file other state names is missing.
func (s *stateDir) reportMissing(name, why, recovery string) {
	s.log.Error("state file missing", zap.String("file", filepath.Join(s.dir, name)), zap.String("why_expected", why), zap.String("recovery", recovery))
}

// loadJoined reads networks.json; fs says whether it was there and sound.
func (s *stateDir) loadJoined() ([]joinedNet, fileState) {
	var st joinedState
	fs := s.readState(joinedFile, "the joined networks are taken from the ipam-NETWORK.state files (the node's leases)", func(b []byte) error {
		st = joinedState{}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			return err
		}
		if st.Version != 1 {
			return fmt.Errorf("unknown version %d", st.Version)
		}
		for _, j := range st.Joined {
			if !validNetworkName(j.Name) || !j.CIDR.IsValid() || !j.CIDR.Contains(j.Addr) || j.VNI > 1<<24-1 {
				return fmt.Errorf("bad network entry %+v", j)
			}
		}
		return nil
	})
	if fs != stateOK {
		return nil, fs
	}
	return st.Joined, stateOK
}

func (s *stateDir) saveJoined(js []joinedNet) error {
	b, err := json.MarshalIndent(joinedState{Version: 1, Joined: js}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, joinedFile), append(b, '\n'))
}

func (s *stateDir) ipamFile(network string) string {
	return "ipam-" + url.PathEscape(network) + ".state"
}

func (s *stateDir) ipamPath(network string) string {
	return filepath.Join(s.dir, s.ipamFile(network))
}

func (s *stateDir) saveIPAM(network string, b []byte) error {
	return writeFileAtomic(s.ipamPath(network), b)
}

// loadIPAM reads every ipam-NETWORK.state file (ipam's checksummed
// exports), by network; the unreadable ones are reported and left out.
func (s *stateDir) loadIPAM() (map[string]ipamFile, error) {
	paths, err := filepath.Glob(filepath.Join(s.dir, "ipam-*.state"))
	if err != nil {
		return nil, err
	}
	out := map[string]ipamFile{}
	for _, path := range paths {
		var f ipamFile
		s.readState(filepath.Base(path), "the node's ranges and leases in the network come back from its peers (they are replicated)", func(b []byte) error {
			st, err := ipam.DecodeState(b)
			if err == nil {
				f = ipamFile{raw: b, state: st}
			}
			return err
		})
		if f.state != nil {
			out[f.state.Network.Name] = f
		}
	}
	return out, nil
}

// ipamFile is one sound ipam-NETWORK.state.
type ipamFile struct {
	raw   []byte
	state *ipam.State
}

// joinedFromIPAM rebuilds the joined networks from the ipam state files:
// the lease this node took for itself (owner its name) in each is its
// address there.
func joinedFromIPAM(self string, files map[string]ipamFile) []joinedNet {
	var out []joinedNet
	for _, f := range files {
		for _, ls := range f.state.Leases {
			if ls.Owner == self {
				nw := f.state.Network
				out = append(out, joinedNet{Name: nw.Name, CIDR: nw.CIDR, VNI: nw.VNI, Addr: ls.Addr})
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b joinedNet) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// writeFileAtomic replaces path with data so that a crash leaves either
// the old file or the new one, never a mix.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
