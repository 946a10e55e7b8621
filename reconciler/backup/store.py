"""The backups kept on the server, and which image Open WebUI's data belongs to.

Pure decisions (which backup a rollback needs, which scheduled backups go)
over two small records: the archives in <home>/backups (each with a JSON
sidecar, for listing without opening archives) and <home>/webui-data.json, the
images that have run on the data, in order. Open WebUI migrates its database
one way, so an image that ran on the data before the current one cannot be
started on it again: that is a rollback across a migration.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.core.errors import BackupError
from reconciler.core.files import write_json_atomic
from reconciler.server.record import now_iso, parse_iso

ARCHIVE = ".tar.gz"
SIDECAR = ".json"
KINDS = ("upgrade", "scheduled", "manual", "pre-restore")
VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Backup:
    id: str
    kind: str
    created: str
    service: str
    image: str | None
    commit: str | None
    size: int
    counts: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_sidecar(cls, data: dict[str, Any]) -> Backup:
        return cls(id=data["id"], kind=data.get("kind", "manual"), created=data["created"],
                   service=data.get("service", ""), image=data.get("image"),
                   commit=data.get("commit"), size=int(data.get("size", 0)),
                   counts=dict(data.get("counts") or {}), reason=data.get("reason", ""),
                   manifest=data)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "created": self.created,
                "service": self.service, "image": self.image, "commit": self.commit,
                "size": self.size, "counts": self.counts, "reason": self.reason}


class Store:
    """<home>/backups: ID.tar.gz (root-only) and ID.json beside it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)
        return self.root

    def archive(self, backup_id: str) -> Path:
        return self.root / f"{backup_id}{ARCHIVE}"

    def new_id(self, kind: str, when: datetime) -> str:
        base = f"{when:%Y%m%d-%H%M%S}-{kind}"
        candidate, n = base, 1
        while self.archive(candidate).exists() or (self.root / f"{candidate}{SIDECAR}").exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def save(self, backup: Backup) -> None:
        write_json_atomic(self.root / f"{backup.id}{SIDECAR}", {**backup.manifest,
                                                                  **backup.to_json()})

    def list(self) -> list[Backup]:
        """Newest first; an archive whose sidecar is missing or unreadable is skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for sidecar in self.root.glob(f"*{SIDECAR}"):
            if not self.archive(sidecar.name[:-len(SIDECAR)]).is_file():
                continue
            try:
                found.append(Backup.from_sidecar(json.loads(sidecar.read_text())))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(found, key=lambda b: (b.created, b.id), reverse=True)

    def get(self, wanted: str) -> Backup:
        """A backup by ID or unique ID prefix."""
        backups = self.list()
        exact = [b for b in backups if b.id == wanted]
        matches = exact or [b for b in backups if b.id.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise BackupError(f"there is no backup {wanted!r} on this server; `lanai backups` "
                              "lists them.")
        raise BackupError(f"{wanted!r} matches {len(matches)} backups "
                          f"({', '.join(b.id for b in matches[:4])}); give more of the ID.")

    def delete(self, backup_id: str) -> None:
        self.archive(backup_id).unlink(missing_ok=True)
        (self.root / f"{backup_id}{SIDECAR}").unlink(missing_ok=True)

    def clean_partials(self) -> None:
        """Leftovers of a backup that was interrupted (killed, disk full)."""
        if not self.root.is_dir():
            return
        for path in self.root.glob(".*"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for path in self.root.glob(f"*{ARCHIVE}.partial"):
            path.unlink(missing_ok=True)


def to_prune(backups: list[Backup], keep: int) -> list[Backup]:
    """Scheduled backups beyond the newest `keep`; other kinds are kept until deleted."""
    scheduled = [b for b in sorted(backups, key=lambda b: (b.created, b.id), reverse=True)
                 if b.kind == "scheduled"]
    return scheduled[keep:]


# -- which image the data belongs to ------------------------------------------------------


class Lineage:
    """The images that have run on the data, oldest first (<home>/webui-data.json)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return list(data.get("images") or [])

    def current(self) -> str | None:
        images = self.load()
        return images[-1]["image"] if images else None

    def record(self, image: str, *, commit: str | None, how: str) -> bool:
        """Note that `image` now runs on the data; False when it already was the last."""
        images = self.load()
        if images and images[-1]["image"] == image:
            return False
        images.append({"image": image, "since": now_iso(), "commit": commit, "how": how})
        write_json_atomic(self.path, {"images": images[-50:]})
        return True


    def rewind(self, created: str, image: str, *, commit: str | None, how: str) -> None:
        """The data is back as a backup taken at `created` had it: its history is the
        history up to then (so the image after it is an upgrade again, not a rollback)."""
        images = [e for e in self.load() if parse_iso(e["since"]) <= parse_iso(created)]
        if not images or images[-1]["image"] != image:
            images.append({"image": image, "since": now_iso(), "commit": commit, "how": how})
        write_json_atomic(self.path, {"images": images[-50:]})


def _version(image: str) -> tuple[int, ...] | None:
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    match = VERSION.match(tag)
    return tuple(int(g or 0) for g in match.groups()) if match else None


def is_rollback(lineage: list[dict[str, Any]], running: str, desired: str) -> bool:
    """Whether `desired` would run on data that a newer image has migrated.

    `desired` ran on this data before `running` did; or, for images never seen
    here, the version in its tag is lower than the running one's."""
    if desired == running:
        return False
    seen = [entry["image"] for entry in lineage]
    if running in seen and desired in seen:
        last = {image: index for index, image in enumerate(seen)}
        return last[desired] < last[running]
    old, new = _version(desired), _version(running)
    return old is not None and new is not None and old < new


def backup_for(backups: list[Backup], lineage: list[dict[str, Any]], image: str,
               service: str) -> Backup | None:
    """The newest backup of data as `image` left it, taken before the data moved on."""
    seen = [entry["image"] for entry in lineage]
    moved_on: str | None = None
    if image in seen:
        after = max(i for i, name in enumerate(seen) if name == image) + 1
        if after < len(lineage):
            moved_on = lineage[after].get("since")
    for backup in backups:  # newest first
        if backup.image != image or backup.service != service:
            continue
        if moved_on is None or parse_iso(backup.created) <= parse_iso(moved_on):
            return backup
    return None
