package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/gossip"
	"github.com/overlayd/overlayd/ipam"
)

// Check reports every mistake that would stop a node with cfg from
// starting, short of binding sockets and opening devices: cfg.Validate's,
// then those in the files a start reads, with the start's own messages
// (the gossip key file; the state directory, which must be a directory the
// node can write or create and that not every user may write); the
// directory of the control socket; the VTEP address peers are told. It
// binds and opens nothing, so a port in use or a missing privilege (a TUN
// needs CAP_NET_ADMIN) shows only at start. Warnings are what the start
// would log and get past: a state file it cannot use (it moves it aside
// and recovers from the other files and the node's peers), a state
// directory its group may write. `overlayd run --check` is this, and
// `overlayd run` calls it before it starts.
func Check(cfg config.Config) (warnings []string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if cfg.Gossip.Enabled() {
		if cfg.Gossip.KeyFile != "" {
			if _, err := gossip.LoadKeyFile(cfg.Gossip.KeyFile); err != nil {
				errs = append(errs, err)
			}
		}
		var seeds []string
		for _, s := range cfg.Gossip.Join {
			ap, _ := config.ParseAddrPort(s, config.DefaultGossipPort)
			seeds = append(seeds, ap.String())
		}
		if _, err := advertiseVTEP(cfg, cfg.Listen, seeds); err != nil {
			errs = append(errs, err)
		}
		if cfg.StateDir != "" {
			w, err := checkStateDir(cfg.StateDir)
			warnings = append(warnings, w...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if cfg.Control != "" {
		if err := checkCreatableDir(filepath.Dir(cfg.Control)); err != nil {
			errs = append(errs, fmt.Errorf("api: control socket %s: %w", cfg.Control, err))
		}
	}
	return warnings, errors.Join(errs...)
}

// checkStateDir checks that dir can hold the node's state, as
// openStateDir takes it, and reads the state files in it without touching
// them: one the start could not use is a warning.
func checkStateDir(dir string) (warnings []string, err error) {
	if err := checkCreatableDir(dir); err != nil {
		return nil, fmt.Errorf("node: state directory %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, nil // the start creates it, 0700 and empty
	}
	switch mode := fi.Mode().Perm(); {
	case mode&0o002 != 0:
		return nil, fmt.Errorf("node: state directory %s is writable by every user (mode %04o), so any local user could change the addresses this node claims; make it private with 'chmod 700 %s'", dir, mode, dir)
	case mode&0o020 != 0:
		warnings = append(warnings, fmt.Sprintf("the state directory %s is writable by its group (mode %04o); members of the group can change the addresses this node claims", dir, mode))
	}
	unusable := func(path string, err error) {
		warnings = append(warnings, fmt.Sprintf("state file %s cannot be used (%v): the start moves it aside to %s.corrupt and recovers what it held from the other state files and the node's peers", path, err, filepath.Base(path)))
	}
	path := filepath.Join(dir, joinedFile)
	if b, err := os.ReadFile(path); err == nil {
		var st joinedState
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&st); err != nil {
			unusable(path, err)
		} else if st.Version != 1 {
			unusable(path, fmt.Errorf("unknown version %d", st.Version))
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

// checkCreatableDir checks that dir is a directory this process may create
// files in, or that it does not exist and its nearest existing parent is
// one (the start creates it with os.MkdirAll).
func checkCreatableDir(dir string) error {
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

// ValidNetworkName reports whether s may name a network (1 to 63 letters,
// digits, '-', '_' or '.', not starting with '.' or '-'), the rule the
// control plane applies, for clients that check before they ask.
func ValidNetworkName(s string) bool { return validNetworkName(s) }
