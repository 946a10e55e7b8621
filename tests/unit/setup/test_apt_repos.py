"""packaging/apt-repos.sh: Docker's and NVIDIA's apt repositories, rendered and run.

The renderers are pure, so their output is asserted as exact text; the runners are
exercised with stand-ins (a fake `docker` on PATH, plans that write into tmp_path).
Nothing here needs root, the network or a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
LIB = REPO_ROOT / "packaging" / "apt-repos.sh"
BOOTSTRAP = REPO_ROOT / "bootstrap.sh"

DOCKER_KEY = "/etc/apt/keyrings/docker.asc"
NVIDIA_KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
NVIDIA_LIST_LINE = (
    f"deb [signed-by={NVIDIA_KEYRING}] "
    "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"
)
UDEV_RULE = (
    'ACTION=="add", DEVPATH=="/bus/pci/drivers/nvidia", '
    'RUN+="/usr/bin/nvidia-ctk system create-dev-char-symlinks --create-all"'
)


def sh(snippet: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`source packaging/apt-repos.sh; SNIPPET` in bash."""
    return subprocess.run(["bash", "-c", f'source "{LIB}"\n{snippet}'], cwd=REPO_ROOT,
                          text=True, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=env)


def out(snippet: str) -> str:
    result = sh(snippet)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def refused(snippet: str) -> str:
    """The one-sentence refusal of SNIPPET (nonzero status, nothing on stdout)."""
    result = sh(snippet)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def run_line(line: str, root: Path) -> None:
    """Run one plan line with /etc and /usr/share moved under `root`."""
    line = line.replace(" >/etc/", f" >{root}/etc/").replace(" >/usr/", f" >{root}/usr/")
    result = subprocess.run(["bash", "-c", f"set -Eeuo pipefail; {line}"], text=True,
                            capture_output=True)
    assert result.returncode == 0, result.stderr


# -- Docker's repository ------------------------------------------------------------------


@pytest.mark.parametrize(("os_id", "codename", "arch", "dpkg_arch"), [
    ("ubuntu", "jammy", "amd64", "amd64"),
    ("ubuntu", "jammy", "arm64", "arm64"),
    ("ubuntu", "noble", "amd64", "amd64"),
    ("ubuntu", "noble", "arm64", "arm64"),
    ("ubuntu", "noble", "x86_64", "amd64"),   # bootstrap's ARCH is `uname -m`
    ("ubuntu", "noble", "aarch64", "arm64"),
    ("debian", "bookworm", "amd64", "amd64"),
    ("debian", "bookworm", "arm64", "arm64"),
    ("debian", "trixie", "amd64", "amd64"),
    ("debian", "trixie", "aarch64", "arm64"),
])
def test_docker_source_is_deb822_signed_by_the_keyring(os_id: str, codename: str, arch: str,
                                                        dpkg_arch: str) -> None:
    assert out(f"docker_repo_source {os_id} {codename} {arch}") == (
        "Types: deb\n"
        f"URIs: https://download.docker.com/linux/{os_id}\n"
        f"Suites: {codename}\n"
        "Components: stable\n"
        f"Architectures: {dpkg_arch}\n"
        f"Signed-By: {DOCKER_KEY}\n"
    )


def test_docker_plan_on_ubuntu_noble_is_dockers_documented_steps() -> None:
    assert out("docker_repo_install_plan ubuntu noble amd64") == (
        "# Docker Engine from Docker's apt repository (docs.docker.com/engine/install/ubuntu/)\n"
        "apt-get update\n"
        "apt-get install -y ca-certificates curl\n"
        "install -m 0755 -d /etc/apt/keyrings\n"
        "curl -fsSL https://download.docker.com/linux/ubuntu/gpg -o /etc/apt/keyrings/docker.asc\n"
        "chmod a+r /etc/apt/keyrings/docker.asc\n"
        "printf '%s\\n' 'Types: deb' 'URIs: https://download.docker.com/linux/ubuntu'"
        " 'Suites: noble' 'Components: stable' 'Architectures: amd64'"
        " 'Signed-By: /etc/apt/keyrings/docker.asc' >/etc/apt/sources.list.d/docker.sources\n"
        "apt-get update\n"
        "apt-get install -y docker-ce docker-ce-cli containerd.io docker-buildx-plugin"
        " docker-compose-plugin\n"
    )


