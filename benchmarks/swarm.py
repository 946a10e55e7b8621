"""Push to Synced on three servers (swarm mode) against the same push on one server
(compose mode), in the same run. Run from the repo root: `python -m benchmarks.swarm`.

A manual benchmark, not run in CI: it needs this machine's Docker engine and the test
images that tests/images/build.sh builds (lanai-test/server:trixie, the Ollama double as
ollama/ollama:0.24.0, Open WebUI, Caddy); it takes 20-30 minutes on 2 cores.

It does what the end-to-end tests do (tests/e2e/test_full_example_servers.py,
swarm_join.py, swarm_deploy.py), with their helpers: a Debian 13 test server booted as
the lanai server (box-a), its Docker pointed at a DNS server that names the stand-in for
registry.ollama.ai, `./bootstrap.sh` of the full example with `--images`; N pushes of
each change on that one box; then two more servers booted and joined with
`./bootstrap.sh --join box-a box-b box-c --images <Ollama archive>`, the push of
`mode: swarm` (swarm_deploy.switch_to_swarm: Ollama on box-b and box-c, placed models),
and the same N pushes on three servers. A push is timed from the start of `git push`
until `lanai status --json` (over SSH, polled) says Synced at the pushed commit.

The changes: models.yaml `ollama.keep_alive` toggled (every Ollama restarts) and a
harmless variable in Open WebUI's environment in compose.yaml (Open WebUI restarts).
Everything it creates (servers, their volumes, the stand-ins, the DNS server, the temp
dir with the image archives) is removed at the end, also on an error or Ctrl-C/SIGTERM.
"""

from __future__ import annotations

import argparse
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from tests.e2e.harness import CloudProvider, ModelRegistry
from tests.e2e.servers import (
    SERVER_TRIXIE,
    OutsideDNS,
    TestServer,
    bootstrap,
    example_images,
    save_images,
    start,
    use_outside_dns,
)
from tests.e2e.swarm_deploy import Fleet, images_for_workers, switch_to_swarm
from tests.e2e.swarm_join import MANAGER, WORKERS, run_bootstrap, ssh_config

WEBUI_LINE = '      WEBUI_AUTH: "true"\n'  # in open-webui's environment (desired-state)


def keep_alive(clone: Path) -> str:
    """31m <-> 32m (the example says 30m)."""
    path = clone / "models.yaml"
    text = path.read_text()
    new = "32m" if re.search(r"(?m)^ +keep_alive: 31m$", text) else "31m"
    text, count = re.subn(r"(?m)^( +keep_alive:).*$", rf"\g<1> {new}", text)
    assert count == 1, "models.yaml has no ollama.keep_alive"
    path.write_text(text)
    return "models.yaml ollama.keep_alive"


def webui_env(clone: Path) -> str:
    """A variable Open WebUI ignores, given a new value."""
    path = clone / "compose.yaml"
    text = re.sub(r'(?m)^      LANAI_BENCH_PUSH: ".*"\n', "", path.read_text())
    assert WEBUI_LINE in text, "compose.yaml's open-webui has no WEBUI_AUTH line"
    path.write_text(text.replace(WEBUI_LINE,
                                 f'{WEBUI_LINE}      LANAI_BENCH_PUSH: "{time.time_ns()}"\n'))
    return "compose.yaml open-webui environment"


CHANGES: list[Callable[[Path], str]] = [keep_alive, webui_env]


def timed(numbers: dict[str, float], what: str, step: Callable[[], Any]) -> Any:
    print(f"... {what}", file=sys.stderr, flush=True)
    mark = time.monotonic()
    result = step()
    numbers[what] = time.monotonic() - mark
    print(f"    {numbers[what]:.1f} s", file=sys.stderr, flush=True)
    return result


def checked(result: Any, what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} exited {result.returncode}:\n"
                           f"{(result.stdout + result.stderr)[-6000:]}")


def push_and_sync(fleet: Fleet, message: str, timeout: float) -> float:
    mark = time.monotonic()
    fleet.synced(fleet.push(message), timeout, message)
    return time.monotonic() - mark


