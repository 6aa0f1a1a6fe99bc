package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/pkg/agent"
	"github.com/herd-cluster/herd/pkg/balancer"
	"github.com/herd-cluster/herd/pkg/certs"
	"github.com/herd-cluster/herd/pkg/gateway"
	"github.com/herd-cluster/herd/pkg/membership"
	"github.com/herd-cluster/herd/pkg/rollout"
	"github.com/herd-cluster/herd/pkg/route"
)

// compact is body without the indentation the server adds.
func compact(t *testing.T, body string) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(body), &v), body)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestListEndpoints(t *testing.T) {
	s := NewServer("", hclog.NewNullLogger())
	s.HandleMembers(func() []membership.Node {
		return []membership.Node{{Name: "gw", Addr: netip.MustParseAddrPort("10.0.0.1:7946"), Status: membership.StatusAlive,
			Tags: membership.Tags{Role: membership.RoleGateway}}}
	})
	s.HandleBackends(func() []balancer.BackendStatus {
		return []balancer.BackendStatus{{Service: "web", Addr: netip.MustParseAddrPort("127.0.0.2:8000"), Node: "host-a",
			State: balancer.StateUp, Requests: 7}}
	})
	s.HandleRoutes(func() gateway.RoutingStatus {
		return gateway.RoutingStatus{AllServices: true, Routes: []gateway.RouteStatus{
			{Route: route.Route{Host: "tone.example.com", Prefix: "/"}, Service: "tone", State: gateway.RouteOK, Backends: 2},
			{Route: route.Route{Prefix: "/predict"}, Service: "web", StripPrefix: true, State: gateway.RouteOK, Backends: 1},
			{Route: route.Route{Prefix: "/predict"}, Service: "rogue", State: gateway.RouteConflict, HeldBy: "web"},
		}}
	})
	s.HandleReplicas(func() []agent.ReplicaStatus {
		return []agent.ReplicaStatus{{Index: 0, Addr: "127.0.0.2:8000", Image: "predictor:1.0.0", State: "starting"}}
	})
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s.HandleCerts(func() []certs.Info {
		return []certs.Info{{Name: "a", DNSNames: []string{"a.test"}, Issuer: "CA", NotBefore: t0, NotAfter: t0.Add(time.Hour),
			DaysLeft: 0, File: "/c/a.crt", LoadedAt: t0, Default: true, ExpiresSoon: true, Problem: "/c/a.key: refused"}}
	})
	for path, want := range map[string]string{
		"/v1/certs": `[{"days_left":0,"default":true,"dns_names":["a.test"],"expires_soon":true,"file":"/c/a.crt","issuer":"CA",` +
			`"loaded_at":"2025-03-01T12:00:00Z","name":"a","not_after":"2025-03-01T13:00:00Z","not_before":"2025-03-01T12:00:00Z","problem":"/c/a.key: refused"}]`,
		"/v1/members":  `[{"addr":"10.0.0.1:7946","backends":0,"name":"gw","role":"gateway","status":"alive"}]`,
		"/v1/backends": `[{"addr":"127.0.0.2:8000","failures":0,"in_flight":0,"node":"host-a","requests":7,"service":"web","state":"up"}]`,
		"/v1/routes": `{"all_services":true,"routes":[` +
			`{"backends":2,"host":"tone.example.com","path":"/","service":"tone","state":"ok"},` +
			`{"backends":1,"host":"","path":"/predict","service":"web","state":"ok","strip_prefix":true},` +
			`{"backends":0,"held_by":"web","host":"","path":"/predict","service":"rogue","state":"conflict"}]}`,
		"/v1/replicas": `[{"addr":"127.0.0.2:8000","image":"predictor:1.0.0","index":0,"restarts":0,"state":"starting"}]`,
	} {
		code, body := get(t, s, path)
		assert.Equal(t, http.StatusOK, code, path)
		assert.Equal(t, want, compact(t, body), path)
	}
}

