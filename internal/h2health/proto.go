package h2health

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Status is grpc.health.v1.HealthCheckResponse.ServingStatus.
type Status int32

// The serving statuses.
const (
	Unknown        Status = 0
	Serving        Status = 1
	NotServing     Status = 2
	ServiceUnknown Status = 3
)

func (s Status) String() string {
	switch s {
	case Unknown:
		return "UNKNOWN"
	case Serving:
		return "SERVING"
	case NotServing:
		return "NOT_SERVING"
	case ServiceUnknown:
		return "SERVICE_UNKNOWN"
	}
	return fmt.Sprintf("status %d", int32(s))
}

// frameHeader is gRPC's message prefix: a compressed flag and a 4-byte
// big-endian length.
const frameHeader = 5

// EncodeRequest returns the framed HealthCheckRequest{service}: field 1, a
// string, left out when empty as proto3 does.
func EncodeRequest(service string) []byte {
	var msg []byte
	if service != "" {
		msg = append(msg, 1<<3|wireBytes)
		msg = binary.AppendUvarint(msg, uint64(len(service)))
		msg = append(msg, service...)
	}
	out := make([]byte, frameHeader, frameHeader+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// maxField is the largest protobuf field number.
const maxField = 1<<29 - 1

// DecodeResponse reads the framed HealthCheckResponse an answer's body
// holds: exactly one uncompressed message (the request asked for no
// compression), its status field 1 (absent: UNKNOWN, as proto3 reads it),
// fields it does not know skipped.
func DecodeResponse(body []byte) (Status, error) {
	if len(body) < frameHeader {
		return 0, fmt.Errorf("%d bytes: not a gRPC message", len(body))
	}
	if body[0] != 0 {
		return 0, errors.New("compressed message: none was asked for")
	}
	n := binary.BigEndian.Uint32(body[1:frameHeader])
	msg := body[frameHeader:]
	if uint64(n) != uint64(len(msg)) {
		return 0, fmt.Errorf("message of %d bytes framed as %d", len(msg), n)
	}
	st := Unknown
	for len(msg) > 0 {
		key, k := binary.Uvarint(msg)
		if k <= 0 || key>>3 == 0 || key>>3 > maxField {
			return 0, errors.New("bad field key")
		}
		msg = msg[k:]
		field, wire := key>>3, key&7
		switch wire {
		case wireVarint:
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, errors.New("bad varint")
			}
			msg = msg[k:]
			if field == 1 {
				st = Status(int32(v)) // enums are int32, sign-extended on the wire
			}
		case wireFixed64, wireFixed32:
			size := 8
			if wire == wireFixed32 {
				size = 4
			}
			if len(msg) < size {
				return 0, errors.New("truncated field")
			}
			msg = msg[size:]
		case wireBytes:
			l, k := binary.Uvarint(msg)
			if k <= 0 || l > uint64(len(msg)-k) {
				return 0, errors.New("truncated field")
			}
			msg = msg[k+int(l):]
		default:
			return 0, fmt.Errorf("field %d: wire type %d not expected", field, wire)
		}
		if field == 1 && wire != wireVarint {
			return 0, fmt.Errorf("status field of wire type %d", wire)
		}
	}
	return st, nil
}
