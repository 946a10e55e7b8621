"""Notices from reconcile outcomes (pure), and sending them through Apprise to a real
HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.notify import drift_report
from reconciler.notify import send as notify_send
from reconciler.notify.notices import (
    Notice,
    NotifyState,
    Policy,
    admit,
    notices,
    observe,
    report_notice,
)
from reconciler.server.settings import ServerSettings
from tests.http_receiver import Receiver

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALL = Policy(events=frozenset({"failure", "drift", "recovery", "report"}), repeat_after=3600)
STOPPED = {"service": "web", "kind": "stopped", "detail": "container exited (exit code 137)"}


def outcome(status: str = "no-op", error: str | None = None, commit: str = "a" * 40,
            **extra: Any) -> dict[str, Any]:
    return {"status": status, "error": error, "commit": commit, "actions": [], "drift": [],
            "models": {}, "webui": {}, **extra}


def step(out: dict[str, Any], state: NotifyState, at: datetime,
         drift: list[dict[str, Any]] | None = None, models: dict[str, str] | None = None,
         policy: Policy = ALL) -> tuple[list[Notice], NotifyState]:
    return notices(observe(out, drift or [], models or {}), state, policy, at)


def test_a_new_failure_is_sent_and_its_repeats_within_the_interval_are_not():
    failed = outcome("failed", "web did not turn healthy within 5s; fix its health check.")
    sent, state = step(failed, NotifyState(), T0)
    assert [(n.kind, n.title) for n in sent] == [
        ("failure", "lanai: web did not turn healthy within 5s; fix its health check.")]
    # The daemon sees the same commit waiting on every poll, with attempt counts changing.
    waiting = outcome("waiting", "web did not turn healthy within 5s; fix its health check.")
    for minutes in (1, 10, 59):
        again, state = step(waiting, state, T0 + timedelta(minutes=minutes))
        assert again == []
    reminder, state = step(waiting, state, T0 + timedelta(minutes=61))
    assert [n.kind for n in reminder] == ["failure"]


def test_recovery_is_sent_once_when_a_told_failure_is_over():
    failed = outcome("failed", "cannot pull lanai-test/x:1 (registry down); retries in 10s")
    _, state = step(failed, NotifyState(), T0)
    sent, state = step(outcome("applied"), state, T0 + timedelta(minutes=2))
    assert [(n.kind, n.title) for n in sent] == [("recovery", "lanai: recovered")]
    assert "cannot pull lanai-test/x:1" in sent[0].body
    again, state = step(outcome("no-op"), state, T0 + timedelta(minutes=3))
    assert again == [] and state.open == {}


def test_a_failure_that_comes_back_within_the_interval_is_suppressed_and_so_is_its_recovery():
    failed = outcome("failed", "web did not turn healthy")
    _, state = step(failed, NotifyState(), T0)
    _, state = step(outcome("applied"), state, T0 + timedelta(minutes=1))
    flap, state = step(failed, state, T0 + timedelta(minutes=2))
    assert flap == []
    over, state = step(outcome("applied"), state, T0 + timedelta(minutes=3))
    assert over == []  # the owner last heard "recovered"; nothing new to say


def test_counters_in_a_message_do_not_make_a_repeat_look_new():
    _, state = step(outcome("source-error", "git fetch failed after 3 attempts"),
                    NotifyState(), T0)
    again, _ = step(outcome("source-error", "git fetch failed after 4 attempts"), state,
                    T0 + timedelta(minutes=1))
    assert again == []


def test_a_new_commit_failing_the_same_way_is_news():
    _, state = step(outcome("failed", "web did not turn healthy", commit="a" * 40),
                    NotifyState(), T0)
    sent, _ = step(outcome("failed", "web did not turn healthy", commit="b" * 40), state,
                   T0 + timedelta(minutes=1))
    assert [n.kind for n in sent] == ["failure"]


def test_new_drift_items_are_sent_grouped_and_back_in_sync_once():
    other = {"service": "model llama3.1:8b", "kind": "memory", "detail": "spilled to CPU"}
    sent, state = step(outcome("drift"), NotifyState(), T0, drift=[STOPPED])
    assert [(n.kind, n.title) for n in sent] == [
        ("drift", "lanai: the server differs from git (1 item(s))")]
    assert "web stopped: container exited" in sent[0].body
    # The same item again, and a new one: only the new one is sent.
    sent, state = step(outcome("drift"), state, T0 + timedelta(minutes=1), drift=[STOPPED, other])
    assert len(sent) == 1 and "model llama3.1:8b memory" in sent[0].body
    assert "web stopped" not in sent[0].body
    sent, state = step(outcome("no-op"), state, T0 + timedelta(minutes=2))
    assert [(n.kind, n.title) for n in sent] == [("recovery", "lanai: back in sync with git")]
    assert sent[0].body.count("over:") == 2


def test_a_heal_is_told_as_a_recovery_with_what_lanai_did():
    healed = outcome("healed", drift=[STOPPED],
                     actions=[{"kind": "start", "service": "web", "result": "ok"}])
    sent, state = step(healed, NotifyState(), T0)
    assert [(n.kind, n.title) for n in sent] == [("recovery", "lanai healed the server")]
    assert sent[0].body == ("web stopped: container exited (exit code 137) "
                            "(lanai did: start web)")
    again, _ = step(healed, state, T0 + timedelta(minutes=5))
    assert again == []  # a container that keeps dying does not flood the owner


def test_events_not_listed_are_tracked_but_not_sent():
    only_failures = Policy(events=frozenset({"failure"}), repeat_after=3600)
    sent, state = step(outcome("drift"), NotifyState(), T0, drift=[STOPPED],
                       policy=only_failures)
    assert sent == [] and "drift:web:stopped" in state.open
    sent, _ = step(outcome("no-op"), state, T0 + timedelta(minutes=1), policy=only_failures)
    assert sent == []


def test_a_suspended_reconcile_changes_nothing():
    _, state = step(outcome("failed", "boom"), NotifyState(), T0)
    sent, after = step(outcome("suspended", "reconciliation is suspended"), state,
                       T0 + timedelta(minutes=1))
    assert sent == [] and after == state


def test_sources_a_reconcile_did_not_look_at_keep_their_problems():
    webui_failed = outcome("applied", webui={"errors": ["Open WebUI refused the settings"]})
    sent, state = step(webui_failed, NotifyState(), T0)
    assert [n.kind for n in sent] == ["failure"]
    # A failed deploy skips the Open WebUI converge: no false "recovered".
    sent, state = step(outcome("failed", "web did not turn healthy"), state,
                       T0 + timedelta(minutes=1))
    assert [n.kind for n in sent] == ["failure"]
    assert any(k.startswith("failure:webui:") for k in state.open)


def test_model_errors_are_failures_per_model():
    sent, state = step(outcome("no-op"), NotifyState(), T0,
                       models={"llama3.1:8b": "pull failed: disk full"})
    assert [n.kind for n in sent] == ["failure"] and "disk full" in sent[0].body
    sent, _ = step(outcome("no-op"), state, T0 + timedelta(minutes=1))
    assert [n.kind for n in sent] == ["recovery"]


def test_state_round_trips_through_json():
    _, state = step(outcome("failed", "boom"), NotifyState(), T0, drift=[STOPPED])
    assert NotifyState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert NotifyState.from_json({"open": {"x": {"bogus": 1}}}) == NotifyState()
    assert NotifyState.from_json(["not", "a", "dict"]) == NotifyState()


def test_admit_applies_kinds_and_repeat_suppression_to_notices_from_elsewhere():
    backup = Notice("failure", "backup:disk-full", "lanai: backup failed", "disk full")
    state = admit(backup, NotifyState(), ALL, T0)
    assert state is not None and "backup:disk-full" in state.sent
    assert admit(backup, state, ALL, T0 + timedelta(minutes=30)) is None
    assert admit(backup, state, ALL, T0 + timedelta(minutes=61)) is not None
    no_failures = Policy(events=frozenset({"drift"}), repeat_after=60)
    assert admit(backup, NotifyState(), no_failures, T0) is None


def test_report_notice_only_when_something_differs():
    assert report_notice({"written": "w", "in_sync": True, "drift": []}) is None
    notice = report_notice({"written": "2026-03-01T07:00:00.000Z", "applied_commit": "c" * 40,
                            "drift": [{**STOPPED, "since": "2026-02-28T10:00:00.000Z"}]})
    assert notice is not None and notice.kind == "report"
    assert notice.title == "lanai drift report: 1 difference(s) from git (cccccccccccc)"
    assert notice.body == ("web stopped since 2026-02-28T10:00:00.000Z: container exited "
                           "(exit code 137)")


# -- the schema ------------------------------------------------------------------------

def test_notify_secret_names_are_required_like_any_secret():
    config = LanaiConfig.model_validate({"notify": {"urls": ["NOTIFY_URL", "ntfy://ntfy.sh/x"],
                                                    "repeat_after": "6h"}})
    assert "NOTIFY_URL" in config.secret_names()
    assert config.notify.repeat_after == 21600
    assert config.notify.events == ["failure", "drift", "recovery", "report"]
    assert config.drift_report.at == "07:00"


@pytest.mark.parametrize(("notify", "message"), [
    ({"urls": ["mailtos://me:hunter2@example.com"]}, "carries a password"),
    ({"urls": ["not a url"]}, "neither a secret name"),
    ({"events": ["everything"]}, "failure"),
    ({"repeat_after": "10s"}, "greater than or equal to 60"),
])
def test_bad_notify_settings_are_refused(notify: dict[str, Any], message: str):
    with pytest.raises(ValidationError, match=message):
        LanaiConfig.model_validate({"notify": notify})


def test_a_bad_report_time_is_refused():
    with pytest.raises(ValidationError, match="HH:MM"):
        LanaiConfig.model_validate({"drift_report": {"at": "7am"}})


# -- sending, for real, to an HTTP receiver on 127.0.0.1 -------------------------------

@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def settings_for(tmp_path: Path, secrets: dict[str, str]) -> ServerSettings:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    secrets_file.chmod(0o600)
    return ServerSettings(home=tmp_path / "home", repo=None, branch=None,
                          secrets_file=secrets_file, config_file=tmp_path / "server.yaml",
                          deploy_key=tmp_path / "key")


def test_send_reaches_a_json_receiver_and_logs_only_scheme_and_host(
        receiver: Receiver, caplog: pytest.LogCaptureFixture):
    url = f"json://127.0.0.1:{receiver.port}/hook/tok3n-s3cret"
    caplog.set_level(logging.DEBUG)
    notice = Notice("failure", "k", "lanai: web failed", "web did not turn healthy")
    assert notify_send.send([url], notice) == 1
    [(path, body)] = receiver.bodies
    assert path == "/hook/tok3n-s3cret"
    assert (body["title"], body["message"], body["type"]) == (
        "lanai: web failed", "web did not turn healthy", "failure")
    assert "tok3n-s3cret" not in caplog.text
    assert "failure notice sent to json://127.0.0.1" in caplog.text


def test_a_refusing_or_absent_target_is_logged_without_its_token_and_never_raises(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    refusing = Receiver(status=500)
    try:
        caplog.set_level(logging.DEBUG)
        notice = Notice("drift", "k", "t", "b")
        dead = Receiver()
        dead_port = dead.port
        dead.close()  # nothing listens there any more
        urls = [f"json://127.0.0.1:{refusing.port}/t/s3cret-one",
                f"json://127.0.0.1:{dead_port}/t/s3cret-two", "nosuchscheme://x/s3cret-three"]
        assert notify_send.send(urls, notice) == 0
    finally:
        refusing.close()
    assert caplog.text.count("drift notice to json://127.0.0.1 failed") == 2
    assert "drift notice to nosuchscheme://x failed" in caplog.text
    assert "s3cret" not in caplog.text


def test_notify_event_resolves_secret_urls_and_suppresses_repeats(
        tmp_path: Path, receiver: Receiver):
    settings = settings_for(tmp_path, {"NOTIFY_URL": f"json://127.0.0.1:{receiver.port}/n"})
    config = LanaiConfig.model_validate({"notify": {"urls": ["NOTIFY_URL"]}})
    notice = Notice("failure", "backup:verify", "lanai: backup failed", "integrity check")
    assert notify_send.notify_event(settings, config, notice) is True
    assert notify_send.notify_event(settings, config, notice) is False
    assert len(receiver.bodies) == 1
    state_file = settings.home / "notify.json"
    assert state_file.stat().st_mode & 0o077 == 0  # root-only
    assert f"{receiver.port}" not in state_file.read_text()


def test_a_missing_notify_secret_is_logged_by_name_and_nothing_is_sent(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    settings = settings_for(tmp_path, {})
    config = LanaiConfig.model_validate({"notify": {"urls": ["NOTIFY_URL"]}})
    notice = Notice("failure", "k", "t", "b")
    assert notify_send.notify_event(settings, config, notice) is False
    assert "names secret NOTIFY_URL, which is not in" in caplog.text


def test_the_daily_report_is_written_always_and_sent_only_when_something_differs(
        tmp_path: Path, receiver: Receiver):
    settings = settings_for(tmp_path, {"NOTIFY_URL": f"json://127.0.0.1:{receiver.port}/r"})
    config = LanaiConfig.model_validate({"notify": {"urls": ["NOTIFY_URL"]}})
    drift_report.record(settings, [], "c" * 40, datetime.now(UTC))
    in_sync = notify_send.daily_report(settings, config)
    assert in_sync["in_sync"] is True and receiver.bodies == []
    assert drift_report.report_path(settings).exists()
    stopped = {"service": "web", "kind": "stopped", "detail": "container exited"}
    drift_report.record(settings, [stopped], "c" * 40, datetime.now(UTC))
    report = notify_send.daily_report(settings, config)
    [(_, body)] = receiver.bodies
    assert body["title"] == "lanai drift report: 1 difference(s) from git (cccccccccccc)"
    assert body["message"].startswith("web stopped since ")
    assert drift_report.read_json(drift_report.report_path(settings)) == report
