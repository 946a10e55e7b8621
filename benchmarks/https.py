"""What an Open WebUI update costs the family: requests through the HTTPS proxy meanwhile.

    python -m benchmarks.https            # table on stdout, progress on stderr
    python -m benchmarks.https --json

Deploys the example state (real Open WebUI from the pinned wheel, the Ollama double,
the Caddy proxy on free loopback ports) as tests/e2e/harness.py does, then sends
--rate requests a second to https://ai.home.arpa/health through the proxy (Host and
SNI set, the server's CA trusted): first --steady seconds with nothing happening (the
baseline), then through a git push that changes Open WebUI's image tag and the
reconcile that replaces its container. Prints failed requests (the target: 0) and
latency percentiles of both windows; the update's maximum is how long the proxy held
a request while Open WebUI restarted.

Exit status: 0 when it ran, 1 when it could not finish, 2 without Docker or images.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from tests.e2e.harness import (
    REQUIRED_IMAGES,
    Server,
    example_repo,
    new_project,
)
from tests.e2e.probe import Probe

NAME = "ai.home.arpa"
WEBUI = "ghcr.io/open-webui/open-webui:v0.12.4"
BENCH_TAG = "v0.12.4-bench"


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summary(results: list[tuple[int | str, float]]) -> dict[str, Any]:
    times = sorted(t for _s, t in results)
    if not times:
        return {"requests": 0}

    def pct(q: float) -> float:
        return round(times[min(len(times) - 1, int(q * len(times)))], 3)

    return {"requests": len(results), "failed": sum(1 for s, _t in results if s != 200),
            "p50_s": pct(0.5), "p99_s": pct(0.99), "max_s": round(times[-1], 3),
            "mean_s": round(statistics.fmean(times), 3)}


def run_probe(port: int, tls: ssl.SSLContext, rate: float, during: Any) -> list[Any]:
    probe = Probe(port, NAME, tls, rate)
    probe.start()
    try:
        during()
    finally:
        results = probe.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--steady", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        client = docker.from_env(timeout=300)
        for image in REQUIRED_IMAGES:
            client.images.get(image)
    except Exception as exc:  # no engine, or the test images are not built
        say(f"cannot run: {exc} (start Docker and run tests/images/build.sh)")
        return 2
    metrics: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="lanai-bench-https-") as tmp:
        root = Path(tmp)
        project = new_project().replace("e2e", "bench")
        repo, ports = example_repo(root, project)
        secure = ports.https
        server = Server(root, repo, project, client,
                        {"WEBUI_SECRET_KEY": "bench-secret", "WEBUI_ADMIN_PASSWORD": "bench-pw"})
        try:
            say("deploying the example state (Open WebUI's first start takes a while)")
            code, outcome = server.reconcile()
            if code != 0:
                say(f"deploy failed: {outcome.get('error')}")
                return 1
            trust = server.lanai_json("trust")[1]
            tls = ssl.create_default_context(cadata=trust["ca_pem"])
            say(f"steady: {args.rate:.0f} req/s for {args.steady:.0f}s")
            steady = run_probe(secure, tls, args.rate, lambda: time.sleep(args.steady))
            client.images.get(WEBUI).tag(WEBUI.rsplit(":", 1)[0], BENCH_TAG)
            repo.replace("compose.yaml", f"image: {WEBUI}", f"image: {WEBUI.rsplit(':', 1)[0]}"
                         f":{BENCH_TAG}")
            repo.commit_push("Open WebUI update")
            timing: dict[str, float] = {}

            def update() -> None:
                time.sleep(2)
                began = time.monotonic()
                code, outcome = server.reconcile()
                timing["reconcile_s"] = round(time.monotonic() - began, 2)
                if code != 0:
                    raise RuntimeError(f"the update failed: {outcome.get('error')}")
                time.sleep(2)

            say("updating Open WebUI through git under the same load")
            during = run_probe(secure, tls, args.rate, update)
            metrics = {"rate_per_s": args.rate, "steady": summary(steady),
                       "update": summary(during), **timing}
            base = metrics["steady"]["max_s"] or 0.001
            metrics["update_max_over_steady_max"] = round(metrics["update"]["max_s"] / base, 1)
        finally:
            server.teardown()
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(f"{WEBUI.rsplit(':', 1)[0]}:{BENCH_TAG}")
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        for window in ("steady", "update"):
            m = metrics[window]
            print(f"{window:<7} {m['requests']:>5} requests  {m['failed']} failed  "
                  f"p50 {m['p50_s']:.3f}s  p99 {m['p99_s']:.3f}s  max {m['max_s']:.3f}s")
        print(f"reconcile {metrics.get('reconcile_s')}s; the longest held request was "
              f"x{metrics['update_max_over_steady_max']} the steady maximum")
    return 0 if metrics["update"].get("failed") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
