"""Step 6: the state repo: a bare repo here seeded from desired-state/ with its
post-receive hook, or an existing repo (--state-repo URL) with a read-only deploy key."""

from __future__ import annotations

import grp
import hashlib
import os
import shlex
import shutil
import socket
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reconciler.daemon.hooks import install_hook
from reconciler.server.settings import load_settings
from reconciler.setup.base import SetupError, SetupPaths, join, logged, ok, output, say, warn, would
from reconciler.setup.config import Wanted

COMMIT_MESSAGE = "Initial state from lanai's example"
# The example models.lock records this card; a seeded lock records the server's instead.
EXAMPLE_GPU_NAME = "  name: NVIDIA GeForce RTX 3070"
EXAMPLE_GPU_MEMORY = "  memory: 8589934592"


@dataclass(frozen=True)
class Seed:
    """Where a new state repo comes from: lanai's example, or the user's --seed DIR."""

    path: Path
    own: bool  # --seed: the user's own models are kept as they are


def models_template_for(mib: int) -> str:
    """The models template (desired-state/templates/models-*.yaml) for a GPU with this
    many MiB; no GPU (0) or one too small for an 8B model gets the CPU set."""
    if mib < 7000:
        return "cpu"
    if mib < 11000:
        return "8gb"
    if mib < 15000:
        return "12gb"
    if mib < 22000:
        return "16gb"
    return "24gb"


def usable_gpu_mib() -> int:
    """The first GPU's memory in MiB when Docker can hand it to containers; 0 otherwise."""
    if shutil.which("nvidia-smi") is None:
        return 0
    runtimes = output(["docker", "info", "--format", "{{json .Runtimes}}"]) or ""
    if '"nvidia"' not in runtimes:
        return 0
    memory = output(["nvidia-smi", "--query-gpu=memory.total",
                     "--format=csv,noheader,nounits"]) or ""
    digits = "".join(ch for ch in (memory.splitlines() or [""])[0] if ch.isdigit())
    return int(digits or 0)


def gpu_name() -> str:
    names = output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]) or ""
    # Quotes, backslashes and bars would break the YAML string.
    return "".join(ch for ch in (names.splitlines() or [""])[0] if ch not in '\\"|')


def lock_for_gpu(text: str, mib: int, name: str) -> str:
    """The example models.lock with this server's GPU (or none) instead of the RTX 3070,
    so that a pull request's CI fits the models to the card they will run on (the server
    rewrites the whole lock once it has pulled them: `lanai models lock`)."""
    lines = text.splitlines()
    out: list[str] = []
    if mib > 0:
        for line in lines:
            if line == EXAMPLE_GPU_NAME:
                line = f'  name: "{name or "NVIDIA GPU"}"'
            elif line == EXAMPLE_GPU_MEMORY:
                line = f"  memory: {mib * 1024 * 1024}"
            out.append(line)
    else:
        skipping = False
        for line in lines:
            if line == "gpu:":
                skipping = True
            if skipping:
                skipping = not line.startswith("  memory: ")
                continue
            out.append(line)
            if line == "version: 1":
                out.append("gpu: null")
    return "".join(line + "\n" for line in out)


def pick_models_template(clone: Path, seed: Seed, mib: int, name: str = "") -> None:
    """lanai's example carries models for an 8 GB card; seed the set that fits this
    server's GPU instead (a --seed directory is the user's own and is left as it is)."""
    if seed.own or not (clone / "templates").is_dir():
        return
    template = models_template_for(mib)
    source = clone / "templates" / f"models-{template}.yaml"
    if not source.is_file():
        return
    shutil.copyfile(source, clone / "models.yaml")
    lock = clone / "models.lock"
    if lock.is_file():
        lock.write_text(lock_for_gpu(lock.read_text(encoding="utf-8"), mib, name),
                        encoding="utf-8")
    if mib > 0:
        ok(f"models: the {template} template (desired-state/templates/models-{template}.yaml)"
           f" for the {mib} MiB GPU")
    else:
        ok("models: the cpu template (desired-state/templates/models-cpu.yaml): no GPU "
           "Docker can use")


