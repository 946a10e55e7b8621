"""The host-access policy: every way out of a container's confinement is refused at its
line in compose.yaml unless security.allow in lanai.yaml names it for that service."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode
from reconciler.desired.host_access import findings, refused
from reconciler.desired.load import InvalidState, Problem, load_state

from ..conftest import REPO_ROOT, Edit

WEBUI_IMAGE = "    image: ghcr.io/open-webui/open-webui:v0.12.4\n"
SECURITY = "  require_pinned_images: true\n"
ALLOW = "  allow:\n"


def problems_of(root: Path) -> list[Problem]:
    with pytest.raises(InvalidState) as info:
        load_state(root)
    return info.value.problems


WEBUI_VOLUME = "      - open-webui:/app/backend/data\n"
NEW_VOLUME = 1  # the index of a volume added after the service's own


def add_to_webui(edit: Edit, text: str) -> int:
    """Add `text` to the open-webui service; the line it starts on. Entries under
    `volumes:` join the service's own list (its line is then the one above them)."""
    if text.startswith("    volumes:\n"):
        entries = text.removeprefix("    volumes:\n")
        return edit("compose.yaml", WEBUI_VOLUME, WEBUI_VOLUME + entries)
    return edit("compose.yaml", WEBUI_IMAGE, WEBUI_IMAGE + text) + 1


def allow(edit: Edit, entries: str, service: str = "open-webui") -> None:
    """An entry in the example's security.allow (which allows its Prometheus already)."""
    edit("lanai.yaml", ALLOW, f"{ALLOW}    {service}: {entries}\n")


# (text added to the service, lines below its first line, key path under the service,
#  the allow entry, a phrase of the sentence)
REFUSED = [
    ("privileged: true\n", 0, ("privileged",), "privileged", "root on the server"),
    ("privileged: 'true'\n", 0, ("privileged",), "privileged", "every capability"),
    ("pid: host\n", 0, ("pid",), "host_pid", "server's processes"),
    ("ipc: host\n", 0, ("ipc",), "host_ipc", "shared memory"),
    ("uts: host\n", 0, ("uts",), "host_uts", "host name"),
    ("userns_mode: host\n", 0, ("userns_mode",), "host_userns", "user IDs"),
    ("cgroup: host\n", 0, ("cgroup",), "host_cgroup", "cgroup namespace"),
    ("network_mode: host\n", 0, ("network_mode",), "host_network", "network stack"),
    ("network_mode: container:vpn\n", 0, ("network_mode",), "other_containers",
     "does not define"),
    ("pid: container:other\n", 0, ("pid",), "other_containers", "does not define"),
    ("volumes_from: ['container:db:ro']\n", 0, ("volumes_from", 0), "other_containers",
     "volumes of a container"),
    ("cgroup_parent: system.slice\n", 0, ("cgroup_parent",), "cgroup_parent",
     "outside the stack's limits"),
    ("cap_add: [SYS_ADMIN]\n", 0, ("cap_add", 0), "SYS_ADMIN", "close to root"),
    ("cap_add:\n      - CHOWN\n      - cap_net_admin\n", 2, ("cap_add", 1), "NET_ADMIN",
     "withholds by default"),
    ("cap_add: [ALL]\n", 0, ("cap_add", 0), "ALL", "every capability"),
    ("cap_add: [SYS_MODULE]\n", 0, ("cap_add", 0), "SYS_MODULE", "close to root"),
    ("cap_add: [SYS_PTRACE]\n", 0, ("cap_add", 0), "SYS_PTRACE", "close to root"),
    ("cap_add: [SYS_RAWIO]\n", 0, ("cap_add", 0), "SYS_RAWIO", "close to root"),
    ("cap_add: [DAC_READ_SEARCH]\n", 0, ("cap_add", 0), "DAC_READ_SEARCH", "close to root"),
    ("devices:\n      - /dev/sda:/dev/sda\n", 1, ("devices", 0), "devices", "/dev/sda"),
    ("devices:\n      - source: /dev/kmsg\n        target: /dev/kmsg\n", 1, ("devices", 0),
     "devices", "/dev/kmsg"),
    ("device_cgroup_rules: ['c 1:3 mr']\n", 0, ("device_cgroup_rules", 0), "devices",
     "device"),
    ("security_opt: [seccomp=unconfined]\n", 0, ("security_opt", 0), "security_opt",
     "seccomp=unconfined"),
    ("security_opt:\n      - no-new-privileges:true\n      - apparmor:unconfined\n", 2,
     ("security_opt", 1), "security_opt", "apparmor:unconfined"),
    ("security_opt: ['label=disable']\n", 0, ("security_opt", 0), "security_opt",
     "confinement"),
    ("build:\n      context: .\n      privileged: true\n", 2, ("build", "privileged"),
     "privileged", "image build as root"),
]


