// Package maglev implements the Maglev consistent-hashing lookup table of
// Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer" (NSDI 2016), with weights.
//
// A [Table] maps a 64-bit flow hash to one of a set of backends. Tables are
// pure functions of their input: backends are ordered by their stable ID and
// the permutation hashes use fixed seeds, so every node that builds a table
// from the same backends, weights and size gets a byte-identical table,
// whatever order the backends were given in.
//
// # Permutations
//
// Backend i, with ID s, gets the preference list
//
//	permutation[i][j] = (offset + j*skip) mod M
//	offset = h(offsetSeed, s) mod M
//	skip   = h(skipSeed, s) mod (M-1) + 1
//
// where M is the (prime) table size and h(seed, s) is 64-bit FNV-1a over
// the bytes of s, started from the FNV offset basis XORed with seed, and
// finished with the 64-bit MurmurHash3 finaliser (fmix64) so that IDs that
// differ only in their last byte still land far apart. The seeds are the
// constants offsetSeed and skipSeed below; changing them, or h, changes
// every table and must be treated as a wire-format change.
//
// # Weights
//
// The paper's population loop gives every backend one turn per round. Here
// a backend of weight w takes turns at the virtual times 1/w, 2/w, 3/w, …
// (the turn with the smallest time goes next, ties to the lower ID), so over
// the whole build each backend takes turns — and fills slots — in proportion
// to its weight, and within one slot of its exact share. Backends of weight 0
// are kept in [Table.Backends] (so indexes stay stable while a backend
// drains) but take no turns.
package maglev
