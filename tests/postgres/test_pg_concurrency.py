"""Multi-host correctness on a real server: exact counters, lost connections, conflicts."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sessionstore
from sessionstore import SessionStore
from sessionstore.errors import (
    ConfigError,
    ConnectionLostError,
    RetryableError,
    WriteConflictError,
)
from sessionstore.index import postgres as pg_backend

PROCESSES = 8
UPDATES = 200
SESSIONS = 10


@pytest.fixture
def pg(pg_env: str, state_dir: Path) -> Iterator[SessionStore]:
    s = sessionstore.open_store(state_dir=state_dir, store_type="postgres")
    try:
        yield s
    finally:
        s.close()


def _bump(state_dir: str, schema: str, dsn: str, worker: int) -> None:
    os.environ["SESSIONSTORE_PG_SCHEMA"] = schema
    os.environ["SESSIONSTORE_PG_DSN"] = dsn
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as s:
        for i in range(UPDATES):
            key = f"agent:main:s{(i + worker) % SESSIONS}"
            s.update(key, lambda e: {"n": (e or {}).get("n", 0) + 1, "last": worker})


def test_8_processes_x_200_updates_on_10_sessions_are_exact(
    pg: SessionStore, state_dir: Path, pg_schema: str, pg_env: str
) -> None:
    for i in range(SESSIONS):
        pg.put(f"agent:main:s{i}", {"sessionId": f"sid{i}", "n": 0})
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_bump, args=(str(state_dir), pg_schema, pg_env, w))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    per_session = PROCESSES * UPDATES // SESSIONS
    assert {pg.get(f"agent:main:s{i}")["n"] for i in range(SESSIONS)} == {per_session}  # type: ignore[index]


def _terminate_store_backends(dsn: str, index: Any) -> int:
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (index.application_name(),),
        ).fetchall()
    return len(rows)


def test_terminated_backends_mid_transaction_give_a_retryable_error_and_no_partial_write(
    pg: SessionStore, pg_env: str
) -> None:
    pg.put("agent:main:a", {"sessionId": "a", "n": 0})
    pg.put("agent:main:b", {"sessionId": "b", "n": 0})
    done = 0
    lost = 0
    for i in range(50):
        kill = i % 2 == 1

        def both(entries: dict[str, Any], kill: bool = kill) -> None:
            entries["agent:main:a"]["n"] += 1
            entries["agent:main:b"]["n"] += 1
            if kill:
                assert _terminate_store_backends(pg_env, pg.index) >= 1

        try:
            pg.mutate(both)
            done += 1
        except ConnectionLostError as exc:
            assert isinstance(exc, RetryableError) and exc.retryable
            assert "lost" in str(exc)
            lost += 1
        # the next call works, and both keys moved together or not at all
        a, b = pg.get("agent:main:a"), pg.get("agent:main:b")
        assert a is not None and b is not None
        assert a["n"] == b["n"] == done
    assert (done, lost) == (25, 25)


def test_a_serialization_failure_is_retried_then_succeeds(pg: SessionStore) -> None:
    calls = []

    def patch(entry: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            # what the server raises in a transaction that lost a serialization race
            raise psycopg.errors.SerializationFailure("could not serialize access")
        return {"x": len(calls)}

    out = pg.update("agent:main:c", patch, create=True)
    assert out is not None and out["x"] == 3
    assert len(calls) == 3


def test_conflicts_that_never_end_surface_as_a_typed_retryable_error(pg: SessionStore) -> None:
    calls = []

    def patch(entry: Any) -> dict[str, Any]:
        calls.append(1)
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    with pytest.raises(WriteConflictError) as caught:
        pg.update("agent:main:c", patch, create=True)
    assert caught.value.retryable
    assert len(calls) == pg_backend.ATTEMPTS
    assert pg.get("agent:main:c") is None
    pg.put("agent:main:c", {"sessionId": "c"})  # the store still works
    assert pg.count() == 1


def test_the_password_never_shows(pg_schema: str, state_dir: Path, pg_env: str) -> None:
    secret = "sekret-Pa55-word"
    info = psycopg.conninfo.conninfo_to_dict(pg_env)
    dsn = psycopg.conninfo.make_conninfo(**{**info, "password": secret})
    os.environ["SESSIONSTORE_PG_SCHEMA"] = pg_schema
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres", dsn=dsn) as s:
        s.put("agent:main:a", {"sessionId": "a"})  # trust auth: the password is not checked
        shown = repr(s) + repr(s.index) + str(s.info().to_dict())
        assert secret not in shown and "***" in shown
    bad = psycopg.conninfo.make_conninfo(**{**info, "password": secret, "port": "1"})
    with sessionstore.open_store(
        state_dir=state_dir, store_type="postgres", dsn=bad, lock_timeout_ms=500
    ) as s:
        with pytest.raises(ConnectionLostError) as caught:
            s.put("agent:main:a", {"sessionId": "a"})
        assert secret not in str(caught.value) and secret not in repr(caught.value)


def test_without_the_extra_choosing_postgres_names_it(
    monkeypatch: pytest.MonkeyPatch, state_dir: Path, pg_env: str
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError, match=r"sessionstore\[postgres\]"):
        sessionstore.open_store(state_dir=state_dir, store_type="postgres")


def test_postgres_without_a_dsn_is_a_config_error(state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="SESSIONSTORE_PG_DSN"):
        sessionstore.open_store(state_dir=state_dir, store_type="postgres")


# --- real conflicts ------------------------------------------------------------------------------


class _Blocker:
    """A second, raw connection that makes the store's ``mutate`` deadlock on demand.

    Asked to ``block()``, it locks the row of ``key`` (an UPDATE) and then waits for the
    agent's advisory lock, which the store's transaction holds: when that transaction then
    updates the row, each waits for the other. The raw connection's ``deadlock_timeout``
    is long, so the server breaks the cycle in the store's transaction, always.
    """

    def __init__(self, dsn: str, index: Any, key: str, *, commit: bool) -> None:
        self._conn = psycopg.connect(dsn)
        self._conn.execute("SET deadlock_timeout = '10min'")
        self._conn.commit()
        self._admin = psycopg.connect(dsn, autocommit=True)
        self._index = index
        self._key = key
        self._commit = commit
        self.rounds = 0
        self._asked = 0
        self._go = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            self._conn.execute(
                f"UPDATE {self._index.schema}.sessions SET updated_at = updated_at"
                " WHERE agent_id = %s AND session_key = %s",
                (self._index.agent_id, self._key),
            )
            # Granted once the store's transaction is rolled back (the deadlock's victim).
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._index._agent_lock,))
            self.rounds += 1  # before the lock is released: the store's retry sees it
            if self._commit:
                self._conn.commit()
            else:
                self._conn.rollback()
            self._done.release()

    def block(self) -> None:
        """Return once the raw connection holds the row and waits for the agent's lock."""
        self._asked += 1
        self._go.release()
        pid = self._conn.info.backend_pid
        for _ in range(100_000):  # a condition polled, not a delay: ends when it holds
            waiting = self._admin.execute(
                "SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted",
                (pid,),
            ).fetchone()
            if waiting:
                return
            time.sleep(0.001)
        raise AssertionError("the raw connection never waited for the agent's lock")

    def close(self) -> None:
        """Wait for the rounds asked for to end (the server aborted the store's side)."""
        for _ in range(self._asked):
            assert self._done.acquire(timeout=120), "a round of the raw connection never ended"
        self._conn.close()
        self._admin.close()


