# shellcheck shell=bash
# packaging/apt-repos.sh: Docker's and NVIDIA's apt repositories, the NVIDIA Container
# Toolkit, and the driver advice, as functions for bootstrap.sh (`source` this file).
#
# Two kinds of function:
#   - renderers print a file's content or a plan (one shell command per line; lines
#     starting with # are comments). They read nothing and change nothing, so their
#     output is tested as exact strings (tests/unit/test_apt_repos.py).
#   - runners (apply_plan, gpu_container_check, docker_conflicts_installed,
#     daemon_json_set) act on the machine.
# On bad input a function prints one sentence to stderr and returns 1.
#
# Sources, read when this was written:
#   - Docker: docs.docker.com/engine/install/ubuntu/ and .../debian/ ("Install using
#     the apt repository"): the key in /etc/apt/keyrings/docker.asc, a deb822
#     /etc/apt/sources.list.d/docker.sources with Signed-By, the five packages.
#   - NVIDIA Container Toolkit: docs.nvidia.com/datacenter/cloud-native/container-toolkit/
#     latest/install-guide.html ("With apt: Ubuntu, Debian"): the keyring in
#     /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg, the stable/deb list,
#     `nvidia-ctk runtime configure --runtime=docker`, `systemctl restart docker`.
#     The retired nvidia-docker repository and nvidia-docker2 are not used.
#   - "Failed to initialize NVML: Unknown Error": github.com/NVIDIA/nvidia-docker/issues/1730
#     and the toolkit's troubleshooting page (see nvml_prevention_plan).
# apt-key is never used: it is deprecated and gone from current Debian and Ubuntu.
# Nothing here handles secrets, so plans are logged as they are.

APT_KEYRINGS_DIR=/etc/apt/keyrings
APT_SOURCES_DIR=/etc/apt/sources.list.d
DOCKER_APT_KEY=$APT_KEYRINGS_DIR/docker.asc
DOCKER_APT_SOURCE=$APT_SOURCES_DIR/docker.sources
DOCKER_PACKAGES=(docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin)
NVIDIA_CTK_KEY_URL=https://nvidia.github.io/libnvidia-container/gpgkey
NVIDIA_CTK_KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
NVIDIA_CTK_LIST=$APT_SOURCES_DIR/nvidia-container-toolkit.list
NVIDIA_DEV_CHAR_RULE=/etc/udev/rules.d/71-nvidia-dev-char.rules
DOCKERD_PID_FILE=/var/run/docker.pid

# -- helpers ------------------------------------------------------------------------------

_ar_error() { printf '%s\n' "$*" >&2; }

# A word for a shell line: single-quoted unless it is plainly safe.
_ar_quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# The shell line that writes LINES... to FILE: printf '%s\n' 'line' ... >FILE
_ar_write_line() {
  local file=$1 out="printf '%s\\n'"
  shift
  while (($#)); do
    out+=" $(_ar_quote "$1")"
    shift
  done
  printf '%s >%s\n' "$out" "$file"
}

# Read a rendered file's lines (from a renderer's stdout) into the named array.
_ar_lines() {
  local -n _ar_into=$1
  shift
  local text
  text=$("$@") || return 1
  mapfile -t _ar_into <<<"$text"
}

_ar_os_id() {
  case ${1:-} in
    ubuntu | debian) return 0 ;;
  esac
  _ar_error "unsupported OS id '${1:-}': Docker's apt repository is set up here for ubuntu and debian only (derivatives such as Linux Mint are not supported by Docker)."
  return 1
}

_ar_codename() {
  [[ ${1:-} =~ ^[a-z][a-z0-9-]*$ ]] && return 0
  _ar_error "'${1:-}' is not a release codename (like noble or bookworm); read VERSION_CODENAME from /etc/os-release."
  return 1
}

# -- facts ---------------------------------------------------------------------------------

# dpkg_arch UNAME_M_OR_DPKG_ARCH: the Debian architecture name (x86_64 -> amd64,
# aarch64 -> arm64); amd64 and arm64 pass through. Others: an error.
dpkg_arch() {
  case ${1:-} in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *)
      _ar_error "architecture '${1:-}' is not supported: lanai installs Docker and the NVIDIA Container Toolkit for amd64 (x86_64) and arm64 (aarch64) only."
      return 1
      ;;
  esac
}

