package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/overlayd/overlayd/internal/fault"
)

// Backend is what the API serves; the node implements it. Its methods may
// be called concurrently.
type Backend interface {
	Status(ctx context.Context) (Status, error)
}

// ControlBackend is the optional capability of a Backend with a control
// plane (networks, peers, learned routes), found by type assertion. Its
// errors are answered with the status StatusOf gives them.
type ControlBackend interface {
	Networks(ctx context.Context) ([]NetworkInfo, error)
	CreateNetwork(ctx context.Context, req CreateNetwork) (NetworkInfo, error)
	JoinNetwork(ctx context.Context, name string) (NetworkInfo, error)
	LeaveNetwork(ctx context.Context, name string) error
	Peers(ctx context.Context) ([]Peer, error)
	Routes(ctx context.Context) (Routes, error)
}

// maxBody bounds request bodies.
const maxBody = 64 << 10

// Server serves the control API on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

// Listen creates the socket at path (mode 0600, its directory 0700 if it
// has to be made) and serves b on it until Close. A stale socket left by a
// dead daemon is replaced; a live one is an error.
//
// The socket is never reachable with a looser mode, and the process's
// umask is left alone (an embedding program's own files are created
// meanwhile): it is bound in a new directory of mode 0700 beside path,
// which nobody else may enter, made 0600 there, and only then renamed to
// path, atomically.
func Listen(path string, b Backend) (*Server, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("api: control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("api: control socket %s is in use by a running overlayd; stop it or choose another with --control", path)
	}
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("api: control socket %s is a directory", path)
	}
	ln, err := listenPrivate(dir, path)
	if err != nil {
		return nil, fmt.Errorf("api: control socket %s: %w", path, err)
	}
	s := &Server{path: path, ln: ln}
	s.srv = &http.Server{
		Handler:           boundedBody(Handler(b)),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// listenPrivate binds a unix socket in a fresh 0700 directory in dir,
// makes it 0600 and renames it to path (replacing a stale file there).
func listenPrivate(dir, path string) (net.Listener, error) {
	priv, err := os.MkdirTemp(dir, ".ovl") // mode 0700; short, for sun_path's ~104 bytes
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Close removes path itself
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// bodyTimeout bounds the time a client may take to send a request's body
// (the headers have ReadHeaderTimeout). It is not a bound on the request:
// a handler may wait as long as its work takes (a join, an apply).
var bodyTimeout = 10 * time.Second

// boundedBody reads each request's body, at most maxBody bytes, within
// bodyTimeout before h runs, so that a client that stops sending holds a
// connection for no longer than that; h gets the body from memory. (The
// server's ReadTimeout would bound it too, but also cancel the context
// of a handler that outlives it.)
func boundedBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Now().Add(bodyTimeout))
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		switch {
		case err != nil: // the deadline stays: the server's reads fail, and it closes the connection
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusRequestTimeout, Error{Error: fmt.Sprintf("the request body did not arrive within %v", bodyTimeout)})
			return
		case len(body) > maxBody:
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusRequestEntityTooLarge, Error{Error: fmt.Sprintf("request body is larger than %d bytes", maxBody)})
			return
		}
		rc.SetReadDeadline(time.Time{}) // the handler may take as long as its work does
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving, removes the socket and waits. Safe twice.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.srv.Close()
		}
		os.Remove(s.path)
	})
	s.wg.Wait()
	return s.err
}

// Handler returns the API's HTTP handler for b.
func Handler(b Backend) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := b.Status(r.Context())
		answer(w, st, err)
	})
	control := capability[ControlBackend](b, "this daemon has no control plane")
	mux.HandleFunc("GET /v1/networks", control(func(w http.ResponseWriter, r *http.Request, cb ControlBackend) {
		ns, err := cb.Networks(r.Context())
		answer(w, ns, err)
	}))
	mux.HandleFunc("POST /v1/networks", control(func(w http.ResponseWriter, r *http.Request, cb ControlBackend) {
		var req CreateNetwork
		if err := decodeBody(w, r, &req); err != nil {
			answer(w, nil, err)
			return
		}
		n, err := cb.CreateNetwork(r.Context(), req)
		answer(w, n, err)
	}))
	mux.HandleFunc("POST /v1/networks/{name}/join", control(func(w http.ResponseWriter, r *http.Request, cb ControlBackend) {
		n, err := cb.JoinNetwork(r.Context(), r.PathValue("name"))
		answer(w, n, err)
	}))
	mux.HandleFunc("POST /v1/networks/{name}/leave", control(func(w http.ResponseWriter, r *http.Request, cb ControlBackend) {
		err := cb.LeaveNetwork(r.Context(), r.PathValue("name"))
		answer(w, struct{}{}, err)
	}))
	mux.HandleFunc("GET /v1/peers", control(func(w http.ResponseWriter, r *http.Request, cb ControlBackend) {
		ps, err := cb.Peers(r.Context())
		answer(w, ps, err)
	}))
	mux.HandleFunc("GET /v1/routes", control(func(w http.ResponseWriter, r *http.Request, cb ControlBackend) {
		rs, err := cb.Routes(r.Context())
		answer(w, rs, err)
	}))
	serviceRoutes(mux, b)
	endpointRoutes(mux, b)
	applyRoutes(mux, b)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	return mux
}

// decodeBody reads one JSON object, strictly (unknown fields are errors),
// into v; the error is one sentence for the user, an ErrInvalid.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fault.Invalid("request body is larger than %d bytes", maxBody)
		}
		return fault.Invalid("bad request body: %v", err)
	}
	if dec.More() {
		return fault.Invalid("bad request body: more than one JSON value")
	}
	return nil
}

// answer writes v, or err with the status StatusOf gives it.
func answer(w http.ResponseWriter, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	writeJSON(w, StatusOf(err), Error{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// capability returns a wrapper for the handlers of an optional capability
// T of b: when b lacks T they answer 503 with missing, else they run with
// b as a T.
func capability[T any](b Backend, missing string) func(func(http.ResponseWriter, *http.Request, T)) http.HandlerFunc {
	c, ok := b.(T)
	return func(f func(http.ResponseWriter, *http.Request, T)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !ok {
				writeJSON(w, http.StatusServiceUnavailable, Error{Error: missing})
				return
			}
			f(w, r, c)
		}
	}
}
