package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/overlayd/overlayd/api"
)

// status has a gossip line: the members by state, why the node has not
// joined, and the would-be members refused.
func TestStatusGossipLine(t *testing.T) {
	for _, tc := range []struct {
		g    *api.GossipStatus
		want string
	}{
		{&api.GossipStatus{Alive: 3, Dead: 1}, "4 members: 3 alive, 1 dead\n"},
		{&api.GossipStatus{Alive: 1, JoinError: "gossip: join 192.0.2.1:7946: refused: the cluster encrypts gossip and this node has no key"},
			"1 member: 1 alive; not joined: join 192.0.2.1:7946: refused: the cluster encrypts gossip and this node has no key\n"},
		{&api.GossipStatus{Alive: 2, Suspect: 1, Left: 1, Refused: map[string]uint64{"member_name": 5, "member_version": 2}},
			"4 members: 2 alive, 1 suspect, 1 left; refused as not overlayd nodes: name 5, version 2\n"},
	} {
		var b bytes.Buffer
		printStatus(&b, api.Status{Name: "a", Gossip: tc.g})
		if !regexp.MustCompile(`\ngossip +` + regexp.QuoteMeta(tc.want)).MatchString(b.String()) {
			t.Errorf("status with %+v lacks %q:\n%s", tc.g, tc.want, b.String())
		}
	}
	var b bytes.Buffer
	printStatus(&b, api.Status{Name: "a"})
	if strings.Contains(b.String(), "gossip") {
		t.Errorf("status without gossip has a gossip line:\n%s", b.String())
	}
}
