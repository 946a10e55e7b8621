"""What shipping the example's images to a server without a registry costs
(`bootstrap.sh HOST --images FILE`), plain `docker save` against the same archive
compressed (`docker load` reads gzip and zstd archives as they are).
Run from the repo root: `python -m benchmarks.images_shipping`.

Each way is timed as a user pays for it: making the archive on the laptop, copying it
over SSH (what bootstrap does: `ssh HOST "cat > FILE" < FILE`) and `docker load -i` on
the server, into the Docker of a booted Debian 13 test server (tests/e2e/servers.py,
`apt-get install docker.io` first). The images are removed from the server between the
ways. Baseline: the plain archive, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from tests.e2e.servers import boot, example_images, save_images

WAYS = {  # name: (compress command or None, suffix)
    "plain": (None, ""),
    "gzip -1": (["gzip", "-1", "-c"], ".gz"),
    "zstd -3": (["zstd", "-3", "-q", "-c", "-T0"], ".zst"),
}


def timed(argv: list[str], **kwargs: Any) -> float:
    started = time.monotonic()
    subprocess.run(argv, check=True, **kwargs)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    client = docker.from_env(timeout=300)
    images = example_images()
    numbers: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="lanai-bench-images-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        plain = root / "images.tar"
        saved = save_images(images, plain)
        with boot("lanai-test/server:trixie", client, root / "server") as server:
            docker_in = server.ssh("sudo -n sh -c 'apt-get update -qq && DEBIAN_FRONTEND="
                                   "noninteractive apt-get install -y -qq docker.io >/dev/null'",
                                   timeout=900)
            if docker_in.returncode != 0:
                print(docker_in.stderr, file=sys.stderr)
                return 1
            for way, (compress, suffix) in WAYS.items():
                archive = plain.with_name(plain.name + suffix)
                row = {"save_s": saved, "compress_s": 0.0}
                if compress:
                    with archive.open("wb") as out:
                        row["compress_s"] = timed([*compress, str(plain)], stdout=out)
                row["size_gib"] = archive.stat().st_size / 2**30
                with archive.open("rb") as data:
                    row["copy_s"] = timed(server.ssh_command(
                        f"cat > /tmp/images{suffix}"), stdin=data, timeout=1800)
                row["load_s"] = timed(server.ssh_command(
                    f"sudo -n docker load -q -i /tmp/images{suffix}"),
                    capture_output=True, timeout=1800)
                server.ssh(f"sudo -n rm -f /tmp/images{suffix}; sudo -n docker image rm "
                           f"{' '.join(images)}; sudo -n docker image prune -f", timeout=600)
                row["total_s"] = sum(row[k] for k in ("save_s", "compress_s", "copy_s", "load_s"))
                numbers[way] = row
                if compress:
                    archive.unlink()
    for row in numbers.values():
        row["total_over_plain"] = row["total_s"] / numbers["plain"]["total_s"]
        row["per_extra_server_over_plain"] = (row["copy_s"] + row["load_s"]) / (
            numbers["plain"]["copy_s"] + numbers["plain"]["load_s"])
    if args.json:
        print(json.dumps({w: {k: round(v, 3) for k, v in r.items()} for w, r in numbers.items()},
                         indent=1))
        return 0
    print(f"{', '.join(images)} to a Debian 13 server over SSH:")
    for way, row in numbers.items():
        print(f"  {way:8} {row['size_gib']:.2f} GiB: save {row['save_s']:.0f} s + compress "
              f"{row['compress_s']:.0f} s + copy {row['copy_s']:.0f} s + load {row['load_s']:.0f}"
              f" s = {row['total_s']:.0f} s (x{row['total_over_plain']:.2f} of plain; each "
              f"further server x{row['per_extra_server_over_plain']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
