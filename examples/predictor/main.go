// Command predictor is Herd's example service: it scores the tone of text.
//
//	predictor [serve] [flags] serve HTTP on $HOST:$PORT (default :8080)
//	predictor healthcheck     exit 0 if the local server's /healthz answers 200
//	predictor version         print the version
//
// Endpoints: POST /predict {"text": "..."} or GET /predict?text=..., GET
// /healthz, GET /version; for load tests of the path in between, GET
// /bytes?n=N streams N bytes and POST /discard reads a body of any size and
// answers its length; GET /work?ms=N holds the request N ms (at most 60 s)
// before answering, so a load test sets how many requests are in flight
// (the autoscaler's signal). HERD_INSTANCE names this replica in answers
// (Herd's agents set it).
//
// Faults make a bad release for testing canary rollouts: its health checks
// pass, its /predict traffic (GET and POST) gives it away. serve's flags:
//
//	--fault-error-rate F   answer the fraction F of /predict requests 500,
//	                       deterministically: request n fails when ⌊n·F⌋
//	                       grows, so 0.05 (or 5%) is exactly every 20th
//	--fault-delay D        hold every /predict request D (like 50ms, at
//	                       most 1m) before answering
//	--fault-crash-after N  exit with status 1 once the first N /predict
//	                       requests are answered; later ones never are
//
// The same faults can be built in, comma-separated, by the flags' names
// without "fault-": -ldflags "-X main.faults=error-rate=0.05,delay=50ms";
// a flag given wins over its built-in value. A bad value: one line on
// stderr, exit 2. Herd's e2e tests build predictor:1.1.0-err5, 1.1.0-slow50
// and 1.1.0-crash100 so (internal/testutil); make build, make images and
// the release never do.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
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
	// faults are this build's faults (see parseFaults), "" for none: a bad
	// release that passes its health checks, for testing canary rollouts.
	faults = ""
)

const (
	maxBody         = 64 << 10
	maxStream       = 1 << 30
	maxWork         = 60_000 // ms
	shutdownTimeout = 30 * time.Second
)

func main() { replica.Main("predictor", version, serve, healthcheck) }

func serve(args []string) error {
	built, err := parseFaults(faults)
	if err != nil {
		return fmt.Errorf("built with faults %q: %w", faults, err)
	}
	f, err := parseFlags(args, built, os.Stderr)
	if err != nil {
		return err
	}
	fy := newFaulty(f)
	srv := &http.Server{
		Addr:              replica.ListenAddr(),
		Handler:           newHandler(handlerConfig{Version: version, Instance: replica.Instance(), Broken: broken == "true", Faults: fy}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	if f != (Faults{}) {
		log.Printf("predictor %s serving on %s as %s with faults %s", version, ln.Addr(), replica.Instance(), f)
	} else {
		log.Printf("predictor %s serving on %s as %s", version, ln.Addr(), replica.Instance())
	}
	err = replica.ServeUntilSignal(func() error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-fy.Crashed():
			return fmt.Errorf("injected fault: crash after answering %d /predict requests", f.CrashAfter)
		}
	})
	if err != nil {
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

// parseFlags reads serve's flags over the faults built in. Its errors are
// *replica.UsageError, or flag.ErrHelp after the usage went to help.
func parseFlags(args []string, built Faults, help io.Writer) (Faults, error) {
	fs := flag.NewFlagSet("predictor serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // an error is one line, printed by replica.Main
	f := built
	f.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(help, "usage: predictor [serve] [flags] (built with faults %q)\n", faults)
			fs.SetOutput(help)
			fs.PrintDefaults()
			return Faults{}, err
		}
		return Faults{}, &replica.UsageError{Err: err}
	}
	if fs.NArg() > 0 {
		return Faults{}, &replica.UsageError{Err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return f, nil
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

// handlerConfig is what newHandler serves.
type handlerConfig struct {
	Version, Instance string  // in answers
	Broken            bool    // /healthz fails
	Faults            *faulty // on /predict; nil: none
}

func newHandler(cfg handlerConfig) http.Handler {
	version, instance := cfg.Version, cfg.Instance
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Broken {
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
	predict := func(w http.ResponseWriter, text string) {
		res := tone.Predict(text)
		writeJSON(w, http.StatusOK, map[string]any{
			"label": res.Label, "scores": res.Scores, "version": version, "instance": instance,
		})
	}
	mux.HandleFunc("POST /predict", cfg.Faults.wrap(func(w http.ResponseWriter, r *http.Request) {
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
		predict(w, req.Text)
	}))
	// GET /predict?text=... is the same scoring as a request a client or a
	// gateway may safely retry.
	mux.HandleFunc("GET /predict", cfg.Faults.wrap(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !q.Has("text") {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want GET /predict?text=..."})
			return
		}
		predict(w, q.Get("text"))
	}))
	return mux
}

// writeJSON answers v with its Content-Length: an answer is complete once
// flushed (a crashing replica's last one must be).
func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v) // values of this file's own making
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
