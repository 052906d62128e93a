// Package deptest holds the tests that keep the module's rules: every
// package says what it is in a doc comment, and imports follow the
// directions written in DESIGN.md.
package deptest
