package main

import (
	"context"
	"io"

	"github.com/overlayd/overlayd/stack"
)

// nshelperName is the hidden subcommand the daemon runs, through nsenter,
// inside a rootless container's user and network namespaces to make its
// device there (stack.NetnsHelper); not in the usage, not for people.
const nshelperName = "nshelper"

// nshelperCmd runs the helper's side: stack.RunNetnsHelper.
func nshelperCmd(_ context.Context, args []string, _, _ io.Writer) error {
	return stack.RunNetnsHelper(args)
}
