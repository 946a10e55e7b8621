"""`lanai models ...` and `lanai bench`: the models on the server, their fit, their speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from reconciler.bench import chart as benchchart
from reconciler.bench import compare as bench_compare
from reconciler.bench import run as bench_run
from reconciler.bench import store as bench_store
from reconciler.bench import table as bench_table
from reconciler.bench.bandwidth import BandwidthFacts, GpuInfo
from reconciler.bench.results import ModelResult
from reconciler.cli import models_views, views
from reconciler.cli.base import fail, guarded, json_option, root, server_settings
from reconciler.core.errors import ExitCode, LanaiError
from reconciler.core.sizes import parse_size
from reconciler.desired import load as desired_mod
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.models_yaml import ModelsConfig
from reconciler.engine.reconcile import Engine
from reconciler.models import lock as lock_mod
from reconciler.models import memory
from reconciler.models import state as state_mod
from reconciler.models.fit import fit_directory
from reconciler.models.fit_servers import fit_servers, servers_json
from reconciler.models.memory import ModelFacts
from reconciler.models.ollama import Ollama, OllamaError
from reconciler.models.plan import runtime_of
from reconciler.models.pulls import load_progress
from reconciler.models.sync import OllamaNotReady, connect
from reconciler.stack.render import Rendered


def _state_dir(directory: Path) -> desired_mod.DesiredState:
    """The state in `directory`, which must have a models.yaml."""
    try:
        state = desired_mod.load_state(directory)
    except desired_mod.InvalidState as exc:
        raise LanaiError(str(exc), exit_code=ExitCode.INVALID) from None
    if state.models is None:
        raise LanaiError(f"{directory} has no models.yaml, so lanai manages no models there.",
                         exit_code=ExitCode.INVALID)
    return state


def _deployed_models(engine: Engine) -> Rendered:
    """The deployment on this server, which must have a models.yaml."""
    applied = engine.deployed()
    if applied is None or applied.models is None:
        raise LanaiError("no models.yaml has been deployed on this server; add one to the "
                         "state repo (see desired-state/models.yaml) and push.",
                         exit_code=ExitCode.NOT_SET_UP)
    return applied


@root.group(invoke_without_command=True)
@json_option
@click.pass_context
@guarded
def models(ctx: click.Context, as_json: bool) -> None:
    """The local models: on the server, their fit to the VRAM budget, the lock file.

    \b
    Without a subcommand: every model in models.yaml with its state (ready,
    pulling with progress, failed and why), the context lanai gave it, the
    memory it was estimated to need and what Ollama reports once it is loaded
    (100% GPU, or the CPU/GPU split when it spilled).
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = server_settings()
    applied = _deployed_models(Engine(settings))
    assert applied.models is not None
    data = state_mod.server_models(applied.models, state_mod.load(settings.models_file),
                         load_progress(settings.pull_file))
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        models_views.models_table(data)
    sys.exit(ExitCode.APPLY_FAILED if any(r["state"] == "failed" for r in data["models"])
             else ExitCode.OK)




@models.command(name="fit")
@click.argument("directory", required=False, default=".",
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--vram", "vram", multiple=True, metavar="SIZE|SERVER=SIZE",
              help="The GPU memory to check against, instead of the GPU recorded in "
              "models.lock: a size (e.g. 8GiB) on one box, used when budget.vram is auto; in "
              "swarm mode SERVER=SIZE (e.g. box-b=24GiB), once per server, over lanai.yaml's "
              "gpu.")
@click.option("--strict", is_flag=True, help="Also fail when a model's size is unknown (not in "
              "models.lock).")
