package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/config"
	"github.com/overlayd/overlayd/dockerplugin"
	"github.com/overlayd/overlayd/node"
)

var _ dockerplugin.Backend = (*node.Node)(nil)

// dockerOptions are run's Docker flags. They are not in the YAML file:
// the plugin is a front end of the daemon's process, as the control
// socket's listener is, and node does not read them.
type dockerOptions struct {
	plugin *bool
	host   *string
	socket *string
}

// dockerFlags declares --docker-plugin, --docker-host and
// --docker-plugin-socket on fs.
func dockerFlags(fs *flag.FlagSet) *dockerOptions {
	return &dockerOptions{
		plugin: fs.Bool("docker-plugin", false, "serve Docker's network and IPAM driver protocol (driver overlayd: docker network create -d overlayd --ipam-driver overlayd --subnet CIDR NAME); needs --gossip and root"),
		host:   fs.String("docker-host", "", "the Docker API `URL` the plugin asks for network and container names, unix:///PATH or tcp://HOST:PORT (default $DOCKER_HOST, else "+dockerplugin.DefaultDockerHost+")"),
		socket: fs.String("docker-plugin-socket", dockerplugin.DefaultSocket, "the plugin's unix socket `path`; dockerd finds plugins in /run/docker/plugins (or through a .spec file naming the socket)"),
	}
}

// check finds the mistakes of the Docker flags before anything starts.
func (o *dockerOptions) check(cfg config.Config) error {
	if !*o.plugin {
		return nil
	}
	if !cfg.Gossip.Listen.IsValid() {
		return usagef("--docker-plugin needs the control plane (networks are created and joined through gossip): add --gossip IP:PORT")
	}
	if cfg.Mode == config.ModeTAP {
		return usagef("--docker-plugin needs an L3 attachment for its endpoints: --mode tun or netstack, not tap")
	}
	if os.Geteuid() != 0 && *o.socket == dockerplugin.DefaultSocket {
		return usagef("--docker-plugin needs root: dockerd looks for plugins in %s, which only root may write; run overlayd as root", filepath.Dir(dockerplugin.DefaultSocket))
	}
	if _, err := dockerplugin.NewDocker(o.dockerHost()); err != nil {
		return usagef("--docker-host: %v", err)
	}
	return nil
}

func (o *dockerOptions) dockerHost() string {
	if *o.host != "" {
		return *o.host
	}
	return dockerplugin.DockerHost()
}

// start serves the plugin over n until stop is called.
func (o *dockerOptions) start(n *node.Node, cfg config.Config, log *zap.Logger) (stop func(), err error) {
	if !*o.plugin {
		return func() {}, nil
	}
	docker, err := dockerplugin.NewDocker(o.dockerHost())
	if err != nil {
		return nil, usagef("--docker-host: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := docker.Ping(ctx); err != nil {
		log.Warn("docker plugin: no Docker API yet; network and container names are looked up when Docker asks", zap.Error(err))
	}
	cancel()
	state := ""
	if cfg.StateDir != "" {
		state = filepath.Join(cfg.StateDir, "docker-plugin.json")
	}
	p, err := dockerplugin.New(dockerplugin.Options{Backend: n, Names: docker, StatePath: state, Logger: log})
	if err != nil {
		return nil, err
	}
	srv, err := dockerplugin.Listen(*o.socket, p.Handler())
	if err != nil {
		p.Close()
		return nil, err
	}
	log.Info("docker plugin listening", zap.String("socket", srv.Path()), zap.String("docker_host", docker.Host()))
	return func() {
		srv.Close()
		p.Close()
	}, nil
}
