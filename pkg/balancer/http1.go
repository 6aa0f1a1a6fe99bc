package balancer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/herd-cluster/herd/internal/uri"
	"io"
	"strconv"
)

// The gateway relays HTTP/1.1 itself instead of going through net/http's
// ReverseProxy: it parses only the message head, forwards the bytes of the
// body as they come (streaming, never buffered whole), and writes a small
// response whose head and body arrived together in one system call. This
// file is the head parser: strict where leniency enables request smuggling
// (RFC 9112 §6.3, §11.2).

// maxHead bounds a message head (request or status line and headers). It is
// also the size of each connection's read buffer.
const maxHead = 16 << 10

// httpError is a client error the gateway answers itself.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{status: 400, msg: fmt.Sprintf(format, args...)}
}

var errHeadTooLarge = &httpError{status: 431, msg: "request head larger than 16 KiB"}

// field is one header field; both slices point into the read buffer.
type field struct {
	name, value []byte
	// drop: not forwarded (hop-by-hop, or replaced by the gateway).
	drop bool
}

// head is a parsed message head. Its slices are valid until the reader it
// came from is advanced.
type head struct {
	size int // bytes of the head, final CRLF included
	// Request: method, target, proto. Response: proto, status, reason.
	line          [3][]byte
	status        int
	http10        bool
	fields        []field
	contentLength int64 // -1: absent
	chunked       bool
	close         bool   // the sender closes the connection after this message
	keepAlive     bool   // "Connection: keep-alive" (HTTP/1.0)
	upgrade       []byte // Upgrade header value
	connUpgrade   bool   // "Connection: upgrade"
	conn          [][]byte
	expect100     bool
	host          bool
	hostValue     []byte // the Host to route by and to send: the target's authority for an absolute-form target
	path          []byte // the target in origin-form (or "*"), as the backend gets it
	absolute      bool   // the target was in absolute-form: its authority replaces Host
	requestID     []byte
	idempotent    bool // Idempotency-Key present
	canaryPin     pin  // X-Herd-Canary: always or never (honoured with Config.CanaryPinning from a trusted proxy)
	forwardedFor  []byte
	// rewrite: some field must be dropped, so the raw head cannot be
	// forwarded as is.
	rewrite bool
}

func (h *head) reset() {
	fields, conn := h.fields[:0], h.conn[:0]
	*h = head{fields: fields, conn: conn, contentLength: -1}
}

// readHead reads a head from br into h: it waits until the blank line that
// ends the head is buffered, then parses it in place. It does not consume
// it: the caller calls br.Discard(h.size) once done with h's slices.
func readHead(br *bufio.Reader, h *head, request bool) error {
	h.reset()
	end := -1
	for scanned := 0; ; {
		b, err := br.Peek(max(br.Buffered(), 1))
		if request && len(b) > 0 && b[0] == '\r' {
			// Empty lines before a request line are ignored (RFC 9112 §2.2:
			// some clients send a CRLF after a POST body).
			n := 0
			for n+1 < len(b) && b[n] == '\r' && b[n+1] == '\n' {
				n += 2
			}
			if n > 0 {
				_, _ = br.Discard(n)
				scanned = 0
				continue
			}
		}
		if len(b) > 0 {
			if i := bytes.Index(b[max(scanned-3, 0):], crlfcrlf); i >= 0 {
				end = max(scanned-3, 0) + i + 4
				break
			}
			if bytes.Contains(b, lflf) || bytes.Contains(b, crlflf) {
				return badRequest("bare LF line endings")
			}
			scanned = len(b)
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errHeadTooLarge
			}
			if len(b) > 0 && errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if len(b) == br.Size() {
			return errHeadTooLarge
		}
		if _, err := br.Peek(len(b) + 1); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) && len(b) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	b, _ := br.Peek(end)
	h.size = end
	return parseHead(b[:end-2], h, request)
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
	lflf     = []byte("\n\n")
	crlflf   = []byte("\r\n\n")
)

// parseHead parses b, a head without its final CRLF.
func parseHead(b []byte, h *head, request bool) error {
	nl := bytes.Index(b, crlf)
	if nl < 0 {
		return badRequest("malformed head")
	}
	if err := parseFirstLine(b[:nl], h, request); err != nil {
		return err
	}
	rest := b[nl+2:]
	for len(rest) > 0 {
		nl := bytes.Index(rest, crlf)
		var line []byte
		if nl < 0 {
			line, rest = rest, nil
		} else {
			line, rest = rest[:nl], rest[nl+2:]
		}
		if err := h.addField(line); err != nil {
			return err
		}
	}
	for _, v := range h.conn {
		h.connection(v)
	}
	if request && !h.http10 && !h.host {
		return badRequest("missing Host header")
	}
	if h.absolute { // the target's authority replaces the client's Host
		for i := range h.fields {
			if equalFold(h.fields[i].name, "Host") {
				h.fields[i].drop, h.rewrite = true, true
			}
		}
	}
	if h.chunked && h.contentLength >= 0 {
		if request {
			return badRequest("both Content-Length and Transfer-Encoding")
		}
		h.contentLength = -1 // RFC 9112 §6.3: chunked wins
	}
	if h.http10 && !h.keepAlive {
		h.close = true
	}
	return nil
}

