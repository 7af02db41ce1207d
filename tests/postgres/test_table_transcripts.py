"""Transcripts in PostgreSQL: the table engine directly and through ``store.transcript(key)``.

Gap-free seq under concurrent appenders, idempotent appends, the entry's messageCount in
step, archives on delete/reset/compact, and the API of the .jsonl engine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sessionstore
from hermetic import clean_env
from sessionstore import SessionStore
from sessionstore.clock import now_ms
from sessionstore.errors import (
    ConfigError,
    InvalidArgumentError,
    InvalidEntryError,
    SessionNotFoundError,
    SessionStoreError,
)
from sessionstore.index.postgres import PostgresIndex
from sessionstore.transcripts.jsonl import Transcript
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


# --- through the store: store.transcript(key) is the table transcript ----------------------

KEY = "agent:main:telegram:direct:42"


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


@pytest.fixture
def pg_store(pg_env: str, state_dir: Path) -> Iterator[SessionStore]:
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as s:
        yield s


def _heads(dsn: str, schema: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT session_id, last_seq, messages FROM {schema}.transcript_heads"
        ).fetchall()
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


def test_store_transcript_is_the_table_and_keeps_the_entry_in_step(
    pg_store: SessionStore, pg_env: str, pg_schema: str, state_dir: Path
) -> None:
    pg_store.put(KEY, {"sessionId": SID, "updatedAt": 1_000})
    t = pg_store.transcript(KEY)
    assert isinstance(t, PostgresTranscript) and t.path is None
    a = t.append(_user("a"), idempotency_key="mirror-1")
    b = t.append(_user("b"), idempotency_key="mirror-2")
    t.append(_user("c"))
    assert t.append(_user("a again"), idempotency_key="mirror-1") == a
    assert pg_store.transcript(KEY).append(_user("b again"), idempotency_key="mirror-2") == b
    entry = pg_store.get(KEY)
    assert entry is not None
    assert entry["messageCount"] == 3 == t.message_count()
    assert entry["updatedAt"] > 1_000
    assert {r["key"]: r["messageCount"] for r in pg_store.list().rows} == {KEY: 3}
    entries = t.entries()
    assert entries[0]["type"] == "session" and entries[0]["id"] == SID
    assert [e["parentId"] for e in entries[2:]] == [e["id"] for e in entries[1:-1]]
    assert [m["__openclaw"]["seq"] for m in t.messages()] == [1, 2, 3]
    tail = t.tail(2)
    assert [m["content"][0]["text"] for m in tail] == ["b", "c"]
    assert [m["__openclaw"]["seq"] for m in tail] == [2, 3]
    assert t.tail(0) == [] and t.tail(-1) == [] and t.tail(10) == t.messages()
    assert not (state_dir / "agents" / "main" / "sessions" / f"{SID}.jsonl").exists()
    # another host (another store on the same server) sees the same transcript
    with sessionstore.open_store(state_dir=state_dir.parent / "other", store_type="postgres") as s:
        assert s.transcript(KEY).messages() == t.messages()
    assert _heads(pg_env, pg_schema) == {SID: (3, 3)}


def test_bad_arguments_raise_typed_errors_and_write_nothing(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    pg_store.put(KEY, {"sessionId": SID})
    t = pg_store.transcript(KEY)
    for bad in ("3", 2.5, None, True):
        with pytest.raises(InvalidArgumentError):
            t.tail(bad)  # type: ignore[arg-type]
    for message in ({"x": float("nan")}, {"x": object()}, {1: "one"}, "hello", ["a"]):
        with pytest.raises(InvalidEntryError):
            t.append(message)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        t.append(_user("x"), idempotency_key=5)  # type: ignore[arg-type]
    assert _heads(pg_env, pg_schema) == {}  # nothing was written, not even a header
    for bad_lines in ("3", 0, -1, 1.5):
        with pytest.raises(InvalidArgumentError, match="max_lines"):
            t.compact(bad_lines)  # type: ignore[arg-type]
    with pytest.raises(SessionNotFoundError):
        pg_store.transcript("agent:main:nope")


def test_a_handle_from_before_reset_or_delete_writes_nothing(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    pg_store.put(KEY, {"sessionId": SID})
    old = pg_store.transcript(KEY)
    old.append(_user("one"))
    entry = pg_store.reset(KEY)
    new_sid = entry["sessionId"]
    with pytest.raises(SessionStoreError, match="reset or deleted"):
        old.append(_user("lost?"))
    heads = _heads(pg_env, pg_schema)
    # the old rows were archived as <sid>.reset.<ts>; the new transcript has its header
    assert heads[new_sid] == (0, 0)
    (archived,) = [k for k in heads if k.startswith(f"{SID}.reset.")]
    assert heads[archived] == (1, 1) and SID not in heads
    assert pg_store.get(KEY)["messageCount"] == 0  # type: ignore[index]
    assert pg_store.transcript(KEY).entries()[0]["id"] == new_sid
    handle = pg_store.transcript(KEY)
    handle.append(_user("two"))
    assert pg_store.delete(KEY)
    with pytest.raises(SessionStoreError, match="reset or deleted"):
        handle.append(_user("three"))
    heads = _heads(pg_env, pg_schema)
    assert new_sid not in heads
    assert [k for k in heads if k.startswith(f"{new_sid}.deleted.")]


def test_delete_keeps_a_transcript_another_entry_references(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    pg_store.put(KEY, {"sessionId": SID})
    pg_store.put("agent:main:twin", {"sessionId": SID})
    pg_store.transcript(KEY).append(_user("shared"))
    pg_store.delete(KEY)
    assert _heads(pg_env, pg_schema) == {SID: (1, 1)}
    assert pg_store.delete("agent:main:x") is False
    pg_store.delete("agent:main:twin", archive_transcript=False)
    assert _heads(pg_env, pg_schema) == {SID: (1, 1)}


def test_compact_keeps_the_old_rows_and_counts_messages(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    pg_store.put(KEY, {"sessionId": SID, "inputTokens": 5, "totalTokens": 9})
    t = pg_store.transcript(KEY)
    ids = [t.append(_user(f"m{i}")) for i in range(5)]
    assert t.compact(10) is None
    backup = t.compact(2)
    assert backup is not None and backup.startswith(f"{SID}.bak.")
    assert [m["__openclaw"]["id"] for m in t.messages()] == ids[-2:]
    assert [m["__openclaw"]["seq"] for m in t.tail(5)] == [1, 2]
    entry = pg_store.get(KEY)
    assert entry is not None and entry["messageCount"] == 2
    assert "inputTokens" not in entry and "totalTokens" not in entry
    new_id = t.append(_user("m5"))
    entries = t.entries()
    assert entries[-1]["id"] == new_id and entries[-1]["parentId"] == ids[-1]
    assert _heads(pg_env, pg_schema) == {SID: (3, 3), backup: (5, 5)}


def test_compaction_lines_and_topics(pg_store: SessionStore, pg_env: str, pg_schema: str) -> None:
    pg_store.put(KEY, {"sessionId": SID})
    index = pg_store.index
    assert isinstance(index, PostgresIndex)
    lines = [
        {"type": "session", "version": 3, "id": SID, "timestamp": "2026-01-01T00:00:00Z"},
        {"type": "message", "id": "a1", "parentId": None, "message": _user("m1")},
        {"type": "compaction", "id": "c1", "parentId": "a1", "summary": "s"},
        {"type": "custom", "id": "x1", "parentId": "c1", "data": {}},
        {"type": "message", "id": "a2", "parentId": "x1", "message": _user("m2")},
    ]
    PostgresTranscript(index, SID).import_lines(lines)
    t = pg_store.transcript(KEY)
    assert t.message_count() == 2
    got = [(m["__openclaw"].get("seq"), m["__openclaw"].get("kind")) for m in t.messages()]
    assert got == [(1, None), (None, "compaction"), (2, None)]
    assert t.tail(2) == t.messages()[1:]
    t.append(_user("m3"))
    assert pg_store.get(KEY)["messageCount"] == 3  # type: ignore[index]
    topic = pg_store.transcript(KEY, topic_id="a/b")
    topic.append(_user("in a topic"))
    assert topic.session_id == f"{SID}-topic-a%2Fb"
    assert pg_store.get(KEY)["messageCount"] == 3  # a topic moves updatedAt only  # type: ignore[index]
    pg_store.delete(KEY)
    assert all(".deleted." in k for k in _heads(pg_env, pg_schema))


def test_files_mode_keeps_jsonl_files(
    pg_env: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSIONSTORE_PG_TRANSCRIPTS", "files")
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as s:
        s.put(KEY, {"sessionId": SID})
        t = s.transcript(KEY)
        assert isinstance(t, Transcript)
        t.append(_user("to a file"))
        assert t.path is not None and t.path.exists()
    monkeypatch.setenv("SESSIONSTORE_PG_TRANSCRIPTS", "nowhere")
    with pytest.raises(ConfigError, match="table, files"):
        sessionstore.open_store(state_dir=state_dir, store_type="postgres")


def _store_appender(state_dir: str, env: dict[str, str], worker: int) -> None:
    os.environ.update(env)
    with sessionstore.open_store(state_dir=Path(state_dir), store_type="postgres") as s:
        t = s.transcript(KEY)
        for i in range(APPENDS):
            key = f"w{worker}-{i}"
            t.append(_user(key), idempotency_key=key)
            if i % 10 == 0:  # a retried append writes once
                t.append(_user(key), idempotency_key=key)


def test_4_processes_appending_through_the_store(
    pg_store: SessionStore, pg_env: str, pg_schema: str, state_dir: Path
) -> None:
    pg_store.put(KEY, {"sessionId": SID})
    env = {k: v for k, v in os.environ.items() if k.startswith("SESSIONSTORE_PG_")}
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_store_appender, args=(str(state_dir), env, w)) for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0] * WRITERS
    total = WRITERS * APPENDS
    with psycopg.connect(pg_env) as conn:
        seqs = [
            r[0]
            for r in conn.execute(
                f"SELECT seq FROM {pg_schema}.transcripts WHERE session_id = %s ORDER BY seq",
                (SID,),
            )
        ]
    assert seqs == list(range(total + 1))  # gap-free, no duplicates; the header is seq 0
    t = pg_store.transcript(KEY)
    texts = sorted(m["content"][0]["text"] for m in t.messages())
    assert texts == sorted(f"w{w}-{i}" for w in range(WRITERS) for i in range(APPENDS))
    entries = t.entries()
    assert [e["parentId"] for e in entries[2:]] == [e["id"] for e in entries[1:-1]]
    assert pg_store.get(KEY)["messageCount"] == total == t.message_count()  # type: ignore[index]


# --- maintenance and doctor with the transcripts in the table --------------------------------


def test_fix_missing_and_prune_judge_the_table(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    now = now_ms()
    pg_store.put("agent:main:kept", {"sessionId": "s-kept", "updatedAt": now})
    pg_store.transcript("agent:main:kept").append(_user("here"))
    # claims a transcript (messageCount) that the table lacks: missing
    pg_store.put("agent:main:lost", {"sessionId": "s-lost", "messageCount": 4, "updatedAt": now})
    # claims none: kept whatever the table holds
    pg_store.put("agent:main:new", {"sessionId": "s-new", "updatedAt": now})
    report = pg_store.maintain(fix_missing=True)
    assert report.missing == 1
    assert sorted(pg_store.load_all()) == ["agent:main:kept", "agent:main:new"]
    # a stale session is pruned and its rows archived, never dropped
    pg_store.put("agent:main:old", {"sessionId": "s-old"})
    pg_store.transcript("agent:main:old").append(_user("old"))  # moves updatedAt to now
    pg_store.put("agent:main:old", {"sessionId": "s-old", "updatedAt": now - 40 * 86_400_000})
    pg_store.config = replace(
        pg_store.config, maintenance=replace(pg_store.config.maintenance, mode="enforce")
    )
    report = pg_store.maintain()
    assert report.pruned == 1 and report.errors == []
    heads = _heads(pg_env, pg_schema)
    assert "s-old" not in heads and heads["s-kept"] == (1, 1)
    (archived,) = [k for k in heads if k.startswith("s-old.deleted.")]
    assert heads[archived] == (1, 1)


def test_doctor_reports_missing_and_recounts_drift(pg_store: SessionStore) -> None:
    pg_store.put("agent:main:lost", {"sessionId": "s-lost", "messageCount": 2})
    pg_store.put("agent:main:drift", {"sessionId": "s-drift"})
    t = pg_store.transcript("agent:main:drift")
    t.append(_user("one"))
    t.append(_user("two"))
    pg_store.update("agent:main:drift", {"messageCount": 7})
    found = {(f.kind, f.subject) for f in pg_store.check()}
    assert ("missing-transcript", "agent:main:lost") in found
    assert ("message-count-drift", "agent:main:drift") in found
    fixed = {f.kind: f.fixed for f in pg_store.check(fix=True)}
    assert fixed["message-count-drift"] is True
    assert fixed["missing-transcript"] is False  # reported, never repaired
    assert pg_store.get("agent:main:drift")["messageCount"] == 2  # type: ignore[index]
    assert "message-count-drift" not in {f.kind for f in pg_store.check()}


def test_history_command_reads_the_table(pg_store: SessionStore, state_dir: Path) -> None:
    pg_store.put(KEY, {"sessionId": SID})
    pg_store.transcript(KEY).append(_user("from the table"))
    env = {k: v for k, v in os.environ.items() if k.startswith("SESSIONSTORE_PG_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sessionstore",
            "history",
            KEY,
            "--json",
            "--state-dir",
            str(state_dir),
        ],
        env=clean_env(HOME=os.environ["HOME"], SESSIONSTORE_STORE_TYPE="postgres", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["path"] is None
    assert [m["content"][0]["text"] for m in shown["messages"]] == ["from the table"]
