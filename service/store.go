package service

import (
	"bytes"
	"encoding/json"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/catalog"
	"github.com/overlayd/overlayd/internal/statefile"
)

// StateFile keeps, in the state directory, the entries of the service tables this
// node owns, so that its services and backends come back after a restart
// even when the whole cluster restarted.
const StateFile = "services.json"

// savedEntry is one own entry of the service tables.
type savedEntry struct {
	Table   string          `json:"table"`
	Network string          `json:"network"`
	Key     string          `json:"key"`
	Value   json.RawMessage `json:"value"`
}

type savedServices struct {
	Version int          `json:"version"`
	Entries []savedEntry `json:"entries"`
}

// save writes this node's own entries of the joined networks' service
// tables to the state (nothing without one).
func (m *Manager) save() {
	if m.o.State == nil {
		return
	}
	g := m.o.Gossip
	st := savedServices{Version: 1, Entries: []savedEntry{}}
	self := g.Name()
	for _, j := range m.o.Networks() {
		for _, table := range catalog.ServiceTables() {
			for _, e := range g.List(table, j.Name) {
				if e.Owner == self && json.Valid(e.Value) {
					st.Entries = append(st.Entries, savedEntry{Table: table, Network: j.Name, Key: e.Key, Value: e.Value})
				}
			}
		}
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := m.o.State.Write(StateFile, append(b, '\n')); err != nil {
		m.log.Error("keep services", zap.Error(err))
	}
}

// restore puts back the entries kept by save, in the networks the node
// has joined; entries the cluster already holds unchanged are left alone.
func (m *Manager) restore() {
	if m.o.State == nil {
		return
	}
	// statefile's rule: an unreadable file is reported naming it and
	// moved aside; the entries come back from the peers, which hold them.
	var st savedServices
	if m.o.State.Read(StateFile, "this node's services and backends come back from its peers (they are replicated)", func(b []byte) error {
		st = savedServices{}
		return json.Unmarshal(b, &st)
	}) != statefile.OK {
		return
	}
	g := m.o.Gossip
	joined := map[string]bool{}
	for _, j := range m.o.Networks() {
		joined[j.Name] = true
	}
	n := 0
	for _, e := range st.Entries {
		if !joined[e.Network] || (e.Table != catalog.TableServices && e.Table != catalog.TableBackends) {
			continue
		}
		if cur, ok := g.Get(e.Table, e.Network, e.Key); ok && cur.Owner == g.Name() && bytes.Equal(cur.Value, e.Value) {
			continue
		}
		if err := g.Put(e.Table, e.Network, e.Key, e.Value); err != nil {
			m.log.Warn("restore", zap.String("network", e.Network), zap.String("key", e.Key), zap.Error(err))
			continue
		}
		n++
	}
	if n > 0 {
		m.log.Info("services restored from the state directory", zap.Int("entries", n))
	}
}
