"""lanai's own readiness probe (engines without healthcheck start_interval): the parse of
the health check test forms, the decision, the record, and the probe's exec cycle."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from reconciler.stack import readiness
from reconciler.stack.apply import _health_problem
from reconciler.stack.facts import ContainerFact, docker_time, parse_container, probed_since_start
from reconciler.stack.health import service_health
from reconciler.stack.render import Rendered, ServiceSpec

STARTED = "2026-12-03T03:50:01.123456789Z"


def box(*, health: str | None = "starting", status: str = "running", cid: str = "c1",
        started_at: str | None = STARTED, docker_probed: bool = False) -> ContainerFact:
    return ContainerFact(id=cid, name="p-web-1", service="web", status=status, health=health,
                         image_id="sha256:x", image_ref="x", config_hash="h-web",
                         started_at=started_at, docker_probed=docker_probed)


@pytest.mark.parametrize(("check", "argv"), [
    ({"test": ["CMD", "ollama", "list"]}, ["ollama", "list"]),
    ({"test": ["CMD-SHELL", "curl -fsS http://localhost/ || exit 1"]},
     ["/bin/sh", "-c", "curl -fsS http://localhost/ || exit 1"]),
    ({"test": "pg_isready"}, ["/bin/sh", "-c", "pg_isready"]),
    ({"test": ["NONE"]}, None),
    ({"test": ["CMD"]}, None),
    ({"test": ["CMD-SHELL", " "]}, None),
    ({"test": []}, None),  # the image's own check: compose does not show it
    ({"test": ["CMD", "true"], "disable": True}, None),
    ({"disable": True}, None),
    ({"test": ["CMD", 1]}, None),
    (None, None),
    ("CMD true", None),
])
def test_probe_argv_follows_dockers_test_forms(check: Any, argv: list[str] | None) -> None:
    assert readiness.probe_argv(check) == argv


@pytest.mark.parametrize(("check", "seconds"), [
    ({"timeout": "3s"}, 3.0), ({"timeout": "1m30s"}, 90.0), ({"timeout": "500ms"}, 0.5),
    ({}, 30.0), ({"timeout": "soon"}, 30.0), (None, 30.0),
])
def test_probe_timeout_is_the_checks_own(check: Any, seconds: float) -> None:
    assert readiness.probe_timeout(check) == seconds


def test_seen_ready_only_for_this_start_while_docker_has_not_probed() -> None:
    passed = {("c1", STARTED)}
    assert readiness.seen_ready(box(), passed)
    assert not readiness.seen_ready(box(), set())
    assert not readiness.seen_ready(box(started_at="2026-12-03T04:00:00Z"), passed)  # restarted
    assert not readiness.seen_ready(box(cid="c2"), passed)  # recreated
    assert not readiness.seen_ready(box(docker_probed=True), passed)  # Docker's verdict wins
    assert not readiness.seen_ready(box(health="unhealthy", docker_probed=True), passed)
    assert not readiness.seen_ready(box(status="exited"), passed)
    assert not readiness.seen_ready(box(started_at=None), {("c1", "")})


def test_status_says_healthy_when_lanais_probe_passed_and_docker_has_not_probed() -> None:
    passed = {("c1", STARTED)}
    assert service_health("h-web", [box()], passed) == ("Healthy", "running", None)
    assert service_health("h-web", [box()]) == ("Progressing", "running",
                                                "health check starting")
    assert service_health("h-web", [box(health="unhealthy", docker_probed=True)], passed)[0] \
        == "Degraded"
    assert service_health("h-web", [box(docker_probed=True)], passed)[0] == "Progressing"


def test_the_health_wait_counts_a_passed_probe_and_never_fails_on_one() -> None:
    rendered = Rendered(directory=Path("/d"), commit="a" * 40, key="k", project="p",
                        compose_file="compose.yaml",
                        services={"web": ServiceSpec("web", "h-web", "x", {})})
    assert _health_problem(rendered, "web", [box()], {("c1", STARTED)}) is None
    assert _health_problem(rendered, "web", [box()], set()) == ("waiting",
                                                                "health check starting")
    unhealthy = box(health="unhealthy", docker_probed=True)
    assert _health_problem(rendered, "web", [unhealthy], {("c1", STARTED)})[0] == "failed"


def test_docker_time_reads_nanoseconds_and_zones() -> None:
    assert docker_time("2026-12-03T03:50:01.5Z") == docker_time("2026-12-03T04:50:01.5+01:00")
    assert docker_time(STARTED) == pytest.approx(docker_time("2026-12-03T03:50:01Z") + 0.123456)
    assert docker_time("0001-01-01T00:00:00Z") is None
    assert docker_time("") is None and docker_time("yesterday") is None


def test_probed_since_start_ignores_probes_of_an_earlier_start() -> None:
    before = {"Start": "2026-12-03T03:49:58.1Z", "ExitCode": 0}
    after = {"Start": "2026-12-03T03:50:11.2+00:00", "ExitCode": 1}
    assert not probed_since_start(None, STARTED)
    assert not probed_since_start({"Status": "starting", "Log": []}, STARTED)
    assert not probed_since_start({"Status": "starting", "Log": [before]}, STARTED)
    assert probed_since_start({"Status": "starting", "Log": [before, after]}, STARTED)
    attrs = {"Id": "c1", "Config": {"Labels": {}},
             "State": {"Status": "running", "StartedAt": STARTED,
                       "Health": {"Status": "starting", "Log": [before]}}}
    fact = parse_container(attrs)
    assert fact is not None and fact.health == "starting" and not fact.docker_probed
    attrs["State"]["Health"]["Log"].append(after)
    assert parse_container(attrs).docker_probed


def test_the_record_keeps_the_newest_passed_containers_private(tmp_path: Path) -> None:
    path = readiness.file(tmp_path)
    assert readiness.read(path) == frozenset()
    for number in range(readiness.KEEP + 3):
        readiness.remember(path, box(cid=f"c{number}"))
    readiness.remember(path, box(cid="c5", started_at="later"))
    passed = readiness.read(path)
    assert len(passed) == readiness.KEEP
    assert ("c5", "later") in passed and ("c5", STARTED) not in passed
    assert ("c0", STARTED) not in passed and (f"c{readiness.KEEP + 2}", STARTED) in passed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("{not json", encoding="utf-8")
    assert readiness.read(path) == frozenset()


class FakeApi:
    """The SDK's low-level exec calls, recorded: each exec ends with the next exit code."""

    def __init__(self, codes: list[int | None]) -> None:
        self.codes = codes
        self.created: list[tuple[str, list[str]]] = []

    def exec_create(self, container: str, cmd: list[str], **_kw: Any) -> dict[str, str]:
        self.created.append((container, cmd))
        return {"Id": f"e{len(self.created)}"}

    def exec_start(self, exec_id: str, detach: bool) -> None:
        assert detach

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        code = self.codes[int(exec_id[1:]) - 1]
        return {"Running": code is None, "ExitCode": code}


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api = api


