package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idle compares the memory each proxy takes per idle keep-alive client
// connection: n connections, each made one request and then left open.
// Each round starts a fresh gateway and a fresh HAProxy (a process that
// held connections before keeps the memory they took, and would show no
// growth), measures both, alternating which goes first, and stops them.
// Resident memory (VmRSS) is read before the connections open and once
// they are all idle.
func (c *cluster) idle(n int) error {
	fmt.Printf("## memory per idle keep-alive connection: %d connections, each after one request; fresh processes each round (median of rounds)\n\n", n)
	per := map[string][]float64{}
	rounds := max(3, c.o.rounds)
	for round := range rounds {
		gwURL, gw, err := c.startGateway(fmt.Sprintf("gateway-idle-%d", round))
		if err != nil {
			return err
		}
		haURL, ha, err := c.startHAProxy("roundrobin", "")
		if err != nil {
			c.stop(gw)
			return err
		}
		if err := waitHTTP(gwURL + c.o.path); err != nil {
			return err
		}
		targets := []target{{"haproxy", haURL, ha.Process.Pid}, {"gateway", gwURL, gw.Process.Pid}}
		if round%2 == 1 { // alternate who goes first
			targets[0], targets[1] = targets[1], targets[0]
		}
		for _, t := range targets {
			b, err := idleBytes(t.url+c.o.path, t.pid, n)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			fmt.Printf("  round %d %-8s %6.2f KiB per idle connection\n", round+1, t.name, b/1024)
			per[t.name] = append(per[t.name], b)
		}
		c.stop(ha)
		c.stop(gw)
	}
	ha0, gw0 := medianOf(per["haproxy"]), medianOf(per["gateway"])
	fmt.Printf("\nmedian: haproxy %.2f KiB, gateway %.2f KiB per idle connection (target: gateway ≤ 2 KiB %s)\n\n",
		ha0/1024, gw0/1024, verdict(gw0 <= 2048))
	return nil
}

// idleBytes opens n keep-alive connections to url, each sending one
// request and reading its answer, and returns how much pid's resident
// memory grew per connection, in bytes, once they are all idle. The
// connections are closed before it returns.
func idleBytes(url string, pid, n int) (float64, error) {
	addr := strings.TrimPrefix(url, "http://")
	addr, path, _ := strings.Cut(addr, "/")
	req := "GET /" + path + " HTTP/1.1\r\nHost: bench\r\n\r\n"
	for range 50 { // warm up: the first requests' buffers and pools
		if resp, err := http.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	time.Sleep(500 * time.Millisecond)
	before, err := rss(pid)
	if err != nil {
		return 0, err
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.WriteString(c, req); err != nil {
					errs <- err
					return
				}
				resp, err := http.ReadResponse(bufio.NewReaderSize(c, 512), nil)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- errors.New(resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("opening %d connections: %w", n, err)
	}
	time.Sleep(time.Second) // all idle
	after, err := rss(pid)
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

// rss is a process's resident memory (VmRSS), in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
