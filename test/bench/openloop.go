package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// openLoop sends requests to target at a fixed rate for d, whatever the
// answers' speed, over conns keep-alive connections, and measures each
// request's latency from the moment it was due (not from when a connection
// was free to send it), so a stall counts against every request it delays.
//
// wrk keeps 64 requests in flight and measures the rate the system then
// reaches; a faster proxy thus puts more load on the backends than a
// slower one, and the p99s of the two are taken at different loads. At a
// fixed rate both proxies carry the same load and their latencies compare
// directly.
func openLoop(target string, rate, conns int, d time.Duration) (result, error) {
	u, err := url.Parse(target)
	if err != nil {
		return result{}, err
	}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: herd-bench\r\n\r\n")
	total := int(float64(rate) * d.Seconds())
	due := make(chan time.Time, total)
	var (
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, total)
		errs      int
		wg        sync.WaitGroup
	)
	start := time.Now().Add(50 * time.Millisecond)
	for range conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			return result{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { c.Close() }()
			br := bufio.NewReader(c)
			var mine []time.Duration
			bad := 0
			for at := range due {
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				if err := exchange(c, br, req); err != nil {
					bad++
					c.Close() // its state is unknown: a new connection
					if c, err = net.Dial("tcp", u.Host); err != nil {
						return
					}
					br.Reset(c)
					continue
				}
				mine = append(mine, time.Since(at))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	// Requests are released every millisecond in the batch that fell due.
	interval := time.Second / time.Duration(rate)
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > time.Millisecond {
			time.Sleep(wait)
		}
		due <- at
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	if len(latencies) == 0 {
		return result{}, fmt.Errorf("%s: every request failed", target)
	}
	slices.Sort(latencies)
	pct := func(q float64) time.Duration {
		return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))].Round(time.Microsecond)
	}
	return result{rps: float64(len(latencies)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99), errors: errs}, nil
}

// exchange sends one request on c and reads its answer to the end.
func exchange(c net.Conn, br *bufio.Reader, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", resp.Status)
	}
	return err
}