def test_docker_plan_on_debian_uses_the_debian_repository() -> None:
    plan = out("docker_repo_install_plan debian bookworm aarch64").splitlines()
    assert plan[4] == ("curl -fsSL https://download.docker.com/linux/debian/gpg"
                       " -o /etc/apt/keyrings/docker.asc")
    assert "'URIs: https://download.docker.com/linux/debian' 'Suites: bookworm'" in plan[6]
    assert "'Architectures: arm64'" in plan[6]


@pytest.mark.parametrize(("os_id", "codename", "arch"), [
    ("ubuntu", "jammy", "arm64"), ("ubuntu", "noble", "amd64"),
    ("debian", "bookworm", "amd64"), ("debian", "trixie", "arm64"),
])
def test_the_plan_writes_exactly_the_rendered_source(os_id: str, codename: str, arch: str,
                                                     tmp_path: Path) -> None:
    plan = out(f"docker_repo_install_plan {os_id} {codename} {arch}").splitlines()
    (write,) = [line for line in plan if line.startswith("printf ")]
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    run_line(write, tmp_path)
    written = (tmp_path / "etc/apt/sources.list.d/docker.sources").read_text()
    assert written == out(f"docker_repo_source {os_id} {codename} {arch}")


def test_installed_conflicts_are_removed_after_the_repo_is_set_up() -> None:
    plan = out("docker_repo_install_plan ubuntu jammy amd64 docker.io docker-compose-v2")
    lines = plan.splitlines()
    assert lines[-2:] == [
        "apt-get remove -y docker.io docker-compose-v2",
        "apt-get install -y docker-ce docker-ce-cli containerd.io docker-buildx-plugin"
        " docker-compose-plugin",
    ]
    # Only after the key, the source and the second update: a network failure before
    # that leaves the distribution's Docker in place.
    assert lines.index("apt-get remove -y docker.io docker-compose-v2") > max(
        i for i, line in enumerate(lines) if line == "apt-get update")


def test_only_documented_conflicts_can_be_removed() -> None:
    message = refused("docker_repo_install_plan debian bookworm amd64 docker-compose-v2 ssh")
    assert "'docker-compose-v2' is not one of the packages that conflict" in message


def test_conflicting_packages_follow_dockers_docs() -> None:
    assert out("docker_conflicting_packages ubuntu") == (
        "docker.io docker-compose docker-compose-v2 docker-doc podman-docker containerd runc\n")
    assert out("docker_conflicting_packages debian") == (
        "docker.io docker-compose docker-doc podman-docker containerd runc\n")


@pytest.mark.parametrize("os_id", ["fedora", "linuxmint", "raspbian", ""])
def test_an_unknown_os_is_refused_with_one_sentence(os_id: str) -> None:
    for function in ("docker_repo_source", "docker_repo_install_plan"):
        message = refused(f"{function} '{os_id}' noble amd64")
        assert f"unsupported OS id '{os_id}'" in message
        assert "ubuntu and debian only" in message


@pytest.mark.parametrize(("args", "words"), [
    ("ubuntu '' amd64", "is not a release codename"),
    ("ubuntu 'noble; rm -rf /' amd64", "is not a release codename"),
    ("ubuntu Noble amd64", "is not a release codename"),
    ("ubuntu noble i386", "architecture 'i386' is not supported"),
    ("debian bookworm s390x", "architecture 's390x' is not supported"),
])
def test_bad_codenames_and_architectures_are_refused(args: str, words: str) -> None:
    assert words in refused(f"docker_repo_source {args}")


