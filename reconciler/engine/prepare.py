"""Preparing the head for the stack: its branch, whether to load it, and its render."""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import docker

from reconciler.core.errors import DockerError, LanaiError, SourceError
from reconciler.core.files import write_json_atomic
from reconciler.desired import load as desired_mod
from reconciler.desired.lanai_yaml import LanaiConfig
from reconciler.desired.source import GitSource
from reconciler.https.caddyfile import lan_ip
from reconciler.server.record import State, parse_iso
from reconciler.server.secrets import read_secrets, require
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack import tool_versions
from reconciler.stack.render import (
    DESIRED_FILE,
    Rendered,
    discard,
    load_rendered,
    render,
    render_key,
)
from reconciler.stack.sync import Run
from reconciler.swarm import facts as swarm_facts
from reconciler.swarm import render as swarm_render


class Preparer:
    """Turns the state repo's head into a rendered deployment, or says why not."""

    def __init__(self, settings: ServerSettings, *, source: Callable[[], GitSource],
                 client: Callable[[], docker.DockerClient],
                 step: Callable[[str], None]) -> None:
        self.settings = settings
        self._source = source  # the engine's, made on first use
        self._client = client
        self._step = step  # names what the reconcile does now, for `lanai status`
        self._gpu_runtime: bool | None = None
        self._start_interval: bool | None = None
        self._cli_version: tuple[int, int] | None = None
        self._branch_for: tuple[str | None, str] = (None, "main")

    @property
    def source(self) -> GitSource:
        return self._source()

    @property
    def client(self) -> docker.DockerClient:
        return self._client()

    def hash_salt(self) -> bytes:
        """This server's random key for digests of secret values (made once, root-only)."""
        path = self.settings.home / "hash.salt"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            salt = os.urandom(32)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                return path.read_bytes()
            with os.fdopen(fd, "wb") as handle:
                handle.write(salt)
            return salt

    def server_inputs(self) -> str:
        """A digest of what the server adds to a commit (its secrets file), keyed with the
        server's salt: it is kept in state.json, and a plain one could be guessed from."""
        try:
            data = self.settings.secrets_file.read_bytes()
        except OSError:
            data = b""
        return hmac.new(self.hash_salt(), data, hashlib.sha256).hexdigest()[:16]

    def gpu_runtime(self) -> bool:
        """Whether Docker here can hand out NVIDIA GPUs (the NVIDIA Container Toolkit)."""
        if self._gpu_runtime is None:
            try:
                runtimes = self.client.info().get("Runtimes") or {}
            except Exception as exc:
                raise DockerError(f"cannot ask Docker for its runtimes ({exc}); check "
                                  "`docker info`.") from None
            self._gpu_runtime = "nvidia" in runtimes
        return self._gpu_runtime

    def start_interval(self) -> bool:
        """Whether the engine runs healthcheck start_interval (Docker API 1.44, Engine 25)."""
        if self._start_interval is None:
            found = facts_mod.engine_version(self.client)
            self._start_interval = found is not None and tool_versions.has_start_interval(
                found[1])
        return self._start_interval

    def cli_version(self) -> tuple[int, int]:
        """The docker CLI's (major, minor), asked once per process: swarm mode's stack file
        format and `stack deploy` flags follow it."""
        if self._cli_version is None:
            self._cli_version = tool_versions.docker_cli_version()
        return self._cli_version

    def require_manager(self, config: LanaiConfig) -> None:
        """Swarm mode's daemon runs on the manager: only there can it deploy the stack."""
        try:
            swarm = self.client.info().get("Swarm") or {}
        except Exception as exc:
            raise DockerError(f"cannot ask Docker whether this is the swarm manager ({exc}); "
                              "check `docker info`.") from None
        if not swarm.get("ControlAvailable"):
            manager = config.manager
            name = manager.name if manager is not None else "the first server"
            state = swarm.get("LocalNodeState") or "inactive"
            raise DockerError(
                f"lanai.yaml: mode: swarm: this server is not a swarm manager (its swarm state "
                f"is {state}), and lanai's daemon deploys a swarm from the manager, {name}; "
                f"run bootstrap.sh with {name} first to make the swarm, or keep mode: compose "
                "on the branch this server follows.")

    def swarm_inputs(self, config: LanaiConfig) -> tuple[str, set[str]]:
        """What the swarm adds to a render (render key part, GPU servers); ('', set()) in
        compose mode."""
        if config.mode != "swarm":
            return "", set()
        self.require_manager(config)
        gpus = swarm_render.gpu_servers(swarm_facts.gather(self.client, config.project).nodes)
        return swarm_render.render_inputs(gpus, self.cli_version()), gpus

    def branch(self) -> str:
        """The server's branch override, else lanai.yaml's source.branch on main, else main."""
        if self.settings.branch:
            return self.settings.branch
        try:
            head = self.source.branch_head("main")
        except SourceError:
            return "main"
        if self._branch_for[0] != head:  # read lanai.yaml once per commit of main, not per poll
            self._branch_for = (head, self._branch_named_in(head))
        return self._branch_for[1]

    def _branch_named_in(self, commit: str) -> str:
        text = self.source.read_file(commit, desired_mod.SETTINGS_FILE)
        if text:
            try:
                config = LanaiConfig.model_validate(desired_mod.yamlpos.load(text).data or {})
                return config.source.branch
            except Exception:  # an invalid lanai.yaml is reported when that commit loads
                return "main"
        return "main"

    # -- what the stack gets ----------------------------------------------------------

    def choose(self, run: Run) -> None:
        """Set what the stack's sync does with the head: deploy it (run.desired), record
        a commit with the applied files (run.same_files), or check for drift."""
        state, head, applied = run.state, run.head, run.applied
        if state.failure is not None and state.failure.phase \
                and state.failure.commit == state.applied_commit:
            state.failure = None  # lanai failed checking the applied commit: this is the retry
        run.same_files = self.same_files(state, head, applied)
        if head is None or run.same_files or not (
                head != state.applied_commit or applied is None
                or self.inputs_changed(applied)):
            return
        # A failed commit waits for a new commit, a change on the server (a secret
        # added), an explicit retry, or, if the failure was transient, its backoff.
        blocked = (state.failure is not None and state.failure.commit == head
                   and not run.retry and state.failure.inputs == self.server_inputs()
                   and (state.failure.deterministic or not due(state.failure.next_retry)))
        if blocked:
            return
        self._step(f"loading commit {head[:12]}")
        try:
            run.desired = self.prepare(head)
        except LanaiError as exc:
            run.unloadable = exc
        run.mark = run.timer.lap("load", run.mark)
        if run.desired is not None and state.failure and state.failure.key == run.desired.key \
                and state.failure.deterministic and not run.retry:
            run.desired = None  # same inputs failed before: wait for a change

    def prepare(self, commit: str, *, private: Path | None = None) -> Rendered:
        """Load, validate and render `commit` (cached by commit + secret values).

        With `private` (a directory of the caller's own: `lanai plan`), a commit not
        rendered yet is rendered there and nothing under deployments/ is made or removed:
        the daemon may be writing that very directory."""
        deployments = self.settings.deployments_dir
        deployments.mkdir(parents=True, exist_ok=True, mode=0o700)
        scratch = (private or deployments) / f".export-{commit[:12]}-{uuid.uuid4().hex[:6]}"
        self.source.export(commit, scratch)
        try:
            state = desired_mod.load_state(scratch, commit)
            # First: off the manager, nothing else about the server matters.
            swarm, gpus = self.swarm_inputs(state.config)
            secrets = read_secrets(self.settings.secrets_file)
            require(secrets, state.config.secret_names(), self.settings.secrets_file)
            # In swarm mode the stack file reserves GPUs per server (gpus); compose's
            # normalized project must keep the GPU request for it to see.
            gpu_runtime = True if swarm else self.gpu_runtime()
            address = lan_ip() if state.config.https is not None else None
            fast = self.start_interval()
            key = render_key(commit, state.config, secrets, gpu_runtime=gpu_runtime,
                             salt=self.hash_salt(), lan_ip=address, start_interval=fast,
                             status_dir=self.settings.status_dir, swarm=swarm)
            finish = swarm_render.finisher(state, gpus=gpus, cli_version=self.cli_version(),
                                           files=self.settings.home / swarm_render.FILES_DIR) \
                if swarm else None
            final = deployments / key
            cached = load_rendered(final)
            if cached is not None:
                return cached
            if private is not None:
                final = private / key
            discard(final)
            scratch.rename(final)
            state.root = final
            try:
                return render(state, secrets, final, commit, key, gpu_runtime=gpu_runtime,
                              salt=self.hash_salt(), lan_ip=address, start_interval=fast,
                              status_dir=self.settings.status_dir, finish=finish)
            except BaseException:
                discard(final)
                raise
        finally:
            discard(scratch)

    def same_files(self, state: State, head: str | None, applied: Rendered | None) -> bool:
        """A new commit whose tree is the applied commit's (an empty commit, a revert of a
        revert): nothing to load, render or plan, as long as the server's inputs are the
        same and no failure is pending."""
        if head is None or applied is None or state.applied_commit in (None, head) \
                or state.failure is not None:
            return False
        tree = self.source.tree(head)
        return tree is not None and tree == self.source.tree(state.applied_commit) \
            and not self.inputs_changed(applied)

    def inputs_changed(self, applied: Rendered) -> bool:
        """Whether what the server adds to the commit (secret values, its LAN address for the
        https certificates) changed since it was rendered."""
        config = applied.config
        if not config.secret_names() and config.https is None and config.mode != "swarm":
            return False
        try:
            secrets = read_secrets(self.settings.secrets_file)
        except LanaiError:  # unreadable or unsafe: loading the commit says so, in one sentence
            return True
        address = lan_ip() if config.https is not None else None
        try:
            swarm, _ = self.swarm_inputs(config)
        except LanaiError:  # not the manager now: loading the commit says so, in one sentence
            return True
        return render_key(applied.commit, config, secrets,
                          gpu_runtime=True if swarm else self.gpu_runtime(),
                          salt=self.hash_salt(), lan_ip=address,
                          start_interval=self.start_interval(),
                          status_dir=self.settings.status_dir, swarm=swarm) != applied.key

    def list_documents(self, rendered: Rendered) -> Rendered:
        """A deployment rendered by an older lanai has no list of the commit's documents:
        list them from a fresh export of the commit (never from the deployment, which holds
        lanai's own files too)."""
        scratch = self.settings.deployments_dir / f".list-{uuid.uuid4().hex[:12]}"
        try:
            self.source.export(rendered.commit, scratch)
            docs = desired_mod.load_state(scratch, rendered.commit).documents
        finally:
            discard(scratch)
        rendered.documents = {name: [[d.path, d.sha256] for d in found]
                              for name, found in docs.items()}
        write_json_atomic(rendered.directory / DESIRED_FILE, rendered.to_json())
        return rendered


def due(when: str | None) -> bool:
    if not when:
        return True
    return datetime.now(UTC) >= parse_iso(when)
