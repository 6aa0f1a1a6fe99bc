#!/usr/bin/env bash
# Shared by the provisioning scripts: installs the release binaries from
# /vagrant/dist (checked against SHA256SUMS) and the systemd units.
set -euo pipefail

install_herd() {
  local dist=/vagrant/dist
  local dir="linux_${HERD_ARCH:?}"
  (cd "$dist" && grep " $dir/" SHA256SUMS | sha256sum --check --quiet)
  install -m 0755 "$dist/$dir/gateway" "$dist/$dir/agent" "$dist/$dir/clusterctl" /usr/local/bin/
  install -m 0644 /vagrant/examples/systemd/herd-gateway.service /vagrant/examples/systemd/herd-agent.service \
    /etc/systemd/system/
  install -d -m 0750 /etc/herd
  systemctl daemon-reload
}

# write_env FILE NAME=VALUE...: an EnvironmentFile readable by root only (it
# holds the gossip key and the token).
write_env() {
  local file=$1
  shift
  umask 077
  printf '%s\n' "$@" >"$file"
}