@pytest.mark.parametrize(("text", "codename"), [
    ('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\n'
     "ID=ubuntu\nUBUNTU_CODENAME=noble\n", "noble"),
    ('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n', "bookworm"),
    ('ID=debian\nVERSION_CODENAME="trixie"', "trixie"),  # quoted, no final newline
    ("ID=linuxmint\nVERSION_CODENAME=wilma\nUBUNTU_CODENAME=noble\n", "noble"),
])
def test_codename_comes_from_os_release(text: str, codename: str, tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text(text)
    assert out(f"os_codename '{path}'") == codename + "\n"


def test_a_missing_codename_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "os-release"
    path.write_text('ID=debian\nPRETTY_NAME="Debian GNU/Linux trixie/sid"\n')
    assert "has no VERSION_CODENAME" in refused(f"os_codename '{path}'")
    assert "cannot read" in refused(f"os_codename '{tmp_path}/nothing'")


# -- the NVIDIA Container Toolkit -------------------------------------------------------------


def test_nvidia_source_is_the_stable_list_signed_by_the_keyring() -> None:
    assert out("nvidia_toolkit_source") == NVIDIA_LIST_LINE + "\n"


def test_nvidia_plan_is_nvidias_documented_steps() -> None:
    assert out("nvidia_toolkit_install_plan") == (
        "# The NVIDIA Container Toolkit from NVIDIA's apt repository\n"
        "# (docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html)\n"
        "apt-get update\n"
        "apt-get install -y --no-install-recommends ca-certificates curl gnupg\n"
        "curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey"
        f" | gpg --batch --yes --dearmor -o {NVIDIA_KEYRING}\n"
        f"chmod a+r {NVIDIA_KEYRING}\n"
        f"printf '%s\\n' '{NVIDIA_LIST_LINE}'"
        " >/etc/apt/sources.list.d/nvidia-container-toolkit.list\n"
        "apt-get update\n"
        "apt-get install -y nvidia-container-toolkit\n"
        "nvidia-ctk runtime configure --runtime=docker\n"
        "systemctl restart docker\n"
    )


def test_without_systemd_dockerd_is_sent_sighup() -> None:
    plan = out("nvidia_toolkit_install_plan sighup").splitlines()
    assert plan[-1] == 'kill -HUP "$(cat /var/run/docker.pid)"'
    assert not any("systemctl" in line for line in plan)
    assert "systemd or sighup" in refused("nvidia_toolkit_install_plan reboot")


def test_the_plan_writes_the_list_with_arch_left_to_apt(tmp_path: Path) -> None:
    plan = out("nvidia_toolkit_install_plan").splitlines()
    (write,) = [line for line in plan if line.startswith("printf ")]
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    run_line(write, tmp_path)
    written = (tmp_path / "etc/apt/sources.list.d/nvidia-container-toolkit.list").read_text()
    assert written == NVIDIA_LIST_LINE + "\n"  # `$(ARCH)` literal: apt substitutes it


def test_nvml_prevention_is_the_documented_symlinks_and_udev_rule(tmp_path: Path) -> None:
    plan = out("nvml_prevention_plan")
    assert "Failed to initialize NVML: Unknown Error" in plan
    assert "https://github.com/NVIDIA/nvidia-docker/issues/1730" in plan
    commands = [line for line in plan.splitlines() if not line.startswith("#")]
    assert commands[:2] == ["nvidia-ctk system create-dev-char-symlinks --create-all",
                            "install -m 0755 -d /etc/udev/rules.d"]
    assert commands[2].endswith(" >/etc/udev/rules.d/71-nvidia-dev-char.rules")
    (tmp_path / "etc/udev/rules.d").mkdir(parents=True)
    run_line(commands[2], tmp_path)
    rule = (tmp_path / "etc/udev/rules.d/71-nvidia-dev-char.rules").read_text().splitlines()
    assert [line for line in rule if not line.startswith("#")] == [UDEV_RULE]
    assert "cgroupfs" in plan  # the alternative is named, and why it is not taken


def test_the_gpu_proof_runs_nvidia_smi_in_the_given_image() -> None:
    assert out("gpu_container_proof_command ollama/ollama:0.24.0") == (
        "docker run --rm --gpus all --entrypoint nvidia-smi ollama/ollama:0.24.0"
        " --query-gpu=name --format=csv,noheader\n")
    for bad in ("''", "'-v /:/host'", "'a b'"):
        assert "needs an image reference" in refused(f"gpu_container_proof_command {bad}")


FAKE_DOCKER = """#!/bin/sh
printf '%s\\n' "$*" >>"{log}"
{body}
"""


@pytest.mark.parametrize(("body", "rc", "expected"), [
    ("printf 'NVIDIA H100 80GB HBM3\\nNVIDIA H100 80GB HBM3\\n'", 0,
     "NVIDIA H100 80GB HBM3; NVIDIA H100 80GB HBM3\n"),
    ("echo 'docker: Error response from daemon: could not select device driver \"\" "
     "with capabilities: [[gpu]].' >&2; exit 125", 1,
     "`docker run --rm --gpus all --entrypoint nvidia-smi ollama/ollama:0.24.0"
     " --query-gpu=name --format=csv,noheader` exited 125: docker: Error response from"
     " daemon: could not select device driver"),
    ("exit 0", 1, "printed no GPU name"),
    ("echo 'Failed to initialize NVML: Unknown Error'", 1, "Failed to initialize NVML"),
])
def test_gpu_container_check(body: str, rc: int, expected: str, tmp_path: Path) -> None:
    log = tmp_path / "docker.log"
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_DOCKER.format(log=log, body=body))
    docker.chmod(0o755)
    env = {**os.environ, "PATH": f"{docker.parent}:{os.environ['PATH']}"}
    result = sh("gpu_container_check ollama/ollama:0.24.0", env)
    assert result.returncode == rc
    if rc == 0:
        assert result.stdout == expected
    else:
        assert result.stdout == ""
        assert expected in result.stderr
        assert result.stderr.startswith("a container could not use the GPU")
    assert log.read_text() == ("run --rm --gpus all --entrypoint nvidia-smi"
                               " ollama/ollama:0.24.0 --query-gpu=name --format=csv,noheader\n")


