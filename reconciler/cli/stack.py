"""The stack's commands: run, reconcile, plan, validate, status, drift, history, logs,
suspend, resume."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from reconciler.backup.store import Store
from reconciler.cli import drift as cli_drift
from reconciler.cli import models_views, views
from reconciler.cli.base import fail, guarded, json_option, root, server_settings, when_unlocked
from reconciler.core.errors import DockerError, ExitCode, LanaiError
from reconciler.daemon.control import poke
from reconciler.daemon.run import Daemon
from reconciler.desired import load as desired_mod
from reconciler.desired.load import ollama_service
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.engine.reconcile import Engine
from reconciler.https.caddyfile import lan_ip
from reconciler.models import lock as models_lock
from reconciler.models import state as models_state
from reconciler.models.fit import fit_directory
from reconciler.models.fit_servers import fit_servers, servers_json
from reconciler.models.fleet import fleet_models, unavailable
from reconciler.models.pulls import load_progress
from reconciler.notify import drift_report
from reconciler.server import gpu as gpu_mod
from reconciler.server import working
from reconciler.server.record import Outcome, read_history
from reconciler.server.secrets import read_secrets
from reconciler.server.settings import ServerSettings
from reconciler.stack import compose, gpu_health, readiness, tool_versions
from reconciler.stack import facts as facts_mod
from reconciler.stack import health as report_mod
from reconciler.stack.plan import plan as make_plan
from reconciler.stack.render import Rendered, render, render_key
from reconciler.swarm import migrate
from reconciler.swarm import render as swarm_render
from reconciler.swarm import status as swarm_status
from reconciler.swarm.plan import Deploy
from reconciler.swarm.stackfile import stack_file
from reconciler.swarm.sync import drift_json

# -- the daemon and reconciles --------------------------------------------------------

@root.command()
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@guarded
def run(log_level: str) -> None:
    """Run the reconciler daemon (what the systemd service starts).

    Polls the state repo every source.poll_interval, reconciles at once when poked
    (the post-receive hook, `lanai reconcile --now`) and when Docker reports a
    managed container stopped, died or turned unhealthy. Stops cleanly on SIGTERM.
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stdout,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("apscheduler", "urllib3", "git", "docker", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = server_settings()
    settings.require_repo()
    check_tools()
    Daemon(settings).run()


def check_tools() -> None:
    """Refuse to start on a Compose or Engine older than lanai's floor (README
    "Requirements"): every deploy would fail on the files lanai generates. An engine that
    is not up yet is checked by the first reconcile's own errors instead."""
    tool_versions.check_compose(tool_versions.compose_version())
    try:
        found = facts_mod.engine_version(facts_mod.connect(timeout=10))
    except DockerError:
        return
    if found is not None:
        tool_versions.check_engine(found[0])


@root.command()
@click.option("--now", "now", is_flag=True,
              help="Ask the running daemon to reconcile now and return at once "
              "(what the post-receive hook runs). Without a daemon, reconcile here.")
@click.option("--retry", is_flag=True,
              help="Try again a commit that failed for a reason that does not go away by "
              "itself (a failing health check, a missing image), and reset heal limits.")
@click.option("--wait", "wait_s", default=600, show_default=True, metavar="SECONDS",
              help="How long to wait for a reconcile that is already running.")
@json_option
@guarded
def reconcile(now: bool, retry: bool, wait_s: int, as_json: bool) -> None:
    """Fetch the state repo and converge the server to it, now.

    Prints each action with its reason and result. Exits 0 when the server is
    converged, 3 when the commit failed (the last good state keeps running), 7 when
    suspended.
    """
    settings = server_settings()
    if now:
        reply = poke(settings.socket_path, {"command": "reconcile", "trigger": "poke",
                                            "retry": retry})
        if reply and reply.get("ok"):
            if as_json:
                click.echo(json.dumps({"queued": True}))
            else:
                views.note("the lanai daemon will reconcile now (`lanai status` shows the result)")
            return
    settings.require_repo()
    engine = Engine(settings, progress=views.progress)
    outcome = when_unlocked(wait_s, lambda: engine.reconcile(trigger="cli", retry=retry))
    _emit_outcome(outcome, as_json)


def _emit_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(outcome.to_json(), indent=1))
    else:
        views.outcome(outcome)
    sys.exit(int(outcome.exit_code))


