package catalog

import (
	"testing"

	"github.com/overlayd/overlayd/gossip"
)

// fakeReader serves fixed tables; List hides entries of dead owners,
// ListAll does not, as gossip does.
type fakeReader struct {
	members []gossip.Member
	entries map[[2]string][]gossip.Entry // table, network
}

func (f fakeReader) live(owner string) bool {
	for _, m := range f.members {
		if m.Name == owner {
			return m.State != gossip.StateDead
		}
	}
	return false
}

func (f fakeReader) List(table, network string) []gossip.Entry {
	var out []gossip.Entry
	for _, e := range f.entries[[2]string{table, network}] {
		if f.live(e.Owner) {
			out = append(out, e)
		}
	}
	return out
}

func (f fakeReader) ListAll(table, network string) []gossip.Entry {
	return f.entries[[2]string{table, network}]
}

func (f fakeReader) Members() []gossip.Member { return f.members }

func TestRead(t *testing.T) {
	r := fakeReader{
		members: []gossip.Member{{Name: "a", State: gossip.StateAlive}, {Name: "b", State: gossip.StateDead}, {Name: "c", State: gossip.StateSuspect}},
		entries: map[[2]string][]gossip.Entry{
			{TableRoutes, "blue"}:   {{Key: "a", Owner: "a"}, {Key: "b", Owner: "b"}},
			{TableServices, "blue"}: {{Key: "web", Owner: "b"}},
			{TableBackends, "blue"}: {{Key: "web/10.0.0.1:80", Owner: "b"}, {Key: "web/10.0.0.2:80", Owner: "c"}},
			{TableRoutes, "red"}:    {{Key: "c", Owner: "c"}},
		},
	}
	s := Read(r, []string{"blue"})
	if len(s.Members) != 3 {
		t.Errorf("members %v", s.Members)
	}
	if _, ok := s.Networks["red"]; ok {
		t.Errorf("snapshot holds network red, not asked for")
	}
	blue := s.Networks["blue"]
	if len(blue.Routes) != 1 || blue.Routes[0].Owner != "a" {
		t.Errorf("routes %v, want a's only (b is dead)", blue.Routes)
	}
	if len(blue.Services) != 1 || blue.Services[0].Owner != "b" {
		t.Errorf("services %v, want the dead creator's kept", blue.Services)
	}
	if len(blue.VisibleServices) != 0 {
		t.Errorf("visible services %v, want none (their creator is dead)", blue.VisibleServices)
	}
	if len(blue.Backends) != 1 || blue.Backends[0].Owner != "c" {
		t.Errorf("backends %v, want c's only", blue.Backends)
	}
	for name, want := range map[string]bool{"a": true, "b": false, "c": true, "x": false} {
		if got := s.Live(name); got != want {
			t.Errorf("Live(%q) = %v, want %v", name, got, want)
		}
	}
}
