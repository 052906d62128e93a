package network

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/overlayd/overlayd/internal/statefile"
	"github.com/overlayd/overlayd/ipam"
)

// What the Manager keeps in the state directory: the joined networks
// (networks.json) and, per network, this node's IPAM ranges and leases
// (ipam-NAME.state, ipam's checksummed export), each written atomically.
const JoinedFile = "networks.json"

// joinedState is networks.json.
type joinedState struct {
	Version int      `json:"version"`
	Joined  []Joined `json:"joined"`
}

// decodeJoined decodes networks.json strictly.
func decodeJoined(b []byte) (joinedState, error) {
	var st joinedState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return joinedState{}, err
	}
	if st.Version != 1 {
		return joinedState{}, fmt.Errorf("unknown version %d", st.Version)
	}
	return st, nil
}

// loadJoined reads networks.json; the result says whether it was there
// and sound.
func (m *Manager) loadJoined() ([]Joined, statefile.Result) {
	var st joinedState
	fs := m.opts.State.Read(JoinedFile, "the joined networks are taken from the ipam-NETWORK.state files (the node's leases)", func(b []byte) error {
		var err error
		if st, err = decodeJoined(b); err != nil {
			return err
		}
		for _, j := range st.Joined {
			if !ValidName(j.Name) || j.VNI > maxVNI { // UnmarshalJSON checked the addresses
				return fmt.Errorf("bad network entry %+v", j)
			}
		}
		return nil
	})
	if fs != statefile.OK {
		return nil, fs
	}
	return st.Joined, statefile.OK
}

// saveJoined writes the joined networks to networks.json (nothing without
// a state directory).
func (m *Manager) saveJoined() error {
	if m.opts.State == nil {
		return nil
	}
	return m.writeJoined(m.Joined())
}

func (m *Manager) writeJoined(js []Joined) error {
	b, err := json.MarshalIndent(joinedState{Version: 1, Joined: js}, "", "  ")
	if err != nil {
		return err
	}
	return m.opts.State.Write(JoinedFile, append(b, '\n'))
}

// ipamFileName is the name of network's IPAM state file.
func ipamFileName(network string) string {
	return "ipam-" + url.PathEscape(network) + ".state"
}

// ipamFile is one sound ipam-NETWORK.state.
type ipamFile struct {
	raw   []byte
	state *ipam.State
}

// loadIPAM reads every ipam-NETWORK.state file (ipam's checksummed
// exports), by network; the unreadable ones are reported and left out.
func (m *Manager) loadIPAM() (map[string]ipamFile, error) {
	paths, err := filepath.Glob(m.opts.State.File("ipam-*.state"))
	if err != nil {
		return nil, err
	}
	out := map[string]ipamFile{}
	for _, path := range paths {
		var f ipamFile
		m.opts.State.Read(filepath.Base(path), "the node's ranges and leases in the network come back from its peers (they are replicated)", func(b []byte) error {
			st, err := ipam.DecodeState(b)
			if err == nil {
				f = ipamFile{raw: b, state: st}
			}
			return err
		})
		if f.state != nil {
			out[f.state.Network.Name] = f
		}
	}
	return out, nil
}

