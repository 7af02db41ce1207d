"""The cold tier through the public API: reading, paths, appends, reset, delete, compact.

Every test that goes through a store runs on both index backends (the ``store`` fixture):
on SQLite appends keep the entry's ``messageCount``/``transcriptBytes`` in the index; on
``sessions.json`` they leave the index alone (no whole-file rewrite per message).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from sessionstore import (
    InvalidKeyError,
    SessionNotFoundError,
    SessionStore,
    SessionStoreError,
)
from sessionstore.transcripts.naming import (
    resolve_transcript_path,
    transcript_path,
    validate_session_id,
)

# The .jsonl file engine: a postgres store keeps its transcripts in its table (tested in
# tests/postgres/test_table_transcripts.py), so these run on the file-backed stores.
pytestmark = pytest.mark.file_transcripts

FIXTURE = Path("/work/shared/fixtures/transcript.jsonl")
FIXTURE_SID = "6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44"
KEY = "agent:main:telegram:direct:8123456789"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ARCHIVE_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d{3})?Z$")
HEX8 = re.compile(r"^[0-9a-f]{8}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COMPACTION_MARKER = {"role": "system", "content": [{"type": "text", "text": "Compaction"}]}
TOKEN_FIELDS = ("inputTokens", "outputTokens", "totalTokens")


# --- helpers ---------------------------------------------------------------------------------


def _sessions_dir(store: SessionStore) -> Path:
    return store.paths.sessions_dir


def _parse_file(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as JSON; fails on any malformed line or a missing final newline."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path} does not end at a complete record"
    out = []
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        value = json.loads(line)  # raises on a corrupt line
        assert isinstance(value, dict), f"line {number} is not an object"
        out.append(value)
    return out


def _assert_chain(entries: list[dict[str, Any]], session_id: str | None = None) -> None:
    """A v3 file: header first, then 8-hex ids, each parentId the previous line's id."""
    assert entries[0]["type"] == "session"
    assert entries[0]["version"] == 3
    if session_id is not None:
        assert entries[0]["id"] == session_id
    previous = None
    for entry in entries[1:]:
        assert HEX8.match(entry["id"]), entry
        assert entry["parentId"] == previous, entry
        assert ISO.match(entry["timestamp"]), entry
        previous = entry["id"]


def _messages_in_file(path: Path) -> int:
    return sum(1 for e in _parse_file(path) if e.get("type") == "message")


def _row(store: SessionStore, key: str) -> dict[str, Any]:
    rows = [
        r for r in store.list(include_global=True, include_unknown=True).rows if r["key"] == key
    ]
    assert len(rows) == 1, rows
    return dict(rows[0])


def _assert_count(store: SessionStore, key: str, expected: int) -> None:
    """The transcript holds ``expected`` messages, and a SQLite index says so too."""
    entry = store.get(key)
    assert entry is not None
    assert store.transcript(key).message_count() == expected
    if store.store_type == "json":
        return  # appends do not rewrite sessions.json, so it keeps no count
    assert entry["messageCount"] == expected
    assert _row(store, key)["messageCount"] == expected


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "timestamp": 1_774_948_442_100}


def _write_lines(path: Path, lines: list[Any]) -> bytes:
    data = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines
    )
    path.write_bytes(data)
    return data


def _archives(directory: Path, name: str, reason: str) -> list[Path]:
    prefix = f"{name}.{reason}."
    found = sorted(p for p in directory.iterdir() if p.name.startswith(prefix))
    for p in found:
        assert ARCHIVE_TS.match(p.name[len(prefix) :]), p.name
    return found


def _transcript_files(directory: Path) -> dict[str, bytes]:
    """Every file of the sessions dir that is not part of the hot index."""
    return {
        p.name: p.read_bytes()
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith("sessions.")
    }


@pytest.fixture
def fixture_store(store: SessionStore) -> SessionStore:
    """A store whose entry KEY has the spec's 9-line fixture as its transcript."""
    store.put(KEY, {"sessionId": FIXTURE_SID})
    shutil.copyfile(FIXTURE, _sessions_dir(store) / f"{FIXTURE_SID}.jsonl")
    return store


FIXTURE_LINES = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
FIXTURE_MESSAGES = [
    ("user", "7c8d9e0f", 1),
    ("assistant", "1a2b3c4d", 2),
    ("toolResult", "5e6f7a8b", 3),
    ("assistant", "9c0d1e2f", 4),
]


# --- reading ---------------------------------------------------------------------------------


def test_fixture_messages_exact(fixture_store: SessionStore) -> None:
    t = fixture_store.transcript(KEY)
    assert t.path == _sessions_dir(fixture_store) / f"{FIXTURE_SID}.jsonl"
    msgs = t.messages()
    assert t.skipped == 0
    assert [(m["role"], m["__openclaw"]["id"], m["__openclaw"]["seq"]) for m in msgs] == (
        FIXTURE_MESSAGES
    )
    by_id = {e["id"]: e for e in FIXTURE_LINES[1:]}
    for m in msgs:
        meta = m["__openclaw"]
        assert meta == {"id": meta["id"], "seq": meta["seq"]}
        assert {k: v for k, v in m.items() if k != "__openclaw"} == by_id[meta["id"]]["message"]
    assert t.entries() == FIXTURE_LINES
    # tail(n) is the last n of messages(), seq numbers included, for every n
    for n in range(1, 7):
        assert t.tail(n) == msgs[-n:]


