"""Maintenance and the doctor of a postgres store whose transcripts are table rows.

Archived row sets age out by the file rules, the disk budget counts transcript bytes and
evicts in the file order, the doctor archives orphan row sets, and enforce applies its
plan in batches that let other writers in (forced interleavings, no timing).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

import sessionstore
from pgtest import pg_empty
from sessionstore import SessionStore
from sessionstore.clock import now_ms
from sessionstore.index.postgres import REFERENCE_QUERIES, PostgresIndex
from sessionstore.maintenance import MaintenanceReport
from sessionstore.transcripts.naming import archive_timestamp
from sessionstore.transcripts.postgres import PostgresTranscript

DAY = 86_400_000


@pytest.fixture
def pg_store(pg_env: str, state_dir: Path) -> Iterator[SessionStore]:
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as s:
        yield s


def _index(store: SessionStore) -> PostgresIndex:
    assert isinstance(store.index, PostgresIndex)
    return store.index


def _configure(store: SessionStore, **changes: Any) -> None:
    store.config = replace(store.config, maintenance=replace(store.config.maintenance, **changes))


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def _sql(dsn: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description else []


def _heads(dsn: str, schema: str) -> dict[str, int]:
    """Transcript id -> the head's bytes."""
    rows = _sql(dsn, f"SELECT session_id, bytes FROM {schema}.transcript_heads")
    return {str(sid): int(b) for sid, b in rows}


def _line_bytes(dsn: str, schema: str) -> dict[str, int]:
    """Transcript id -> the bytes of its lines, measured from the rows themselves."""
    rows = _sql(
        dsn,
        f"SELECT session_id, sum(octet_length(coalesce(raw, line::text)))"
        f" FROM {schema}.transcripts GROUP BY session_id",
    )
    return {str(sid): int(b) for sid, b in rows}


def _label(store: SessionStore, name: str) -> str:
    return f"{store.index.location}: transcript {name}"


def _session(store: SessionStore, name: str, updated: int, lines: int = 2) -> str:
    key = f"agent:main:{name}"
    store.put(key, {"sessionId": f"s-{name}"})
    t = store.transcript(key)
    for i in range(lines):
        t.append(_user(f"{name} {i}"))
    entry = store.get(key)
    assert entry is not None
    store.put(key, {**entry, "updatedAt": updated})
    return key


def _archived(store: SessionStore, sid: str, reason: str, at: int, lines: int = 2) -> str:
    """A transcript archived by ``reason`` at ``at`` (as reset/delete would leave it)."""
    t = PostgresTranscript(_index(store), sid)
    for i in range(lines):
        t.append(_user(f"{sid} {i}"))
    stamp = archive_timestamp(at)
    assert t.archive(reason, stamp=stamp) == 1
    return f"{sid}.{reason}.{stamp}"


# --- transcript bytes ---------------------------------------------------------------------------


