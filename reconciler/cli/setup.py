"""Commands that set a server up: the post-receive hook, the secrets file, and the
steps bootstrap.sh runs once lanai is installed (`lanai setup ...`)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from reconciler.cli import views
from reconciler.cli.base import fail, guarded, json_option, root, server_settings
from reconciler.core.errors import ExitCode, LanaiError
from reconciler.daemon.hooks import install_hook
from reconciler.server.secrets import read_secrets, write_secret
from reconciler.setup import config as setup_config
from reconciler.setup import service as setup_service
from reconciler.setup import state_repo as setup_state_repo
from reconciler.setup import summary as setup_summary
from reconciler.setup.base import SetupError, SetupPaths, report_failure


@root.group()
def hook() -> None:
    """The post-receive hook that makes a push deploy at once."""


@hook.command(name="install")
@click.argument("repo", type=click.Path(file_okay=False, exists=True, path_type=Path))
def hook_install(repo: Path) -> None:
    """Install the post-receive hook into the bare state repo REPO on this server."""
    try:
        # The interpreter lanai runs in: the hook needs the package, not the console script.
        path = install_hook(repo.resolve(), sys.executable, server_settings().socket_path)
    except ValueError as exc:
        fail(LanaiError(str(exc), exit_code=ExitCode.INVALID))
        return
    views.note(f"installed {path}: a push to {repo} now pokes the reconciler")


@root.group()
def secrets() -> None:
    """The server's secrets (names in git, values only in a root-only file)."""


