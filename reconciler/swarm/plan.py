"""The swarm planner: the stack file lanai rendered + the swarm's facts -> whether each
service is up, the drift, and the actions that converge it, each with the one line a
user reads in `lanai plan` and `lanai status`. Pure.

A service is up when it has a task that Swarm wants running (DesiredState running), that
runs (State running: with a healthcheck that means healthy), on a node that is ready and
active. `ServiceStatus.RunningTasks` (what `docker service ls` shows as 1/1) counts tasks
by state alone: a task on a node that died keeps State running until the node's entry
expires, so a dead server's service reads 1/1 (design notes 1.4, slice 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from reconciler.desired.servers import Server
from reconciler.swarm.deploy import LABEL_HASH, SERVER_LABEL, listing
from reconciler.swarm.facts import Facts, NodeFact, ServiceFact, TaskFact

Health = Literal["up", "down", "progressing"]
DriftKind = Literal["missing", "changed", "replicas", "extra", "rolled-back", "pending",
                    "server-down", "server-drained", "server-absent", "unknown-node"]
IN_PROGRESS = {"updating": "an update is in progress",
               "rollback_started": "Swarm is rolling an update back"}
PAUSED = ("paused",)
# Swarm put the previous spec back (or is doing so): the spec lanai deployed failed.
ROLLED_BACK = ("rollback_started", "rollback_paused", "rollback_completed")
# Node states that make a server-down notice. Not `unknown`: a manager that restarted or
# changed leader lists every worker so ("Node moved to "unknown" state due to leadership
# change in cluster") until they report again, seconds later; its services still read down.
DOWN = ("down", "disconnected")


@dataclass(frozen=True)
class ServiceState:
    name: str
    server: str | None  # the server a per-server service (ollama-<server>) is pinned to
    health: Health
    running: int  # tasks that count by lanai's rule
    replicas: int | None  # wanted; None for a global service
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Drift:
    subject: str  # a service or a server
    kind: DriftKind
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelNode:
    node: str  # the node's ID
    hostname: str
    server: str
    labels: Mapping[str, str]  # to add or correct, io.lanai.server first
    reason: str
    kind: Literal["label-node"] = "label-node"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "labels": dict(self.labels)}


@dataclass(frozen=True)
class Deploy:
    stage: int  # 1-based
    stages: int
    services: tuple[str, ...]  # the services this stage changes
    stack: Mapping[str, Any]  # the stack file to deploy at this stage
    prune: bool  # only the full file may prune: a stage leaves later Ollamas out
    reason: str
    kind: Literal["deploy"] = "deploy"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "stack"}


Action = LabelNode | Deploy


@dataclass(frozen=True)
class SwarmPlan:
    services: tuple[ServiceState, ...]
    drift: tuple[Drift, ...]
    actions: tuple[Action, ...]

    @property
    def empty(self) -> bool:
        return not self.actions

    @property
    def converged(self) -> bool:
        """Nothing to do and every service up: what a deploy waits for."""
        return self.empty and all(s.health == "up" for s in self.services)

    @property
    def rolled_back(self) -> list[Drift]:
        """Services Swarm rolled back: the commit failed (deterministic, not retried)."""
        return [d for d in self.drift if d.kind == "rolled-back"]

    def to_json(self) -> dict[str, Any]:
        return {"services": [s.to_json() for s in self.services],
                "drift": [d.to_json() for d in self.drift],
                "actions": [a.to_json() for a in self.actions]}


def plan(stack: Mapping[str, Any], facts: Facts, servers: Sequence[Server], *,
         models: Mapping[str, Sequence[str]] | None = None,
         deployed: Mapping[str, str] | None = None) -> SwarmPlan:
    """What it takes to bring the swarm (`facts`) to `stack` (a StackFile's stack) for
    lanai.yaml's `servers`.

    `models`: server -> the models placed on it (servers.placement), named when a server
    is down. `deployed`: service -> the config hash lanai last deployed (its record): a
    service Swarm rolled back stays failed until git has another hash for it; None: every
    rollback counts as this commit's.
    """
    wanted: dict[str, Any] = dict(stack.get("services") or {})
    nodes, unknown = match_nodes(facts.nodes, servers)
    states = tuple(service_state(name, spec, facts, nodes) for name, spec in wanted.items())
    drift: list[Drift] = []
    to_deploy: list[str] = []
    held: list[str] = []
    for name, spec in wanted.items():
        found, deploys = service_drift(name, spec, facts.service(name), deployed)
        drift += found
        to_deploy += [name] if deploys else []
        held += [name] if any(d.kind == "rolled-back" for d in found) else []
        drift += pending_drift(name, spec, facts, nodes)
    extra = [s.name for s in facts.services if s.name not in wanted]
    when = "once the rolled-back commit is replaced" if held else ""
    drift += [Drift(name, "extra", f"{name} runs in the swarm but is not in git: the deploy "
                    f"removes it (--prune){' ' + when if when else ''}") for name in extra]
    drift += server_drift(servers, nodes, wanted, models or {})
    drift += [unknown_node(node, servers) for node in unknown]
    actions: list[Action] = [*label_actions(servers, nodes)]
    if to_deploy or (extra and not held):  # pruning is all a held stack could do
        actions += stages(stack, to_deploy, held, servers, nodes, extra=bool(extra))
    return SwarmPlan(services=states, drift=tuple(drift), actions=tuple(actions))


def desired_hash(spec: Mapping[str, Any]) -> str | None:
    return ((spec.get("deploy") or {}).get("labels") or {}).get(LABEL_HASH)


def desired_server(spec: Mapping[str, Any]) -> str | None:
    return ((spec.get("deploy") or {}).get("labels") or {}).get(SERVER_LABEL)


def desired_replicas(spec: Mapping[str, Any]) -> int | None:
    deploy = spec.get("deploy") or {}
    return None if deploy.get("mode") == "global" else int(deploy.get("replicas", 1))


def match_nodes(nodes: Sequence[NodeFact], servers: Sequence[Server]
                ) -> tuple[dict[str, NodeFact], list[NodeFact]]:
    """Server name -> its node, and the nodes that are no server of lanai.yaml. A node is a
    server's by its io.lanai.server label, else (before bootstrap labelled it, or after a
    rename in lanai.yaml) by hostname or the address lanai.yaml gives. A server that left
    and joined again has a new node and an old Down entry: the ready one wins."""
    found: dict[str, NodeFact] = {}
    names = {s.name for s in servers}
    for server in servers:
        claims = [n for n in nodes if n.server == server.name]
        # unlabelled, or labelled with a name lanai.yaml no longer has (a renamed server)
        claims += [n for n in nodes if n.server not in names and n not in claims and (
            n.hostname == server.name or (server.address and n.address == server.address))]
        if claims:
            found[server.name] = min(claims, key=lambda n: (n.state != "ready",
                                                            n.server != server.name))
    chosen = {n.id for n in found.values()}
    return found, [n for n in nodes if n.id not in chosen]


def running_tasks(tasks: Sequence[TaskFact], facts: Facts) -> list[TaskFact]:
    """lanai's rule (module docstring)."""
    out = []
    for task in tasks:
        node = facts.node(task.node_id)
        if task.desired_state == task.state == "running" and node and node.schedulable:
            out.append(task)
    return out