@json_option
def fit_cmd(directory: Path, vram: tuple[str, ...], strict: bool, as_json: bool) -> None:
    """Check that the models in DIRECTORY's models.yaml fit the VRAM budget. Offline.

    \b
    For a pull request's CI: needs no server. Sizes and architectures come from
    models.lock (written by the server: `lanai models lock`, commit it); the GPU
    from budget.vram, --vram, or models.lock. Prints per model: context, weights,
    KV cache, overhead, total, budget, fits or spills (and the CPU share).
    Exits 0 when every model fits, 2 when one spills without allow_cpu: true.

    \b
    Swarm mode (mode: swarm in lanai.yaml): one table per server that runs Ollama,
    with the models placed on it, against that server's GPU: --vram SERVER=SIZE,
    else its gpu in lanai.yaml (a size or a card), else models.lock's servers;
    budget.vram, when a size, caps every server. Exits 2 when any server's table
    has a problem. With --json: {"servers": {NAME: table}, "problems": [...]}.

    \b
    Example, a swarm where box-c's card is not in lanai.yaml yet:
      lanai models fit . --vram box-c=8GiB
    """
    try:
        state = _state_dir(directory)
        assert state.models is not None
        if state.config.mode == "swarm":
            overrides = swarm_vram(vram, state.config)
        else:
            size = compose_vram(vram)
    except (LanaiError, ValueError) as exc:
        err = exc if isinstance(exc, LanaiError) else LanaiError(str(exc),
                                                                 exit_code=ExitCode.INVALID)
        fail(err, as_json, code=ExitCode.INVALID)
        return
    if state.config.mode == "swarm":
        _fit_servers(directory, state, overrides, strict, as_json)
        return
    report = fit_directory(directory, state.models, vram=size)
    if strict:
        report.problems += report.warnings
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
    else:
        models_views.fit_table(report.to_json())
        for problem in report.problems:
            models_views.out.print(f"[red]✗[/red] {problem}")
    sys.exit(ExitCode.INVALID if report.problems else ExitCode.OK)


def _fit_servers(directory: Path, state: desired_mod.DesiredState, vram: dict[str, int],
                 strict: bool, as_json: bool) -> None:
    assert state.models is not None
    reports = fit_servers(directory, state.models, state.config, vram=vram)
    if strict:
        for report in reports.values():
            report.problems += report.warnings
    data = servers_json(reports, state.config)
    if as_json:
        click.echo(json.dumps(data, indent=1))
    else:
        models_views.server_fit_tables(data, problems=True)
    sys.exit(ExitCode.INVALID if data["problems"] else ExitCode.OK)


def compose_vram(values: tuple[str, ...]) -> int | None:
    """One box: --vram is a plain size (given twice, the last one counts, as click does)."""
    if any("=" in value for value in values):
        raise click.UsageError("--vram SERVER=SIZE is for swarm mode; on one box write a plain "
                               "size, e.g. --vram 8GiB")
    return parse_size(values[-1]) if values else None


def swarm_vram(values: tuple[str, ...], config: LanaiConfig) -> dict[str, int]:
    """Swarm mode: --vram SERVER=SIZE, for servers that run Ollama."""
    ollama = [s.name for s in config.servers if s.runs_ollama]
    out: dict[str, int] = {}
    for value in values:
        name, sep, size = value.partition("=")
        if not sep:
            raise click.UsageError(f"--vram {value}: in swarm mode name the server, e.g. "
                                   f"--vram {ollama[0]}={value} (once per server)")
        if name not in ollama:
            why = ("runs no Ollama, so it has no fit table" if config.server(name)
                   else "is not a server in lanai.yaml")
            raise click.UsageError(f"--vram {value}: {name!r} {why}; name one of "
                                   f"{', '.join(ollama)}")
        try:
            out[name] = parse_size(size)
        except ValueError as exc:
            raise click.UsageError(f"--vram {value}: {exc}") from None
    return out


@models.command(name="lock")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@guarded
def lock_cmd(output: Path | None) -> None:
    """Print models.lock: the pulled models' sizes and architectures, and the GPU.

    Commit it to the state repo (`lanai --host SERVER models lock > models.lock`) so
    `lanai plan`/`validate`/`models fit` in CI can check the VRAM budget offline.
    """
    settings = server_settings()
    lock = lock_mod.read(settings.models_lock_file)
    if lock is None:
        raise LanaiError("no models.lock on this server yet: it is written after the first "
                         "models converge (`lanai reconcile`).", exit_code=ExitCode.NOT_SET_UP)
    text = lock_mod.dumps(lock)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output} ({len(lock.models)} model(s))", err=True)


@root.command()
@click.option("-m", "--models", "names", multiple=True, metavar="MODEL",
              help="A model to measure (repeatable). Default: every chat model in models.yaml.")
