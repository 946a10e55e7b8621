"""`lanai users`: the family's Open WebUI accounts that webui.yaml declares."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from reconciler.cli import views
from reconciler.cli.base import guarded, json_option, root, server_settings
from reconciler.core.errors import ExitCode, LanaiError
from reconciler.engine.reconcile import Engine
from reconciler.webui.sync import WebUISync


@root.command()
@json_option
@guarded
def users(as_json: bool) -> None:
    """The family accounts in webui.yaml, and one-time passwords not shown yet.

    A new account gets a random one-time password when lanai creates it; this shows
    it ONCE (then forgets it): hand it over, and the person changes it in Open WebUI
    (Settings > Account).
    """
    settings = server_settings()
    engine = Engine(settings)
    applied = engine.deployed()
    if applied is None or applied.webui is None:
        raise LanaiError("no webui.yaml has been deployed on this server; add one to the state "
                         "repo (see desired-state/webui.yaml) and push.",
                         exit_code=ExitCode.NOT_SET_UP)
    sync = WebUISync(settings, engine.client)
    pending = sync.take_passwords()
    rows: list[dict[str, Any]] = [
        {"name": u.name, "email": u.email, "role": u.role,
         "one_time_password": pending.get(u.email, {}).get("password")}
        for u in applied.webui.users]
    if as_json:
        click.echo(json.dumps({"users": rows}, indent=1))
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "EMAIL", "ROLE", "ONE-TIME PASSWORD"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["email"], row["role"],
                      row["one_time_password"] or "(shown before, or set by the person)")
    views.out.print(table)
    if any(r["one_time_password"] for r in rows):
        views.note("these passwords are shown once; lanai has now forgotten them")
