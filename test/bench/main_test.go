package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:1/version
  2 threads and 64 connections
  Latency Distribution
     50%    3.41ms
     75%    5.02ms
     90%    6.93ms
     99%    8.37ms
  175227 requests in 10.00s, 24.23MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  17522.31
`
	r, err := parseWrk(out)
	require.NoError(t, err)
	require.InDelta(t, 17522.31, r.rps, 0.001)
	require.Equal(t, 3410*time.Microsecond, r.p50)
	require.Equal(t, 8370*time.Microsecond, r.p99, "printed as 8.37ms, not 8.369999ms")
	require.Equal(t, 3, r.errors)
	_, err = parseWrk("wrk: connection refused")
	require.Error(t, err)
}
