"""Several servers as one swarm: the GPU node settings (reconciler/setup/swarm_node.py),
the join through the Engine API (reconciler/setup/swarm_join.py), and bootstrap.sh's
labels, label updates, server names and proof command, as exact text.

No GPU here: the GPU text is checked on real `nvidia-smi` output of an H100 (driver 580)
and on the toolkit's own default config.toml; the join on a stand-in Docker socket.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from reconciler.setup import swarm_join, swarm_node

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "bootstrap.sh"
APT_REPOS = REPO_ROOT / "packaging" / "apt-repos.sh"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
H100 = FIXTURES / "nvidia-smi" / "h100-driver580"
H100_UUID = "GPU-bfa079fa-07d9-d56a-3116-ace20916db13"
# Made up in nvidia-smi -L's format (two GPUs, one with MIG devices): no such box here.
TWO_GPUS_WITH_MIG = (
    "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-11111111-2222-3333-4444-555555555555)\n"
    "  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)\n"
    "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-66666666-7777-8888-9999-000000000000)\n")


def sourced(file: Path, snippet: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'source "{file}"\n{snippet}'], input=stdin,
                          text=True, capture_output=True, timeout=60, cwd=REPO_ROOT)


# -- GPU nodes: daemon.json and the toolkit's config.toml ------------------------------------

def test_gpu_uuids_from_real_nvidia_smi_L_output() -> None:
    listing = (H100 / "nvidia-smi-L.txt").read_text()
    assert swarm_node.gpu_uuids(listing) == [H100_UUID]
    assert swarm_node.generic_resources([H100_UUID]) == [f"gpu={H100_UUID}"]


def test_mig_devices_are_not_gpus_of_their_own() -> None:
    assert swarm_node.gpu_uuids(TWO_GPUS_WITH_MIG) == [
        "GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-000000000000"]


def test_daemon_json_of_a_swarm_gpu_node_after_nvidia_ctk_keeps_every_other_key() -> None:
    # What `nvidia-ctk runtime configure --runtime=docker` leaves, plus a user's keys.
    current = {"dns": ["10.0.0.53"], "runtimes": {"nvidia": {
        "args": [], "path": "nvidia-container-runtime"}},
        "node-generic-resources": ["fpga=board-1", "gpu=GPU-old"]}
    assert swarm_node.swarm_gpu_daemon_json(current, [H100_UUID]) == {
        "dns": ["10.0.0.53"],
        "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
        "default-runtime": "nvidia",
        "node-generic-resources": ["fpga=board-1", f"gpu={H100_UUID}"]}
    assert current["node-generic-resources"] == ["fpga=board-1", "gpu=GPU-old"]  # not mutated


def test_daemon_json_of_a_swarm_gpu_node_from_nothing() -> None:
    assert swarm_node.swarm_gpu_daemon_json({}, [H100_UUID]) == {
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
        "default-runtime": "nvidia", "node-generic-resources": [f"gpu={H100_UUID}"]}


def test_swarm_resource_is_uncommented_in_place_in_the_toolkits_default_config() -> None:
    default = (FIXTURES / "nvidia-container-toolkit" / "config.toml").read_text()
    assert '#swarm-resource = "DOCKER_RESOURCE_GPU"\n' in default
    result = swarm_node.config_toml_with_swarm_resource(default)
    assert result == default.replace('#swarm-resource = "DOCKER_RESOURCE_GPU"',
                                     'swarm-resource = "DOCKER_RESOURCE_GPU"')
    assert swarm_node.config_toml_with_swarm_resource(result) == result


@pytest.mark.parametrize("text, expected", [
    ("", 'swarm-resource = "DOCKER_RESOURCE_GPU"\n'),
    ('[nvidia-container-cli]\n#swarm-resource = "X"\n',
     'swarm-resource = "DOCKER_RESOURCE_GPU"\n[nvidia-container-cli]\n#swarm-resource = "X"\n'),
    ('swarm-resource = "DOCKER_RESOURCE_GPUS"\n[a]\n',
     'swarm-resource = "DOCKER_RESOURCE_GPU"\n[a]\n'),
])
def test_swarm_resource_is_a_top_level_key_before_any_table(text: str, expected: str) -> None:
    assert swarm_node.config_toml_with_swarm_resource(text) == expected


def test_gpu_config_writes_both_files_once_then_changes_nothing(tmp_path: Path) -> None:
    daemon_json, toml = tmp_path / "docker" / "daemon.json", tmp_path / "config.toml"
    daemon_json.parent.mkdir()
    daemon_json.write_text('{"dns": ["10.0.0.53"]}\n')
    toml.write_text((FIXTURES / "nvidia-container-toolkit" / "config.toml").read_text())
    listing = (H100 / "nvidia-smi-L.txt").read_text()
    command = ["python3", str(REPO_ROOT / "reconciler" / "setup" / "swarm_node.py"),
               "gpu-config", str(daemon_json), str(toml)]
    first = subprocess.run(command, input=listing, capture_output=True, text=True, check=True)
    assert first.stdout == f"changed\n{H100_UUID}\n"
    assert json.loads(daemon_json.read_text()) == {
        "dns": ["10.0.0.53"],
        "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
        "default-runtime": "nvidia", "node-generic-resources": [f"gpu={H100_UUID}"]}
    assert 'swarm-resource = "DOCKER_RESOURCE_GPU"\n' in toml.read_text().splitlines(True)
    assert oct(daemon_json.stat().st_mode & 0o777) == "0o644"
    again = subprocess.run(command, input=listing, capture_output=True, text=True, check=True)
    assert again.stdout == f"unchanged\n{H100_UUID}\n"


def test_gpu_config_refuses_a_broken_daemon_json_and_changes_nothing(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        swarm_node.gpu_config(str(daemon_json), str(tmp_path / "c.toml"), TWO_GPUS_WITH_MIG)
    assert daemon_json.read_text() == "{not json" and not (tmp_path / "c.toml").exists()


@pytest.mark.parametrize("text, on", [("", False), ('{"live-restore": true}', True),
                                      ('{"live-restore": false}', False), ("{bad", False)])
def test_live_restore_is_read_from_daemon_json(text: str, on: bool) -> None:
    assert swarm_node.live_restore(text) is on


def test_the_swarm_gpu_proof_gives_one_gpu_the_way_swarm_does() -> None:
    result = sourced(APT_REPOS, f"gpu_swarm_proof_command ollama/ollama:0.24.0 {H100_UUID}")
    assert result.stdout == (
        "docker run --rm -e NVIDIA_VISIBLE_DEVICES=void "
        f"-e DOCKER_RESOURCE_GPU={H100_UUID} --entrypoint nvidia-smi ollama/ollama:0.24.0 "
        "--query-gpu=uuid,name --format=csv,noheader\n")
    bad = sourced(APT_REPOS, "gpu_swarm_proof_command ollama/ollama:0.24.0 0")
    assert bad.returncode == 1 and "needs a GPU UUID" in bad.stderr


# -- node labels -------------------------------------------------------------------------------

def test_node_labels_of_a_gpu_server_from_real_nvidia_smi_query_output() -> None:
    """`nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`: the name and
    memory columns of the H100's real query output."""
    row = (H100 / "query-gpu.csv").read_text().split(", ")
    query = f"{row[2]}, {row[3]}\n"
    assert query == "NVIDIA H100 80GB HBM3, 81559\n"
    result = sourced(SCRIPT, "swarm_node_labels box-b", stdin=query)
    assert result.stdout.splitlines() == [
        "io.lanai.server=box-b", "io.lanai.gpu.name=NVIDIA H100 80GB HBM3",
        f"io.lanai.gpu.memory={81559 * 2**20}", "io.lanai.gpu.count=1"]