def service_state(name: str, spec: Mapping[str, Any], facts: Facts,
                  nodes: Mapping[str, NodeFact]) -> ServiceState:
    server = desired_server(spec)
    live = facts.service(name)
    replicas = live.replicas if live else desired_replicas(spec)
    good = running_tasks(facts.tasks_of(name), facts)
    if live is None:
        return ServiceState(name, server, "down", 0, replicas, f"{name} is not in the swarm")
    if len(good) >= (replicas if replicas is not None else 1):
        where = sorted({node.describe() for t in good if (node := facts.node(t.node_id))})
        return ServiceState(name, server, "up", len(good), replicas,
                            f"{name} runs on {listing(where)}" if where else f"{name} has "
                            "no replicas")
    if live.update_state in IN_PROGRESS:
        waiting = [t.error for t in facts.tasks_of(name)
                   if t.state == "pending" and t.desired_state != "shutdown" and t.error]
        return ServiceState(name, server, "progressing", len(good), replicas,
                            f"{name}: {IN_PROGRESS[live.update_state]}" +
                            (f"; its task waits: {waiting[-1]}" if waiting else ""))
    return ServiceState(name, server, "down", len(good), replicas,
                        f"{name} is down: {why_down(live, facts, server, nodes)}")


def why_down(live: ServiceFact, facts: Facts, server: str | None,
             nodes: Mapping[str, NodeFact]) -> str:
    """The first thing a person can act on: the server, a task that cannot be placed, one
    that is starting, the last error."""
    tasks = facts.tasks_of(live.name)
    home = nodes.get(server or "")
    if home is not None and home.state != "ready":
        return f"its server {server} is {home.state}" + \
            (f" ({home.message})" if home.message else "")
    if home is not None and home.availability != "active":
        word = "drained" if home.availability == "drain" else "paused"
        return f"its server {server} is {word}"
    waiting = [t for t in tasks if t.state == "pending" and t.desired_state != "shutdown"]
    if waiting:
        return f"its task waits: {waiting[-1].why}"
    wanted = [t for t in tasks if t.desired_state in ("running", "ready")]
    if wanted:
        task = max(wanted, key=lambda t: t.timestamp)
        node = facts.node(task.node_id)
        if node is not None and not node.schedulable:
            return f"its task is on {node.describe()}, which is {node.state}/{node.availability}"
        return f"its task is {task.state}" + (f" ({task.why})" if task.why else "")
    failed = [t for t in tasks if t.error]
    if failed:
        return f"its last task failed: {max(failed, key=lambda t: t.timestamp).error}"
    return "no task runs"


