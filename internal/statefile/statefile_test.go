package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Read: missing, sound, empty and garbage files.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	core, logs := observer.New(zapcore.InfoLevel)
	s := &Dir{dir: dir, log: zap.New(core)}
	decode := func(b []byte) error {
		if string(b) != "ok" {
			return errors.New("not ok")
		}
		return nil
	}
	for _, tc := range []struct {
		content *string
		want    Result
	}{
		{nil, Missing},
		{ptr("ok"), OK},
		{ptr(""), Bad},
		{ptr("garbage"), Bad},
	} {
		path := filepath.Join(dir, "f.json")
		os.Remove(path)
		os.Remove(path + ".corrupt")
		if tc.content != nil {
			os.WriteFile(path, []byte(*tc.content), 0o600)
		}
		logs.TakeAll()
		if got := s.Read("f.json", "recover", decode); got != tc.want {
			t.Errorf("Read(%v) = %v, want %v", tc.content, got, tc.want)
		}
		_, errAside := os.Stat(path + ".corrupt")
		bad := logs.FilterMessage("state file unreadable").FilterField(zap.String("file", path)).Len()
		if tc.want == Bad && (bad != 1 || errAside != nil) {
			t.Errorf("Read(%q): %d reports naming the file, moved aside: %v", *tc.content, bad, errAside)
		}
		if tc.want != Bad && (bad != 0 || errAside == nil) {
			t.Errorf("Read(%v): reported or moved aside", tc.content)
		}
	}
}

func ptr(s string) *string { return &s }

// Open and Check agree: a directory every user may write is refused,
// naming it; one its group may write gets a warning; a missing one is
// made (Open) or left for the start to make (Check).
func TestOpenCheckModes(t *testing.T) {
	for _, tc := range []struct {
		mode     os.FileMode
		wantErr  bool
		wantWarn bool
	}{
		{0o700, false, false},
		{0o770, false, true},
		{0o777, true, false},
	} {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, tc.mode)
		warn, exists, err := Check(dir)
		if (err != nil) != tc.wantErr || (warn != "") != tc.wantWarn || !exists {
			t.Errorf("Check(mode %04o) = %q, %v, %v", tc.mode, warn, exists, err)
		}
		if err != nil && (!strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "writable by every user")) {
			t.Errorf("Check(mode %04o): %v does not name the directory and the reason", tc.mode, err)
		}
		core, logs := observer.New(zapcore.InfoLevel)
		_, err = Open(dir, zap.New(core))
		if (err != nil) != tc.wantErr || (logs.FilterMessageSnippet("writable by its group").Len() == 1) != tc.wantWarn {
			t.Errorf("Open(mode %04o) = %v, logged %v", tc.mode, err, logs.All())
		}
	}
	missing := filepath.Join(t.TempDir(), "a", "b")
	if _, exists, err := Check(missing); exists || err != nil {
		t.Errorf("Check(missing) = %v, %v", exists, err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("Check made %s", missing)
	}
	if _, err := Open(missing, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(missing); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("Open made %s: %v, %v; want mode 0700", missing, fi, err)
	}
}

// WriteAtomic replaces a link, never writes through it.
func TestWriteAtomicReplacesLink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "f")
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	if err := WriteAtomic(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the link's target holds %q", b)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s after WriteAtomic: %v, %v", path, fi, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("%s holds %q", path, b)
	}
}