# -- the driver ---------------------------------------------------------------------------


@pytest.mark.parametrize(("os_id", "version", "words"), [
    ("ubuntu", "22.04", ["sudo ubuntu-drivers install --gpgpu", "ubuntu-drivers list --gpgpu"]),
    ("ubuntu", "24.04", ["sudo ubuntu-drivers install --gpgpu", "nvidia-driver-580-server"]),
    ("debian", "12", ["/etc/apt/sources.list,", "contrib non-free non-free-firmware",
                      "nvidia-driver firmware-misc-nonfree"]),
    ("debian", "13", ["/etc/apt/sources.list.d/debian.sources", "nvidia-driver"]),
    ("fedora", "41", ["driver-installation-guide"]),
])
def test_driver_advice_is_one_paragraph_and_says_reboot(os_id: str, version: str,
                                                         words: list[str]) -> None:
    advice = out(f"gpu_driver_advice {os_id} {version}")
    assert advice.count("\n") == 1
    assert "Then reboot" in advice
    assert "nvidia-smi" in advice
    for word in words:
        assert word in advice


def test_driver_install_plans() -> None:
    assert out("gpu_driver_install_plan ubuntu 24.04 x86_64") == (
        "# The NVIDIA server driver from Ubuntu's archive"
        " (ubuntu.com/server/docs: NVIDIA drivers installation)\n"
        "apt-get update\n"
        "apt-get install -y ubuntu-drivers-common\n"
        "ubuntu-drivers install --gpgpu\n"
        "# reboot needed: the driver's kernel module loads at the next boot\n"
    )
    assert out("gpu_driver_install_plan debian 12 aarch64").splitlines()[2] == (
        "apt-get install -y linux-headers-arm64 nvidia-driver firmware-misc-nonfree")
    assert "ubuntu and debian only" in refused("gpu_driver_install_plan fedora 41 x86_64")


# -- no apt-key, ever ---------------------------------------------------------------------