def seed_state_repo(paths: SetupPaths, seed: Seed, branch: str) -> None:
    if not seed.path.is_dir():
        raise SetupError(f"{seed.path} is missing, so the state repo cannot be seeded; run "
                         "bootstrap.sh from a lanai checkout, or pass --state-repo URL.")
    repo, log = paths.state_repo, paths.bootstrap_log
    repo.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lanai-seed.") as work:
        clone = Path(work) / "state"
        git = ["git", "-C", str(clone)]
        done = (logged(log, ["git", "init", "--quiet", "--bare", f"--initial-branch={branch}",
                             str(repo)])
                and logged(log, ["git", "clone", "--quiet", str(repo), str(clone)]))
        if done:
            shutil.copytree(seed.path, clone, dirs_exist_ok=True, symlinks=True)
            mib = 0 if seed.own else usable_gpu_mib()
            pick_models_template(clone, seed, mib, gpu_name() if mib else "")
            done = (logged(log, [*git, "add", "-A"])
                    and logged(log, [*git, "-c", "user.name=lanai bootstrap",
                                     "-c", f"user.email=root@{socket.gethostname()}",
                                     "commit", "--quiet", "-m", COMMIT_MESSAGE])
                    and logged(log, [*git, "push", "--quiet", "origin",
                                     f"HEAD:refs/heads/{branch}"]))
    if not done:
        shutil.rmtree(repo, ignore_errors=True)
        raise SetupError(f"could not create the state repo {repo} from desired-state/; see "
                         "the log and run again.", show_log=True)


def hook_digest(repo: Path) -> str | None:
    try:
        return hashlib.sha256((repo / "hooks" / "post-receive").read_bytes()).hexdigest()
    except OSError:
        return None


def install_state_hook(repo: Path) -> bool:
    """Install or refresh the post-receive hook; True when its text changed."""
    before = hook_digest(repo)
    try:
        # The interpreter lanai runs in: the hook needs the package, not the console script.
        install_hook(repo.resolve(), sys.executable, load_settings().socket_path)
    except (ValueError, OSError) as exc:
        raise SetupError(f"could not install the post-receive hook: {exc}") from exc
    return hook_digest(repo) != before


def is_ssh_url(url: str) -> bool:
    return url.startswith("ssh://") or ("://" not in url and ":" in url)


def git_ssh_command(deploy_key: Path) -> str:
    """The same SSH command lanai's git source uses (reconciler/desired/source.py)."""
    if deploy_key.is_file():
        return (f"ssh -o BatchMode=yes -i {shlex.quote(str(deploy_key))} "
                "-o IdentitiesOnly=yes -o UserKnownHostsFile="
                f"{shlex.quote(str(deploy_key.parent / 'known_hosts'))} "
                "-o StrictHostKeyChecking=accept-new")
    return "ssh -o BatchMode=yes"


def ensure_deploy_key(paths: SetupPaths, url: str) -> None:
    """A key for this server alone, to be added to the git host as a read-only deploy key."""
    key = paths.deploy_key
    if not key.is_file():
        key.parent.mkdir(parents=True, exist_ok=True)
        made = logged(paths.bootstrap_log, [
            "ssh-keygen", "-q", "-t", "ed25519", "-N", "",
            "-C", f"lanai deploy key for {socket.gethostname()} (read-only)", "-f", str(key)])
        if not made:
            raise SetupError(f"could not create the deploy key {key} (ssh-keygen failed; is "
                             "openssh-client installed?).")
        key.chmod(0o600)
        ok(f"deploy key: created {key}")
    say(f"  Add this public key to {url} as a READ-ONLY deploy key")
    say("  (GitHub/Gitea: repository Settings > Deploy keys; GitLab: Settings > Repository "
        "> Deploy keys):")
    say(f"    {Path(f'{key}.pub').read_text(encoding='utf-8').strip()}")


def follow_remote(paths: SetupPaths, wanted: Wanted) -> None:
    url = wanted.state_repo_url
    if is_ssh_url(url):
        ensure_deploy_key(paths, url)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0",
           "GIT_SSH_COMMAND": git_ssh_command(paths.deploy_key)}
    if not logged(paths.bootstrap_log, ["git", "ls-remote", "--heads", url], env=env,
                  timeout=60):
        if is_ssh_url(url):
            warn(f"this server cannot read {url} yet: add the deploy key above to that "
                 "repository (read-only), and the daemon picks it up at its next poll.")
        else:
            warn(f"this server cannot read {url} yet (git ls-remote failed; see "
                 f"{paths.bootstrap_log}); the daemon keeps trying.")


def record_grant(paths: SetupPaths, grant: str) -> None:
    """Note a grant in bootstrap's list (bootstrap.sh --uninstall --purge takes it back)."""
    path = paths.grants_file
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and grant in path.read_text(encoding="utf-8").splitlines():
        return
    with path.open("a", encoding="utf-8") as out:
        out.write(grant + "\n")


def _run(paths: SetupPaths, *argv: str) -> bool:
    return logged(paths.bootstrap_log, argv)


