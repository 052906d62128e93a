package api

// Door is one of the node's front doors on the host (a SOCKS5 or HTTP
// CONNECT proxy, or a port forward) with its counters.
type Door struct {
	Kind   string `json:"kind"`             // socks5, http_proxy or forward
	Listen string `json:"listen"`           // as configured; port 0 picks one
	Addr   string `json:"addr"`             // the host address it listens on
	Target string `json:"target,omitempty"` // forward only: HOST:PORT
	Proto  string `json:"proto,omitempty"`  // forward only: tcp or udp

	Accepted uint64            `json:"accepted"`         // connections (UDP forward: sessions) taken on
	Refused  uint64            `json:"refused"`          // turned away at the connection limit
	Active   int64             `json:"active"`           // open now
	Failed   map[string]uint64 `json:"failed,omitempty"` // accepted but never spliced, by reason
	OutBytes uint64            `json:"out_bytes"`        // client → overlay
	InBytes  uint64            `json:"in_bytes"`         // overlay → client
	Dropped  map[string]uint64 `json:"dropped,omitempty"`
}
