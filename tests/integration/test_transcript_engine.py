"""The transcript engine on files OpenClaw wrote: tails, appends, idempotency, damage, cost.

Regression tests for issue 11 (defects 5, 9, 11, 13 and 17, the transcript parts). Files
are written the way pi writes them (``gateway_files``), not through this library; every
test runs on both index backends. Cost is measured in bytes read from the transcript
(``Transcript.bytes_read``), never in time.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from gateway_files import GatewayWriter, dumps
from sessionstore import (
    InvalidArgumentError,
    InvalidEntryError,
    SessionStore,
    SessionStoreError,
)

# The .jsonl file engine: a postgres store keeps its transcripts in its table (tested in
# tests/postgres/test_table_transcripts.py), so these run on the file-backed stores.
pytestmark = pytest.mark.file_transcripts

KEY = "agent:main:telegram:direct:8123456789"
SID = "6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44"
MB = 1 << 20
SMALL_READ = 256 * 1024  # what a tail or append may read once a file has a checkpoint


def _seqs(records: list[dict[str, Any]]) -> list[int | None]:
    return [r["__openclaw"].get("seq") for r in records]


def _ids(records: list[dict[str, Any]]) -> list[str | None]:
    return [r["__openclaw"]["id"] for r in records]


def _gateway(store: SessionStore, key: str = KEY, sid: str = SID, **kw: Any) -> GatewayWriter:
    store.put(key, {"sessionId": sid})
    return GatewayWriter(store.paths.sessions_dir / f"{sid}.jsonl", sid, **kw)


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "timestamp": 1_774_948_442_100}


def _torn_files(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.torn."))


def _reopen(store: SessionStore) -> SessionStore:
    store.close()
    return sessionstore.open_store(state_dir=store.state_dir, store_type=store.store_type)  # type: ignore[arg-type]


# --- defect 5: a complete last record without its newline -------------------------------------


@pytest.mark.parametrize("style", ["compact", "python"])
def test_complete_last_record_without_newline_is_a_record(store: SessionStore, style: str) -> None:
    gw = _gateway(store, style=style)
    lines = [gw.header()] + [gw.message(f"m{i}")[1] for i in range(4)]
    last_id = gw.leaf
    gw.write(lines, newline_at_end=False)  # another writer left off the final newline
    before = gw.path.read_bytes()
    t = store.transcript(KEY)

    # every reader counts the record, with the same seq numbers
    entries = t.entries()
    assert entries[-1]["id"] == last_id and t.skipped == 0
    msgs = t.messages()
    assert _seqs(msgs) == [1, 2, 3, 4] and _ids(msgs)[-1] == last_id
    for n in range(1, 6):
        assert t.tail(n) == msgs[-n:], n
        assert t.skipped == 0
    assert t.torn_bytes() == 0
    assert t.repair_tail() is None
    assert gw.path.read_bytes() == before

    # an append keeps the record, gives it its newline, and chains to it
    new_id = t.append(_user("after"))
    data = gw.path.read_bytes()
    assert data.startswith(before + b"\n")
    entries = [json.loads(line) for line in data.splitlines()]
    assert [e.get("id") for e in entries[-2:]] == [last_id, new_id]
    assert entries[-1]["parentId"] == last_id
    assert _torn_files(gw.path) == []
    assert _seqs(t.tail(2)) == [4, 5]
    assert t.message_count() == 5


def test_torn_tail_is_cut_and_kept_in_a_torn_file_by_an_append(store: SessionStore) -> None:
    gw = _gateway(store)
    gw.write([gw.header()] + [gw.message(f"m{i}")[1] for i in range(3)])
    whole = gw.path.read_bytes()
    _, line = gw.message("never finished")
    torn = line[: len(line) // 2]
    with open(gw.path, "ab") as fh:
        fh.write(torn)
    t = store.transcript(KEY)
    assert _seqs(t.tail(5)) == [1, 2, 3] and t.skipped == 1
    assert t.torn_bytes() == len(torn)

    new_id = t.append(_user("after the crash"))
    data = gw.path.read_bytes()
    assert data.startswith(whole) and torn not in data
    assert json.loads(data.splitlines()[-1])["id"] == new_id
    [saved] = _torn_files(gw.path)
    assert saved.read_bytes() == torn  # nothing is lost: the cut bytes are kept
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert _seqs(t.tail(2)) == [3, 4] and t.skipped == 0


# --- defect 17: idempotency by parsing, whatever the JSON writer -------------------------------


@pytest.mark.parametrize(
    "variant", ["compact", "python-separators", "key-first", "ascii-escaped", "slash-escaped"]
)
def test_idempotency_key_written_by_another_json_writer(store: SessionStore, variant: str) -> None:
    key = "delivery/é-42" if variant in ("ascii-escaped", "slash-escaped") else "delivery-42"
    gw = _gateway(store, style="python" if variant == "python-separators" else "compact")
    lines = [gw.header(), gw.message("first")[1]]
    mirror_id, line = gw.message("mirrored", role="assistant", idempotencyKey=key)
    if variant == "key-first":  # the same entry, its keys in another order
        entry = json.loads(line)
        entry["message"] = {"idempotencyKey": key, **entry["message"]}
        line = dumps({"message": entry.pop("message"), **entry})
    elif variant == "ascii-escaped":
        line = json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=True).encode()
        assert b"\\u00e9" in line
    elif variant == "slash-escaped":  # JSON allows "\/" (PHP's json_encode writes it)
        line = line.replace(b"delivery/", b"delivery\\/")
    lines.append(line)
    # a key that only appears inside text, or outside a message, is not a key
    lines.append(gw.message('{"idempotencyKey":"other-1"}')[1])
    lines.append(gw.entry("custom", customType="x", data={"idempotencyKey": "other-2"})[1])
    gw.write(lines)
    before = gw.path.read_bytes()

    t = store.transcript(KEY)
    assert t.append(_user("mirrored again"), idempotency_key=key) == mirror_id
    assert gw.path.read_bytes() == before
    assert t.append(_user("again"), idempotency_key=key) == mirror_id  # from the checkpoint
    assert gw.path.read_bytes() == before
    for other in ("other-1", "other-2"):
        assert t.append(_user(other), idempotency_key=other) not in gw.ids
    assert t.message_count() == 5


# --- defect 13: typed errors naming the value --------------------------------------------------


def test_bad_arguments_raise_typed_errors_and_write_nothing(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": SID})
    t = store.transcript(KEY)
    for bad in ("3", 2.5, None, True):
        with pytest.raises(InvalidArgumentError, match=repr(bad).replace(".", r"\.")):
            t.tail(bad)  # type: ignore[arg-type]
    refused: list[tuple[Any, str]] = [
        ({"x": float("nan")}, "nan"),
        ({"x": [1, float("inf")]}, "inf"),
        ({"x": object()}, "object"),
        ({1: "one"}, "1"),
        ("hello", "hello"),
        (["a"], "list"),
    ]
    for message, named in refused:
        with pytest.raises(InvalidEntryError, match=named):
            t.append(message)
    with pytest.raises(InvalidArgumentError, match="5"):
        t.append(_user("x"), idempotency_key=5)  # type: ignore[arg-type]
    assert not t.path.exists()  # nothing was written, not even a header
    t.append(_user("fine"))
    before = t.path.read_bytes()
    for bad in ("3", 0, -1, 1.5):
        with pytest.raises(InvalidArgumentError, match="max_lines"):
            t.compact(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidEntryError, match="nan"):
        t.append({"x": math.nan})
    assert t.path.read_bytes() == before
    assert t.tail(0) == [] and t.tail(-2) == []


# --- defect 11: never through a symlink --------------------------------------------------------


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_symlink_at_the_transcript_path_is_never_followed(
    store: SessionStore, tmp_path: Path, dangling: bool
) -> None:
    outside = tmp_path / "outside.jsonl"
    content = b'{"type":"session","version":3,"id":"elsewhere"}\n'
    if not dangling:
        outside.write_bytes(content)
    store.put(KEY, {"sessionId": SID})
    path = store.paths.sessions_dir / f"{SID}.jsonl"
    path.symlink_to(outside)
    t = store.transcript(KEY)
    assert t.path == path
    calls = {
        "append": lambda: t.append(_user("where does this go?")),
        "tail": lambda: t.tail(3),
        "messages": t.messages,
        "entries": t.entries,
        "compact": lambda: t.compact(1),
        "repair_tail": t.repair_tail,
        "torn_bytes": t.torn_bytes,
    }
    for name, call in calls.items():
        with pytest.raises(SessionStoreError, match="symbolic link") as info:
            call()
        assert str(path) in str(info.value), name
    assert path.is_symlink()
    if dangling:
        assert not outside.exists()  # nothing was created through the link
    else:
        assert outside.read_bytes() == content


def test_special_file_at_the_transcript_path_is_refused(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": SID})
    path = store.paths.sessions_dir / f"{SID}.jsonl"
    os.mkfifo(path)  # a reader opening a FIFO would wait for a writer forever
    t = store.transcript(KEY)
    for call in (lambda: t.tail(2), t.messages, lambda: t.append(_user("x"))):
        with pytest.raises(SessionStoreError, match="not a regular file"):
            call()


# --- defect 9: cost independent of the file size -----------------------------------------------


def test_gateway_file_costs_little_after_its_first_scan(store: SessionStore) -> None:
    gw = _gateway(store)
    gw.fill(20 * MB)
    size = gw.path.stat().st_size
    assert size >= 20 * MB
    total = gw.messages
    key_id, line = gw.message("mirrored early", role="assistant", idempotencyKey="early")
    gw.write([line])
    total += 1

    t = store.transcript(KEY)
    first = t.tail(3)
    assert t.bytes_read >= size  # the first read of a file without a checkpoint scans it
    assert _seqs(first) == [total - 2, total - 1, total]
    assert _ids(first)[-1] == key_id

    # after the first scan: every tail, append and idempotent append reads little
    for handle in (t, store.transcript(KEY)):
        assert handle.tail(3) == first
        assert handle.bytes_read < SMALL_READ
    assert t.append(_user("again"), idempotency_key="early") == key_id
    assert t.bytes_read < SMALL_READ
    new_id = t.append(_user("new"), idempotency_key="late")
    assert t.bytes_read < SMALL_READ
    assert t.append(_user("new again"), idempotency_key="late") == new_id
    assert t.bytes_read < SMALL_READ
    total += 1

    # the gateway keeps appending behind the store's back: only those bytes are read
    extra = [gw.message(f"pi {i}")[1] for i in range(3)]
    gw.leaf = new_id
    gw.write(extra)
    tail = t.tail(4)
    assert t.bytes_read < SMALL_READ + sum(map(len, extra))
    assert _seqs(tail) == [total, total + 1, total + 2, total + 3]
    assert t.append(_user("after pi")) != new_id
    assert t.bytes_read < SMALL_READ
    total += 4

    if store.store_type == "sqlite":
        # the checkpoint lives in the database: another store (process, restart) uses it
        store = _reopen(store)
        t = store.transcript(KEY)
        assert _seqs(t.tail(2)) == [total - 1, total]
        assert t.bytes_read < SMALL_READ
        assert t.append(_user("x"), idempotency_key="early") == key_id
        assert t.bytes_read < SMALL_READ
        entry = store.get(KEY)
        assert entry is not None and entry["messageCount"] == total
        store.close()
    assert _seqs(t.messages()[-2:]) == [total - 1, total]  # a full read agrees


@pytest.mark.parametrize("how", ["in-place", "replaced"])
def test_external_rewrite_and_regrowth_gives_right_seq_numbers(
    store: SessionStore, how: str
) -> None:
    store.put(KEY, {"sessionId": SID})
    t = store.transcript(KEY)
    for i in range(10):
        t.append(_user(f"m{i}"))
    assert _seqs(t.tail(1)) == [10]
    old = t.path.stat()
    # another tool rewrites the file with 3 longer messages: past the old size again
    gw = GatewayWriter(t.path.with_name("rewrite.tmp"), SID, seed=9)
    lines = [gw.header()] + [gw.message(f"r{i} " + "y" * 600)[1] for i in range(3)]
    data = b"\n".join(lines) + b"\n"
    assert len(data) > old.st_size
    if how == "in-place":
        with open(t.path, "r+b") as fh:
            fh.truncate(0)
            fh.write(data)
        assert t.path.stat().st_ino == old.st_ino
    else:
        gw.path.write_bytes(data)
        os.replace(gw.path, t.path)

    tail = t.tail(5)
    assert _seqs(tail) == [1, 2, 3]
    assert [m["content"][0]["text"][:2] for m in tail] == ["r0", "r1", "r2"]
    t.append(_user("after the rewrite"))
    assert _seqs(t.tail(2)) == [3, 4]
    if store.store_type == "sqlite":
        entry = store.get(KEY)
        assert entry is not None and entry["messageCount"] == 4


def test_json_store_appends_never_rewrite_sessions_json(state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as store:
        store.put(KEY, {"sessionId": SID, "updatedAt": 1_000})
        index = store.paths.json_path
        before, st = index.read_bytes(), index.stat()
        t = store.transcript(KEY)
        for i in range(5):
            t.append(_user(f"m{i}"))
        store.transcript(KEY, topic_id=7).append(_user("topic"))
        t.append(_user("m0 again"), idempotency_key="k")
        after = index.stat()
        assert index.read_bytes() == before
        assert (after.st_ino, after.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
        assert _seqs(t.tail(2)) == [5, 6]


def test_topic_transcript_is_tracked_like_a_primary(store: SessionStore) -> None:
    store.put(KEY, {"sessionId": SID})
    primary = store.transcript(KEY)
    primary.append(_user("in the main chat"))
    topic = store.transcript(KEY, topic_id=42)
    gw = GatewayWriter(topic.path, SID, seed=3)
    gw.fill(2 * MB)
    total = gw.messages

    assert _seqs(topic.tail(1)) == [total]
    assert topic.bytes_read >= 2 * MB  # the first scan
    for _ in range(3):
        topic.append(_user("in the topic"))
        assert topic.bytes_read < SMALL_READ
    assert _seqs(store.transcript(KEY, topic_id=42).tail(1)) == [total + 3]
    assert store.transcript(KEY, topic_id=42).bytes_read < SMALL_READ
    assert _seqs(primary.tail(5)) == [1]  # the primary transcript is its own file
    if store.store_type == "sqlite":
        entry = store.get(KEY)
        assert entry is not None and entry["messageCount"] == 1  # only the primary sets it
        store = _reopen(store)
        again = store.transcript(KEY, topic_id=42)
        assert _seqs(again.tail(1)) == [total + 3]
        assert again.bytes_read < SMALL_READ  # its checkpoint was kept in the database
        store.close()


def test_tail_behind_a_checkpoint_saved_meanwhile_leaves_it_alone(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.put(KEY, {"sessionId": SID})
    writer = store.transcript(KEY)
    for i in range(5):
        writer.append(_user(f"m{i}"), idempotency_key=f"k{i}")
    checkpoints = store.index.transcript_checkpoints()
    reader = store.transcript(KEY)
    real_pread = os.pread
    meanwhile: list[Any] = []

    def pread(fd: int, n: int, offset: int) -> bytes:
        if not meanwhile:  # the tail has just looked at the file's size: another append
            meanwhile.append(None)  # (the append below reads too)
            meanwhile.append(writer.append(_user("meanwhile"), idempotency_key="k-new"))
            st = writer.path.stat()
            meanwhile.append(checkpoints.load(str(writer.path), st.st_dev, st.st_ino))
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    tail = reader.tail(2)
    monkeypatch.undo()
    _, new_id, saved = meanwhile
    assert saved is not None and saved.size == writer.path.stat().st_size
    # the reader looked again, and left the newer checkpoint (and its keys) as it was
    assert _ids(tail)[-1] == new_id and _seqs(tail) == [5, 6]
    st = writer.path.stat()
    assert checkpoints.load(str(writer.path), st.st_dev, st.st_ino) == saved
    assert checkpoints.find_key(str(writer.path), saved, "k0") is not None
    assert writer.append(_user("again"), idempotency_key="k-new") == new_id
    assert writer.bytes_read < SMALL_READ
