package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/examples/internal/replica"
)

func TestParseFaults(t *testing.T) {
	for list, want := range map[string]Faults{
		"":                             {},
		"error-rate=0.05":              {ErrorRate: 0.05},
		"error-rate=5%":                {ErrorRate: 0.05},
		"error-rate=1":                 {ErrorRate: 1},
		"delay=50ms":                   {Delay: 50 * time.Millisecond},
		"crash-after=100":              {CrashAfter: 100},
		"delay=1m,error-rate=0":        {Delay: time.Minute},
		"error-rate=0.3,crash-after=7": {ErrorRate: 0.3, CrashAfter: 7},
	} {
		got, err := parseFaults(list)
		require.NoError(t, err, list)
		assert.Equal(t, want, got, list)
		again, err := parseFaults(got.String())
		require.NoError(t, err, "%s: String %q", list, got.String())
		assert.Equal(t, got, again, "%s: String %q reads back", list, got.String())
	}
	for list, msg := range map[string]string{
		"error-rat=0.05":   `unknown fault "error-rat" (want error-rate, delay or crash-after)`,
		"error-rate=1.5":   `error-rate="1.5": want a fraction 0..1 or a percentage 0%..100%`,
		"error-rate=101%":  `error-rate="101%": want a fraction`,
		"error-rate=-0.1":  `want a fraction`,
		"error-rate=NaN":   `want a fraction`,
		"error-rate=":      `want a fraction`,
		"delay=50":         `delay="50": want a duration 0s..1m0s, like 50ms`,
		"delay=-1s":        `want a duration`,
		"delay=61s":        `want a duration`,
		"crash-after=-1":   `crash-after="-1": want a number of requests, 0 or more`,
		"crash-after=1e3":  `want a number of requests`,
		"delay":            `delay="": want a duration`,
		"delay=1s,":        `unknown fault ""`,
		"delay=1s;x=2":     `want a duration`,
		"Error-Rate=0.05":  `unknown fault "Error-Rate"`,
		"crash-after=1, 2": `unknown fault " 2"`,
	} {
		_, err := parseFaults(list)
		if assert.Error(t, err, list) {
			assert.Contains(t, err.Error(), msg, list)
		}
	}
	assert.Equal(t, "", Faults{}.String())
	assert.Equal(t, "error-rate=0.05,delay=50ms,crash-after=100",
		Faults{ErrorRate: 0.05, Delay: 50 * time.Millisecond, CrashAfter: 100}.String())
}

// TestParseFlags: a flag wins over the fault built in, the others stay;
// a bad value or a stray argument is a usage error (exit 2) in one line.
func TestParseFlags(t *testing.T) {
	built := Faults{ErrorRate: 0.05, CrashAfter: 100}
	got, err := parseFlags([]string{"--fault-error-rate", "0", "--fault-delay=50ms"}, built, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, Faults{Delay: 50 * time.Millisecond, CrashAfter: 100}, got)
	got, err = parseFlags(nil, built, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, built, got)
	got, err = parseFlags([]string{"-fault-crash-after", "3", "-fault-error-rate", "25%"}, Faults{}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, Faults{ErrorRate: 0.25, CrashAfter: 3}, got)

	for args, msg := range map[string]string{
		"--fault-error-rate 2":     `invalid value "2" for flag -fault-error-rate: want a fraction 0..1 or a percentage 0%..100%`,
		"--fault-delay 1x":         `invalid value "1x" for flag -fault-delay: want a duration 0s..1m0s, like 50ms`,
		"--fault-crash-after -5":   `invalid value "-5" for flag -fault-crash-after: want a number of requests, 0 or more`,
		"--fault-delay":            `flag needs an argument: -fault-delay`,
		"--fault-rate 0.1":         `flag provided but not defined: -fault-rate`,
		"--fault-delay 1s extra":   `unexpected argument "extra"`,
		"serve --fault-delay 50ms": `unexpected argument "serve"`,
	} {
		_, err := parseFlags(strings.Fields(args), built, io.Discard)
		var usage *replica.UsageError
		if assert.ErrorAs(t, err, &usage, args) {
			assert.Equal(t, msg, err.Error(), args)
		}
	}

	var help bytes.Buffer
	_, err = parseFlags([]string{"-h"}, built, &help)
	assert.ErrorIs(t, err, flag.ErrHelp)
	for _, name := range []string{"-fault-error-rate", "-fault-delay", "-fault-crash-after"} {
		assert.Contains(t, help.String(), name)
	}
}

// predictGet and predictPost are /predict requests, each answered or not.
func predictGet(base string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, base+"/predict?text=I+love+it", nil)
	return req
}

func predictPost(base string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, base+"/predict", strings.NewReader(`{"text":"I love it"}`))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// status sends req and reads the answer through; its status, or the error.
func status(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode
}

func faultyServer(t *testing.T, f Faults) (*httptest.Server, *faulty) {
	t.Helper()
	fy := newFaulty(f)
	srv := httptest.NewServer(newHandler(handlerConfig{Version: "1.1.0-bad", Instance: "x", Faults: fy}))
	t.Cleanup(srv.Close)
	return srv, fy
}