def test_node_labels_of_two_gpus_and_of_a_server_without_gpu() -> None:
    two = sourced(SCRIPT, "swarm_node_labels box-c",
                  stdin="NVIDIA GeForce RTX 3090, 24576\nNVIDIA GeForce RTX 3090, 24576\n")
    assert two.stdout.splitlines() == [
        "io.lanai.server=box-c", "io.lanai.gpu.name=NVIDIA GeForce RTX 3090",
        f"io.lanai.gpu.memory={2 * 24576 * 2**20}", "io.lanai.gpu.count=2"]
    assert sourced(SCRIPT, "swarm_node_labels box-d", stdin="").stdout == \
        "io.lanai.server=box-d\n"


@pytest.mark.parametrize("current, wanted, args", [
    ("io.lanai.server=box-b\n", "io.lanai.server=box-b", []),
    ("", "io.lanai.server=box-b", ["--label-add", "io.lanai.server=box-b"]),
    ("io.lanai.server=old\nsize=big\n", "io.lanai.server=box-b",
     ["--label-add", "io.lanai.server=box-b"]),
    ("io.lanai.server=box-b\nio.lanai.gpu.count=1\nio.lanai.gpu.name=X\n",
     "io.lanai.server=box-b", ["--label-rm", "io.lanai.gpu.name", "--label-rm",
                               "io.lanai.gpu.count"]),
    ("io.lanai.server=box-b\n", "io.lanai.server=box-b\nio.lanai.gpu.name=NVIDIA H100 80GB HBM3",
     ["--label-add", "io.lanai.gpu.name=NVIDIA H100 80GB HBM3"]),
])
def test_labels_are_updated_only_where_they_differ(current: str, wanted: str,
                                                   args: list[str]) -> None:
    result = sourced(SCRIPT, f'label_update_args "$(cat <<"X"\n{current}X\n)" '
                             f'"$(cat <<"X"\n{wanted}\nX\n)"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == args


@pytest.mark.parametrize("target, name", [
    ("admin@box-b.lan", "box-b"), ("box-b", "box-b"), ("Box-B.example.org", "box-b"),
    ("root@gpu1", "gpu1")])
def test_a_servers_name_is_its_host_name_up_to_the_first_dot(target: str, name: str) -> None:
    assert sourced(SCRIPT, f"server_name {target}").stdout == f"{name}\n"


@pytest.mark.parametrize("target, words", [
    ("admin@192.168.1.12", "is an IP address"), ("a" * 41, "not a DNS label"),
    ("box_b", "not a DNS label")])
def test_a_target_that_gives_no_server_name_is_refused(target: str, words: str) -> None:
    result = sourced(SCRIPT, f"server_name {target}")
    assert result.returncode == 1 and words in result.stderr


# -- the join through the Engine API -------------------------------------------------------------

class FakeDocker(BaseHTTPRequestHandler):
    """POST /v1.41/swarm/join on a Unix socket: remembers the request, answers as told."""
    answer: ClassVar[tuple[int, bytes]] = (200, b"")
    seen: ClassVar[list[tuple[str, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FakeDocker.seen.append((self.path, json.loads(body)))
        status, text = FakeDocker.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: object) -> None:
        pass


class UnixHTTPServer(HTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = self.socket.accept()
        return request, ("local", 0)


@pytest.fixture
def docker_socket(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = str(tmp_path / "docker.sock")
    server = UnixHTTPServer(path, FakeDocker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeDocker.seen = []
    yield path
    server.shutdown()


TOKEN = "SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx"


def test_the_join_posts_the_token_from_stdin_and_the_route_source_address(
        docker_socket: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = swarm_join.main(["127.0.0.1"], io.StringIO(TOKEN + "\n"), socket_path=docker_socket)
    assert rc == 0
    assert capsys.readouterr().out == "joined 127.0.0.1\n"
    assert FakeDocker.seen == [("/v1.41/swarm/join", {
        "ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": "127.0.0.1",
        "RemoteAddrs": ["127.0.0.1:2377"], "JoinToken": TOKEN})]


@pytest.mark.parametrize("status, message", [
    (503, "This node is already part of a swarm. Use \"docker swarm leave\" to leave this "
          "swarm and join another one."),
    (400, "rpc error: code = InvalidArgument desc = A valid join token is necessary to join "
          "this cluster"),
])
def test_a_refused_join_says_dockers_words_and_never_the_token(
        docker_socket: str, capsys: pytest.CaptureFixture[str], status: int,
        message: str) -> None:
    """The two answers seen on booted servers (slice 0), and one echoing the token."""
    FakeDocker.answer = (status, json.dumps({"message": message + " " + TOKEN}).encode())
    try:
        rc = swarm_join.main(["127.0.0.1"], io.StringIO(TOKEN + "\n"), socket_path=docker_socket)
    finally:
        FakeDocker.answer = (200, b"")
    assert rc == 1
    assert capsys.readouterr().out == f"refused {status} {message} <token>\n"


def test_the_join_program_runs_as_python3_c_between_single_quotes(
        docker_socket: str, tmp_path: Path) -> None:
    """As bootstrap.sh runs it: `python3 -c '<file>' MANAGER`, the token on stdin."""
    program = (REPO_ROOT / "reconciler" / "setup" / "swarm_join.py").read_text()
    assert "'" not in program
    runner = program.replace('"/var/run/docker.sock"', repr(docker_socket).replace("'", '"'))
    result = subprocess.run(["sh", "-c", f"python3 -c '{runner}' 127.0.0.1"],
                            input=TOKEN + "\n", capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "joined 127.0.0.1\n"), result.stderr
    assert FakeDocker.seen[0][1]["JoinToken"] == TOKEN


# -- refusals before anything is changed (a stand-in ssh) -----------------------------------

FAKE_SSH = r'''#!/usr/bin/env python3
"""A stand-in ssh: logs each call; answers what bootstrap.sh asks several servers."""
import json, os, sys
args, target, command = sys.argv[1:], None, []
i = 0
while i < len(args):
    a = args[i]
    if a == "-O":
        sys.exit(0)
    if a in ("-o", "-F"):
        i += 2
        continue
    if a == "-G":
        print("user admin\nhostname 192.0.2.1\nport 22")
        sys.exit(0)
    target, command = a, args[i + 1:]
    break
line = " ".join(command)
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(f"{target}: {line}\n")
boxes = json.loads(os.environ["FAKE_BOXES"])
if line == "true":
    sys.exit(0)
if "nopasswd" in line:
    print("nopasswd")
elif "LocalNodeState" in line and "command -v lanai" in line:
    print(boxes[target.split("@")[-1]])
elif "docker node ls" in line:
    print(os.environ.get("FAKE_MEMBERS", ""))
'''


def run_several(tmp_path: Path, args: list[str], boxes: dict[str, str],
                members: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """bootstrap.sh ARGS with the stand-in ssh; box facts are box_facts' answer line:
    STATE NODE MANAGER LIVE_RESTORE LANAI."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    log = tmp_path / "ssh.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("LANAI_")},
           "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           "FAKE_BOXES": json.dumps(boxes), "FAKE_MEMBERS": members, "TMPDIR": str(tmp_path),
           "LANAI_BOOTSTRAP_LOGS": str(tmp_path / "logs")}
    result = subprocess.run(["bash", str(SCRIPT), *args, "--yes"], env=env, text=True,
                            capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return result, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("args, boxes, members, code, words", [
    (["box-a", "box-b"], {"box-a": "active n1 true no yes", "box-b": "active n9 false no no"},
     "n1", 16, "box-b is already in another swarm (node n9 is not a member of box-a's swarm)"),
    (["box-a", "box-b"], {"box-a": "inactive - false no no", "box-b": "active n9 false no no"},
     "", 16, "box-b is already in another swarm"),
    (["box-a", "box-b"], {"box-a": "active n1 false no yes", "box-b": "nodocker - false no no"},
     "", 16, "box-a is a worker in another swarm, so it cannot be this swarm's manager"),
    (["box-a", "box-b"], {"box-a": "inactive - false no no", "box-b": "nodocker - false yes no"},
     "", 16, "box-b's Docker has live-restore on, and Docker refuses swarm mode with it"),
    (["box-a", "box-b"], {"box-a": "locked n1 false no yes", "box-b": "nodocker - false no no"},
     "", 16, "box-a's swarm is locked (autolock)"),
    (["--join", "box-a", "box-b"], {"box-a": "inactive - false no no",
                                    "box-b": "nodocker - false no no"},
     "", 17, "box-a is not a lanai server (no `lanai` command there)"),
])
def test_what_a_user_can_have_wrong_is_refused_before_any_box_is_changed(
        tmp_path: Path, args: list[str], boxes: dict[str, str], members: str, code: int,
        words: str) -> None:
    result, calls = run_several(tmp_path, args, boxes, members)
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr and "Nothing was changed." in result.stderr, result.stderr
    assert result.stderr.count("✗") == 1
    assert not any("mktemp" in c or "bootstrap.sh" in c or "swarm init" in c
                   or "swarm join" in c for c in calls), calls


def test_live_restore_in_daemon_json_stops_a_swarm_servers_preflight(tmp_path: Path) -> None:
    """On the server (`bootstrap.sh local --swarm-role worker`), before Docker runs."""
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"live-restore": true, "dns": ["10.0.0.53"]}\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")  # installed, not running
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "LANAI_DOCKER_DAEMON_JSON": str(daemon_json)}
    result = subprocess.run(["bash", "-c", f'source "{SCRIPT}"\nSWARM_ROLE=worker\ncheck_swarm'],
                            env=env, text=True, capture_output=True, timeout=60)
    assert result.returncode == 16, result.stderr
    assert "live-restore is on" in result.stderr and "incompatible with swarm mode" in \
        result.stderr
    daemon_json.write_text('{"dns": ["10.0.0.53"]}\n')
    result = subprocess.run(["bash", "-c", f'source "{SCRIPT}"\nSWARM_ROLE=worker\ncheck_swarm'],
                            env=env, text=True, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
