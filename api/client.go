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
	"net/url"
	"os"
	"syscall"
)

// RemoteError is the daemon's answer to a request it did not carry out:
// Code is the HTTP status (see StatusOf), Msg the daemon's sentence.
type RemoteError struct {
	Code int
	Msg  string
}

func (e *RemoteError) Error() string { return "overlayd: " + e.Msg }

// Mistake reports whether the daemon refused the request as bad input
// (400): a mistake of the user's, not a failure.
func (e *RemoteError) Mistake() bool { return e.Code == http.StatusBadRequest }

// Client talks to a daemon's control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the socket at path. It connects lazily.
func NewClient(path string) *Client {
	return &Client{
		path: path,
		hc: &http.Client{Transport: &http.Transport{
			// One connection per request: a unix socket costs nothing
			// to dial, and a client never leaves idle connections behind.
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		}},
	}
}

// Status fetches the node's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	return st, c.get(ctx, "/v1/status", &st)
}

// Networks lists the cluster's networks.
func (c *Client) Networks(ctx context.Context) ([]NetworkInfo, error) {
	var ns []NetworkInfo
	return ns, c.get(ctx, "/v1/networks", &ns)
}

// CreateNetwork defines a network cluster-wide.
func (c *Client) CreateNetwork(ctx context.Context, req CreateNetwork) (NetworkInfo, error) {
	var n NetworkInfo
	return n, c.do(ctx, http.MethodPost, "/v1/networks", req, &n)
}

// JoinNetwork attaches the node to a network; the answer carries its address.
func (c *Client) JoinNetwork(ctx context.Context, name string) (NetworkInfo, error) {
	var n NetworkInfo
	return n, c.do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(name)+"/join", nil, &n)
}

// LeaveNetwork detaches the node from a network.
func (c *Client) LeaveNetwork(ctx context.Context, name string) error {
	var v struct{}
	return c.do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(name)+"/leave", nil, &v)
}

// Peers lists the cluster's members.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var ps []Peer
	return ps, c.get(ctx, "/v1/peers", &ps)
}

// Routes fetches the routes in force and the per-network digests.
func (c *Client) Routes(ctx context.Context) (Routes, error) {
	var rs Routes
	return rs, c.get(ctx, "/v1/routes", &rs)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://overlayd"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no overlayd is running at %s (start one with 'overlayd run', or point --control / OVERLAYD_CONTROL at its socket)", c.path)
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("no permission to use %s (the socket is mode 0600: run as the daemon's user)", c.path)
		}
		return fmt.Errorf("api: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("api: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(answer, &e) == nil && e.Error != "" {
			return &RemoteError{Code: resp.StatusCode, Msg: e.Error}
		}
		return &RemoteError{Code: resp.StatusCode, Msg: resp.Status}
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("api: bad answer from %s: %w", c.path, err)
	}
	return nil
}