func healthy(t *testing.T, base string) {
	t.Helper()
	assert.Equal(t, http.StatusOK, status(t, mustGet(base+"/healthz")), "/healthz")
}

func mustGet(url string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return req
}

// TestFaultErrorRate: GET and POST /predict share one count; request n
// fails when ⌊n·rate⌋ grows (5 %: the 20th, 40th, …), and /healthz passes
// throughout.
func TestFaultErrorRate(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		fails []int // of requests 1..100
	}{
		{0.05, []int{20, 40, 60, 80, 100}},
		{0.25, []int{4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76, 80, 84, 88, 92, 96, 100}},
		{0.3, nil}, // 30 of them, 3 in each 10
		{1, nil},   // all
		{0.001, nil},
	} {
		t.Run(fmt.Sprint(tc.rate), func(t *testing.T) {
			srv, _ := faultyServer(t, Faults{ErrorRate: tc.rate})
			var failed []int
			for n := 1; n <= 100; n++ {
				req := predictGet(srv.URL)
				if n%2 == 0 {
					req = predictPost(srv.URL)
				}
				switch code := status(t, req); code {
				case http.StatusOK:
				case http.StatusInternalServerError:
					failed = append(failed, n)
				default:
					t.Fatalf("request %d: status %d", n, code)
				}
				if n%10 == 0 {
					healthy(t, srv.URL)
				}
			}
			switch tc.rate {
			case 0.3:
				require.Len(t, failed, 30)
				for i := 0; i < 10; i++ {
					in := 0
					for _, n := range failed {
						if n > i*10 && n <= i*10+10 {
							in++
						}
					}
					assert.Equal(t, 3, in, "failures among requests %d..%d", i*10+1, i*10+10)
				}
			case 1:
				assert.Len(t, failed, 100)
			default:
				assert.Equal(t, tc.fails, failed)
			}
		})
	}
}

// TestFaultDelay: every /predict request takes the delay longer, GET and
// POST alike; /healthz and /version are not held.
func TestFaultDelay(t *testing.T) {
	srv, _ := faultyServer(t, Faults{Delay: 50 * time.Millisecond})
	for _, req := range []*http.Request{predictGet(srv.URL), predictPost(srv.URL), predictGet(srv.URL)} {
		began := time.Now()
		assert.Equal(t, http.StatusOK, status(t, req))
		assert.GreaterOrEqual(t, time.Since(began), 50*time.Millisecond, "%s /predict", req.Method)
	}

	// A minute's delay: /predict is still held when its client gives up,
	// while /healthz and /version answer at once. (A GET: net/http sees a
	// client leave only once the request's body is read, so a POST would
	// keep srv.Close waiting the full minute.)
	srv, _ = faultyServer(t, Faults{Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := http.DefaultClient.Do(predictGet(srv.URL).WithContext(ctx))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	client := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/healthz", "/version"} {
		resp, err := client.Get(srv.URL + path)
		require.NoError(t, err, path)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

// TestFaultCrashAfter: the crash is signalled once the Nth /predict
// request is answered, not before; a request past N is never answered;
// /healthz passes until the end.
func TestFaultCrashAfter(t *testing.T) {
	srv, fy := faultyServer(t, Faults{CrashAfter: 3})
	for n, req := range []*http.Request{predictGet(srv.URL), predictPost(srv.URL), predictGet(srv.URL)} {
		select {
		case <-fy.Crashed():
			t.Fatalf("crashed before request %d", n+1)
		default:
		}
		assert.Equal(t, http.StatusOK, status(t, req))
		healthy(t, srv.URL)
	}
	select {
	case <-fy.Crashed():
	case <-time.After(10 * time.Second):
		t.Fatal("no crash after the 3rd answer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := http.DefaultClient.Do(predictGet(srv.URL).WithContext(ctx))
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "the 4th request is not answered: %v", err)
	healthy(t, srv.URL)
}

// TestFaultCrashCountsGivenUp: a request of the first N that its client
// gives up (during the delay) counts as done, so the crash still comes.
func TestFaultCrashCountsGivenUp(t *testing.T) {
	srv, fy := faultyServer(t, Faults{CrashAfter: 1, Delay: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := http.DefaultClient.Do(predictGet(srv.URL).WithContext(ctx))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	select {
	case <-fy.Crashed():
	case <-time.After(10 * time.Second):
		t.Fatal("no crash after the given-up request")
	}
}

// TestNoFaults: the zero Faults leave /predict as it is, and a nil
// faulty too.
func TestNoFaults(t *testing.T) {
	fy := newFaulty(Faults{})
	for _, f := range []*faulty{fy, nil} {
		srv := httptest.NewServer(newHandler(handlerConfig{Version: "1.0.0", Instance: "x", Faults: f}))
		for n := 0; n < 50; n++ {
			assert.Equal(t, http.StatusOK, status(t, predictGet(srv.URL)))
		}
		srv.Close()
	}
	assert.Zero(t, fy.arrived.Load(), "no counting without a fault")
}
