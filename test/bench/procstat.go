package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// usage is what the kernel's scheduler counted for a set of processes
// (/proc/<pid>/task/*/schedstat, summed over their threads): time on a
// CPU, time runnable but waiting for a CPU, and how many times a thread was
// put on a CPU.
type usage struct {
	run, wait int64 // nanoseconds
	slices    int64
}

func (u usage) sub(v usage) usage {
	return usage{run: u.run - v.run, wait: u.wait - v.wait, slices: u.slices - v.slices}
}

// parseSchedstat reads one thread's schedstat line: "run wait slices".
func parseSchedstat(line string) (usage, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return usage{}, fmt.Errorf("schedstat %q: want 3 fields", line)
	}
	var v [3]int64
	for i, s := range f {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return usage{}, fmt.Errorf("schedstat %q: %w", line, err)
		}
		v[i] = n
	}
	return usage{run: v[0], wait: v[1], slices: v[2]}, nil
}

// readUsage sums the schedstat of every thread of pids. A thread that
// exits between the listing and the read is skipped: Go and HAProxy keep
// theirs, so the sums stay comparable over a run.
func readUsage(pids []int) (usage, error) {
	var total usage
	for _, pid := range pids {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		if err != nil {
			return total, err
		}
		if len(tasks) == 0 {
			return total, fmt.Errorf("process %d: no /proc/%d/task/*/schedstat (gone, or the kernel lacks CONFIG_SCHED_INFO)", pid, pid)
		}
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			u, err := parseSchedstat(string(b))
			if err != nil {
				return total, err
			}
			total.run += u.run
			total.wait += u.wait
			total.slices += u.slices
		}
	}
	return total, nil
}

// usages is what the scheduler counted for a proxy and for the backends
// behind it.
type usages struct{ proxy, backends usage }

func readUsages(proxy int, backends []int) (usages, error) {
	p, err := readUsage([]int{proxy})
	if err != nil {
		return usages{}, err
	}
	b, err := readUsage(backends)
	return usages{p, b}, err
}

// pidsOf lists the processes whose executable lies under dir: the
// predictor replicas the agents started from bin/images.
func pidsOf(dir string) ([]int, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// cost is one run's scheduler figures per request: the proxy's CPU time,
// the backends' CPU time, and how long the proxy's threads waited for a CPU
// each time they became runnable (µs).
type cost struct {
	proxyCPU, backendCPU, proxyWaitPerSlice float64
}

// costOf turns what was counted before and after a run of requests into
// per-request figures.
func costOf(before, after usages, requests float64) cost {
	proxy, backends := after.proxy.sub(before.proxy), after.backends.sub(before.backends)
	c := cost{
		proxyCPU:   float64(proxy.run) / 1e3 / requests,
		backendCPU: float64(backends.run) / 1e3 / requests,
	}
	if proxy.slices > 0 {
		c.proxyWaitPerSlice = float64(proxy.wait) / 1e3 / float64(proxy.slices)
	}
	return c
}
