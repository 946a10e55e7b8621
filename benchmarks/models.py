"""What models.yaml costs the reconciler: per idle poll, on a first deploy, in a PR check.

    python -m benchmarks.models            # table on stdout, progress on stderr
    python -m benchmarks.models --json

Sets up the models end-to-end stack (tests/e2e/stacks/models: the Ollama API double
on a tmpfs volume) the way tests/e2e/harness.py does, and measures, on this machine:

1. idle reconcile with models.yaml (two models converged: the poll asks Ollama for
   /api/tags and /api/ps) against the same stack after a commit that deletes
   models.yaml (the baseline: stack checks only), in-process, median of N;
2. the first deploy's "models" phase (pull two models at the double's 1 GB/s,
   set num_ctx, warm the default, verify) against the pulls' own time;
3. the offline fit table of the example state (what a PR check computes), against
   loading the state alone.

Exit status: 0 when it ran, 1 when it could not finish, 2 without Docker or images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from reconciler.desired import load as desired
from reconciler.engine.reconcile import Engine
from reconciler.models.fit import fit_directory
from reconciler.server.settings import load_settings
from tests.e2e.harness import (
    EXAMPLE_STATE,
    ModelRegistry,
    Outside,
    Server,
    StateRepo,
    new_project,
)

STACK = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "stacks" / "models"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(func: Any, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        out.append(time.perf_counter() - start)
    return out


def engine_for(server: Server) -> Engine:
    return Engine(load_settings(server.env), progress=lambda _m: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-runs", type=int, default=30)
    parser.add_argument("--fit-runs", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        client = docker.from_env(timeout=120)
        client.images.get("ollama/ollama:0.24.0")
    except Exception as exc:  # no engine, or the test image is not built
        say(f"cannot run: {exc} (start Docker and run tests/images/build.sh)")
        return 2
    metrics: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lanai-bench-models-") as tmp:
        root = Path(tmp)
        project = new_project().replace("e2e", "bench")
        # The double pulls over the network, from a stand-in for registry.ollama.ai.
        registry = ModelRegistry(client)
        Outside.started[:] = [registry]
        repo = StateRepo(root, STACK, {"PROJECT": project})
        server = Server(root, repo, project, client)
        try:
            say("first deploy: stack + two models")
            engine = engine_for(server)
            started = time.perf_counter()
            outcome = engine.reconcile(trigger="bench")
            total = time.perf_counter() - started
            if outcome.error:
                say(f"first deploy failed: {outcome.error}")
                return 1
            pulls = sum(a.get("seconds", 0) for a in outcome.models["actions"]
                        if a["kind"] == "pull")
            metrics["first_deploy_s"] = round(total, 3)
            metrics["models_phase_s"] = outcome.durations.get("models")
            metrics["models_pull_s"] = round(pulls, 3)
            metrics["models_overhead_s"] = round((outcome.durations.get("models") or 0) - pulls,
                                                 3)
            say(f"idle reconcile with models.yaml x{args.idle_runs}")
            with_models = timed(lambda: engine.reconcile(trigger="poll"), args.idle_runs)
            repo.write("models.yaml", "")
            (repo.work / "models.yaml").unlink()
            repo.commit_push("No models.yaml: the baseline")
            engine.reconcile(trigger="bench")
            say(f"idle reconcile without models.yaml x{args.idle_runs}")
            without = timed(lambda: engine.reconcile(trigger="poll"), args.idle_runs)
            metrics["idle_with_models_ms"] = round(statistics.median(with_models) * 1000, 1)
            metrics["idle_without_models_ms"] = round(statistics.median(without) * 1000, 1)
            metrics["idle_ratio"] = round(statistics.median(with_models)
                                          / statistics.median(without), 2)
        finally:
            server.teardown()
            Outside.started.clear()
            registry.stop()
    say(f"fit table of the example state x{args.fit_runs}")
    state = desired.load_state(EXAMPLE_STATE)
    assert state.models is not None
    load = timed(lambda: desired.load_state(EXAMPLE_STATE), args.fit_runs)
    fit = timed(lambda: fit_directory(EXAMPLE_STATE, state.models), args.fit_runs)
    metrics["load_state_ms"] = round(statistics.median(load) * 1000, 2)
    metrics["fit_table_ms"] = round(statistics.median(fit) * 1000, 2)
    metrics["fit_ratio_to_load"] = round(statistics.median(fit) / statistics.median(load), 2)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        width = max(len(k) for k in metrics)
        for key, value in metrics.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
