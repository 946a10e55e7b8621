"""Clean Debian servers for bootstrap.sh to manage, reached over real SSH.

A server is a container of `lanai-test/server:<suite>` (tests/images/build.sh,
tests/images/server/) booted with systemd as PID 1: users `admin` (passwordless
sudo) and `plain` (no sudo), sshd with keys only, host keys made at first boot,
no Docker. This machine's extra CAs (an egress proxy's) are copied in at boot.
Its sshd, its port 3000 and the https proxy's 443 and 80 are published on 127.0.0.1
ports that Docker picks; /var/lib/docker is a named volume so that a Docker installed
inside can use overlay2. Teardown removes the container and the volume.

    with boot(SERVER_TRIXIE, docker_client, tmp_path) as server:
        server.ssh("sudo", "-n", "true")                  # CompletedProcess
        subprocess.run(["ssh", "-F", str(server.ssh_config_path), server.target(), "id"])

How a booted server reaches "the internet": the server containers and the session's
stand-ins for it (harness.Outside: registry.ollama.ai, api.cloud.example) are all on this
engine's default bridge. A real server's Docker asks its network's resolver for
registry.ollama.ai; here `OutsideDNS` (tests/ollama_double/dns.py, on the same bridge)
answers those names with the stand-ins' bridge addresses and NXDOMAIN for all else, and
`use_outside_dns` points the server's Docker at it in /etc/docker/daemon.json before Docker
is installed (test machine, never bootstrap; like the image's docker.service drop-in).
Nested containers then resolve through Docker's embedded DNS and reach the stand-ins
through the server's NAT, as a real server's containers reach the real registry. The
differences: plain HTTP where the real registry speaks HTTPS, and no other name resolves
for the server's containers (the server itself keeps this machine's resolver for apt, pip).
"""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import docker
import yaml

from .harness import EXAMPLE_STATE, MINI_STATE, REPO_ROOT, REQUIRED_IMAGES, Outside, wait_for

SERVER_TRIXIE = "lanai-test/server:trixie"
SERVER_BOOKWORM = "lanai-test/server:bookworm"
SERVER_BULLSEYE = "lanai-test/server:bullseye"
HOST_ALIAS = "lanai-test-server"
WRONG_KEY_ALIAS = "lanai-test-server-wrong-key"
USERS = ("admin", "plain", "pwadmin")
SUDO_PASSWORD = "lanai-test-sudo-password"  # pwadmin's (tests/images/server/Dockerfile)
WEB_PORT_INSIDE = 3000
HTTPS_PORT_INSIDE, HTTP_PORT_INSIDE = 443, 80  # the example's https proxy
LABEL = "io.lanai.test-server"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
BOOTSTRAP = REPO_ROOT / "bootstrap.sh"

# What the clean server needs from the host to boot systemd as PID 1 on this
# kernel (`--privileged` fails here); see "Tests that mean something" in DESIGN.md.
RUN_OPTIONS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined"],
    "cgroupns": "host",
    "tmpfs": {"/run": "", "/run/lock": ""},
}


