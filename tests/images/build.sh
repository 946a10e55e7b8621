#!/usr/bin/env bash
# Build the local images the end-to-end tests deploy, tagged with the exact
# references desired-state/ pins (Docker Hub and ghcr.io are unreachable on
# the test machine, so these are local stand-ins; see README.md).
#
#   tests/images/build.sh [--force] [IMAGE...]
#
# IMAGE is one of: debian open-webui ollama caddy prometheus server-trixie
# server-bookworm server-bullseye
# (default: all, in that order). An image whose inputs label is current is
# skipped unless --force is given.
# Caches live in ${LANAI_TEST_CACHE:-/var/cache/lanai-test}:
#   rootfs-bookworm/         debootstrap of Debian 12 (deb.debian.org)
#   wheels/                  pip download of open-webui + CPU torch (PyPI)
#   rootfs-server-<suite>/   debootstrap of a clean server (systemd, sshd, sudo)
#   caddy/                   Debian's caddy package, when the caddy 2.6.2 binary is
#                            not installed here (apt-get download)
#   prometheus/              Debian's prometheus package, when its 2.42.0 binaries are
#                            not installed here (apt-get download)
# Nothing else is downloaded.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_TESTS="$(cd "$HERE/.." && pwd)"
CACHE="${LANAI_TEST_CACHE:-/var/cache/lanai-test}"
DEBIAN_MIRROR="${LANAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

OPEN_WEBUI_VERSION=0.12.4
TORCH_VERSION=2.13.0
OLLAMA_VERSION=0.24.0

DEBIAN_TAG=lanai-test/debian:bookworm
OPEN_WEBUI_TAG=ghcr.io/open-webui/open-webui:v${OPEN_WEBUI_VERSION}
OLLAMA_TAG=ollama/ollama:${OLLAMA_VERSION}
CADDY_VERSION=2.6.2
CADDY_TAG=caddy:${CADDY_VERSION}
# The example pins Prometheus 3.5.0; Debian 12 packages 2.42.0 (tests/images/prometheus).
PROMETHEUS_DEBIAN_VERSION=2.42.0
PROMETHEUS_TAG=prom/prometheus:v3.5.0
OPEN_WEBUI_BUILD_TAG=lanai-test/open-webui-build:tmp
# Clean servers for bootstrap.sh to manage over SSH (tests/images/server):
# trixie and bookworm are supported, bullseye exists only to be refused.
SERVER_IMAGE=lanai-test/server
SERVER_ROOTFS_IMAGE=lanai-test/server-rootfs

# Docker CLI 28 talks to a 20.10 engine here and there is no buildx plugin:
# use the classic builder explicitly.
export DOCKER_BUILDKIT=0

FORCE=0
TARGETS=()

usage() {
  sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

log() { printf '%s\n' "$*" >&2; }
die() { log "build.sh: $*"; exit 1; }

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# What an image is built from, hashed: an image built from other inputs (an older
# Ollama double, say) is rebuilt even though its tag exists.
inputs_of() {
  case $1 in
    debian) printf 'debian bookworm minbase python3 curl\n' ;;
    open-webui) printf '%s %s\n' "$OPEN_WEBUI_VERSION" "$TORCH_VERSION"
                cat "$HERE/open-webui/Dockerfile" "$HERE/open-webui/start.sh" ;;
    caddy) printf '%s\n' "$CADDY_VERSION"; cat "$HERE/caddy/Dockerfile" ;;
    prometheus) printf '%s\n' "$PROMETHEUS_DEBIAN_VERSION"; cat "$HERE/prometheus/Dockerfile" ;;
    ollama) cat "$HERE/ollama/Dockerfile"
            find "$REPO_TESTS/ollama_double" -type f ! -path '*/__pycache__/*' -print0 \
              | sort -z | xargs -0 cat ;;
    server-*) printf '%s %s\n' "${1#server-}" "$(server_include "${1#server-}")"
              (cd "$HERE/server" && find . -type f ! -name '*.md' | LC_ALL=C sort \
                 | while IFS= read -r f; do printf '%s\n' "$f"; cat "$f"; done) ;;
  esac | sha256sum | cut -c1-16
}
INPUTS_LABEL=io.lanai.test-inputs
image_current() {
  [ "$(docker image inspect -f "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$1" \
      2>/dev/null)" = "$2" ]
}