@root.command(name="plan")
@click.option("--ref", help="A branch or commit of the state repo (default: the followed "
              "branch's head).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Plan a state directory on disk (a pull request checkout) instead of git.")
@json_option
def plan_cmd(ref: str | None, directory: Path | None, as_json: bool) -> None:
    """Show what a reconcile would change on this server, and why. Changes nothing.

    Exit status like `diff`: 0 nothing would change, 1 changes, 2 an error (or,
    with --dir, a model that does not fit the VRAM budget: see `lanai models fit`).
    In swarm mode the fit is one table per server that runs Ollama.
    """
    try:
        actions = _plan(ref, directory)
    except LanaiError as exc:
        fail(exc, as_json, code=ExitCode.INVALID)
        return
    fit = actions.get("models")
    if as_json:
        click.echo(json.dumps(actions, indent=1))
    else:
        if not actions.get("refused"):
            views.plan(actions)
        if fit is not None and "servers" in fit:
            models_views.server_fit_tables(fit)
            views.problems(fit["problems"])
        elif fit is not None:
            models_views.fit_table(fit)
            views.problems(fit["problems"])
    if actions.get("refused"):
        if not as_json:
            views.problems([actions["refused"]])
        sys.exit(ExitCode.INVALID)
    if fit is not None and fit["problems"]:
        sys.exit(ExitCode.INVALID)  # a pull request whose models do not fit fails its check
    changes = actions["actions"] or actions.get("model_actions")
    sys.exit(ExitCode.CHANGES if changes else ExitCode.OK)


def _plan(ref: str | None, directory: Path | None) -> dict[str, Any]:
    settings = server_settings()
    engine = Engine(settings, progress=lambda _m: None)
    state = engine.state()
    applied = engine.applied(state)
    notes: list[str] = []
    if directory is not None:
        state = desired_mod.load_state(directory)
        if state.config.mode == "swarm":
            try:
                engine.preparer.require_manager(state.config)
            except LanaiError as exc:  # only the manager can plan the swarm's deploy
                return {"commit": "working-tree",
                        "applied_commit": applied.commit if applied else None,
                        "actions": [], "refused": exc.message, "notes": notes,
                        "models": fit_json(directory, state)}
        with tempfile.TemporaryDirectory(prefix="lanai-plan-") as tmp:
            rendered = _render_dir(engine, directory, Path(tmp), notes)
            result = _plan_against(engine, rendered, applied, notes)
        fit = fit_json(directory, state)
        if fit is not None:
            result["models"] = fit
            if state.config.mode == "compose":
                assert state.models is not None
                _plan_models(result, state.models, settings)
        return result
    settings.require_repo()
    engine.source.fetch()
    branch = engine.preparer.branch()
    if ref and ref.startswith("HEAD"):  # HEAD~1 means the followed branch's parent commit
        ref = branch + ref.removeprefix("HEAD")
    commit = engine.source.resolve(ref) if ref else engine.source.branch_head(branch)
    # A render of its own: the daemon may be rendering the same commit in deployments/.
    settings.deployments_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix=".plan-", dir=settings.deployments_dir) as tmp:
        return _plan_commit(engine, commit, Path(tmp), applied, notes, settings)


def _plan_commit(engine: Engine, commit: str, private: Path, applied: Rendered | None,
                 notes: list[str], settings: ServerSettings) -> dict[str, Any]:
    rendered = engine.preparer.prepare(commit, private=private)
    result = _plan_against(engine, rendered, applied, notes)
    if rendered.models is not None:
        # On the server: the facts it recorded, and its own GPU.
        server_lock = models_lock.read(settings.models_lock_file)
        repo_lock = models_lock.read(rendered.directory / models_lock.LOCK_FILE)
        lock = (repo_lock.merged(server_lock) if repo_lock and server_lock
                else server_lock or repo_lock)
        lock = lock or models_lock.ModelsLock()
        if rendered.config.mode == "swarm":
            # Each server's GPU comes from lanai.yaml and the lock, not from this manager's.
            reports = fit_servers(rendered.directory, rendered.models, rendered.config,
                                  lock=lock)
            result["models"] = servers_json(reports, rendered.config)
            return result  # model actions per server come with the swarm's model sync
        gpu = engine.gpu_info()
        if gpu:  # this server's own GPU, not the one a lock was written on
            lock = models_lock.ModelsLock(gpu[0], gpu[1], lock.models)
        result["models"] = fit_directory(rendered.directory, rendered.models,
                                         lock=lock).to_json()
        _plan_models(result, rendered.models, settings)
    return result


