package balancer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// fleet is hosts × perHost backends on 127.x.y.z addresses that are never
// dialled: the benchmarks measure set operations only.
func fleet(hosts, perHost int) map[string][]netip.AddrPort {
	out := make(map[string][]netip.AddrPort, hosts)
	for h := range hosts {
		ip := netip.AddrFrom4([4]byte{127, byte(1 + h/65536), byte(h / 256 % 256), byte(h % 256)})
		node := fmt.Sprintf("host-%04d", h)
		for k := range perHost {
			out[node] = append(out[node], netip.AddrPortFrom(ip, uint16(8000+k)))
		}
	}
	return out
}

func benchBalancer(b *testing.B, hosts, perHost int) (*Balancer, map[string][]netip.AddrPort) {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Logger = hclog.NewNullLogger()
	cfg.HealthInterval = 0 // the addresses are never dialled
	bal, err := New(cfg)
	require.NoError(b, err)
	f := fleet(hosts, perHost)
	for node, addrs := range f {
		bal.SetNode(node, addrs)
	}
	require.Equal(b, hosts*perHost, bal.Len())
	return bal, f
}

// BenchmarkPick: choosing a backend costs the same with 4 and with 12,000,
// with either algorithm.
func BenchmarkPick(b *testing.B) {
	for _, algo := range []Algorithm{RoundRobin, LeastRequest} {
		for _, size := range []struct{ hosts, per int }{{1, 4}, {1000, 12}} {
			b.Run(fmt.Sprintf("%s/backends=%d", algo, size.hosts*size.per), func(b *testing.B) {
				bal, _ := benchBalancer(b, size.hosts, size.per)
				cfg := bal.cfg
				cfg.Balance = algo
				sel, set, now := newSelector(&cfg), bal.Service(cfg.Service).reg.set.Load().hosts, time.Now().UnixNano()
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if h, _ := sel.Select(set, nil, now); h == nil {
						b.Fatal("no backend")
					}
				}
			})
		}
	}
}

// BenchmarkSetNode: one member's change (its 12 ports replaced) applied to
// a 12,000-backend set, alternating between two port sets so every call
// changes something.
func BenchmarkSetNode(b *testing.B) {
	for _, hosts := range []int{1, 1000} {
		b.Run(fmt.Sprintf("backends=%d", hosts*12), func(b *testing.B) {
			bal, f := benchBalancer(b, hosts, 12)
			node := "host-0000"
			a := f[node]
			moved := make([]netip.AddrPort, len(a))
			for i, ap := range a {
				moved[i] = netip.AddrPortFrom(ap.Addr(), ap.Port()+100)
			}
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					bal.SetNode(node, moved)
				} else {
					bal.SetNode(node, a)
				}
				i++
			}
			b.StopTimer()
			require.Equal(b, hosts*12, bal.Len())
		})
	}
	b.Run("unchanged/backends=12000", func(b *testing.B) {
		bal, f := benchBalancer(b, 1000, 12)
		a := f["host-0000"]
		b.ReportAllocs()
		for b.Loop() {
			bal.SetNode("host-0000", a)
		}
	})
}

// startBenchBackend is a backend as small as a backend can be, so that a
// benchmark of the relay measures the relay: each connection's requests
// (heads without bodies) are answered "ok" in order, on a goroutine.
func startBenchBackend(b *testing.B) netip.AddrPort {
	b.Helper()
	return serveOK(b, nil)
}

// BenchmarkRelay: one keep-alive client sends GET after GET through the
// balancer to one backend, with each relay: the cost of the gateway's hot
// path end to end (both sides' system calls included).
func BenchmarkRelay(b *testing.B) {
	for _, rl := range relays {
		b.Run(rl.name, func(b *testing.B) {
			cfg := testConfig()
			bal, f := serveBalancer(b, rl, cfg)
			bal.SetNode("n0", []netip.AddrPort{startBenchBackend(b)})
			benchRelay(b, f.Addr)
		})
	}
}

// benchRelay sends b.N GETs on one connection to addr, each after the
// answer to the last.
func benchRelay(b *testing.B, addr string) {
	b.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(b, err)
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /predict HTTP/1.1\r\nHost: bench\r\n\r\n")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		resp.Body.Close()
	}
}

// BenchmarkRelayCanary is BenchmarkRelay during a canary: 5 % of the
// requests to the canary arm, 5 % to the baseline arm, each on a backend
// of its own, every attempt measured.
func BenchmarkRelayCanary(b *testing.B) {
	for _, rl := range relays {
		b.Run(rl.name, func(b *testing.B) {
			bal, f := serveBalancer(b, rl, testConfig())
			s := bal.Service(testConfig().Service)
			s.SetNode("n0", []netip.AddrPort{startBenchBackend(b)})
			s.SetNodeArm("n1", ArmCanary, []netip.AddrPort{startBenchBackend(b)})
			s.SetNodeArm("n1", ArmBaseline, []netip.AddrPort{startBenchBackend(b)})
			s.SetSplit(Split{Canary: 5, Baseline: 5, CanaryVersion: "v2", BaselineVersion: "v1", StableVersion: "v1"})
			benchRelay(b, f.Addr)
			b.StopTimer()
			counts := s.ArmCounts()
			require.Positive(b, counts[ArmCanary].Requests)
			require.Positive(b, counts[ArmBaseline].Requests)
		})
	}
}

// BenchmarkSplitPick: the split's choice of an arm, from one goroutine and
// from every P at once (one atomic counter shared).
func BenchmarkSplitPick(b *testing.B) {
	st := newSplitState(Split{Canary: 5, Baseline: 5})
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		var n [numArms]int
		for b.Loop() {
			n[st.pick()]++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var n [numArms]int
			for pb.Next() {
				n[st.pick()]++
			}
		})
	})
}

// BenchmarkExchangePick: what the request path does to choose a backend,
// the arm's choice included (and the request in flight counted and
// released), among 12 backends: with no canary, and with a 5/5 % split.
func BenchmarkExchangePick(b *testing.B) {
	for _, split := range []Split{{}, {Canary: 5, Baseline: 5}} {
		b.Run(fmt.Sprintf("canary=%d", split.Canary), func(b *testing.B) {
			bal, f := benchBalancer(b, 1, 12)
			s := bal.Service(bal.cfg.Service)
			if split.Canary > 0 {
				addrs := f["host-0000"]
				s.SetNodeArm("host-0000", ArmCanary, addrs[:2])
				s.SetNodeArm("host-0000", ArmBaseline, addrs[2:4])
				s.SetNodeArm("host-0000", ArmStable, addrs[4:])
				s.SetSplit(split)
			}
			b.ReportAllocs()
			var x exchange // on the heap, as in a client connection
			for b.Loop() {
				x = exchange{svc: s}
				x.chooseArm(pinNone)
				h, err := x.pick()
				if err != nil {
					b.Fatal(err)
				}
				h.done()
			}
		})
	}
}
