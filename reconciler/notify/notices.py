"""What to tell the owner after a reconcile: pure, no I/O.

A reconcile is turned into *problems* (failures and drift, each with a key that
says what "the same" problem is) and compared with what was told before. A new
problem is sent; the same problem again within `repeat_after` is suppressed
(and sent again as a reminder after it, while it lasts); a problem that was
told and is over gets one recovery notice. Sending lives in notify_send.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from reconciler.server.record import iso, parse_iso

Kind = Literal["failure", "drift", "recovery", "report"]
# Swarm mode: a server's node is down (swarm/plan.py's drift; its detail names the server
# and its models, so the notice says it alone).
SERVER_DOWN = "server-down"
# Sources of problems; a source the reconcile did not look at keeps its problems as they were.
SOURCES = ("stack", "models", "webui", "drift")
STACK_FAILED = ("failed", "waiting", "source-error")


@dataclass(frozen=True)
class Notice:
    kind: Kind
    key: str  # what repeats compare
    title: str
    body: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Policy:
    events: frozenset[str]
    repeat_after: float  # seconds


@dataclass
class Problem:
    kind: Kind  # failure or drift
    text: str
    since: str
    told: bool = False  # a notice about it was sent in this episode


@dataclass
class NotifyState:
    """notify.json: the problems open now, and when each key was last sent."""

    open: dict[str, Problem] = field(default_factory=dict)
    sent: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"open": {k: asdict(p) for k, p in sorted(self.open.items())},
                "sent": dict(sorted(self.sent.items()))}

    @classmethod
    def from_json(cls, data: Any) -> NotifyState:
        if not isinstance(data, dict):
            return cls()
        try:
            return cls(open={k: Problem(**p) for k, p in (data.get("open") or {}).items()},
                       sent={k: str(v) for k, v in (data.get("sent") or {}).items()})
        except TypeError:  # a file from another version: start over rather than stop
            return cls()


@dataclass
class Observed:
    """The problems one reconcile saw, per source; None: that source was not looked at."""

    problems: dict[str, dict[str, tuple[Kind, str]] | None]
    healed: list[str] = field(default_factory=list)
    commit: str | None = None


def key_text(text: str) -> str:
    # Counters and timings inside a message ("attempt 3", "in 40s") must not make a
    # repeat of the same problem look new.
    return re.sub(r"\d+", "#", text.strip())


def observe(outcome: dict[str, Any], drift: list[dict[str, Any]] | None,
            model_errors: dict[str, str] | None) -> Observed | None:
    """Problems in a reconcile's outcome (Outcome.to_json()).

    `drift` is the drift on record after it (stack, models, Open WebUI: see
    drift_report.collect); `model_errors` are the declared models' last errors.
    None when the reconcile observed nothing (suspended).
    """
    status = outcome.get("status")
    if status == "suspended":
        return None
    problems: dict[str, dict[str, tuple[Kind, str]] | None] = {s: None for s in SOURCES}
    error = outcome.get("error")
    stack: dict[str, tuple[Kind, str]] = {}
    if status in STACK_FAILED and error:
        # A failed commit is news per commit; the repo being unreachable is one problem.
        commit = (outcome.get("commit") or "")[:12] if status != "source-error" else ""
        stack[f"failure:stack:{commit}:{key_text(error)}"] = ("failure", error)
    problems["stack"] = stack
    if model_errors is not None:
        problems["models"] = {f"failure:model:{name}:{key_text(text)}": ("failure", text)
                              for name, text in model_errors.items()}
    webui = outcome.get("webui")
    if webui:  # converged this time; otherwise what it said last time stands
        problems["webui"] = {f"failure:webui:{key_text(text)}": ("failure", text)
                             for text in webui.get("errors") or []}
    if drift is not None:
        problems["drift"] = {
            f"drift:{item.get('service')}:{item.get('kind')}":
                ("drift", str(item.get("detail")) if item.get("kind") == SERVER_DOWN
                 else f"{item.get('service')} {item.get('kind')}: {item.get('detail')}")
            for item in drift}
    healed: list[str] = []
    if status == "healed":
        done = ", ".join(f"{a.get('kind')} {a.get('service')}" for a in outcome.get("actions")
                         or [])
        for item in outcome.get("drift") or []:
            healed.append(f"{item.get('service')} {item.get('kind')}: {item.get('detail')}"
                          + (f" (lanai did: {done})" if done else ""))
    return Observed(problems=problems, healed=healed, commit=outcome.get("commit"))


def notices(observed: Observed | None, previous: NotifyState, policy: Policy,
            now: datetime) -> tuple[list[Notice], NotifyState]:
    """The notices to send now, and the state to remember after sending them."""
    if observed is None:
        return [], previous
    state = NotifyState(open={k: replace(p) for k, p in previous.open.items()},
                        sent=recent(previous.sent, policy, now))
    out: list[Notice] = []
    due: dict[Kind, list[tuple[str, Problem]]] = {"failure": [], "drift": []}
    over: list[tuple[str, Problem]] = []
    for source, found in observed.problems.items():
        if found is None:
            continue
        prefix = _prefix(source)
        for key in [k for k in state.open if k.startswith(prefix) and k not in found]:
            gone = state.open.pop(key)
            # Only what the owner was told about is worth an "it is over"; a commit's failure
            # replaced by another commit's failure is not over.
            if gone.told and not (source == "stack" and found):
                over.append((key, gone))
        for key, (kind, text) in found.items():
            problem = state.open.get(key) or Problem(kind=kind, text=text, since=iso(now))
            problem.text = text
            state.open[key] = problem
            if kind in policy.events and key not in state.sent:
                due[kind].append((key, problem))
    if over and "recovery" in policy.events:
        out.append(_recovery(over))
    for kind, items in due.items():
        if items:
            out.append(_grouped(kind, items))
            for key, problem in items:
                problem.told = True
                state.sent[key] = iso(now)
    if observed.healed and "recovery" in policy.events:
        key = "healed:" + key_text("; ".join(sorted(observed.healed)))
        if key not in state.sent:
            state.sent[key] = iso(now)
            out.append(Notice("recovery", key, "lanai healed the server",
                              "\n".join(observed.healed)))
    return out, state


def admit(notice: Notice, previous: NotifyState, policy: Policy,
          now: datetime) -> NotifyState | None:
    """For a notice from elsewhere in lanai (a backup, a GPU check): the state after sending
    it, or None when its kind is not wanted or its key was sent within repeat_after."""
    sent = recent(previous.sent, policy, now)
    if notice.kind not in policy.events or notice.key in sent:
        return None
    return NotifyState(open=previous.open, sent={**sent, notice.key: iso(now)})


def report_notice(report: dict[str, Any]) -> Notice | None:
    """The daily drift report as a notice; None when nothing differs (no daily noise)."""
    items = report.get("drift") or []
    if not items:
        return None
    commit = (report.get("applied_commit") or "?")[:12]
    lines = [f"{i['service']} {i['kind']} since {i['since']}: {i['detail']}" for i in items]
    return Notice("report", f"report:{report.get('written')}",
                  f"lanai drift report: {len(items)} difference(s) from git ({commit})",
                  "\n".join(lines))


def _prefix(source: str) -> str:
    return {"stack": "failure:stack:", "models": "failure:model:", "webui": "failure:webui:",
            "drift": "drift:"}[source]


def recent(sent: dict[str, str], policy: Policy, now: datetime) -> dict[str, str]:
    """Sent keys still inside repeat_after; older ones may be sent again."""
    window = timedelta(seconds=policy.repeat_after)
    return {k: at for k, at in sent.items() if now - parse_iso(at) < window}


def _grouped(kind: Kind, items: list[tuple[str, Problem]]) -> Notice:
    texts = [p.text for _, p in items]
    if kind == "failure":
        title = "lanai: " + (texts[0] if len(texts) == 1 else f"{len(texts)} failures")
    else:
        title = f"lanai: the server differs from git ({len(texts)} item(s))"
    body = "\n".join(f"{p.text} (since {p.since})" for _, p in items)
    return Notice(kind, ";".join(k for k, _ in items), title[:200], body)


def _recovery(over: list[tuple[str, Problem]]) -> Notice:
    kinds = {p.kind for _, p in over}
    what = "back in sync with git" if kinds == {"drift"} else "recovered"
    return Notice("recovery", ";".join("recovery:" + k for k, _ in over), f"lanai: {what}",
                  "\n".join(_over(k, p) for k, p in over))


def _over(key: str, problem: Problem) -> str:
    if key.startswith("drift:") and key.endswith(f":{SERVER_DOWN}"):
        server = key.removeprefix("drift:").removesuffix(f":{SERVER_DOWN}")
        return (f"{server} is back: its models are available again (down since "
                f"{problem.since})")
    return f"over: {problem.text} (since {problem.since})"
