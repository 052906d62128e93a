package dockerplugin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultSocket is where dockerd looks for the plugin named overlayd.
const DefaultSocket = "/run/docker/plugins/overlayd.sock"

// Server serves a Plugin on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

// Listen serves h on the unix socket at path (mode 0600: dockerd runs as
// root), making its directory if needed. A stale socket of a dead daemon
// is replaced; a live one is an error.
func Listen(path string, h http.Handler) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, listenError(path, err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("dockerplugin: %s is in use by a running plugin; stop it first", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, listenError(path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, listenError(path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, listenError(path, err)
	}
	s := &Server{path: path, ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(ln)
	}()
	return s, nil
}

func listenError(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("dockerplugin: cannot create the plugin socket %s (%w); dockerd looks for plugins where only root may write: run overlayd as root", path, err)
	}
	return fmt.Errorf("dockerplugin: plugin socket %s: %w", path, err)
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving, removes the socket and waits. Safe twice.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.err = s.srv.Close()
		s.wg.Wait()
		os.Remove(s.path)
	})
	return s.err
}
