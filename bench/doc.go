// Package bench holds overlayd's go test -bench suites and the comparison harness; nothing imports it.
package bench
