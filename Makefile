# Herd. The README's two commands: `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/herd-cluster/herd/internal/cliutil.Version=$(VERSION)
BIN := bin
PREDICTOR_VERSIONS := 1.0.0 1.1.0
# The example services: each built at every PREDICTOR_VERSIONS, as an image
# of its own name (predictor-grpc:1.0.0 speaks gRPC: agent join --protocol grpc).
EXAMPLES := predictor predictor-grpc
# Binaries are static; the race detector needs cgo, so tests run with CGO_ENABLED=1.
STATIC := CGO_ENABLED=0
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL = $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq

.PHONY: release clusterctl-cross docker-images chaos all build binaries images-process images demo test test-deps vet fmt-check fuzz bench bench-deps clean dockerd-start dockerd-stop

all: build

## build: the three binaries and the predictor versions (HTTP and gRPC) for the process runtime
build: binaries images-process

binaries:
	$(STATIC) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/gateway ./cmd/agent ./cmd/clusterctl

images-process:
	@for p in $(EXAMPLES); do for v in $(PREDICTOR_VERSIONS); do \
	  mkdir -p $(BIN)/images/$$p && \
	  $(STATIC) $(GO) build -trimpath -ldflags "-s -w -X main.version=$$v" -o $(BIN)/images/$$p/$$v ./examples/$$p || exit 1; \
	done; done

## images: predictor and predictor-grpc at 1.0.0 and 1.1.0 as Docker images FROM scratch (nothing is pulled;
## both take serve and healthcheck, so one Dockerfile fits them)
images:
	@for p in $(EXAMPLES); do for v in $(PREDICTOR_VERSIONS); do \
	  ctx=$$(mktemp -d) && cp examples/predictor/Dockerfile $$ctx/ && \
	  $(STATIC) $(GO) build -trimpath -ldflags "-s -w -X main.version=$$v" -o $$ctx/predictor ./examples/$$p && \
	  DOCKER_BUILDKIT=0 docker build -q -t $$p:$$v $$ctx >/dev/null && echo "built image $$p:$$v"; \
	  rc=$$?; rm -rf $$ctx; [ $$rc = 0 ] || exit $$rc; \
	done; done

## release: static binaries for every RELEASE_PLATFORMS into DIST/<os>_<arch>/ (the three
## programs and the predictor versions), clusterctl alone for every CLUSTERCTL_PLATFORMS
## (an operator's laptop), with DIST/SHA256SUMS
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
CLUSTERCTL_PLATFORMS ?= windows/amd64 darwin/arm64 darwin/amd64
DIST ?= dist
release:
	rm -rf $(DIST)/*_* $(DIST)/SHA256SUMS
	@set -e; for p in $(RELEASE_PLATFORMS); do \
	  os=$${p%/*} arch=$${p#*/} out=$(DIST)/$${p%/*}_$${p#*/}; echo "building $$out"; \
	  GOOS=$$os GOARCH=$$arch $(STATIC) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out/ ./cmd/gateway ./cmd/agent ./cmd/clusterctl; \
	  for v in $(PREDICTOR_VERSIONS); do \
	    GOOS=$$os GOARCH=$$arch $(STATIC) $(GO) build -trimpath -ldflags "-s -w -X main.version=$$v" -o $$out/predictor-$$v ./examples/predictor; \
	  done; \
	done
	@set -e; for p in $(CLUSTERCTL_PLATFORMS); do \
	  os=$${p%/*} arch=$${p#*/} out=$(DIST)/$${p%/*}_$${p#*/}; echo "building $$out (clusterctl)"; \
	  GOOS=$$os GOARCH=$$arch $(STATIC) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out/ ./cmd/clusterctl; \
	done
	cd $(DIST) && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | sort | xargs sha256sum > SHA256SUMS
	@echo "$(DIST)/SHA256SUMS:"; cat $(DIST)/SHA256SUMS

## clusterctl-cross: clusterctl builds for every CLUSTERCTL_PLATFORMS (it links no Serf,
## epoll or x/sys code; cmd/clusterctl's TestClusterctlLinksNoClusterCode checks its imports)
clusterctl-cross:
	@set -e; for p in $(CLUSTERCTL_PLATFORMS); do \
	  echo "GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./cmd/clusterctl"; \
	  GOOS=$${p%/*} GOARCH=$${p#*/} $(STATIC) $(GO) build -o /dev/null ./cmd/clusterctl; \
	done

## docker-images: herd/gateway and herd/agent (FROM scratch) from the linux/amd64 release
docker-images: release
	DOCKER_BUILDKIT=0 docker build -q -t herd/gateway:$(VERSION) -f deploy/docker/gateway.Dockerfile $(DIST)/linux_amd64
	DOCKER_BUILDKIT=0 docker build -q -t herd/agent:$(VERSION) -f deploy/docker/agent.Dockerfile $(DIST)/linux_amd64

## demo: a gateway and three agents × 4 replicas on loopback (process runtime)
demo: build
	./scripts/demo.sh

## chaos: the fault-injection cases under load (also part of make test), with their figures
CHAOS_TESTS := TestSkeleton|TestDockerCluster|TestDockerEngineDown|TestChaos.*|TestRolloutCoordinatorRestart|TestRogueSerfMember
chaos: test-deps
	@./scripts/test-dockerd.sh start $(DOCKERD_DIR) || [ "$$CI" != true ]
	@HERD_CHAOS_REPEAT=$${HERD_CHAOS_REPEAT:-10} DOCKER_HOST=unix://$(DOCKERD_DIR)/docker.sock CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m \
	  -run '^($(CHAOS_TESTS))$$' -v ./test/e2e/ | grep -E 'MEASURE|^(--- |ok|FAIL|panic)'; \
	  rc=$${PIPESTATUS[0]}; ./scripts/test-dockerd.sh stop $(DOCKERD_DIR); exit $$rc

