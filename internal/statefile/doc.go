// Package statefile keeps the files a node's state directory holds, by
// one rule for all of them: every file is written atomically (a temporary
// file, fsync, rename, fsync of the directory), so a crash leaves the old
// file or the new one, never a mix or a write through a link; a file that
// cannot be read is reported naming it, with what the node does instead,
// and moved aside, never a reason to stop and never forgotten silently;
// the directory is private (one every local user may write is refused).
// What the files hold is their owners' business (network: the joined
// networks and address leases; the services); this package knows only
// files.
package statefile