def service_drift(name: str, spec: Mapping[str, Any], live: ServiceFact | None,
                  deployed: Mapping[str, str] | None) -> tuple[list[Drift], bool]:
    """The drift of one service, and whether a deploy is needed for it."""
    want = desired_hash(spec)
    if live is None:
        return [Drift(name, "missing", f"{name} is in git but not in the swarm: the deploy "
                      "creates it")], True
    if live.config_hash != want and live.update_state in ROLLED_BACK and (
            deployed is None or deployed.get(name) == want):
        done = live.update_state == "rollback_completed"
        why = "" if done else f" ({live.update_message})" if live.update_message else ""
        return [Drift(name, "rolled-back", f"Swarm {'rolled' if done else 'is rolling'} {name} "
                      f"back to its previous spec{why}: the new one failed to start or turned "
                      "unhealthy, so this commit failed; lanai does not deploy it again until "
                      "a new commit or `lanai reconcile --retry`")], False
    if live.config_hash != want:
        return [Drift(name, "changed", f"{name} differs from git (config hash "
                      f"{live.config_hash or 'none'} in the swarm, {want} in git): the deploy "
                      "updates it")], True
    replicas = desired_replicas(spec)
    if live.replicas != replicas:
        return [Drift(name, "replicas", f"{name} has {live.replicas} replicas in the swarm, "
                      f"{replicas} in git (scaled by hand?): the deploy sets {replicas}")], True
    if live.update_state in PAUSED:
        return [Drift(name, "changed", f"{name}: Swarm paused its update ({live.update_message}"
                      "): the deploy resumes it")], True
    return [], False


def pending_drift(name: str, spec: Mapping[str, Any], facts: Facts,
                  nodes: Mapping[str, NodeFact]) -> list[Drift]:
    """A task Swarm cannot place, with its reason. Not repeated for a server that is down
    or drained: that server's drift says why."""
    home = nodes.get(desired_server(spec) or "")
    if home is not None and not home.schedulable:
        return []
    waiting = [t for t in facts.tasks_of(name)
               if t.state == "pending" and t.desired_state != "shutdown" and t.error]
    return [Drift(name, "pending", f"{name}: a task waits: {t.error}") for t in waiting]


def server_drift(servers: Sequence[Server], nodes: Mapping[str, NodeFact],
                 wanted: Mapping[str, Any], models: Mapping[str, Sequence[str]]
                 ) -> list[Drift]:
    """Down and drained servers: reported, never acted on (Swarm starts their tasks again
    when the node is back; a drain is a person's maintenance)."""
    out: list[Drift] = []
    for server in servers:
        node = nodes.get(server.name)
        pinned = [n for n, spec in wanted.items() if desired_server(spec) == server.name]
        if node is None:
            out.append(Drift(server.name, "server-absent", f"{server.name} is in lanai.yaml "
                             "but no swarm node is it: join it with ./bootstrap.sh --join "
                             f"<manager> {server.ssh or server.name}"))
        elif node.state in DOWN:
            out.append(Drift(server.name, "server-down", down_sentence(
                server.name, node, pinned, list(models.get(server.name) or []))))
        elif node.availability != "active":
            word = "drained" if node.availability == "drain" else "paused"
            held = listing(pinned) if pinned else "nothing"
            out.append(Drift(server.name, "server-drained", f"{server.name} (node "
                             f"{node.hostname}) is {word} by hand: {held} "
                             f"{'waits' if len(pinned) < 2 else 'wait'} until `docker node update "
                             f"--availability active {node.hostname}`; lanai leaves it so"))
    return out


