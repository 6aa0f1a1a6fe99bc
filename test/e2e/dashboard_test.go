package e2e

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herd-cluster/herd/internal/testutil"
	"github.com/herd-cluster/herd/pkg/api"
)

// chrome starts Debian's headless Chromium for the test and records every
// URL the page asks for.
func chrome(t *testing.T) (context.Context, func() []string) {
	t.Helper()
	exe := testutil.RequireTool(t, "chromium")
	// Not t.TempDir: the browser's helpers may still write to its profile
	// just after it exits, and t.TempDir's removal would fail the test.
	profile, err := os.MkdirTemp("", "herd-chromium-")
	require.NoError(t, err)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1100), chromedp.UserDataDir(profile))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // closes the browser and waits for it
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("chromium profile %s left behind", profile)
	})
	var mu sync.Mutex
	var urls []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			urls = append(urls, e.Request.URL)
			mu.Unlock()
		}
	})
	require.NoError(t, chromedp.Run(ctx, network.Enable()), "start chromium")
	return ctx, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), urls...) }
}

// TestDashboard drives the admin dashboard in headless Chromium: the login
// form (wrong token, then the right one), the members and backends it shows
// against the API's, and a rollout followed live host by host. It saves
// screenshots in the test's artifact directory (go test -artifacts).
func TestDashboard(t *testing.T) {
	const token = "dash-s3cret"
	g := startGateway(t, "--token", token)
	startAgent(t, g, "host-a", "127.0.0.2", 2)
	startAgent(t, g, "host-b", "127.0.0.3", 2)
	g.waitBackends(t, 4, 30*time.Second)
	load := startLoad(t, g.url, 100, true)
	cl := g.client()
	ctx, requested := chrome(t)
	base := "http://" + g.admin
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Run(tctx, actions...), what)
	}

	// Sign in through the form: a wrong token is refused on the page.
	var problem string
	run("login form, wrong token",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SendKeys("#token", "wrong", chromedp.ByID),
		chromedp.Submit("#login", chromedp.ByID),
		chromedp.WaitVisible("#problem", chromedp.ByID),
		chromedp.Text("#problem", &problem, chromedp.ByID))
	assert.Equal(t, "wrong token", problem)
	run("login form, right token",
		chromedp.SendKeys("#token", token, chromedp.ByID),
		chromedp.Submit("#login", chromedp.ByID),
		chromedp.WaitVisible("#members tbody tr", chromedp.ByQuery))

	// Members and backends on the page are the cluster's.
	members, err := cl.Members(context.Background())
	require.NoError(t, err)
	want := map[string]string{}
	for _, m := range members {
		want[m.Name] = strings.Join([]string{m.Role, m.Addr, m.Status, dashIfEmpty(m.Image)}, " ")
	}
	require.Len(t, want, 3)
	var shown map[string]string
	require.Eventually(t, func() bool {
		shown = tableRows(t, ctx, "#members", "data-name", 1, 2, 3, 5)
		return assert.ObjectsAreEqual(want, shown)
	}, 10*time.Second, 100*time.Millisecond, "members shown %v, want %v", shown, want)

	var backendsShown map[string]string
	wantBackends := map[string]string{}
	require.Eventually(t, func() bool {
		bs, err := cl.Backends(context.Background())
		require.NoError(t, err)
		clear(wantBackends)
		for _, b := range bs {
			wantBackends[b.Addr] = b.Node + " " + b.State
		}
		backendsShown = tableRows(t, ctx, "#backends", "data-addr", 2, 3)
		return len(wantBackends) == 4 && assert.ObjectsAreEqual(wantBackends, backendsShown)
	}, 10*time.Second, 100*time.Millisecond, "backends shown %v, want %v", backendsShown, wantBackends)
	// Backends are grouped by service, and the routing is shown: one
	// service without routes takes every request.
	var grouping []string
	require.Eventually(t, func() bool {
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := chromedp.Run(tctx, chromedp.Evaluate(`[
			Array.from(document.querySelectorAll("#backends tr.group")).map(tr => tr.textContent.trim()).join("|"),
			document.getElementById("routes-default").textContent]`, &grouping))
		return err == nil && len(grouping) == 2 && grouping[0] == "predictor · 4 / 4 up"
	}, 10*time.Second, 100*time.Millisecond, "backends grouped by service: %v", grouping)
	assert.Equal(t, "Requests no route matches go to service predictor.", grouping[1])
	// The request rate the page computes is the load's (100 req/s).
	var rate float64
	require.Eventually(t, func() bool {
		var text string
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if chromedp.Run(tctx, chromedp.Text("#sum-rate", &text, chromedp.ByID)) != nil {
			return false
		}
		rate, err = strconv.ParseFloat(strings.ReplaceAll(text, ",", ""), 64)
		return err == nil && rate >= 60 && rate <= 140
	}, 10*time.Second, 200*time.Millisecond, "the page shows about 100 requests/s (last: %v)", rate)
	t.Logf("MEASURE dashboard request rate under a 100 req/s load: %.0f req/s", rate)
	screenshot(t, ctx, "dashboard.png")

	// A rollout, watched on the page: each host moves on in turn.
	_, err = cl.StartRollout(context.Background(), api.RolloutOptions{Image: "predictor:1.1.0", MinHealthy: api.Duration(time.Second)})
	require.NoError(t, err)
	var seen []string // distinct "state: host=state …" lines, in the order the page showed them
	deadline := time.Now().Add(60 * time.Second)
	shotMidway := false
	for time.Now().Before(deadline) {
		// One evaluation reads the state and the hosts together: the page
		// redraws the rollout box every second, so separate reads could
		// straddle a redraw.
		var view *struct {
			State string            `json:"state"`
			Hosts map[string]string `json:"hosts"`
		}
		tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := chromedp.Run(tctx, chromedp.Evaluate(`(() => {
			const block = document.querySelector('.rollout-block[data-service="predictor"]');
			const s = block && block.querySelector(".rollout-state");
			if (!s) return null;
			const hosts = {};
			for (const tr of block.querySelectorAll(".rollout-hosts tbody tr")) hosts[tr.dataset.node] = tr.cells[2].textContent.trim();
			return {state: s.textContent.trim(), hosts};
		})()`, &view))
		cancel()
		if err == nil && view != nil {
			line := view.State + ":" + flatten(view.Hosts)
			if len(seen) == 0 || seen[len(seen)-1] != line {
				seen = append(seen, line)
			}
			if !shotMidway && view.Hosts["host-a"] == "healthy" && view.Hosts["host-b"] != "healthy" {
				screenshot(t, ctx, "dashboard-rollout.png")
				shotMidway = true
			}
			if view.State != api.RolloutRunning {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("MEASURE dashboard rollout progression: %s", strings.Join(seen, " | "))
	require.NotEmpty(t, seen)
	assert.Equal(t, "succeeded: host-a=healthy host-b=healthy", seen[len(seen)-1])
	assert.True(t, shotMidway, "the page showed host-a done while host-b was not: %v", seen)
	assert.GreaterOrEqual(t, len(seen), 3, "the page followed the rollout step by step: %v", seen)

	// The members table follows: both hosts on the new image.
	require.Eventually(t, func() bool {
		rows := tableRows(t, ctx, "#members", "data-name", 5)
		return rows["host-a"] == "predictor:1.1.0" && rows["host-b"] == "predictor:1.1.0"
	}, 10*time.Second, 100*time.Millisecond)
	screenshot(t, ctx, "dashboard-after-rollout.png")
	load.finish()
	t.Logf("MEASURE load through the rollout watched on the dashboard: sent=%d failed=%d", load.sent.Load(), load.failed.Load())
	assert.Zero(t, load.failed.Load(), "requests failed during the rollout: %s", load.failures())

	for _, u := range requested() {
		assert.True(t, strings.HasPrefix(u, base+"/"), "the page loaded %s: it must be self-contained", u)
	}
}

// tableRows reads a table on the page: key attribute of each body row → the
// text of the given cells (0-based), joined by spaces.
func tableRows(t *testing.T, ctx context.Context, table, keyAttr string, cells ...int) map[string]string {
	t.Helper()
	var rows [][]string
	js := `Array.from(document.querySelectorAll(` + jsString(table+" tbody tr") + `)).map(tr =>
		[tr.getAttribute(` + jsString(keyAttr) + `)].concat(Array.from(tr.cells).map(td => td.textContent.trim())))`
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := chromedp.Run(tctx, chromedp.Evaluate(js, &rows)); err != nil {
		t.Logf("read %s: %v", table, err)
		return nil
	}
	out := map[string]string{}
	for _, r := range rows {
		if r[0] == "" { // a group's heading
			continue
		}
		var vals []string
		for _, c := range cells {
			if c+1 < len(r) {
				vals = append(vals, r[c+1])
			}
		}
		out[r[0]] = strings.Join(vals, " ")
	}
	return out
}

func jsString(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func flatten(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, " "+k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, "")
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Run(tctx, chromedp.FullScreenshot(&png, 100)))
	path := filepath.Join(t.ArtifactDir(), name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}