@secrets.command(name="set")
@click.argument("name")
def secrets_set(name: str) -> None:
    """Set secret NAME, reading the value from standard input (never from arguments)."""
    settings = server_settings()
    if sys.stdin.isatty():
        value = click.prompt(f"Value for {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.readline().rstrip("\n")
    if not value:
        fail(LanaiError("an empty secret is not allowed; pipe the value on standard input.",
                         exit_code=ExitCode.INVALID))
    try:
        write_secret(settings.secrets_file, name, value)
    except LanaiError as exc:
        fail(exc)
    views.note(f"{name} saved in {settings.secrets_file}; the next reconcile uses it")


@secrets.command(name="list")
@json_option
@guarded
def secrets_list(as_json: bool) -> None:
    """Names of the secrets on this server (never the values)."""
    names = sorted(read_secrets(server_settings().secrets_file))
    if as_json:
        click.echo(json.dumps(names))
    else:
        for name in names:
            click.echo(name)


# -- lanai setup: bootstrap.sh's steps after the virtualenv -----------------------------

@root.group()
def setup() -> None:
    """The steps bootstrap.sh runs once lanai is installed: config, state repo, service.

    \b
    bootstrap.sh calls these, in this order, as root:
      lanai setup config       /etc/lanai/server.yaml and the secrets file
      lanai setup state-repo   the bare state repo with its hook (or a deploy key)
      lanai setup service      lanai.service (or, without systemd, a background daemon)
      lanai setup summary      where Open WebUI is and how to deploy

    \b
    Each is idempotent and says "already set up" when there is nothing to do; with
    --dry-run it says what it would do and changes nothing. Paths come from
    bootstrap.sh's variables (LANAI_CONFIG, LANAI_SECRETS_FILE, LANAI_HOME,
    LANAI_STATE_REPO_DIR, LANAI_OPT, LANAI_UNIT_FILE, LANAI_DAEMON_LOG, LANAI_PID_FILE,
    LANAI_BOOTSTRAP_LOG, LANAI_DEPLOY_KEY) with its defaults. Exit codes are
    bootstrap.sh's: 9 the config, the secrets or the state repo could not be set up,
    10 the daemon did not start.
    """


def setup_step(func: Callable[..., None]) -> Callable[..., None]:
    """A failed step prints bootstrap.sh's ✗ sentence and exits with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        paths = SetupPaths.from_environ()
        try:
            func(paths, *args, **kwargs)
        except SetupError as exc:
            report_failure(exc, paths.bootstrap_log)
            sys.exit(exc.code)
    return wrapper


dry_run_option = click.option("-n", "--dry-run", is_flag=True,
                              help="Say what would be done; change nothing.")
state_repo_option = click.option(
    "--state-repo", "state_repo_url", default="", metavar="URL",
    help="Follow an existing state repo at URL instead of the bare repo on this server.")
branch_option = click.option("--branch", default="", metavar="NAME",
                             help="The branch to deploy (default: lanai.yaml's, main).")
example_option = click.option(
    "--example", type=click.Path(path_type=Path), required=True, metavar="DIR",
    help="lanai's example state (desired-state/ beside bootstrap.sh).")
seed_option = click.option(
    "--seed", type=click.Path(path_type=Path), default=None, metavar="DIR",
    help="Seed a new state repo from DIR (its models are kept) instead of the example.")


@setup.command(name="config")
@state_repo_option
@branch_option
@click.option("--secrets-file", "secrets_in", metavar="FILE",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Add the secrets in FILE (NAME=value lines) that differ; values are "
              "never taken from the command line.")
@dry_run_option
@setup_step
def setup_config_command(paths: SetupPaths, state_repo_url: str, branch: str,
                         secrets_in: Path | None, dry_run: bool) -> None:
    """Write the server config (no secrets) and the secrets file (mode 0600).

    \b
    A new config names the repo (--state-repo URL or the bare repo here), home and
    secrets_file; an existing one is kept, with repo and branch set when given.
    WEBUI_SECRET_KEY and WEBUI_ADMIN_PASSWORD are generated once; existing values are
    kept.
    """
    wanted = setup_config.Wanted(state_repo_url, branch)
    setup_config.step_config(paths, wanted, dry_run)
    setup_config.step_secrets(paths, secrets_in, dry_run)


@setup.command(name="state-repo")
@state_repo_option
@branch_option
@example_option
@seed_option
@click.option("--git-user", default="", metavar="USER",
              help="Let USER push to the state repo (group lanai) and use Docker.")
@dry_run_option
@setup_step
def setup_state_repo_command(paths: SetupPaths, state_repo_url: str, branch: str,
                             example: Path, seed: Path | None, git_user: str,
                             dry_run: bool) -> None:
    """Create the bare state repo with its post-receive hook, or follow --state-repo URL.

    \b
    A new repo is seeded from the example (its models fitted to this server's GPU) or
    from --seed DIR, and a push to it deploys at once. For an SSH URL a read-only
    deploy key is made once and its public half printed, to add to the git host.
    """
    wanted = setup_config.Wanted(state_repo_url, branch)
    source = setup_state_repo.Seed(seed or example, own=seed is not None)
    setup_state_repo.step_state_repo(paths, wanted, source, git_user, dry_run)


@setup.command(name="service")
@click.option("--unit-template", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              required=True, metavar="FILE", help="packaging/lanai.service beside bootstrap.sh.")
@click.option("--restart", is_flag=True,
              help="Restart a running daemon (lanai or the GPU runtime changed).")
@dry_run_option
@setup_step
def setup_service_command(paths: SetupPaths, unit_template: Path, restart: bool,
                          dry_run: bool) -> None:
    """Run `lanai run` as lanai.service, or in the background where there is no systemd."""
    setup_service.step_daemon(paths, unit_template.read_text(encoding="utf-8"), restart,
                              dry_run)


@setup.command(name="summary")
@state_repo_option
@branch_option
@example_option
@seed_option
@json_option
@setup_step
def setup_summary_command(paths: SetupPaths, state_repo_url: str, branch: str, example: Path,
                          seed: Path | None, as_json: bool) -> None:
    """Where Open WebUI is, how the admin logs in, and how to clone the state repo."""
    wanted = setup_config.Wanted(state_repo_url, branch)
    if as_json:
        click.echo(json.dumps(setup_summary.summary_facts(paths, wanted, seed or example)))
        return
    setup_summary.print_summary(paths, wanted, seed or example)