// errH2Preface: the client began with HTTP/2's connection preface (h2c
// prior knowledge). Served as HTTP/2 with Config.H2C; else answered as any
// other version this relay does not speak.
var errH2Preface = &httpError{status: 505, msg: "HTTP version not supported"}

func parseFirstLine(line []byte, h *head, request bool) error {
	a := bytes.IndexByte(line, ' ')
	if a <= 0 {
		return badRequest("malformed first line")
	}
	b := bytes.IndexByte(line[a+1:], ' ')
	if request {
		if b <= 0 {
			return badRequest("malformed request line")
		}
		if string(line) == "PRI * HTTP/2.0" {
			return errH2Preface
		}
		h.line = [3][]byte{line[:a], line[a+1 : a+1+b], line[a+2+b:]}
		if !isToken(h.line[0]) {
			return badRequest("malformed request line")
		}
		switch proto := h.line[2]; {
		case string(proto) == "HTTP/1.1":
		case string(proto) == "HTTP/1.0":
			h.http10 = true
		case isHTTPVersion(proto):
			return &httpError{status: 505, msg: "HTTP version not supported"}
		default: // a second space, a lower-case "http/1.1", anything else
			return badRequest("malformed request line")
		}
		return h.parseTarget()
	}
	if b < 0 { // no reason phrase
		b = len(line) - a - 1
		h.line = [3][]byte{line[:a], line[a+1:], nil}
	} else {
		h.line = [3][]byte{line[:a], line[a+1 : a+1+b], line[a+2+b:]}
	}
	if !bytes.HasPrefix(h.line[0], []byte("HTTP/1.")) || len(h.line[1]) != 3 {
		return fmt.Errorf("malformed status line %q", truncate(line, 64))
	}
	st, err := strconv.Atoi(string(h.line[1]))
	if err != nil || st < 100 {
		return fmt.Errorf("malformed status line %q", truncate(line, 64))
	}
	h.status = st
	h.http10 = string(h.line[0]) == "HTTP/1.0"
	return nil
}

func (h *head) addField(line []byte) error {
	if len(line) == 0 {
		return badRequest("empty header line")
	}
	if line[0] == ' ' || line[0] == '\t' {
		return badRequest("obsolete line folding")
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return badRequest("malformed header field %q", truncate(line, 64))
	}
	raw := line[colon+1:]
	f := field{name: line[:colon], value: bytes.Trim(raw, " \t")}
	for _, c := range f.value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return badRequest("invalid byte in header %q", f.name)
		}
	}
	switch len(f.name) {
	case 4:
		if equalFold(f.name, "Host") {
			if h.host {
				return badRequest("more than one Host header")
			}
			// Empty is valid (RFC 3986's reg-name may be); blanks alone are not.
			if len(f.value) > 0 && !uri.ValidHost(f.value) || len(f.value) == 0 && len(raw) > 0 {
				return badRequest("invalid Host header")
			}
			h.host = true
			if !h.absolute {
				h.hostValue = f.value
			}
		}
	case 6:
		if equalFold(f.name, "Expect") && equalFold(f.value, "100-continue") {
			h.expect100 = true
		}
	case 7:
		switch {
		case equalFold(f.name, "Upgrade"): // sent again only when upgrading
			h.upgrade, f.drop = f.value, true
		case equalFold(f.name, "Trailer"):
			f.drop = true
		}
	case 2:
		if equalFold(f.name, "TE") {
			f.drop = true
		}
	case 10:
		switch {
		case equalFold(f.name, "Connection"):
			f.drop = true
			h.conn = append(h.conn, f.value)
		case equalFold(f.name, "Keep-Alive"):
			f.drop = true
		}
	case 12:
		if equalFold(f.name, "X-Request-Id") {
			h.requestID = f.value
		}
	case 13:
		if equalFold(f.name, "X-Herd-Canary") {
			h.canaryPin = parsePin(f.value)
		}
	case 14:
		if equalFold(f.name, "Content-Length") {
			n, ok := parseLength(f.value)
			if !ok {
				return badRequest("invalid Content-Length %q", truncate(f.value, 32))
			}
			if h.contentLength >= 0 && h.contentLength != n {
				return badRequest("conflicting Content-Length headers")
			}
			h.contentLength = n
		}
	case 15:
		if equalFold(f.name, "X-Forwarded-For") {
			h.forwardedFor, f.drop = f.value, true
		}
		if equalFold(f.name, "Idempotency-Key") {
			h.idempotent = true
		}
	case 16:
		if equalFold(f.name, "Proxy-Connection") {
			f.drop = true
		}
		if equalFold(f.name, "X-Forwarded-Host") {
			f.drop = true
		}
	case 18, 19: // credentials for this hop's proxy, not for the backend
		if equalFold(f.name, "Proxy-Authenticate") || equalFold(f.name, "Proxy-Authorization") {
			f.drop = true
		}
	case 17:
		if equalFold(f.name, "Transfer-Encoding") {
			if !equalFold(f.value, "chunked") || h.chunked {
				return &httpError{status: 501, msg: fmt.Sprintf("unsupported Transfer-Encoding %q", truncate(f.value, 32))}
			}
			h.chunked = true
		} else if equalFold(f.name, "X-Forwarded-Proto") {
			f.drop = true
		}
	}
	h.rewrite = h.rewrite || f.drop
	h.fields = append(h.fields, f)
	return nil
}

