"""`lanai drift --report`: the daily drift report, as kept on the server."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from reconciler.core.errors import ExitCode, LanaiError
from reconciler.notify import drift_report
from reconciler.server.settings import ServerSettings


def show_latest(settings: ServerSettings, as_json: bool) -> None:
    """Print the report the daemon wrote last; exit 1 when it lists drift (like `lanai drift`)."""
    report = drift_report.read_json(drift_report.report_path(settings))
    if not report:
        raise LanaiError(
            "no drift report has been written on this server yet; the daemon writes one daily "
            "at drift_report.at (07:00 UTC unless lanai.yaml says otherwise), or run "
            "`lanai drift --report --now` for one now.", exit_code=ExitCode.NOT_SET_UP)
    _emit(report, as_json)


def show_fresh(settings: ServerSettings, items: list[dict[str, Any]], commit: str,
               as_json: bool) -> None:
    """Write a report now from the live drift (keeping tracked first-seen times); print it."""
    _emit(drift_report.write_report(settings, datetime.now(UTC), live=items, commit=commit),
          as_json)


def _emit(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        click.echo("\n".join(drift_report.render_lines(report)))
    sys.exit(ExitCode.OK if report.get("in_sync") else ExitCode.CHANGES)
