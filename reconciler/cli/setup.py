"""Commands that set a server up: the post-receive hook, the secrets file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from reconciler.cli import views
from reconciler.cli.base import fail, guarded, json_option, root, server_settings
from reconciler.core.errors import ExitCode, LanaiError
from reconciler.daemon.hooks import install_hook
from reconciler.server.secrets import read_secrets, write_secret


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
