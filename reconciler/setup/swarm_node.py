"""A GPU server as a Docker Swarm node: the text bootstrap.sh writes, from pure functions.

Swarm's service spec has no GPU request (no `--gpus`, no DeviceRequests), so a GPU node
is set up the way Swarm can use it (the toolkit's and Docker's documented way):

- Docker's *default* runtime is the NVIDIA runtime (every container on the node goes
  through it; without NVIDIA_VISIBLE_DEVICES it changes nothing);
- the GPUs are advertised to the swarm as generic resources, one `gpu=<UUID>` per GPU
  from `nvidia-smi -L` (daemon.json `node-generic-resources`); a service reserving
  `gpu` is then given GPUs by UUID in the environment variable DOCKER_RESOURCE_GPU;
- the toolkit takes its device list from that variable:
  `swarm-resource = "DOCKER_RESOURCE_GPU"` in /etc/nvidia-container-runtime/config.toml
  (the toolkit ships the line commented out; a swarm-assigned list then wins over the
  image's NVIDIA_VISIBLE_DEVICES).

This file runs on the server with the plain `python3` of the distribution (workers get
no lanai virtualenv), so it imports nothing but the standard library:

    python3 swarm_node.py gpu-config DAEMON_JSON CONFIG_TOML < nvidia-smi-L.txt
    python3 swarm_node.py live-restore DAEMON_JSON

Pure functions first (tested as exact text on real `nvidia-smi -L` output), then the
few lines that read and write the files.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile

SWARM_RESOURCE_KEY = "swarm-resource"
SWARM_RESOURCE_VALUE = "DOCKER_RESOURCE_GPU"  # swarmkit: DOCKER_RESOURCE_ + kind "gpu"
SWARM_RESOURCE_LINE = f'{SWARM_RESOURCE_KEY} = "{SWARM_RESOURCE_VALUE}"'
NVIDIA_RUNTIME = {"path": "nvidia-container-runtime", "args": []}  # as nvidia-ctk writes it
GENERIC_KIND = "gpu"

_UUID = re.compile(r"^GPU \d+: .*\(UUID: (GPU-[0-9A-Fa-f-]+)\)\s*$")


def gpu_uuids(listing: str) -> list[str]:
    """The full GPU UUIDs of `nvidia-smi -L`, in its order (MIG device lines, indented
    under their GPU, are not GPUs and are skipped)."""
    return [m[1] for line in listing.splitlines() if (m := _UUID.match(line))]


def generic_resources(uuids: list[str]) -> list[str]:
    """daemon.json's node-generic-resources items for these GPUs."""
    return [f"{GENERIC_KIND}={uuid}" for uuid in uuids]


def swarm_gpu_daemon_json(current: dict, uuids: list[str]) -> dict:
    """daemon.json for a swarm GPU node: the NVIDIA runtime registered (an existing entry
    is kept as it is) and made the default, and the GPUs as generic resources (earlier
    `gpu=` items replaced, other kinds kept). Every other key is kept."""
    out = dict(current)
    runtimes = dict(out.get("runtimes") or {})
    runtimes.setdefault("nvidia", dict(NVIDIA_RUNTIME))
    out["runtimes"] = runtimes
    out["default-runtime"] = "nvidia"
    others = [item for item in out.get("node-generic-resources") or []
              if not str(item).startswith(f"{GENERIC_KIND}=")]
    out["node-generic-resources"] = others + generic_resources(uuids)
    return out


def config_toml_with_swarm_resource(text: str) -> str:
    """The toolkit's config.toml with `swarm-resource = "DOCKER_RESOURCE_GPU"` set. The key
    is top-level, so it must stand before the first [table]: an existing (or commented)
    top-level line is replaced in place, else the line goes first."""
    lines = text.splitlines()
    key = re.compile(rf"^\s*#?\s*{re.escape(SWARM_RESOURCE_KEY)}\s*=")
    for index, line in enumerate(lines):
        if line.lstrip().startswith("["):
            break
        if key.match(line):
            lines[index] = SWARM_RESOURCE_LINE
            return "\n".join(lines) + "\n"
    return "\n".join([SWARM_RESOURCE_LINE, *lines]) + "\n"


def live_restore(daemon_json_text: str) -> bool:
    """Whether daemon.json turns live-restore on (Docker refuses swarm mode with it)."""
    try:
        data = json.loads(daemon_json_text) if daemon_json_text.strip() else {}
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("live-restore") is True


# -- the files (run on the server) --------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _write(path: str, text: str) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".lanai.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def gpu_config(daemon_json: str, config_toml: str, listing: str) -> tuple[list[str], list[str]]:
    """Write both files where they differ; returns (the paths written, the GPU UUIDs)."""
    uuids = gpu_uuids(listing)
    if not uuids:
        raise ValueError("nvidia-smi -L listed no GPU with a UUID")
    written = []
    text = _read(daemon_json)
    try:
        current = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise ValueError(f"{daemon_json} is not valid JSON ({error}); Docker will not start "
                         "with it either: fix it by hand and run again") from None
    if not isinstance(current, dict):
        raise ValueError(f"{daemon_json} is not a JSON object; fix it by hand and run again")
    wanted = swarm_gpu_daemon_json(current, uuids)
    if wanted != current:
        _write(daemon_json, json.dumps(wanted, indent=4) + "\n")
        written.append(daemon_json)
    toml = _read(config_toml)
    new_toml = config_toml_with_swarm_resource(toml)
    if new_toml != toml:
        _write(config_toml, new_toml)
        written.append(config_toml)
    return written, uuids


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "gpu-config":
        try:
            written, uuids = gpu_config(argv[1], argv[2], sys.stdin.read())
        except (ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print("changed" if written else "unchanged")
        print(",".join(uuids))
        return 0
    if len(argv) == 2 and argv[0] == "live-restore":
        return 0 if live_restore(_read(argv[1])) else 3
    print("usage: swarm_node.py gpu-config DAEMON_JSON CONFIG_TOML < nvidia-smi-L.txt\n"
          "       swarm_node.py live-restore DAEMON_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
