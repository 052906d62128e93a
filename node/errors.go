package node

import "github.com/overlayd/overlayd/internal/fault"

// The kinds of error the node's methods return (match them with
// errors.Is). The control API answers them with 400, 404, 409 and 503
// (api.StatusOf); the messages are one sentence for the user.
var (
	ErrInvalid     = fault.ErrInvalid     // the request is the user's mistake
	ErrNotFound    = fault.ErrNotFound    // it names what does not exist
	ErrConflict    = fault.ErrConflict    // it conflicts with the cluster's state
	ErrUnavailable = fault.ErrUnavailable // not possible on this node now
)

// OwnerError is the ErrConflict of a change to a service or backend that
// another node made: Owner names it (errors.As).
type OwnerError = fault.OwnerError
