package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
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

func TestOpenLoop(t *testing.T) {
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			time.Sleep(20 * time.Millisecond)
		}
		if r.URL.Path == "/fail" {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	r, err := openLoop(srv.URL+"/ok", 400, 4, time.Second)
	require.NoError(t, err)
	require.InDelta(t, 400, r.rps, 80, "the rate asked for")
	require.Zero(t, r.errors)
	require.Positive(t, r.p50)
	require.GreaterOrEqual(t, r.p99, r.p50)

	// 4 connections, 20 ms per request: at most 200 req/s get through, so
	// requests due at 400 req/s wait, and the wait is counted.
	slow.Store(true)
	r, err = openLoop(srv.URL+"/ok", 400, 4, time.Second)
	require.NoError(t, err)
	require.Greater(t, r.p99, 200*time.Millisecond, "latency counts from when a request was due")
	slow.Store(false)

	_, err = openLoop(srv.URL+"/fail", 100, 2, 500*time.Millisecond)
	require.Error(t, err, "every request failed")
}

func TestSchedstat(t *testing.T) {
	u, err := parseSchedstat("1500 250 3\n")
	require.NoError(t, err)
	require.Equal(t, usage{run: 1500, wait: 250, slices: 3}, u)
	_, err = parseSchedstat("1500 250")
	require.Error(t, err)
	_, err = parseSchedstat("1500 x 3")
	require.Error(t, err)

	// This process, found by its executable's directory, and its own CPU
	// time as the scheduler counted it.
	exe, err := os.Executable()
	require.NoError(t, err)
	pids, err := pidsOf(filepath.Dir(exe))
	require.NoError(t, err)
	require.Contains(t, pids, os.Getpid())

	// Spin until getrusage, the kernel's other account of the same time,
	// says this process used 50 ms of CPU: on a loaded machine 50 ms of
	// wall clock may hold far less.
	before, err := readUsage([]int{os.Getpid()})
	require.NoError(t, err)
	start := cpuTime(t)
	for deadline := time.Now().Add(30 * time.Second); cpuTime(t)-start < 50*time.Millisecond; {
		require.True(t, time.Now().Before(deadline), "50 ms of CPU in 30 s")
	}
	after, err := readUsage([]int{os.Getpid()})
	require.NoError(t, err)
	d := after.sub(before)
	require.GreaterOrEqual(t, d.run, int64(40*time.Millisecond), "50 ms of CPU spent spinning")
	require.Positive(t, d.slices)

	c := costOf(usages{proxy: usage{run: 5e6, wait: 2e6, slices: 20}, backends: usage{run: 1e6}},
		usages{proxy: usage{run: 35e6, wait: 12e6, slices: 120}, backends: usage{run: 61e6}}, 1000)
	require.Equal(t, cost{proxyCPU: 30, backendCPU: 60, proxyWaitPerSlice: 100}, c)

	_, err = readUsage([]int{1 << 30})
	require.Error(t, err, "no such process")
}

// cpuTime is the user and system CPU time this process has used, by getrusage.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestParseH2load(t *testing.T) {
	out := `Application protocol: h2

finished in 2.00s, 32020.50 req/s, 750.56KB/s
requests: 64041 total, 64141 started, 64041 done, 64039 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 64039 2xx, 0 3xx, 0 4xx, 2 5xx
                     min         max         mean         sd        +/- sd
time for request:      146us     13.88ms      3.04ms      1.47ms    74.86%
time for connect:       97us        97us        97us         0us   100.00%
`
	r, err := parseH2load(out)
	require.NoError(t, err)
	require.InDelta(t, 32020.5, r.rps, 0.001)
	require.Equal(t, 2, r.errors)
	require.Equal(t, 3040*time.Microsecond, r.p50, "the mean")
	require.Equal(t, 13880*time.Microsecond, r.p99, "the longest")
	_, err = parseH2load("h2load: connection refused")
	require.Error(t, err)
}
