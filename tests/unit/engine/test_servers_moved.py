"""Swarm mode: a server going down or coming back makes a poll converge the parts again
(its models left out, its Open WebUI connection off, then on), with no push."""

from __future__ import annotations

from reconciler.engine.reconcile import servers_down


def test_the_servers_down_are_read_from_the_stack_checks_drift() -> None:
    drift = [{"service": "box-c", "kind": "server-down", "detail": "box-c is down"},
             {"service": "box-d", "kind": "server-absent", "detail": "no node"},
             {"service": "ollama-box-b", "kind": "changed", "detail": "spec"},
             {"service": "box-e", "kind": "server-drained", "detail": "drained"}]
    assert servers_down(drift) == {"box-c", "box-d", "box-e"}
    assert servers_down([]) == servers_down(None) == set()
    # back: the set changes, so the parts run on that poll
    assert servers_down(drift[2:3]) != servers_down(drift)