def test_fixture_append_continues_chain(fixture_store: SessionStore) -> None:
    path = _sessions_dir(fixture_store) / f"{FIXTURE_SID}.jsonl"
    before = path.read_bytes()
    t = fixture_store.transcript(KEY)
    new_id = t.append(_user("and the day after?"))
    data = path.read_bytes()
    assert data.startswith(before)  # append-only: the fixture bytes are untouched
    entries = _parse_file(path)
    assert len(entries) == 10
    assert entries[-1]["id"] == new_id
    assert entries[-1]["parentId"] == "3a4b5c6d"  # the fixture's leaf (a custom entry)
    _assert_chain(entries, FIXTURE_SID)
    _assert_count(fixture_store, KEY, 5)
    tail = fixture_store.transcript(KEY).tail(2)
    assert [(m["role"], m["__openclaw"]["seq"]) for m in tail] == [("assistant", 4), ("user", 5)]


def test_compaction_line_becomes_marker(fixture_store: SessionStore) -> None:
    path = _sessions_dir(fixture_store) / f"{FIXTURE_SID}.jsonl"
    compaction = {
        "type": "compaction",
        "id": "c0ffee01",
        "parentId": "3a4b5c6d",
        "timestamp": "2026-03-31T10:00:00.000Z",
        "summary": "Ana asked about tomorrow's calendar.",
        "firstKeptEntryId": "9c0d1e2f",
        "tokensBefore": 18918,
    }
    after = {
        "type": "message",
        "id": "c0ffee02",
        "parentId": "c0ffee01",
        "timestamp": "2026-03-31T10:00:01.000Z",
        "message": _user("thanks"),
    }
    _write_lines(path, [*FIXTURE_LINES, compaction, after])
    t = fixture_store.transcript(KEY)
    msgs = t.messages()
    assert len(msgs) == 6
    marker = msgs[4]
    assert {k: v for k, v in marker.items() if k != "__openclaw"} == COMPACTION_MARKER
    assert marker["__openclaw"]["kind"] == "compaction"
    assert "seq" not in marker["__openclaw"]
    assert [m["__openclaw"].get("seq") for m in msgs] == [1, 2, 3, 4, None, 5]
    assert msgs[5]["content"] == "thanks"
    for n in range(1, 8):
        assert t.tail(n) == msgs[-n:]
    # an append counts messages only, not the compaction marker
    t.append(_user("one more"))
    _assert_count(fixture_store, KEY, 6)
    assert [m["__openclaw"].get("seq") for m in t.tail(3)] == [None, 5, 6]


SID2 = "0b7e4f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"
TS = "2026-03-31T09:14:02.118Z"


def _e(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "id": f"{n:08x}",
        "parentId": f"{n - 1:08x}" if n > 1 else None,
        "timestamp": TS,
        **fields,
    }


ALL_TYPES: list[dict[str, Any]] = [
    {"type": "session", "version": 3, "id": SID2, "timestamp": TS, "cwd": "/home/ana/ws"},
    _e("message", 1, message={"role": "user", "content": "hi", "timestamp": 1}),
    _e(
        "message",
        2,
        message={
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "hello"},
                {"type": "toolCall", "id": "tc1", "name": "exec", "arguments": {"command": "ls"}},
            ],
            "api": "anthropic-messages",
            "provider": "anthropic",
            "model": "claude-opus-4-6",
            "usage": {
                "input": 1,
                "output": 2,
                "cacheRead": 0,
                "cacheWrite": 0,
                "totalTokens": 3,
                "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
            },
            "stopReason": "toolUse",
            "timestamp": 2,
        },
    ),
    _e(
        "message",
        3,
        message={
            "role": "toolResult",
            "toolCallId": "tc1",
            "toolName": "exec",
            "content": [{"type": "text", "text": "a.txt"}],
            "isError": False,
            "timestamp": 3,
        },
    ),
    _e("model_change", 4, provider="openai", modelId="gpt-5"),
    _e("thinking_level_change", 5, thinkingLevel="high"),
    _e("compaction", 6, summary="s", firstKeptEntryId="00000003", tokensBefore=1234),
    _e("branch_summary", 7, fromId="00000002", summary="side quest"),
    _e("custom", 8, customType="openclaw.cache-ttl", data={"provider": "anthropic"}),
    _e("custom_message", 9, customType="note", content="injected", display=True),
    _e("label", 10, targetId="00000001", label="start"),
    _e("session_info", 11, name="Calendar chat"),
    _e("message", 12, message={"role": "user", "content": "bye", "timestamp": 12}),
]


def test_all_entry_types_read(store: SessionStore) -> None:
    store.put("agent:main:all", {"sessionId": SID2})
    path = _sessions_dir(store) / f"{SID2}.jsonl"
    _write_lines(path, ALL_TYPES)
    t = store.transcript("agent:main:all")
    assert t.entries() == ALL_TYPES
    assert t.skipped == 0
    msgs = t.messages()
    assert t.skipped == 0
    assert [(m["role"], m["__openclaw"].get("seq"), m["__openclaw"]["id"]) for m in msgs] == [
        ("user", 1, "00000001"),
        ("assistant", 2, "00000002"),
        ("toolResult", 3, "00000003"),
        ("system", None, "00000006"),
        ("user", 4, "0000000c"),
    ]
    assert msgs[3]["__openclaw"]["kind"] == "compaction"
    assert t.tail(10) == msgs
    new_id = t.append(_user("again"))
    entries = _parse_file(path)
    assert entries[-1]["id"] == new_id
    assert entries[-1]["parentId"] == "0000000c"
    _assert_chain(entries, SID2)
    _assert_count(store, "agent:main:all", 5)


