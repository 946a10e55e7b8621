"""Observe NVIDIA GPUs through nvidia-smi.

Pure parsers for the outputs nvidia-smi can give (``--query-gpu`` CSV, ``-q -x`` XML,
``-L``, ``/proc/driver/nvidia/version``), a classifier that turns its known failure
messages into a cause and a fix, and one thin I/O edge, :func:`observe_gpus`, whose
runner is injectable so everything is testable without a GPU.

"No GPU" (no nvidia-smi on the host) and "GPU broken" (nvidia-smi present but failing)
are different facts: the first is ``GpuFacts([], None)``, the second carries an error.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

NVIDIA_SMI = "nvidia-smi"
TIMEOUT_S = 10

# Order matters: without a header, CSV columns are matched to these by position.
# The first eight are what the fixture's header shows; the last three are the
# live readings (utilization %, temperature C, power W) the noheader fixture adds.
QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.used",
    "memory.free",
    "driver_version",
    "compute_cap",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
)


@dataclass(frozen=True)
class Gpu:
    """One GPU. Memory is None where the driver reports none (unified-memory boards)."""

    index: int
    name: str
    uuid: str
    driver_version: str | None
    memory_total_mib: int | None
    memory_used_mib: int | None
    memory_free_mib: int | None
    utilization_gpu_pct: int | None = None
    temperature_c: int | None = None
    power_draw_w: float | None = None
    compute_cap: str | None = None
    cuda_version: str | None = None


@dataclass
class GpuFacts:
    """What observe_gpus saw: GPUs, or why it could not see them (error None = healthy)."""

    gpus: list[Gpu] = field(default_factory=list)
    error: str | None = None


class ListedGpu(NamedTuple):
    """One line of ``nvidia-smi -L``."""

    index: int
    name: str
    uuid: str


# ---------------------------------------------------------------- values


_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:MiB|W|%|C|MHz)?$")


def _clean(raw: str | None) -> str | None:
    """Strip a raw value; None for nvidia-smi's placeholders ("[N/A]", "[Not Supported]")."""
    if raw is None:
        return None
    value = raw.strip()
    # Every placeholder nvidia-smi prints is bracketed ("[N/A]", "[Unknown Error]", ...),
    # except the XML's bare "N/A".
    if not value or value == "N/A" or (value.startswith("[") and value.endswith("]")):
        return None
    return value


def _number(raw: str | None) -> float | None:
    value = _clean(raw)
    if value is None:
        return None
    match = _NUMBER.match(value)
    if match is None:
        raise ValueError(f"not a number: {raw!r}")
    return float(match.group(1))


def _int(raw: str | None) -> int | None:
    number = _number(raw)
    return None if number is None else round(number)


def _free(total: int | None, used: int | None, free: int | None) -> int | None:
    # Derived free ignores the driver's reserved memory (480 MiB on the H100
    # fixture), so a reported value always wins.
    if free is not None:
        return free
    if total is None or used is None:
        return None
    return total - used


def _build(values: dict[str, str | None], position: int) -> Gpu:
    """A Gpu from field name -> raw text; `position` stands in for a missing index."""
    total = _int(values.get("memory.total"))
    used = _int(values.get("memory.used"))
    index = _int(values.get("index"))
    return Gpu(
        index=position if index is None else index,
        name=_clean(values.get("name")) or "unknown NVIDIA GPU",
        uuid=_clean(values.get("uuid")) or "",
        driver_version=_clean(values.get("driver_version")),
        memory_total_mib=total,
        memory_used_mib=used,
        memory_free_mib=_free(total, used, _int(values.get("memory.free"))),
        utilization_gpu_pct=_int(values.get("utilization.gpu")),
        temperature_c=_int(values.get("temperature.gpu")),
        power_draw_w=_number(values.get("power.draw")),
        compute_cap=_clean(values.get("compute_cap")),
        cuda_version=_clean(values.get("cuda_version")),
    )


# ---------------------------------------------------------------- CSV


def query_command() -> list[str]:
    """The argv that observe_gpus runs."""
    return [
        NVIDIA_SMI,
        "--query-gpu=" + ",".join(QUERY_FIELDS),
        "--format=csv,noheader,nounits",
    ]


