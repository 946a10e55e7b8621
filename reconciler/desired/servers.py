"""Several servers from one state repo: `mode`, `servers` and `swarm` in lanai.yaml,
and where each model of models.yaml lives (`place`).

One box (mode: compose, the default) needs none of this. In swarm mode the servers
form a Docker Swarm: the manager runs lanai's daemon, Open WebUI and the proxy; every
server with Ollama runs its own Ollama, holding the models placed on it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from reconciler.core.sizes import human_bytes, parse_size

# A DNS label short enough that `ollama-<name>` is still one (63 characters).
SERVER_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
RESERVED_LABELS = "io.lanai."
LABEL_REF = "label:"

# VRAM of the consumer and data-centre cards people name; anything else: write a size.
GPU_CLASSES: dict[str, int] = {
    "rtx-2060": 6 * 1024**3, "rtx-2070": 8 * 1024**3, "rtx-2080": 8 * 1024**3,
    "rtx-2080-ti": 11 * 1024**3, "rtx-3060": 12 * 1024**3, "rtx-3060-ti": 8 * 1024**3,
    "rtx-3070": 8 * 1024**3, "rtx-3070-ti": 8 * 1024**3, "rtx-3080": 10 * 1024**3,
    "rtx-3080-12gb": 12 * 1024**3, "rtx-3080-ti": 12 * 1024**3, "rtx-3090": 24 * 1024**3,
    "rtx-3090-ti": 24 * 1024**3, "rtx-4060": 8 * 1024**3, "rtx-4060-ti": 8 * 1024**3,
    "rtx-4060-ti-16gb": 16 * 1024**3, "rtx-4070": 12 * 1024**3, "rtx-4070-super": 12 * 1024**3,
    "rtx-4070-ti": 12 * 1024**3, "rtx-4070-ti-super": 16 * 1024**3,
    "rtx-4080": 16 * 1024**3, "rtx-4080-super": 16 * 1024**3, "rtx-4090": 24 * 1024**3,
    "rtx-5060-ti": 16 * 1024**3, "rtx-5070": 12 * 1024**3, "rtx-5070-ti": 16 * 1024**3,
    "rtx-5080": 16 * 1024**3, "rtx-5090": 32 * 1024**3, "rtx-a4000": 16 * 1024**3,
    "rtx-a5000": 24 * 1024**3, "rtx-a6000": 48 * 1024**3, "l4": 24 * 1024**3,
    "l40s": 48 * 1024**3, "a100-40gb": 40 * 1024**3, "a100-80gb": 80 * 1024**3,
    "h100": 80 * 1024**3, "h200": 141 * 1024**3,
}


def _gpu(value: Any) -> Any:
    """'auto', 'none', a class from GPU_CLASSES, or a size (bytes)."""
    if value in ("auto", "none") or isinstance(value, int):
        return value
    if isinstance(value, str) and value.lower() in GPU_CLASSES:
        return value.lower()
    try:
        return parse_size(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither a size (e.g. 24GiB), auto, none, nor a GPU lanai "
                         "knows (e.g. rtx-3070, rtx-4090); write its memory, e.g. 8GiB") from None


Gpu = Annotated[int | str, BeforeValidator(_gpu)]


class Server(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The server's name in lanai: a DNS label (a-z, 0-9, '-'), "
                      "at most 40 characters. Models are placed on it by this name.")
    ssh: str | None = Field(
        None, description="How bootstrap and `lanai --host` reach it: user@host, or a Host "
        "of your ~/.ssh/config.")
    manager: bool = Field(
        False, description="The swarm manager: it runs lanai's daemon, Open WebUI and the "
        "proxy. Exactly one; default: the first server.")
    address: str | None = Field(
        None, description="The address the other servers reach it on (swarm's advertise "
        "address). Default: the address of its route to the manager. Keep it stable (a DHCP "
        "reservation): a server whose address changes must join again.")
    gpu: Gpu = Field(
        "auto", description="Its GPU memory, for the fit check: a size (24GiB), a card "
        "(rtx-3070), none (Ollama on the CPU), or auto (what bootstrap found, per "
        "models.lock).")
    ollama: bool | None = Field(
        None, description="Run an Ollama here. Default: yes unless gpu is none (a CPU-only "
        "manager leaves the models to the GPU servers).")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Node labels, e.g. {size: big}; models.yaml can "
        "place a model on label:size=big. The io.lanai. prefix is lanai's own.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SERVER_NAME.match(value):
            raise ValueError("a server name is a DNS label: lowercase letters, digits and '-', "
                             "at most 40 characters, e.g. box-a")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, label in value.items():
            if key.startswith(RESERVED_LABELS):
                raise ValueError(f"label {key!r}: the {RESERVED_LABELS} prefix is lanai's own")
            if not LABEL_KEY.match(key):
                raise ValueError(f"label {key!r}: use lowercase letters, digits, '.', '_' and "
                                 "'-', e.g. size")
            if not isinstance(label, str) or not label or "\n" in label:
                raise ValueError(f"label {key!r}: the value must be a one-line string")
        return value

    @property
    def runs_ollama(self) -> bool:
        return self.ollama if self.ollama is not None else self.gpu != "none"

    @property
    def vram(self) -> int | None:
        """The GPU memory written in lanai.yaml; None for auto (read models.lock) or none."""
        if isinstance(self.gpu, int):
            return self.gpu
        return GPU_CLASSES.get(str(self.gpu))

    def describe_gpu(self) -> str:
        if isinstance(self.gpu, int):
            return human_bytes(self.gpu)
        if self.gpu in GPU_CLASSES:
            return f"{self.gpu} {human_bytes(GPU_CLASSES[str(self.gpu)])}"
        return str(self.gpu)


class SwarmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    encrypt: bool = Field(
        True, description="Encrypt the overlay networks between servers (IPsec): Ollama has "
        "no authentication, and this traffic crosses your LAN. Needs a kernel with ESP "
        "(CONFIG_INET_ESP); false only where it has none, on a LAN you trust.")
    relay_image: str | None = Field(
        None, description="The image of the small relay on the manager through which lanai's "
        "daemon reaches each Ollama. Default: the https proxy's image (Caddy).")


Mode = Literal["compose", "swarm"]



def manager_of(servers: list[Server]) -> Server | None:
    marked = [s for s in servers if s.manager]
    return marked[0] if marked else (servers[0] if servers else None)


def server_problems(mode: Mode, servers: list[Server]) -> list[tuple[tuple[str | int, ...], str]]:
    """lanai.yaml rules across servers: (key path, message) for each one broken."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if mode == "compose":
        if len(servers) > 1:
            out.append((("servers",), f"{len(servers)} servers need mode: swarm (one box runs "
                        "plain Compose); add mode: swarm, or list one server"))
        return out
    if not servers:
        out.append((("servers",), "mode: swarm needs the servers listed here (name, ssh, and "
                    "which one is the manager)"))
        return out
    seen: dict[str, int] = {}
    for index, server in enumerate(servers):
        if server.name in seen:
            out.append((("servers", index, "name"), f"{server.name!r} is listed twice (also "
                        f"servers[{seen[server.name]}])"))
        seen.setdefault(server.name, index)
    managers = [i for i, s in enumerate(servers) if s.manager]
    if len(managers) > 1:
        out.append((("servers", managers[1], "manager"), "only one server can be the manager "
                    f"(servers[{managers[0]}] is already); lanai runs one swarm manager"))
    if not any(s.runs_ollama for s in servers):
        out.append((("servers",), "no server runs Ollama (every one has gpu: none or ollama: "
                    "false); set ollama: true on one"))
    return out