@pytest.mark.parametrize(("text", "below", "key", "entry", "phrase"), REFUSED,
                         ids=[case[0].split("\n")[0] for case in REFUSED])
def test_refused_at_its_line_unless_allowed(state_dir: Path, edit: Edit, text: str, below: int,
                                            key: tuple[str | int, ...], entry: str,
                                            phrase: str) -> None:
    line = add_to_webui(edit, "    " + text)
    problems = problems_of(state_dir)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.file, problem.path, problem.line) == (
        "compose.yaml", ("services", "open-webui", *key), line + below)
    assert phrase in problem.message
    # One sentence: what it grants, and the fix (remove it, or allow it by name).
    assert problem.message.endswith(
        f"; remove it, or allow it in lanai.yaml with security.allow: {{open-webui: [{entry}]}}")
    assert problem.message.count(". ") == 0
    allow(edit, f"[{entry}]")
    assert load_state(state_dir).services["open-webui"]
    assert str(problem).startswith(f"compose.yaml:{line + below}: services.open-webui.")


def test_allowing_one_service_allows_nothing_for_another(state_dir: Path, edit: Edit) -> None:
    add_to_webui(edit, "    privileged: true\n")
    allow(edit, "[privileged]", service="ollama")
    assert [p.path for p in problems_of(state_dir)] == [("services", "open-webui", "privileged")]


def test_allowing_one_grant_allows_no_other(state_dir: Path, edit: Edit) -> None:
    add_to_webui(edit, "    privileged: true\n    pid: host\n    cap_add: [NET_ADMIN]\n")
    allow(edit, "[host_pid, SYS_ADMIN]")
    assert [p.path[-1] for p in problems_of(state_dir)] == ["privileged", 0]
    edit("lanai.yaml", "[host_pid, SYS_ADMIN]", "[host_pid, ALL, privileged]")
    load_state(state_dir)  # ALL covers every capability


@pytest.mark.parametrize("text", [
    "cap_add: [CHOWN, NET_BIND_SERVICE, KILL]\n",  # Docker's defaults: adding them grants nothing
    "security_opt: [no-new-privileges]\n",
    "security_opt: ['no-new-privileges=true']\n",
    "network_mode: service:ollama\n",
    "ipc: shareable\n",
    "privileged: false\n",
    "volumes_from: [ollama]\n",
    "volumes:\n      - ./webui-extra:/extra:ro\n      - cache:/cache\n      - /tmp/anon\n",
    "volumes:\n      - type: bind\n        source: ./config\n        target: /config\n",
    "volumes:\n      - type: tmpfs\n        target: /scratch\n",
    "volumes:\n      - './a$$b:/x'\n",  # $$ is a literal $, not interpolation
    "env_file: webui.env\n",
    "build: .\n",
    "build:\n      context: ./images/webui\n",
    "build:\n      context: https://example.invalid/repo.git\n",
])
def test_what_stays_inside_the_container_is_allowed(state_dir: Path, edit: Edit,
                                                    text: str) -> None:
    add_to_webui(edit, "    " + text)
    (state_dir / "webui.env").write_text("A=1\n")
    load_state(state_dir)


def test_the_example_gpu_reservation_stays_allowed(state_dir: Path) -> None:
    state = load_state(state_dir)
    reservation = state.services["ollama"]["deploy"]["resources"]["reservations"]["devices"]
    assert reservation == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert findings({"services": state.services}, state_dir) == []


# ---------------------------------------------------------------- host paths


@pytest.mark.parametrize(("volume", "below"), [
    ("- /etc:/host-etc:ro", 1),
    ("- type: bind\n        source: /etc\n        target: /host-etc", 1),
    ("- /etc/../etc/:/host-etc", 1),
])
def test_a_host_path_outside_the_repo_is_allowed_by_that_path(state_dir: Path, edit: Edit,
                                                              volume: str, below: int) -> None:
    line = add_to_webui(edit, f"    volumes:\n      {volume}\n")
    problem, = problems_of(state_dir)
    assert (problem.path, problem.line) == (("services", "open-webui", "volumes", NEW_VOLUME),
                                            line + below)
    assert "a path of the server outside the state repo" in problem.message
    assert problem.message.endswith("security.allow: {open-webui: [/etc]}")
    allow(edit, "[/etc/ssl]")  # a path below does not cover the whole directory
    assert len(problems_of(state_dir)) == 1
    edit("lanai.yaml", "[/etc/ssl]", "[/etc]")
    load_state(state_dir)
    edit("lanai.yaml", "[/etc]", "[/]")  # a path covers everything below it
    load_state(state_dir)


