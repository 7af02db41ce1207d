"""The checkpoint store contract, on both implementations (SQLite tables, in-process cache).

Saves are compare-and-set on the scan generation; a replacement keeps the displaced
generation's keys (an appender that loaded it may be looking keys up at that moment).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionstore.index.sqlite import SqliteIndex
from sessionstore.transcripts.checkpoint import Checkpoint, CheckpointStore, MemoryCheckpoints

PATH = "/state/agents/main/sessions/s.jsonl"
DEV, INO = 2049, (1 << 63) + 5  # an inode number beyond SQLite's signed 64-bit range


def cp(gen: str, size: int, *, ino: int = INO, count: int = 1) -> Checkpoint:
    return Checkpoint(DEV, ino, size, count, f"leaf{size}", size - 10, b"mark", gen)


@pytest.fixture(params=["sqlite", "memory"])
def checkpoints(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CheckpointStore]:
    if request.param == "memory":
        yield MemoryCheckpoints()
        return
    index = SqliteIndex(tmp_path / "sessions.sqlite", agent_id="main")
    index.create()  # checkpoints live in a database that exists (one never written has none)
    try:
        yield index.transcript_checkpoints()
    finally:
        index.close()


def test_first_save_load_and_keys(checkpoints: CheckpointStore) -> None:
    assert checkpoints.load(PATH, DEV, INO) is None
    first = cp("g1", 100)
    assert checkpoints.save(PATH, first, {"k1": "aaaa0001"}, expect=None)
    assert checkpoints.load(PATH, DEV, INO) == first
    assert checkpoints.find_key(PATH, first, "k1") == "aaaa0001"
    assert checkpoints.find_key(PATH, first, "k2") is None


def test_extend_only_the_same_generation_and_only_forward(checkpoints: CheckpointStore) -> None:
    checkpoints.save(PATH, cp("g1", 100), {"k1": "aaaa0001"}, expect=None)
    assert checkpoints.save(PATH, cp("g1", 200), {"k2": "aaaa0002", "k1": "later"}, expect="g1")
    assert checkpoints.load(PATH, DEV, INO) == cp("g1", 200)
    assert checkpoints.find_key(PATH, cp("g1", 200), "k1") == "aaaa0001"  # first one wins
    assert checkpoints.find_key(PATH, cp("g1", 200), "k2") == "aaaa0002"
    # a slower reader extending to less does not move it back, but its keys are kept
    assert checkpoints.save(PATH, cp("g1", 150), {"k3": "aaaa0003"}, expect="g1")
    assert checkpoints.load(PATH, DEV, INO) == cp("g1", 200)
    assert checkpoints.find_key(PATH, cp("g1", 200), "k3") == "aaaa0003"
    # extending a generation that is no longer stored is refused
    assert not checkpoints.save(PATH, cp("gX", 300), {}, expect="gX")
    assert checkpoints.load(PATH, DEV, INO) == cp("g1", 200)


def test_replace_needs_the_stale_generation_and_keeps_its_keys(
    checkpoints: CheckpointStore,
) -> None:
    checkpoints.save(PATH, cp("g1", 100), {"k1": "aaaa0001"}, expect=None)
    # someone who did not see g1 (or saw it ahead of its view: expect "") keeps off
    assert not checkpoints.save(PATH, cp("g2", 50), {"k1": "bbbb0001"}, expect=None)
    assert not checkpoints.save(PATH, cp("g2", 50), {"k1": "bbbb0001"}, expect="")
    assert checkpoints.load(PATH, DEV, INO) == cp("g1", 100)
    # a rescan that found g1 stale replaces it
    assert checkpoints.save(PATH, cp("g2", 80), {"k1": "bbbb0001"}, expect="g1")
    assert checkpoints.load(PATH, DEV, INO) == cp("g2", 80)
    assert checkpoints.find_key(PATH, cp("g2", 80), "k1") == "bbbb0001"
    # an appender that loaded g1 just before still finds g1's keys
    assert checkpoints.find_key(PATH, cp("g1", 100), "k1") == "aaaa0001"
    # one generation back only
    assert checkpoints.save(PATH, cp("g3", 90), {}, expect="g2")
    assert checkpoints.find_key(PATH, cp("g1", 100), "k1") is None
    assert checkpoints.find_key(PATH, cp("g2", 80), "k1") == "bbbb0001"


def test_another_file_at_the_path(checkpoints: CheckpointStore) -> None:
    checkpoints.save(PATH, cp("g1", 100), {"k1": "aaaa0001"}, expect=None)
    other = cp("h1", 40, ino=77)
    # the file at the path was replaced: its checkpoint replaces the old file's
    assert checkpoints.save(PATH, other, {"k9": "cccc0009"}, expect=None)
    assert checkpoints.find_key(PATH, other, "k9") == "cccc0009"
    loaded = checkpoints.load(PATH, DEV, 77)
    assert loaded == other


def test_a_v4_database_gets_the_checkpoint_tables(tmp_path: Path) -> None:
    import sessionstore

    state = tmp_path / "state"
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        store.put("agent:main:main", {"sessionId": "sess-v4"})
        conn = store.index.connection()  # type: ignore[attr-defined]
        conn.execute(  # what schema version 4 had: no checkpoint tables
            "DROP TABLE transcripts; DROP TABLE transcript_keys;"
            " UPDATE meta SET value = '4' WHERE key = 'schema_version'"
        )
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        assert store.info().backend["schemaVersion"] == 7  # v5, v6, then v7
        t = store.transcript("agent:main:main")
        first = t.append({"role": "user", "content": "hi"}, idempotency_key="k")
        assert t.append({"role": "user", "content": "hi"}, idempotency_key="k") == first
        st = t.path.stat()
        saved = store.index.transcript_checkpoints().load(str(t.path), st.st_dev, st.st_ino)
        assert saved is not None and (saved.size, saved.count) == (st.st_size, 1)