def resolve_place(place: list[str], servers: list[Server]) -> tuple[list[str], list[str]]:
    """The Ollama servers a place list names (in lanai.yaml's order), and the entries that
    match no Ollama server (for the error)."""
    chosen: set[str] = set()
    unmatched: list[str] = []
    ollama = [s for s in servers if s.runs_ollama]
    for entry in place:
        if entry.startswith(LABEL_REF):
            key, _, value = entry.removeprefix(LABEL_REF).partition("=")
            hits = [s.name for s in ollama if s.labels.get(key) == value]
        else:
            hits = [s.name for s in ollama if s.name == entry]
        if not hits:
            unmatched.append(entry)
        chosen.update(hits)
    return [s.name for s in servers if s.name in chosen], unmatched


def describe_unmatched(entry: str, servers: list[Server]) -> str:
    """Why a place entry matches nothing: an unknown server, one without Ollama, no label."""
    if entry.startswith(LABEL_REF):
        return (f"no server running Ollama has the label {entry.removeprefix(LABEL_REF)!r}; "
                "label one under servers[].labels in lanai.yaml, or fix the entry")
    names = [s.name for s in servers]
    if entry in names:
        return (f"server {entry!r} runs no Ollama (gpu: none or ollama: false in lanai.yaml); "
                "place the model elsewhere or set ollama: true there")
    return (f"{entry!r} is not a server in lanai.yaml (servers: {', '.join(names)}); write a "
            "server name, or label:KEY=VALUE")


def placement(models: list[tuple[str, list[str] | None]], servers: list[Server]
              ) -> dict[str, list[str]]:
    """Server name -> the models placed on it (a model without place: every Ollama server)."""
    out: dict[str, list[str]] = {s.name: [] for s in servers if s.runs_ollama}
    for name, place in models:
        targets = list(out) if place is None else resolve_place(place, servers)[0]
        for target in targets:
            out[target].append(name)
    return out
