// Command predictor is Herd's example service: it scores the tone of text.
//
//	predictor [serve]     serve HTTP on $HOST:$PORT (default :8080)
//	predictor healthcheck exit 0 if the local server's /healthz answers 200
//	predictor version     print the version
//
// Endpoints: POST /predict {"text": "..."}, GET /healthz, GET /version; for
// load tests of the path in between, GET /bytes?n=N streams N bytes and
// POST /discard reads a body of any size and answers its length; GET
// /work?ms=N holds the request N ms (at most 60 s) before answering, so a
// load test sets how many requests are in flight (the autoscaler's signal).
// HERD_INSTANCE names this replica in answers (Herd's agents set it).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/herd-cluster/herd/examples/internal/replica"
	"github.com/herd-cluster/herd/examples/predictor/tone"
)

// Set at build time: -ldflags "-X main.version=1.1.0".
var (
	version = "dev"
	// broken, when "true", makes /healthz fail: a bad release for testing
	// automatic rollout revert.
	broken = "false"
)

const (
	maxBody         = 64 << 10
	maxStream       = 1 << 30
	maxWork         = 60_000 // ms
	shutdownTimeout = 30 * time.Second
)

func main() { replica.Main("predictor", version, serve, healthcheck) }

func serve() error {
	srv := &http.Server{
		Addr:              replica.ListenAddr(),
		Handler:           newHandler(version, replica.Instance(), broken == "true"),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	log.Printf("predictor %s serving on %s as %s", version, ln.Addr(), replica.Instance())
	if err := replica.ServeUntilSignal(func() error { return srv.Serve(ln) }); err != nil {
		return err
	}
	// Finish in-flight requests, then exit.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Printf("predictor stopped")
	return nil
}

// healthcheck passes when addr's /healthz answers 200.
func healthcheck(addr string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

func newHandler(version, instance string, broken bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if broken {
			http.Error(w, "unhealthy: broken build", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": version, "instance": instance})
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > maxStream {
			http.Error(w, "want n=0.."+strconv.Itoa(maxStream), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := make([]byte, 32<<10)
		for n > 0 {
			k, err := w.Write(chunk[:min(n, int64(len(chunk)))])
			if err != nil {
				return
			}
			n -= int64(k)
		}
	})
	mux.HandleFunc("POST /discard", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxStream))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, map[string]int64{"bytes": n})
	})
	mux.HandleFunc("GET /work", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 || ms > maxWork {
			http.Error(w, "want ms=0.."+strconv.Itoa(maxWork), http.StatusBadRequest)
			return
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"ms": ms, "version": version, "instance": instance})
	})
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Text string `json:"text"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body larger than 64 KiB"})
				return
			}
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want a JSON body {\"text\": \"...\"}: " + err.Error()})
			return
		}
		res := tone.Predict(req.Text)
		writeJSON(w, http.StatusOK, map[string]any{
			"label": res.Label, "scores": res.Scores, "version": version, "instance": instance,
		})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
