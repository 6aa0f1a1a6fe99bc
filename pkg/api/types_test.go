package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The wire format is a contract with the dashboard's script and every
// client: these are the exact JSON bodies the API answered before the wire
// types had their own package, and must keep answering.
func TestWireShapes(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"member", Member{Name: "host-a", Addr: "10.0.0.2:7946", Status: "alive", Role: "agent", Service: "predictor",
			Image: "predictor:1.0.0", State: "active", Backends: 4},
			`{"name":"host-a","addr":"10.0.0.2:7946","status":"alive","role":"agent","service":"predictor","image":"predictor:1.0.0","state":"active","backends":4}`},
		{"rejected member", Member{Name: "x", Addr: "10.0.0.9:7946", Status: "alive", Problem: "bad tags"},
			`{"name":"x","addr":"10.0.0.9:7946","status":"alive","backends":0,"problem":"bad tags"}`},
		{"backend", Backend{Service: "predictor", Addr: "127.0.0.2:8000", Node: "host-a", State: BackendSlowStart, InFlight: 3, Requests: 10, Failures: 1},
			`{"service":"predictor","addr":"127.0.0.2:8000","node":"host-a","state":"slow_start","in_flight":3,"requests":10,"failures":1}`},
		{"replica", Replica{Index: 1, Addr: "127.0.0.2:8001", Image: "predictor:1.0.0", State: ReplicaHealthy, PID: 42, Restarts: 1},
			`{"index":1,"addr":"127.0.0.2:8001","image":"predictor:1.0.0","state":"healthy","pid":42,"restarts":1}`},
		{"rollout", Rollout{ID: "r1",
			RolloutOptions: RolloutOptions{Service: "tone", Image: "predictor:1.1.0", Batch: 2, MinHealthy: Duration(5 * time.Second), Deadline: Duration(2 * time.Minute)},
			Previous:       "predictor:1.0.0", State: RolloutRunning, Created: t0,
			Hosts: []RolloutHost{
				{Node: "host-a", State: HostHealthy, Batch: 1, Started: t0, HealthySince: t0.Add(time.Second), Finished: t0.Add(6 * time.Second)},
				{Node: "host-b", State: HostPending, Batch: 2},
			}},
			`{"id":"r1","service":"tone","image":"predictor:1.1.0","batch":2,"min_healthy":"5s","deadline":"2m0s","previous":"predictor:1.0.0","state":"running","created":"2025-03-01T12:00:00Z",` +
				`"hosts":[{"node":"host-a","state":"healthy","batch":1,"started":"2025-03-01T12:00:00Z","healthy_since":"2025-03-01T12:00:01Z","finished":"2025-03-01T12:00:06Z"},` +
				`{"node":"host-b","state":"pending","batch":2}]}`},
		{"ended rollout", Rollout{ID: "r0", RolloutOptions: RolloutOptions{Image: "x:1", NoAutoRevert: true}, State: RolloutFailed,
			Message: "m", Reverted: true, Created: t0, Finished: t0},
			`{"id":"r0","image":"x:1","no_auto_revert":true,"previous":"","state":"failed","message":"m","reverted":true,"created":"2025-03-01T12:00:00Z","finished":"2025-03-01T12:00:00Z","hosts":null}`},
		{"rollout options", RolloutOptions{Image: "predictor:1.1.0", MinHealthy: Duration(1500 * time.Millisecond)},
			`{"image":"predictor:1.1.0","min_healthy":"1.5s"}`},
		{"routes", Routing{AllServices: true, Default: "web", Routes: []Route{
			{Host: "*.example.com", Path: "/", Service: "web", State: RouteOK, Backends: 2},
			{Path: "/predict", Service: "tone", StripPrefix: true, State: RouteConflict, HeldBy: "web"}}},
			`{"routes":[{"host":"*.example.com","path":"/","service":"web","state":"ok","backends":2},` +
				`{"host":"","path":"/predict","service":"tone","strip_prefix":true,"state":"conflict","held_by":"web","backends":0}],` +
				`"default":"web","all_services":true}`},
		{"cert", Cert{Name: "a", DNSNames: []string{"a.example.com"}, Issuer: "R11", NotBefore: t0, NotAfter: t0.Add(240 * time.Hour),
			DaysLeft: 9, File: "/etc/herd/certs/a.crt", LoadedAt: t0, Default: true, ExpiresSoon: true, Problem: "p"},
			`{"name":"a","dns_names":["a.example.com"],"issuer":"R11","not_before":"2025-03-01T12:00:00Z","not_after":"2025-03-11T12:00:00Z",` +
				`"days_left":9,"file":"/etc/herd/certs/a.crt","loaded_at":"2025-03-01T12:00:00Z","default":true,"expires_soon":true,"problem":"p"}`},
		{"cert never loaded", Cert{Name: "b", File: "/c/b.crt", Problem: "/c/b.key: no PEM private key in it"},
			`{"name":"b","dns_names":null,"days_left":0,"file":"/c/b.crt","problem":"/c/b.key: no PEM private key in it"}`},
		{"key request", KeyRequest{Key: "a2V5"}, `{"key":"a2V5"}`},
		{"key list", KeyResult{Members: 3, Responses: 3, Keys: map[string]int{"k1": 3}, Primary: map[string]int{"k1": 3}},
			`{"members":3,"responses":3,"keys":{"k1":3},"primary":{"k1":3}}`},
		{"key failure", KeyResult{Members: 3, Responses: 2, Errors: map[string]string{"host-3": "no key"}, Error: "1/3 failed"},
			`{"members":3,"responses":2,"errors":{"host-3":"no key"},"error":"1/3 failed"}`},
		{"force-leave", ForceLeaveResult{Removed: "host-3"}, `{"removed":"host-3"}`},
		{"error", Error{Error: "no such rollout"}, `{"error":"no such rollout"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(b))
			back := reflect.New(reflect.TypeOf(tc.v))
			require.NoError(t, json.Unmarshal(b, back.Interface()))
			assert.Equal(t, tc.v, back.Elem().Interface(), "round trip")
		})
	}
}

func TestDurationJSON(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		want    Duration
	}{
		{in: `"5s"`, want: Duration(5 * time.Second)},
		{in: `"1m30s"`, want: Duration(90 * time.Second)},
		{in: `5`, err: `duration: want a string such as "5s"`},
		{in: `"soon"`, err: `duration "soon": time: invalid duration "soon"`},
	} {
		var d Duration
		err := json.Unmarshal([]byte(tc.in), &d)
		if tc.err != "" {
			assert.EqualError(t, err, tc.err, tc.in)
			continue
		}
		if assert.NoError(t, err, tc.in) {
			assert.Equal(t, tc.want, d, tc.in)
		}
	}
}

func TestRolloutDoneSucceeded(t *testing.T) {
	for state, want := range map[string][2]bool{
		RolloutRunning: {false, false}, RolloutSucceeded: {true, true}, RolloutFailed: {true, false}, RolloutAborted: {true, false},
	} {
		r := Rollout{State: state}
		assert.Equal(t, want, [2]bool{r.Done(), r.Succeeded()}, "%s: Done, Succeeded", state)
	}
}
