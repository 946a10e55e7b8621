"""What lanai says about a Compose feature that Swarm lacks: one sentence each.

A note is either a mapping (lanai did something else in the stack file, and says
what) or a refusal (nothing in Swarm can honour it; the caller makes it a
validation error, naming the file and line it knows).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Note:
    service: str | None  # None: a top-level key (networks, configs, secrets)
    key: str  # the key path in compose.yaml, e.g. depends_on, ports, networks.lan
    message: str  # one sentence: what Swarm lacks and what lanai does (or what to change)
    refused: bool = False

    def line(self) -> str:
        where = f"{self.service}.{self.key}" if self.service else self.key
        return f"{where}: {self.message}"


def mapped(service: str | None, key: str, message: str) -> Note:
    return Note(service, key, message)


def refused(service: str | None, key: str, message: str) -> Note:
    return Note(service, key, message, refused=True)