def _header_name(cell: str) -> str:
    """Drop the unit: `memory.total [MiB]` -> `memory.total`."""
    return cell.split(" [", 1)[0].strip()


def _is_header(row: list[str]) -> bool:
    return bool(row) and _header_name(row[0]) in QUERY_FIELDS


def parse_query_csv(text: str, fields: Iterable[str] = QUERY_FIELDS) -> list[Gpu]:
    """Parse ``--query-gpu`` CSV, with or without header, with or without units.

    A header, when present, names the columns; otherwise they are `fields` in order.
    """
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    names = list(fields)
    if rows and _is_header(rows[0]):
        names = [_header_name(cell) for cell in rows[0]]
        rows = rows[1:]
    gpus = []
    for position, row in enumerate(rows):
        if len(row) > len(names):
            raise ValueError(f"{len(row)} columns, expected {len(names)}: {row!r}")
        gpus.append(_build(dict(zip(names, row, strict=False)), position))
    return gpus


# ---------------------------------------------------------------- XML


def _text(element: ET.Element, *paths: str) -> str | None:
    """Text of the first path that exists and holds a value."""
    for path in paths:
        value = _clean(element.findtext(path))
        if value is not None:
            return value
    return None


def parse_smi_xml(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi -q -x``; the index is document order, as nvidia-smi numbers them."""
    root = ET.fromstring(text)
    common = {
        "driver_version": _text(root, "driver_version"),
        "cuda_version": _text(root, "cuda_version"),
    }
    gpus = []
    for position, gpu in enumerate(root.findall("gpu")):
        values = {
            **common,
            "name": _text(gpu, "product_name"),
            "uuid": _text(gpu, "uuid"),
            "memory.total": _text(gpu, "fb_memory_usage/total"),
            "memory.used": _text(gpu, "fb_memory_usage/used"),
            "memory.free": _text(gpu, "fb_memory_usage/free"),
            "utilization.gpu": _text(gpu, "utilization/gpu_util"),
            "temperature.gpu": _text(gpu, "temperature/gpu_temp"),
            # The element moved across driver generations; 5xx drivers give an
            # average (what --query-gpu power.draw reports on Ampere and newer).
            "power.draw": _text(
                gpu,
                "gpu_power_readings/power_draw",
                "gpu_power_readings/average_power_draw",
                "gpu_power_readings/instant_power_draw",
                "power_readings/power_draw",
            ),
        }
        gpus.append(_build(values, position))
    return gpus


# ---------------------------------------------------------------- -L and /proc


_LIST_LINE = re.compile(r"^GPU (\d+): (.+) \(UUID: ([^)]+)\)$")


def parse_list(text: str) -> list[ListedGpu]:
    """Parse ``nvidia-smi -L``; indented MIG device lines are skipped."""
    listed = []
    for line in text.splitlines():
        match = _LIST_LINE.match(line.strip())
        if match:
            listed.append(ListedGpu(int(match.group(1)), match.group(2), match.group(3)))
    return listed


# Matches both "NVIDIA UNIX x86_64 Kernel Module  550.54.14  <date>" and the open
# module's "NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build".
_NVRM = re.compile(r"^NVRM version:.*?Kernel Module\b.*?\s(\d+\.\d+(?:\.\d+)*)\s", re.MULTILINE)


def parse_driver_version(proc_text: str) -> str | None:
    """The loaded kernel module's version from /proc/driver/nvidia/version."""
    match = _NVRM.search(proc_text + " ")
    return match.group(1) if match else None


# ---------------------------------------------------------------- failures


_NO_DEVICES = (
    "The NVIDIA driver is loaded but sees no GPU: check that the card is seated and "
    "powered, and that it is passed through if this is a VM."
)

# Substring of nvidia-smi's output -> cause and fix. First match wins.
_FAILURES: tuple[tuple[str, str], ...] = (
    (
        "couldn't communicate with the NVIDIA driver",
        "The NVIDIA kernel driver is not loaded (not installed for this kernel, or a "
        "kernel/driver update awaits a reboot): reboot, and if it persists reinstall "
        "the driver for the running kernel.",
    ),
    (
        "Driver/library version mismatch",
        "The NVIDIA driver was upgraded but the old kernel module is still loaded: "
        "reboot the server.",
    ),
    # A container loses its GPU when systemd reloads units (e.g. `systemctl
    # daemon-reload`) while Docker uses the systemd cgroup driver. NVIDIA's notice,
    # https://github.com/NVIDIA/nvidia-docker/issues/1730 (referred to by the known-issue
    # note in docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/
    # install-guide.html): the container must be recreated; workarounds, most
    # recommended first: `nvidia-ctk system create-dev-char-symlinks --create-all` at
    # boot (udev rule), or "exec-opts": ["native.cgroupdriver=cgroupfs"] in daemon.json.
    (
        "Failed to initialize NVML: Unknown Error",
        "The container lost access to the GPU after a systemd reload (a known NVIDIA "
        "Container Toolkit issue): recreate the container, and prevent it with "
        "`sudo nvidia-ctk system create-dev-char-symlinks --create-all` at boot or "
        '"exec-opts": ["native.cgroupdriver=cgroupfs"] in /etc/docker/daemon.json.',
    ),
    (
        "has fallen off the bus",
        "The GPU dropped off the PCIe bus (power, heat or hardware fault): reboot, "
        "and check power and cooling if it recurs.",
    ),
    ("No devices were found", _NO_DEVICES),
    (
        "Insufficient Permissions",
        "nvidia-smi lacks permission to the GPU device nodes: run it as root or fix "
        "the permissions of /dev/nvidia*.",
    ),
)

_NOT_FOUND = (
    "nvidia-smi was not found, so no NVIDIA driver is installed (or there is no NVIDIA "
    "GPU): install the driver with `sudo ubuntu-drivers install`, then reboot."
)


def classify_failure(returncode: int, stdout: str, stderr: str) -> str:
    """One sentence naming the cause of a failed nvidia-smi run and its fix."""
    output = f"{stdout}\n{stderr}"
    for needle, explanation in _FAILURES:
        if needle.lower() in output.lower():
            return explanation
    # 127 is the shell's "command not found"; nvidia-smi itself never returns it.
    if returncode == 127 or "command not found" in output or "No such file" in output:
        return _NOT_FOUND
    first_line = next((line.strip() for line in output.splitlines() if line.strip()), "")
    detail = f": {first_line}" if first_line else ""
    return f"nvidia-smi failed with exit code {returncode}{detail}."


# ---------------------------------------------------------------- I/O edge


Runner = Callable[..., subprocess.CompletedProcess[str]]
Which = Callable[[str], str | None]
_TIMED_OUT = (
    f"nvidia-smi did not answer within {TIMEOUT_S} s, so the driver or GPU is hung: "
    "reboot the server."
)


def observe_gpus(run: Runner = subprocess.run, which: Which = shutil.which) -> GpuFacts:
    """Run the query; no nvidia-smi means no GPU, a failing one means a broken GPU."""
    if which(NVIDIA_SMI) is None:
        return GpuFacts([], None)
    try:
        done = run(query_command(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return GpuFacts([], _TIMED_OUT)
    except OSError as exc:  # found by which() but not runnable: treat as not installed
        return GpuFacts([], classify_failure(127, "", str(exc)))
    if done.returncode != 0:
        return GpuFacts([], classify_failure(done.returncode, done.stdout, done.stderr))
    return _parsed(done)


def _parsed(done: subprocess.CompletedProcess[str]) -> GpuFacts:
    try:
        gpus = parse_query_csv(done.stdout)
    except ValueError as exc:
        return GpuFacts([], f"could not parse nvidia-smi output ({exc}).")
    if not gpus:
        # nvidia-smi present but listing nothing is a broken setup, not "no GPU".
        return GpuFacts([], _NO_DEVICES)
    return GpuFacts(gpus, None)


def summarize(gpus: Iterable[Gpu]) -> str:
    """One line per GPU, e.g. "NVIDIA H100 80GB HBM3: 1234 / 81559 MiB used"."""
    lines = []
    for gpu in gpus:
        if gpu.memory_total_mib is None or gpu.memory_used_mib is None:
            lines.append(f"{gpu.name}: memory not reported")
        else:
            lines.append(f"{gpu.name}: {gpu.memory_used_mib} / {gpu.memory_total_mib} MiB used")
    return "\n".join(lines) or "no NVIDIA GPU"
