package node

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/overlayd/overlayd/ipam"
)

// stateDir keeps what must survive a restart: the joined networks
// (networks.json) and, per network, this node's IPAM ranges and leases
// (ipam-NAME.state, ipam's checksummed export). Every file is written
// atomically: a temporary file, fsync, rename, fsync of the directory.
type stateDir struct {
	dir string
}

const joinedFile = "networks.json"

// joinedState is networks.json.
type joinedState struct {
	Version int         `json:"version"`
	Joined  []joinedNet `json:"joined"`
}

func openStateDir(dir string) (*stateDir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	return &stateDir{dir: dir}, nil
}

// loadJoined reads networks.json; a missing file is no network, a corrupt
// one an error that names it.
func (s *stateDir) loadJoined() ([]joinedNet, error) {
	path := filepath.Join(s.dir, joinedFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: state file %s: %w", path, err)
	}
	var st joinedState
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	err = dec.Decode(&st)
	if err == nil && st.Version != 1 {
		err = fmt.Errorf("unknown version %d", st.Version)
	}
	for _, j := range st.Joined {
		if err == nil && (!validNetworkName(j.Name) || !j.CIDR.IsValid() || !j.CIDR.Contains(j.Addr) || j.VNI > 1<<24-1) {
			err = fmt.Errorf("bad network entry %+v", j)
		}
	}
	if err != nil {
		return nil, corrupt(path, err)
	}
	return st.Joined, nil
}

func corrupt(path string, err error) error {
	return fmt.Errorf("node: state file %s is corrupt (%v); move it away to start afresh, which gives up the addresses this node held", path, err)
}

func (s *stateDir) saveJoined(js []joinedNet) error {
	b, err := json.MarshalIndent(joinedState{Version: 1, Joined: js}, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.dir, joinedFile), append(b, '\n'))
}

func (s *stateDir) ipamPath(network string) string {
	return filepath.Join(s.dir, "ipam-"+url.PathEscape(network)+".state")
}

func (s *stateDir) saveIPAM(network string, b []byte) error {
	return writeFileAtomic(s.ipamPath(network), b)
}

// importIPAM gives ipam back every network's ranges and leases.
func (s *stateDir) importIPAM(p *ipam.IPAM) error {
	paths, err := filepath.Glob(filepath.Join(s.dir, "ipam-*.state"))
	if err != nil {
		return err
	}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("node: state file %s: %w", path, err)
		}
		if err := p.Import(b); err != nil {
			return corrupt(path, err)
		}
	}
	return nil
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
