"""What every `lanai` command shares: the root group, --json, one-sentence failures, the lock wait.

Command modules import this module, never the entry point (`reconciler.cli.main`), which
only registers them.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.cli import views
from reconciler.cli.remote import _args_after_host, remote_argv, runs_on_laptop
from reconciler.core.errors import ExitCode, LanaiError, LockHeld
from reconciler.server.settings import ServerSettings, load_settings

T = TypeVar("T")
json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON instead of text.")


def server_settings() -> ServerSettings:
    return load_settings()


def fail(exc: LanaiError, as_json: bool = False, code: int | None = None) -> None:
    if as_json:
        click.echo(json.dumps({"error": exc.message, "exit_code": int(code or exc.exit_code)}))
    views.error(exc.message)
    sys.exit(int(code or exc.exit_code))


def guarded(func: Callable[..., T]) -> Callable[..., T]:
    """Turn a LanaiError into one sentence on stderr and its documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except LanaiError as exc:
            fail(exc, kwargs.get("as_json", False))
            raise AssertionError("unreachable") from exc
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lanai")
@click.option("--host", metavar="[USER@]HOST", envvar="LANAI_HOST",
              help="Run the command on this server over SSH (an alias from ~/.ssh/config "
              "works; the host key must be known). Env: LANAI_HOST.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True),
              help="With --host: the ssh_config file to use (ssh -F).")
def root(host: str | None, ssh_config: str | None) -> None:
    """GitOps for a private AI server: Open WebUI + Ollama, converged from a git repo.

    \b
    On the server, `lanai run` (a systemd service) follows the state repo: every push
    to its branch is deployed with `docker compose`, anything that drifts from git
    (a stopped container, a changed setting) is reported and healed, and every
    reconcile is recorded.

    \b
    Everyday commands:
      lanai status            what is deployed, is it in sync, is it healthy
      lanai plan              what the next reconcile would change, and why
      lanai history           commit -> actions -> result, newest first
      lanai drift             what differs from git right now
      lanai logs open-webui   a service's logs
      lanai models            the local models: pulled, fitted to the GPU, loaded
      lanai trust             make the family's devices trust the server's HTTPS
      lanai users             family accounts and their one-time passwords
      lanai backups           Open WebUI's data, backed up (lanai backup, lanai restore)

    \b
    From a laptop: `lanai --host ubuntu@gpu-box status` runs the command on the
    server over SSH (sudo there; the same for drift, history, logs, plan, ...).

    \b
    Configuration: /etc/lanai/server.yaml (repo, branch, home, secrets_file,
    ollama_url, webhook_listen, metrics_listen), overridden by LANAI_CONFIG, LANAI_REPO,
    LANAI_BRANCH, LANAI_HOME, LANAI_SECRETS_FILE, LANAI_OLLAMA_URL, LANAI_WEBHOOK_LISTEN,
    LANAI_METRICS_LISTEN. Exit codes
    are listed in the README.
    """
    ctx = click.get_current_context()
    ctx.obj = {"host": host, "ssh_config": ssh_config}
    if host and ctx.invoked_subcommand and not ctx.resilient_parsing \
            and not runs_on_laptop(ctx.invoked_subcommand, sys.argv[1:]):
        argv = remote_argv(host, ssh_config, _args_after_host(sys.argv[1:]))
        try:
            os.execvp(argv[0], argv)  # ssh's exit status is the remote lanai's
        except FileNotFoundError:
            fail(LanaiError("ssh is not installed here; install the OpenSSH client to use "
                             "--host.", exit_code=ExitCode.INVALID))



def when_unlocked(wait_s: float, action: Callable[[], T]) -> T:
    """Run `action` (which takes the reconcile lock), waiting up to `wait_s` while another
    reconcile holds it; says once who is holding it."""
    deadline = time.monotonic() + wait_s
    said = ""
    while True:
        try:
            return action()
        except LockHeld as exc:
            if time.monotonic() > deadline:
                raise
            reason = exc.message.split(";")[0]
            if reason != said:
                views.progress(f"waiting: {reason}")
                said = reason
            time.sleep(1)


