package balancer

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// The HTTP/1.1 wire, beside the head parser (http1.go): the heads the
// gateway writes, and bodies copied as they come (never buffered whole).

// appendRequestHead writes the request as the backend gets it: HTTP/1.1,
// the client's fields minus hop-by-hop ones, Host kept, X-Forwarded-For
// appended to (for a trusted proxy) or replaced, X-Forwarded-Proto and
// -Host set, X-Request-Id kept or added.
func (cc *clientConn) appendRequestHead(out []byte) []byte {
	req := &cc.req
	out = append(out, req.line[0]...)
	out = append(out, ' ')
	out = appendStripped(out, req.path, cc.x.strip)
	out = append(out, " HTTP/1.1\r\n"...)
	for _, f := range req.fields {
		if !f.drop {
			out = appendField(out, f.name, f.value)
		}
	}
	out = append(out, "X-Forwarded-For: "...)
	if cc.trusted && len(req.forwardedFor) > 0 {
		out = append(out, req.forwardedFor...)
		out = append(out, ", "...)
	}
	out = append(out, cc.remoteIP...)
	if cc.proto == protoHTTPS {
		out = append(out, "\r\nX-Forwarded-Proto: https\r\n"...)
	} else {
		out = append(out, "\r\nX-Forwarded-Proto: http\r\n"...)
	}
	switch {
	case req.absolute:
		out = appendField(out, []byte("Host"), req.hostValue)
		out = appendField(out, []byte("X-Forwarded-Host"), req.hostValue)
	case len(req.hostValue) > 0:
		out = appendField(out, []byte("X-Forwarded-Host"), req.hostValue)
	case !req.host:
		out = append(out, "Host:\r\n"...) // HTTP/1.0 without Host: empty, as RFC 9112 §3.2 says
	}
	if len(req.requestID) == 0 {
		out = appendField(out, []byte("X-Request-Id"), cc.reqID)
	}
	if req.upgrading() {
		out = append(out, "Connection: Upgrade\r\n"...)
		out = appendField(out, []byte("Upgrade"), req.upgrade)
	}
	return append(out, crlf...)
}

// appendResponseHead writes the backend's response head minus hop-by-hop
// fields, adding Connection: close when the client connection ends after it.
func (cc *clientConn) appendResponseHead(out []byte, closing, dechunk, upgrade bool) []byte {
	resp := &cc.resp
	out = append(out, resp.line[0]...)
	out = append(out, ' ')
	out = append(out, resp.line[1]...)
	out = append(out, ' ')
	out = append(out, resp.line[2]...)
	out = append(out, crlf...)
	hsts := cc.proto == protoHTTPS && cc.b.hsts != nil
	for _, f := range resp.fields {
		if f.drop || dechunk && equalFold(f.name, "Transfer-Encoding") {
			continue
		}
		if hsts && equalFold(f.name, "Strict-Transport-Security") {
			hsts = false // the backend's own
		}
		out = appendField(out, f.name, f.value)
	}
	if hsts {
		out = append(out, cc.b.hsts...)
	}
	switch {
	case upgrade:
		out = append(out, "Connection: Upgrade\r\n"...)
		out = appendField(out, []byte("Upgrade"), resp.upgrade)
	case closing:
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, crlf...)
}

func appendField(out, name, value []byte) []byte {
	out = append(out, name...)
	if len(value) == 0 { // "Host:" empty, not "Host: ": a blank value is refused
		return append(out, ":\r\n"...)
	}
	out = append(out, ": "...)
	out = append(out, value...)
	return append(out, crlf...)
}

// clientError is a failure on the client side of the relay.
type clientError struct{ err error }

func (e *clientError) Error() string { return "client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// copyN copies n bytes from src to dst as they arrive, through src's
// buffer: no allocation, and nothing held back. A failed write is a
// *clientError.
func copyN(dst io.Writer, src *bufio.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return done, err
			}
		}
		b, _ := src.Peek(int(min(int64(src.Buffered()), n-done)))
		w, err := dst.Write(b)
		_, _ = src.Discard(w)
		done += int64(w)
		if err != nil {
			return done, &clientError{err}
		}
	}
	return done, nil
}

// copyAll copies from src to dst until src ends.
func copyAll(dst io.Writer, src *bufio.Reader) (int64, error) {
	var done int64
	for {
		if src.Buffered() == 0 {
			if _, err := src.Peek(1); err != nil {
				if errors.Is(err, io.EOF) {
					return done, nil
				}
				return done, err
			}
		}
		b, _ := src.Peek(src.Buffered())
		w, err := dst.Write(b)
		_, _ = src.Discard(w)
		done += int64(w)
		if err != nil {
			return done, &clientError{err}
		}
	}
}

// relayChunked copies a chunked body from src to dst, chunk by chunk as
// they arrive, trailers included. With dechunk, only the data is written.
func relayChunked(dst io.Writer, src *bufio.Reader, dechunk bool) error {
	var sizeLine []byte
	for {
		line, err := readLine(src)
		if err != nil {
			return err
		}
		sizeText := line
		if i := bytes.IndexByte(sizeText, ';'); i >= 0 {
			sizeText = sizeText[:i]
		}
		size, err := strconv.ParseUint(string(bytes.TrimRight(sizeText, " \t")), 16, 62)
		if err != nil {
			return badRequest("malformed chunk size %q", truncate(line, 32))
		}
		if !dechunk {
			// The size line is written again as the number the gateway
			// read (no leading zeros, whitespace or extensions), so the
			// backend cannot read another size: no disagreement to
			// smuggle through. Dropping extensions is allowed: RFC 9112
			// §7.1.1 lets a recipient ignore them.
			sizeLine = append(strconv.AppendUint(sizeLine[:0], size, 16), crlf...)
			if _, err := dst.Write(sizeLine); err != nil {
				return &clientError{err}
			}
		}
		_, _ = src.Discard(len(line) + 2)
		if size == 0 {
			// Trailers, then the blank line.
			for {
				line, err := readLine(src)
				if err != nil {
					return err
				}
				if !dechunk {
					if _, err := dst.Write(lineWithCRLF(src, line)); err != nil {
						return &clientError{err}
					}
				}
				_, _ = src.Discard(len(line) + 2)
				if len(line) == 0 {
					return nil
				}
			}
		}
		if _, err := copyN(dst, src, int64(size)); err != nil {
			return err
		}
		end, err := src.Peek(2)
		if err != nil {
			return err
		}
		if !bytes.Equal(end, crlf) {
			return badRequest("chunk not followed by CRLF")
		}
		if !dechunk {
			if _, err := dst.Write(end); err != nil {
				return &clientError{err}
			}
		}
		_, _ = src.Discard(2)
	}
}

// readLine peeks at the next CRLF-terminated line (without the CRLF).
func readLine(br *bufio.Reader) ([]byte, error) {
	for {
		b, err := br.Peek(max(1, br.Buffered()))
		if i := bytes.Index(b, crlf); i >= 0 {
			return b[:i], nil
		}
		if len(b) >= 4096 {
			return nil, badRequest("chunk line too long")
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if _, err := br.Peek(len(b) + 1); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

func lineWithCRLF(br *bufio.Reader, line []byte) []byte {
	b, _ := br.Peek(len(line) + 2)
	return b
}
