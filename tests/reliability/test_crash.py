"""kill -9 a writer at random moments: no acknowledged write is lost, every file stays usable.

A child process opens the store and loops over ``put``/``update`` of a few dozen keys,
printing ``<key> <value>`` (one ``os.write`` per line, so a line is never torn) after each
write returns. The parent SIGKILLs it 5-150 ms after it reports ready, then reopens the
store and checks: it opens; SQLite's integrity check passes (or ``sessions.json`` parses);
every acknowledged value is there (or a later value of the same key); no temp file is left;
and the next write is not blocked by the lock the dead child may have held. One state dir
per backend is reused across the runs, so each run starts from what the previous kill left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import sessionstore
from hermetic import clean_env
from sessionstore import SessionStore

RUNS = 50
KEYS = 24
RUN_STRIDE = 1_000_000  # value = run * RUN_STRIDE + i: later writes always have larger values

CHILD = textwrap.dedent(
    """
    import os, random, sys
    import sessionstore

    state_dir, backend, run, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    keys, stride = int(sys.argv[5]), int(sys.argv[6])
    store = sessionstore.open_store(state_dir=state_dir, store_type=backend)
    rnd = random.Random(seed)
    pad = "p" * 2000
    os.write(1, b"ready\\n")
    i = 0
    while True:
        key = f"agent:main:crash:k{rnd.randrange(keys):02d}"
        value = run * stride + i
        op = i % 4
        if op == 0:
            entry = {"sessionId": "s-" + key.replace(":", "-"), "v": value, "run": run, "pad": pad}
            if i % 8 == 0:
                entry["skillsSnapshot"] = {"prompt": pad, "version": value}
            store.put(key, entry)
        elif op == 1:
            store.update(key, {"v": value, "run": run}, create=True)
        elif op == 2:
            store.update(
                key,
                lambda e, v=value: {"v": v, "run": run, "prev": e.get("v") if e else None},
                create=True,
            )
        else:
            store.update(key, {"v": value, "run": run, "label": f"r{run}"}, create=True)
        os.write(1, f"{key} {value}\\n".encode())
        i += 1
    """
)


def _open(state_dir: Path, backend: str) -> SessionStore:
    return sessionstore.open_store(state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]


def _store_dir(state_dir: Path) -> Path:
    return state_dir / "agents" / "main" / "sessions"


def _temp_files(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.name.startswith("sessions.json.") and p.name.endswith(".tmp")
    )


def _run_child(
    state_dir: Path, backend: str, run: int, rnd: random.Random
) -> tuple[dict[str, int], int]:
    """One child run; returns the acknowledged value per key and the largest value tried."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(state_dir),
            backend,
            str(run),
            str(rnd.randrange(2**32)),
            str(KEYS),
            str(RUN_STRIDE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
        bufsize=0,  # unbuffered: readline() must not read ahead of what communicate() gets
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if first != b"ready\n":
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"run {run}: child did not start: {first!r} {err.decode()[-2000:]}")
        time.sleep(rnd.uniform(0.005, 0.150))
        os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"run {run}: the child ended on its own ({proc.returncode}): {err.decode()[-2000:]}"
    )
    acked: dict[str, int] = {}
    lines = out.decode().split("\n")
    assert lines[-1] == "", "a torn line: lines are written with one os.write each"
    for line in lines[:-1]:
        key, value = line.split(" ")
        acked[key] = int(value)  # later lines win: values only grow within a run
    return acked, run * RUN_STRIDE + len(lines) - 1


def _check_store(
    state_dir: Path, backend: str, expected: dict[str, int], max_tried: int, run: int
) -> None:
    directory = _store_dir(state_dir)
    if backend == "json":
        path = directory / "sessions.json"
        if path.exists():
            json.loads(path.read_bytes())  # parses as it was left by the kill
    start = time.monotonic()
    with _open(state_dir, backend) as store:
        if backend == "sqlite" and not store.index.exists():  # type: ignore[attr-defined]
            # Killed before its first write committed: nothing may have been acknowledged.
            assert expected == {}, f"run {run}: acknowledged writes but no database"
        elif backend == "sqlite":
            conn = store.index.connection()  # type: ignore[attr-defined]
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            (orphans,) = conn.execute(
                "SELECT count(*) FROM sessions WHERE blob_refs IS NOT NULL AND EXISTS ("
                " SELECT 1 FROM json_each(sessions.blob_refs) j"
                " WHERE j.value NOT IN (SELECT digest FROM blobs))"
            ).fetchone()
            assert orphans == 0, "a row references a blob that is gone"
        else:
            assert _temp_files(directory) == [], f"run {run}: temp files left after reopening"
        everything = store.load_all()
        assert store.count() == len(everything)
        for key, value in expected.items():
            entry = everything.get(key)
            assert entry is not None, f"run {run}: acknowledged key {key} is gone"
            stored = entry["v"]
            assert value <= stored <= max_tried, (
                f"run {run}: {key} holds {stored}, acknowledged {value}"
            )
            assert entry["run"] == stored // RUN_STRIDE
            if "skillsSnapshot" in entry:
                assert entry["skillsSnapshot"]["prompt"] == "p" * 2000
        # the lock of the dead child (if it held one) must not block the next writer
        store.put("agent:main:crash:probe", {"sessionId": "probe", "v": run, "run": 0})
        assert store.get("agent:main:crash:probe")["v"] == run  # type: ignore[index]
    assert time.monotonic() - start < 5.0, f"run {run}: reopening and writing took too long"
    if backend == "json":
        assert not (directory / "sessions.json.lock").exists()
        assert _temp_files(directory) == []
        json.loads((directory / "sessions.json").read_bytes())


def test_kill_9_loses_no_acknowledged_write(tmp_path: Path, backend: str) -> None:
    state_dir = tmp_path / f"crash-{backend}"
    state_dir.mkdir()
    rnd = random.Random(f"crash-{backend}-{os.getpid()}")
    expected: dict[str, int] = {}
    total_acked = 0
    stale_locks = 0
    started = time.monotonic()
    for run in range(1, RUNS + 1):
        acked, max_tried = _run_child(state_dir, backend, run, rnd)
        total_acked += len(acked)
        expected.update(acked)
        if (_store_dir(state_dir) / "sessions.json.lock").exists():
            stale_locks += 1
        _check_store(state_dir, backend, expected, max_tried, run)
    elapsed = time.monotonic() - started
    assert len(expected) == KEYS  # every key was acknowledged at least once
    assert total_acked > RUNS  # the kills landed while writes were going on
    if backend == "json":
        # the kill landed while the child held sessions.json.lock at least once, so the
        # stale-lock path (dead owner pid) was exercised
        assert stale_locks > 0
    assert elapsed < 60, f"{RUNS} runs took {elapsed:.1f}s"
