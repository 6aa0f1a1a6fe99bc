package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/herd-cluster/herd/pkg/api"
	"github.com/herd-cluster/herd/pkg/autoscale"
)

// Autoscaler is what the autoscale endpoints need; the gateway's has it.
type Autoscaler interface {
	Set(ctx context.Context, service string, s autoscale.Settings) (missing []string, err error)
	Off(ctx context.Context, service string) (missing []string, err error)
	Status() []autoscale.Status
	Decider() string
}

// HandleAutoscale serves the services' autoscaling:
//
//	POST /v1/services/{service}/autoscale  on, changed or off (api.AutoscaleRequest) → api.AutoscaleResult
//	GET  /v1/autoscale                     every autoscaled service → api.AutoscaleStatus
//
// A request is refused 400 for bad settings, 404 to turn off what is not
// on; node is this gateway's name.
func (s *Server) HandleAutoscale(a Autoscaler, node string) {
	s.mux.HandleFunc("POST /v1/services/{service}/autoscale", func(w http.ResponseWriter, r *http.Request) {
		service := r.PathValue("service")
		var body api.AutoscaleRequest
		if err := decodeBody(r, &body); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if body.Off {
			missing, err := a.Off(r.Context(), service)
			switch {
			case errors.Is(err, autoscale.ErrUnknownService):
				writeError(w, http.StatusNotFound, fmt.Sprintf("autoscaling of service %q is not on", service))
			case err != nil:
				writeError(w, http.StatusServiceUnavailable, err.Error())
			default:
				writeJSON(w, http.StatusOK, api.AutoscaleResult{Service: service, Off: true, Missing: missing})
			}
			return
		}
		settings, err := SettingsOf(body.AutoscaleSettings)
		if err == nil {
			err = settings.Validate()
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		missing, err := a.Set(r.Context(), service, settings)
		switch {
		case errors.Is(err, autoscale.ErrNoSuchService):
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, api.AutoscaleResult{Service: service, Settings: autoscaleSettingsOf(settings), Missing: missing})
	})
	s.mux.HandleFunc("GET /v1/autoscale", func(w http.ResponseWriter, r *http.Request) {
		out := api.AutoscaleStatus{Decider: a.Decider(), Gateway: node, Services: []api.AutoscaleService{}}
		for _, st := range a.Status() {
			out.Services = append(out.Services, autoscaleServiceOf(st))
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// SettingsOf reads wire settings, the defaults where they are zero.
func SettingsOf(in api.AutoscaleSettings) (autoscale.Settings, error) {
	s := autoscale.DefaultSettings()
	s.Min, s.Max, s.TargetInFlight = in.Min, in.Max, in.TargetInFlight
	for _, d := range []struct {
		name, v string
		to      *time.Duration
	}{
		{"stable window", in.StableWindow, &s.StableWindow}, {"panic window", in.PanicWindow, &s.PanicWindow},
		{"scale-down stabilization", in.ScaleDownStabilization, &s.ScaleDownStabilization},
		{"up cooldown", in.UpCooldown, &s.UpCooldown}, {"down cooldown", in.DownCooldown, &s.DownCooldown},
		{"flap window", in.FlapWindow, &s.FlapWindow},
	} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil {
			return s, fmt.Errorf("%s %q: want a duration such as 60s", d.name, d.v)
		}
		*d.to = v
	}
	if in.PanicThreshold != 0 {
		s.PanicThreshold = in.PanicThreshold
	}
	if in.Tolerance != 0 {
		s.Tolerance = in.Tolerance
	}
	if in.FlapBudget != 0 {
		s.FlapBudget = in.FlapBudget
	}
	return s, nil
}

func autoscaleSettingsOf(s autoscale.Settings) api.AutoscaleSettings {
	return api.AutoscaleSettings{
		Min: s.Min, Max: s.Max, TargetInFlight: s.TargetInFlight,
		StableWindow: s.StableWindow.String(), PanicWindow: s.PanicWindow.String(), PanicThreshold: s.PanicThreshold,
		ScaleDownStabilization: s.ScaleDownStabilization.String(), UpCooldown: s.UpCooldown.String(),
		DownCooldown: s.DownCooldown.String(), Tolerance: s.Tolerance, FlapBudget: s.FlapBudget, FlapWindow: s.FlapWindow.String(),
	}
}

func autoscaleServiceOf(st autoscale.Status) api.AutoscaleService {
	out := api.AutoscaleService{
		Service: st.Service, Settings: autoscaleSettingsOf(st.Settings), Deciding: st.Deciding,
		Current: st.Current, Desired: st.Desired, Stable: st.Stable, Panic: st.Panic, PerReplica: st.PerReplica,
		Panicking: st.Panicking, Frozen: st.Frozen, Reason: st.Reason, Events: []api.AutoscaleEvent{},
	}
	for _, e := range st.Events {
		out.Events = append(out.Events, api.AutoscaleEvent{At: e.At, From: e.From, To: e.To, Reason: e.Reason, Error: e.Error})
	}
	return out
}
