#!/usr/bin/env bash
# How long a rollout of 3 hosts × 4 replicas takes with --min-healthy 1s,
# idle and under a saturating wrk load through the gateway: a gateway on
# 127.0.0.1 and three agents on 127.0.0.2-4 (process runtime; by default the
# local gossip profile and 200 ms health checks, as in test/e2e), rolled
# 1.0.0 → 1.1.0 → 1.0.0 …, RUNS times with each LOAD. It prints one MEASURE
# line per rollout; wrk is -t2 -c64 on /version, started 2 s before it.
#
#   make build && scripts/rollout-timing.sh
#   # BIN=bin RUNS=2 LOAD="idle wrk" GOSSIP_PROFILE=local HEALTH_INTERVAL=200ms
#
# It uses fixed ports (gateway 18080/17070/17946, agents 18000-18003 and
# 17071/17947 on their addresses): run it under the test lock on a shared
# machine (flock /tmp/herd-test.lock scripts/rollout-timing.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
RUNS=${RUNS:-2}
LOAD=${LOAD:-idle wrk}
HEALTH_INTERVAL=${HEALTH_INTERVAL:-200ms}
DIR=$(mktemp -d /tmp/herd-rollout-timing.XXXXXX)
LISTEN=127.0.0.1:18080
ADMIN=127.0.0.1:17070
GOSSIP=127.0.0.1:17946
HOSTS=(127.0.0.2 127.0.0.3 127.0.0.4)
export HERD_GOSSIP_PROFILE=${GOSSIP_PROFILE:-local} HERD_LOG_LEVEL=info

pids=()
stop() {
  trap - INT TERM EXIT
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    if ((i == 1)); then wait "${pids[@]:1}" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  echo "logs: $DIR"
}
trap stop INT TERM EXIT

"$BIN/gateway" run --node gateway --data-dir "$DIR/gateway" --listen "$LISTEN" --admin "$ADMIN" \
  --bind "$GOSSIP" >"$DIR/gateway.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://$ADMIN/healthz" >/dev/null && break
  sleep 0.1
done
for i in "${!HOSTS[@]}"; do
  ip=${HOSTS[$i]}
  "$BIN/agent" join --node "host-$((i + 1))" --join "$GOSSIP" --bind "$ip:17947" --admin "$ip:17071" \
    --runtime process --images-dir "$BIN/images" --image predictor:1.0.0 --replicas 4 --base-port 18000 \
    --health-interval "$HEALTH_INTERVAL" --data-dir "$DIR/host-$((i + 1))" >"$DIR/host-$((i + 1)).log" 2>&1 &
  pids+=($!)
done

backends() { "$BIN/clusterctl" --addr "$ADMIN" backends --json 2>/dev/null | grep -c '"addr"' || true; }
for _ in $(seq 1 300); do
  [[ "$(backends)" -ge 12 ]] && break
  sleep 0.1
done
[[ "$(backends)" -ge 12 ]] || { echo "the cluster did not reach 12 backends; logs: $DIR"; exit 1; }
sleep 1

image=predictor:1.1.0
for run in $(seq 1 "$RUNS"); do
  for load in $LOAD; do
    wrk_pid=
    if [[ "$load" == wrk ]]; then
      wrk -t2 -c64 -d120s "http://$LISTEN/version" >"$DIR/wrk-$run.log" 2>&1 &
      wrk_pid=$!
      sleep 2
    fi
    began=$(date +%s.%N)
    "$BIN/clusterctl" --addr "$ADMIN" rollout --min-healthy 1s --deadline 30s "$image" >"$DIR/rollout-$run-$load.log" 2>&1 ||
      { echo "rollout to $image failed:"; cat "$DIR/rollout-$run-$load.log"; exit 1; }
    ended=$(date +%s.%N)
    if [[ -n "$wrk_pid" ]]; then kill -INT "$wrk_pid" 2>/dev/null || true; wait "$wrk_pid" || true; fi
    printf 'MEASURE rollout 3×4 → %s, --min-healthy 1s, %s (%s gossip, %s health checks): %.1f s\n' \
      "$image" "$load" "$HERD_GOSSIP_PROFILE" "$HEALTH_INTERVAL" "$(echo "$ended - $began" | bc)"
    if [[ "$image" == predictor:1.1.0 ]]; then image=predictor:1.0.0; else image=predictor:1.1.0; fi
    sleep 1
  done
done
