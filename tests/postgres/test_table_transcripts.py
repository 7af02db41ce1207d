"""Transcripts in PostgreSQL: gap-free seq under concurrent appenders, idempotent appends."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import psycopg
import pytest

import sessionstore
from sessionstore.errors import InvalidEntryError
from sessionstore.index.postgres import PostgresIndex
from sessionstore.transcripts.postgres import PostgresTranscript

WRITERS = 4
APPENDS = 50
SID = "0f6c4a52-5a4e-4d36-9d0b-3b9b3e3c8a11"


def _index(state_dir: Path) -> PostgresIndex:
    store = sessionstore.open_store(state_dir=state_dir, store_type="postgres")
    index = store.index
    assert isinstance(index, PostgresIndex)
    return index


def _appender(state_dir: str, env: dict[str, str], worker: int) -> None:
    os.environ.update(env)
    index = _index(Path(state_dir))
    t = PostgresTranscript(index, SID)
    for i in range(APPENDS):
        t.append({"role": "user", "content": f"w{worker}-{i}"}, idempotency_key=f"w{worker}-{i}")
    index.close()


def test_4_processes_appending_get_gap_free_unique_seqs(
    pg_env: str, pg_schema: str, state_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k.startswith("SESSIONSTORE_PG_")}
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_appender, args=(str(state_dir), env, w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * WRITERS
    with psycopg.connect(pg_env) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                f"SELECT seq FROM {pg_schema}.transcripts WHERE session_id = %s ORDER BY seq",
                (SID,),
            )
        ]
    assert seqs == list(range(WRITERS * APPENDS + 1))  # the header is seq 0
    index = _index(state_dir)
    messages = PostgresTranscript(index, SID).messages()
    assert [m["__openclaw"]["seq"] for m in messages] == list(range(1, WRITERS * APPENDS + 1))
    contents = sorted(m["content"] for m in messages)
    assert contents == sorted(f"w{w}-{i}" for w in range(WRITERS) for i in range(APPENDS))
    # every line's parent is the line before it: one chain, whatever the interleaving
    entries = PostgresTranscript(index, SID).entries()
    assert entries[0]["type"] == "session"
    assert [e["parentId"] for e in entries[2:]] == [e["id"] for e in entries[1:-1]]
    index.close()


def test_a_retried_append_with_the_same_key_writes_once(pg_env: str, state_dir: Path) -> None:
    index = _index(state_dir)
    t = PostgresTranscript(index, SID)
    first = t.append({"role": "user", "content": "hi"}, idempotency_key="k1")
    again = t.append({"role": "user", "content": "hi"}, idempotency_key="k1")
    other = t.append({"role": "assistant", "content": "hello"})
    assert first == again != other
    assert t.message_count() == 2
    assert [m["content"] for m in t.messages()] == ["hi", "hello"]
    assert [m["content"] for m in t.tail(1)] == ["hello"]
    index.close()


def test_lines_keep_nul_and_non_json_is_refused(pg_env: str, state_dir: Path) -> None:
    index = _index(state_dir)
    t = PostgresTranscript(index, SID)
    t.append({"role": "user", "content": "a\x00b"})
    assert t.messages()[0]["content"] == "a\x00b"
    with pytest.raises(InvalidEntryError):
        t.append({"role": "user", "content": {1, 2}})
    assert t.message_count() == 1
    index.close()
