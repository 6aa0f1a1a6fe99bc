// Package scoring is the gRPC predictor's service: the tone scoring of
// examples/predictor (package tone) as gRPC methods, a unary Score and a
// bidirectional ScoreStream. There is no protoc here: the service
// descriptor is written by hand and messages travel as JSON (content type
// application/grpc+json), through the codec this package registers with
// grpc-go. Clients use Client; servers NewServer.
package scoring

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"

	"github.com/herd-cluster/herd/examples/predictor/tone"
)

// ServiceName is the gRPC service's full name.
const ServiceName = "herd.predictor.v1.Predictor"

// MaxDelay bounds ScoreRequest.DelayMs.
const MaxDelay = 10 * time.Second

// ScoreRequest asks for the tone of Text. DelayMs makes the answer wait
// that long first (at most MaxDelay; the call's deadline still ends it):
// a slow model, for tests of deadlines and of rollouts under load.
type ScoreRequest struct {
	Text    string `json:"text"`
	DelayMs int64  `json:"delay_ms,omitempty"`
}

// ScoreReply is a prediction, with the version and the replica that made
// it, and the time the call had left when the server got it (0: no
// deadline), which shows the caller's deadline reached it.
type ScoreReply struct {
	Label      string             `json:"label"`
	Scores     map[string]float64 `json:"scores"`
	Version    string             `json:"version"`
	Instance   string             `json:"instance"`
	DeadlineMs int64              `json:"deadline_ms,omitempty"`
}

// codec marshals messages as JSON.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (codec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (codec) Name() string                    { return codecName }

const codecName = "json"

// grpc-go finds a server's codecs by content subtype in a registry that
// may only be written at init time; this is the one init of the example.
func init() { encoding.RegisterCodec(codec{}) }

// Server is what the service does.
type Server interface {
	Score(context.Context, *ScoreRequest) (*ScoreReply, error)
	ScoreStream(grpc.BidiStreamingServer[ScoreRequest, ScoreReply]) error
}

// ServiceDesc describes the service to grpc-go, as protoc would.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Score",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(ScoreRequest)
			if err := dec(in); err != nil {
				return nil, err
			}
			if icpt == nil {
				return srv.(Server).Score(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + ServiceName + "/Score"}
			return icpt(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(Server).Score(ctx, req.(*ScoreRequest))
			})
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName: "ScoreStream",
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(Server).ScoreStream(&grpc.GenericServerStream[ScoreRequest, ScoreReply]{ServerStream: stream})
		},
		ServerStreams: true,
		ClientStreams: true,
	}},
}

// Register registers srv's methods with s.
func Register(s grpc.ServiceRegistrar, srv Server) { s.RegisterService(&ServiceDesc, srv) }

// Model is the Server: tone scoring, answered with its version and
// instance.
type Model struct {
	Version, Instance string
}

// Score scores one text.
func (m *Model) Score(ctx context.Context, req *ScoreRequest) (*ScoreReply, error) {
	var left int64
	if d, ok := ctx.Deadline(); ok {
		left = max(time.Until(d).Milliseconds(), 1)
	}
	if req.DelayMs < 0 || time.Duration(req.DelayMs)*time.Millisecond > MaxDelay {
		return nil, status.Errorf(codes.InvalidArgument, "delay_ms %d: want 0 to %d", req.DelayMs, MaxDelay.Milliseconds())
	}
	if req.DelayMs > 0 {
		t := time.NewTimer(time.Duration(req.DelayMs) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	res := tone.Predict(req.Text)
	return &ScoreReply{Label: res.Label, Scores: res.Scores, Version: m.Version, Instance: m.Instance, DeadlineMs: left}, nil
}

// ScoreStream answers each request of the stream as it comes, until the
// client closes its side.
func (m *Model) ScoreStream(stream grpc.BidiStreamingServer[ScoreRequest, ScoreReply]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		reply, err := m.Score(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(reply); err != nil {
			return err
		}
	}
}

// Client calls the service.
type Client struct{ cc grpc.ClientConnInterface }

// NewClient returns a Client over cc.
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc: cc} }

// Score calls Score.
func (c *Client) Score(ctx context.Context, req *ScoreRequest, opts ...grpc.CallOption) (*ScoreReply, error) {
	out := new(ScoreReply)
	opts = append([]grpc.CallOption{grpc.CallContentSubtype(codecName)}, opts...)
	if err := c.cc.Invoke(ctx, "/"+ServiceName+"/Score", req, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

// ScoreStream opens a ScoreStream.
func (c *Client) ScoreStream(ctx context.Context, opts ...grpc.CallOption) (grpc.BidiStreamingClient[ScoreRequest, ScoreReply], error) {
	opts = append([]grpc.CallOption{grpc.CallContentSubtype(codecName)}, opts...)
	s, err := c.cc.NewStream(ctx, &ServiceDesc.Streams[0], "/"+ServiceName+"/ScoreStream", opts...)
	if err != nil {
		return nil, err
	}
	return &grpc.GenericClientStream[ScoreRequest, ScoreReply]{ClientStream: s}, nil
}
