// Package api is the client side of Herd's admin HTTP API: the JSON types
// that gateways and agents answer with, and a Client for them.
//
// It imports nothing but the standard library, so any program (clusterctl,
// an operator's script, another service) can use it without linking the
// gateway: no gossip, no metrics, no proxy. The server side, which converts
// the cluster's own values into these types, is package admin.
//
// Every type here is a wire type: a plain struct whose JSON tags are the
// API's field names. Times are RFC 3339; durations are Go duration strings
// such as "5s" (Duration).
package api
