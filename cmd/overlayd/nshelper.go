package main

import (
	"context"
	"io"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/stack"
)

// nshelperName is the hidden subcommand the daemon runs, through nsenter,
// inside a rootless container's user and network namespaces to make its
// device there (stack.NetnsHelper); not in the usage, not for people.
const nshelperName = "nshelper"

// netnsHelper runs this binary's nshelper: the daemon's way into a
// rootless container's namespace when it may not enter it itself.
func netnsHelper(log *zap.Logger) *stack.NetnsHelper {
	return &stack.NetnsHelper{Args: []string{nshelperName}, Logger: log}
}

// nshelperCmd runs the helper's side: stack.RunNetnsHelper.
func nshelperCmd(_ context.Context, args []string, _, _ io.Writer) error {
	return stack.RunNetnsHelper(args)
}
