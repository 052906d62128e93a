// Package stacktest provides an in-memory stack.Device for router and node
// tests: packets are injected as if a local program had sent them and
// captured as the device received them.
package stacktest