// joinedFromIPAM rebuilds the joined networks from the ipam state files:
// the leases this node took for itself (owner its name) in each, one per
// family, are its addresses there.
func joinedFromIPAM(self string, files map[string]ipamFile) []Joined {
	var out []Joined
	for _, f := range files {
		nw := f.state.Network
		j := Joined{Name: nw.Name, CIDRs: nw.CIDRs, VNI: nw.VNI}
		for _, c := range nw.CIDRs {
			for _, ls := range f.state.Leases {
				if ls.Owner == self && c.Contains(ls.Addr) {
					j.Addrs = append(j.Addrs, ls.Addr)
					break
				}
			}
		}
		if len(j.Addrs) == len(j.CIDRs) {
			out = append(out, j)
		}
	}
	slices.SortFunc(out, func(a, b Joined) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// persistIPAM is ipam's OnChange: keep the node's ranges and leases.
func (m *Manager) persistIPAM(network string) { m.saveIPAM(network, false) }

// saveIPAM exports the network's IPAM state and writes it to its state
// file (onlyChanged: unless it is what was written last). Export and write
// happen under savedMu, so two writers never put an older export over a
// newer one.
func (m *Manager) saveIPAM(network string, onlyChanged bool) {
	m.savedMu.Lock()
	defer m.savedMu.Unlock()
	b, err := m.ipam.Export(network)
	if err == nil && onlyChanged && bytes.Equal(m.saved[network], b) {
		return
	}
	if err == nil {
		err = m.opts.State.Write(ipamFileName(network), b)
	}
	if err != nil {
		m.log.Error("keep IPAM state", zap.String("network", network), zap.Error(err))
		return
	}
	if m.saved == nil {
		m.saved = map[string][]byte{}
	}
	m.saved[network] = b
}

// keepIPAM writes a joined network's IPAM state file again when the
// node's ranges and leases there differ from what was last written and
// the tables hold the node's lease of its address. ipam reports its own
// changes (OnChange), not the node's lease or range coming back from the
// peers after a restart, so a file written before they came back (an
// export taken while they were not yet visible) would otherwise stay
// without them. Networks still being recovered (checkRecovering) are left
// to it.
func (m *Manager) keepIPAM() {
	if m.opts.State == nil {
		return
	}
	m.mu.Lock()
	rec := map[string]bool{}
	for _, j := range m.recovering {
		rec[j.Name] = true
	}
	m.mu.Unlock()
	for _, j := range m.Joined() {
		if rec[j.Name] {
			continue
		}
		if !m.holdsAll(j) {
			continue
		}
		m.saveIPAM(j.Name, true)
	}
}

// holdsAll reports whether the tables hold the node's leases of all its
// addresses on j.
func (m *Manager) holdsAll(j Joined) bool {
	for _, a := range j.Addrs {
		if ls, ok := m.ipam.Lookup(j.Name, a); !ok || ls.Node != m.self {
			return false
		}
	}
	return true
}

// checkRecovering follows the joined networks whose IPAM state was lost
// (New): once the peers have given back this node's lease of its
// address, the state file is written again; if another node holds the
// address now, that is said, once.
func (m *Manager) checkRecovering() {
	m.mu.Lock()
	rec := m.recovering
	m.mu.Unlock()
	if len(rec) == 0 {
		return
	}
	var still []Joined
	for _, j := range rec {
		if m.recover(j) {
			m.persistIPAM(j.Name)
		} else {
			still = append(still, j)
		}
	}
	m.mu.Lock()
	m.recovering = still
	m.mu.Unlock()
}

// recover looks for the leases of j's addresses (checkRecovering); it
// reports whether they are all this node's again.
func (m *Manager) recover(j Joined) bool {
	done := true
	for _, a := range j.Addrs {
		addr := netip.PrefixFrom(a, a.BitLen())
		ls, ok := m.ipam.Lookup(j.Name, a)
		switch {
		case ok && ls.Node == m.self:
			m.log.Info("IPAM state recovered from the peers", zap.String("network", j.Name), zap.Stringer("addr", addr))
		case ok:
			m.log.Error("this node's address is leased to another node now; leave the network and join it again for a new address",
				zap.String("network", j.Name), zap.Stringer("addr", addr), zap.String("lease_holder", ls.Node))
			// said once: nothing more to wait for
		default:
			// No peer has the lease (it had not reached one when the file
			// was lost): make it again if the address is in a range of
			// this node's; otherwise wait for the peers' state.
			if err := m.ipam.Claim(j.Name, a, m.self); err == nil {
				m.log.Warn("IPAM lease made again from networks.json (no peer had it)", zap.String("network", j.Name), zap.Stringer("addr", addr))
				continue
			}
			done = false
		}
	}
	return done
}

// checkDefinitions says, once per change, when a joined network's
// definition is no longer the one this node joined: two parts of a
// partitioned cluster each created the name, and when they merged the
// other definition won (confirmCreated catches the race only while both
// are connected). The node's address belongs to the definition that lost;
// it keeps it until told otherwise, and says what to do.
func (m *Manager) checkDefinitions() {
	for _, j := range m.Joined() {
		nw, ok := m.ipam.Network(j.Name)
		if !ok {
			continue // not here (yet): a restart before the sync
		}
		m.mu.Lock()
		if m.redefined == nil {
			m.redefined = map[string]string{}
		}
		was := m.redefined[j.Name]
		now := ""
		if !slices.Equal(nw.CIDRs, j.CIDRs) || nw.VNI != j.VNI {
			now = fmt.Sprintf("%s VNI %d by %s", ipam.JoinCIDRs(nw.CIDRs), nw.VNI, nw.Creator)
		}
		m.redefined[j.Name] = now
		m.mu.Unlock()
		if now != "" && now != was {
			m.log.Error("a joined network was defined again elsewhere and that definition won; this node's address is from the one that lost: leave the network and join it again",
				zap.String("network", j.Name), zap.String("joined_cidr", ipam.JoinCIDRs(j.CIDRs)), zap.Uint32("joined_vni", j.VNI), zap.Stringer("addr", j),
				zap.String("cidr", ipam.JoinCIDRs(nw.CIDRs)), zap.Uint32("vni", nw.VNI), zap.String("creator", nw.Creator))
		}
	}
}
