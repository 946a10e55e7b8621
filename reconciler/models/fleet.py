"""Swarm mode's models step: every Ollama server converged on its own, at the same time.

Each server has its own Ollama (`ollama-<server>`, reached through the relay on the
manager), its own GPU and the models models.yaml places on it, so each is a ModelSync of
its own on a thread of its own: a slow pull or a dead box on one server never holds
back another. A server whose node is down is left out with a sentence, not an error: the
commit is not failed because a box is off (chats on the other servers go on).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker

from reconciler.desired.servers import Server, placement
from reconciler.models import state as state_mod
from reconciler.models.fit_servers import server_models
from reconciler.models.pulls import PullWorker, load_progress, ollama_puller, server_pull_file
from reconciler.models.sync import ModelsOutcome, ModelSync, earliest
from reconciler.server.settings import ServerSettings
from reconciler.stack.render import Rendered
from reconciler.swarm.facts import Facts
from reconciler.swarm.plan import DOWN, match_nodes
from reconciler.swarm.stackfile import ollama_name

log = logging.getLogger("lanai")


@dataclass(frozen=True)
class ServerAccess:
    """How the engine reaches the servers, each asked once per models step.

    urls: server -> its Ollama's URL as the daemon reaches it (swarm.relay.ollama_urls:
        the relay's 127.0.0.1 ports).
    facts: the swarm as the manager sees it (swarm.facts.gather): which servers are left
        out (`unavailable`) and each server's GPU from its node labels (`server_gpus`).
    """

    urls: Callable[[Rendered], Mapping[str, str]]
    facts: Callable[[Rendered], Facts]


def unavailable(facts: Facts, servers: Sequence[Server]) -> dict[str, str]:
    """The servers whose Ollama cannot run now, each with why in a word: its node down or
    disconnected (swarm/plan.py's DOWN; not `unknown`, which a manager's restart gives every
    worker for seconds), drained or paused by a person, or no node at all ("absent")."""
    nodes, _ = match_nodes(facts.nodes, servers)
    out: dict[str, str] = {}
    for server in servers:
        node = nodes.get(server.name)
        if node is None:
            out[server.name] = "absent"
        elif node.state in DOWN:
            out[server.name] = node.state
        elif node.availability != "active":
            out[server.name] = "drained" if node.availability == "drain" else "paused"
    return out


def server_gpus(facts: Facts, servers: Sequence[Server]) -> dict[str, tuple[str, int] | None]:
    """Each server's GPU from its node's labels (None: the labels do not say)."""
    nodes, _ = match_nodes(facts.nodes, servers)
    return {name: gpu_from_labels(node.labels) for name, node in nodes.items()}


def ollama_started(facts: Facts, server: str) -> str | None:
    """When the server's Ollama task reached running (None: none runs), so a restarted
    Ollama, which has nothing loaded, gets its default model warmed again."""
    running = [t.timestamp for t in facts.tasks_of(ollama_name(server))
               if t.desired_state == "running" and t.state == "running"]
    return max(running) if running else None


def gpu_from_labels(labels: Mapping[str, str]) -> tuple[str, int] | None:
    """A node's GPU from the labels bootstrap sets (io.lanai.gpu.name, io.lanai.gpu.memory
    in bytes); None when either is missing or the memory is not a number."""
    name, memory = labels.get("io.lanai.gpu.name"), labels.get("io.lanai.gpu.memory")
    if not name or not memory or not memory.strip().isdigit():
        return None
    return name, int(memory)


def ollama_servers(rendered: Rendered) -> tuple[list[Server], dict[str, list[str]]]:
    """The servers that run Ollama, in lanai.yaml's order, and the models placed on each."""
    config = rendered.models
    servers = rendered.config.servers
    placed = placement([(m.name, m.place) for m in config.local] if config else [], servers)
    return [s for s in servers if s.name in placed], placed


