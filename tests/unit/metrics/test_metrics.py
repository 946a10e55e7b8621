"""/metrics scraped over HTTP: the contract (names, types, labels), the values read from
lanai's records and live readings, no secret in a label, Ollama asked at most once per
interval, and the setting (off by default, loopback unless an address is named)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from reconciler.core.errors import ExitCode, NotSetUp
from reconciler.daemon.run import Daemon
from reconciler.metrics.collect import HEALTHS
from reconciler.metrics.serve import MetricsServer, metrics_address
from reconciler.server.record import Outcome, load_state, save_state
from reconciler.server.settings import ServerSettings, load_settings

from .conftest import PHI3, SECRETS, Server

# The contract (issue 15; the alert rules are written against it): name -> type, labels.
CONTRACT: dict[str, tuple[str, set[str]]] = {
    "lanai_stack_synced": ("gauge", set()),
    "lanai_service_synced": ("gauge", {"service"}),
    "lanai_service_health": ("gauge", {"service", "health"}),
    "lanai_service_heals": ("counter", {"service"}),  # exposed as ..._total
    "lanai_service_last_applied_timestamp_seconds": ("gauge", {"service"}),
    "lanai_reconciles": ("counter", {"result"}),  # exposed as lanai_reconciles_total
    "lanai_reconcile_duration_seconds": ("histogram", {"phase"}),
    "lanai_drift_items": ("gauge", {"kind"}),
    "lanai_model_pulled": ("gauge", {"model"}),
    "lanai_model_loaded": ("gauge", {"model"}),
    "lanai_model_vram_estimate_bytes": ("gauge", {"model"}),
    "lanai_model_vram_bytes": ("gauge", {"model"}),
    "lanai_model_size_bytes": ("gauge", {"model"}),
    "lanai_model_gpu_ratio": ("gauge", {"model"}),
    "lanai_bench_tokens_per_second": ("gauge", {"model"}),
    "lanai_bench_bandwidth_ratio": ("gauge", {"model"}),
    "lanai_backup_last_timestamp_seconds": ("gauge", set()),
    "lanai_backup_last_size_bytes": ("gauge", set()),
    "lanai_disk_free_bytes": ("gauge", {"path"}),
    "lanai_disk_size_bytes": ("gauge", {"path"}),
    "lanai_gpu_memory_used_bytes": ("gauge", {"gpu"}),
    "lanai_gpu_memory_total_bytes": ("gauge", {"gpu"}),
    "lanai_gpu_utilization_ratio": ("gauge", {"gpu"}),
    "lanai_gpu_temperature_celsius": ("gauge", {"gpu"}),
}


def value(families: dict, name: str, sample: str | None = None, **labels: str) -> float:
    found = [s.value for s in families[name].samples
             if s.name == (sample or name) and all(s.labels.get(k) == v
                                                   for k, v in labels.items())]
    assert len(found) == 1, (name, labels, families[name].samples)
    return found[0]


def add_drift(server: Server, *items: dict[str, str]) -> None:
    state = load_state(server.settings.state_file)
    state.drift = list(items)
    save_state(server.settings.state_file, state)


def webui(server: Server) -> str:
    return next(name for name in server.rendered.services if "webui" in name)


def test_every_metric_of_the_contract_is_served_with_its_type_and_labels(server: Server):
    server.reconciles.observe(Outcome("no-op", durations={"total": 0.2, "fetch": 0.1}))
    add_drift(server, {"service": webui(server), "kind": "stopped", "detail": "exited"})
    families = server.scrape()
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, f"{name} is not served"
        family = families[name]
        assert family.type == kind, name
        assert family.samples, f"{name} has no sample"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
            assert sample.name.startswith("lanai_")
    assert {s.name for s in families["lanai_reconciles"].samples} >= {"lanai_reconciles_total"}
    assert {s.name for s in families["lanai_service_heals"].samples} == \
        {"lanai_service_heals_total"}


def test_the_values_come_from_the_records_and_the_live_readings(server: Server):
    families = server.scrape()
    assert value(families, "lanai_stack_synced") == 1
    for service in server.rendered.services:
        assert value(families, "lanai_service_synced", service=service) == 1
        for health in HEALTHS:  # every value exported, one of them 1
            assert value(families, "lanai_service_health", service=service,
                         health=health) == (1 if health == "Healthy" else 0)
        assert value(families, "lanai_service_heals", "lanai_service_heals_total",
                     service=service) == 0
    healed_at = value(families, "lanai_service_last_applied_timestamp_seconds",
                      service=webui(server))
    assert healed_at >= value(families, "lanai_service_last_applied_timestamp_seconds",
                              service="ollama")
    assert value(families, "lanai_model_pulled", model=PHI3) == 1
    assert value(families, "lanai_model_loaded", model=PHI3) == 1
    assert value(families, "lanai_model_vram_estimate_bytes", model=PHI3) == 3_500_000_000
    size = value(families, "lanai_model_size_bytes", model=PHI3)
    vram = value(families, "lanai_model_vram_bytes", model=PHI3)
    assert size > 0
    assert value(families, "lanai_model_gpu_ratio", model=PHI3) == pytest.approx(vram / size)
    others = [e.name for e in server.rendered.models.local if e.name != PHI3]  # type: ignore
    for model in others:
        assert value(families, "lanai_model_pulled", model=model) == 0
        assert value(families, "lanai_model_loaded", model=model) == 0
    assert value(families, "lanai_bench_tokens_per_second", model=PHI3) == 120
    assert 0 < value(families, "lanai_bench_bandwidth_ratio", model=PHI3) < 1
    assert value(families, "lanai_backup_last_size_bytes") == 12345
    assert value(families, "lanai_gpu_memory_total_bytes", gpu="0") == 81559 * 1024 * 1024
    assert 0 <= value(families, "lanai_gpu_utilization_ratio", gpu="0") <= 1
    home = str(server.settings.home)
    assert 0 < value(families, "lanai_disk_free_bytes", path=home) <= \
        value(families, "lanai_disk_size_bytes", path=home)


def test_reconciles_heals_and_phases_are_counted(server: Server):
    service = webui(server)
    server.reconciles.observe(Outcome("no-op", durations={"total": 0.2, "fetch": 0.1}))
    server.reconciles.observe(Outcome("healed", durations={"total": 3.0}, actions=[
        {"kind": "restart", "service": service, "result": "ok"}]))
    server.reconciles.observe(Outcome("failed"))
    families = server.scrape()
    for result in ("unchanged", "healed", "failed"):
        assert value(families, "lanai_reconciles", "lanai_reconciles_total",
                     result=result) == 1
    assert value(families, "lanai_service_heals", "lanai_service_heals_total",
                 service=service) == 1
    assert value(families, "lanai_reconcile_duration_seconds",
                 "lanai_reconcile_duration_seconds_count", phase="total") == 2
    assert value(families, "lanai_reconcile_duration_seconds",
                 "lanai_reconcile_duration_seconds_sum", phase="fetch") == pytest.approx(0.1)


def test_a_stopped_service_reads_degraded_drifted_and_out_of_sync(server: Server):
    service = webui(server)
    server.docker.stopped.add(service)
    add_drift(server, {"service": service, "kind": "stopped", "detail": "exit code 0"})
    families = server.scrape()
    assert value(families, "lanai_stack_synced") == 0
    assert value(families, "lanai_service_synced", service=service) == 0
    assert value(families, "lanai_service_health", service=service, health="Degraded") == 1
    assert value(families, "lanai_drift_items", kind="stopped") == 1
    add_drift(server)  # healed: the kind stays exported, with 0
    assert value(server.scrape(), "lanai_drift_items", kind="stopped") == 0


def test_ollama_is_asked_at_most_once_per_interval(server: Server):
    for _ in range(4):
        server.scrape()
    assert server.ollama_requests.count("/api/ps") == 1
    server.clock[0] += 14.9
    server.scrape()
    assert server.ollama_requests.count("/api/ps") == 1
    server.clock[0] += 0.1
    server.scrape()
    server.scrape()
    assert server.ollama_requests.count("/api/ps") == 2
    assert set(server.ollama_requests) == {"/api/ps"}


def test_no_label_carries_a_secret(server: Server):
    server.reconciles.observe(Outcome("no-op", durations={"total": 0.2}))
    secrets = set(SECRETS.values())
    for line in server.settings.secrets_file.read_text().splitlines():
        secrets.add(line.partition("=")[2])
    text = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    for family in server.scrape().values():
        for sample in family.samples:
            assert not secrets & set(sample.labels.values()), sample
    assert not any(secret in text for secret in secrets)


def test_only_the_metrics_path_is_served(server: Server):
    with pytest.raises(urllib.error.HTTPError) as caught:
        server.scrape("/")
    assert caught.value.code == 404


# -- the setting -------------------------------------------------------------------------

def test_metrics_are_off_by_default(tmp_path: Path):
    settings = load_settings({"LANAI_CONFIG": str(tmp_path / "none.yaml")})
    assert settings.metrics_listen is None
    assert metrics_address(settings) is None


@pytest.mark.parametrize(("listen", "expected"), [
    ("9469", ("127.0.0.1", 9469)), (":9469", ("127.0.0.1", 9469)),
    ("127.0.0.1:9469", ("127.0.0.1", 9469)), ("0.0.0.0:9469", ("0.0.0.0", 9469)),
    ("[::1]:9469", ("::1", 9469)),
])
def test_a_port_alone_is_loopback_and_any_other_address_is_named(tmp_path: Path, listen,
                                                                  expected):
    config = tmp_path / "server.yaml"
    config.write_text(f"metrics_listen: '{listen}'\n")
    assert metrics_address(load_settings({"LANAI_CONFIG": str(config)})) == expected
    env = {"LANAI_CONFIG": str(tmp_path / "none"), "LANAI_METRICS_LISTEN": listen}
    assert metrics_address(load_settings(env)) == expected


@pytest.mark.parametrize("listen", ["0.0.0.0", "host:http", "127.0.0.1:0", "x:70000"])
def test_a_bad_address_is_one_sentence(tmp_path: Path, listen: str):
    env = {"LANAI_CONFIG": str(tmp_path / "none"), "LANAI_METRICS_LISTEN": listen}
    with pytest.raises(NotSetUp) as caught:
        metrics_address(load_settings(env))
    assert caught.value.exit_code == ExitCode.NOT_SET_UP
    assert "metrics_listen" in caught.value.message


def test_a_taken_port_refuses_the_daemons_start(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(NotSetUp) as caught:
            MetricsServer("127.0.0.1", port, CollectorRegistry())
        assert caught.value.exit_code == ExitCode.NOT_SET_UP
        assert f"127.0.0.1:{port}" in caught.value.message
        assert "metrics_listen" in caught.value.message
        settings = ServerSettings(
            home=tmp_path / "home", repo="/nowhere", branch=None,
            secrets_file=tmp_path / "secrets.env", config_file=tmp_path / "server.yaml",
            deploy_key=tmp_path / "key", metrics_listen=f"127.0.0.1:{port}")
        with pytest.raises(NotSetUp):
            Daemon(settings).run()
        assert not settings.socket_path.exists()  # nothing was started
