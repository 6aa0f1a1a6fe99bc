package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"

	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/membership"
)

func speaking(n membership.Node, p membership.Protocol) membership.Node {
	n.Tags.Protocol = p
	return n
}

// TestServiceProtocolFromItsAgents: a service is spoken to in the protocol
// its agents announce; when they disagree the oldest agent's (lowest
// generation) is kept and the others counted; an old agent announcing no
// protocol is HTTP/1.1.
func TestServiceProtocolFromItsAgents(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := routed(t, Config{Registerer: reg})
	proto := func(svc string) balancer.Protocol { return g.Balancer().Service(svc).Protocol() }

	apply(t, g, membership.EventJoin, speaking(serving("a1", "rpc", 10, 9001, "/rpc"), membership.ProtoGRPC),
		serving("w1", "web", 10, 9101, "/"))
	assert.Equal(t, balancer.GRPC, proto("rpc"))
	assert.Equal(t, balancer.HTTP1, proto("web"), "no protocol tag: http")

	// A younger agent of rpc says h2c: refused, reported.
	apply(t, g, membership.EventJoin, speaking(serving("a2", "rpc", 20, 9002, "/rpc"), membership.ProtoH2C))
	assert.Equal(t, balancer.GRPC, proto("rpc"))
	assert.Equal(t, 1.0, testutil.ToFloat64(g.protocolConflicts))

	// The older one leaves: the younger's protocol is the service's now.
	apply(t, g, membership.EventLeave, serving("a1", "rpc", 10, 9001, "/rpc"))
	assert.Equal(t, balancer.H2C, proto("rpc"))
	assert.Zero(t, testutil.ToFloat64(g.protocolConflicts))

	// An agent that changes its protocol changes its service's.
	apply(t, g, membership.EventUpdate, speaking(serving("a2", "rpc", 21, 9002, "/rpc"), membership.ProtoGRPC))
	assert.Equal(t, balancer.GRPC, proto("rpc"))
	apply(t, g, membership.EventUpdate, serving("w1", "web", 11, 9101, "/"))
	assert.Equal(t, balancer.GRPC, proto("rpc"), "another service's event leaves it alone")
}

// TestOneServiceGatewayTakesItsProtocol: a gateway of one service
// (--service) speaks that service's protocol and no other's.
func TestOneServiceGatewayTakesItsProtocol(t *testing.T) {
	g := routed(t, Config{Service: "rpc"})
	apply(t, g, membership.EventJoin, speaking(serving("a1", "rpc", 10, 9001), membership.ProtoGRPC),
		speaking(serving("w1", "web", 5, 9101), membership.ProtoH2C))
	assert.Equal(t, balancer.GRPC, g.Balancer().Service("rpc").Protocol())
	assert.Equal(t, 1, g.Balancer().Len())
}