def test_nothing_renders_apt_key_or_the_retired_nvidia_docker_repo() -> None:
    everything = out("""
for os in 'ubuntu jammy' 'ubuntu noble' 'debian bookworm' 'debian trixie'; do
  for arch in amd64 arm64; do
    docker_repo_source $os $arch
    docker_repo_install_plan $os $arch
  done
done
docker_repo_install_plan ubuntu noble amd64 docker.io containerd runc
nvidia_toolkit_source
nvidia_toolkit_install_plan
nvidia_toolkit_install_plan sighup
nvml_prevention_plan
gpu_container_proof_command ollama/ollama:0.24.0
for v in 'ubuntu 22.04' 'ubuntu 24.04' 'debian 12' 'debian 13'; do
  gpu_driver_advice $v
  gpu_driver_install_plan $v amd64
done
""")
    assert "apt-key" not in everything
    assert "nvidia.github.io/nvidia-docker" not in everything
    assert "nvidia-docker2" not in everything
    assert not re.search(r"^deb (?!\[signed-by=)", everything, re.M)  # one-line ones are signed
    code = [line for line in LIB.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "apt-key" in line]


# -- /etc/docker/daemon.json ------------------------------------------------------------------


def merge(path: Path, key: str, value: str) -> subprocess.CompletedProcess[str]:
    return sh(f"daemon_json_merge '{path}' '{key}' '{value}'")


def test_merge_keeps_unrelated_keys(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    existing = {"log-driver": "json-file", "log-opts": {"max-size": "10m"},
                "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
                "data-root": "/srv/docker"}
    path.write_text(json.dumps(existing))
    result = merge(path, "default-runtime", '"nvidia"')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {**existing, "default-runtime": "nvidia"}
    assert list(json.loads(result.stdout)) == [*existing, "default-runtime"]  # order kept
    assert json.loads(path.read_text()) == existing  # merge only prints


def test_objects_merge_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"runtimes": {"runsc": {"path": "/usr/bin/runsc"}}}')
    result = merge(path, "runtimes", '{"nvidia": {"path": "nvidia-container-runtime"}}')
    assert json.loads(result.stdout) == {"runtimes": {
        "runsc": {"path": "/usr/bin/runsc"}, "nvidia": {"path": "nvidia-container-runtime"}}}


