"""`lanai backup`, `lanai backups`, `lanai restore`: Open WebUI's data, kept safe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from reconciler.backup import run as backup_run
from reconciler.backup.archive import verify_archive
from reconciler.backup.store import Backup, Store
from reconciler.cli import views
from reconciler.cli.base import guarded, json_option, root, server_settings, when_unlocked
from reconciler.cli.remote import remote_argv
from reconciler.core.errors import BackupError, ExitCode, LanaiError
from reconciler.core.sizes import human_bytes
from reconciler.daemon.control import poke
from reconciler.engine.reconcile import Engine
from reconciler.server.record import append_history, now_iso


@root.command()
@click.option("--download", "download", metavar="ID",
              help="Copy backup ID (or `latest`) to this machine instead of taking one. With "
              "--host, over SSH to your laptop.")
@click.option("--to", "target", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="With --download: the directory to write it into.")
@click.option("--cat", "cat", metavar="ID", hidden=True,
              help="Write backup ID to stdout (what --download reads over SSH).")
@click.option("--wait", "wait_s", default=600, show_default=True, metavar="SECONDS",
              help="How long to wait for a reconcile that is running.")
@json_option
@guarded
def backup(download: str | None, target: Path, cat: str | None, wait_s: int,
           as_json: bool) -> None:
    """Back up Open WebUI's data now, or download a backup.

    \b
    A backup holds Open WebUI's SQLite databases (copied with SQLite's online backup,
    so chats keep working meanwhile), uploads/ and vector_db/, and says which commit
    and image wrote them. It is verified when taken (integrity check, users and chats
    counted, archive read back). The reconciler also takes one before every upgrade
    of Open WebUI's image and daily (lanai.yaml: backups).

    \b
    Examples:
      lanai backup                                  take one now
      lanai --host ubuntu@gpu-box backup --download latest --to ~/lanai-backups
    """
    ctx = click.get_current_context()
    remote = (ctx.obj or {}).get("host")
    if cat:
        _cat(cat)
        return
    if download:
        path = _download(download, target, remote, (ctx.obj or {}).get("ssh_config"))
        manifest = verify_archive(path)
        data = {"downloaded": str(path), "id": manifest["id"], "size": path.stat().st_size,
                "counts": manifest.get("counts", {})}
        if as_json:
            click.echo(json.dumps(data, indent=1))
        else:
            views.note(f"{path} ({human_bytes(data['size'])}, verified): backup "
                       f"{manifest['id']} of {manifest.get('image')}")
        return
    settings = server_settings()
    engine = Engine(settings, progress=views.progress if not as_json else lambda _m: None)
    taken = when_unlocked(wait_s, lambda: engine.backup(kind="manual", reason="on demand"))
    if taken is None:
        raise BackupError("there is no Open WebUI container yet, so there is no data to back "
                          "up; deploy first (`lanai reconcile`).", exit_code=ExitCode.NOT_SET_UP)
    if as_json:
        click.echo(json.dumps(taken.to_json(), indent=1))
    else:
        views.note(f"backup {taken.id}: {human_bytes(taken.size)}, "
                   f"{taken.counts.get('users', 0)} user(s), {taken.counts.get('chats', 0)} "
                   f"chat(s), verified; `lanai restore {taken.id}` puts it back")


def _pick(store: Store, wanted: str) -> Backup:
    if wanted == "latest":
        backups = store.list()
        if not backups:
            raise BackupError("there are no backups on this server yet; take one with "
                              "`lanai backup`.")
        return backups[0]
    return store.get(wanted)


def _cat(wanted: str) -> None:
    store = Store(server_settings().backups_dir)
    chosen = _pick(store, wanted)
    with store.archive(chosen.id).open("rb") as handle:
        out = sys.stdout.buffer
        while chunk := handle.read(1 << 20):
            out.write(chunk)
        out.flush()


def _download(wanted: str, target: Path, host: str | None, ssh_config: str | None) -> Path:
    """Copy a backup into `target` (root-only file), from the server over SSH with --host."""
    target.mkdir(parents=True, exist_ok=True)
    if host is None:
        store = Store(server_settings().backups_dir)
        chosen = _pick(store, wanted)
        source_argv = None
        name = chosen.id
    else:
        listed = subprocess.run(remote_argv(host, ssh_config, ["backups", "--json"]),
                                capture_output=True, text=True, check=False)
        try:
            backups = json.loads(listed.stdout)["backups"]
        except (ValueError, KeyError):
            raise BackupError(f"could not list the backups on {host}: "
                              f"{(listed.stderr or listed.stdout).strip()[-300:]}") from None
        matches = backups[:1] if wanted == "latest" else [
            b for b in backups if b["id"] == wanted] or [
            b for b in backups if b["id"].startswith(wanted)]
        if len(matches) != 1:
            raise BackupError(f"{host} has no single backup matching {wanted!r}; `lanai --host "
                              f"{host} backups` lists them.")
        name = matches[0]["id"]
        source_argv = remote_argv(host, ssh_config, ["backup", "--cat", name])
    path = target / f"lanai-backup-{name}.tar.gz"
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            if source_argv is None:
                with Store(server_settings().backups_dir).archive(name).open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        sink.write(chunk)
            else:
                _stream_ssh(source_argv, sink)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def _stream_ssh(argv: list[str], sink: Any) -> None:
    views.progress(f"downloading over SSH ({argv[-2] if len(argv) > 1 else 'server'})")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        done, shown = 0, time.monotonic()
        while chunk := proc.stdout.read(1 << 20):
            sink.write(chunk)
            done += len(chunk)
            if time.monotonic() - shown > 2:
                views.progress(f"{human_bytes(done)} received")
                shown = time.monotonic()
        error = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            why = error[-300:] or f"ssh exited with {proc.returncode}"
            raise BackupError(f"the download failed ({why}); nothing was written.")


@root.command()
@click.option("--delete", "delete", metavar="ID", help="Delete backup ID.")
@json_option
@guarded
def backups(delete: str | None, as_json: bool) -> None:
    """The backups on this server: age, size, kind, and the commit and image they belong to.

    Kinds: upgrade (taken before an image upgrade), scheduled (daily, the newest
    backups.keep are kept), manual (`lanai backup`), pre-restore (what was there before
    a restore). `lanai restore ID` puts one back.
    """
    store = Store(server_settings().backups_dir)
    if delete:
        chosen = store.get(delete)
        store.delete(chosen.id)
        if as_json:
            click.echo(json.dumps({"deleted": chosen.id}))
        else:
            views.note(f"deleted backup {chosen.id}")
        return
    listed = store.list()
    if as_json:
        click.echo(json.dumps({"directory": str(store.root),
                               "backups": [b.to_json() for b in listed]}, indent=1))
        return
    if not listed:
        views.note(f"no backups yet in {store.root}; `lanai backup` takes one")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "AGE", "SIZE", "KIND", "COMMIT", "IMAGE", "USERS", "CHATS"):
        table.add_column(column)
    for item in listed:
        table.add_row(item.id, views.ago(item.created), human_bytes(item.size), item.kind,
                      views.short(item.commit), item.image or "?",
                      str(item.counts.get("users", "?")), str(item.counts.get("chats", "?")))
    views.out.print(table)


@root.command()
@click.argument("backup_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--wait", "wait_s", default=600, show_default=True, metavar="SECONDS",
              help="How long to wait for a reconcile that is running.")
@json_option
@guarded
def restore(backup_id: str, yes: bool, wait_s: int, as_json: bool) -> None:
    """Put Open WebUI's data back as backup ID had it (`latest` for the newest).

    \b
    Checks the backup, backs up what is there now (kind pre-restore, so this can be
    undone), stops Open WebUI, swaps the data, and starts it with the image the
    backup was made with. If that is not the image git names, the server reports
    drift until you revert the upgrade in git or push a new commit (which takes a
    backup and upgrades again).
    """
    settings = server_settings()
    store = Store(settings.backups_dir)
    chosen = _pick(store, backup_id)
    if not yes:
        if not sys.stdin.isatty():
            raise LanaiError("restoring replaces Open WebUI's data; confirm with --yes (no "
                             "terminal to ask on).", exit_code=ExitCode.INVALID)
        click.confirm(f"Replace Open WebUI's data with backup {chosen.id} "
                      f"({chosen.counts.get('users', '?')} users, "
                      f"{chosen.counts.get('chats', '?')} chats, {chosen.image})? What is there "
                      "now is backed up first", abort=True, err=True)
    engine = Engine(settings, progress=views.progress if not as_json else lambda _m: None)
    result = when_unlocked(wait_s, lambda: _restore_locked(engine, chosen))
    reply = poke(settings.socket_path, {"command": "reconcile", "trigger": "restore",
                                        "retry": True})
    if not (reply and reply.get("ok")) and settings.repo:
        outcome = engine.reconcile(trigger="restore", retry=True)
        result["reconcile"] = outcome.status
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    views.note(f"restored backup {chosen.id} ({chosen.counts.get('users', '?')} users, "
               f"{chosen.counts.get('chats', '?')} chats) on {result['image']}; what was there "
               f"before is backup {result['safety_backup']}")
    if result.get("pinned"):
        views.note(f"git names {result['pinned']}: the server reports drift until you revert "
                   "the upgrade in git, or push a commit to redeploy from git")


def _restore_locked(engine: Engine, chosen: Backup) -> dict[str, Any]:
    with engine.lock("restore"):
        state = engine.state()
        applied = engine.applied(state)
        if applied is None:
            raise BackupError("nothing is deployed on this server yet; deploy first "
                              "(`lanai reconcile`), then restore.", exit_code=ExitCode.NOT_SET_UP)
        result = backup_run.restore(engine.settings, engine.client, applied, chosen,
                                    progress=engine.progress,
                                    health_timeout=applied.config.sync.health_timeout)
        append_history(engine.settings.history_file, {
            "at": now_iso(), "trigger": "restore", "status": "restored",
            "commit": state.head_commit, "applied_commit": applied.commit, "actions": [],
            "drift": [], "error": None, "subject": f"restored backup {chosen.id} "
            f"({result['image']}); before it: backup {result['safety_backup']}"})
        spec = applied.services.get(chosen.service)
        result["pinned"] = None
        if spec is not None and spec.image != result["image"]:
            backup_run.save_pin(engine.settings, {
                "service": chosen.service, "image": result["image"], "backup": chosen.id,
                "commit": state.head_commit or applied.commit, "since": now_iso()})
            result["pinned"] = spec.image
        return result