@click.option("--runs", default=3, show_default=True, type=click.IntRange(1, 20),
              help="Measured runs of each prompt, after one warm-up.")
@click.option("--compare", is_flag=True,
              help="Also show the change against the previous comparable run (same prompts).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.svg",
              help="Write a chart of generation speed over the stored runs (SVG).")
@json_option
@guarded
def bench(names: tuple[str, ...], runs: int, compare: bool, plot: Path | None,
          as_json: bool) -> None:
    """Measure how fast each model runs on this server, and keep the result.

    \b
    Per model: load time, time to first token, prompt and generation tokens/s for
    a short chat and a ~1700-token prompt (medians of --runs after a warm-up), the
    CPU/GPU split and memory from Ollama, and generation speed as a share of the
    GPU's memory-bandwidth limit. Results are stored on the server
    (<home>/bench.jsonl) with the commit and Ollama settings they ran under.
    """
    settings = server_settings()
    engine = Engine(settings)
    applied = _deployed_models(engine)
    config = applied.models
    assert config is not None
    try:
        ollama = connect(settings, engine.client, applied)
    except OllamaNotReady as exc:
        raise LanaiError(str(exc), exit_code=ExitCode.APPLY_FAILED) from None
    with ollama:
        try:
            results, gpu = _bench(ollama, config, list(names), runs, engine)
        except OllamaError as exc:
            raise LanaiError(exc.message, exit_code=ExitCode.APPLY_FAILED) from None
    run = bench_store.new_run(results, commit=applied.commit,
                              settings=config.ollama.environment(config.budget.max_loaded),
                              gpu=gpu)
    history = bench_store.load_runs(settings.bench_file)
    bench_store.append_run(settings.bench_file, run)
    previous = bench_compare.previous_comparable(history, run) if compare else None
    rows = bench_compare.compare(previous, run) if previous is not None else []
    if plot is not None:
        comparable = [r for r in [*history, run]
                      if r.prompt_set_version == run.prompt_set_version][-8:]
        benchchart.write_svg(plot, benchchart.render_svg(comparable))
    if as_json:
        click.echo(json.dumps({"run": run.to_json(),
                               "compare": [vars(r) for r in rows] if compare else None},
                              indent=1, default=str))
    else:
        models_views.out.print(bench_table.run_table(run))
        if compare and previous is None:
            models_views.out.print("no earlier run with the same prompts to compare with")
        elif previous is not None:
            models_views.out.print(bench_table.compare_table(rows, previous=previous,
                                                             current=run))
        if plot is not None:
            click.echo(f"wrote {plot}", err=True)
    sys.exit(ExitCode.APPLY_FAILED if any(r.error for r in results) else ExitCode.OK)


def _bench(ollama: Ollama, config: ModelsConfig, names: list[str], runs: int,
           engine: Engine) -> tuple[list[ModelResult], GpuInfo | None]:
    tags = {m.name: m for m in ollama.tags()}
    shows: dict[str, dict[str, Any]] = {}
    for name in names or [m.name for m in config.local]:
        if name not in tags:
            raise LanaiError(f"{name} is not on the server; models there: "
                             f"{', '.join(sorted(tags)) or 'none'}.", exit_code=ExitCode.INVALID)
        shows[name] = ollama.show(name)
    chat = [n for n, show in shows.items()
            if "completion" in (show.get("capabilities") or ["completion"])]
    if not chat:
        raise LanaiError("none of these models can chat (embedding models are not measured).",
                         exit_code=ExitCode.INVALID)
    runtime = runtime_of(config)

    def describe(model: str) -> BandwidthFacts | None:
        try:
            facts = ModelFacts.from_show(model, shows[model], size=tags[model].size,
                                         digest=None)
        except ValueError:
            return None
        return BandwidthFacts(
            facts.size, memory.kv_bytes_per_token(facts, memory.kv_type_for(facts, runtime)))

    found = engine.gpu_info()
    gpu = GpuInfo.for_card(found[0], found[1] // 1024**2) if found else None
    results = bench_run.run_bench(
        chat, generate=lambda m, p, o: ollama.generate(m, p, options=o),
        ps=lambda: [vars(loaded) for loaded in ollama.ps()], runs=runs,
        on_progress=lambda line: views.progress(line), describe=describe)
    return results, gpu