def _plan_models(result: dict[str, Any], models: ModelsConfig,
                 settings: ServerSettings) -> None:
    """Model actions, where this machine is a server that has converged models before."""
    if not settings.models_file.exists():
        return
    state = models_state.load(settings.models_file)
    result["model_actions"] = models_state.planned_model_actions(models, state, result["models"])


def _render_dir(engine: Engine, directory: Path, scratch: Path, notes: list[str]) -> Rendered:
    state = desired_mod.load_state(directory)
    target = scratch / "state"
    shutil.copytree(directory, target, ignore=shutil.ignore_patterns(".git"))
    try:
        secrets = read_secrets(server_settings().secrets_file)
    except (LanaiError, PermissionError):
        secrets = {}
    missing = sorted(state.config.secret_names() - set(secrets))
    if missing:
        notes.append("secrets not readable here, planned with placeholders: " + ", ".join(missing))
        secrets = {**secrets, **{name: "<placeholder>" for name in missing}}
    state.root = target
    commit = "working-tree"
    gpu = engine.preparer.gpu_runtime()
    try:
        salt = engine.preparer.hash_salt()
    except OSError:
        salt = b""
        notes.append("cannot read this server's hash key; services with secrets may show as "
                     "changed")
    address = lan_ip() if state.config.https is not None else None
    fast = engine.preparer.start_interval()
    status_dir = engine.settings.status_dir
    swarm, gpus = engine.preparer.swarm_inputs(state.config)
    finish = swarm_render.finisher(state, gpus=gpus, cli_version=engine.preparer.cli_version(),
                                    files=engine.settings.home / swarm_render.FILES_DIR) \
        if swarm else None
    return render(state, secrets, target, commit,
                  render_key(commit, state.config, secrets, gpu_runtime=gpu, salt=salt,
                             lan_ip=address, start_interval=fast, status_dir=status_dir,
                             swarm=swarm),
                  gpu_runtime=gpu, salt=salt, lan_ip=address, start_interval=fast,
                  status_dir=status_dir, finish=finish)


def _plan_against(engine: Engine, rendered: Rendered, applied: Rendered | None,
                  notes: list[str]) -> dict[str, Any]:
    if rendered.mode == "swarm":
        return _plan_swarm(engine, rendered, applied, notes)
    facts = facts_mod.observe(engine.client, rendered.project, rendered.images)
    result = make_plan(rendered, facts, applied=applied, prune=rendered.config.sync.prune)
    decision = engine.guard.decision(rendered, facts, applied)
    if decision is not None:
        service = rendered.config.backups.service
        notes.append({"backup": f"{service}'s data is backed up first (its image changes)",
                      "restore": f"backup {getattr(decision[1], 'id', '?')} is restored first "
                      "(backups.restore_on_rollback)",
                      "refuse": f"this commit would be refused: {decision[1]}"}[decision[0]])
    return {"commit": rendered.commit, "applied_commit": applied.commit if applied else None,
            "actions": [a.to_json() for a in result.actions],
            "drift": [d.to_json() for d in result.drift], "notes": notes}


def _plan_swarm(engine: Engine, rendered: Rendered, applied: Rendered | None,
                notes: list[str]) -> dict[str, Any]:
    """The swarm's plan, in the shape `views.plan` prints: an action per stack deploy
    (stage) or node label, drift per service or server."""
    if migrate.compose_leftovers(engine.client, rendered.project):
        notes.append("Compose's containers of this project are taken down first (volumes "
                     "kept): one box moves to the swarm")
    _facts, result = engine.swarm.observe(rendered)
    actions = []
    for action in result.actions:
        if isinstance(action, Deploy):
            actions.append({"kind": "deploy", "service": ", ".join(action.services) or
                            rendered.project, "reason": action.reason})
        else:
            actions.append({"kind": "label", "service": action.server,
                            "reason": action.reason})
    return {"commit": rendered.commit, "applied_commit": applied.commit if applied else None,
            "actions": actions,
            "drift": [{"service": d.subject, "kind": d.kind, "detail": d.detail}
                      for d in result.drift], "notes": notes}


@root.command()
@click.argument("directory", required=False, default=".",
                type=click.Path(file_okay=False, path_type=Path))