def grant_git_user(paths: SetupPaths, user: str) -> bool:
    """A non-root user who pushes over SSH writes to the repo through the lanai group,
    which also may poke the daemon's socket (the hook does). True when anything changed."""
    repo = paths.state_repo
    if output(["id", user]) is None:
        raise SetupError(f"--git-user {user} does not exist on this server; create the user "
                         "or leave the option out.")
    granted = False
    if output(["getent", "group", "lanai"]) is None:
        _run(paths, "groupadd", "--system", "lanai")
        record_grant(paths, "group lanai")
        granted = True
    groups = (output(["id", "-nG", user]) or "").split()
    for group in ("lanai", "docker"):  # docker: `docker ps` and `lanai logs` without sudo
        if output(["getent", "group", group]) is None or group in groups:
            continue
        _run(paths, "usermod", "-aG", group, user)
        record_grant(paths, f"member {user} {group}")
        granted = True
    # git refuses a repo owned by another user ("dubious ownership"): vouch for this one.
    safe = (output(["git", "config", "--system", "--get-all", "safe.directory"]) or "")
    if str(repo) not in safe.splitlines():
        _run(paths, "git", "config", "--system", "--add", "safe.directory", str(repo))
        record_grant(paths, f"safe.directory {repo}")
        granted = True
    shared = (output(["git", "-C", str(repo), "config", "core.sharedRepository"]) or "").strip()
    if shared != "group" or _group_of(repo) != "lanai":
        _run(paths, "git", "-C", str(repo), "config", "core.sharedRepository", "group")
        _run(paths, "chgrp", "-R", "lanai", str(repo))
        _group_writable(repo)
        granted = True
    protect_repo_code(repo)
    return granted


def _group_of(path: Path) -> str:
    gid = path.stat().st_gid
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _group_writable(repo: Path) -> None:
    """chmod -R g+rwX, and setgid on directories so new objects stay in the group."""
    for top, dirs, files in os.walk(repo):
        for name in dirs:
            path = Path(top) / name
            path.chmod(stat.S_IMODE(path.stat().st_mode) | 0o070 | stat.S_ISGID)
        for name in files:
            path = Path(top) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if not path.is_symlink():
                path.chmod(mode | 0o060 | (0o010 if mode & 0o111 else 0))
    repo.chmod(stat.S_IMODE(repo.stat().st_mode) | 0o070 | stat.S_ISGID)


def protect_repo_code(repo: Path) -> None:
    """The hook runs as whoever pushes, and the config can name programs git runs: the
    lanai group may push (objects, refs) but not change either. The sticky repo directory
    keeps group members from renaming root's config or hooks/ away and putting their own."""
    hooks = repo / "hooks"
    for path in (repo / "config", hooks, *(p for p in hooks.iterdir() if p.is_file())):
        path.chmod(stat.S_IMODE(path.stat().st_mode) & ~0o022)
    repo.chmod(stat.S_IMODE(repo.stat().st_mode) | stat.S_ISVTX)


def step_state_repo(paths: SetupPaths, wanted: Wanted, seed: Seed, git_user: str,
                    dry_run: bool) -> None:
    branch_note = f" (branch {wanted.branch})" if wanted.branch else ""
    if wanted.state_repo_url:
        if dry_run:
            would(f"state repo: would follow {wanted.state_repo_url}{branch_note}; no repo "
                  "is created here")
            return
        follow_remote(paths, wanted)
        ok(f"state repo: following {wanted.state_repo_url}{branch_note}")
        return
    repo, branch = paths.state_repo, wanted.branch or "main"
    if repo.exists() and not (repo / "HEAD").is_file():
        raise SetupError(f"{repo} exists but is not a bare git repo; move it away (or pass "
                         "--state-repo URL) and run again.")
    if dry_run:
        if repo.exists():
            ok(f"state repo: {repo} already set up (the post-receive hook is refreshed)")
        else:
            would(f"state repo: would create the bare repo {repo} (branch {branch}), commit "
                  f"desired-state/ as \"{COMMIT_MESSAGE}\", and install its post-receive hook")
        return
    did = []
    if not repo.exists():
        seed_state_repo(paths, seed, branch)
        did.append(f"created {repo} from desired-state/ (branch {branch})")
    if install_state_hook(repo):
        did.append("installed its post-receive hook")
    if git_user and grant_git_user(paths, git_user):
        did.append(f"gave {git_user} push access (group lanai) and the docker group "
                   "(root-equivalent)")
    if did:
        ok(f"state repo: {join(did)}")
    else:
        ok(f"state repo: {repo} already set up")