def test_a_list_item_of_the_same_name_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text('{"exec-opts": ["native.cgroupdriver=systemd", "isolation=default"]}')
    result = merge(path, "exec-opts", '["native.cgroupdriver=cgroupfs"]')
    assert json.loads(result.stdout) == {
        "exec-opts": ["native.cgroupdriver=cgroupfs", "isolation=default"]}
    path.write_text('{"dns": ["192.168.1.1"]}')
    result = merge(path, "dns", '["192.168.1.1", "1.1.1.1"]')
    assert json.loads(result.stdout) == {"dns": ["192.168.1.1", "1.1.1.1"]}


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_a_missing_or_empty_file_is_an_empty_object(content: str | None,
                                                    tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    if content is not None:
        path.write_text(content)
    result = merge(path, "default-runtime", '"nvidia"')
    assert result.stdout == '{\n    "default-runtime": "nvidia"\n}\n'


@pytest.mark.parametrize(("content", "words"), [
    ('{"log-driver": "json-file",}', "is not valid JSON"),
    ("{'log-driver': 'json-file'}", "is not valid JSON"),
    ('["not", "an", "object"]', "holds a JSON list, not an object"),
])
def test_invalid_json_is_refused_and_left_alone(content: str, words: str,
                                                tmp_path: Path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(content)
    result = merge(path, "default-runtime", '"nvidia"')
    assert result.returncode == 1
    assert result.stdout == ""
    assert words in result.stderr
    assert "Nothing was changed" in result.stderr
    assert result.stderr.count("\n") == 1
    assert path.read_text() == content
    result = sh(f"daemon_json_set '{path}' default-runtime '\"nvidia\"'")
    assert result.returncode == 1
    assert path.read_text() == content


def test_an_invalid_value_is_refused(tmp_path: Path) -> None:
    result = merge(tmp_path / "daemon.json", "default-runtime", "nvidia")
    assert result.returncode == 1
    assert "the value for default-runtime is not valid JSON" in result.stderr
    assert not (tmp_path / "daemon.json").exists()


def test_set_writes_once_then_reports_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "daemon.json"
    snippet = f"""daemon_json_set '{path}' default-runtime '"nvidia"'; echo $DAEMON_JSON_CHANGED
daemon_json_set '{path}' default-runtime '"nvidia"'; echo $DAEMON_JSON_CHANGED"""
    assert out(snippet) == "1\n0\n"
    assert json.loads(path.read_text()) == {"default-runtime": "nvidia"}
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["daemon.json"]  # no temp file left


# -- running a plan -------------------------------------------------------------------------


def test_apply_plan_runs_line_by_line_logs_and_stops_at_the_first_failure(
        tmp_path: Path) -> None:
    log = tmp_path / "bootstrap.log"
    plan = tmp_path / "plan"
    done = tmp_path / "done"
    plan.write_text(
        "# a comment is not run\n"
        "\n"
        f"printf '%s\\n' 'one' 'two' >{done}\n"
        "echo $DEBIAN_FRONTEND\n"
        "false | cat\n"  # pipefail: a failing stage fails the line
        f"echo never >>{done}\n")
    env = {**os.environ, "LANAI_BOOTSTRAP_LOG": str(log)}
    result = sh(f"apply_plan '{plan}'; echo \"rc=$? failed=$APPLY_FAILED_LINE\"", env)
    assert result.stdout == "rc=1 failed=false | cat\n"
    assert done.read_text() == "one\ntwo\n"
    assert log.read_text() == (
        f"\n$ printf '%s\\n' 'one' 'two' >{done}\n"
        "\n$ echo $DEBIAN_FRONTEND\nnoninteractive\n"
        "\n$ false | cat\n(exit 1)\n")


def test_apply_plan_reads_stdin_and_succeeds(tmp_path: Path) -> None:
    env = {**os.environ, "LANAI_BOOTSTRAP_LOG": str(tmp_path / "log")}
    result = sh("printf 'true\\n# x\\ntrue\\n' |"
                " { apply_plan; echo \"rc=$? [$APPLY_FAILED_LINE]\"; }", env)
    assert result.stdout == "rc=0 []\n"


# -- fitting bootstrap.sh ---------------------------------------------------------------------


def functions(snippet: str) -> set[str]:
    listing = subprocess.run(["bash", "-c", f"{snippet}; declare -F"], cwd=REPO_ROOT,
                             text=True, capture_output=True).stdout
    return {line.split()[-1] for line in listing.splitlines()}


def defined_in(path: Path) -> set[str]:
    """Function names a script defines itself (not those of files it sources)."""
    return set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)\(\) \{", path.read_text(), re.M))


def test_bootstrap_sources_it_without_clashes_or_side_effects() -> None:
    """bootstrap.sh runs with `set -Eeuo pipefail` and an ERR trap and sources this file:
    that must define functions only, and a refusal must be catchable with `||`."""
    snippet = f"""source "{BOOTSTRAP}"
trap 'echo ERR-TRAP' ERR
set -Eeuo pipefail
plan=$(docker_repo_install_plan "$(echo ubuntu)" noble "$(uname -m)" 2>/dev/null) || echo no
docker_repo_source fedora x amd64 2>/dev/null || echo refused
echo "$plan" | tail -n 1"""
    result = subprocess.run(["bash", "-c", snippet], cwd=REPO_ROOT, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    ours, theirs = defined_in(LIB), defined_in(BOOTSTRAP)
    assert ours and theirs
    assert not ours & theirs  # no function of bootstrap.sh is redefined
    assert ours <= functions(f'source "{BOOTSTRAP}"')  # sourcing bootstrap brings them
    assert "ERR-TRAP" not in result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "refused"
    assert lines[1].startswith("apt-get install -y docker-ce ")


def test_shellcheck_is_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed; tests/run installs it")
    result = subprocess.run(["shellcheck", str(LIB)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