def down_sentence(server: str, why: str, models: list[str]) -> str:
    state = "not in the swarm (no node is it)" if why == "absent" else why
    if not models:
        return f"{server} is {state}: it holds no model"
    return (f"{server} is {state}: its models {', '.join(models)} are unavailable until it "
            "is back; lanai converges them then, with no push")


def converge_servers(settings: ServerSettings, client: docker.DockerClient,
                     rendered: Rendered, access: ServerAccess, *,
                     progress: Callable[[str], None], pulls: PullWorker | None,
                     retry: bool = False) -> ModelsOutcome:
    """Every Ollama server's models, in parallel; one outcome with each server's inside."""
    servers, placed = ollama_servers(rendered)
    swarm = access.facts(rendered)
    down = unavailable(swarm, rendered.config.servers)
    gpus = server_gpus(swarm, rendered.config.servers)
    urls = dict(access.urls(rendered))
    up = [s for s in servers if s.name not in down]

    def one(server: Server) -> ModelsOutcome:
        worker = pulls.for_server(server.name, ollama_puller(
            server_pull_file(settings.pull_file, server.name), log.info)) \
            if pulls is not None else None
        sync = ModelSync(settings, client, progress=lambda m: progress(f"{server.name}: {m}"),
                         gpu=lambda: gpus.get(server.name), pulls=worker, server=server,
                         url=urls.get(server.name),
                         started=ollama_started(swarm, server.name))
        try:
            return sync.converge(rendered, retry=retry)
        except Exception as exc:  # one server's failure is its own, never the others'
            log.error("converging the models of %s failed unexpectedly", server.name,
                      exc_info=exc)
            return ModelsOutcome(errors=[
                f"lanai failed while converging the models ({type(exc).__name__}: "
                f"{str(exc).strip() or 'no message'}); the full error is in the daemon's log "
                "(`journalctl -u lanai`); lanai tries again (or `lanai reconcile --retry`)."])

    results: dict[str, ModelsOutcome] = {}
    if up:
        with ThreadPoolExecutor(max_workers=len(up), thread_name_prefix="models") as pool:
            results = dict(zip([s.name for s in up], pool.map(one, up), strict=True))
    gone = {s.name: down_sentence(s.name, down[s.name], placed[s.name]) for s in servers
            if s.name in down}
    for sentence in gone.values():
        progress(sentence)
    return combine(results, gone)


def combine(results: dict[str, ModelsOutcome], down: dict[str, str]) -> ModelsOutcome:
    """The servers' outcomes as one: each line named by its server (in the order given),
    each server's own outcome kept whole under `servers`."""
    out = ModelsOutcome(servers=results, down=down)
    for name, result in results.items():
        out.actions += [{**action, "server": name} for action in result.actions]
        out.errors += [f"{name}: {error}" for error in result.errors]
        out.drift += [f"{name}: {drift}" for drift in result.drift]
        out.pulling += [f"{name}: {model}" for model in result.pulling]
        out.next_retry = earliest(out.next_retry, result.next_retry)
    return out


def fleet_models(settings: ServerSettings, rendered: Rendered,
                 down: Mapping[str, str]) -> dict[str, Any]:
    """What `lanai status` and `lanai models` show in swarm mode: per server running Ollama
    (lanai.yaml's order), the one-box table (state.server_models) of its own view of
    models.yaml and its own record; on a server left out, every model reads `unavailable`
    and `down` says why."""
    config = rendered.models
    if config is None:
        return {"servers": {}}
    servers, placed = ollama_servers(rendered)
    out: dict[str, Any] = {}
    for server in servers:
        record = state_mod.load(state_mod.server_file(settings.models_file, server.name))
        pull = load_progress(server_pull_file(settings.pull_file, server.name))
        table = state_mod.server_models(server_models(config, placed[server.name]), record,
                                        pull)
        why = down.get(server.name)
        table["down"] = down_sentence(server.name, why, placed[server.name]) if why else None
        if why:
            table["sync"] = "Unavailable"
            for row in table["models"]:
                row["state"] = "unavailable"
        out[server.name] = table
    return {"servers": out}
