#!/usr/bin/env bash
# A private Docker engine for the tests: its own socket, data-root and
# exec-root under DIR, vfs storage, no iptables, --live-restore.
#   test-dockerd.sh start DIR     start it (installing docker.io if missing); wait until it answers
#   test-dockerd.sh stop DIR      SIGTERM, wait, unmount anything left
#   test-dockerd.sh restart DIR   stop then start (keeps containers with --live-restore)
# Its socket is unix://DIR/docker.sock.
set -euo pipefail
cmd=${1:?usage: test-dockerd.sh start|stop|restart DIR}
dir=${2:?usage: test-dockerd.sh start|stop|restart DIR}
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"

install() {
  command -v dockerd >/dev/null && return 0
  local sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  echo "installing Debian's docker.io for the Docker tests" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io >/dev/null
}

stop() {
  [[ -f $pidfile ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "dockerd $pid did not stop in 30 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
    fi
  fi
  rm -f "$pidfile"
  # A killed daemon leaves mounts behind: unmount, deepest first.
  { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

start() {
  install
  mkdir -p "$dir"
  stop
  # Containers from an earlier run are not adopted by these tests; start clean
  # unless asked to keep them (restart).
  dockerd --storage-driver=vfs --iptables=false --ip-forward=false --ip-masq=false --ip6tables=false \
    --live-restore -H "unix://$sock" --data-root "$dir/data" --exec-root "$dir/exec" \
    --pidfile "$pidfile" >>"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 300); do
    if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then
      echo "dockerd ready at unix://$sock" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "dockerd did not answer at unix://$sock in 30 s; its log:" >&2
  tail -n 20 "$dir/dockerd.log" >&2
  return 1
}

case $cmd in
start) start ;;
stop) stop ;;
restart) stop; start ;;
*) echo "usage: test-dockerd.sh start|stop|restart DIR" >&2; exit 2 ;;
esac