## bench: the gateway against HAProxy with wrk (4 and 12 replicas, streaming, routing, TLS
## and HTTP/2), the balancer's Go benchmarks, membership convergence with 200 members, and
## scaling (process runtime; 12 Docker replicas added on one host)
BENCH_ROUNDS ?= 5
BENCH_DURATION ?= 10s
bench: bench-deps build
	$(GO) run ./test/bench -bin $(BIN) -rounds $(BENCH_ROUNDS) -duration $(BENCH_DURATION)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/balancer/
	$(GO) test -count=1 -run TestConvergenceAtScale -v ./pkg/gateway/ | grep -E 'MEASURE|^(ok|FAIL|---)'
	@# scaling: the process runtime (scale to all routed) and 12 new Docker replicas on one host
	@./scripts/test-dockerd.sh start $(DOCKERD_DIR); \
	  DOCKER_HOST=unix://$(DOCKERD_DIR)/docker.sock $(GO) test -count=1 -timeout 10m -run '^(TestScaleUnderLoad|TestDockerAgentStartup)$$' \
	  -v ./test/e2e/ | grep -E 'MEASURE|^(ok|FAIL|---)'; rc=$${PIPESTATUS[0]}; ./scripts/test-dockerd.sh stop $(DOCKERD_DIR); exit $$rc

bench-deps:
	@command -v wrk >/dev/null && command -v haproxy >/dev/null && command -v h2load >/dev/null || { $(APT_INSTALL) wrk haproxy nghttp2-client; }

## test: install what the tests need, then vet, format check and every test with -race
# The tests' own Docker engine (scripts/test-dockerd.sh); the Docker tests use it
# through DOCKER_HOST. Without an engine they skip, or fail when CI=true.
DOCKERD_DIR ?= /tmp/herd-test-dockerd
test: test-deps vet fmt-check clusterctl-cross
	@if ! ./scripts/test-dockerd.sh start $(DOCKERD_DIR); then \
	  if [ "$$CI" = true ]; then echo "CI=true: the Docker engine for the tests must start"; exit 1; fi; \
	  echo "no Docker engine for the tests: the Docker tests will skip"; fi
	@DOCKER_HOST=unix://$(DOCKERD_DIR)/docker.sock CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m -artifacts ./...; \
	  rc=$$?; ./scripts/test-dockerd.sh stop $(DOCKERD_DIR); exit $$rc
	$(MAKE) fuzz FUZZ_ROUNDS=1

test-deps:
	@command -v $(GO) >/dev/null || { echo "Go is required: https://go.dev/dl"; exit 1; }
	@command -v gcc >/dev/null || { $(APT_INSTALL) gcc libc6-dev; }
	@command -v serf >/dev/null || { $(APT_INSTALL) serf; }
	@command -v chromium >/dev/null || { $(APT_INSTALL) chromium; }
	@missing=; for t in ruby:ruby shellcheck:shellcheck zsh:zsh systemd-analyze:systemd make:make curl:curl wrk:wrk; do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	  [ -z "$$missing" ] || { $(APT_INSTALL) $$missing; }
	$(GO) mod download

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Each fuzz target runs a number of executions, not a duration: Go 1.26's
# -fuzztime with a duration can end in a spurious "context deadline exceeded"
# on a busy machine (golang/go#75804). A target's count below takes about 5 s
# on this project's 2-core CI machine; FUZZ_ROUNDS multiplies them all.
FUZZ_ROUNDS ?= 12
FUZZ_TARGETS = \
  membership:FuzzDecodeTags:40000 \
  membership:FuzzDecodeSyncRequest:40000 \
  runtime:FuzzParseImage:100000 \
  membership:FuzzDecodeDeployRequest:40000 \
  membership:FuzzDecodeScaleRequest:40000 \
  membership:FuzzDecodeScaleResponse:20000 \
  balancer:FuzzReadHead:50000 \
  balancer:FuzzRelayChunked:40000 \
  balancer:FuzzH2Request:3000 \
  autoscale:FuzzDecodeLoad:40000 \
  admin:FuzzDecodeRolloutBody:15000 \
  admin:FuzzDecodeScaleBody:15000 \
  rollout:FuzzStateFile:4000 \
  agent:FuzzLoadDesired:4000 \
  gateway:FuzzLoadView:8000 \
  balancer:FuzzRouteLookup:40000 \
  route:FuzzDecode:40000 \
  canary:FuzzCountsUnmarshal:40000
## fuzz: every fuzz target, FUZZ_ROUNDS × about 5 s each (default about 1 min)
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$$(( $${rest#*:} * $(FUZZ_ROUNDS) )); \
	  echo "$(GO) test -run '^\$$' -fuzz '^$$name\$$' -fuzztime $${n}x ./pkg/$$pkg"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime "$${n}x" ./pkg/$$pkg; \
	done

dockerd-start:
	./scripts/test-dockerd.sh start $(DOCKERD_DIR)
dockerd-stop:
	./scripts/test-dockerd.sh stop $(DOCKERD_DIR)

clean:
	rm -rf $(BIN) dist .demo
