"""The reconcile lock: atomic mkdir, owner pid and boot id, stale locks taken over."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.errors import ExitCode, LockHeld
from reconciler.server import lock as lock_mod
from reconciler.server.lock import OWNER_FILE, Lock


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "lock"


@pytest.fixture
def other_process() -> Iterator[int]:
    """The pid of a live process that is not this one."""
    child = subprocess.Popen(["sleep", "60"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def plant(path: Path, **owner: object) -> dict[str, object]:
    data = {"pid": os.getpid(), "host": socket.gethostname(), "boot_id": lock_mod._boot_id(),
            "purpose": "reconcile", "since": "2024-01-01T00:00:00Z", **owner}
    path.mkdir(parents=True)
    (path / OWNER_FILE).write_text(json.dumps(data))
    return data


def test_acquire_and_release(path: Path) -> None:
    lock = Lock(path, purpose="deploy").acquire()
    owner = lock.owner()
    assert owner is not None
    assert owner["pid"] == os.getpid()
    assert owner["host"] == socket.gethostname()
    assert owner["purpose"] == "deploy"
    assert lock.recovered_from is None
    lock.release()
    assert not path.exists()


def test_context_manager(path: Path) -> None:
    with Lock(path) as lock:
        assert path.is_dir()
        assert isinstance(lock, Lock)
    assert not path.exists()


def test_held_by_a_live_process(path: Path, other_process: int) -> None:
    plant(path, pid=other_process)
    with pytest.raises(LockHeld) as info:
        Lock(path).acquire()
    assert str(info.value) == (
        f"another reconcile is running (pid {other_process} since 2024-01-01T00:00:00Z); wait "
        f"for it to finish (`lanai status`), or remove {path} if that process is gone.")
    assert info.value.exit_code == ExitCode.LOCKED
    assert (path / OWNER_FILE).is_file()  # left alone


def test_second_lock_in_the_same_process_is_refused(path: Path) -> None:
    with Lock(path), pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        Lock(path).acquire()


def test_release_by_another_owner_leaves_the_lock(path: Path, other_process: int) -> None:
    plant(path, pid=other_process)
    Lock(path).release()
    assert (path / OWNER_FILE).is_file()


def test_stale_lock_of_a_dead_process_is_recovered(path: Path) -> None:
    planted = plant(path, pid=dead_pid())
    lock = Lock(path).acquire()
    assert lock.recovered_from == planted
    assert lock.owner()["pid"] == os.getpid()
    lock.release()


def test_lock_from_before_a_reboot_is_recovered(path: Path, other_process: int) -> None:
    planted = plant(path, pid=other_process, boot_id="another-boot")
    lock = Lock(path).acquire()
    assert lock.recovered_from == planted
    assert lock.owner()["boot_id"] == lock_mod._boot_id()


def test_lock_from_another_host_is_recovered(path: Path, other_process: int) -> None:
    planted = plant(path, pid=other_process, host="some-other-host")
    assert Lock(path).acquire().recovered_from == planted


def test_lock_without_a_pid_is_stale(path: Path) -> None:
    plant(path, pid="not-a-number")
    assert Lock(path).acquire().recovered_from is not None


def test_fresh_empty_lock_dir_is_respected(path: Path) -> None:
    path.mkdir(parents=True)  # a creator that has not written its owner file yet
    with pytest.raises(LockHeld, match=r"another reconcile is running \(another process\)"):
        Lock(path).acquire()
    assert path.is_dir()


def test_old_empty_lock_dir_is_stale(path: Path) -> None:
    path.mkdir(parents=True)
    old = time.time() - 60
    os.utime(path, (old, old))
    lock = Lock(path).acquire()
    assert lock.recovered_from == {}
    assert lock.owner()["pid"] == os.getpid()


def test_old_lock_with_a_corrupt_owner_file_is_stale(path: Path) -> None:
    path.mkdir(parents=True)
    (path / OWNER_FILE).write_text("{not json")
    old = time.time() - 60
    os.utime(path, (old, old))
    assert Lock(path).acquire().recovered_from == {}


def _contender(path: str, start, done, wins, rounds: int) -> None:
    """One process: at each round, all start together and try to take the same stale lock."""
    for _ in range(rounds):
        try:
            start.wait()
        except threading.BrokenBarrierError:
            return
        won = False
        try:
            Lock(Path(path)).acquire()
            won = True
        except LockHeld:
            pass
        wins.put(won)
        try:
            done.wait()  # the winner holds the lock until every contender has tried
        except threading.BrokenBarrierError:
            return


def test_processes_that_all_find_a_stale_lock_cannot_all_take_it(path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    contenders, rounds = 6, 25
    start, done = ctx.Barrier(contenders + 1), ctx.Barrier(contenders + 1)
    wins = ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(str(path), start, done, wins, rounds))
             for _ in range(contenders)]
    for proc in procs:
        proc.start()
    try:
        for round_ in range(rounds):
            path.mkdir(parents=True, exist_ok=True)
            (path / OWNER_FILE).write_text(json.dumps({
                "pid": 1, "host": socket.gethostname(), "boot_id": "an-earlier-boot"}))
            start.wait(timeout=60)
            results = [wins.get(timeout=60) for _ in range(contenders)]
            assert results.count(True) == 1, f"round {round_}: {results.count(True)} owners"
            done.wait(timeout=60)
            shutil.rmtree(path)
    finally:
        start.abort()
        done.abort()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert sorted(p.name for p in path.parent.iterdir() if "stale" in p.name) == []