def test_the_prober_execs_the_test_in_the_container_and_records_a_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: clock[0])
    api = FakeApi([1, 0])
    prober = readiness.Prober(FakeClient(api), readiness.file(tmp_path))  # type: ignore[arg-type]
    check = {"test": ["CMD-SHELL", "curl -fsS http://localhost:8000/"], "timeout": "3s"}
    assert not prober.poll(box(), check)  # starts the first exec
    assert api.created == [("c1", ["/bin/sh", "-c", "curl -fsS http://localhost:8000/"])]
    clock[0] += 0.1
    assert not prober.poll(box(), check)  # the first failed: not a failure, and not yet again
    assert len(api.created) == 1
    clock[0] += readiness.PROBE_EVERY_S
    assert not prober.poll(box(), check)  # the second starts
    assert prober.poll(box(), check)  # ... and passed
    assert readiness.read(readiness.file(tmp_path)) == {("c1", STARTED)}
    assert prober.poll(box(), check) and len(api.created) == 2  # remembered, no more execs
    assert not prober.poll(box(docker_probed=True), check)  # Docker has spoken
    assert not prober.poll(box(cid="c9"), {"test": ["NONE"]}) and len(api.created) == 2


def test_a_probe_past_its_timeout_is_left_and_another_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(readiness.time, "monotonic", lambda: clock[0])
    api = FakeApi([None, 0])
    prober = readiness.Prober(FakeClient(api), readiness.file(tmp_path))  # type: ignore[arg-type]
    check = {"test": ["CMD", "ollama", "list"], "timeout": "1s"}
    assert not prober.poll(box(), check)
    clock[0] += 0.9
    assert not prober.poll(box(), check) and len(api.created) == 1  # still within 1 s
    clock[0] += 0.2
    assert not prober.poll(box(), check) and len(api.created) == 2  # abandoned, next one
    assert prober.poll(box(), check)