def _bump_both(entries: dict[str, Any]) -> None:
    entries["agent:main:a"]["n"] += 1
    entries["agent:main:b"]["n"] += 1


def _mutate_deadlocked(pg: SessionStore, dsn: str, calls: list[int], *, deadlocks: int) -> None:
    """``mutate`` bumping a and b, its first ``deadlocks`` attempts deadlocked for real.

    Each deadlocked attempt updates a, then waits for b's row (held by the raw connection,
    which waits for the agent's lock this transaction holds) until the server aborts it.
    """
    pg.put("agent:main:a", {"sessionId": "a", "n": 0})
    pg.put("agent:main:b", {"sessionId": "b", "n": 0})
    # The raw side commits when the store will get through afterwards, else rolls back.
    blocker = _Blocker(dsn, pg.index, "agent:main:b", commit=deadlocks < pg_backend.ATTEMPTS)

    def fn(entries: dict[str, Any]) -> None:
        calls.append(1)
        if len(calls) <= deadlocks:
            blocker.block()
        _bump_both(entries)

    try:
        pg.mutate(fn)
    finally:
        blocker.close()
        assert blocker.rounds == min(len(calls), deadlocks)


def _counts(pg: SessionStore) -> tuple[int, int]:
    a, b = pg.get("agent:main:a"), pg.get("agent:main:b")
    assert a is not None and b is not None
    return a["n"], b["n"]


def test_a_real_deadlock_is_retried_and_the_write_succeeds(pg: SessionStore, pg_env: str) -> None:
    calls: list[int] = []
    _mutate_deadlocked(pg, pg_env, calls, deadlocks=1)
    assert len(calls) == 2  # the first attempt deadlocked, the retry ran alone
    assert _counts(pg) == (1, 1)


def test_a_deadlock_past_the_retry_budget_is_a_write_conflict_and_writes_nothing(
    pg: SessionStore, pg_env: str
) -> None:
    calls: list[int] = []
    with pytest.raises(WriteConflictError) as caught:
        _mutate_deadlocked(pg, pg_env, calls, deadlocks=pg_backend.ATTEMPTS)
    assert caught.value.retryable and "deadlock" in str(caught.value)
    assert len(calls) == pg_backend.ATTEMPTS
    assert _counts(pg) == (0, 0)  # a was updated in every attempt, and rolled back with b
    pg.mutate(_bump_both)  # the store still works
    assert _counts(pg) == (1, 1)
