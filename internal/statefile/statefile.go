package statefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Dir is an open state directory. Its methods may be called concurrently;
// writers of one file serialise themselves.
type Dir struct {
	dir string
	log *zap.Logger
}

// Open opens (creating it 0700) the state directory. One that every local
// user may write is refused: any of them could then change which networks
// and addresses the node claims, or remove what it keeps. One that its
// group may write is accepted with a warning, logged.
func Open(dir string, log *zap.Logger) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	warn, err := CheckMode(dir)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		log.Warn(warn, zap.String("dir", dir))
	}
	return &Dir{dir: dir, log: log}, nil
}

// CheckMode refuses a state directory every user may write, and returns a
// warning for one its group may write.
func CheckMode(dir string) (warn string, err error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("node: state directory: %w", err)
	}
	switch mode := fi.Mode().Perm(); {
	case mode&0o002 != 0:
		return "", worldWritable(dir, mode)
	case mode&0o020 != 0:
		return fmt.Sprintf("the state directory is writable by its group (mode %04o); members of the group can change the addresses this node claims", mode), nil
	}
	return "", nil
}

// worldWritable is the error of a state directory every user may write.
func worldWritable(dir string, mode fs.FileMode) error {
	return fmt.Errorf("node: state directory %s is writable by every user (mode %04o), so any local user could change the addresses this node claims; make it private with 'chmod 700 %s'", dir, mode, dir)
}

// Path is the directory's path.
func (d *Dir) Path() string { return d.dir }

// File is the path of the state file name.
func (d *Dir) File(name string) string { return filepath.Join(d.dir, name) }

// Result is what Read found.
type Result int

const (
	OK      Result = iota
	Missing        // no such file
	Bad            // unreadable or corrupt: reported and moved aside
)

// Read is the one rule for every state file: a missing file is the
// caller's to judge (a first start has none), and a file that cannot be
// read or that decode rejects is reported naming it, with what the node
// does instead (recovery: from its peers or its other files), and moved
// aside to NAME.corrupt, kept for inspection and out of the way of the
// next write.
func (d *Dir) Read(name, recovery string, decode func([]byte) error) Result {
	path := d.File(name)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Missing
	}
	if err == nil {
		err = decode(b)
	}
	if err == nil {
		return OK
	}
	fields := []zap.Field{zap.String("file", path), zap.Error(err), zap.String("recovery", recovery)}
	aside := path + ".corrupt"
	if rerr := os.Rename(path, aside); rerr == nil {
		fields = append(fields, zap.String("moved_to", aside))
	} else if !errors.Is(rerr, os.ErrNotExist) {
		fields = append(fields, zap.NamedError("move_err", rerr))
	}
	d.log.Error("state file unreadable", fields...)
	return Bad
}

// ReportMissing says that the state file name, which other state names
// (why), is missing, and what the node does instead.
func (d *Dir) ReportMissing(name, why, recovery string) {
	d.log.Error("state file missing", zap.String("file", d.File(name)), zap.String("why_expected", why), zap.String("recovery", recovery))
}

// Write replaces the state file name with data, atomically (WriteAtomic).
func (d *Dir) Write(name string, data []byte) error { return WriteAtomic(d.File(name), data) }

// WriteAtomic replaces path with data so that a crash leaves either the
// old file or the new one, never a mix. A symbolic link at path is
// replaced, never written through.
func WriteAtomic(path string, data []byte) error {
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

// Check checks, creating and touching nothing, that dir can be a state
// directory as Open takes it: a directory this process may create files
// in (or one it can create), that not every user may write. It returns
// a warning for one its group may write, and whether dir exists.
func Check(dir string) (warn string, exists bool, err error) {
	if err := CheckCreatable(dir); err != nil {
		return "", false, fmt.Errorf("node: state directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", false, nil // the start creates it, 0700 and empty
	}
	switch mode := fi.Mode().Perm(); {
	case mode&0o002 != 0:
		return "", true, worldWritable(dir, mode)
	case mode&0o020 != 0:
		warn = fmt.Sprintf("the state directory %s is writable by its group (mode %04o); members of the group can change the addresses this node claims", dir, mode)
	}
	return warn, true, nil
}

// CheckCreatable checks that dir is a directory this process may create
// files in, or that it does not exist and its nearest existing parent is
// one (Open creates it with os.MkdirAll).
func CheckCreatable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) && filepath.Dir(p) != p {
			continue
		}
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			if p == dir {
				return errors.New("not a directory")
			}
			return fmt.Errorf("cannot be created: %s is not a directory", p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			if p == dir {
				return fmt.Errorf("not writable by this user (uid %d)", os.Geteuid())
			}
			return fmt.Errorf("cannot be created: %s is not writable by this user (uid %d)", p, os.Geteuid())
		}
		return nil
	}
}