def down_sentence(server: str, node: NodeFact, pinned: list[str], models: list[str]) -> str:
    since = f" since {node.updated_at[11:16]} UTC" if len(node.updated_at) >= 16 else ""
    why = f" ({node.message})" if node.message else ""
    lost = listing(pinned) if pinned else "nothing lanai runs"
    held = f" and its models {', '.join(models)}" if models else ""
    one = len(pinned) < 2 and not models
    return (f"{server} (node {node.hostname}) is {node.state}{since}{why}: {lost}{held} "
            f"{'is' if one else 'are'} unavailable; Swarm starts {'it' if one else 'them'} "
            "again when it is back, lanai changes nothing")


def unknown_node(node: NodeFact, servers: Sequence[Server]) -> Drift:
    named = {s.name for s in servers}
    if node.server in named:
        return Drift(node.hostname, "unknown-node", f"{node.describe()} ({node.address}, "
                     f"{node.state}) also says it is {node.server}: an old entry of a server "
                     f"that joined again? `docker node rm {node.id[:12]}` removes it")
    label = f", labelled {node.server}" if node.server else ""
    return Drift(node.hostname, "unknown-node", f"node {node.hostname} ({node.address}{label}) "
                 "is in the swarm but not in lanai.yaml: add it under servers, or remove it "
                 f"(`docker node rm {node.hostname}`); lanai places nothing on it")


def label_actions(servers: Sequence[Server], nodes: Mapping[str, NodeFact]
                  ) -> list[LabelNode]:
    """io.lanai.server (placement reads it) and lanai.yaml's labels, where a node lacks
    them or has other values. Labels not in git are left alone."""
    out = []
    for server in servers:
        node = nodes.get(server.name)
        if node is None:
            continue
        wanted = {SERVER_LABEL: server.name, **server.labels}
        differ = {k: v for k, v in wanted.items() if node.labels.get(k) != v}
        if not differ:
            continue
        words = [f"{k}={v}" + (f" (was {node.labels[k]})" if k in node.labels else "")
                 for k, v in differ.items()]
        out.append(LabelNode(node.id, node.hostname, server.name, differ,
                             f"label node {node.hostname} {', '.join(words)}: it is "
                             f"{server.name} of lanai.yaml, and placement reads its labels"))
    return out


def stages(stack: Mapping[str, Any], changing: list[str], held: list[str],
           servers: Sequence[Server], nodes: Mapping[str, NodeFact], *, extra: bool
           ) -> list[Deploy]:
    """One `stack deploy`, or one per Ollama server when several per-server services
    change: a stage's file leaves the later ones out (without --prune Swarm leaves a
    service absent from the file as it is), so the fleet rolls one server at a time and
    chats go to the others. Servers that can run tasks go first. A service Swarm rolled
    back is left out of every file, so no deploy retries the failed spec (and nothing is
    pruned meanwhile: --prune would remove it)."""
    wanted: Mapping[str, Any] = stack.get("services") or {}
    order = {s.name: i for i, s in enumerate(servers)}

    def rank(name: str) -> tuple[bool, int, str]:
        server = desired_server(wanted[name]) or ""
        node = nodes.get(server)
        return (node is None or not node.schedulable, order.get(server, len(order)), name)

    rolling = sorted((n for n in changing if desired_server(wanted[n])), key=rank)
    others = [n for n in changing if n not in rolling]
    groups = [others + rolling[:1], *([n] for n in rolling[1:])]
    out = []
    for index, group in enumerate(groups):
        later = {n for g in groups[index + 1:] for n in g}
        last = index == len(groups) - 1
        services = {n: s for n, s in wanted.items() if n not in later and n not in held}
        out.append(Deploy(index + 1, len(groups), tuple(group),
                          {**stack, "services": services}, prune=last and not held,
                          reason=deploy_reason(index + 1, len(groups), group, held,
                                               extra and last)))
    return out


def deploy_reason(stage: int, count: int, group: list[str], held: list[str],
                  removes: bool) -> str:
    """stack deploy (stage 1 of 2): ollama-box-b and proxy to match git; ..."""
    what = [f"{listing(group)} to match git"] if group else []
    what += ["removing services no longer in git"] if removes and not held else []
    text = f"stack deploy{f' (stage {stage} of {count})' if count > 1 else ''}: " + \
        ", ".join(what)
    if count > 1:
        text += "; one Ollama server at a time, so chats go to the others meanwhile"
    if held:
        text += f"; {listing(held)} left as Swarm rolled {'it' if len(held) == 1 else 'them'} back"
    return text
