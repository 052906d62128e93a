package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// record is what the plugin keeps of an attachment it made: the
// endpoint's name is not derivable from the container ID alone (the pod's
// name, or a fallback when that was taken), and GC is told only container
// IDs and interfaces.
type record struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
	Network     string `json:"network"`
	Name        string `json:"name"`  // the endpoint's
	Netns       string `json:"netns"` // as ADD was given it
}

// store holds the records of one network configuration (its name) in
// DIR/NAME, one file per (container ID, interface). It is locked for the
// whole of one plugin command (flock on DIR/NAME/lock): runtimes run
// plugins concurrently, and two ADDs must not pick one name.
type store struct {
	dir  string
	lock *os.File
}

// lockWait bounds the wait for another invocation's lock; a plugin that
// hangs holding it costs the next one this long, not forever.
const lockWait = 10 * time.Second

// openStore opens and locks the records of network configuration name
// under dataDir, creating the directory (0700).
func openStore(dataDir, name string) (*store, error) {
	dir := filepath.Join(dataDir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, ioError("cannot create its data directory: %v (set \"dataDir\" to a directory it may write)", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, ioError("cannot open its lock: %v", err)
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &store{dir: dir, lock: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, ioError("cannot lock %s: %v", f.Name(), err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("overlayd-cni: another overlayd-cni has held %s for %v; try again", f.Name(), lockWait), "")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close unlocks the store.
func (s *store) Close() error { return s.lock.Close() }

// file is the record's path: a hash, since a container ID and an
// interface name together may hold any character but '/'.
func (s *store) file(containerID, ifname string) string {
	h := sha256.Sum256([]byte(containerID + "\x00" + ifname))
	return filepath.Join(s.dir, hex.EncodeToString(h[:12])+".json")
}

// get returns the record of an attachment; ok false when there is none.
func (s *store) get(containerID, ifname string) (r record, ok bool, err error) {
	r, err = readRecord(s.file(containerID, ifname))
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	if r.ContainerID != containerID || r.IfName != ifname {
		return record{}, false, ioError("record %s is of container %s interface %s, not %s %s; move it away", s.file(containerID, ifname), r.ContainerID, r.IfName, containerID, ifname)
	}
	return r, true, nil
}

func readRecord(path string) (record, error) {
	var r record
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	if err != nil {
		return r, ioError("cannot read its record: %v", err)
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Name == "" {
		return r, ioError("its record %s is corrupt; move it away (the endpoint it named, if any, is released with 'overlayd detach')", path)
	}
	return r, nil
}

// put writes a record: to a temporary file renamed over the old, so a
// crash leaves the old record or the new, never half of one.
func (s *store) put(r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := s.file(r.ContainerID, r.IfName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return ioError("cannot write its record: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return ioError("cannot write its record: %v", err)
	}
	return nil
}

// remove deletes a record; a missing one is not an error.
func (s *store) remove(r record) error {
	if err := os.Remove(s.file(r.ContainerID, r.IfName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ioError("cannot remove its record: %v", err)
	}
	return nil
}

// list returns every record in the store.
func (s *store) list() ([]record, error) {
	es, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, ioError("cannot list its records: %v", err)
	}
	var rs []record
	for _, e := range es {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		r, err := readRecord(filepath.Join(s.dir, e.Name()))
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func ioError(format string, args ...any) *types.Error {
	return types.NewError(types.ErrIOFailure, "overlayd-cni: "+fmt.Sprintf(format, args...), "")
}
