#!/usr/bin/env bash
# A host VM: Docker, the predictor images built FROM scratch from the
# release's binaries (nothing is pulled), and the agent under systemd.
set -euo pipefail
# shellcheck source=vagrant/install-herd.sh
source /vagrant/vagrant/install-herd.sh

if ! command -v dockerd >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io
fi
mkdir -p /etc/docker
# Containers keep running while the engine restarts (an upgrade).
echo '{"live-restore": true}' >/etc/docker/daemon.json
systemctl restart docker

install_herd

for version in 1.0.0 1.1.0; do
  ctx=$(mktemp -d)
  cp "/vagrant/dist/linux_${HERD_ARCH}/predictor-$version" "$ctx/predictor"
  cp /vagrant/examples/predictor/Dockerfile "$ctx/"
  DOCKER_BUILDKIT=0 docker build -q -t "predictor:$version" "$ctx" >/dev/null
  rm -rf "$ctx"
  echo "image predictor:$version built"
done

write_env /etc/herd/agent.env \
  "HERD_NODE=$(hostname)" \
  "HERD_BIND=${HERD_IP:?}:7946" \
  "HERD_HOST_IP=${HERD_IP}" \
  "HERD_JOIN=${HERD_JOIN:?}" \
  "HERD_ENCRYPT=${HERD_ENCRYPT:?}" \
  "HERD_RUNTIME=docker" \
  "HERD_IMAGE=predictor:1.0.0" \
  "HERD_REPLICAS=${HERD_REPLICAS:-4}" \
  "HERD_DATA_DIR=/var/lib/herd"
systemctl enable herd-agent
systemctl restart herd-agent
echo "agent started: $(hostname), ${HERD_REPLICAS:-4} replicas on ${HERD_IP}:8000-"