# docker build, quiet unless it fails (then the end of its log is shown).
docker_build() {
  local log="$CACHE/last-build.log"
  mkdir -p "$CACHE"
  if ! docker build "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "docker build $* failed (full log: $log)"
  fi
}

# Prints "<tag>: <what> in <N>s" for one image.
report() {
  local tag=$1 what=$2 started=$3
  printf '%s: %s in %ss\n' "$tag" "$what" "$(( $(date +%s) - started ))"
}

ensure_rootfs() {
  local rootfs="$CACHE/rootfs-bookworm"
  if [ -x "$rootfs/usr/bin/python3" ] && [ -x "$rootfs/usr/bin/curl" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is needed (apt-get install debootstrap)"
  log "debootstrap bookworm into $rootfs (about a minute)"
  local tmp="$CACHE/rootfs-bookworm.partial"
  rm -rf "$tmp"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,curl \
    bookworm "$tmp" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  rm -rf "$rootfs"
  mv "$tmp" "$rootfs"
}

ensure_wheels() {
  local wheels="$CACHE/wheels"
  if compgen -G "$wheels/open_webui-${OPEN_WEBUI_VERSION}-*.whl" >/dev/null \
    && compgen -G "$wheels/torch-${TORCH_VERSION}*.whl" >/dev/null \
    && compgen -G "$wheels/async_timeout-*.whl" >/dev/null; then
    return 0
  fi
  log "pip download open-webui==$OPEN_WEBUI_VERSION torch==$TORCH_VERSION into $wheels (several minutes)"
  local tmp="$CACHE/wheels.partial"
  mkdir -p "$tmp"  # kept across failures: pip skips what it already has
  # async-timeout: redis needs it below Python 3.11.3, a marker pip cannot
  # evaluate from --python-version, and Debian 12 has 3.11.2.
  python3 -m pip download -d "$tmp" \
    --python-version 3.11.2 --only-binary=:all: --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 --platform linux_x86_64 --platform any \
    "torch==${TORCH_VERSION}" "open-webui==${OPEN_WEBUI_VERSION}" async-timeout \
    >"$CACHE/pip-download.log" 2>&1 \
    || { tail -n 20 "$CACHE/pip-download.log" >&2; die "pip download failed (log: $CACHE/pip-download.log)"; }
  rm -rf "$wheels"
  mv "$tmp" "$wheels"
}

# debootstrap --include for each server suite.
server_include() {
  case $1 in
    trixie|bookworm) printf '%s\n' systemd,systemd-sysv,dbus,openssh-server,sudo,python3,python3-venv,ca-certificates,iproute2,procps,curl,git,less ;;
    bullseye) printf '%s\n' systemd,systemd-sysv,dbus,openssh-server,sudo,python3 ;;
    *) die "no package list for server suite $1" ;;
  esac
}

