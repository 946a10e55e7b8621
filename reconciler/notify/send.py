"""Sending notices through Apprise: the I/O edge of reconciler.notify.notices.

Apprise URLs carry tokens (a topic, a webhook secret, a password), so a URL is
never logged: the log names only its scheme and host, and Apprise's own log
lines (which print whole URLs at debug level) are kept out of lanai's log.
Sending is bounded in time and never raises into its caller: the daemon must
keep reconciling when a notification service is down.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from reconciler.core.errors import LanaiError
from reconciler.core.files import write_json_atomic
from reconciler.desired.lanai_yaml import SECRET_NAME, LanaiConfig
from reconciler.notify import drift_report
from reconciler.notify.notices import (
    Notice,
    NotifyState,
    Policy,
    admit,
    notices,
    observe,
    report_notice,
)
from reconciler.server.secrets import read_secrets
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered

log = logging.getLogger("lanai.notify")
STATE_FILE = "notify.json"
SEND_TIMEOUT_S = 15.0  # all targets of one notice together
_state_lock = threading.Lock()  # the daemon's worker and a backup job may both notify


def state_path(settings: ServerSettings) -> Path:
    return settings.home / STATE_FILE


def load_state(settings: ServerSettings) -> NotifyState:
    return NotifyState.from_json(drift_report.read_json(state_path(settings)))


def save_state(settings: ServerSettings, state: NotifyState) -> None:
    write_json_atomic(state_path(settings), state.to_json())  # mkstemp: mode 0600


def policy(config: LanaiConfig) -> Policy:
    return Policy(events=frozenset(config.notify.events),
                  repeat_after=config.notify.repeat_after)


def describe(url: str) -> str:
    """What may be logged about a URL: its scheme and host, nothing after."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def redact(text: str, url: str) -> str:
    """`text` without the URL or any of its secret-looking pieces."""
    parts = urlsplit(url)
    pieces = [url, parts.username, parts.password, parts.path, parts.query,
              *parts.path.split("/"), *(v for _, v in parse_qsl(parts.query))]
    for piece in sorted({p for p in pieces if p and len(p) >= 4}, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def targets(config: LanaiConfig, settings: ServerSettings) -> list[str]:
    """The Apprise URLs to send to: secret names resolved from the secrets file."""
    entries = config.notify.urls
    if not entries:
        return []
    names = [e for e in entries if SECRET_NAME.match(e)]
    secrets: dict[str, str] = {}
    if names:
        try:
            secrets = read_secrets(settings.secrets_file)
        except (LanaiError, OSError) as exc:
            log.warning("notifications not sent: %s", getattr(exc, "message", exc))
            return []
    urls = []
    for entry in entries:
        if not SECRET_NAME.match(entry):
            urls.append(entry)
        elif entry in secrets:
            urls.append(secrets[entry])
        else:
            log.warning("notify.urls names secret %s, which is not in %s; add it with "
                        "`lanai secrets set %s`", entry, settings.secrets_file, entry)
    return urls


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def send(urls: list[str], notice: Notice, timeout: float = SEND_TIMEOUT_S) -> int:
    """Send one notice to every URL; how many received it. Never raises."""
    if not urls:
        return 0
    delivered: list[bool] = []
    collected: dict[str, _Collect] = {}

    def work() -> None:
        import apprise  # imported on first use: the CLI's other commands start faster

        quiet = logging.getLogger(apprise.LOGGER_NAME)
        # Its debug lines print whole URLs, tokens included: never emitted, never passed on.
        quiet.setLevel(logging.WARNING)
        quiet.propagate = False
        # urllib3 (under requests) logs each request's path at debug level: tokens again.
        logging.getLogger("urllib3").setLevel(logging.WARNING)
        for url in urls:
            handler = collected.setdefault(url, _Collect())
            quiet.addHandler(handler)
            try:
                asset = apprise.AppriseAsset(storage_mode=apprise.PersistentStoreMode.MEMORY)
                target = apprise.Apprise(asset=asset)
                ok = target.add(url) and bool(target.notify(
                    body=notice.body, title=notice.title, notify_type=_type(notice)))
                if not target:
                    handler.messages.append("Apprise does not know this kind of URL")
            except Exception as exc:  # a plugin's bug must not reach the daemon
                ok = False
                handler.messages.append(str(exc))
            finally:
                quiet.removeHandler(handler)
            delivered.append(ok)

    worker = threading.Thread(target=work, name="notify", daemon=True)
    worker.start()
    worker.join(timeout)
    for index, url in enumerate(urls):
        where = describe(url)
        if index >= len(delivered):
            log.warning("%s notice to %s: no answer within %.0fs; not retried", notice.kind,
                        where, timeout)
        elif delivered[index]:
            log.info("%s notice sent to %s: %s", notice.kind, where, notice.title)
        else:
            reason = "; ".join(collected[url].messages[-2:]) if url in collected else ""
            log.warning("%s notice to %s failed%s; not retried", notice.kind, where,
                        f" ({redact(reason, url)})" if reason else "")
    return sum(delivered)


def _type(notice: Notice) -> str:
    return {"failure": "failure", "drift": "warning", "recovery": "success"}.get(
        notice.kind, "info")


def notify_event(settings: ServerSettings, config: LanaiConfig, notice: Notice) -> bool:
    """For any part of lanai (backups, GPU checks): send `notice` unless its kind is not
    in notify.events or the same key was sent within notify.repeat_after. Never raises;
    True when it was sent to at least one URL."""
    try:
        urls = targets(config, settings) if notice.kind in config.notify.events else []
        if not urls:
            return False
        with _state_lock:
            state = admit(notice, load_state(settings), policy(config), datetime.now(UTC))
            if state is None:
                log.debug("%s notice suppressed (sent within repeat_after)", notice.kind)
                return False
            save_state(settings, state)
        return send(urls, notice) > 0
    except Exception:
        log.exception("notifying failed")
        return False


def after_reconcile(settings: ServerSettings, applied: Rendered | None,
                    outcome: dict[str, Any], stack_drift: list[dict[str, Any]]) -> None:
    """The daemon's follow-up to a reconcile: record drift since-times, send what is new.

    `stack_drift` is the stack drift on record after the reconcile (state.json)."""
    now = datetime.now(UTC)
    drift = (drift_report.collect(settings, applied, stack_drift)
             if applied is not None else list(stack_drift))
    if outcome.get("status") != "suspended":
        drift_report.record(settings, drift, applied.commit if applied else None, now)
    # Notify settings come from the applied commit's lanai.yaml. Without URLs nothing is
    # tracked either: problems still open when URLs are added are news then.
    urls = targets(applied.config, settings) if applied is not None else []
    if applied is None or not urls:
        return
    with _state_lock:
        previous = load_state(settings)
        observed = observe(outcome, drift, drift_report.model_errors(settings, applied))
        found, state = notices(observed, previous, policy(applied.config), now)
        if state != previous:
            save_state(settings, state)
    for notice in found:
        send(urls, notice)



def daily_report(settings: ServerSettings, config: LanaiConfig | None) -> dict[str, Any]:
    """The daemon's daily job: write drift-report.json from the tracked drift and send it
    when something differs (an in-sync day sends nothing: daily noise teaches people to
    ignore notices). Never raises."""
    report: dict[str, Any] = {}
    try:
        report = drift_report.write_report(settings, datetime.now(UTC))
        notice = report_notice(report)
        if notice is not None and config is not None:
            notify_event(settings, config, notice)
        log.info("drift report written: %s", "in sync" if report["in_sync"]
                 else f"{len(report['drift'])} difference(s) from git")
    except Exception:
        log.exception("writing the drift report failed")
    return report
