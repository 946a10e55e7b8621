"""Tests for reconciler.server.gpu against real nvidia-smi outputs (H100, driver 580)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler.server import gpu
from reconciler.server.gpu import Gpu, GpuFacts, ListedGpu

UUID = "GPU-bfa079fa-07d9-d56a-3116-ace20916db13"
NAME = "NVIDIA H100 80GB HBM3"
DRIVER = "580.159.04"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi" / "h100-driver580"


def fixture(name: str) -> str:
    path = FIXTURES / name
    if not path.is_file():
        pytest.fail(f"fixture missing: {path}")
    return path.read_text()


# ---------------------------------------------------------------- fixtures


def test_query_csv_without_header() -> None:
    assert gpu.parse_query_csv(fixture("query-gpu.csv")) == [
        Gpu(
            index=0,
            name=NAME,
            uuid=UUID,
            driver_version=DRIVER,
            memory_total_mib=81559,
            memory_used_mib=0,
            memory_free_mib=81079,
            utilization_gpu_pct=0,
            temperature_c=36,
            power_draw_w=107.57,
            compute_cap="9.0",
        )
    ]


def test_query_csv_with_header_and_units() -> None:
    [only] = gpu.parse_query_csv(fixture("query-gpu-header.csv"))
    assert (only.index, only.name, only.uuid, only.driver_version) == (0, NAME, UUID, DRIVER)
    assert (only.memory_total_mib, only.memory_used_mib, only.memory_free_mib) == (81559, 0, 81079)
    assert only.compute_cap == "9.0"
    # The header fixture did not query the live readings.
    assert (only.utilization_gpu_pct, only.temperature_c, only.power_draw_w) == (None, None, None)


def test_smi_xml() -> None:
    assert gpu.parse_smi_xml(fixture("nvidia-smi-q.xml")) == [
        Gpu(
            index=0,
            name=NAME,
            uuid=UUID,
            driver_version=DRIVER,
            memory_total_mib=81559,
            memory_used_mib=0,
            memory_free_mib=81079,
            utilization_gpu_pct=0,
            temperature_c=36,
            power_draw_w=100.75,
            cuda_version="13.0",
        )
    ]


def _identity(g: Gpu) -> tuple[Any, ...]:
    return (
        g.index,
        g.name,
        g.uuid,
        g.driver_version,
        g.memory_total_mib,
        g.memory_used_mib,
        g.memory_free_mib,
    )


def test_csv_with_and_without_header_agree_with_xml() -> None:
    from_xml = [_identity(g) for g in gpu.parse_smi_xml(fixture("nvidia-smi-q.xml"))]
    assert [_identity(g) for g in gpu.parse_query_csv(fixture("query-gpu.csv"))] == from_xml
    assert [_identity(g) for g in gpu.parse_query_csv(fixture("query-gpu-header.csv"))] == from_xml


def test_list() -> None:
    assert gpu.parse_list(fixture("nvidia-smi-L.txt")) == [ListedGpu(0, NAME, UUID)]


def test_list_agrees_with_xml() -> None:
    [listed] = gpu.parse_list(fixture("nvidia-smi-L.txt"))
    [from_xml] = gpu.parse_smi_xml(fixture("nvidia-smi-q.xml"))
    assert (listed.index, listed.name, listed.uuid) == (
        from_xml.index,
        from_xml.name,
        from_xml.uuid,
    )


def test_list_skips_mig_devices() -> None:
    text = (
        f"GPU 0: {NAME} (UUID: {UUID})\n"
        "  MIG 1g.10gb     Device  0: (UUID: MIG-7a3c2b1e-0000-5000-8000-000000000000)\n"
        "GPU 1: NVIDIA GeForce RTX 4090 (UUID: GPU-11111111-2222-3333-4444-555555555555)\n"
    )
    assert gpu.parse_list(text) == [
        ListedGpu(0, NAME, UUID),
        ListedGpu(1, "NVIDIA GeForce RTX 4090", "GPU-11111111-2222-3333-4444-555555555555"),
    ]


def test_driver_version_from_proc_open_module() -> None:
    assert gpu.parse_driver_version(fixture("proc-driver-version.txt")) == DRIVER


def test_driver_version_from_proc_proprietary_module() -> None:
    text = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  "
        "Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.3.0\n"
    )
    assert gpu.parse_driver_version(text) == "550.54.14"


def test_driver_version_absent() -> None:
    assert gpu.parse_driver_version("") is None


def test_driver_versions_agree_across_fixtures() -> None:
    from_proc = gpu.parse_driver_version(fixture("proc-driver-version.txt"))
    assert fixture("nvidia-smi.txt").count(f"Driver Version: {from_proc}") == 1
    assert {g.driver_version for g in gpu.parse_query_csv(fixture("query-gpu.csv"))} == {from_proc}


# ---------------------------------------------------------------- CSV edge cases


def test_not_available_values_become_none() -> None:
    line = (
        f"0, {UUID}, NVIDIA GB10, [N/A], [N/A], [N/A], 580.95.05, 12.1, "
        "[Not Supported], [N/A], [Unknown Error]\n"
    )
    [only] = gpu.parse_query_csv(line)
    assert only.memory_total_mib is None
    assert only.memory_used_mib is None
    assert only.memory_free_mib is None
    assert only.utilization_gpu_pct is None
    assert only.temperature_c is None
    assert only.power_draw_w is None
    assert gpu.summarize([only]) == "NVIDIA GB10: memory not reported"


def test_units_without_header() -> None:
    line = f"1, {UUID}, {NAME}, 81559 MiB, 1234 MiB, 79845 MiB, {DRIVER}, 9.0, 42 %, 51, 250.5 W"
    [only] = gpu.parse_query_csv(line)
    assert only.index == 1
    assert (only.memory_total_mib, only.memory_used_mib, only.memory_free_mib) == (
        81559,
        1234,
        79845,
    )
    assert (only.utilization_gpu_pct, only.power_draw_w) == (42, 250.5)


def test_free_derived_when_not_queried() -> None:
    text = "index, name, uuid, memory.total [MiB], memory.used [MiB]\n0, X, GPU-x, 24564, 564\n"
    [only] = gpu.parse_query_csv(text)
    assert only.memory_free_mib == 24000


def test_several_gpus_and_blank_lines() -> None:
    text = (
        fixture("query-gpu.csv") + "\n" + fixture("query-gpu.csv").replace("0, GPU-", "1, GPU-", 1)
    )
    assert [g.index for g in gpu.parse_query_csv(text)] == [0, 1]


def test_too_many_columns_is_an_error() -> None:
    with pytest.raises(ValueError, match="columns"):
        gpu.parse_query_csv(fixture("query-gpu.csv").strip() + ", 1, 2")


def test_garbage_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a number"):
        gpu.parse_query_csv(f"0, {UUID}, {NAME}, lots")


def test_empty_output() -> None:
    assert gpu.parse_query_csv("") == []


# ---------------------------------------------------------------- command


def test_query_command_exact_argv() -> None:
    assert gpu.query_command() == [
        "nvidia-smi",
        "--query-gpu=index,uuid,name,memory.total,memory.used,memory.free,"
        "driver_version,compute_cap,utilization.gpu,temperature.gpu,power.draw",
        "--format=csv,noheader,nounits",
    ]


def test_query_fields_match_fixture_header() -> None:
    header = fixture("query-gpu-header.csv").splitlines()[0]
    names = [cell.split(" [")[0].strip() for cell in header.split(",")]
    assert list(gpu.QUERY_FIELDS[: len(names)]) == names
    assert len(fixture("query-gpu.csv").strip().split(", ")) == len(gpu.QUERY_FIELDS)


# ---------------------------------------------------------------- failures


COULD_NOT_COMMUNICATE = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)
MISMATCH = (
    "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.95\n"
)
UNKNOWN = "Failed to initialize NVML: Unknown Error\n"


def test_classify_driver_not_loaded() -> None:
    assert "reboot" in gpu.classify_failure(9, COULD_NOT_COMMUNICATE, "")
    assert "not loaded" in gpu.classify_failure(9, COULD_NOT_COMMUNICATE, "")


def test_classify_version_mismatch() -> None:
    message = gpu.classify_failure(18, MISMATCH, "")
    assert "upgraded" in message
    assert message.endswith("reboot the server.")


def test_classify_nvml_unknown_error_in_container() -> None:
    message = gpu.classify_failure(255, UNKNOWN, "")
    assert "recreate the container" in message
    assert "native.cgroupdriver=cgroupfs" in message
    assert "create-dev-char-symlinks" in message


def test_classify_command_not_found() -> None:
    message = gpu.classify_failure(127, "", "bash: nvidia-smi: command not found")
    assert "no NVIDIA driver is installed" in message


def test_classify_no_devices() -> None:
    assert "sees no GPU" in gpu.classify_failure(6, "No devices were found\n", "")


def test_classify_reads_stderr_too() -> None:
    assert gpu.classify_failure(18, "", MISMATCH) == gpu.classify_failure(18, MISMATCH, "")


def test_classify_unknown_failure_quotes_output() -> None:
    assert gpu.classify_failure(3, "\nSomething new\nmore\n", "") == (
        "nvidia-smi failed with exit code 3: Something new."
    )


# ---------------------------------------------------------------- observe


class FakeRunner:
    """Records calls and answers like subprocess.run, or raises."""

    def __init__(
        self,
        returncode: int = 0,
        stdout: str = "",
        stderr: str = "",
        raises: BaseException | None = None,
    ) -> None:
        self.result = (returncode, stdout, stderr)
        self.raises = raises
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs))
        if self.raises is not None:
            raise self.raises
        returncode, stdout, stderr = self.result
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)


def found(_: str) -> str:
    return "/usr/bin/nvidia-smi"


def missing(_: str) -> None:
    return None


def test_observe_without_nvidia_smi_means_no_gpu() -> None:
    runner = FakeRunner()
    assert gpu.observe_gpus(run=runner, which=missing) == GpuFacts([], None)
    assert runner.calls == []


def test_observe_success() -> None:
    runner = FakeRunner(stdout=fixture("query-gpu.csv"))
    facts = gpu.observe_gpus(run=runner, which=found)
    assert facts.error is None
    assert facts.gpus == gpu.parse_query_csv(fixture("query-gpu.csv"))
    [(argv, kwargs)] = runner.calls
    assert argv == gpu.query_command()
    assert kwargs["timeout"] == 10
    assert kwargs["capture_output"] is True
    assert kwargs["text"] is True


def test_observe_nvml_error_means_broken_gpu() -> None:
    facts = gpu.observe_gpus(run=FakeRunner(255, UNKNOWN), which=found)
    assert facts.gpus == []
    assert facts.error == gpu.classify_failure(255, UNKNOWN, "")


def test_observe_timeout() -> None:
    runner = FakeRunner(raises=subprocess.TimeoutExpired(gpu.query_command(), 10))
    facts = gpu.observe_gpus(run=runner, which=found)
    assert facts.gpus == []
    assert facts.error is not None
    assert "10 s" in facts.error


def test_observe_not_executable() -> None:
    runner = FakeRunner(raises=FileNotFoundError(2, "No such file or directory"))
    facts = gpu.observe_gpus(run=runner, which=found)
    assert facts.error is not None
    assert "no NVIDIA driver is installed" in facts.error


def test_observe_empty_output_is_broken_not_absent() -> None:
    facts = gpu.observe_gpus(run=FakeRunner(0, ""), which=found)
    assert facts.gpus == []
    assert facts.error is not None
    assert "sees no GPU" in facts.error


def test_observe_unparsable_output() -> None:
    facts = gpu.observe_gpus(run=FakeRunner(0, "0, GPU-x, X, lots\n"), which=found)
    assert facts.gpus == []
    assert facts.error is not None
    assert "could not parse" in facts.error


# ---------------------------------------------------------------- summary


def test_summarize_fixture() -> None:
    gpus = gpu.parse_query_csv(fixture("query-gpu.csv"))
    assert gpu.summarize(gpus) == "NVIDIA H100 80GB HBM3: 0 / 81559 MiB used"


def test_summarize_several_and_none() -> None:
    a = Gpu(0, "A", "GPU-a", DRIVER, 100, 25, 75)
    b = Gpu(1, "B", "GPU-b", DRIVER, 200, 50, 150)
    assert gpu.summarize([a, b]) == "A: 25 / 100 MiB used\nB: 50 / 200 MiB used"
    assert gpu.summarize([]) == "no NVIDIA GPU"