@pytest.mark.parametrize("volume", [
    "- /var/run/docker.sock:/var/run/docker.sock",
    "- /run/docker.sock:/var/run/docker.sock:ro",
    "- type: bind\n        source: /var/run/docker.sock\n        target: /docker.sock",
])
def test_the_docker_socket_needs_docker_socket(state_dir: Path, edit: Edit, volume: str) -> None:
    add_to_webui(edit, f"    volumes:\n      {volume}\n")
    problem, = problems_of(state_dir)
    assert "exposes the Docker socket, which is full root on the server" in problem.message
    allow(edit, "[/var/run, /run]")  # the socket is never allowed by its path alone
    assert len(problems_of(state_dir)) == 1
    edit("lanai.yaml", "[/var/run, /run]", "[docker_socket]")
    load_state(state_dir)


@pytest.mark.parametrize("source", ["/", "/var", "/run"])
def test_a_directory_above_the_socket_needs_both(state_dir: Path, edit: Edit,
                                                 source: str) -> None:
    add_to_webui(edit, f"    volumes:\n      - {source}:/host\n")
    assert sorted(p.message.rsplit("[", 1)[1] for p in problems_of(state_dir)) == [
        f"{source}]}}", "docker_socket]}"]
    allow(edit, f"[{source}]")
    assert len(problems_of(state_dir)) == 1
    edit("lanai.yaml", f"[{source}]", f"[{source}, docker_socket]")
    load_state(state_dir)


@pytest.mark.parametrize("source", ["..", "../other-repo", "./data/../../x", "/srv/lanai"])
def test_paths_that_leave_the_repo_are_host_paths(state_dir: Path, edit: Edit,
                                                  source: str) -> None:
    add_to_webui(edit, f"    volumes:\n      - {source}:/x\n")
    problem, = problems_of(state_dir)
    assert "outside the state repo" in problem.message


def test_a_link_in_the_repo_to_a_host_path_is_that_host_path(state_dir: Path,
                                                            edit: Edit) -> None:
    (state_dir / "innocent").symlink_to("/etc")
    add_to_webui(edit, "    volumes:\n      - ./innocent:/x\n")
    problem, = problems_of(state_dir)
    assert problem.message.endswith("security.allow: {open-webui: [/etc]}")


@pytest.mark.parametrize("source", [".", "./", "./.lanai-secrets", ".lanai-secrets/ollama.env"])
def test_no_container_sees_the_secrets_the_server_writes_into_the_repo(
        state_dir: Path, edit: Edit, source: str) -> None:
    add_to_webui(edit, f"    volumes:\n      - {source}:/x\n")
    problem, = problems_of(state_dir)
    assert "holds every service's secrets; mount a subdirectory instead" in problem.message
    assert "allow" not in problem.message  # nothing in lanai.yaml allows it


def test_a_home_directory_path_is_refused(state_dir: Path, edit: Edit) -> None:
    add_to_webui(edit, "    volumes:\n      - ~/.ssh:/keys\n")
    problem, = problems_of(state_dir)
    assert "home directory" in problem.message


def test_a_named_volume_that_binds_a_host_path(state_dir: Path, edit: Edit) -> None:
    edit("compose.yaml", "  open-webui:\n  proxy-data:\n",
         "  open-webui:\n    driver_opts:\n      type: none\n      o: bind\n"
         "      device: /srv/photos\n  proxy-data:\n")
    problem, = problems_of(state_dir)
    assert problem.path == ("services", "open-webui", "volumes", 0)
    assert problem.message.startswith("volume open-webui (driver_opts.device) of /srv/photos")
    allow(edit, "[/srv/photos]")
    load_state(state_dir)


@pytest.mark.parametrize(("top", "use", "key"), [
    ("configs:\n  c:\n    file: /etc/shadow\n", "configs: [c]\n", "configs"),
    ("secrets:\n  s:\n    file: /etc/lanai/secrets.env\n",
     "secrets:\n      - source: s\n        target: x\n", "secrets"),
])
def test_configs_and_secrets_from_host_files(state_dir: Path, edit: Edit, top: str, use: str,
                                             key: str) -> None:
    line = add_to_webui(edit, "    " + use)
    text = (state_dir / "compose.yaml").read_text()
    (state_dir / "compose.yaml").write_text(text + top)
    problem, = problems_of(state_dir)
    assert (problem.path, problem.line) == (("services", "open-webui", key, 0), line + (
        1 if "\n      -" in use else 0))
    assert "outside the state repo" in problem.message


