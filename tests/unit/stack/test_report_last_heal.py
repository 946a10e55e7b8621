from __future__ import annotations

from reconciler.stack.health import last_heal

HEAL = {"at": "2026-01-02T03:04:05Z", "trigger": "event", "status": "healed",
        "drift": [{"service": "open-webui", "kind": "unhealthy",
                   "detail": "health check failing"}],
        "actions": [{"kind": "restart", "service": "open-webui", "result": "ok"}]}


def test_the_newest_heal_is_reported_past_newer_records_of_other_kinds() -> None:
    older = {**HEAL, "at": "2026-01-01T00:00:00Z"}
    history = [{"at": "2026-01-03T00:00:00Z", "status": "applied", "drift": [], "actions": []},
               HEAL, older]
    assert last_heal(history) == {"at": HEAL["at"], "trigger": "event", "drift": HEAL["drift"],
                                  "actions": HEAL["actions"]}


def test_no_heal_in_the_history_is_none() -> None:
    assert last_heal([{"status": "applied"}, {"status": "failed"}]) is None
    assert last_heal([]) is None