def test_heads_keep_the_bytes_of_the_lines_and_the_entry_keeps_transcript_bytes(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    key = "agent:main:bytes"
    pg_store.put(key, {"sessionId": "s-bytes"})
    t = pg_store.transcript(key)
    for i in range(5):
        t.append(_user(f"line {i} \u00e9"), idempotency_key=f"k{i}")
    t.append(_user("again"), idempotency_key="k1")  # a retried append writes nothing
    t.append({"role": "user", "content": "nul \x00 kept verbatim"})
    measured = _line_bytes(pg_env, pg_schema)["s-bytes"]
    assert _heads(pg_env, pg_schema)["s-bytes"] == measured
    assert pg_store.get(key)["transcriptBytes"] == measured  # type: ignore[index]
    assert t.compact(2) is not None
    measured = _line_bytes(pg_env, pg_schema)
    heads = _heads(pg_env, pg_schema)
    assert heads == measured  # the backup's rows keep their bytes too
    assert pg_store.get(key)["transcriptBytes"] == heads["s-bytes"]  # type: ignore[index]
    assert pg_store.check() == []


def test_the_v4_upgrade_measures_existing_transcripts(
    pg_store: SessionStore, pg_env: str, pg_schema: str, state_dir: Path
) -> None:
    _session(pg_store, "old", now_ms(), lines=3)
    expected = _line_bytes(pg_env, pg_schema)
    # A schema of version 3: no bytes column.
    _sql(pg_env, f"ALTER TABLE {pg_schema}.transcript_heads DROP COLUMN bytes")
    _sql(pg_env, f"DELETE FROM {pg_schema}.schema_version WHERE version = 4")
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as again:
        again.put("agent:main:other", {"sessionId": "s-other"})  # a write upgrades
        assert _index(again).schema_version() == 4
    assert _heads(pg_env, pg_schema) == expected


# --- archive retention --------------------------------------------------------------------------


def test_archived_rows_age_out_by_the_file_rules_and_dry_run_removes_nothing(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    now = now_ms()
    old_deleted = _archived(pg_store, "s-gone", "deleted", now - 31 * DAY)
    _archived(pg_store, "s-recent", "deleted", now - 29 * DAY)
    old_reset = _archived(pg_store, "s-reset", "reset", now - 31 * DAY, lines=3)
    _archived(pg_store, "s-bak", "bak", now - 90 * DAY)  # backups never age out
    _session(pg_store, "live", now)
    before = _heads(pg_env, pg_schema)
    expired = sorted([old_deleted, old_reset])
    freed = before[old_deleted] + before[old_reset]

    dry = pg_store.maintain(mode="enforce", dry_run=True)
    assert dry.removedFiles == [_label(pg_store, n) for n in expired]
    assert dry.bytesFreed == freed and not dry.applied
    assert _heads(pg_env, pg_schema) == before  # nothing removed

    done = pg_store.maintain(mode="enforce")
    assert done.applied and done.errors == []
    assert (done.removedFiles, done.bytesFreed) == (dry.removedFiles, dry.bytesFreed)
    assert _heads(pg_env, pg_schema) == {k: v for k, v in before.items() if k not in expired}
    assert set(_line_bytes(pg_env, pg_schema)) == set(before) - set(expired)  # rows too

    _configure(pg_store, reset_archive_retention_ms=None)  # resetArchiveRetention: false
    old_reset = _archived(pg_store, "s-reset2", "reset", now - 400 * DAY)
    assert pg_store.maintain(mode="enforce").removedFiles == []
    assert old_reset in _heads(pg_env, pg_schema)


def test_pruned_sessions_rows_are_archived_in_the_report_and_the_table(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    now = now_ms()
    _session(pg_store, "stale", now - 40 * DAY)
    PostgresTranscript(_index(pg_store), "s-stale-topic-7").append(_user("topic"))
    _session(pg_store, "fresh", now)
    dry = pg_store.maintain(mode="enforce", dry_run=True)
    assert dry.pruned == 1 and len(dry.archived) == 2
    done = pg_store.maintain(mode="enforce")
    assert done.pruned == 1 and done.errors == []
    names = sorted(n.rsplit(" ", 1)[1] for n in done.archived)
    stamps = {n.split(".deleted.")[1] for n in names}
    assert len(stamps) == 1  # one archive time for the whole run
    stamp = stamps.pop()
    assert [n.replace(stamp, "") for n in names] == sorted(
        n.rsplit(" ", 1)[1].split(".deleted.")[0] + ".deleted." for n in dry.archived
    )
    assert sorted(n.split(".deleted.")[0] for n in names) == ["s-stale", "s-stale-topic-7"]
    heads = _heads(pg_env, pg_schema)
    assert set(heads) == {"s-fresh", *names}


def test_a_large_prune_archives_exactly_the_sessions_nothing_references(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    # More pruned sessions than reference counts asked one by one (REFERENCE_QUERIES).
    now = now_ms()
    index = _index(pg_store)
    count = REFERENCE_QUERIES + 8
    for i in range(count):
        pg_store.put(f"agent:main:old{i}", {"sessionId": f"s-{i}", "updatedAt": now - 40 * DAY})
        PostgresTranscript(index, f"s-{i}").append(_user(f"old {i}"))
    shared = f"s-{count - 1}"  # also the session of a fresh key: its rows stay live
    pg_store.put("agent:main:fresh", {"sessionId": shared, "updatedAt": now})
    dry = pg_store.maintain(mode="enforce", dry_run=True)
    done = pg_store.maintain(mode="enforce")
    expected = sorted(f"s-{i}" for i in range(count - 1))
    for report in (dry, done):
        assert report.pruned == count
        assert sorted(n.rsplit(" ", 1)[1].split(".deleted.")[0] for n in report.archived) == (
            expected
        )
    live = [n for n in _heads(pg_env, pg_schema) if ".deleted." not in n]
    assert live == [shared]


# --- the disk budget -----------------------------------------------------------------------------


def _index_bytes(dsn: str, schema: str) -> int:
    ((entries, blobs),) = _sql(
        dsn,
        "SELECT coalesce(sum(octet_length(entry::text) + octet_length(search_text)"
        f" + 3 * octet_length(session_key) + 96), 0), (SELECT coalesce(sum(octet_length(data)),"
        f" 0) FROM {schema}.blobs) FROM {schema}.sessions",
    )
    return int(entries) + int(blobs)


def _budget_store(store: SessionStore) -> tuple[str, str, str, str]:
    now = now_ms()
    a = _session(store, "a", now - 3 * DAY, lines=4)
    b = _session(store, "b", now - 2 * DAY, lines=4)
    c = _session(store, "c", now - 1 * DAY, lines=4)
    archive = _archived(store, "s-arch", "deleted", now - 5 * DAY, lines=6)
    return a, b, c, archive


def test_the_disk_budget_counts_transcript_rows(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    _budget_store(pg_store)
    _configure(pg_store, max_disk_bytes=10**12, high_water_bytes=10**12)
    report = pg_store.maintain(mode="enforce", dry_run=True)
    assert report.diskBudget is not None
    rows = sum(_heads(pg_env, pg_schema).values())
    assert rows > 0
    assert report.diskBudget.totalBytesBefore == _index_bytes(pg_env, pg_schema) + rows


@pytest.mark.parametrize("active", [False, True])
def test_the_disk_budget_deletes_archives_first_then_the_oldest_session_and_its_rows(
    pg_store: SessionStore, pg_env: str, pg_schema: str, active: bool
) -> None:
    a, b, c, archive = _budget_store(pg_store)
    heads = _heads(pg_env, pg_schema)
    total = _index_bytes(pg_env, pg_schema) + sum(heads.values())
    # Over by one byte; the high-water mark asks for one byte more than the archive frees.
    _configure(pg_store, max_disk_bytes=total - 1, high_water_bytes=total - heads[archive] - 1)
    victim = b if active else a
    dry = pg_store.maintain(mode="enforce", dry_run=True, active_key=a if active else None)
    done = pg_store.maintain(mode="enforce", active_key=a if active else None)
    for report in (dry, done):
        assert [(x.key, x.action) for x in report.actions] == [(victim, "evict-budget")]
        assert report.removedFiles == [
            _label(pg_store, archive),
            _label(pg_store, f"s-{victim.rsplit(':', 1)[1]}"),
        ]
        assert report.diskBudget is not None and report.diskBudget.removedEntries == 1
        assert report.diskBudget.totalBytesBefore == total
    assert done.bytesFreed == dry.bytesFreed == heads[archive] + heads[f"s-{victim[11:]}"]
    assert done.archived == []  # evicted sessions' rows are deleted, as their files would be
    assert sorted(pg_store.load_all()) == sorted({a, b, c} - {victim})
    assert set(_heads(pg_env, pg_schema)) == set(heads) - {archive, f"s-{victim[11:]}"}
    assert pg_store.maintain(mode="enforce").diskBudget.overBudget is False  # type: ignore[union-attr]


def test_the_disk_budget_takes_archives_and_unreferenced_rows_oldest_first(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    now = now_ms()
    key = _session(pg_store, "live", now)
    older = _archived(pg_store, "s-older", "deleted", now - 5 * DAY)
    PostgresTranscript(_index(pg_store), "s-orphan").append(_user("no entry"))  # written now
    newer = _archived(pg_store, "s-newer", "reset", now + DAY)
    heads = _heads(pg_env, pg_schema)
    total = _index_bytes(pg_env, pg_schema) + sum(heads.values())
    high = total - heads[older] - heads["s-orphan"]
    _configure(pg_store, max_disk_bytes=total - 1, high_water_bytes=high)
    report = pg_store.maintain(mode="enforce")
    assert report.removedFiles == [_label(pg_store, older), _label(pg_store, "s-orphan")]
    assert report.actions == [] and pg_store.get(key) is not None
    assert set(_heads(pg_env, pg_schema)) == {"s-live", newer}


# --- the doctor ----------------------------------------------------------------------------------


def test_doctor_reports_orphan_rows_and_fix_archives_them(
    pg_store: SessionStore, pg_env: str, pg_schema: str
) -> None:
    now = now_ms()
    _session(pg_store, "kept", now)
    PostgresTranscript(_index(pg_store), "s-kept-topic-1").append(_user("topic of a live one"))
    index = _index(pg_store)
    PostgresTranscript(index, "s-lost").append(_user("no entry"))
    PostgresTranscript(index, "s-lost-topic-9").append(_user("no entry either"))
    _archived(pg_store, "s-old", "reset", now - DAY)  # archives are not orphans
    rows_before = _line_bytes(pg_env, pg_schema)
    found = [f for f in pg_store.check() if f.kind == "orphan-transcript"]
    assert [f.subject for f in found] == [
        _label(pg_store, "s-lost"),
        _label(pg_store, "s-lost-topic-9"),
    ]
    assert {f.severity for f in found} == {"info"}
    fixed = [f for f in pg_store.check(fix=True) if f.kind == "orphan-transcript"]
    assert [f.fixed for f in fixed] == [True, True]
    heads = _heads(pg_env, pg_schema)
    archived = sorted(n for n in heads if n.startswith("s-lost"))
    assert sorted(n.split(".deleted.")[0] for n in archived) == ["s-lost", "s-lost-topic-9"]
    # nothing was deleted: the same lines under the archive names
    assert sorted(_line_bytes(pg_env, pg_schema).values()) == sorted(rows_before.values())
    assert [f for f in pg_store.check() if f.kind == "orphan-transcript"] == []


def test_doctor_recounts_transcript_bytes_above_the_tables(pg_store: SessionStore) -> None:
    key = _session(pg_store, "drift", now_ms())
    good = pg_store.get(key)["transcriptBytes"]  # type: ignore[index]
    pg_store.update(key, {"transcriptBytes": good + 100})
    assert [f.kind for f in pg_store.check()] == ["message-count-drift"]
    assert [f.fixed for f in pg_store.check(fix=True)] == [True]
    assert pg_store.get(key)["transcriptBytes"] == good  # type: ignore[index]
    assert pg_store.check() == []


# --- batches ------------------------------------------------------------------------------------

STALE = 7


def _batch_store(store: SessionStore, now: int) -> list[str]:
    stale = [_session(store, f"old{i}", now - (40 + i) * DAY, lines=1) for i in range(STALE)]
    for i in range(3):
        _session(store, f"new{i}", now - i * DAY, lines=1)
    return stale


def _comparable(report: MaintenanceReport) -> dict[str, Any]:
    """The report without the archive times (two runs archive at different times)."""
    out = report.to_dict()
    out["archived"] = sorted(n.split(".deleted.")[0] for n in out["archived"])
    out["actions"] = sorted(str(a) for a in out["actions"])
    return out


def test_batched_maintenance_lets_a_writer_in_and_reports_what_one_batch_does(
    pg_store: SessionStore, pg_env: str, pg_schema: str, state_dir: Path
) -> None:
    now = now_ms()
    _batch_store(pg_store, now)
    index = _index(pg_store)
    index.maintenance_batch_rows = 10**6  # one batch
    single = pg_store.maintain(mode="enforce")
    assert single.pruned == STALE

    pg_empty(pg_schema)
    stale = _batch_store(pg_store, now)
    index.maintenance_batch_rows = 3
    events: list[str] = []
    other = sessionstore.open_store(state_dir=state_dir, store_type="postgres")

    def write() -> None:
        other.put("agent:main:writer", {"sessionId": "s-writer", "n": 1})
        events.append("write-done")

    def between_batches() -> None:
        events.append("batch")
        if events.count("batch") == 1:
            # The other store's write must complete while maintenance is between batches;
            # a lock kept across batches would leave it waiting (and the join below empty).
            writer = threading.Thread(target=write)
            writer.start()
            writer.join(timeout=120)
            assert not writer.is_alive(), "the writer waited for the whole maintenance run"

    index.maintenance_batch_hook = between_batches
    try:
        batched = pg_store.maintain(mode="enforce")
    finally:
        index.maintenance_batch_hook = None
        other.close()
    events.append("maintenance-done")
    assert events == ["batch", "write-done", "batch", "maintenance-done"]  # 3 + 3 + 1 rows
    assert _comparable(batched) == _comparable(single)
    written = pg_store.get("agent:main:writer")
    assert written is not None and (written["sessionId"], written["n"]) == ("s-writer", 1)
    assert not any(pg_store.get(k) for k in stale)


def test_sessions_written_between_batches_are_kept_with_their_rows(
    pg_store: SessionStore, pg_env: str, pg_schema: str, state_dir: Path
) -> None:
    stale = _batch_store(pg_store, now_ms())
    index = _index(pg_store)
    index.maintenance_batch_rows = 3
    touched: list[str] = []

    def between_batches() -> None:
        if touched:
            return
        with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as other:
            for key in stale:  # those not removed yet are written again
                if other.get(key) is not None:
                    other.update(key, {"updatedAt": now_ms()})
                    touched.append(key)

    index.maintenance_batch_hook = between_batches
    try:
        report = pg_store.maintain(mode="enforce")
    finally:
        index.maintenance_batch_hook = None
    assert len(touched) == STALE - 3
    assert report.pruned == 3 and report.afterCount == 3 + len(touched)
    assert sorted(a.key for a in report.actions) == sorted(set(stale) - set(touched))
    assert f"{len(touched)} session(s) changed by another writer" in report.warnings[0]
    heads = _heads(pg_env, pg_schema)
    for key in stale:
        sid = f"s-{key.rsplit(':', 1)[1]}"
        assert (sid in heads) is (key in touched)  # kept sessions keep their live rows
    assert len(report.archived) == 3
    assert sorted(pg_store.load_all()) == sorted(
        [*touched, "agent:main:new0", "agent:main:new1", "agent:main:new2"]
    )


def test_a_dry_run_is_a_read_only_transaction(pg_store: SessionStore, pg_env: str) -> None:
    _batch_store(pg_store, now_ms())
    index = _index(pg_store)
    calls: list[str] = []

    def hook() -> None:
        calls.append("batch")

    index.maintenance_batch_rows = 1
    index.maintenance_batch_hook = hook
    before = pg_store.load_all()
    report = pg_store.maintain(mode="enforce", dry_run=True)
    warn = pg_store.maintain(mode="warn")
    assert report.pruned == warn.pruned == STALE and calls == []
    assert pg_store.load_all() == before
    # the plan's transaction refuses writes: a dry run cannot change the store
    seen: list[bool] = []

    def probe(txn: Any) -> None:
        conn = txn.connection
        row = conn.execute("SHOW transaction_read_only").fetchone()
        seen.append(row[0] == "on")

    index.maintenance(probe, commit=False)
    assert seen == [True]
