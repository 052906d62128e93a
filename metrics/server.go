package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Server serves /metrics on a host address.
type Server struct {
	ln       net.Listener
	srv      *http.Server
	wg       sync.WaitGroup
	once     sync.Once
	serveErr error // set by the Serve goroutine before wg.Done
	err      error // Close's result: serveErr and Shutdown's error
}

// Listen opens addr (IP:PORT; port 0 picks one) and serves reg's metrics
// at /metrics on it, in the Prometheus text format, until Close. At most
// four scrapes run at once, each for at most ten seconds. log (nil: none)
// gets the server's own errors, under the name "metrics".
func Listen(addr string, reg prometheus.Gatherer, log *zap.Logger) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            zap.NewStdLog(log.Named("metrics")),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	m := &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
	}}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.serveErr = fmt.Errorf("metrics on %s: %w", m.Addr(), err)
			log.Warn("metrics server stopped", zap.Error(err))
		}
	}()
	log.Info("metrics endpoint open", zap.String("url", "http://"+ln.Addr().String()+"/metrics"))
	return m, nil
}

// Addr is the address the server listens on (IP:PORT).
func (m *Server) Addr() string { return m.ln.Addr().String() }

// Close stops the server, waiting up to a second for scrapes in progress
// and then dropping them, and waits for it. Its error says why Serve
// stopped early or that Shutdown had to drop connections (errors.Join of
// the two). Safe twice: the second call returns the first's error.
func (m *Server) Close() error {
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var shutdownErr error
		if err := m.srv.Shutdown(ctx); err != nil {
			shutdownErr = fmt.Errorf("metrics on %s: shutdown: %w; the connections still open were closed", m.Addr(), err)
			m.srv.Close()
		}
		m.wg.Wait()
		m.err = errors.Join(m.serveErr, shutdownErr)
	})
	return m.err
}