class TestServer:
    """One booted server. Build it with `boot()`; every path lives under `root`."""

    __test__ = False  # not a pytest test class

    def __init__(self, container: Any, volume: Any, root: Path) -> None:
        self.container = container
        self.volume = volume
        self.root = root
        self.name: str = container.name
        self.ssh_port = self.web_port = self.https_port = self.http_port = 0
        self._read_ports()
        self.key = root / "id_ed25519"
        self.wrong_key = root / "wrong_id_ed25519"
        self.known_hosts = root / "known_hosts"
        self.ssh_config_path = root / "ssh_config"
        self.boot_state = ""
        self.timings: dict[str, float] = {}

    # -- addresses ------------------------------------------------------------------------

    def _read_ports(self) -> None:
        """The 127.0.0.1 ports Docker published the server's 22, 3000, 443 and 80 on."""
        self.container.reload()
        ports = self.container.attrs["NetworkSettings"]["Ports"] or {}
        if not ports.get("22/tcp"):
            raise RuntimeError(f"{self.name} is {self.container.status}, with no published "
                               f"ports (is {self.container.image.tags} a lanai-test/server "
                               "image?)")

        def published(inside: int) -> int:
            return int(ports[f"{inside}/tcp"][0]["HostPort"])

        self.ssh_port, self.web_port = published(22), published(WEB_PORT_INSIDE)
        self.https_port, self.http_port = published(HTTPS_PORT_INSIDE), published(HTTP_PORT_INSIDE)

    @property
    def host(self) -> str:
        """The Host alias in `ssh_config_path` (right key, user admin)."""
        return HOST_ALIAS

    def target(self, user: str = "admin", *, wrong_key: bool = False) -> str:
        """`user@alias`, what `ssh -F ssh_config_path` (and bootstrap.sh) is given."""
        return f"{user}@{WRONG_KEY_ALIAS if wrong_key else HOST_ALIAS}"

    # -- known_hosts ----------------------------------------------------------------------

    def trust(self) -> None:
        """Write the server's real host keys into `known_hosts` (ssh-keyscan)."""
        scanned = wait_for(self._keyscan, 30, f"ssh-keyscan of {self.name}")
        self.known_hosts.write_text(scanned)

    def forget(self) -> None:
        """Empty `known_hosts`: the server is then an unknown host (StrictHostKeyChecking yes)."""
        self.known_hosts.write_text("")

    def _keyscan(self) -> str:
        result = subprocess.run(["ssh-keyscan", "-p", str(self.ssh_port), "127.0.0.1"],
                                capture_output=True, text=True, timeout=30, check=False)
        return result.stdout if "ssh-ed25519" in result.stdout else ""

    def host_key_fingerprint(self, key_type: str = "ed25519") -> str:
        """`SHA256:...` of the server's own host key, read inside the container."""
        result = self.exec("ssh-keygen", "-lf", f"/etc/ssh/ssh_host_{key_type}_key.pub",
                           check=True)
        return result.stdout.split()[1]

    # -- running commands -----------------------------------------------------------------

    def ssh_command(self, *cmd: str, user: str = "admin", wrong_key: bool = False) -> list[str]:
        """The argv of `ssh` running `cmd` on the server. One argument is a shell command
        line as is; several are quoted (shlex.join)."""
        remote = cmd[0] if len(cmd) == 1 else shlex.join(cmd)
        return ["ssh", "-F", str(self.ssh_config_path), self.target(user, wrong_key=wrong_key),
                *([remote] if cmd else [])]

    def ssh(self, *cmd: str, user: str = "admin", wrong_key: bool = False,
            input: str | None = None, stdin: IO[bytes] | int | None = None,
            timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `cmd` on the server through real ssh with `ssh_config_path`."""
        if stdin is not None:  # binary stream in (docker save | ...), text out
            raw = subprocess.run(self.ssh_command(*cmd, user=user, wrong_key=wrong_key),
                                 stdin=stdin, capture_output=True, timeout=timeout,
                                 check=check)
            return subprocess.CompletedProcess(raw.args, raw.returncode,
                                               raw.stdout.decode(errors="replace"),
                                               raw.stderr.decode(errors="replace"))
        return subprocess.run(self.ssh_command(*cmd, user=user, wrong_key=wrong_key),
                              input=input, stdin=None if input is not None else
                              subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def exec(self, *cmd: str, user: str = "root", input: str | None = None,
             timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run `cmd` in the container with `docker exec` (for assertions, not for the
        thing under test)."""
        result = subprocess.run(["docker", "exec", *(["-i"] if input is not None else []),
                                 "-u", user, self.name, *cmd],
                                input=input, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"in {self.name}: {shlex.join(cmd)} exited "
                                 f"{result.returncode}: {result.stdout}{result.stderr}")
        return result

    def reboot(self, timeout: float = 180) -> None:
        """Restart the whole server (its container): systemd boots again, everything in
        /run is gone, the disk stays. Docker may publish sshd on another port."""
        self.container.restart(timeout=60)
        self._read_ports()
        _write_ssh_config(self)
        self.trust()  # the same host keys, on the new port
        wait_for(lambda: _system_state(self), timeout, f"systemd in {self.name} to boot again")
        wait_for(lambda: _ssh_accepts_key(self), timeout, f"sshd in {self.name} after reboot")

    def logs(self) -> str:
        """The system journal (for failure messages)."""
        return self.exec("journalctl", "--no-pager", "-n", "200", timeout=60).stdout

    # -- lifecycle ------------------------------------------------------------------------

    def teardown(self) -> None:
        with suppress(docker.errors.NotFound):
            self.container.remove(force=True, v=True)
        with suppress(docker.errors.NotFound):
            self.volume.remove(force=True)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True, capture_output=True)


