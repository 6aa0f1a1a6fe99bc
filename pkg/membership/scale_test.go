package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecodeScaleRequest(t *testing.T) {
	ok := []struct {
		in   string
		want ScaleRequest
	}{
		{`{"service":"predictor","replicas":24}`, ScaleRequest{Service: "predictor", Replicas: 24}},
		{`{"service":"predictor","replicas":0,"reason":"clusterctl via gw-1"}`, ScaleRequest{Service: "predictor", Reason: "clusterctl via gw-1"}},
		{`{"service":"predictor","replicas":1000}`, ScaleRequest{Service: "predictor", Replicas: 1000}},
		{`{"service":"predictor","check":true}`, ScaleRequest{Service: "predictor", Check: true}},
	}
	for _, tc := range ok {
		got, err := DecodeScaleRequest([]byte(tc.in))
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	bad := []struct{ in, err string }{
		{`{"service":"predictor","replicas":-1}`, "replica count -1 out of range 0-1000"},
		{`{"service":"predictor","replicas":1001}`, "replica count 1001 out of range 0-1000"},
		{`{"service":"predictor","replicas":1e99}`, "cannot unmarshal"},
		{`{"service":"Predictor","replicas":1}`, `invalid service name "Predictor"`},
		{`{"replicas":1}`, `invalid service name ""`},
		{`{"service":"predictor","replicas":1,"extra":1}`, `unknown field "extra"`},
		{`{"service":"predictor","replicas":1,"reason":"a\nb"}`, "printable ASCII"},
		{`{"service":"predictor","replicas":1,"reason":"` + strings.Repeat("r", MaxScaleReason+1) + `"}`, "printable ASCII"},
		{`{"service":"predictor","replicas":1,"reason":"` + strings.Repeat("r", maxScalePayload) + `"}`, "more than 512"},
		{`[1]`, "cannot unmarshal"},
		{``, "EOF"},
	}
	for _, tc := range bad {
		_, err := DecodeScaleRequest([]byte(tc.in))
		assert.ErrorContains(t, err, tc.err, tc.in)
		if err != nil {
			assert.True(t, strings.HasPrefix(err.Error(), "scale request: "), err.Error())
		}
	}
}

// TestScaleResponseFits: whatever an agent says, its answer fits a gossip
// packet and decodes.
func TestScaleResponseFits(t *testing.T) {
	for _, resp := range []ScaleResponse{
		{Replicas: 4, Room: 1000, Limit: "its maximum is 1000"},
		{Replicas: 4, Room: 13, Limit: "port 8013 in use", Error: "host-2 has room for 13 replicas (port 8013 in use), not 20"},
		{Replicas: 4, Error: strings.Repeat("é\"\n", 400), Limit: strings.Repeat("\\", 400)},
		{Replicas: 1000, Room: 1000, Error: strings.Repeat("x", 10000)},
	} {
		b, err := EncodeScaleResponse(resp)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(b), maxScalePayload)
		got, err := DecodeScaleResponse(b)
		require.NoError(t, err, string(b))
		assert.Equal(t, resp.Replicas, got.Replicas)
		if len(resp.Error) < 100 {
			assert.Equal(t, resp, got)
		} else {
			assert.True(t, strings.HasSuffix(got.Error, "..."), got.Error)
		}
	}
	_, err := DecodeScaleResponse([]byte(`{"replicas":-1}`))
	assert.ErrorContains(t, err, "out of range")
	_, err = DecodeScaleResponse([]byte(`{"replicas":1,"room":2000}`))
	assert.ErrorContains(t, err, "out of range")
	_, err = DecodeScaleResponse([]byte(`{"error":"a\u0000b"}`))
	assert.ErrorContains(t, err, "printable")
}

func TestChunkNames(t *testing.T) {
	assert.Nil(t, chunkNames(nil, 10))
	assert.Equal(t, [][]string{{"a", "b"}, {"c"}}, chunkNames([]string{"a", "b", "c"}, 8))
	assert.Equal(t, [][]string{{"toolongname"}, {"a"}}, chunkNames([]string{"toolongname", "a"}, 8), "a long name alone")
	var names []string
	for i := range 300 {
		names = append(names, fmt.Sprintf("host-%03d", i))
	}
	chunks := chunkNames(names, agentFilterBudget)
	n := 0
	for _, c := range chunks {
		size := 0
		for _, name := range c {
			size += len(name) + 3
		}
		assert.LessOrEqual(t, size, agentFilterBudget)
		n += len(c)
	}
	assert.Equal(t, 300, n)
}

