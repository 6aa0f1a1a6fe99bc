package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// AutoscaleSettings are a service's autoscaling parameters. Durations are
// Go durations ("60s", "5m"); in a request, a zero or empty field takes
// its default.
type AutoscaleSettings struct {
	Min            int     `json:"min"`
	Max            int     `json:"max"`
	TargetInFlight float64 `json:"target_inflight"`
	// StableWindow (60s) and PanicWindow (6s): the windows the load is
	// averaged over; PanicThreshold (2): the panic window's desire over the
	// count that scales up at once.
	StableWindow   string  `json:"stable_window,omitempty"`
	PanicWindow    string  `json:"panic_window,omitempty"`
	PanicThreshold float64 `json:"panic_threshold,omitempty"`
	// ScaleDownStabilization (5m): a scale-down goes to the highest count
	// recommended within it.
	ScaleDownStabilization string `json:"scale_down_stabilization,omitempty"`
	UpCooldown             string `json:"up_cooldown,omitempty"`
	DownCooldown           string `json:"down_cooldown,omitempty"`
	// Tolerance (0.1): the band around the count in which the load
	// changes nothing. FlapBudget (2) changes of direction per FlapWindow
	// (10m), then the count holds.
	Tolerance  float64 `json:"tolerance,omitempty"`
	FlapBudget int     `json:"flap_budget,omitempty"`
	FlapWindow string  `json:"flap_window,omitempty"`
}

// AutoscaleRequest is the body of POST /v1/services/{service}/autoscale:
// settings that turn autoscaling on (or change it), or Off.
type AutoscaleRequest struct {
	AutoscaleSettings
	Off bool `json:"off,omitempty"`
}

// AutoscaleResult answers an autoscale request: the settings now in force
// (defaults filled in), and the gateways that did not take them (they
// learn them when they next start).
type AutoscaleResult struct {
	Service  string            `json:"service"`
	Settings AutoscaleSettings `json:"settings"`
	Off      bool              `json:"off,omitempty"`
	Missing  []string          `json:"missing_gateways,omitempty"`
}

// AutoscaleStatus is GET /v1/autoscale: the deciding gateway's name, and
// every autoscaled service. The figures are the deciding gateway's (ask
// it for them); every gateway has the settings and the decisions.
type AutoscaleStatus struct {
	Decider  string             `json:"decider"`
	Gateway  string             `json:"gateway"`
	Services []AutoscaleService `json:"services"`
}

// AutoscaleService is one service's autoscaling.
type AutoscaleService struct {
	Service  string            `json:"service"`
	Settings AutoscaleSettings `json:"settings"`
	// Deciding: the answering gateway decides, and the figures are set.
	Deciding bool `json:"deciding"`
	Current  int  `json:"current"`
	Desired  int  `json:"desired"`
	// Stable and Panic are the requests in flight over each window, every
	// gateway summed; PerReplica the stable one per replica.
	Stable     float64 `json:"stable"`
	Panic      float64 `json:"panic"`
	PerReplica float64 `json:"per_replica"`
	Panicking  bool    `json:"panicking,omitempty"`
	// Frozen says why nothing is decided now (a rollout runs).
	Frozen string           `json:"frozen,omitempty"`
	Reason string           `json:"reason,omitempty"`
	Events []AutoscaleEvent `json:"events"`
}

// AutoscaleEvent is a decision that changed the count, was held, or
// failed.
type AutoscaleEvent struct {
	At     time.Time `json:"at"`
	From   int       `json:"from"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
	Error  string    `json:"error,omitempty"`
}

// Autoscale turns a service's autoscaling on, changes it, or turns it off
// (POST /v1/services/{service}/autoscale). A refusal is a StatusError: 400
// (bad settings), 404 (off when it was not on).
func (c *Client) Autoscale(ctx context.Context, service string, r AutoscaleRequest) (AutoscaleResult, error) {
	var out AutoscaleResult
	return out, c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(service)+"/autoscale", r, &out)
}

// AutoscaleStatus returns the autoscaling of every service (GET /v1/autoscale).
func (c *Client) AutoscaleStatus(ctx context.Context) (AutoscaleStatus, error) {
	var out AutoscaleStatus
	return out, c.get(ctx, "/v1/autoscale", &out)
}
