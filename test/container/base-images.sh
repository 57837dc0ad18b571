#!/usr/bin/env bash
# Local stand-ins for the public base images, for machines that reach the Debian and npm
# registries but no container registry: a minbase Debian bookworm (debootstrap) for
# debian:bookworm-slim, and this machine's Node.js 20 laid out as in node:20-bookworm-slim.
# Prints the two image names. Cached in podman's store; rebuilt only when missing.
set -euo pipefail
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}
base=localhost/dnspacer-debian:bookworm
node=localhost/dnspacer-node:20

if ! podman image exists "$base"; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 || { cat "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  # the same sources as the public image, security updates included
  printf 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

if ! podman image exists "$node"; then
  [[ $(node --version) == v20.* ]] || { echo "test/container: Node.js 20 is needed on this machine to build $node" >&2; exit 1; }
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  mkdir -p "$stage/usr/local/bin" "$stage/usr/local/lib/node_modules" "$stage/usr/local/include"
  cp "$(readlink -f "$(command -v node)")" "$stage/usr/local/bin/node"
  cp -r "$(npm root -g)/npm" "$stage/usr/local/lib/node_modules/npm"
  headers=$(dirname "$(readlink -f "$(command -v node)")")/../include/node
  cp -r "$headers" "$stage/usr/local/include/node"
  tar -C "$stage" -c . | podman import --quiet - "$node" >/dev/null
  rm -rf "$stage"
  trap - EXIT
fi
echo "$base $node"
