"""What a backup of Open WebUI's data costs, and what it costs the family while it runs.

    python -m benchmarks.backups            # table on stdout, progress on stderr
    python -m benchmarks.backups --json
    python -m benchmarks.backups --chats 20000 --uploads-mib 200

Builds an Open WebUI-shaped data directory in a temp dir (webui.db in WAL mode with a
`user` and a `chat` table holding chats of realistic size, uploads/ with files,
vector_db/ with chroma.sqlite3 and segment files, cache/ that is not backed up), then
measures, on this machine:

1. a backup (online SQLite copies, integrity checks, archive, read-back verification:
   reconciler.backup.run.archive_data) against the baseline of copying the same files
   with shutil (what a naive, unsafe file copy of a live database costs);
2. the same backup while a writer inserts a chat every 10 ms: how many inserts it made,
   and its worst insert latency, against the same writer without a backup running.

No Docker needed. Exit status: 0 when it ran, 1 when it could not finish.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from reconciler.backup.run import archive_data
from reconciler.backup.store import Store

ABOUT = {"service": "open-webui", "image": "ghcr.io/open-webui/open-webui:v0.12.4",
         "commit": "benchmark", "project": "bench"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def chat_json(n: int) -> str:
    turns = [{"role": "user" if i % 2 == 0 else "assistant",
              "content": f"message {i} of chat {n}: " + "lorem ipsum dolor sit amet " * 12}
             for i in range(8)]
    return json.dumps({"title": f"chat {n}", "messages": turns})


def build(root: Path, chats: int, uploads_mib: int) -> Path:
    data = root / "data"
    (data / "uploads").mkdir(parents=True)
    (data / "vector_db" / "seg").mkdir(parents=True)
    (data / "cache" / "embedding").mkdir(parents=True)
    db = sqlite3.connect(data / "webui.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute('CREATE TABLE "user" (id TEXT PRIMARY KEY, email TEXT)')
    db.execute("CREATE TABLE chat (id TEXT PRIMARY KEY, user_id TEXT, chat TEXT)")
    db.executemany('INSERT INTO "user" VALUES (?, ?)',
                   [(f"u{i}", f"u{i}@example.invalid") for i in range(5)])
    db.executemany("INSERT INTO chat VALUES (?, ?, ?)",
                   ((f"c{i}", f"u{i % 5}", chat_json(i)) for i in range(chats)))
    db.commit()
    db.close()
    chroma = sqlite3.connect(data / "vector_db" / "chroma.sqlite3")
    chroma.execute("CREATE TABLE embeddings (id INTEGER PRIMARY KEY, doc TEXT)")
    chroma.executemany("INSERT INTO embeddings (doc) VALUES (?)",
                       (("chunk " * 50,) for _ in range(2000)))
    chroma.commit()
    chroma.close()
    (data / "vector_db" / "seg" / "data_level0.bin").write_bytes(os.urandom(4 * 2**20))
    per_file = 2 * 2**20
    for i in range(max(1, uploads_mib * 2**20 // per_file)):
        # Half random (PDF images do not compress), half text (they do).
        (data / "uploads" / f"doc{i}.pdf").write_bytes(os.urandom(per_file // 2)
                                                       + b"text " * (per_file // 10))
    (data / "cache" / "embedding" / "model.bin").write_bytes(os.urandom(8 * 2**20))
    return data


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def file_copy(data: Path, target: Path) -> float:
    started = time.monotonic()
    for name in ("webui.db", "webui.db-wal", "uploads", "vector_db"):
        source = data / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        elif source.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return time.monotonic() - started


def backup(data: Path, store: Store) -> tuple[float, Any]:
    started = time.monotonic()
    taken = archive_data(store, data, kind="manual", reason="benchmark",
                         progress=lambda _m: None, about=ABOUT)
    return time.monotonic() - started, taken


class Writer:
    """A chat inserted every 10 ms, as a busy family would (far more, in fact)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        con = sqlite3.connect(self.data / "webui.db", timeout=30)
        n = 0
        while not self.stop.is_set():
            started = time.monotonic()
            con.execute("INSERT INTO chat VALUES (?, 'u0', ?)",
                        (f"w{id(self)}-{n}", chat_json(n)))
            con.commit()
            self.latencies.append(time.monotonic() - started)
            n += 1
            self.stop.wait(0.01)
        con.close()

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def run(chats: int, uploads_mib: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lanai-bench-backups-") as tmp:
        root = Path(tmp)
        say(f"building a data directory: {chats} chats, {uploads_mib} MiB of uploads")
        data = build(root, chats, uploads_mib)
        covered = size_of(data) - size_of(data / "cache")
        copies, backups, sizes = [], [], []
        for i in range(runs):
            copies.append(file_copy(data, root / f"copy{i}"))
            shutil.rmtree(root / f"copy{i}")
            seconds, taken = backup(data, Store(root / "backups"))
            backups.append(seconds)
            sizes.append(taken.size)
            Store(root / "backups").delete(taken.id)
            say(f"run {i + 1}/{runs}: file copy {copies[-1]:.2f}s, backup {seconds:.2f}s")
        window = statistics.median(backups)
        say(f"a writer alone for {window:.1f}s, then the same writer during a backup")
        with Writer(data) as alone:
            time.sleep(window)  # the same length of time as a backup, for a fair count
        with Writer(data) as during:
            busy_s, _ = backup(data, Store(root / "backups"))
        return {
            "data_bytes": covered, "archive_bytes": statistics.median(sizes),
            "file_copy_s": statistics.median(copies), "backup_s": window,
            "backup_vs_file_copy": window / statistics.median(copies),
            "mib_per_s": covered / 2**20 / window,
            "writer_alone": {"inserts": len(alone.latencies),
                             "max_ms": max(alone.latencies) * 1000,
                             "p50_ms": statistics.median(alone.latencies) * 1000},
            "writer_during_backup": {"inserts": len(during.latencies), "seconds": busy_s,
                                     "max_ms": max(during.latencies) * 1000,
                                     "p50_ms": statistics.median(during.latencies) * 1000},
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=5000)
    parser.add_argument("--uploads-mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        result = run(args.chats, args.uploads_mib, args.runs)
    except (OSError, sqlite3.Error) as exc:
        say(f"could not finish: {exc}")
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    alone, during = result["writer_alone"], result["writer_during_backup"]
    print(f"data backed up        {result['data_bytes'] / 2**20:8.1f} MiB "
          f"(archive {result['archive_bytes'] / 2**20:.1f} MiB)")
    print(f"file copy (baseline)  {result['file_copy_s']:8.2f} s")
    print(f"verified backup       {result['backup_s']:8.2f} s   "
          f"{result['backup_vs_file_copy']:.1f}x the file copy, "
          f"{result['mib_per_s']:.0f} MiB/s")
    print(f"writer alone          {alone['inserts']:8d} inserts, p50 {alone['p50_ms']:.1f} ms, "
          f"max {alone['max_ms']:.1f} ms")
    print(f"writer during backup  {during['inserts']:8d} inserts, p50 {during['p50_ms']:.1f} "
          f"ms, max {during['max_ms']:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