def test_malformed_lines_skipped_and_counted(store: SessionStore) -> None:
    store.put("agent:main:bad", {"sessionId": SID2})
    path = _sessions_dir(store) / f"{SID2}.jsonl"
    lines: list[Any] = [
        ALL_TYPES[0],
        _e("message", 1, message=_user("one")),
        b"this is not json at all",
        b'{"type":"message","id":"0000000f","parentId":"00000001","message":{"role":"us',
        b'["an", "array", "line"]',
        _e("message", 2, message=_user("two")),
        b"",
        _e("message", 3, message=_user("three")),
    ]
    _write_lines(path, lines)
    t = store.transcript("agent:main:bad")
    entries = t.entries()
    assert t.skipped == 3
    assert [e["id"] for e in entries] == [SID2, "00000001", "00000002", "00000003"]
    msgs = t.messages()
    assert t.skipped == 3
    assert [(m["content"], m["__openclaw"]["seq"]) for m in msgs] == [
        ("one", 1),
        ("two", 2),
        ("three", 3),
    ]
    tail = t.tail(10)
    assert t.skipped == 3
    assert tail == msgs
    t.append(_user("four"))
    _assert_count(store, "agent:main:bad", 4)
    assert [m["__openclaw"]["seq"] for m in t.tail(2)] == [3, 4]


def test_torn_last_line_counted_by_readers(store: SessionStore) -> None:
    store.put("agent:main:torn", {"sessionId": SID2})
    t = store.transcript("agent:main:torn")
    t.append(_user("one"))
    t.append(_user("two"))
    with open(t.path, "ab") as fh:
        fh.write(b'{"type":"message","id":"abcd')
    assert [m["content"] for m in t.messages()] == ["one", "two"]
    assert t.skipped == 1
    assert [(m["content"], m["__openclaw"]["seq"]) for m in t.tail(5)] == [("one", 1), ("two", 2)]
    assert t.skipped == 1


def test_v1_file_read_not_rewritten(store: SessionStore) -> None:
    store.put("agent:main:v1", {"sessionId": "legacy-v1"})
    path = _sessions_dir(store) / "legacy-v1.jsonl"
    v1 = [
        {"type": "session", "id": "legacy-v1", "timestamp": TS, "cwd": "/w"},
        {"type": "message", "timestamp": TS, "message": _user("old question")},
        {
            "type": "message",
            "timestamp": TS,
            "message": {"role": "hookMessage", "content": "hook", "timestamp": 2},
        },
        {"type": "compaction", "timestamp": TS, "summary": "s", "firstKeptEntryIndex": 1},
        {
            "type": "message",
            "timestamp": TS,
            "message": {"role": "assistant", "content": [{"type": "text", "text": "old answer"}]},
        },
    ]
    data = _write_lines(path, v1)
    stat = path.stat()
    t = store.transcript("agent:main:v1")
    assert t.entries() == v1
    msgs = t.messages()
    assert [(m["role"], m["__openclaw"].get("seq")) for m in msgs] == [
        ("user", 1),
        ("hookMessage", 2),
        ("system", None),
        ("assistant", 3),
    ]
    assert all(m["__openclaw"]["id"] is None for m in msgs)
    assert msgs[2]["__openclaw"]["kind"] == "compaction"
    assert t.tail(2) == msgs[-2:]
    assert t.skipped == 0
    assert path.read_bytes() == data
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        stat.st_ino,
        stat.st_size,
        stat.st_mtime_ns,
    )


# --- paths -----------------------------------------------------------------------------------