def _write_ssh_config(server: TestServer) -> None:
    common = "\n".join([
        "  HostName 127.0.0.1",
        f"  Port {server.ssh_port}",
        "  User admin",
        "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {server.known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes",
        "  BatchMode yes",
        "  ConnectTimeout 10",
        "  LogLevel ERROR",
    ])
    server.ssh_config_path.write_text(
        f"Host {HOST_ALIAS}\n  IdentityFile {server.key}\n{common}\n\n"
        f"Host {WRONG_KEY_ALIAS}\n  IdentityFile {server.wrong_key}\n{common}\n")


def _authorize(server: TestServer) -> None:
    public = server.key.with_suffix(".pub").read_text()
    for user in USERS:
        path = f"/home/{user}/.ssh/authorized_keys"
        server.exec("sh", "-ec", f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh; "
                    f"cat > {path}; chown {user}:{user} {path}; chmod 0600 {path}",
                    input=public, check=True, timeout=60)


def _trust_host_cas(server: TestServer) -> None:
    """Give the server this machine's own extra CAs (e.g. an HTTPS egress proxy's), as any
    machine on this network has them, so that pip and apt over https work from inside.
    Part of the test machine, not of bootstrap; nothing to do where the host has none."""
    found = sorted(p for p in HOST_CA_DIR.rglob("*.crt") if p.is_file())
    if not found or server.exec("test", "-x", "/usr/sbin/update-ca-certificates",
                                timeout=60).returncode != 0:
        return
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path in found:
            data = path.read_bytes()
            info = tarfile.TarInfo(f"lanai-test-host-{path.name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    server.container.put_archive("/usr/local/share/ca-certificates", archive.getvalue())
    server.exec("update-ca-certificates", check=True, timeout=120)


def _system_state(server: TestServer) -> str:
    # --wait blocks until boot is over; fails at once while systemd's bus is not up yet.
    result = server.exec("systemctl", "is-system-running", "--wait", timeout=120)
    state = result.stdout.strip()
    return state if state in ("running", "degraded") else ""


def _ssh_accepts_key(server: TestServer) -> bool:
    # Any host key will do here: known_hosts is the test's business (trust/forget).
    result = subprocess.run(
        ["ssh", "-F", str(server.ssh_config_path), "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", server.target(), "true"],
        capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL)
    return result.returncode == 0


def start(image: str, client: docker.DockerClient, root: Path, *, trust: bool = True,
          timeout: float = 120) -> TestServer:
    """Boot a server of `image` and wait until systemd has finished booting and sshd
    accepts the test key. The caller owns teardown (see `boot` for a context manager)."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"lanai-test-server-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    volume = client.volumes.create(f"{name}-docker", labels={LABEL: name})
    container = None
    try:
        container = client.containers.run(
            image, name=name, hostname=name, detach=True, labels={LABEL: name},
            volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                     volume.name: {"bind": "/var/lib/docker", "mode": "rw"}},
            ports={f"{port}/tcp": ("127.0.0.1",) for port in (
                22, WEB_PORT_INSIDE, HTTPS_PORT_INSIDE, HTTP_PORT_INSIDE)},
            **RUN_OPTIONS)
        server = TestServer(container, volume, root)
    except BaseException as exc:
        if container is not None:
            with suppress(Exception):
                exc.add_note(f"{name} exited: {container.logs(tail=50).decode(errors='replace')}")
            container.remove(force=True, v=True)
        volume.remove(force=True)
        raise
    try:
        _keygen(server.key, "lanai-test-client")
        _keygen(server.wrong_key, "lanai-test-unrelated")
        server.forget()
        _write_ssh_config(server)
        _authorize(server)
        server.boot_state = wait_for(lambda: _system_state(server), timeout,
                                     f"systemd in {name} to finish booting")
        server.timings["systemd"] = time.monotonic() - started
        _trust_host_cas(server)  # after boot: systemd mounts a fresh /tmp while booting
        wait_for(lambda: _ssh_accepts_key(server), timeout, f"sshd in {name} to accept the key")
        server.timings["ssh"] = time.monotonic() - started
        if trust:
            server.trust()
    except BaseException as exc:
        with suppress(Exception):
            exc.add_note(f"{name} journal:\n{server.logs()}")
        server.teardown()
        raise
    return server


@contextmanager
def boot(image: str, client: docker.DockerClient, tmp_path: Path, *, trust: bool = True,
         timeout: float = 120) -> Iterator[TestServer]:
    """`start` a server, yield it, and remove it and its volume afterwards, on failure too."""
    server = start(image, client, tmp_path, trust=trust, timeout=timeout)
    try:
        yield server
    finally:
        server.teardown()


class OutsideDNS:
    """The DNS server that names the stand-ins of `Outside.started` for booted servers'
    Docker (see the module's docstring): one container of the double's image on the
    default bridge, with the servers and the stand-ins."""

    def __init__(self, client: docker.DockerClient, outside: list[Outside]) -> None:
        bridge = client.networks.get("bridge")
        for stand_in in outside:  # an address only a running container has
            stand_in.wait_running()
        records = ",".join(f"{o.HOST}={_bridge_address(o.container, bridge)}"
                           for o in outside)
        self.container = client.containers.run(
            REQUIRED_IMAGES[0], name=f"lanai-e2e-dns-outside-{uuid.uuid4().hex[:6]}",
            entrypoint=["python3", "/usr/lib/ollama-double/dns.py"],
            environment={"DNS_RECORDS": records}, detach=True, labels={LABEL: "dns"},
            restart_policy={"Name": "always"})
        wait_for(lambda: b"listening" in self.container.logs(), 60, "the servers' DNS")
        self.address = _bridge_address(self.container, bridge)

    def stop(self) -> None:
        with suppress(docker.errors.NotFound):
            self.container.remove(force=True)


def _bridge_address(container: Any, bridge: Any) -> str:
    """The container's address on the default bridge, joining it first if it is not on it."""
    container.reload()
    if "bridge" not in container.attrs["NetworkSettings"]["Networks"]:
        bridge.connect(container)
        container.reload()
    return container.attrs["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]


def use_outside_dns(server: TestServer, address: str) -> None:
    """Write /etc/docker/daemon.json with `{"dns": [address]}` in the server (merged into one
    that is there), before its Docker is installed or started."""
    current = server.exec("sh", "-c", "cat /etc/docker/daemon.json 2>/dev/null || true",
                          timeout=60).stdout.strip()
    config = {**(json.loads(current) if current else {}), "dns": [address]}
    server.exec("sh", "-ec", "install -d -m 0755 /etc/docker; "
                "cat > /etc/docker/daemon.json; chmod 0644 /etc/docker/daemon.json",
                input=json.dumps(config, indent=2) + "\n", check=True, timeout=60)


def bootstrap(server: TestServer, *args: str, target: str | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`./bootstrap.sh HOST --ssh-config ... --yes ARGS` from this machine, as a user runs it;
    the result carries `seconds`, how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), target or server.host, "--ssh-config",
         str(server.ssh_config_path), "--yes", *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return result


MINI_IMAGES = ("lanai-test/debian:bookworm", "ollama/ollama:0.24.0")


def mini_seed_and_images(root: Path) -> tuple[Path, Path]:
    """The small test stack as a seed for a server (project lanai, web on port 3000,
    which the server publishes as `web_port`) and a `docker save` archive of its images
    for --images (Docker Hub cannot be reached from here)."""
    seed = root / "state"
    shutil.copytree(MINI_STATE, seed)
    for name, old, new in (("lanai.yaml", "PROJECT", "lanai"),
                           ("compose.yaml", '"127.0.0.1:18000:8000"', f'"{WEB_PORT_INSIDE}:8000"')):
        path = seed / name
        path.write_text(path.read_text().replace(old, new))
    images = root / "images.tar"
    subprocess.run(["docker", "save", "-o", str(images), *MINI_IMAGES], check=True,
                   timeout=300)
    return seed, images


def example_images() -> list[str]:
    """The images desired-state/compose.yaml deploys as it is (Open WebUI, Ollama, Caddy):
    not those of services under a profile, which lanai.yaml leaves off."""
    compose = yaml.safe_load((EXAMPLE_STATE / "compose.yaml").read_text())
    return sorted({spec["image"] for spec in compose["services"].values()
                   if not spec.get("profiles")})


def save_images(images: list[str], archive: Path) -> float:
    """`docker save -o archive images...`, what a user with the images on a laptop runs for
    `bootstrap.sh --images` (one archive: the images' shared layers are in it once).
    Returns the seconds it took."""
    started = time.monotonic()
    subprocess.run(["docker", "save", "-o", str(archive), *images], check=True,
                   capture_output=True, timeout=1800)
    return time.monotonic() - started