// parsePin reads an X-Herd-Canary value; anything but always or never is
// no pin.
func parsePin(v []byte) pin {
	switch {
	case equalFold(v, "always"):
		return pinAlways
	case equalFold(v, "never"):
		return pinNever
	}
	return pinNone
}

// parseLength reads a Content-Length: plain digits only (no sign, no
// space, no list), at most 18 of them.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// connection reads a Connection header's options.
func (h *head) connection(v []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.Trim(tok, " \t")
		switch {
		case equalFold(tok, "close"):
			h.close = true
		case equalFold(tok, "keep-alive"):
			h.keepAlive = true
		case equalFold(tok, "upgrade"):
			h.connUpgrade = true
		default:
			// Any other header it names is hop-by-hop too.
			for i := range h.fields {
				if bytes.EqualFold(h.fields[i].name, tok) {
					h.fields[i].drop = true
				}
			}
		}
	}
}

// upgrading reports whether a request asks to switch protocols
// (WebSocket): both "Connection: upgrade" and an Upgrade header.
func (h *head) upgrading() bool { return h.connUpgrade && len(h.upgrade) > 0 }

// bodyless reports whether a response to method with this head has no body.
func (h *head) bodyless(method []byte) bool {
	return string(method) == "HEAD" || h.status/100 == 1 || h.status == 204 || h.status == 304
}

// isHTTPVersion reports whether b is "HTTP/" DIGIT "." DIGIT.
func isHTTPVersion(b []byte) bool {
	return len(b) == 8 && string(b[:5]) == "HTTP/" && isDigit(b[5]) && b[6] == '.' && isDigit(b[7])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseTarget checks the request target and splits an absolute-form one
// (a client that thinks it talks to a proxy) into the authority, which
// replaces Host (RFC 9112 §3.2.2), and the origin-form path the backend
// gets. Only bytes RFC 3986 allows in a URI may appear, '%' only as a
// percent-encoding, and no fragment: a control byte, a space, DEL or a
// non-ASCII byte is never forwarded (a lenient backend could read the rest
// of the line as another request).
func (h *head) parseTarget() error {
	t := h.line[1]
	switch {
	case len(t) == 1 && t[0] == '*':
		if string(h.line[0]) != "OPTIONS" {
			return badRequest("request target * is for OPTIONS only")
		}
		h.path = t
		return nil
	case len(t) > 0 && t[0] == '/':
		if !uri.ValidPart(t, uri.PathChar) {
			return badRequest("invalid request target")
		}
		h.path = t
		return nil
	}
	if string(h.line[0]) == "CONNECT" {
		return &httpError{status: 501, msg: "CONNECT not supported"}
	}
	var rest []byte
	for _, scheme := range []string{"http://", "https://"} {
		if len(t) > len(scheme) && equalFold(t[:len(scheme)], scheme) {
			rest = t[len(scheme):]
			break
		}
	}
	if rest == nil {
		return badRequest("invalid request target")
	}
	authority, path := rest, []byte("/")
	if i := bytes.IndexAny(rest, "/?"); i >= 0 {
		authority, path = rest[:i], rest[i:]
		if path[0] == '?' {
			return badRequest("invalid request target") // origin-form needs a path: "/?q", not "?q"
		}
	}
	if len(authority) == 0 || !uri.ValidHost(authority) || !uri.ValidPart(path, uri.PathChar) {
		return badRequest("invalid request target")
	}
	h.absolute, h.hostValue, h.path = true, authority, path
	return nil
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// equalFold is an ASCII case-insensitive comparison without allocation.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x|0x20 != y|0x20 || (x|0x20 < 'a' || x|0x20 > 'z') && x != y {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