def measure(fleet: Fleet, runs: int, where: str, timeout: float,
            seconds: dict[str, list[float]]) -> None:
    clone = fleet.checkout()
    for run in range(runs):
        for change in CHANGES:
            what = change(clone)
            took = push_and_sync(fleet, f"bench ({where}): {what} #{run + 1}", timeout)
            seconds.setdefault(what, []).append(took)
            print(f"    {where}: {what} #{run + 1}: {took:.1f} s", file=sys.stderr, flush=True)


def report(runs: int, one: dict[str, list[float]], three: dict[str, list[float]],
           once: dict[str, float]) -> None:
    def cell(times: list[float]) -> str:
        return (f"{statistics.median(times):.1f} s ({min(times):.1f}-{max(times):.1f})"
                if times else "-")
    print(f"\n| change ({runs} pushes each) | one box, median (min-max) | three servers, "
          "median (min-max) | ratio |\n|---|---|---|---|")
    for what, times in one.items():
        other = three.get(what, [])
        ratio = f"x{statistics.median(other) / statistics.median(times):.2f}" if other else "-"
        print(f"| {what} | {cell(times)} | {cell(other)} | {ratio} |")
    print("\n| one-time step | seconds |\n|---|---|")
    for what, seconds in once.items():
        print(f"| {what} | {seconds:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Manual, not in CI: needs Docker and the images of tests/images/build.sh; "
               "about 20-30 minutes on 2 cores.")
    parser.add_argument("--runs", type=int, default=3, help="pushes of each change per "
                        "setup (default 3)")
    parser.add_argument("--push-timeout", type=float, default=900,
                        help="seconds a push may take to reach Synced (default 900)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))  # so that cleanup runs
    client = docker.from_env(timeout=300)
    once: dict[str, float] = {}
    one: dict[str, list[float]] = {}
    three: dict[str, list[float]] = {}
    made: list[Any] = []  # stand-ins, DNS, servers: removed in reverse order
    try:
        with tempfile.TemporaryDirectory(prefix="lanai-bench-swarm-") as tmp:
            root = Path(tmp)
            made.append(ModelRegistry(client))
            made.append(CloudProvider(client))
            dns = OutsideDNS(client, made[:2])
            made.append(dns)
            archive = root / "example-images.tar"
            timed(once, "docker save of the example's images", lambda: save_images(
                example_images(), archive))
            box_a: TestServer = timed(once, "boot box-a", lambda: start(
                SERVER_TRIXIE, client, root / MANAGER))
            made.append(box_a)
            use_outside_dns(box_a, dns.address)
            checked(timed(once, "bootstrap box-a (full example, --images)", lambda: bootstrap(
                box_a, "--images", str(archive), timeout=3600)), "bootstrap")
            fleet = Fleet(box_a, {MANAGER: box_a}, box_a.ssh_config_path, root)
            fleet.synced(fleet.status().get("applied_commit", "?"), 1200, "Synced after "
                         "bootstrap")
            measure(fleet, args.runs, "one box", args.push_timeout, one)

            for name in WORKERS:
                worker = timed(once, f"boot {name}", lambda n=name: start(
                    SERVER_TRIXIE, client, root / n))
                made.append(worker)
                use_outside_dns(worker, dns.address)
            fleet.servers = {MANAGER: box_a, **dict(zip(WORKERS, made[-2:], strict=True))}
            fleet.config = ssh_config(fleet.servers, root / "ssh_config")
            ollama = images_for_workers(root)
            checked(timed(once, "--join box-b box-c --images (Ollama)", lambda: run_bootstrap(
                ["--join", *fleet.servers, "--images", str(ollama)], fleet.config,
                root / "logs", timeout=1800)), "bootstrap --join")
            switch_to_swarm(fleet.checkout())
            timed(once, "push of mode: swarm to Synced", lambda: push_and_sync(
                fleet, "bench: three servers", 1800))
            measure(fleet, args.runs, "three servers", args.push_timeout, three)
    finally:
        for thing in reversed(made):
            try:
                if isinstance(thing, TestServer):
                    thing.teardown()
                else:
                    thing.stop()
            except Exception as exc:  # keep removing the rest
                print(f"cleanup of {thing}: {exc}", file=sys.stderr)
        report(args.runs, one, three, once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
