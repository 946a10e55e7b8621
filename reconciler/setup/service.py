"""Step 8: the daemon, `lanai run`: the systemd service lanai.service, or without systemd
(a container) a background process with a pid file and a log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.core.files import write_atomic
from reconciler.server.settings import load_settings
from reconciler.setup.base import (
    E_DAEMON,
    SetupError,
    SetupPaths,
    err_line,
    has_systemd,
    logged,
    ok,
    warn,
    would,
)

START_WAIT_S = 30
# SIGTERM lets a running reconcile finish first (an image pull can take minutes).
STOP_WAIT_S = 300


def render_unit(template: str, paths: SetupPaths) -> str:
    """packaging/lanai.service with its placeholders filled in (no secrets: the config
    names the root-only secrets file)."""
    return template.replace("@LANAI@", str(paths.lanai)).replace("@LANAI_CONFIG@",
                                                                  str(paths.config))


def _systemctl(*args: str) -> bool:
    return subprocess.run(["systemctl", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode == 0


def _wait(seconds: float, condition: Callable[[], bool]) -> bool:
    end = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.5)


def step_daemon_systemd(paths: SetupPaths, template: str, restart: bool, dry_run: bool) -> None:
    unit = render_unit(template, paths)
    try:
        unit_changed = paths.unit_file.read_text(encoding="utf-8") != unit
    except OSError:
        unit_changed = True
    if dry_run:
        if unit_changed:
            would(f"daemon: would install {paths.unit_file} (from packaging/lanai.service) "
                  "and `systemctl enable --now lanai`")
        elif _systemctl("is-active", "--quiet", "lanai"):
            ok("daemon: lanai.service already set up and running")
        else:
            would("daemon: would `systemctl enable --now lanai`")
        return
    log = paths.bootstrap_log
    if unit_changed:
        write_atomic(paths.unit_file, unit, mode=0o644)  # systemd never reads half a unit
        logged(log, ["systemctl", "daemon-reload"])
    if not _systemctl("is-enabled", "--quiet", "lanai") \
            and not logged(log, ["systemctl", "enable", "lanai"]):
        raise SetupError("`systemctl enable lanai` failed; see the log and run again.",
                         E_DAEMON, show_log=True)
    started = ""
    if _systemctl("is-active", "--quiet", "lanai"):
        if unit_changed or restart:
            logged(log, ["systemctl", "restart", "lanai"])
            started = "restarted"
    else:
        logged(log, ["systemctl", "start", "lanai"])
        started = "started"
    if not _wait(START_WAIT_S, lambda: _systemctl("is-active", "--quiet", "lanai")):
        journal = subprocess.run(["journalctl", "-u", "lanai", "-n", "12", "--no-pager"],
                                 capture_output=True, text=True, check=False)
        for line in journal.stdout.splitlines():
            err_line(f"  | {line}")
        raise SetupError("lanai.service did not start; see `journalctl -u lanai`, fix the "
                         "cause and run again.", E_DAEMON)
    if unit_changed or started:
        ok(f"daemon: lanai.service {started or 'installed'} (enabled at boot; logs: "
           "journalctl -u lanai -f)")
    else:
        ok("daemon: lanai.service already set up and running")


def daemon_pid(pid_file: Path) -> int | None:
    """The pid of the background daemon, when it runs (a stale pid file is no daemon)."""
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except (OSError, ValueError):
        return None
    # Anything else with the pid is not ours: `lanai` and, after it, ` run`.
    at = cmdline.find("lanai")
    return pid if at >= 0 and " run" in cmdline[at:] else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie (an exited child not reaped yet) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def stop_background_daemon(pid_file: Path) -> None:
    pid = daemon_pid(pid_file)
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(STOP_WAIT_S, lambda: not _alive(pid)):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def start_background_daemon(paths: SetupPaths) -> int:
    socket_path = load_settings({**os.environ, "LANAI_CONFIG": str(paths.config)}).socket_path
    paths.daemon_log.parent.mkdir(parents=True, exist_ok=True)
    paths.pid_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LANAI_CONFIG": str(paths.config), "PYTHONUNBUFFERED": "1"}
    with paths.daemon_log.open("ab") as log:
        # Its own session: it outlives bootstrap and the SSH connection that ran it.
        process = subprocess.Popen([str(paths.lanai), "run"], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    paths.pid_file.write_text(f"{process.pid}\n")
    end = time.monotonic() + START_WAIT_S
    while process.poll() is None and time.monotonic() < end:
        if socket_path.is_socket():
            return process.pid
        time.sleep(0.5)
    lines = paths.daemon_log.read_text(errors="replace").splitlines()[-12:] \
        if paths.daemon_log.is_file() else []
    err_line(f"  (last lines of {paths.daemon_log})")
    for line in lines:
        err_line(f"  | {line}")
    paths.pid_file.unlink(missing_ok=True)
    raise SetupError(f"`lanai run` did not start (no control socket at {socket_path} within "
                     f"{START_WAIT_S} s); see {paths.daemon_log}, fix the cause and run "
                     "again.", E_DAEMON)


def step_daemon_background(paths: SetupPaths, restart: bool, dry_run: bool) -> None:
    pid = daemon_pid(paths.pid_file)
    if pid is not None:
        if restart and not dry_run:
            stop_background_daemon(paths.pid_file)
            pid = start_background_daemon(paths)
            ok(f"daemon: restarted `lanai run` with the new version (pid {pid}, logs in "
               f"{paths.daemon_log})")
        else:
            ok(f"daemon: `lanai run` already set up and running (pid {pid})")
        return
    if dry_run:
        would(f"daemon: no systemd here: would start `lanai run` in the background (logs "
              f"{paths.daemon_log}, pid in {paths.pid_file})")
        return
    pid = start_background_daemon(paths)
    ok(f"daemon: started `lanai run` in the background (pid {pid}, logs in "
       f"{paths.daemon_log})")
    warn("no systemd here: the daemon will not start again after a reboot; run "
         "bootstrap.sh again after one (or use a machine with systemd).")


def step_daemon(paths: SetupPaths, template: str, restart: bool, dry_run: bool) -> None:
    if has_systemd():
        step_daemon_systemd(paths, template, restart, dry_run)
    else:
        step_daemon_background(paths, restart, dry_run)