// TestScaleAsksEveryAgent: agents answer each in their own way — at once,
// only when asked again, never, with a refusal, with garbage — and Scale
// reports each. Agents with long names take several queries: every one is
// asked.
func TestScaleAsksEveryAgent(t *testing.T) {
	gw := startMember(t, "gw", Tags{Role: RoleGateway, Gen: 1})
	answer := func(m *testMember, fn func(q *Query, n int32)) {
		var asked atomic.Int32
		go func() {
			for q := range m.queries {
				if q.Name() == QueryScale {
					fn(q, asked.Add(1))
				}
			}
		}()
	}
	respond := func(q *Query, r ScaleResponse) {
		req, err := DecodeScaleRequest(q.Payload())
		if err != nil {
			r.Error = err.Error()
		} else if r.Error == "" {
			r.Replicas = req.Replicas
		}
		b, _ := EncodeScaleResponse(r)
		_ = q.Respond(b)
	}
	ok := startMember(t, "ok", agentTagsOn(8000))
	late := startMember(t, "late", agentTagsOn(8000))
	mute := startMember(t, "mute", agentTagsOn(8000))
	refuses := startMember(t, "refuses", agentTagsOn(8000))
	garbage := startMember(t, "garbage", agentTagsOn(8000))
	members := []*testMember{ok, late, mute, refuses, garbage}
	answer(ok, func(q *Query, _ int32) { respond(q, ScaleResponse{Room: 10}) })
	answer(late, func(q *Query, n int32) {
		if n > 1 {
			respond(q, ScaleResponse{Room: 10})
		}
	})
	answer(mute, func(*Query, int32) {})
	answer(refuses, func(q *Query, _ int32) { respond(q, ScaleResponse{Error: "refuses has room for 3 replicas"}) })
	answer(garbage, func(q *Query, _ int32) { _ = q.Respond([]byte(`{"replicas":"many"}`)) })
	var many []string
	for i := range 8 {
		name := fmt.Sprintf("agent-%02d-%s", i, strings.Repeat("n", 110))
		m := startMember(t, name, agentTagsOn(8000))
		answer(m, func(q *Query, _ int32) { respond(q, ScaleResponse{Room: 10}) })
		members = append(members, m)
		many = append(many, name)
	}
	joinAll(t, gw, members...)
	require.Eventually(t, func() bool { return len(gw.Members()) == len(members)+1 }, 20*time.Second, 10*time.Millisecond)

	nodes := append([]string{"ok", "late", "mute", "refuses", "garbage"}, many...)
	require.Greater(t, len(chunkNames(nodes, agentFilterBudget)), 2, "several queries")
	got := gw.Scale(context.Background(), nodes, ScaleRequest{Service: "predictor", Replicas: 7}, 500*time.Millisecond)
	require.Len(t, got, len(nodes))
	assert.Equal(t, ScaleAnswer{Response: ScaleResponse{Replicas: 7, Room: 10}}, got["ok"])
	assert.Equal(t, ScaleAnswer{Response: ScaleResponse{Replicas: 7, Room: 10}}, got["late"])
	assert.ErrorIs(t, got["mute"].Err, ErrNoAnswer)
	assert.EqualError(t, got["mute"].Err, "mute did not answer within 500ms, asked 2 times: no answer")
	assert.EqualError(t, got["refuses"].Err, "refuses has room for 3 replicas")
	assert.ErrorContains(t, got["garbage"].Err, "garbage: malformed answer")
	for _, n := range many {
		assert.NoError(t, got[n].Err, n)
	}

	bad := gw.Scale(context.Background(), []string{"ok"}, ScaleRequest{Service: "predictor", Replicas: -1}, time.Second)
	assert.ErrorContains(t, bad["ok"].Err, "out of range", "an invalid request is never sent")
}

func FuzzDecodeScaleRequest(f *testing.F) {
	f.Add([]byte(`{"service":"predictor","replicas":24}`))
	f.Add([]byte(`{"service":"predictor","check":true,"reason":"x"}`))
	f.Add([]byte(`{"service":"predictor","replicas":-1}`))
	f.Add([]byte(`{"service":"predictor","replicas":1,"extra":1}`))
	f.Add([]byte(`{"service":"a","replicas":1000,"reason":"\u00e9"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeScaleRequest(b)
		if err != nil {
			return
		}
		require.NoError(t, r.Validate())
		require.LessOrEqual(t, len(b), maxScalePayload)
		again, err := json.Marshal(r)
		require.NoError(t, err)
		back, err := DecodeScaleRequest(again)
		require.NoError(t, err)
		require.Equal(t, r, back)
	})
}

func FuzzDecodeScaleResponse(f *testing.F) {
	f.Add([]byte(`{"replicas":4,"room":1000,"limit":"its maximum is 1000"}`))
	f.Add([]byte(`{"error":"host-2 has room for 13 replicas","replicas":4,"room":13}`))
	f.Add([]byte(`{"replicas":4,"room":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeScaleResponse(b)
		if err != nil {
			return
		}
		again, err := EncodeScaleResponse(r)
		require.NoError(t, err)
		back, err := DecodeScaleResponse(again)
		require.NoError(t, err)
		require.Equal(t, r, back)
	})
}
