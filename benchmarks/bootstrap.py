"""How long `./bootstrap.sh admin@server` takes on a fresh Debian 13 server, and how long
a second, no-op run takes. Run from the repo root: `python -m benchmarks.bootstrap`.

The server is the end-to-end test server (tests/e2e/servers.py: a systemd container
with sshd, reached over real SSH on 127.0.0.1). Baseline, measured in the same run on
a second fresh server: the two commands that dominate a first run done by hand,
`apt-get update && apt-get install docker.io docker-compose`. Docker Hub cannot be
reached here, so the stack is the small test stack and its images travel with
--images, as they would to an offline server.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

from tests.e2e.harness import REPO_ROOT
from tests.e2e.servers import boot, mini_seed_and_images


def timed(argv: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1200,
                            stdin=subprocess.DEVNULL)
    return time.monotonic() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    client = docker.from_env(timeout=300)
    numbers: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="lanai-bench-bootstrap-") as tmp:
        root = Path(tmp)
        seed, images = mini_seed_and_images(root)
        (root / "a").mkdir()
        (root / "b").mkdir()
        with boot("lanai-test/server:trixie", client, root / "a") as server:
            command = ["bash", str(REPO_ROOT / "bootstrap.sh"), server.host, "--ssh-config",
                       str(server.ssh_config_path), "--yes", "--seed", str(seed)]
            numbers["first_run_s"], first = timed([*command, "--images", str(images)])
            if first.returncode != 0:
                print(first.stdout + first.stderr, file=sys.stderr)
                return 1
            numbers["noop_run_s"], second = timed(command)
            if second.returncode != 0:
                print(second.stdout + second.stderr, file=sys.stderr)
                return 1
        with boot("lanai-test/server:trixie", client, root / "b") as bare:
            started = time.monotonic()
            base = bare.ssh("sudo -n sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive"
                            " apt-get install -y -qq docker.io docker-compose >/dev/null'")
            numbers["baseline_apt_docker_s"] = time.monotonic() - started
            if base.returncode != 0:
                print(base.stderr, file=sys.stderr)
                return 1
    numbers["first_over_baseline"] = numbers["first_run_s"] / numbers["baseline_apt_docker_s"]
    numbers["noop_over_first"] = numbers["noop_run_s"] / numbers["first_run_s"]
    if args.json:
        print(json.dumps({k: round(v, 3) for k, v in numbers.items()}, indent=1))
        return 0
    print(f"bootstrap over SSH, fresh Debian 13 server: {numbers['first_run_s']:.1f} s "
          f"(x{numbers['first_over_baseline']:.2f} of installing Docker by hand: "
          f"{numbers['baseline_apt_docker_s']:.1f} s)")
    print(f"second run (no-op): {numbers['noop_run_s']:.1f} s "
          f"(x{numbers['noop_over_first']:.2f} of the first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
