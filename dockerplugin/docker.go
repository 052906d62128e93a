package dockerplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/overlayd/overlayd/internal/fault"
)

// DefaultDockerHost is where the Docker API is unless DOCKER_HOST says.
const DefaultDockerHost = "unix:///var/run/docker.sock"

// DockerHost returns $DOCKER_HOST, else DefaultDockerHost.
func DockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return DefaultDockerHost
}

// Docker is a small client of the Docker Engine API: the two look-ups the
// plugin needs (plain net/http; the API is JSON over HTTP).
type Docker struct {
	host string
	base string // http://docker or http://HOST:PORT
	hc   *http.Client
}

var _ Names = (*Docker)(nil)

// NewDocker returns a client of the Docker API at host: unix:///PATH,
// tcp://HOST:PORT or http://HOST:PORT (TLS is not supported).
func NewDocker(host string) (*Docker, error) {
	u, err := url.Parse(host)
	if err != nil || u.Host == "" && u.Path == "" {
		return nil, fault.Invalid("docker host %q: want unix:///var/run/docker.sock or tcp://HOST:PORT", host)
	}
	tr := &http.Transport{MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second}
	d := &Docker{host: host, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			return nil, fault.Invalid("docker host %q: a unix socket needs a path, e.g. unix:///var/run/docker.sock", host)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", path)
		}
		d.base = "http://docker"
	case "tcp", "http":
		if u.Host == "" {
			return nil, fault.Invalid("docker host %q: want tcp://HOST:PORT", host)
		}
		d.base = "http://" + u.Host
	case "https":
		return nil, fault.Invalid("docker host %q: TLS to the Docker API is not supported; use its unix socket", host)
	default:
		return nil, fault.Invalid("docker host %q: want unix:///PATH or tcp://HOST:PORT", host)
	}
	return d, nil
}

// Host returns the address the client was made with.
func (d *Docker) Host() string { return d.host }

// get decodes GET path's JSON answer into v; a 404 is an ErrNotFound.
func (d *Docker) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return fault.Unavailable("the Docker API at %s does not answer: %v", d.host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fault.Unavailable("the Docker API at %s: %v", d.host, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fault.NotFound("the Docker API at %s has no %s", d.host, path)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		json.Unmarshal(body, &e)
		return fault.Unavailable("the Docker API at %s answered %s for %s: %s", d.host, resp.Status, path, e.Message)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fault.Unavailable("the Docker API at %s answered %s with bad JSON: %v", d.host, path, err)
	}
	return nil
}

// Ping checks that the Docker API answers.
func (d *Docker) Ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return fault.Unavailable("the Docker API at %s does not answer: %v", d.host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fault.Unavailable("the Docker API at %s answered %s to a ping", d.host, resp.Status)
	}
	return nil
}

// NetworkName returns the name of network id (GET /networks/ID); an
// ErrNotFound while Docker has not stored it.
func (d *Docker) NetworkName(ctx context.Context, id string) (string, error) {
	var n struct{ ID, Name string }
	if err := d.get(ctx, "/networks/"+url.PathEscape(id), &n); err != nil {
		return "", err
	}
	if n.ID != id || n.Name == "" {
		return "", fault.NotFound("the Docker API at %s shows no network %s", d.host, short(id))
	}
	return n.Name, nil
}

// EndpointName returns the name of endpoint endpointID of network
// networkID: its container's name, since Docker names an endpoint after
// its container. The network's inspect lists the endpoint from the moment
// Docker created it (before Join), which the container's own record does
// not (it gets the endpoint's ID after the start, and an inspect of a
// starting container waits for the start, which waits for the Join).
func (d *Docker) EndpointName(ctx context.Context, networkID, endpointID string) (string, error) {
	var n struct {
		ID         string `json:"Id"`
		Containers map[string]struct {
			Name       string
			EndpointID string
		}
	}
	if err := d.get(ctx, "/networks/"+url.PathEscape(networkID), &n); err != nil {
		return "", err
	}
	for _, c := range n.Containers {
		if c.EndpointID == endpointID && c.Name != "" {
			return c.Name, nil
		}
	}
	return "", fault.NotFound("the Docker API at %s shows no endpoint %s on network %s", d.host, short(endpointID), short(networkID))
}

// String names the client in logs.
func (d *Docker) String() string { return fmt.Sprintf("docker API %s", d.host) }
