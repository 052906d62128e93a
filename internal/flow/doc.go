// Package flow holds the packed 5-tuple key of an IP flow and its hash.
package flow