@json_option
def validate(directory: Path, as_json: bool) -> None:
    """Check a state directory without a server: lanai.yaml, compose.yaml, models.yaml.

    Also checks that the models fit the VRAM budget, with sizes from models.lock
    (see `lanai models fit`); in swarm mode, one table per server that runs Ollama,
    with the models placed on it, against that server's GPU.

    Runs `docker compose config` on it too when the docker CLI is installed (no
    Docker engine needed). Exits 0 when valid, 2 with every problem listed.
    """
    problems: list[str] = []
    notes: list[str] = []
    fit: dict[str, Any] | None = None
    try:
        state = desired_mod.load_state(directory)
    except desired_mod.InvalidState as exc:
        problems = [str(p) for p in exc.problems]
    else:
        normalized, rejected = _compose_check(directory, state)
        problems += rejected
        if state.config.mode == "swarm":
            found, notes = swarm_notes(state, normalized)
            problems += found
        fit = fit_json(directory, state)
        problems += fit["problems"] if fit is not None else []
    if as_json:
        data: dict[str, Any] = {"valid": not problems, "problems": problems, "models": fit}
        if notes:
            data["notes"] = notes
        click.echo(json.dumps(data, indent=1))
        sys.exit(ExitCode.INVALID if problems else ExitCode.OK)
    if fit is not None and "servers" in fit:
        models_views.server_fit_tables(fit)
    elif fit is not None:
        models_views.fit_table(fit)
    for line in notes:
        views.note(f"note: {line}")
    if problems:
        views.problems(problems)
    else:
        views.note(f"{directory}: valid")
    sys.exit(ExitCode.INVALID if problems else ExitCode.OK)


def fit_json(directory: Path, state: desired_mod.DesiredState) -> dict[str, Any] | None:
    """The fit of a state directory's models, as `--json` prints it: one report on one box,
    one per server in swarm mode (each server named in its problems). None: no models.yaml."""
    if state.models is None:
        return None
    if state.config.mode == "swarm":
        return servers_json(fit_servers(directory, state.models, state.config), state.config)
    return fit_directory(directory, state.models).to_json()


def _compose_check(directory: Path, state: desired_mod.DesiredState
                   ) -> tuple[dict[str, Any] | None, list[str]]:
    """What `docker compose config` makes of the directory: (its normalized project, None
    without a docker CLI or when rejected; the problem if it rejected it)."""
    directory = directory.resolve()  # compose runs in it, so a relative path would double
    argv = ["docker", "compose", "--project-directory", str(directory), "--file",
            str(directory / state.config.compose_file),
            *compose.profile_flags(state.config.profiles), "config", "--format", "json"]
    try:
        result = compose.run(argv, cwd=directory, timeout=60)
    except DockerError:
        return None, []  # no docker CLI here: lanai's own checks are all we can do
    if result.returncode != 0:
        return None, [f"{state.config.compose_file}: rejected by docker compose: "
                      f"{compose.error_text(result)}"]
    return json.loads(result.stdout), []


# The oldest docker CLI lanai supports on a manager (Debian 12's 20.10): validate maps
# with it so a note holds there too.
OLDEST_CLI = (20, 10)


def swarm_notes(state: desired_mod.DesiredState, normalized: dict[str, Any] | None
                ) -> tuple[list[str], list[str]]:
    """(problems, notes) of a swarm state's stack file: what Swarm cannot honour, and how
    lanai maps what it lacks, each naming compose.yaml's line. Offline, a server is taken
    to advertise a GPU unless lanai.yaml says gpu: none (bootstrap sets that up)."""
    notes: list[str] = []
    if normalized is None:
        return [], ["no docker CLI here: the Swarm mapping of compose.yaml was not checked "
                    "(it needs `docker compose config`)"]
    models = state.models
    stack = stack_file(normalized, state.config, models,
                       ollama_service=ollama_service(state.compose, models) if models
                       else None,
                       gpu_servers={s.name for s in state.config.servers if s.gpu != "none"},
                       cli_version=OLDEST_CLI, raw_compose=state.compose)
    compose_file = state.config.compose_file
    problems: list[str] = []
    for note in stack.notes:
        path: tuple[str, ...] = (("services", note.service, *note.key.split(".")[:1])
                                 if note.service else tuple(note.key.split(".")[:2]))
        line = state.compose_lines.line_of(path)
        where = f"{compose_file}:{line}" if line else compose_file
        text = f"{where}: {note.line()}"
        if note.refused:
            problems.append(text)
        else:
            notes.append(text)
    return problems, notes


