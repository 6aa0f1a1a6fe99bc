// Package uri checks the parts of a URI as RFC 3986 writes them: what the
// gateway accepts in a request target and a Host, and in a route.
package uri

import "bytes"

// ValidPart reports whether b has only bytes allowed by ok, and every
// '%' starts a percent-encoding (two hex digits).
func ValidPart(b []byte, ok *[256]bool) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '%' {
			if i+2 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) {
				return false
			}
			i += 2
			continue
		}
		if !ok[c] {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'f' }

// ValidHost reports whether b is a URI authority without userinfo, as Host
// carries it: an IP-literal ("[::1]") or a reg-name / IPv4 address
// (RFC 3986 §3.2.2), then optionally ':' and a port.
func ValidHost(b []byte) bool {
	host, port := b, []byte(nil)
	if len(b) > 0 && b[0] == '[' {
		end := bytes.IndexByte(b, ']')
		if end < 2 || !ValidPart(b[1:end], IPLiteralChar) {
			return false
		}
		host, port = b[:end+1], b[end+1:]
		if len(port) > 0 {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
		}
	} else {
		if i := bytes.LastIndexByte(b, ':'); i >= 0 {
			host, port = b[:i], b[i+1:]
		}
		if len(host) == 0 || !ValidPart(host, RegNameChar) {
			return false
		}
	}
	if len(port) > 5 {
		return false
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	return len(host) > 0
}

// The bytes RFC 3986 allows, unencoded: in a reg-name (unreserved and
// sub-delims), in a path and query (pchar, '/' and '?'; also '[' and ']',
// which some clients leave unencoded in queries), and in an IP-literal.
var RegNameChar, PathChar, IPLiteralChar = func() (reg, path, ip *[256]bool) {
	reg, path, ip = new([256]bool), new([256]bool), new([256]bool)
	for c := byte('0'); c <= '9'; c++ {
		reg[c] = true
	}
	for c := byte('a'); c <= 'z'; c++ {
		reg[c], reg[c-32] = true, true
	}
	for _, c := range []byte("-._~!$&'()*+,;=") {
		reg[c] = true
	}
	*path, *ip = *reg, *reg
	for _, c := range []byte(":@/?[]") {
		path[c] = true
	}
	ip[':'] = true
	return reg, path, ip
}()

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
