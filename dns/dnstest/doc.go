// Package dnstest provides DNS upstreams for tests: a scripted fake on
// loopback and a real dnsmasq process on loopback.
package dnstest
