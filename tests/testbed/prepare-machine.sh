#!/usr/bin/env bash
# Make this machine able to run the test bed: root, disk, Debian packages, a running dockerd.
# Idempotent; says what is missing and what to do when it cannot fix it itself.
set -euo pipefail
say() { echo "[machine] $*"; }
die() { echo "[machine] error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: it installs Debian packages and starts dockerd. Run as root (sudo make ...)."

need_gib=${LLMSERVE_NEED_DISK_GIB:-15}
free_kib=$(df -Pk /var/lib | awk 'NR==2 {print $4}')
[ "$free_kib" -ge $((need_gib * 1024 * 1024)) ] || die "only $((free_kib / 1024 / 1024)) GiB free under /var/lib; \
the test bed needs about ${need_gib} GiB (images, registry, each host's Docker). Free disk space and retry."

pkgs=(docker.io debootstrap openssl openssh-client apache2-utils curl iproute2)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed: the Debian mirror is not reachable"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

# dockerd from docker.io, started by hand where there is no systemd.
if ! docker info >/dev/null 2>&1; then
  log=${LLMSERVE_DOCKERD_LOG:-/var/log/llmserve-dockerd.log}
  say "starting dockerd (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  pid=$!
  # poll until it answers; stop at once if it died
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || die "dockerd did not start; last lines of $log:
$(tail -n 15 "$log")"
fi
say "ready: $(docker version --format 'docker {{.Server.Version}}, storage' 2>/dev/null) $(docker info --format '{{.Driver}}')"
