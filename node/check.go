package node

import (
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
// then the files a start reads, with the start's own messages (the gossip
// key file; the state directory, which must be a directory the node can
// write or create, and its networks.json and ipam-*.state files); the
// directory of the control socket; the VTEP address peers are told. It
// binds and opens nothing, so a port in use or a missing privilege (a TUN
// needs CAP_NET_ADMIN) shows only at start. `overlayd run --check` is
// this, and `overlayd run` calls it before it starts.
func Check(cfg config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
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
			errs = append(errs, checkStateDir(cfg.StateDir)...)
		}
	}
	if cfg.Control != "" {
		if err := checkCreatableDir(filepath.Dir(cfg.Control)); err != nil {
			errs = append(errs, fmt.Errorf("api: control socket %s: %w", cfg.Control, err))
		}
	}
	return errors.Join(errs...)
}

// checkStateDir checks that dir can hold the node's state and that the
// state files in it are readable and well-formed, as the start reads them.
func checkStateDir(dir string) []error {
	if err := checkCreatableDir(dir); err != nil {
		return []error{fmt.Errorf("node: state directory %s: %w", dir, err)}
	}
	if _, err := os.Stat(dir); err != nil {
		return nil // the start creates it, empty
	}
	var errs []error
	s := &stateDir{dir: dir}
	if _, err := s.loadJoined(); err != nil {
		errs = append(errs, err)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "ipam-*.state"))
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("node: state file %s: %w", path, err))
			continue
		}
		if _, err := ipam.DecodeState(b); err != nil {
			errs = append(errs, corrupt(path, err))
		}
	}
	return errs
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
