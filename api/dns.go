package api

// DNSStatus is the node's DNS server: where it listens and its counters.
type DNSStatus struct {
	Domain    string            `json:"domain"`
	Listen    string            `json:"listen"`    // host listener, IP:PORT
	Addrs     []string          `json:"addrs"`     // networks' DNS addresses served (port 53)
	Upstreams []string          `json:"upstreams"` // resolvers other names go to
	Queries   map[string]uint64 `json:"queries"`   // by type: A, AAAA, SRV, …
	Responses map[string]uint64 `json:"responses"` // by rcode: NOERROR, NXDOMAIN, REFUSED, …
	Dropped   uint64            `json:"dropped"`   // packets given no reply

	CacheHits      uint64 `json:"cache_hits"`
	CacheMisses    uint64 `json:"cache_misses"`
	CacheEntries   int    `json:"cache_entries"`
	UpstreamErrors uint64 `json:"upstream_errors"`
	Busy           uint64 `json:"busy"` // queries refused: too many in flight upstream
}
