package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/overlayd/overlayd/internal/fault"
)

// statusOf is the one table from the domain's kinds of error (package
// fault) to the HTTP status the API answers them with. A 400 is the
// user's mistake (the CLI exits 2 on it, see RemoteError.Mistake).
var statusOf = map[*fault.Kind]int{
	fault.ErrInvalid:     http.StatusBadRequest,
	fault.ErrNotFound:    http.StatusNotFound,
	fault.ErrConflict:    http.StatusConflict,
	fault.ErrUnavailable: http.StatusServiceUnavailable,
}

// StatusOf returns the HTTP status the API answers err with: a
// *StatusError's code, else the status of err's kind (the outermost in
// its chain), else 500; 200 for nil.
func StatusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	if code, ok := statusOf[fault.KindOf(err)]; ok {
		return code
	}
	return http.StatusInternalServerError
}

// StatusError is an error with the HTTP status the API answers it with,
// for a Backend outside the module's domain packages (a fake, an
// embedding program's own); the node returns kinds of error instead (see
// StatusOf).
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// Errorf returns a *StatusError: a one-sentence message for the user and
// the HTTP status (400 bad input, 404 unknown name, 409 conflict with the
// cluster's state, 503 not available on this node).
func Errorf(code int, format string, args ...any) error {
	return &StatusError{Code: code, Msg: fmt.Sprintf(format, args...)}
}