# debootstrap of a server suite, kept in the cache with the package list it was
# made from beside it: a different list makes it again.
ensure_server_rootfs() {
  local suite=$1 include rootfs started
  include=$(server_include "$suite")
  rootfs="$CACHE/rootfs-server-$suite"
  if [ -x "$rootfs/sbin/init" ] && [ "$(cat "$rootfs.include" 2>/dev/null)" = "$include" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || die "debootstrap is needed (apt-get install debootstrap)"
  log "debootstrap $suite into $rootfs (about a minute)"
  started=$(date +%s)
  local tmp="$rootfs.partial"
  rm -rf "$tmp" "$rootfs.include"
  mkdir -p "$CACHE"
  debootstrap --variant=minbase --include="$include" \
    "$suite" "$tmp" "$DEBIAN_MIRROR" >"$CACHE/debootstrap-$suite.log" 2>&1 \
    || { tail -n 20 "$CACHE/debootstrap-$suite.log" >&2
         die "debootstrap failed (log: $CACHE/debootstrap-$suite.log)"; }
  rm -rf "$rootfs"
  mv "$tmp" "$rootfs"
  printf '%s\n' "$include" >"$rootfs.include"
  report "$rootfs" debootstrapped "$started"
}

# The imported root file system, then tests/images/server/Dockerfile on top
# (users, sshd, sudo, units). The intermediate tag is removed afterwards.
build_server() {
  local suite=$1 started tag
  tag="$SERVER_IMAGE:$suite"
  started=$(date +%s)
  ensure_server_rootfs "$suite"
  local import_started
  import_started=$(date +%s)
  import_rootfs "$CACHE/rootfs-server-$suite" "$SERVER_ROOTFS_IMAGE:$suite"
  report "$SERVER_ROOTFS_IMAGE:$suite" imported "$import_started"
  docker_build --build-arg "BASE=$SERVER_ROOTFS_IMAGE:$suite" \
    --label "io.lanai.test-image=server-$suite-debootstrap" --label "$LABEL_ARG" \
    -t "$tag" "$HERE/server"
  docker image rm "$SERVER_ROOTFS_IMAGE:$suite" >/dev/null
  report "$tag" built "$started"
}
build_server_trixie() { build_server trixie; }
build_server_bookworm() { build_server bookworm; }
build_server_bullseye() { build_server bullseye; }

# import_rootfs DIR TAG [docker import options]: a debootstrap tree as an image. Tar
# from the cache without touching it; leave out apt lists, downloaded .debs and
# the kernel file systems to keep the image small.
import_rootfs() {
  local dir=$1 tag=$2
  shift 2
  tar -C "$dir" \
    --exclude='./var/lib/apt/lists/*' \
    --exclude='./var/cache/apt/*' \
    --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    --exclude='./tmp/*' --exclude='./run/*' \
    --numeric-owner -cf - . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$@" - "$tag" >/dev/null
}

build_debian() {
  local started
  started=$(date +%s)
  ensure_rootfs
  import_rootfs "$CACHE/rootfs-bookworm" "$DEBIAN_TAG" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL io.lanai.test-image=debian-bookworm-debootstrap' \
    --change "LABEL $INPUTS_LABEL=$(inputs_of debian)" \
    --change 'CMD ["/bin/bash"]'
  report "$DEBIAN_TAG" built "$started"
}

build_open_webui() {
  local started ctx
  started=$(date +%s)
  ensure_wheels
  image_exists "$DEBIAN_TAG" || die "$DEBIAN_TAG is missing (build 'debian' first)"
  # A context holding only what the image needs; hard links into the cache
  # when it is on the same file system, copies otherwise.
  mkdir -p "$CACHE"
  ctx=$(mktemp -d "$CACHE/open-webui-context.XXXXXX")
  # shellcheck disable=SC2064  # expand now: ctx is local
  trap "rm -rf '$ctx'" EXIT
  cp "$HERE/open-webui/Dockerfile" "$HERE/open-webui/start.sh" "$ctx/"
  cp -al "$CACHE/wheels" "$ctx/wheels" 2>/dev/null \
    || { rm -rf "$ctx/wheels"; cp -a "$CACHE/wheels" "$ctx/wheels"; }
  # Classic builder: the build stage (wheels + venv, ~4 GB) would stay
  # behind as an untagged image, so tag it, and remove it afterwards.
  local build_args=(
    --build-arg "OPEN_WEBUI_VERSION=$OPEN_WEBUI_VERSION"
    --build-arg "TORCH_VERSION=$TORCH_VERSION"
    --build-arg "BASE=$DEBIAN_TAG"
  )
  docker_build "${build_args[@]}" --target build \
    -t "$OPEN_WEBUI_BUILD_TAG" "$ctx"
  docker_build "${build_args[@]}" --label "$LABEL_ARG" -t "$OPEN_WEBUI_TAG" "$ctx"
  docker image rm "$OPEN_WEBUI_BUILD_TAG" >/dev/null
  rm -rf "$ctx"
  trap - EXIT
  report "$OPEN_WEBUI_TAG" built "$started"
}

build_ollama() {
  local started
  started=$(date +%s)
  image_exists "$DEBIAN_TAG" || die "$DEBIAN_TAG is missing (build 'debian' first)"
  docker_build --build-arg "BASE=$DEBIAN_TAG" --label "$LABEL_ARG" \
    -f "$HERE/ollama/Dockerfile" \
    -t "$OLLAMA_TAG" "$REPO_TESTS/ollama_double"
  report "$OLLAMA_TAG" built "$started"
}

# Copy BIN... of Debian's PACKAGE whose version starts with VERSION into CTX, from the
# package's .deb, downloaded once into the cache (when this machine has another release).
deb_binaries() {
  local package=$1 version=$2 ctx=$3 dir deb bin
  shift 3
  dir="$CACHE/$package"
  mkdir -p "$dir"
  deb=$(find "$dir" -maxdepth 1 -name "${package}_${version}*.deb" | head -n 1)
  if [ -z "$deb" ]; then
    (cd "$dir" && apt-get download "$package=$(apt-cache madison "$package" |
      awk -v v="$version" '$3 ~ "^"v {print $3; exit}')") >&2 ||
      die "cannot download Debian's $package ${version%-} package (apt-get update first?)"
    deb=$(find "$dir" -maxdepth 1 -name "${package}_${version}*.deb" | head -n 1)
  fi
  for bin; do
    dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/bin/$bin" >"$ctx/$bin"
  done
}

build_caddy() {
  local started ctx
  started=$(date +%s)
  image_exists "$DEBIAN_TAG" || die "$DEBIAN_TAG is missing (build 'debian' first)"
  ctx=$(mktemp -d)
  # Debian's caddy package (tests/run installs it) is the same release the example pins.
  if command -v caddy >/dev/null && [[ $(caddy version) == "$CADDY_VERSION"* ]]; then
    cp "$(command -v caddy)" "$ctx/caddy"
  else
    deb_binaries caddy "${CADDY_VERSION}-" "$ctx" caddy
  fi
  chmod 0755 "$ctx/caddy"
  cp "$HERE/caddy/Dockerfile" "$ctx/"
  docker_build --build-arg "BASE=$DEBIAN_TAG" --label "$LABEL_ARG" -t "$CADDY_TAG" "$ctx"
  rm -rf "$ctx"
  report "$CADDY_TAG" built "$started"
}

build_prometheus() {
  local started ctx
  started=$(date +%s)
  image_exists "$DEBIAN_TAG" || die "$DEBIAN_TAG is missing (build 'debian' first)"
  ctx=$(mktemp -d)
  # Debian's prometheus package (tests/run installs it for promtool) has both binaries.
  if command -v prometheus >/dev/null \
    && [[ $(prometheus --version 2>&1) == "prometheus, version $PROMETHEUS_DEBIAN_VERSION"* ]]; then
    cp "$(command -v prometheus)" "$(command -v promtool)" "$ctx/"
  else
    deb_binaries prometheus "$PROMETHEUS_DEBIAN_VERSION" "$ctx" prometheus promtool
  fi
  chmod 0755 "$ctx/prometheus" "$ctx/promtool"
  cp "$HERE/prometheus/Dockerfile" "$ctx/"
  docker_build --build-arg "BASE=$DEBIAN_TAG" --label "$LABEL_ARG" -t "$PROMETHEUS_TAG" "$ctx"
  rm -rf "$ctx"
  report "$PROMETHEUS_TAG" built "$started"
}

main() {
  while [ $# -gt 0 ]; do
    case $1 in
      --force) FORCE=1 ;;
      -h|--help) usage; exit 0 ;;
      debian|open-webui|ollama|caddy|prometheus|server-trixie|server-bookworm|server-bullseye)
        TARGETS+=("$1") ;;
      *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
  done
  [ ${#TARGETS[@]} -gt 0 ] || TARGETS=(debian open-webui ollama caddy prometheus server-trixie
    server-bookworm server-bullseye)
  docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine"

  local target tag started
  for target in "${TARGETS[@]}"; do
    case $target in
      debian) tag=$DEBIAN_TAG ;;
      open-webui) tag=$OPEN_WEBUI_TAG ;;
      ollama) tag=$OLLAMA_TAG ;;
      caddy) tag=$CADDY_TAG ;;
      prometheus) tag=$PROMETHEUS_TAG ;;
      server-*) tag=$SERVER_IMAGE:${target#server-} ;;
    esac
    started=$(date +%s)
    LABEL_ARG="$INPUTS_LABEL=$(inputs_of "$target")"
    if [ "$FORCE" = 0 ] && image_current "$tag" "${LABEL_ARG#*=}"; then
      report "$tag" "up to date, skipped" "$started"
      continue
    fi
    # A missing base is built first, even when only a child was asked for.
    if [[ $target == @(open-webui|ollama|caddy|prometheus) ]] && ! image_exists "$DEBIAN_TAG"; then
      build_debian
    fi
    "build_${target//-/_}"
  done
}

main "$@"
