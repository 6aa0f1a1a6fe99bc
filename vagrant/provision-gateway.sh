#!/usr/bin/env bash
# The gateway VM: gateway on :80, admin API on the private network with the
# generated token, gossip key from the Vagrantfile.
set -euo pipefail
# shellcheck source=vagrant/install-herd.sh
source /vagrant/vagrant/install-herd.sh

install_herd
write_env /etc/herd/gateway.env \
  "HERD_NODE=gateway" \
  "HERD_LISTEN=:80" \
  "HERD_BIND=${HERD_IP:?}:7946" \
  "HERD_ADMIN=${HERD_IP}:7070" \
  "HERD_TOKEN=${HERD_TOKEN:?}" \
  "HERD_ENCRYPT=${HERD_ENCRYPT:?}" \
  "HERD_DATA_DIR=/var/lib/herd"
systemctl enable herd-gateway
systemctl restart herd-gateway

# clusterctl in a login shell reaches this gateway with the token.
cat >/etc/profile.d/herd.sh <<PROFILE
export HERD_ADDR=http://${HERD_IP}:7070
export HERD_TOKEN=${HERD_TOKEN}
PROFILE
chmod 0644 /etc/profile.d/herd.sh

# Ready when the admin API answers (clusterctl: the box may have no curl).
export HERD_TOKEN
for _ in $(seq 1 50); do
  if HERD_ADDR=http://${HERD_IP}:7070 clusterctl members >/dev/null 2>&1; then
    echo "gateway up: http://${HERD_IP}/ (dashboard http://${HERD_IP}:7070/?token=...)"
    exit 0
  fi
  sleep 0.2
done
journalctl -u herd-gateway --no-pager | tail -n 20
exit 1
