"""The drift report: first-seen tracking across reconciles, the report, its text, its files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli.main import main
from reconciler.daemon.run import Daemon
from reconciler.notify import drift_report
from reconciler.server.settings import ServerSettings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STOPPED = {"service": "web", "kind": "stopped", "detail": "container exited"}
SPILLED = {"service": "model llama3.1:8b", "kind": "memory", "detail": "30% on the CPU"}


def settings_in(tmp_path: Path) -> ServerSettings:
    return ServerSettings(home=tmp_path / "home", repo=None, branch=None,
                          secrets_file=tmp_path / "secrets.env",
                          config_file=tmp_path / "server.yaml", deploy_key=tmp_path / "key")


def test_an_item_keeps_its_first_seen_time_while_it_lasts():
    first = drift_report.track({}, [STOPPED], "c1", T0)
    later = drift_report.track(first, [{**STOPPED, "detail": "container exited (137)"},
                                       SPILLED], "c1", T0 + timedelta(hours=3))
    assert later["items"]["web:stopped"]["since"] == "2026-03-01T12:00:00.000Z"
    assert later["items"]["web:stopped"]["detail"] == "container exited (137)"
    assert later["items"]["model llama3.1:8b:memory"]["since"] == "2026-03-01T15:00:00.000Z"


def test_an_item_that_went_away_and_came_back_is_new_again():
    first = drift_report.track({}, [STOPPED], "c1", T0)
    gone = drift_report.track(first, [], "c1", T0 + timedelta(minutes=1))
    assert gone["items"] == {}
    back = drift_report.track(gone, [STOPPED], "c1", T0 + timedelta(minutes=2))
    assert back["items"]["web:stopped"]["since"] == "2026-03-01T12:02:00.000Z"


def test_the_report_lists_items_oldest_first_with_the_commit():
    since = drift_report.track({}, [STOPPED], "c" * 40, T0)
    since = drift_report.track(since, [SPILLED, STOPPED], "c" * 40, T0 + timedelta(hours=1))
    report = drift_report.build(since, T0 + timedelta(days=1))
    assert report["written"] == "2026-03-02T12:00:00.000Z"
    assert report["applied_commit"] == "c" * 40 and report["in_sync"] is False
    assert [(i["service"], i["since"]) for i in report["drift"]] == [
        ("web", "2026-03-01T12:00:00.000Z"), ("model llama3.1:8b", "2026-03-01T13:00:00.000Z")]


def test_a_report_made_now_from_live_items_keeps_tracked_since_times():
    since = drift_report.track({}, [STOPPED], "c1", T0)
    report = drift_report.build(since, T0 + timedelta(hours=5), live=[STOPPED, SPILLED],
                                commit="c1")
    assert {i["service"]: i["since"] for i in report["drift"]} == {
        "web": "2026-03-01T12:00:00.000Z", "model llama3.1:8b": "2026-03-01T17:00:00.000Z"}


def test_the_text_is_a_table_or_one_in_sync_line():
    since = drift_report.track({}, [STOPPED, SPILLED], "c" * 40, T0)
    lines = drift_report.render_lines(drift_report.build(since, T0))
    assert lines == [
        "drift report written 2026-03-01T12:00:00.000Z",
        "2 difference(s) from cccccccccccc:",
        "  SERVICE            KIND     SINCE                     DETAIL",
        "  model llama3.1:8b  memory   2026-03-01T12:00:00.000Z  30% on the CPU",
        "  web                stopped  2026-03-01T12:00:00.000Z  container exited",
    ]
    in_sync = drift_report.build(drift_report.track({}, [], "c" * 40, T0), T0)
    assert drift_report.render_lines(in_sync)[1] == "in sync: the server matches cccccccccccc"


def test_recording_writes_a_root_only_file_and_nothing_on_an_idle_poll(tmp_path: Path):
    settings = settings_in(tmp_path)
    drift_report.record(settings, [STOPPED], "c1", T0)
    path = drift_report.since_path(settings)
    assert path.stat().st_mode & 0o077 == 0
    written = path.stat().st_mtime_ns
    path.touch()  # a marker: an idle poll must leave the file as it is
    marker = path.stat().st_mtime_ns
    drift_report.record(settings, [STOPPED], "c1", T0 + timedelta(minutes=1))
    assert path.stat().st_mtime_ns == marker >= written
    drift_report.record(settings, [], "c1", T0 + timedelta(minutes=2))
    assert json.loads(path.read_text())["items"] == {}


def test_write_report_keeps_the_latest_report_on_the_server(tmp_path: Path):
    settings = settings_in(tmp_path)
    drift_report.record(settings, [STOPPED], "c1", T0)
    report = drift_report.write_report(settings, T0 + timedelta(days=1))
    assert drift_report.read_json(drift_report.report_path(settings)) == report
    assert drift_report.report_path(settings).stat().st_mode & 0o077 == 0


def test_lanai_drift_report_without_a_report_says_how_to_get_one(tmp_path: Path):
    env = {"LANAI_HOME": str(tmp_path / "home"), "LANAI_CONFIG": str(tmp_path / "none.yaml")}
    result = CliRunner().invoke(main, ["drift", "--report"], env=env)
    assert result.exit_code == 9
    assert "lanai drift --report --now" in result.output


def test_lanai_drift_report_prints_the_kept_report_as_text_and_json(tmp_path: Path):
    settings = settings_in(tmp_path)
    drift_report.record(settings, [STOPPED], "c" * 40, T0)
    drift_report.write_report(settings, T0 + timedelta(hours=1))
    env = {"LANAI_HOME": str(settings.home), "LANAI_CONFIG": str(tmp_path / "none.yaml")}
    text = CliRunner().invoke(main, ["drift", "--report"], env=env)
    assert text.exit_code == 1
    assert "  web      stopped  2026-03-01T12:00:00.000Z  container exited" in text.output
    as_json = CliRunner().invoke(main, ["drift", "--report", "--json"], env=env)
    assert json.loads(as_json.output)["drift"][0]["since"] == "2026-03-01T12:00:00.000Z"


def test_now_without_report_is_a_usage_error(tmp_path: Path):
    result = CliRunner().invoke(main, ["drift", "--now"],
                                env={"LANAI_HOME": str(tmp_path)})
    assert result.exit_code == 2 and "--now goes with --report" in result.output


def test_the_daemon_schedules_the_report_daily_at_the_declared_time(tmp_path: Path):
    daemon = Daemon(settings_in(tmp_path))
    daemon.scheduler.start()  # as in `lanai run`: reconciles (and this) run after the start
    try:
        check_report_job(daemon)
    finally:
        daemon.scheduler.shutdown(wait=False)


def check_report_job(daemon: Daemon) -> None:
    daemon._schedule_report("07:30")
    daemon._schedule_report("07:30")  # every reconcile asks; one job
    [job] = [j for j in daemon.scheduler.get_jobs() if j.id == "drift-report"]
    fields = {f.name: str(f) for f in job.trigger.fields}
    assert (fields["hour"], fields["minute"], fields["day"]) == ("7", "30", "*")
    assert str(job.trigger.timezone) == "UTC"
    daemon._schedule_report("21:05")  # a push changed drift_report.at
    [job] = [j for j in daemon.scheduler.get_jobs() if j.id == "drift-report"]
    assert {f.name: str(f) for f in job.trigger.fields}["hour"] == "21"