# os_codename [OS_RELEASE_FILE]: the apt suite of this release, as Docker's docs take
# it: UBUNTU_CODENAME, else VERSION_CODENAME. The file is read, not sourced.
os_codename() {
  local file=${1:-/etc/os-release} line key value ubuntu="" version=""
  [[ -r $file ]] || {
    _ar_error "cannot read $file, so the release codename is unknown."
    return 1
  }
  while IFS= read -r line || [[ -n $line ]]; do
    key=${line%%=*}
    value=${line#*=}
    value=${value#[\"\']}
    value=${value%[\"\']}
    case $key in
      UBUNTU_CODENAME) ubuntu=$value ;;
      VERSION_CODENAME) version=$value ;;
    esac
  done <"$file"
  value=${ubuntu:-$version}
  [[ -n $value ]] || {
    _ar_error "$file has no VERSION_CODENAME, so the release codename is unknown."
    return 1
  }
  printf '%s\n' "$value"
}

# -- Docker Engine from Docker's apt repository -------------------------------------------------

# docker_repo_source OS_ID CODENAME ARCH: the content of /etc/apt/sources.list.d/docker.sources
# (deb822, as in Docker's Ubuntu instructions; apt reads it on Debian 12/13 and Ubuntu 22.04+).
docker_repo_source() {
  local os=${1:-} codename=${2:-} arch
  _ar_os_id "$os" || return 1
  _ar_codename "$codename" || return 1
  arch=$(dpkg_arch "${3:-}") || return 1
  printf '%s\n' \
    "Types: deb" \
    "URIs: https://download.docker.com/linux/$os" \
    "Suites: $codename" \
    "Components: stable" \
    "Architectures: $arch" \
    "Signed-By: $DOCKER_APT_KEY"
}

# docker_conflicting_packages OS_ID: the distribution packages Docker's docs say to remove
# before installing docker-ce (docker-compose-v2 exists on Ubuntu only).
docker_conflicting_packages() {
  _ar_os_id "${1:-}" || return 1
  if [[ $1 == ubuntu ]]; then
    echo docker.io docker-compose docker-compose-v2 docker-doc podman-docker containerd runc
  else
    echo docker.io docker-compose docker-doc podman-docker containerd runc
  fi
}

# docker_repo_install_plan OS_ID CODENAME ARCH [INSTALLED_CONFLICT...]: the commands that set
# up Docker's apt repository and install Docker Engine with Compose v2. Conflicting packages
# that are installed (docker_conflicts_installed) are removed just before the install, so a
# failure while fetching the key or the lists leaves the old packages in place.
docker_repo_install_plan() {
  local os=${1:-} codename=${2:-} arch=${3:-} src=() conflicts
  _ar_lines src docker_repo_source "$os" "$codename" "$arch" || return 1
  shift 3
  conflicts=" $(docker_conflicting_packages "$os") "
  local pkg
  for pkg in "$@"; do
    if [[ $conflicts != *" $pkg "* ]]; then
      _ar_error "'$pkg' is not one of the packages that conflict with Docker's ($conflicts); nothing is removed that Docker's docs do not name."
      return 1
    fi
  done
  printf '%s\n' \
    "# Docker Engine from Docker's apt repository (docs.docker.com/engine/install/$os/)" \
    "apt-get update" \
    "apt-get install -y ca-certificates curl" \
    "install -m 0755 -d $APT_KEYRINGS_DIR" \
    "curl -fsSL https://download.docker.com/linux/$os/gpg -o $DOCKER_APT_KEY" \
    "chmod a+r $DOCKER_APT_KEY"
  _ar_write_line "$DOCKER_APT_SOURCE" "${src[@]}"
  echo "apt-get update"
  if (($#)); then
    echo "apt-get remove -y $*"
  fi
  echo "apt-get install -y ${DOCKER_PACKAGES[*]}"
}

# docker_conflicts_installed OS_ID: which of docker_conflicting_packages are installed here
# (one line, space-separated; empty when none). Reads dpkg's database.
docker_conflicts_installed() {
  local pkg list installed=()
  list=$(docker_conflicting_packages "${1:-}") || return 1
  for pkg in $list; do
    # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not the shell's
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      installed+=("$pkg")
    fi
  done
  echo "${installed[*]}"
}

# -- the NVIDIA Container Toolkit -----------------------------------------------------------------

# nvidia_toolkit_source: the content of /etc/apt/sources.list.d/nvidia-container-toolkit.list:
# NVIDIA's stable/deb list with signed-by added, as the install guide's sed makes it (its
# commented-out experimental line is left out). $(ARCH) is apt's own variable, kept literal.
nvidia_toolkit_source() {
  # shellcheck disable=SC2016  # $(ARCH) is for apt, not the shell
  printf 'deb [signed-by=%s] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n' \
    "$NVIDIA_CTK_KEYRING"
}

# nvidia_toolkit_install_plan [systemd|sighup]: the commands that set up NVIDIA's apt
# repository, install nvidia-container-toolkit and register its runtime with Docker
# (in /etc/docker/daemon.json, keeping the other keys), then make dockerd load it:
# `systemctl restart docker` (default), or with sighup (no systemd: dockerd started by
# hand) a SIGHUP to dockerd, which reloads daemon.json's runtimes.
# gpg gets --batch --yes so that a second run overwrites the keyring instead of asking.
nvidia_toolkit_install_plan() {
  local reload=${1:-systemd} src=()
  case $reload in
    systemd | sighup) ;;
    *)
      _ar_error "nvidia_toolkit_install_plan takes systemd or sighup (how dockerd is restarted), not '$reload'."
      return 1
      ;;
  esac
  _ar_lines src nvidia_toolkit_source || return 1
  printf '%s\n' \
    "# The NVIDIA Container Toolkit from NVIDIA's apt repository" \
    "# (docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html)" \
    "apt-get update" \
    "apt-get install -y --no-install-recommends ca-certificates curl gnupg" \
    "curl -fsSL $NVIDIA_CTK_KEY_URL | gpg --batch --yes --dearmor -o $NVIDIA_CTK_KEYRING" \
    "chmod a+r $NVIDIA_CTK_KEYRING"
  _ar_write_line "$NVIDIA_CTK_LIST" "${src[@]}"
  printf '%s\n' \
    "apt-get update" \
    "apt-get install -y nvidia-container-toolkit" \
    "nvidia-ctk runtime configure --runtime=docker"
  if [[ $reload == systemd ]]; then
    echo "systemctl restart docker"
  else
    echo "kill -HUP \"\$(cat $DOCKERD_PID_FILE)\""
  fi
}

# nvml_udev_rule: the content of $NVIDIA_DEV_CHAR_RULE that nvml_prevention_plan writes.
nvml_udev_rule() {
  printf '%s\n' \
    "# Written by bootstrap.sh (lanai): /dev/char symlinks for the NVIDIA device nodes, so" \
    "# that containers keep their GPU after \`systemctl daemon-reload\` (NVIDIA/nvidia-docker#1730)." \
    'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"'
}

# nvml_prevention_plan: the documented prevention of containers losing their GPU with
# "Failed to initialize NVML: Unknown Error" (needs nvidia-ctk, so after the toolkit).
nvml_prevention_plan() {
  local rule=()
  _ar_lines rule nvml_udev_rule || return 1
  printf '%s\n' \
    "# Prevent \"Failed to initialize NVML: Unknown Error\" in GPU containers. With Docker's" \
    "# systemd cgroup driver (the default on cgroup v2: Debian 12/13, Ubuntu 22.04/24.04), runc" \
    "# needs /dev/char symlinks to the device nodes it injects; the NVIDIA driver does not" \
    "# create them, so \`systemctl daemon-reload\` cuts running containers off their GPU." \
    "# NVIDIA's fix: create the symlinks now and from a udev rule at every boot." \
    "# https://github.com/NVIDIA/nvidia-docker/issues/1730 and" \
    "# https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/troubleshooting.html" \
    "# (NVIDIA suggests /lib/udev/rules.d; /etc/udev/rules.d is the place for local rules.)" \
    "# The other documented way, Docker's cgroupfs driver (daemon.json \"exec-opts\":" \
    "# [\"native.cgroupdriver=cgroupfs\"]), changes every container's cgroups and is not used." \
    "nvidia-ctk system create-dev-char-symlinks --create-all" \
    "install -m 0755 -d ${NVIDIA_DEV_CHAR_RULE%/*}"
  _ar_write_line "$NVIDIA_DEV_CHAR_RULE" "${rule[@]}"
}

# gpu_container_proof_command IMAGE: the command that proves a container sees the GPU.
# The toolkit mounts the host's nvidia-smi into the container, so any image works; the
# entrypoint is replaced because images like ollama/ollama have their own. The image must
# be one the server has or can pull (the Ollama image of the state repo is a good choice:
# the first reconcile pulls it anyway).
gpu_container_proof_command() {
  local image=${1:-}
  if [[ -z $image || $image == -* || $image =~ [[:space:]] ]]; then
    _ar_error "gpu_container_proof_command needs an image reference (like ollama/ollama:0.24.0), not '$image'."
    return 1
  fi
  echo "docker run --rm --gpus all --entrypoint nvidia-smi $image --query-gpu=name --format=csv,noheader"
}

# gpu_container_check IMAGE: run the proof. Prints the GPU names the container sees
# ("; "-separated) and returns 0; else prints why to stderr and returns 1.
gpu_container_check() {
  local command out rc=0 names
  command=$(gpu_container_proof_command "${1:-}") || return 1
  out=$(bash -c "$command" 2>&1) || rc=$?
  names=$(grep -v '^[[:space:]]*$' <<<"$out" | paste -sd ';' | sed 's/;/; /g')
  if ((rc != 0)); then
    _ar_error "a container could not use the GPU: \`$command\` exited $rc: $(grep -v '^[[:space:]]*$' <<<"$out" | tail -n 1)"
    return 1
  fi
  if [[ -z $names || $out == *"Failed to initialize NVML"* ]]; then
    _ar_error "a container could not use the GPU: \`$command\` printed no GPU name${out:+ ($out)}."
    return 1
  fi
  printf '%s\n' "$names"
}

# gpu_swarm_proof_command IMAGE UUID: the command that proves a container gets a GPU the
# way Docker Swarm gives it on a node set up for it (reconciler/setup/swarm_node.py): no
# --gpus (swarm services have none), the default runtime (nvidia), the GPU named in
# DOCKER_RESOURCE_GPU as swarm sets it, and NVIDIA_VISIBLE_DEVICES=void, so that the GPU
# shows only when the toolkit takes swarm's variable (swarm-resource in its config.toml).
gpu_swarm_proof_command() {
  local image=${1:-} uuid=${2:-}
  if [[ -z $image || $image == -* || $image =~ [[:space:]] ]]; then
    _ar_error "gpu_swarm_proof_command needs an image reference (like ollama/ollama:0.24.0), not '$image'."
    return 1
  fi
  if [[ ! $uuid =~ ^GPU-[0-9A-Fa-f-]+$ ]]; then
    _ar_error "gpu_swarm_proof_command needs a GPU UUID as \`nvidia-smi -L\` prints it (GPU-...), not '$uuid'."
    return 1
  fi
  echo "docker run --rm -e NVIDIA_VISIBLE_DEVICES=void -e DOCKER_RESOURCE_GPU=$uuid --entrypoint nvidia-smi $image --query-gpu=uuid,name --format=csv,noheader"
}

# gpu_swarm_check IMAGE UUID: run that proof. Prints the GPU the container sees and returns
# 0 when it is exactly UUID; else prints why to stderr and returns 1.
gpu_swarm_check() {
  local command out rc=0
  command=$(gpu_swarm_proof_command "${1:-}" "${2:-}") || return 1
  out=$(bash -c "$command" 2>&1) || rc=$?
  out=$(grep -v '^[[:space:]]*$' <<<"$out" || true)
  if ((rc != 0)); then
    _ar_error "a container could not use the GPU the way Swarm gives it: \`$command\` exited $rc: $(tail -n 1 <<<"$out")"
    return 1
  fi
  if [[ $out != "$2, "* || $out == *$'\n'* ]]; then
    _ar_error "a container given GPU $2 the way Swarm gives it saw ${out:-no GPU} instead (\`$command\`): check swarm-resource in the toolkit's config.toml and Docker's default-runtime."
    return 1
  fi
  printf '%s\n' "${out#"$2", }"
}

# -- the driver -----------------------------------------------------------------------------

# gpu_driver_advice OS_ID VERSION_ID: one paragraph on installing the NVIDIA driver here.
gpu_driver_advice() {
  local os=${1:-} version=${2:-} text
  case $os in
    ubuntu)
      text="Install the NVIDIA driver from Ubuntu's archive: \`sudo ubuntu-drivers list --gpgpu\` lists the server drivers for this GPU and \`sudo ubuntu-drivers install --gpgpu\` installs the recommended one (or name a branch from the list, e.g. \`sudo ubuntu-drivers install --gpgpu nvidia:580-server\`; \`sudo apt install nvidia-driver-580-server\` is the same by hand)."
      ;;
    debian)
      local where="/etc/apt/sources.list.d/debian.sources (its Components: line)"
      [[ $version == 12 ]] && where="/etc/apt/sources.list"
      text="Install the NVIDIA driver from Debian's non-free section: add contrib non-free non-free-firmware to the components in $where, then \`sudo apt update && sudo apt install linux-headers-\$(dpkg --print-architecture) nvidia-driver firmware-misc-nonfree\` (DKMS builds the kernel module)."
      ;;
    *)
      text="Install the NVIDIA driver with your distribution's packages or NVIDIA's (docs.nvidia.com/datacenter/tesla/driver-installation-guide/)."
      ;;
  esac
  printf '%s\n' "$text Then reboot: the kernel module is loaded at boot (with Secure Boot on, the module must be signed by a key enrolled in the firmware, MOK: enroll it when the installer asks, or the module will not load). Check with \`nvidia-smi\`, then run bootstrap.sh again: it installs the NVIDIA Container Toolkit and checks the GPU from inside a container."
}

