"""The stack deploy's data hook: back up before an upgrade, refuse or restore rollbacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import docker

from reconciler.backup import run as backup_run
from reconciler.backup.store import Backup, Store, backup_for, is_rollback
from reconciler.core.errors import BackupError, ExitCode, LanaiError
from reconciler.server.record import Outcome, now_iso
from reconciler.server.settings import ServerSettings
from reconciler.stack import facts as facts_mod
from reconciler.stack.render import Rendered


class DataGuard:
    """Implements reconciler.stack.sync.DataHook with this server's backups."""

    def __init__(self, settings: ServerSettings, *, client: Callable[[], docker.DockerClient],
                 progress: Callable[[str], None]) -> None:
        self.settings = settings
        self._client = client  # the engine's, made on first use
        self.progress = progress

    @property
    def client(self) -> docker.DockerClient:
        return self._client()

    def pin(self) -> dict[str, Any] | None:
        return backup_run.load_pin(self.settings)

    def follow(self, head: str | None) -> None:
        """A new commit in git leads again over a restore pinned to another one."""
        pin = self.pin()
        if pin and head is not None and head != pin.get("commit"):
            backup_run.clear_pin(self.settings)

    def decision(self, desired: Rendered, facts: facts_mod.Facts,
                 applied: Rendered | None) -> tuple[str, Any] | None:
        """What a deploy of `desired` does for the data service's data first: ("backup",
        running image), ("restore", backup), ("refuse", message), or None (nothing)."""
        config = desired.config.backups
        spec = desired.services.get(config.service)
        running = facts.by_service().get(config.service) or []
        if spec is None or spec.image is None or not running:
            return None  # no such service, or no data yet: nothing to protect
        current = running[0].image_ref
        if current == spec.image and not database_settings_changed(applied, desired,
                                                                     config.service):
            return None
        lineage = backup_run.lineage(self.settings).load() or [
            {"image": current, "since": now_iso()}]
        if not is_rollback(lineage, current, spec.image):
            return ("backup", current)
        backup = backup_for(Store(self.settings.backups_dir).list(), lineage, spec.image,
                            config.service)
        if backup is None or not config.restore_on_rollback:
            return ("refuse", rollback_refusal(config.service, current, spec.image, backup))
        return ("restore", backup)

    def protect(self, desired: Rendered, facts: facts_mod.Facts, applied: Rendered | None,
                outcome: Outcome) -> Callable[[], None] | None:
        """Before a commit changes the data service's image: back its data up, or, for an
        image the data has outgrown (a rollback across a migration), refuse or restore.
        Returns what restores the backup taken, for an upgrade that then fails."""
        decision = self.decision(desired, facts, applied)
        if decision is None:
            return None
        config = desired.config.backups
        spec_image = desired.services[config.service].image
        history = backup_run.lineage(self.settings)
        if not history.load():  # first upgrade seen: the data so far is the running image's
            running = facts.by_service()[config.service][0].image_ref
            history.record(running, commit=applied.commit if applied else None, how="found")
        kind, detail = decision
        if kind == "refuse":
            raise BackupError(detail, deterministic=True)
        if kind == "restore":
            self.progress(f"{spec_image} is older than the data: restoring backup {detail.id}")
            backup_run.restore(self.settings, self.client, desired, detail,
                               progress=self.progress, start=False)
            outcome.notes.append(f"restored backup {detail.id} ({spec_image}'s data) before "
                                 f"rolling {config.service} back (backups.restore_on_rollback)")
            return None
        taken = backup_run.take(self.settings, self.client, desired, kind="upgrade",
                                reason=f"before {config.service} {detail} -> {spec_image}",
                                progress=self.progress,
                                commit=applied.commit if applied else None)
        if taken is None:
            return None
        outcome.notes.append(f"backup {taken.id} of {config.service}'s data was taken "
                             f"before the upgrade ({taken.counts.get('users', 0)} users, "
                             f"{taken.counts.get('chats', 0)} chats)")
        outcome.backup = taken.id
        return lambda: self.restore_after_failed_upgrade(desired, taken, outcome)

    def restore_after_failed_upgrade(self, desired: Rendered, backup: Backup,
                                     outcome: Outcome) -> None:
        """The new image may have migrated the data before it failed: the rollback
        gets the data from before the upgrade back with the old image."""
        try:
            backup_run.restore(self.settings, self.client, desired, backup,
                               progress=self.progress, start=False)
            outcome.notes.append(f"restored backup {backup.id}: the data is as it was before "
                                 "the failed upgrade")
        except LanaiError as exc:
            outcome.notes.append(f"could not restore backup {backup.id} after the failed "
                                 f"upgrade ({exc.message}); restore it with `lanai restore "
                                 f"{backup.id}`")

    def deployed(self, desired: Rendered) -> None:
        """Which image now runs on the data (the lineage a later rollback is judged by);
        git's commit runs again, so a restore pin is over."""
        config = desired.config.backups
        spec = desired.services.get(config.service)
        if spec is not None and spec.image:
            backup_run.lineage(self.settings).record(spec.image, commit=desired.commit,
                                                     how="deploy")
        backup_run.clear_pin(self.settings)

    def backup(self, applied: Rendered | None, *, kind: str, reason: str) -> Backup | None:
        """A backup of the applied deployment's data now (the caller holds the lock)."""
        if applied is None:
            raise BackupError("nothing has been deployed yet, so there is no data to back "
                              "up; run `lanai reconcile` first.", exit_code=ExitCode.NOT_SET_UP)
        taken = backup_run.take(self.settings, self.client, applied, kind=kind,
                                reason=reason, progress=self.progress)
        if kind == "scheduled":
            for gone in backup_run.prune(self.settings, applied.config.backups.keep):
                self.progress(f"deleted backup {gone} (backups.keep)")
        return taken


def database_settings_changed(applied: Rendered | None, desired: Rendered, service: str) -> bool:
    """Whether a commit changes where or how the service keeps its database."""
    if applied is None or service not in applied.services:
        return False

    def database_env(rendered: Rendered) -> dict[str, Any]:
        env = rendered.services[service].config.get("environment") or {}
        return {k: v for k, v in env.items() if k.startswith(("DATABASE_", "VECTOR_DB"))}

    return database_env(applied) != database_env(desired)


def rollback_refusal(service: str, current: str, wanted: str, backup: Backup | None) -> str:
    base = (f"this commit takes {service} back from {current} to {wanted}, but {current} has "
            f"migrated its database, which {wanted} cannot read safely")
    if backup is None:
        return (f"{base}, and no backup made with {wanted} is on this server; keep {current} "
                f"(revert this change in git), or restore a backup by hand (`lanai backups`).")
    return (f"{base}; restore the backup taken before the upgrade with `lanai restore "
            f"{backup.id}` and then `lanai reconcile --retry`, or set "
            "backups.restore_on_rollback: true in lanai.yaml and push.")
