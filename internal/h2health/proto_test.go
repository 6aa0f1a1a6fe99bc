package h2health

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

func frame(msg []byte) []byte {
	out := make([]byte, frameHeader, frameHeader+len(msg))
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func TestEncodeRequestMatchesProtobuf(t *testing.T) {
	for _, svc := range []string{"", "scoring", string(make([]byte, 300))} {
		want, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: svc})
		require.NoError(t, err)
		assert.Equal(t, frame(want), EncodeRequest(svc), "service %q", svc)
	}
}

func TestDecodeResponse(t *testing.T) {
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{0, 1, 2, 3, 7} {
		msg, err := proto.Marshal(&healthpb.HealthCheckResponse{Status: st})
		require.NoError(t, err)
		got, err := DecodeResponse(frame(msg))
		require.NoError(t, err)
		assert.Equal(t, Status(st), got)
	}
	for name, body := range map[string][]byte{
		"empty":          nil,
		"short":          {0, 0, 0},
		"compressed":     {1, 0, 0, 0, 2, 8, 1},
		"long frame":     {0, 0, 0, 0, 9, 8, 1},
		"short frame":    {0, 0, 0, 0, 1, 8, 1},
		"bad varint":     frame([]byte{8, 0x80}),
		"field 0":        frame([]byte{0, 1}),
		"truncated":      frame([]byte{0x12, 5, 'a'}),
		"status as text": frame([]byte{0x0a, 1, 'a'}),
		"group":          frame([]byte{0x13}),
	} {
		_, err := DecodeResponse(body)
		assert.Error(t, err, name)
	}
	// Unknown fields are skipped, the last status wins as in protobuf.
	got, err := DecodeResponse(frame([]byte{0x12, 1, 'x', 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4, 8, 2, 8, 1}))
	require.NoError(t, err)
	assert.Equal(t, Serving, got)
}

// FuzzDecodeResponse: whatever the decoder accepts, protobuf reads the
// same status from.
func FuzzDecodeResponse(f *testing.F) {
	for _, st := range []healthpb.HealthCheckResponse_ServingStatus{0, 1, 2} {
		msg, _ := proto.Marshal(&healthpb.HealthCheckResponse{Status: st})
		f.Add(frame(msg))
	}
	f.Add(frame([]byte{0x12, 1, 'x', 8, 1}))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := DecodeResponse(body)
		if err != nil {
			return
		}
		var m healthpb.HealthCheckResponse
		require.NoError(t, proto.Unmarshal(body[frameHeader:], &m), "accepted what protobuf refuses")
		assert.Equal(t, Status(m.Status), st)
	})
}