# gpu_driver_install_plan OS_ID VERSION_ID ARCH: the commands that install the driver
# (for --install-driver). A reboot is needed afterwards; the plan does not reboot.
# Debian: the non-free component must already be enabled (check `apt-cache policy
# nvidia-driver` has a candidate first; editing the user's sources is left to them).
gpu_driver_install_plan() {
  local os=${1:-} arch
  arch=$(dpkg_arch "${3:-}") || return 1
  case $os in
    ubuntu)
      printf '%s\n' \
        "# The NVIDIA server driver from Ubuntu's archive (ubuntu.com/server/docs: NVIDIA drivers installation)" \
        "apt-get update" \
        "apt-get install -y ubuntu-drivers-common" \
        "ubuntu-drivers install --gpgpu" \
        "# reboot needed: the driver's kernel module loads at the next boot"
      ;;
    debian)
      printf '%s\n' \
        "# The NVIDIA driver from Debian's non-free section (wiki.debian.org/NvidiaGraphicsDrivers)" \
        "apt-get update" \
        "apt-get install -y linux-headers-$arch nvidia-driver firmware-misc-nonfree" \
        "# reboot needed: the driver's kernel module loads at the next boot"
      ;;
    *)
      _ar_error "installing the NVIDIA driver is automated for ubuntu and debian only, not '$os'; install it by hand (docs.nvidia.com/datacenter/tesla/driver-installation-guide/) and run bootstrap again."
      return 1
      ;;
  esac
}

