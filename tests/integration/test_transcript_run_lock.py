"""Transcript writes honour OpenClaw's ``<transcript>.lock`` (issue 16 section 2).

OpenClaw's agent runner holds ``<sessionId>.jsonl.lock`` for a whole run. An append of this
library waits for a live holder (up to the lock timeout, then a typed error), takes over a
dead holder's lock, and holds the lock itself while it writes, so a gateway run and this
library never interleave lines in one file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timezone
from pathlib import Path

import apsw
import pytest

import sessionstore
from sessionstore import LockTimeoutError, SessionStore

# The .jsonl file engine: a postgres store keeps its transcripts in its table (tested in
# tests/postgres/test_table_transcripts.py), so these run on the file-backed stores.
pytestmark = pytest.mark.file_transcripts

KEY = "agent:main:telegram:direct:7"

# An OpenClaw-style holder: the lock file holds {pid, createdAt}, created exclusively.
HOLDER = textwrap.dedent(
    """
    import json, os, sys
    from datetime import datetime, timezone
    lock = sys.argv[1]
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    os.write(fd, json.dumps({"pid": os.getpid(), "createdAt": created}).encode())
    os.close(fd)
    print("holding", flush=True)
    sys.stdin.readline()
    os.unlink(lock)
    """
)


def _open(state: Path, backend: str, timeout_ms: int = 10_000) -> SessionStore:
    return sessionstore.open_store(
        state_dir=state,
        store_type=backend,  # type: ignore[arg-type]
        lock_timeout_ms=timeout_ms,
    )


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_a_live_gateway_run_is_waited_for_then_refused(tmp_path: Path, backend: str) -> None:
    state = tmp_path / "state"
    with _open(state, backend, timeout_ms=300) as store:
        store.put(KEY, {"sessionId": "run-lock"})
        t = store.transcript(KEY)
        t.append({"role": "user", "content": "before"})
        lock = Path(f"{t.path}.lock")
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(lock)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
            before = t.path.read_bytes()
            with pytest.raises(LockTimeoutError, match=r"locked"):
                t.append({"role": "user", "content": "during the run"})
            assert t.path.read_bytes() == before  # nothing interleaved into the run
            assert lock.exists()  # a live owner's lock is never taken
        finally:
            assert holder.stdin is not None
            holder.stdin.write("done\n")
            holder.stdin.flush()
            holder.wait(30)
        t.append({"role": "user", "content": "after"})
        assert [m["content"] for m in t.messages()] == ["before", "after"]
        assert not lock.exists()


@pytest.mark.parametrize("backend", ["json", "sqlite"])
def test_a_dead_gateways_lock_is_taken_over(tmp_path: Path, backend: str) -> None:
    state = tmp_path / "state"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with _open(state, backend, timeout_ms=300) as store:
        store.put(KEY, {"sessionId": "run-lock"})
        t = store.transcript(KEY)
        lock = Path(f"{t.path}.lock")
        created = datetime.now(timezone.utc).isoformat()
        lock.write_text(json.dumps({"pid": int(dead.stdout), "createdAt": created}))
        t.append({"role": "user", "content": "hi"})
        assert [m["content"] for m in t.messages()] == ["hi"]
        assert not lock.exists()


def test_the_lock_is_held_while_an_append_writes(tmp_path: Path) -> None:
    """Forced: the append is held in its index transaction (another writer holds the
    database's write lock); meanwhile the run lock names this process, as OpenClaw reads it."""
    state = tmp_path / "state"
    with _open(state, "sqlite", timeout_ms=30_000) as store:
        store.put(KEY, {"sessionId": "run-lock"})
        t = store.transcript(KEY)
        lock = Path(f"{t.path}.lock")
        blocker = apsw.Connection(str(store.paths.sqlite_path))
        blocker.execute("BEGIN IMMEDIATE")
        done: list[BaseException | str] = []

        def append() -> None:
            try:
                done.append(t.append({"role": "user", "content": "held"}))
            except BaseException as exc:
                done.append(exc)

        worker = threading.Thread(target=append)
        worker.start()
        try:
            for _ in range(3000):  # until the append has taken the run lock and waits
                if lock.exists():
                    break
                worker.join(0.01)
            payload = json.loads(lock.read_text())
            assert payload["pid"] == os.getpid()
            assert isinstance(payload["createdAt"], str)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
            worker.join(30)
        assert done and isinstance(done[0], str), done
        assert not lock.exists()
        assert [m["content"] for m in t.messages()] == ["held"]
