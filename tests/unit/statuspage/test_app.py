"""StatusApp's routes: what each path answers, GET and HEAD only, 404 elsewhere, a failure
as a one-line 500 (the traceback in the log), the bench chart, and no secret in any answer."""

from __future__ import annotations

import json
import logging

import pytest

from reconciler.statuspage import app as app_mod
from reconciler.statuspage.app import PLACEHOLDER_SVG, StatusApp

from ..metrics.conftest import PHI3, SECRETS
from .conftest import MARKER, PageServer

ROUTES = {
    "/lanai/": "text/html; charset=utf-8",
    "/lanai/page.js": "text/javascript; charset=utf-8",
    "/lanai/page.css": "text/css; charset=utf-8",
    "/lanai/status.json": "application/json",
    "/lanai/bench.svg": "image/svg+xml",
}


@pytest.mark.parametrize(("path", "kind"), ROUTES.items())
def test_each_route_answers_with_its_type(fresh: StatusApp, path: str, kind: str):
    answer = fresh.respond("GET", path)
    assert (answer.status, answer.content_type) == (200, kind)
    assert answer.body
    head = fresh.respond("HEAD", path)
    assert (head.status, head.content_type, head.body) == (200, kind, b"")


def test_the_query_string_is_ignored(fresh: StatusApp):
    assert fresh.respond("GET", "/lanai/?utm=x").body == fresh.respond("GET", "/lanai/").body
    assert fresh.respond("GET", "/lanai/bench.svg?v=abc123").status == 200
    assert fresh.respond("GET", "/lanai/status.json?x=1#y").status == 200


@pytest.mark.parametrize("path", ["/", "/lanai", "/lanai/index.html", "/lanai/../etc/passwd",
                                  "/lanai/page.js/", "/lanai//status.json", "/api/v1/auths",
                                  "/lanai/assets/page.js", "/LANAI/"])
def test_anything_else_is_404(fresh: StatusApp, path: str):
    answer = fresh.respond("GET", path)
    assert answer.status == 404
    assert json.loads(answer.body) == {"error": "not found"}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"])
@pytest.mark.parametrize("path", list(ROUTES))
def test_only_get_and_head_are_answered(fresh: StatusApp, method: str, path: str):
    answer = fresh.respond(method, path)
    assert answer.status == 405
    assert "error" in json.loads(answer.body)


def test_a_failure_is_a_one_line_500_and_the_traceback_goes_to_the_log(
        fresh: StatusApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    def broken(*_args: object) -> dict[str, object]:
        raise RuntimeError(f"state.json exploded near {MARKER}")

    monkeypatch.setattr(app_mod, "snapshot", broken)
    with caplog.at_level(logging.ERROR, logger="lanai.statuspage"):
        answer = fresh.respond("GET", "/lanai/status.json")
    assert (answer.status, answer.content_type) == (500, "application/json")
    assert answer.body.count(b"\n") == 0
    assert list(json.loads(answer.body)) == ["error"]
    assert b"Traceback" not in answer.body and b"exploded" not in answer.body
    assert any(r.exc_info and "exploded" in str(r.exc_info[1]) for r in caplog.records)
    assert fresh.respond("GET", "/lanai/").status == 200  # the page itself still loads


def test_the_bench_chart_and_its_placeholder(fresh: StatusApp, page_server: PageServer):
    assert fresh.respond("GET", "/lanai/bench.svg").body.decode() == PLACEHOLDER_SVG
    svg = page_server.app.respond("GET", "/lanai/bench.svg").body.decode()
    assert svg.startswith("<svg") and PHI3 in svg and "no data" not in svg


def test_no_secret_in_any_answer(page_server: PageServer, fresh: StatusApp):
    secrets = {*SECRETS.values(), MARKER}
    for app in (page_server.app, fresh):
        for path in ROUTES:
            body = app.respond("GET", path).body.decode()
            leaked = [s for s in secrets if s in body]
            assert not leaked, (path, leaked)
            assert "PRIVATE KEY" not in body and "token-" not in body
