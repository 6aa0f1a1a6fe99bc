package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herd-cluster/herd/pkg/api"
)

// routedServices and routesPerService make the routing comparison: 50
// services of one replica each (one agent each), 4 routes apiece, 200 in
// all, of every kind.
const (
	routedServices   = 50
	routesPerService = 4
)

// serviceRoutes are service i's routes: an exact host, a host and a path,
// a wildcard host, and a path on any host; the paths are stripped.
func serviceRoutes(i int) (name string, routes []string) {
	name = fmt.Sprintf("svc-%02d", i)
	return name, []string{name + ".example.com", "api.example.com/v1/" + name, "*." + name + ".example.org", "/" + name}
}

// routing compares the gateway routing 50 services by 200 routes with
// HAProxy routing the same requests with use_backend rules on hdr(host)
// and path_beg ACLs, in the gateway's precedence (exact hosts, then
// wildcards, then any host; the longer paths first). wrk's requests cycle
// through every route.
func (c *cluster) routing() error {
	fmt.Printf("\n# Routing: %d services, %d routes; %d agents of 1 replica join\n", routedServices,
		routedServices*routesPerService, routedServices)
	var haRules, haBackends, requests strings.Builder
	var exact, wild, paths strings.Builder
	for i := range routedServices {
		name, routes := serviceRoutes(i)
		ip := fmt.Sprintf("127.0.1.%d", 1+i)
		base := 19000 + i
		args := []string{"--service", name, "--strip-prefix"}
		for _, r := range routes {
			args = append(args, "--route", r)
		}
		if err := c.startAgent(name, ip, base, 1, args...); err != nil {
			return err
		}
		be := "b_" + strings.ReplaceAll(name, "-", "_")
		fmt.Fprintf(&exact, "  use_backend %s if { var(txn.host) -m str %s.example.com }\n", be, name)
		fmt.Fprintf(&exact, "  use_backend %s if { var(txn.host) -m str api.example.com } { path /v1/%s } || "+
			"{ var(txn.host) -m str api.example.com } { path_beg /v1/%s/ }\n", be, name, name)
		fmt.Fprintf(&wild, "  use_backend %s if { var(txn.host) -m end .%s.example.org }\n", be, name)
		fmt.Fprintf(&paths, "  use_backend %s if { path /%s } || { path_beg /%s/ }\n", be, name, name)
		fmt.Fprintf(&haBackends, "backend %s\n  http-request replace-path ^/v1/%s(/.*)?$ \\1\n"+
			"  http-request replace-path ^/%s(/.*)?$ \\1\n  server s0 %s:%d\n", be, name, name, ip, base)
		for _, hp := range [][2]string{
			{name + ".example.com", "/version"}, {"api.example.com", "/v1/" + name + "/version"},
			{"x." + name + ".example.org", "/version"}, {"bench.test", "/" + name + "/version"},
		} {
			fmt.Fprintf(&requests, "  {%q, %q},\n", hp[0], hp[1])
		}
	}
	haRules.WriteString("  http-request set-var(txn.host) req.hdr(host),field(1,:),lower\n")
	haRules.WriteString(exact.String() + wild.String() + paths.String())
	if err := c.waitRoutes(routedServices * routesPerService); err != nil {
		return err
	}
	script := filepath.Join(c.dir, "routes.lua")
	lua := "local reqs = {\n" + requests.String() + "}\nlocal i = 0\n" +
		"request = function()\n  i = i % #reqs + 1\n  return wrk.format(\"GET\", reqs[i][2], {Host = reqs[i][1]})\nend\n"
	if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
		return err
	}
	routed := *c
	routed.script = script
	routed.o.path = "/svc-00/version" // what wrk's URL says, and the readiness check asks
	return routed.compare(fmt.Sprintf("%d services, %d routes, requests cycling through every route", routedServices,
		routedServices*routesPerService), pair{gwURL: c.gwURL, gwPid: c.gwPid, haRouting: haRules.String() + haBackends.String()}, 0)
}

// waitRoutes waits until the gateway routes n routes, each with its
// backends.
func (c *cluster) waitRoutes(n int) error {
	client := api.NewClient(c.admin, "")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r, err := client.Routes(context.Background())
		ok := 0
		if err == nil {
			for _, rt := range r.Routes {
				if rt.State == api.RouteOK {
					ok++
				}
			}
		}
		if ok == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the gateway routes %d of %d routes after 3 min (logs in %s): %v", ok, n, c.dir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startAgent starts an agent of n replicas on ip from port base, with
// extra flags; it does not wait.
func (c *cluster) startAgent(name, ip string, base, n int, extra ...string) error {
	gossip, err := freePort(ip)
	if err != nil {
		return err
	}
	admin, _ := freePort(ip)
	args := append([]string{filepath.Join(c.o.bin, "agent"), "join",
		"--node", "bench-" + name, "--join", c.gossip, "--bind", fmt.Sprintf("%s:%d", ip, gossip),
		"--admin", fmt.Sprintf("%s:%d", ip, admin), "--runtime", "process", "--images-dir", filepath.Join(c.o.bin, "images"),
		"--image", "predictor:1.0.0", "--replicas", strconv.Itoa(n), "--base-port", strconv.Itoa(base),
		"--data-dir", filepath.Join(c.dir, "agent-"+name), "--gossip-profile", "local", "--log-level", "warn"}, extra...)
	_, err = c.procs.start(c.dir, "agent-"+name, args...)
	return err
}
