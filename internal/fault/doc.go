// Package fault names the kinds of failure that the domain packages (node
// today; services and networks when they move out of it) report to their
// callers: not found, conflict, invalid request, unavailable. A domain
// error is one sentence for the user of one kind; only the api package
// knows which HTTP status a kind is answered with.
//
// The kinds live here, in a leaf that imports only the standard library,
// because both sides need them: the domain packages make the errors and
// api maps them, and api may not import a domain package (nor they api).
package fault