def test_derived_path_and_topics(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-1"})
    assert store.transcript(KEY).path == sd / "sess-1.jsonl"
    assert store.transcript(KEY, topic_id=42).path == sd / "sess-1-topic-42.jsonl"
    assert store.transcript(KEY, topic_id="a b/c?d").path == sd / "sess-1-topic-a%20b%2Fc%3Fd.jsonl"
    assert store.transcript(KEY, topic_id="é").path == sd / "sess-1-topic-%C3%A9.jsonl"
    # encodeURIComponent leaves these alone
    assert store.transcript(KEY, topic_id="x-_.!~*'()").path == sd / "sess-1-topic-x-_.!~*'().jsonl"
    # a topic transcript is a file of its own
    t = store.transcript(KEY, topic_id="a b")
    t.append(_user("in topic"))
    assert (sd / "sess-1-topic-a%20b.jsonl").is_file()
    assert not (sd / "sess-1.jsonl").exists()
    assert transcript_path(sd, "sess-1", "a b") == sd / "sess-1-topic-a%20b.jsonl"


@pytest.mark.parametrize("relative", [False, True])
def test_session_file_inside_dir_honoured(store: SessionStore, relative: bool) -> None:
    sd = _sessions_dir(store)
    name = "my-custom-file.jsonl"
    store.put(KEY, {"sessionId": "sess-2", "sessionFile": name if relative else str(sd / name)})
    t = store.transcript(KEY)
    assert t.path == sd / name
    t.append(_user("hello"))
    assert (sd / name).is_file()
    assert not (sd / "sess-2.jsonl").exists()
    assert [m["content"] for m in store.transcript(KEY).messages()] == ["hello"]
    _assert_count(store, KEY, 1)


def _escapes(sd: Path, outside: Path) -> dict[str, str]:
    nested = sd / "nested"
    nested.mkdir(parents=True, exist_ok=True)  # opening a store creates no directory
    (nested / "x.jsonl").write_bytes(b"")
    link = sd / "link.jsonl"
    if not link.is_symlink():
        link.symlink_to(outside)
    return {
        "dotdot": "../x.jsonl",
        "dotdot-abs": str(sd / ".." / "x.jsonl"),
        "nested-rel": "nested/x.jsonl",
        "nested-abs": str(nested / "x.jsonl"),
        "outside-abs": str(outside),
        "symlink-rel": "link.jsonl",
        "symlink-abs": str(link),
    }


@pytest.mark.parametrize(
    "case",
    [
        "dotdot",
        "dotdot-abs",
        "nested-rel",
        "nested-abs",
        "outside-abs",
        "symlink-rel",
        "symlink-abs",
    ],
)
def test_session_file_escapes_fall_back(store: SessionStore, tmp_path: Path, case: str) -> None:
    sd = _sessions_dir(store)
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    outside = outside_dir / "x.jsonl"
    outside_bytes = json.dumps({"type": "session", "version": 3, "id": "evil"}).encode() + b"\n"
    outside.write_bytes(outside_bytes)
    session_file = _escapes(sd, outside)[case]
    store.put(KEY, {"sessionId": "sess-3", "sessionFile": session_file})
    t = store.transcript(KEY)
    assert t.path == sd / "sess-3.jsonl"
    assert resolve_transcript_path(sd, "sess-3", session_file) == sd / "sess-3.jsonl"
    t.append(_user("hi"))
    assert outside.read_bytes() == outside_bytes
    assert (sd / "nested" / "x.jsonl").read_bytes() == b""
    assert not (sd.parent / "x.jsonl").exists()
    _assert_chain(_parse_file(sd / "sess-3.jsonl"), "sess-3")


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", ".hidden", "x" * 129, "a\nb"])
def test_invalid_session_ids(store: SessionStore, bad: str) -> None:
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        validate_session_id(bad)
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        transcript_path(_sessions_dir(store), bad)
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        store.put(KEY, {"sessionId": bad})
    assert store.get(KEY) is None
    # a store that already holds such an id (an older writer) still reads; no file is named
    store.index.modify(KEY, lambda _: {"sessionId": bad, "updatedAt": 1})
    assert store.get(KEY) == {"sessionId": bad, "updatedAt": 1}
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        store.transcript(KEY)
    assert [p.name for p in _sessions_dir(store).iterdir() if ".jsonl" in p.name] == []


def test_valid_session_id() -> None:
    assert validate_session_id("6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44.v2_x") == (
        "6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44.v2_x"
    )


# --- appending -------------------------------------------------------------------------------


def test_first_append_creates_file_with_header(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-new"})
    path = sd / "sess-new.jsonl"
    assert not path.exists()  # put writes no transcript
    t = store.transcript(KEY)
    assert t.messages() == []
    assert t.tail(5) == []
    assert not path.exists()  # nor do reads
    msg = {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    first = t.append(msg)
    assert msg == {"role": "user", "content": [{"type": "text", "text": "hello"}]}  # not mutated
    assert path.stat().st_mode & 0o777 == 0o600
    entries = _parse_file(path)
    assert len(entries) == 2
    header, entry = entries
    assert set(header) == {"type", "version", "id", "timestamp", "cwd"}
    assert (header["type"], header["version"], header["id"]) == ("session", 3, "sess-new")
    assert ISO.match(header["timestamp"])
    assert isinstance(header["cwd"], str)
    assert set(entry) == {"type", "id", "parentId", "timestamp", "message"}
    assert entry["type"] == "message"
    assert entry["id"] == first
    assert HEX8.match(first)
    assert entry["parentId"] is None
    assert ISO.match(entry["timestamp"])
    assert isinstance(entry["message"].pop("timestamp"), int)  # ms, added when missing
    assert entry["message"] == msg
    _assert_count(store, KEY, 1)
    ids = [first] + [t.append(_user(f"m{i}")) for i in range(5)]
    entries = _parse_file(path)
    assert [e["id"] for e in entries[1:]] == ids
    assert len(set(ids)) == 6
    _assert_chain(entries, "sess-new")
    assert entries[2]["message"] == _user("m0")  # a given timestamp is kept
    _assert_count(store, KEY, 6)
    if store.store_type == "sqlite":
        assert store.get(KEY)["transcriptBytes"] == path.stat().st_size  # type: ignore[index]


def test_append_moves_updated_at(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-u", "updatedAt": 1_000})
    index = store.paths.json_path.read_bytes() if store.store_type == "json" else None
    store.transcript(KEY).append(_user("x"))
    entry = store.get(KEY)
    assert entry is not None
    if store.store_type == "json":
        # sessions.json is not rewritten for a message (OpenClaw's whole-file cost)
        assert store.paths.json_path.read_bytes() == index
        assert entry["updatedAt"] == 1_000
        return
    assert entry["updatedAt"] > 1_000
    assert _row(store, KEY)["updatedAt"] == entry["updatedAt"]


def test_idempotency_key(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-idem"})
    t = store.transcript(KEY)
    a = t.append(_user("a"), idempotency_key="mirror-1")
    b = t.append(_user("b"), idempotency_key="mirror-2")
    t.append(_user("c"))
    before = t.path.read_bytes()
    assert t.append(_user("a again"), idempotency_key="mirror-1") == a
    assert store.transcript(KEY).append(_user("b again"), idempotency_key="mirror-2") == b
    assert t.path.read_bytes() == before
    _assert_count(store, KEY, 3)
    entries = _parse_file(t.path)
    assert entries[1]["message"]["idempotencyKey"] == "mirror-1"
    assert entries[2]["message"]["idempotencyKey"] == "mirror-2"
    assert "idempotencyKey" not in entries[3]["message"]
    # a key that only looks similar is a different key
    d = t.append(_user("d"), idempotency_key="mirror-")
    assert d not in (a, b)
    _assert_count(store, KEY, 4)
    _assert_chain(_parse_file(t.path), "sess-idem")


def test_torn_last_line_trimmed_before_append(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-torn"})
    t = store.transcript(KEY)
    ids = [t.append(_user(f"m{i}")) for i in range(3)]
    good = t.path.read_bytes()
    half = json.dumps(_e("message", 9, message=_user("never finished"))).encode()
    with open(t.path, "ab") as fh:
        fh.write(half[: len(half) // 2])
    new_id = store.transcript(KEY).append(_user("after the crash"))
    data = t.path.read_bytes()
    assert data.startswith(good)
    assert b"never" not in data
    entries = _parse_file(t.path)
    assert [e["id"] for e in entries[1:]] == [*ids, new_id]
    _assert_chain(entries, "sess-torn")
    _assert_count(store, KEY, 4)
    assert t.messages()[-1]["__openclaw"]["seq"] == 4
    assert t.skipped == 0


def test_new_entry_id_avoids_ids_and_text_in_the_last_block(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second append starts from the first one's checkpoint, so the ids of the lines
    # before it are known only from the last block of the file: a drawn id found anywhere
    # in that block (an entry's id, or the same characters in a message) is drawn again.
    store.put(KEY, {"sessionId": "sess-ids"})
    path = _sessions_dir(store) / "sess-ids.jsonl"
    header = {"type": "session", "version": 3, "id": "sess-ids", "timestamp": "t", "cwd": "/"}
    taken = _e("message", 1, id="aaaaaaaa", parentId=None, message=_user("hello"))
    quoted = _e("message", 2, id="0000000e", parentId="aaaaaaaa", message=_user("bbbbbbbb?"))
    _write_lines(path, [header, taken, quoted])
    t = store.transcript(KEY)
    first = t.append(_user("one"))
    real = os.urandom
    draws = iter(bytes.fromhex(h) for h in ("aaaaaaaa", "bbbbbbbb", first, "cccccccc"))
    monkeypatch.setattr(os, "urandom", lambda n: next(draws) if n == 4 else real(n))
    assert t.append(_user("two")) == "cccccccc"
    monkeypatch.undo()
    entries = _parse_file(path)
    assert [e["id"] for e in entries[1:]] == ["aaaaaaaa", "0000000e", first, "cccccccc"]
    _assert_chain(entries, "sess-ids")


def test_new_entry_id_avoids_an_id_spelt_with_escapes_in_the_last_block(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another JSON writer may spell an id with \u escapes: its characters are then not in
    # the block as they are, and the block is parsed instead of searched.
    store.put(KEY, {"sessionId": "sess-esc"})
    path = _sessions_dir(store) / "sess-esc.jsonl"
    header = {"type": "session", "version": 3, "id": "sess-esc", "timestamp": "t", "cwd": "/"}
    escaped = (
        b'{"type":"message","id":"\\u0061aaaaaaa","parentId":null,"timestamp":"t",'
        b'"message":{"role":"user","content":"a\\nb","timestamp":1}}',
        b'{"type":"message","id":"0000000f","parentId":"\\u0061aaaaaaa","timestamp":"t",'
        b'"message":{"role":"user","content":"later","timestamp":2}}',
    )
    _write_lines(path, [header, *escaped])
    t = store.transcript(KEY)
    first = t.append(_user("one"))
    real = os.urandom
    draws = iter(bytes.fromhex(h) for h in ("aaaaaaaa", "cccccccc"))
    monkeypatch.setattr(os, "urandom", lambda n: next(draws) if n == 4 else real(n))
    assert t.append(_user("two")) == "cccccccc"
    monkeypatch.undo()
    entries = _parse_file(path)
    assert [e["id"] for e in entries[1:]] == ["aaaaaaaa", "0000000f", first, "cccccccc"]


def test_torn_header_only_file(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-th"})
    path = _sessions_dir(store) / "sess-th.jsonl"
    path.write_bytes(b'{"type":"session","vers')
    new_id = store.transcript(KEY).append(_user("x"))
    entries = _parse_file(path)
    assert len(entries) == 2
    assert entries[1]["id"] == new_id
    _assert_chain(entries, "sess-th")
    _assert_count(store, KEY, 1)


def test_unknown_key(store: SessionStore) -> None:
    with pytest.raises(SessionNotFoundError):
        store.transcript("agent:main:nope")
    assert not any(".jsonl" in p.name for p in _sessions_dir(store).parent.rglob("*"))


def test_handle_from_before_reset_refuses(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-old"})
    old = store.transcript(KEY)
    old.append(_user("one"))
    old.append(_user("two"))
    store.reset(KEY)
    files = _transcript_files(sd)
    entry = store.get(KEY)
    with pytest.raises(SessionStoreError, match="reset or deleted"):
        old.append(_user("lost?"))
    assert _transcript_files(sd) == files
    assert not old.path.exists()
    assert store.get(KEY) == entry
    _assert_count(store, KEY, 0)


def test_handle_from_before_delete_refuses(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-del"})
    old = store.transcript(KEY)
    old.append(_user("one"))
    store.delete(KEY)
    files = _transcript_files(sd)
    with pytest.raises(SessionStoreError, match="reset or deleted"):
        old.append(_user("two"))
    assert _transcript_files(sd) == files
    assert store.get(KEY) is None


def test_non_dict_message_rejected(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-nd"})
    t = store.transcript(KEY)
    with pytest.raises(SessionStoreError):
        t.append("hello")  # type: ignore[arg-type]
    assert not t.path.exists()


def test_tail_of_50mb_reads_little(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-big"})
    t = store.transcript(KEY)
    big = "x" * 1_050_000
    for i in range(50):
        t.append({"role": "assistant", "content": [{"type": "text", "text": big}], "n": i})
    ids = [t.append(_user(f"small {i}")) for i in range(30)]
    assert t.path.stat().st_size > 50_000_000
    _assert_count(store, KEY, 80)
    fresh = store.transcript(KEY)
    tail = fresh.tail(20)
    assert fresh.bytes_read < 1_000_000
    assert [m["content"] for m in tail] == [f"small {i}" for i in range(10, 30)]
    assert [m["__openclaw"]["seq"] for m in tail] == list(range(61, 81))
    assert [m["__openclaw"]["id"] for m in tail] == ids[10:]
    assert fresh.skipped == 0


# --- reset -----------------------------------------------------------------------------------

CARRIED = {
    "label": "Ana DM",
    "displayName": "Ana Silva",
    "thinkingLevel": "low",
    "verboseLevel": "on",
    "chatType": "direct",
    "contextTokens": 200000,
    "compactionCount": 2,
    "channel": "telegram",
    "lastChannel": "telegram",
    "lastTo": "8123456789",
    "lastAccountId": "default",
    "deliveryContext": {"channel": "telegram", "to": "8123456789", "accountId": "default"},
    "origin": {"provider": "telegram", "chatType": "direct", "from": "telegram:8123456789"},
    "skillsSnapshot": {"prompt": "skills...", "skills": [{"name": "weather"}], "version": 1},
    "acp": {"backend": "acpx", "agent": "codex", "mode": "persistent", "state": "idle"},
    "sendPolicy": "allow",
}
DROPPED = {
    "systemPromptReport": {"source": "run", "systemPrompt": {"chars": 5500}},
    "memoryFlushAt": 1774948000000,
    "memoryFlushCompactionCount": 1,
    "estimatedCostUsd": 0.1931,
    "cacheRead": 15120,
    "systemSent": True,
    "abortedLastRun": True,
}


def test_reset_entry_and_files(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    old_file = sd / "explicit-old.jsonl"
    store.put(
        KEY,
        {
            "sessionId": "sess-before",
            "sessionFile": str(old_file),
            **CARRIED,
            **DROPPED,
            "inputTokens": 18234,
            "outputTokens": 1422,
            "totalTokens": 24105,
            "totalTokensFresh": False,
            "providerOverride": "openai",
            "modelOverride": "gpt-5",
            "modelOverrideSource": "user",
        },
    )
    stored = store.get(KEY)
    assert stored is not None
    t = store.transcript(KEY)
    assert t.path == old_file
    t.append(_user("one"))
    t.append(_user("two"))
    old_bytes = old_file.read_bytes()

    fresh = store.reset(KEY)
    assert fresh == store.get(KEY)
    new_id = fresh["sessionId"]
    assert new_id != "sess-before"
    assert UUID.match(new_id)
    for field in CARRIED:
        assert fresh[field] == stored[field], field  # type: ignore[literal-required]
    for field in DROPPED:
        if field in ("systemSent", "abortedLastRun"):
            assert fresh[field] is False  # type: ignore[literal-required]
        else:
            assert field not in fresh, field
    assert (fresh["inputTokens"], fresh["outputTokens"], fresh["totalTokens"]) == (0, 0, 0)
    assert fresh["totalTokensFresh"] is True
    assert (fresh["providerOverride"], fresh["modelOverride"], fresh["modelOverrideSource"]) == (
        "openai",
        "gpt-5",
        "user",
    )

    # the old transcript is archived, byte for byte
    assert not old_file.exists()
    archived = _archives(sd, "explicit-old.jsonl", "reset")
    assert len(archived) == 1
    assert archived[0].read_bytes() == old_bytes
    # the new one has only a header, at the derived path (not the old explicit path)
    new = store.transcript(KEY)
    assert new.path == sd / f"{new_id}.jsonl"
    assert new.path != old_file
    entries = _parse_file(new.path)
    assert len(entries) == 1
    assert (entries[0]["type"], entries[0]["version"], entries[0]["id"]) == ("session", 3, new_id)
    assert new.path.stat().st_mode & 0o777 == 0o600
    _assert_count(store, KEY, 0)
    assert new.messages() == []
    new.append(_user("fresh start"))
    _assert_count(store, KEY, 1)
    entries = _parse_file(new.path)
    assert len(entries) == 2
    _assert_chain(entries, new_id)


def test_reset_drops_auto_model_override(store: SessionStore) -> None:
    store.put(
        KEY,
        {
            "sessionId": "sess-auto",
            "providerOverride": "openai",
            "modelOverride": "gpt-5-mini",
            "modelOverrideSource": "auto",
            "label": "kept",
        },
    )
    fresh = store.reset(KEY)
    for field in ("providerOverride", "modelOverride", "modelOverrideSource"):
        assert field not in fresh, field
    assert fresh["label"] == "kept"


def test_reset_without_transcript_and_missing_key(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-none"})
    fresh = store.reset(KEY)
    assert _archives(sd, "sess-none.jsonl", "reset") == []
    assert _parse_file(sd / f"{fresh['sessionId']}.jsonl")[0]["id"] == fresh["sessionId"]
    _assert_count(store, KEY, 0)
    with pytest.raises(SessionNotFoundError):
        store.reset("agent:main:missing")


def test_reset_twice_archives_each(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-r0"})
    store.transcript(KEY).append(_user("zero"))
    first = store.reset(KEY)
    store.transcript(KEY).append(_user("one"))
    store.transcript(KEY).append(_user("two"))
    _assert_count(store, KEY, 2)
    second = store.reset(KEY)
    assert len(_archives(sd, "sess-r0.jsonl", "reset")) == 1
    archived = _archives(sd, f"{first['sessionId']}.jsonl", "reset")
    assert len(archived) == 1
    assert [e.get("message", {}).get("content") for e in _parse_file(archived[0])[1:]] == [
        "one",
        "two",
    ]
    assert (sd / f"{second['sessionId']}.jsonl").is_file()
    _assert_count(store, KEY, 0)


# --- delete ----------------------------------------------------------------------------------


def test_delete_archives_transcript(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-d"})
    store.transcript(KEY).append(_user("bye"))
    path = sd / "sess-d.jsonl"
    data = path.read_bytes()
    assert store.delete(KEY) is True
    assert store.get(KEY) is None
    assert not path.exists()
    archived = _archives(sd, "sess-d.jsonl", "deleted")
    assert len(archived) == 1
    assert archived[0].read_bytes() == data
    assert store.delete(KEY) is False
    assert len(_archives(sd, "sess-d.jsonl", "deleted")) == 1


def test_delete_keeping_transcript(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-k"})
    store.transcript(KEY).append(_user("stay"))
    path = sd / "sess-k.jsonl"
    data = path.read_bytes()
    assert store.delete(KEY, archive_transcript=False) is True
    assert store.get(KEY) is None
    assert path.read_bytes() == data
    assert _archives(sd, "sess-k.jsonl", "deleted") == []


def test_delete_never_touches_outside_session_file(store: SessionStore, tmp_path: Path) -> None:
    sd = _sessions_dir(store)
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    outside = outside_dir / "sess-o.jsonl"
    outside.write_bytes(b'{"type":"session","version":3,"id":"sess-o"}\n')
    store.put(KEY, {"sessionId": "sess-o", "sessionFile": str(outside)})
    store.transcript(KEY).append(_user("inside"))  # falls back to the derived path
    assert store.delete(KEY) is True
    assert outside.read_bytes() == b'{"type":"session","version":3,"id":"sess-o"}\n'
    assert sorted(p.name for p in outside_dir.iterdir()) == ["sess-o.jsonl"]
    assert len(_archives(sd, "sess-o.jsonl", "deleted")) == 1


def test_delete_never_touches_sibling_agent_file(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    other = sd.parent.parent / "other" / "sessions"
    other.mkdir(parents=True)
    foreign = other / "sess-s.jsonl"
    store.put(KEY, {"sessionId": "sess-s", "sessionFile": str(foreign)})
    t = store.transcript(KEY)
    assert t.path == foreign  # cross-agent sessionFile paths are honoured (spec 3.5)
    t.append(_user("over there"))
    data = foreign.read_bytes()
    assert store.delete(KEY) is True
    assert foreign.read_bytes() == data
    assert sorted(p.name for p in other.iterdir()) == ["sess-s.jsonl"]


# --- compact ---------------------------------------------------------------------------------


def test_compact_max_lines(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    store.put(KEY, {"sessionId": "sess-c", "inputTokens": 5, "outputTokens": 6, "totalTokens": 11})
    t = store.transcript(KEY)
    for i in range(6):
        t.append(_user(f"m{i}"))
    old = t.path.read_bytes()
    old_lines = old.split(b"\n")[:-1]
    assert len(old_lines) == 7
    before = store.get(KEY)
    assert before is not None

    backup = t.compact(max_lines=3)
    assert backup is not None
    assert backup.parent == sd
    assert backup.name.startswith("sess-c.jsonl.bak.")
    assert ARCHIVE_TS.match(backup.name[len("sess-c.jsonl.bak.") :])
    assert backup.read_bytes() == old
    assert t.path.read_bytes() == b"\n".join([old_lines[0], *old_lines[-3:]]) + b"\n"
    assert t.path.stat().st_mode & 0o777 == 0o600
    entry = store.get(KEY)
    assert entry is not None
    for field in TOKEN_FIELDS:
        assert field not in entry, field
        assert _row(store, KEY)[field] is None
    assert entry["updatedAt"] >= before["updatedAt"]
    _assert_count(store, KEY, 3)
    assert [(m["content"], m["__openclaw"]["seq"]) for m in t.messages()] == [
        ("m3", 1),
        ("m4", 2),
        ("m5", 3),
    ]
    assert t.tail(2) == t.messages()[-2:]

    # nothing more to cut: no backup, nothing changes
    same = t.path.read_bytes()
    assert t.compact(max_lines=3) is None
    assert t.path.read_bytes() == same
    assert len(_archives(sd, "sess-c.jsonl", "bak")) == 1

    # appends continue the chain from the last kept line
    new_id = t.append(_user("m6"))
    entries = _parse_file(t.path)
    assert entries[-1]["id"] == new_id
    assert entries[-1]["parentId"] == entries[-2]["id"]
    assert len(entries) == 5
    _assert_count(store, KEY, 4)


def test_compact_counts_messages_not_lines(store: SessionStore) -> None:
    store.put("agent:main:all", {"sessionId": SID2})
    path = _sessions_dir(store) / f"{SID2}.jsonl"
    _write_lines(path, ALL_TYPES)
    t = store.transcript("agent:main:all")
    assert t.compact(max_lines=4) is not None
    # kept: header + custom_message, label, session_info, message 12
    assert [e["type"] for e in _parse_file(path)] == [
        "session",
        "custom_message",
        "label",
        "session_info",
        "message",
    ]
    _assert_count(store, "agent:main:all", 1)
    with pytest.raises(SessionStoreError):
        t.compact(max_lines=0)


def test_message_count_listed_for_each_session(store: SessionStore) -> None:
    keys = [f"agent:main:k{i}" for i in range(3)]
    for i, key in enumerate(keys):
        store.put(key, {"sessionId": f"sess-l{i}"})
        t = store.transcript(key)
        for j in range(i + 1):
            t.append(_user(f"{key} {j}"))
    rows = {r["key"]: r["messageCount"] for r in store.list().rows}
    if store.store_type == "sqlite":
        assert rows == {keys[0]: 1, keys[1]: 2, keys[2]: 3}
    else:  # sessions.json is not rewritten by appends: it keeps no count
        assert rows == {keys[0]: None, keys[1]: None, keys[2]: None}
    for i, key in enumerate(keys):
        assert _messages_in_file(store.transcript(key).path) == i + 1


def _typical(store: SessionStore) -> tuple[str, dict[str, Any]]:
    """The spec's typical entry: its sessionFile is an absolute path in another state root."""
    ((key, entry),) = json.loads(
        Path("/work/shared/fixtures/typical-entry.json").read_text()
    ).items()
    assert entry["sessionFile"].startswith("/home/ana/.openclaw/agents/main/sessions/")
    store.put(key, entry)
    return key, entry


def test_foreign_root_session_file_yields_to_existing_derived_file(store: SessionStore) -> None:
    # spec 3.5: read-side candidates are tried in order and the first existing file wins;
    # 4A: archiving renames every existing candidate inside the sessions dir
    sd = _sessions_dir(store)
    key, entry = _typical(store)
    derived = sd / f"{FIXTURE_SID}.jsonl"
    shutil.copyfile(FIXTURE, derived)
    t = store.transcript(key)
    assert t.path == derived
    assert [(m["role"], m["__openclaw"]["id"], m["__openclaw"]["seq"]) for m in t.messages()] == (
        FIXTURE_MESSAGES
    )
    t.append(_user("moved machines"))
    _assert_chain(_parse_file(derived), FIXTURE_SID)
    _assert_count(store, key, 5)
    fresh = store.reset(key)
    assert not derived.exists()
    assert len(_archives(sd, derived.name, "reset")) == 1
    assert fresh["skillsSnapshot"] == entry["skillsSnapshot"]
    assert fresh["deliveryContext"] == entry["deliveryContext"]
    assert "estimatedCostUsd" not in fresh
    assert (fresh["inputTokens"], fresh["outputTokens"], fresh["totalTokens"]) == (0, 0, 0)


def test_foreign_root_session_file_without_any_file(store: SessionStore) -> None:
    sd = _sessions_dir(store)
    key, _ = _typical(store)
    t = store.transcript(key)
    assert t.path == sd / f"{FIXTURE_SID}.jsonl"  # its directory does not exist here
    t.append(_user("first"))
    _assert_chain(_parse_file(sd / f"{FIXTURE_SID}.jsonl"), FIXTURE_SID)
    _assert_count(store, key, 1)


def test_lines_written_by_another_writer_are_counted(store: SessionStore) -> None:
    # OpenClaw (pi) appends to the same files without going through the index
    store.put(KEY, {"sessionId": "sess-ext"})
    t = store.transcript(KEY)
    ids = [t.append(_user(f"api {i}")) for i in range(3)]
    foreign = [
        {
            "type": "message",
            "id": f"f000000{i}",
            "parentId": ids[-1] if i == 0 else "f0000000",
            "timestamp": TS,
            "message": _user(f"pi {i}"),
        }
        for i in range(2)
    ]
    with open(t.path, "ab") as fh:
        fh.write(b"".join(json.dumps(e).encode() + b"\n" for e in foreign))
    assert [(m["content"], m["__openclaw"]["seq"]) for m in t.tail(3)] == [
        ("api 2", 3),
        ("pi 0", 4),
        ("pi 1", 5),
    ]
    new_id = t.append(_user("api 3"))
    entries = _parse_file(t.path)
    assert entries[-1]["id"] == new_id
    assert entries[-1]["parentId"] == "f0000001"
    _assert_count(store, KEY, 6)


def test_file_shrunk_behind_the_index(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-shrunk"})
    t = store.transcript(KEY)
    for i in range(5):
        t.append(_user(f"m{i}"))
    lines = t.path.read_bytes().split(b"\n")
    t.path.write_bytes(b"\n".join(lines[:3]) + b"\n")  # header + 2 messages
    assert [(m["content"], m["__openclaw"]["seq"]) for m in t.tail(5)] == [("m0", 1), ("m1", 2)]
    t.append(_user("m5"))
    _assert_count(store, KEY, 3)
    _assert_chain(_parse_file(t.path), "sess-shrunk")
