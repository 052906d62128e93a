// Package metrics exports overlayd's counters to Prometheus: the names,
// help texts and labels of its metrics (a stable external interface), the
// collector that reads them at scrape time from the parts' own Stats, and
// the /metrics HTTP server.
//
// The collector keeps no counters of its own and imports no part that
// runs: it is handed, in Sources, what to read (package node wires them),
// and a part left out has its metrics left out.
package metrics