func TestForceLeaveEndpoint(t *testing.T) {
	s := NewServer("", hclog.NewNullLogger())
	s.HandleForceLeave(func(name string) error {
		switch name {
		case "gone":
			return nil
		case "alive":
			return fmt.Errorf("%w: alive is alive", membership.ErrMemberAlive)
		case "broken":
			return errors.New("serf: broken")
		}
		return fmt.Errorf("%w: %s", membership.ErrNoSuchMember, name)
	})
	for name, want := range map[string]struct {
		code int
		body string
	}{
		"gone":   {http.StatusOK, `{"removed":"gone"}`},
		"alive":  {http.StatusConflict, `{"error":"cannot force-leave a live member: alive is alive"}`},
		"nobody": {http.StatusNotFound, `{"error":"no such member: nobody"}`},
		"broken": {http.StatusInternalServerError, `{"error":"serf: broken"}`},
	} {
		code, body := post(t, s, "/v1/members/"+name+"/force-leave", "")
		assert.Equal(t, want.code, code, name)
		assert.Equal(t, want.body, compact(t, body), name)
	}
}

// keyring answers every operation with res and err.
type keyring struct {
	res membership.KeyResult
	err error
	got string
}

func (k *keyring) op(key string) (membership.KeyResult, error)         { k.got = key; return k.res, k.err }
func (k *keyring) InstallKey(key string) (membership.KeyResult, error) { return k.op(key) }
func (k *keyring) UseKey(key string) (membership.KeyResult, error)     { return k.op(key) }
func (k *keyring) RemoveKey(key string) (membership.KeyResult, error)  { return k.op(key) }
func (k *keyring) ListKeys() (membership.KeyResult, error)             { return k.op("") }

func TestKeyEndpoints(t *testing.T) {
	k := &keyring{res: membership.KeyResult{Members: 3, Responses: 3, Keys: map[string]int{"k1": 3}, Primary: map[string]int{"k1": 3}}}
	s := NewServer("", hclog.NewNullLogger())
	s.HandleKeys(k)

	code, body := get(t, s, "/v1/keys")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, `{"keys":{"k1":3},"members":3,"primary":{"k1":3},"responses":3}`, compact(t, body))

	code, _ = post(t, s, "/v1/keys/install", `{"key":"a2V5"}`)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "a2V5", k.got)

	code, body = post(t, s, "/v1/keys/use", `{"key":"a2V5","extra":1}`)
	assert.Equal(t, http.StatusBadRequest, code, "unknown fields are refused")
	assert.Contains(t, body, "request body")

	k.res, k.err = membership.KeyResult{Members: 3, Responses: 2, Errors: map[string]string{"host-3": "no such key"}}, errors.New("1 of 3 failed")
	code, body = post(t, s, "/v1/keys/use", `{"key":"a2V5"}`)
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Equal(t, `{"error":"1 of 3 failed","errors":{"host-3":"no such key"},"members":3,"responses":2}`, compact(t, body))

	k.res, k.err = membership.KeyResult{}, membership.ErrNoEncryption
	code, _ = post(t, s, "/v1/keys/remove", `{"key":"a2V5"}`)
	assert.Equal(t, http.StatusBadRequest, code)
}

// coordinator is a rollout coordinator that answers with what it is given,
// and records the service asked for.
type coordinator struct {
	started rollout.Options
	service string
	err     error
	ro      rollout.Rollout
	history []rollout.Rollout
}

func (c *coordinator) Start(_ context.Context, service string, o rollout.Options) (rollout.Rollout, error) {
	c.started, c.service = o, service
	return c.ro, c.err
}
func (c *coordinator) Rollback(ctx context.Context, service string, o rollout.Options) (rollout.Rollout, error) {
	return c.Start(ctx, service, o)
}
func (c *coordinator) Get(service, id string) (rollout.Rollout, error) {
	c.service = service
	if id != c.ro.ID && id != "current" {
		return rollout.Rollout{}, fmt.Errorf("%w: %s", rollout.ErrNotFound, id)
	}
	return c.ro, nil
}
func (c *coordinator) History(service string) ([]rollout.Rollout, error) {
	c.service = service
	return c.history, nil
}
func (c *coordinator) Abort(service string) (rollout.Rollout, error) {
	c.service = service
	if c.err != nil {
		return rollout.Rollout{}, c.err
	}
	return c.ro, nil
}

