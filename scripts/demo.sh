#!/usr/bin/env bash
# A local Herd cluster on loopback: one gateway on 127.0.0.1 and three agents
# on 127.0.0.2-4 ("hosts"), each running 4 predictor replicas through the
# process runtime. Ctrl-C stops everything in order.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DEMO_DIR=${DEMO_DIR:-.demo}
LISTEN=${DEMO_LISTEN:-127.0.0.1:8080}
ADMIN=${DEMO_ADMIN:-127.0.0.1:7070}
REPLICAS=${DEMO_REPLICAS:-4}
HOSTS=(127.0.0.2 127.0.0.3 127.0.0.4)

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
key=$("$BIN/clusterctl" keygen)
(umask 077 && echo "$key" >"$DEMO_DIR/gossip.key")
export HERD_ENCRYPT="$key" HERD_GOSSIP_PROFILE=local HERD_LOG_LEVEL=${HERD_LOG_LEVEL:-info}

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping: agents first (they drain, leave, then stop their replicas), then the gateway"
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    if ((i == 1)); then wait "${pids[@]:1}" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  echo "stopped. Logs are in $DEMO_DIR/"
}
trap stop INT TERM EXIT

setsid "$BIN/gateway" run --node gateway --data-dir "$DEMO_DIR/gateway" --listen "$LISTEN" --admin "$ADMIN" --bind 127.0.0.1:7946 \
  >"$DEMO_DIR/gateway.log" 2>&1 &
pids+=($!)

for i in "${!HOSTS[@]}"; do
  ip=${HOSTS[$i]}
  n=$((i + 1))
  setsid "$BIN/agent" join --node "host-$n" --join 127.0.0.1:7946 --bind "$ip:7946" --admin "$ip:7071" \
    --runtime process --images-dir "$BIN/images" --image predictor:1.0.0 --replicas "$REPLICAS" \
    --data-dir "$DEMO_DIR/host-$n" >"$DEMO_DIR/host-$n.log" 2>&1 &
  pids+=($!)
done

want=$((REPLICAS * ${#HOSTS[@]}))
printf 'starting a gateway and %d agents × %d replicas ' "${#HOSTS[@]}" "$REPLICAS"
for _ in $(seq 1 150); do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo; echo "a process exited early; its log:"; tail -n 20 "$DEMO_DIR"/*.log; exit 1
    fi
  done
  have=$("$BIN/clusterctl" --addr "$ADMIN" backends --json 2>/dev/null | grep -c '"addr"' || true)
  [[ "$have" -ge "$want" ]] && break
  printf '.'
  sleep 0.2
done
echo " ready: $have backends"
echo
"$BIN/clusterctl" --addr "$ADMIN" members
echo
cat <<EOF
Send traffic through the gateway at http://$LISTEN :
  curl -s http://$LISTEN/version
  curl -s -X POST http://$LISTEN/predict -d '{"text":"I love this, it is wonderful"}'
  for i in \$(seq 12); do curl -s http://$LISTEN/version; done   # round robin over all $want replicas

Inspect the cluster:
  $BIN/clusterctl --addr $ADMIN members
  $BIN/clusterctl --addr $ADMIN backends
  $BIN/clusterctl --addr $ADMIN rollout predictor:1.1.0
Dashboard: http://$ADMIN/
Gossip key: $DEMO_DIR/gossip.key (HERD_ENCRYPT for clusterctl keys, docs/operations.md)

Logs: $DEMO_DIR/*.log      Stop: Ctrl-C
EOF
wait