# -- read commands -------------------------------------------------------------------

@root.command()
@json_option
@guarded
def status(as_json: bool) -> None:
    """What is deployed, whether it matches git (sync) and whether it works (health)."""
    settings = server_settings()
    engine = Engine(settings)
    state = engine.state()
    applied = engine.applied(state)
    facts = None
    swarm = None
    if applied is not None and applied.mode == "swarm":
        swarm = engine.swarm.live_plan_swarm(applied)
        state.drift = drift_json(swarm[1])  # now, not as of the last check
    elif applied is not None:
        facts = facts_mod.observe(engine.client, applied.project, applied.images)
        facts.gpu_lost = gpu_health.prober(engine.client).lost(facts.containers)
        live = engine.stack.live_plan(state, applied, facts)
        state.drift = [d.to_json() for d in live.drift]  # now, not as of the last check
    daemon = poke(settings.socket_path, {"command": "ping"})
    report = report_mod.build(state, applied, facts, repo=settings.repo,
                              suspended=engine.suspended(), daemon=daemon,
                              working=working.read(working.file(settings.home),
                                                   settings.lock_dir),
                              passed=readiness.read(readiness.file(settings.home)))
    if swarm is not None and applied is not None:
        manager = applied.config.manager
        swarm_status.apply(report, swarm[1], swarm[0], applied.config.servers,
                           manager.name if manager else None, swarm_status.images(applied))
    report.last_heal = report_mod.last_heal(read_history(settings.history_file, 200))
    if applied is not None and applied.config.backups.service in applied.services:
        listed = Store(settings.backups_dir).list()
        report.backups = {"newest": listed[0].to_json() if listed else None,
                          "count": len(listed), "restore_pin": engine.guard.pin()}
    gpus = gpu_mod.observe_gpus()
    if gpus.gpus or gpus.error:
        report.gpu = {"gpus": [vars(g) for g in gpus.gpus], "error": gpus.error,
                      "summary": gpu_mod.summarize(gpus.gpus) if gpus.gpus else None}
    models = None
    if swarm is not None and applied is not None:  # each server's own table
        models = fleet_models(settings, applied, unavailable(swarm[0], applied.config.servers))
    elif applied is not None and applied.models is not None:
        models = models_state.server_models(applied.models,
                                          models_state.load(settings.models_file),
                                          load_progress(settings.pull_file))
    voice = voice_status(applied) if applied is not None and applied.webui else None
    if as_json:
        click.echo(json.dumps({**report.to_json(), "models": models, "voice": voice}, indent=1))
    else:
        views.status(report)
        if voice is not None:
            views.out.print(f"[bold]Voice[/bold]    {voice['summary']}")
        if models is not None and "servers" in models:
            for server, table in models["servers"].items():
                views.out.print()
                views.out.print(f"[bold]Models on {server}[/bold]"
                                + (f"  {table['down']}" if table.get("down") else ""))
                models_views.models_table(table)
        elif models is not None:
            views.out.print()
            models_views.models_table(models)


def voice_status(applied: Rendered) -> dict[str, Any]:
    """Whether voice chat can work from a phone or laptop on the LAN: browsers give the
    microphone only to https pages (or localhost)."""
    assert applied.webui is not None
    voice, https = applied.webui.voice, applied.config.https
    stt = f"local Whisper {voice.stt.model}" if voice.stt.engine == "local" else voice.stt.url
    tts = "the device's voices" if voice.tts.engine == "browser" else voice.tts.url
    engines = f"speech to text: {stt}; text to speech: {tts}"
    if https is not None and (https.names or https.lan_ip):
        where = ", ".join(f"https://{n}/" for n in https.names) or "https://<server IP>/"
        return {"lan": True, "summary": f"works from LAN devices at {where} ({engines})"}
    return {"lan": False, "summary": "only in a browser on the server itself: phones and "
            "laptops need https for the microphone; add an https section to lanai.yaml "
            f"({engines})"}


@root.command()
@click.option("--report", is_flag=True,
              help="Show the daily drift report kept on the server (what differs from git, "
              "since when) instead of looking now.")
@click.option("--now", "fresh", is_flag=True,
              help="With --report: write a fresh report from what differs right now.")