@pytest.mark.parametrize(("text", "key"), [
    ("env_file: /etc/lanai/secrets.env\n", ("env_file",)),
    ("env_file:\n      - path: /etc/lanai/secrets.env\n", ("env_file", 0)),
    ("build: /\n", ("build",)),
    ("build:\n      context: .\n      additional_contexts:\n        etc: /etc\n",
     ("build", "etc")),
])
def test_files_compose_reads_on_the_server(state_dir: Path, edit: Edit, text: str,
                                           key: tuple[str, ...]) -> None:
    add_to_webui(edit, "    " + text)
    problems = problems_of(state_dir)
    assert {p.path for p in problems} == {("services", "open-webui", *key)}
    assert any("outside the state repo" in p.message for p in problems)


# ---------------------------------------------------------------- interpolation


@pytest.mark.parametrize(("text", "key"), [
    ("privileged: ${PRIVILEGED:-false}\n", ("privileged",)),
    ("network_mode: $MODE\n", ("network_mode",)),
    ("cap_add: ['${CAP}']\n", ("cap_add", 0)),
    ("volumes:\n      - ${DATA:-./data}:/data\n", ("volumes", NEW_VOLUME)),
    ("volumes:\n      - type: bind\n        source: ${HOME}\n        target: /h\n",
     ("volumes", NEW_VOLUME)),
    ("env_file: ${ENV_FILE}\n", ("env_file",)),
])
def test_interpolated_grants_must_be_written_literally(state_dir: Path, edit: Edit, text: str,
                                                       key: tuple[str | int, ...]) -> None:
    """compose interpolates from the repo's .env and its own environment after lanai checks
    the file, so a value lanai cannot read cannot be allowed either."""
    add_to_webui(edit, "    " + text)
    problem, = problems_of(state_dir)
    assert problem.path == ("services", "open-webui", *key)
    assert problem.message.endswith("so lanai cannot tell what it grants; write it literally")
    allow(edit, "[privileged, host_network, ALL, /]")
    assert len(problems_of(state_dir)) == 1


def test_resolved_config_is_checked_without_interpolation_rules(tmp_path: Path) -> None:
    """On compose's resolved output a '$' is literal and paths are absolute."""
    repo = tmp_path / "repo"
    repo.mkdir()
    compose = {"services": {"web": {"image": "x:1", "volumes": [
        {"type": "bind", "source": str(repo / "conf"), "target": "/conf"},
        {"type": "bind", "source": "/srv/a$b", "target": "/a"}],
        "env_file": [{"path": str(repo / ".lanai-secrets" / "web.env"), "required": True}]}}}
    found = refused(compose, repo, {}, resolved=True)
    assert [(f.path, f.need) for f in found] == [(("services", "web", "volumes", 1), "/srv/a$b")]
    # Another service's secrets file is not its own.
    compose["services"]["web"]["env_file"] = [{"path": str(repo / ".lanai-secrets/db.env")}]
    assert [f.need for f in refused(compose, repo, {"web": ["/srv"]}, resolved=True)] == [None]


# ---------------------------------------------------------------- lanai.yaml


def test_allow_names_a_service_that_does_not_exist(state_dir: Path, edit: Edit) -> None:
    allow(edit, "[privileged]", service="webui")
    problem, = problems_of(state_dir)
    assert (problem.file, problem.path) == ("lanai.yaml", ("security", "allow", "webui"))
    assert problem.message == "names service 'webui', which is not in compose.yaml"


@pytest.mark.parametrize("entry", ["root", "host_netwrk", "relative/path", "CAP_NOT_A_CAP"])
def test_an_unknown_allow_entry_is_an_error(state_dir: Path, edit: Edit, entry: str) -> None:
    allow(edit, f"[{entry}]")
    problem, = problems_of(state_dir)
    assert (problem.file, problem.path[:2]) == ("lanai.yaml", ("security", "allow"))
    assert f"{entry!r} (service 'open-webui') is not something lanai can allow" \
        in problem.message
    assert "docker_socket" in problem.message


def test_an_unknown_key_under_security_is_an_error(state_dir: Path, edit: Edit) -> None:
    edit("lanai.yaml", SECURITY, f"{SECURITY}  allowed: {{}}\n")
    problem, = problems_of(state_dir)
    assert problem.message == "unknown key; did you mean 'allow'?"


# ---------------------------------------------------------------- the CLI


def test_lanai_validate_refuses_privileged_with_exit_2(state_dir: Path, edit: Edit) -> None:
    line = add_to_webui(edit, "    privileged: true\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "reconciler", "validate", str(state_dir)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == ExitCode.INVALID == 2
    output = result.stdout + result.stderr
    assert (f"compose.yaml:{line}: services.open-webui.privileged: privileged: true gives the "
            "container every capability and every host device, which is root on the server; "
            "remove it, or allow it in lanai.yaml with security.allow: "
            "{open-webui: [privileged]}") in output