func (c *coordinator) Promote(service string) (rollout.Rollout, error) { return c.Abort(service) }

func TestRolloutEndpoints(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ro := rollout.Rollout{ID: "r1", Previous: "predictor:1.0.0", State: rollout.StateRunning, Created: t0,
		Hosts: []rollout.Host{{Node: "host-a", State: rollout.HostPending, Batch: 1}}}
	ro.Image, ro.Batch = "predictor:1.1.0", 1
	setDuration(&ro.MinHealthy, 5e9)
	setDuration(&ro.Deadline, 120e9)
	const roJSON = `{"batch":1,"created":"2025-03-01T12:00:00Z","deadline":"2m0s","hosts":[{"batch":1,"node":"host-a","state":"pending"}],` +
		`"id":"r1","image":"predictor:1.1.0","min_healthy":"5s","previous":"predictor:1.0.0","state":"running"}`
	c := &coordinator{ro: ro}
	s := NewServer("", hclog.NewNullLogger())
	s.HandleRollouts(c)

	code, body := post(t, s, "/v1/rollouts", `{"image":"predictor:1.1.0","batch":2,"min_healthy":"1.5s","deadline":"1m","no_auto_revert":true}`)
	assert.Equal(t, http.StatusCreated, code)
	assert.Equal(t, roJSON, compact(t, body))
	assert.Equal(t, "predictor:1.1.0", c.started.Image)
	assert.Equal(t, 2, c.started.Batch)
	assert.Equal(t, 1500*time.Millisecond, time.Duration(c.started.MinHealthy))
	assert.Equal(t, time.Minute, time.Duration(c.started.Deadline))
	assert.True(t, c.started.NoAutoRevert)

	code, body = post(t, s, "/v1/rollback", `{"min_healthy":5}`)
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, `duration: want a string such as \"5s\"`)

	code, body = get(t, s, "/v1/rollouts")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "null", compact(t, body), "no history: null, as before")
	c.history = []rollout.Rollout{ro}
	_, body = get(t, s, "/v1/rollouts")
	assert.Equal(t, "["+roJSON+"]", compact(t, body))

	code, body = get(t, s, "/v1/rollouts/current")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, roJSON, compact(t, body))
	code, _ = get(t, s, "/v1/rollouts/r0")
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = post(t, s, "/v1/rollouts/abort", `{}`)
	assert.Equal(t, http.StatusOK, code)

	c.err = fmt.Errorf("%w: r1 to predictor:1.1.0", rollout.ErrBusy)
	code, body = post(t, s, "/v1/rollouts", `{"image":"predictor:1.2.0"}`)
	assert.Equal(t, http.StatusConflict, code)
	assert.Equal(t, `{"error":"a rollout is already running: r1 to predictor:1.1.0"}`, compact(t, body))
	c.err = fmt.Errorf("%w: no agent has predictor:9", rollout.ErrRefused)
	code, _ = post(t, s, "/v1/rollouts", `{"image":"predictor:9"}`)
	assert.Equal(t, http.StatusBadRequest, code)
	c.err = rollout.ErrNotRunning
	code, _ = post(t, s, "/v1/rollouts/abort", `{}`)
	assert.Equal(t, http.StatusConflict, code)

	// The service: in the body, or ?service=.
	c.err = nil
	code, _ = post(t, s, "/v1/rollouts", `{"service":"tone","image":"predictor:1.2.0"}`)
	assert.Equal(t, http.StatusCreated, code)
	assert.Equal(t, "tone", c.service)
	_, _ = get(t, s, "/v1/rollouts/current?service=web")
	assert.Equal(t, "web", c.service)
	_, _ = get(t, s, "/v1/rollouts?service=api")
	assert.Equal(t, "api", c.service)
	code, _ = post(t, s, "/v1/rollouts/abort?service=tone", ``)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "tone", c.service)
	c.err = fmt.Errorf("%w: the cluster runs several services (a, b): name one (--service)", rollout.ErrRefused)
	code, _ = post(t, s, "/v1/rollouts/abort", `{}`)
	assert.Equal(t, http.StatusBadRequest, code)
}
