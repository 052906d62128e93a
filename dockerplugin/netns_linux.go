package dockerplugin

import "syscall"

// nsfsMagic is the file system type of a namespace file (linux/magic.h).
const nsfsMagic = 0x6e736673

// isNetns reports whether path is a namespace file: the sandbox key is an
// empty file until Docker (before 28) bind-mounts the namespace on it.
func isNetns(path string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(path, &st) == nil && int64(st.Type) == nsfsMagic
}
