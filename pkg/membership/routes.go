package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/herd-cluster/herd/pkg/route"
)

// QueryRoutes asks an agent for a page of its service's routes, when they
// are too many for its tags (Tags.RoutesHash).
const QueryRoutes = "herd-routes"

// routesPageBytes bounds the routes of one page: an answer must fit Serf's
// response limit (1 KiB) with its framing.
const routesPageBytes = 700

// RoutesRequest is QueryRoutes' payload.
type RoutesRequest struct {
	Hash string `json:"hash"`
	Page int    `json:"page"`
}

// RoutesPage is an agent's answer: page Page of Pages of its routes (those
// of Hash), encoded as in the tags.
type RoutesPage struct {
	Hash   string `json:"hash"`
	Page   int    `json:"page"`
	Pages  int    `json:"pages"`
	Routes string `json:"routes"`
	Error  string `json:"error,omitempty"`
}

// DecodeRoutesRequest parses a QueryRoutes payload strictly.
func DecodeRoutesRequest(b []byte) (RoutesRequest, error) {
	var r RoutesRequest
	if err := decodeStrict(b, 128, &r); err != nil {
		return r, fmt.Errorf("routes request: %w", err)
	}
	if r.Page < 0 || r.Page >= route.MaxPerService {
		return r, fmt.Errorf("routes request: page %d out of range", r.Page)
	}
	return r, nil
}

// RoutePages splits routes into the pages an agent answers with.
func RoutePages(routes []route.Route) []RoutesPage {
	hash := route.Hash(routes)
	var pages []RoutesPage
	var cur []route.Route
	size := 0
	for _, r := range routes {
		if n := len(r.String()) + 1; size+n > routesPageBytes && len(cur) > 0 {
			pages = append(pages, RoutesPage{Hash: hash, Routes: route.Encode(cur)})
			cur, size = nil, 0
		}
		cur = append(cur, r)
		size += len(r.String()) + 1
	}
	pages = append(pages, RoutesPage{Hash: hash, Routes: route.Encode(cur)})
	for i := range pages {
		pages[i].Page, pages[i].Pages = i, len(pages)
	}
	return pages
}

// AnswerRoutes answers a QueryRoutes query from the routes an agent
// announces.
func AnswerRoutes(q *Query, routes []route.Route) error {
	req, err := DecodeRoutesRequest(q.Payload())
	var page RoutesPage
	pages := RoutePages(routes)
	switch {
	case err != nil:
		page.Error = err.Error()
	case req.Hash != pages[0].Hash:
		page.Error = routesChangedPrefix + pages[0].Hash
	case req.Page >= len(pages):
		page.Error = fmt.Sprintf("page %d of %d", req.Page, len(pages))
	default:
		page = pages[req.Page]
	}
	b, err := json.Marshal(page)
	if err != nil {
		return err
	}
	return q.Respond(b)
}

const routesChangedPrefix = "routes changed: hash "

// ErrRoutesChanged: the node's routes are no longer those of the hash
// asked for; its tags will say the new one.
var ErrRoutesChanged = errors.New("the node's routes changed")

// FetchRoutes fetches a node's routes whose hash its tags announce, page
// by page, each within timeout, and checks the list against the hash.
func (c *Cluster) FetchRoutes(ctx context.Context, node, hash string, timeout time.Duration) ([]route.Route, error) {
	var all []route.Route
	for page, pages := 0, 1; page < pages; page++ {
		payload, err := json.Marshal(RoutesRequest{Hash: hash, Page: page})
		if err != nil {
			return nil, err
		}
		qctx, cancel := context.WithTimeout(ctx, timeout)
		answers, err := c.Query(qctx, QueryRoutes, payload, QueryParams{Nodes: []string{node}, Timeout: timeout})
		cancel()
		b, ok := answers[node]
		if !ok {
			return nil, fmt.Errorf("routes of %s: no answer: %v", node, err)
		}
		var p RoutesPage
		if err := decodeStrict(b, 1024, &p); err != nil {
			return nil, fmt.Errorf("routes of %s: malformed answer: %w", node, err)
		}
		switch {
		case strings.HasPrefix(p.Error, routesChangedPrefix):
			return nil, fmt.Errorf("routes of %s: %w: %s", node, ErrRoutesChanged, p.Error)
		case p.Error != "":
			return nil, fmt.Errorf("routes of %s: refused: %s", node, p.Error)
		}
		if p.Hash != hash || p.Page != page || p.Pages < 1 || p.Pages > route.MaxPerService {
			return nil, fmt.Errorf("routes of %s: page %d/%d of %s, asked %d of %s", node, p.Page, p.Pages, p.Hash, page, hash)
		}
		pages = p.Pages
		rs, err := route.Decode(p.Routes)
		if err != nil {
			return nil, fmt.Errorf("routes of %s: %w", node, err)
		}
		all = append(all, rs...)
	}
	if len(all) > route.MaxPerService || route.Hash(all) != hash {
		return nil, fmt.Errorf("routes of %s: the list fetched does not match its hash", node)
	}
	return all, nil
}
