// Package api implements overlayd's control API: HTTP/JSON on a unix socket
// (mode 0600) over a small Backend interface that the node implements, and
// the client that the CLI's subcommands use.
package api