# -- /etc/docker/daemon.json -------------------------------------------------------------------

# The merge, in Python's json. Mode merge prints the result; mode set writes it (atomically,
# mode 0644) when it differs and prints "changed" or "unchanged".
_ar_daemon_json() {
  if ! command -v python3 >/dev/null 2>&1; then
    _ar_error "python3 is needed to edit $2 safely and is not installed (apt-get install python3)."
    return 1
  fi
  python3 - "$@" <<'PY'
import json, os, sys, tempfile

mode, path, key, raw = sys.argv[1:5]

def fail(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)

def merge(old, new):
    """new into old: objects merge key by key, lists gain the items they lack (a
    "name=value" string replaces the item of the same name), anything else is replaced."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = merge(old[k], v) if k in old else v
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = list(old)
        for item in new:
            if item in out:
                continue
            name = item.split("=", 1)[0] + "=" if isinstance(item, str) and "=" in item else None
            same = [i for i, o in enumerate(out) if name and isinstance(o, str) and o.startswith(name)]
            if same:
                out[same[0]] = item
                out = [o for i, o in enumerate(out) if i not in same[1:]]
            else:
                out.append(item)
        return out
    return new

if not key:
    fail("daemon_json_merge needs a key (like default-runtime or exec-opts).")
try:
    value = json.loads(raw)
except ValueError as error:
    fail(f"the value for {key} is not valid JSON ({error}): {raw!r}; quote strings, "
         f"e.g. '\"nvidia\"' or '[\"native.cgroupdriver=cgroupfs\"]'.")
text = ""
try:
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
except FileNotFoundError:
    pass
except OSError as error:
    fail(f"cannot read {path}: {error.strerror}.")
if text.strip():
    try:
        data = json.loads(text)
    except ValueError as error:
        fail(f"{path} is not valid JSON ({error}); Docker will not start with it either: "
             f"fix it by hand (or move it away) and run again. Nothing was changed.")
    if not isinstance(data, dict):
        fail(f"{path} holds a JSON {type(data).__name__}, not an object; Docker wants an "
             f"object of settings: fix it by hand and run again. Nothing was changed.")
else:
    data = {}
merged = dict(data)
merged[key] = merge(data[key], value) if key in data else value
rendered = json.dumps(merged, indent=4) + "\n"
if mode == "merge":
    sys.stdout.write(rendered)
    sys.exit(0)
if merged == data and text.strip():
    print("unchanged")
    sys.exit(0)
directory = os.path.dirname(path) or "."
os.makedirs(directory, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=directory, prefix=".daemon.json.")
with os.fdopen(fd, "w", encoding="utf-8") as handle:
    handle.write(rendered)
os.chmod(tmp, 0o644)
os.replace(tmp, path)
print("changed")
PY
}

# daemon_json_merge EXISTING_JSON_FILE KEY VALUE_JSON: print the file's JSON with KEY set to
# VALUE_JSON, every other key kept (a missing or empty file is {}). Objects merge key by key;
# lists gain the items they lack, and a "name=value" item replaces the one with the same name
# (so exec-opts ["native.cgroupdriver=cgroupfs"] replaces native.cgroupdriver=systemd).
# Invalid JSON, or a file that is not a JSON object, is refused (status 1).
daemon_json_merge() {
  _ar_daemon_json merge "${1:-}" "${2:-}" "${3:-}"
}

# daemon_json_set FILE KEY VALUE_JSON: write the merge into FILE when it changes anything.
# Sets DAEMON_JSON_CHANGED=1 when the file was written (dockerd needs a restart), else 0.
DAEMON_JSON_CHANGED=0
daemon_json_set() {
  local result
  DAEMON_JSON_CHANGED=0
  result=$(_ar_daemon_json set "${1:-}" "${2:-}" "${3:-}") || return 1
  # shellcheck disable=SC2034  # read by the caller
  [[ $result == changed ]] && DAEMON_JSON_CHANGED=1
  return 0
}

# -- running a plan ------------------------------------------------------------------------

# apply_plan [FILE]: run a plan (FILE, or stdin) line by line, each in `bash -c` with
# `set -Eeuo pipefail` and DEBIAN_FRONTEND=noninteractive; comments and blank lines are
# skipped. Each line is logged as "$ line" with its output to $LANAI_BOOTSTRAP_LOG (stderr
# when unset). The first failing line stops it: returns that line's status and leaves the
# line in APPLY_FAILED_LINE (empty on success).
APPLY_FAILED_LINE=""
apply_plan() {
  local log=${LANAI_BOOTSTRAP_LOG:-/dev/stderr} line rc lines=()
  APPLY_FAILED_LINE=""
  mapfile -t lines <"${1:-/dev/stdin}"
  for line in "${lines[@]}"; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    printf '\n$ %s\n' "$line" >>"$log"
    rc=0
    DEBIAN_FRONTEND=noninteractive bash -c "set -Eeuo pipefail; $line" </dev/null >>"$log" 2>&1 || rc=$?
    if ((rc != 0)); then
      # shellcheck disable=SC2034  # read by the caller
      APPLY_FAILED_LINE=$line
      printf '(exit %s)\n' "$rc" >>"$log"
      return "$rc"
    fi
  done
  return 0
}