@json_option
@guarded
def drift(as_json: bool, report: bool, fresh: bool) -> None:
    """What differs between the server and the applied commit right now.

    Includes models whose memory, once loaded, differs from what models.yaml planned
    (spilled onto the CPU, or far from the estimate), as of the last reconcile.
    Exits 0 when nothing drifted, 1 when something did (like `diff`).
    """
    if fresh and not report:
        raise click.UsageError("--now goes with --report: `lanai drift --report --now`.")
    settings = server_settings()
    if report and not fresh:
        cli_drift.show_latest(settings, as_json)
    engine = Engine(settings)
    state = engine.state()
    applied = engine.applied(state)
    if applied is None:
        raise LanaiError("nothing has been deployed yet; run `lanai reconcile` first.",
                         exit_code=ExitCode.NOT_SET_UP)
    facts = facts_mod.observe(engine.client, applied.project, applied.images)
    facts.gpu_lost = gpu_health.prober(engine.client).lost(facts.containers)
    result = engine.stack.live_plan(state, applied, facts)
    items = drift_report.collect(settings, applied, [d.to_json() for d in result.drift])
    if report:
        cli_drift.show_fresh(settings, items, applied.commit, as_json)
    data = {"applied_commit": applied.commit,
            "drift": items,
            "heal": [a.to_json() for a in result.actions],
            "self_heal": applied.config.sync.self_heal}
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        views.drift(data)
    sys.exit(ExitCode.CHANGES if data["drift"] else ExitCode.OK)


@root.command()
@click.option("-n", "--limit", default=20, show_default=True, help="How many records.")
@json_option
def history(limit: int, as_json: bool) -> None:
    """Every reconcile that did something: commit -> actions -> result, newest first."""
    records = read_history(server_settings().history_file, limit)
    if as_json:
        click.echo(json.dumps(records, indent=1))
    else:
        views.history(records)


@root.command()
@click.argument("services", nargs=-1)
@click.option("--tail", default=100, show_default=True, help="Lines per service to start with.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@json_option
@guarded
def logs(services: tuple[str, ...], tail: int, follow: bool, as_json: bool) -> None:
    """Logs of the stack's services (all, or those named), through `docker compose logs`."""
    settings = server_settings()
    engine = Engine(settings)
    applied = engine.deployed()
    if applied is None:
        raise LanaiError("nothing has been deployed yet, so there are no logs; run "
                         "`lanai reconcile` first.", exit_code=ExitCode.NOT_SET_UP)
    unknown = sorted(set(services) - set(applied.services))
    if unknown:
        raise LanaiError(f"no service named {', '.join(unknown)} in the deployed stack; "
                         f"services: {', '.join(sorted(applied.services))}.",
                         exit_code=ExitCode.INVALID)
    project = applied.project_handle
    argv = project.logs_cmd(list(services), tail=tail, follow=follow, timestamps=as_json)
    if not as_json:
        sys.exit(subprocess.call(argv, cwd=project.directory, env=compose.compose_env()))
    with subprocess.Popen(argv, cwd=project.directory, env=compose.compose_env(),
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            service, _, rest = line.partition("|")
            stamp, _, message = rest.strip().partition(" ")
            click.echo(json.dumps({"service": service.strip().rsplit("-", 1)[0]
                                   .removeprefix(f"{applied.project}-"),
                                   "time": stamp, "message": message}))
    sys.exit(proc.returncode)


# -- control -----------------------------------------------------------------------

@root.command()
@click.option("--reason", help="Why, shown by `lanai status`.")
def suspend(reason: str | None) -> None:
    """Stop converging: pushes are fetched and drift is reported, nothing is changed."""
    Engine(server_settings()).suspend(reason)
    views.note("suspended: lanai will not change the server until `lanai resume`")


@root.command()
@json_option
@guarded
def resume(as_json: bool) -> None:
    """Converge again, and catch up with git at once."""
    settings = server_settings()
    engine = Engine(settings, progress=views.progress)
    if not engine.resume():
        views.note("was not suspended")
    reply = poke(settings.socket_path, {"command": "reconcile", "trigger": "resume"})
    if reply and reply.get("ok"):
        views.note("resumed; the daemon is catching up now")
        return
    settings.require_repo()
    _emit_outcome(engine.reconcile(trigger="resume"), as_json)
