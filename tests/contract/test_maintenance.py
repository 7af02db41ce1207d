"""Maintenance (spec 6 and 4A, issue 5) on every backend: prune, cap, archive, age out,
rotate, disk budget, warn mode, dry runs, ``fix_missing``, and the report.

Most tests take the ``store`` fixture (one run per backend). Settings are changed on the
open store (``store.config``) instead of through ``openclaw.json``, which
``tests/unit/test_maintain_every.py`` and the CLI tests cover. Ages are relative to a
``now`` taken at the start of a test; where a test needs them exact it passes ``now=`` to
``run_maintenance``. The sqlite scale tests at the end check that maintenance is SQL on
indexed columns and never loads an entry into Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

import sessionstore
from sessionstore import InvalidArgumentError, SessionStore
from sessionstore.clock import now_ms
from sessionstore.context import StoreContext
from sessionstore.entry import sort_time
from sessionstore.files import dumps_pretty
from sessionstore.index.base import MaintenanceTxn
from sessionstore.maintenance import DiskBudgetReport, MaintenanceReport, run_maintenance
from sessionstore.transcripts.naming import (
    is_archive_artifact,
    is_primary_transcript,
    parse_archive_name,
)

# Transcripts as files on every backend (a postgres store set to keep files); with the
# transcripts in the postgres table: tests/postgres/test_table_transcripts.py.
pytestmark = pytest.mark.usefixtures("pg_transcript_files")

DAY = 86_400_000
HOUR = 3_600_000
Entry = dict[str, Any]


# --- helpers -------------------------------------------------------------------------------


def configure(store: SessionStore, **settings: Any) -> None:
    """Change ``session.maintenance`` of an open store (MaintenanceConfig field names)."""
    store.config = replace(store.config, maintenance=replace(store.config.maintenance, **settings))


def sdir(store: SessionStore) -> Path:
    return store.paths.sessions_dir


def write_file(path: Path, size: int, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * (size - 1) + b"\n")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def add(
    store: SessionStore,
    key: str,
    *,
    now: int,
    age: int | None = None,
    sid: str | None = None,
    transcript: int | None = 200,
    mtime: float | None = None,
    **fields: Any,
) -> str:
    """Store a session ``age`` ms old (no ``updatedAt`` at all when age is None) and,
    unless ``transcript`` is None, a transcript of that many bytes. Returns the sessionId."""
    session_id = sid or str(uuid.uuid4())
    entry: Entry = {"sessionId": session_id, **fields}
    if age is None:
        store.mutate(lambda d: d.__setitem__(key, entry))
    else:
        entry["updatedAt"] = now - age
        store.put(key, entry)
    if transcript is not None:
        path = sdir(store) / f"{session_id}.jsonl"
        if not path.exists():
            write_file(path, transcript, mtime)
    return session_id


def stamp(ms: int) -> str:
    """An archive timestamp (ISO time with ``-`` for ``:``) for a time in ms."""
    when = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return when.strftime("%Y-%m-%dT%H-%M-%S.") + f"{ms % 1000:03d}Z"


_STAMP = re.compile(r"\.(deleted|reset|bak)\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d+)?Z$")


def unstamped(paths: list[str]) -> list[str]:
    """Archive paths with their timestamps blanked (runs at different times name them apart)."""
    return [_STAMP.sub(r".\1.<ts>", p) for p in paths]


def snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every dir and file under ``root``: kind, size and content hash.

    SQLite's ``-shm`` is left out: it is the shared-memory WAL index that every reader
    updates (read marks), not stored data; the database and its WAL are compared.
    """
    out: dict[str, tuple[str, int, str]] = {}
    for p in sorted(root.rglob("*")):
        if p.name.endswith("-shm"):
            continue
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir", 0, "")
        else:
            data = p.read_bytes()
            out[rel] = ("file", len(data), hashlib.sha256(data).hexdigest())
    return out


def actions(report: MaintenanceReport) -> list[tuple[str, str]]:
    return sorted((a.key, a.action) for a in report.actions)


def names(store: SessionStore) -> set[str]:
    return {p.name for p in sdir(store).iterdir()}


def projected_index(store: SessionStore) -> int:
    """What the disk budget counts for the index: the serialised store (json) or the live
    pages of the database (sqlite), the agent's rows and blobs (postgres: a row budget)."""
    if store.store_type == "json":
        return len(dumps_pretty(store.load_all()))
    if store.store_type == "postgres":
        return store.index.maintenance(lambda txn: txn.index_bytes(), commit=False)
    conn = store.index.connection()  # type: ignore[attr-defined]
    size, count, free = (
        int(conn.execute(f"PRAGMA {n}").fetchall()[0][0])
        for n in ("page_size", "page_count", "freelist_count")
    )
    return size * (count - free)


def other_files(store: SessionStore) -> int:
    """Bytes of the regular files directly in the sessions dir, the index files excepted."""
    skip = set(store.index.index_files())
    if not sdir(store).exists():
        return 0  # a postgres store without transcripts has no sessions dir
    return sum(
        p.stat().st_size
        for p in sdir(store).iterdir()
        if p.name not in skip and p.is_file() and not p.is_symlink()
    )


def dir_total(store: SessionStore) -> int:
    return projected_index(store) + other_files(store)


# --- file classification --------------------------------------------------------------------


def test_archive_names_and_classification() -> None:
    ms = int(datetime(2026, 3, 31, 12, 34, 56, 789_000, tzinfo=timezone.utc).timestamp() * 1000)
    assert parse_archive_name("a.jsonl.deleted.2026-03-31T12-34-56.789Z") == ("deleted", ms)
    assert parse_archive_name("a.jsonl.reset.2026-03-31T12-34-56Z") == ("reset", ms - 789)
    assert parse_archive_name("a-topic-7.jsonl.bak.2026-03-31T12-34-56.789Z") == ("bak", ms)
    assert parse_archive_name("sessions.json.bak.1774948529731") == ("bak", 1774948529731)
    assert parse_archive_name(f"x.jsonl.deleted.{stamp(ms)}") == ("deleted", ms)
    for name in (
        "a.jsonl",
        "sessions.json",
        "a.jsonl.deleted.yesterday",
        "a.jsonl.gone.2026-03-31T12-34-56Z",
        "sessions.json.bak.",
        "a.jsonl.deleted.2026-13-45T12-34-56Z",
    ):
        assert parse_archive_name(name) is None, name
        assert not is_archive_artifact(name)
    assert is_archive_artifact("sessions.json.bak.1")
    assert is_primary_transcript("abc.jsonl")
    assert is_primary_transcript("abc-topic-42.jsonl")
    assert not is_primary_transcript("abc.jsonl.deleted.2026-03-31T12-34-56Z")
    assert not is_primary_transcript("sessions.json")
    assert not is_primary_transcript("notes.txt")


# --- prune and cap -----------------------------------------------------------------------------


def test_prune_removes_31_day_old_and_keeps_1_day_old(store: SessionStore) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    old = add(store, "agent:main:old", now=now, age=31 * DAY, model="gpt-old")
    fresh = add(store, "agent:main:fresh", now=now, age=DAY)
    add(store, "agent:main:edge", now=now, age=30 * DAY - HOUR)
    d = sdir(store)
    before = now_ms()

    report = store.maintain()

    assert report.mode == "enforce" and report.applied and not report.dryRun
    assert report.storeType == store.store_type and report.agentId == "main"
    assert [(a.key, a.action, a.updatedAt, a.model, a.sessionId) for a in report.actions] == [
        ("agent:main:old", "prune-stale", now - 31 * DAY, "gpt-old", old)
    ]
    assert (report.beforeCount, report.afterCount) == (3, 2)
    assert (report.pruned, report.capped, report.evicted, report.missing) == (1, 0, 0, 0)
    assert sorted(store.load_all()) == ["agent:main:edge", "agent:main:fresh"]
    assert store.count() == 2
    # the pruned session's transcript is archived as .deleted.<ts>, never unlinked
    [archived] = [p for p in d.iterdir() if p.name.startswith(f"{old}.jsonl.deleted.")]
    assert report.archived == [str(archived)]
    info = parse_archive_name(archived.name)
    assert info is not None and info[0] == "deleted"
    assert before - 1000 <= info[1] <= now_ms() + 1000
    assert not (d / f"{old}.jsonl").exists()
    assert (d / f"{fresh}.jsonl").exists()
    assert report.removedFiles == [] and report.bytesFreed == 0
    assert report.rotatedTo is None and report.diskBudget is None
    assert report.warnings == [] and report.errors == []
    # a second run finds nothing to do
    again = store.maintain()
    assert again.actions == [] and not again.applied and again.archived == []
    assert (again.beforeCount, again.afterCount) == (2, 2)


def test_cap_5_to_3_keeps_the_newest(store: SessionStore) -> None:
    configure(store, mode="enforce", max_entries=5)
    now = now_ms()
    sids = [add(store, f"agent:main:k{i}", now=now, age=i * HOUR) for i in range(1, 6)]
    noop = store.maintain()
    assert noop.actions == [] and noop.capped == 0  # not over the cap: nothing at all
    configure(store, max_entries=3)

    report = store.maintain()

    assert actions(report) == [("agent:main:k4", "cap-overflow"), ("agent:main:k5", "cap-overflow")]
    assert (report.beforeCount, report.afterCount, report.pruned, report.capped) == (5, 3, 0, 2)
    assert sorted(store.load_all()) == ["agent:main:k1", "agent:main:k2", "agent:main:k3"]
    assert sorted(unstamped(report.archived)) == sorted(
        str(sdir(store) / f"{sid}.jsonl.deleted.<ts>") for sid in sids[3:]
    )


def test_entries_without_updated_at_survive_prune_and_go_first_on_cap(store: SessionStore) -> None:
    configure(store, mode="enforce", prune_after_ms=1)  # every dated entry is stale
    now = now_ms()
    add(store, "agent:main:undated-a", now=now)
    add(store, "agent:main:undated-b", now=now)
    assert "updatedAt" not in (store.get("agent:main:undated-a") or {})
    for i in range(3):
        add(store, f"agent:main:t{i}", now=now, age=(i + 1) * HOUR)

    plan = store.maintain(dry_run=True)
    assert actions(plan) == [(f"agent:main:t{i}", "prune-stale") for i in range(3)]

    configure(store, prune_after_ms=30 * DAY, max_entries=3)
    report = store.maintain()
    assert actions(report) == [
        ("agent:main:undated-a", "cap-overflow"),
        ("agent:main:undated-b", "cap-overflow"),
    ]
    assert [a.updatedAt for a in report.actions] == [None, None]
    assert sorted(store.load_all()) == ["agent:main:t0", "agent:main:t1", "agent:main:t2"]


def test_active_key_is_never_pruned_or_capped(store: SessionStore) -> None:
    configure(store, mode="enforce", max_entries=2)
    now = now_ms()
    active = add(store, "agent:main:active", now=now, age=90 * DAY)  # the oldest of all
    add(store, "agent:main:stale", now=now, age=40 * DAY)
    for i in (1, 2, 3):
        add(store, f"agent:main:f{i}", now=now, age=i * HOUR)

    report = store.maintain(active_key="  Agent:Main:ACTIVE ")

    assert actions(report) == [
        ("agent:main:f2", "cap-overflow"),
        ("agent:main:f3", "cap-overflow"),
        ("agent:main:stale", "prune-stale"),
    ]
    # the active session counts among the kept ones
    assert sorted(store.load_all()) == ["agent:main:active", "agent:main:f1"]
    assert (sdir(store) / f"{active}.jsonl").exists()
    # without it, it goes
    report = store.maintain()
    assert actions(report) == [("agent:main:active", "prune-stale")]
    assert sorted(store.load_all()) == ["agent:main:f1"]


def test_active_undated_key_survives_cap(store: SessionStore) -> None:
    configure(store, mode="enforce", max_entries=1)
    now = now_ms()
    add(store, "agent:main:undated", now=now)
    add(store, "agent:main:new", now=now, age=HOUR)
    add(store, "agent:main:newer", now=now, age=1)
    report = store.maintain(active_key="agent:main:undated")
    assert actions(report) == [
        ("agent:main:new", "cap-overflow"),
        ("agent:main:newer", "cap-overflow"),
    ]
    assert sorted(store.load_all()) == ["agent:main:undated"]


def _model(
    entries: dict[str, Entry], cutoff: int, max_entries: int, active: str | None
) -> tuple[set[str], set[str]]:
    """Spec 6 steps 1-2 with the active key protected; ties go by key, descending."""
    pruned = {
        k
        for k, e in entries.items()
        if isinstance(e.get("updatedAt"), int) and e["updatedAt"] < cutoff and k != active
    }
    left = [k for k in entries if k not in pruned]
    if len(left) <= max_entries:
        return pruned, set()
    left.sort(key=lambda k: (k == active, sort_time(entries[k]), k), reverse=True)
    return pruned, {k for k in left[max_entries:] if k != active}


def test_prune_and_cap_match_a_model(store: SessionStore) -> None:
    rng = random.Random(20260413)
    now = 1_780_000_000_000
    for round_ in range(30):
        entries: dict[str, Entry] = {}
        for i in range(rng.randint(0, 14)):
            e: Entry = {"sessionId": f"sid-{round_}-{i}"}
            if rng.random() > 0.15:  # ties on purpose: few distinct ages
                days = rng.choice([0, 1, 5, 29, 30, 31, 45])
                e["updatedAt"] = now - days * DAY - rng.choice([0, 0, 1])
            entries[f"agent:main:m{i:02d}"] = e
        max_entries = rng.randint(1, 10)
        prune_days = rng.choice([1, 30, 31])
        active = rng.choice([None, *entries]) if entries else None
        store.mutate(lambda d, fresh=entries: (d.clear(), d.update(fresh)))
        configure(store, max_entries=max_entries, prune_after_ms=prune_days * DAY)

        report = run_maintenance(StoreContext.of(store), mode="enforce", active_key=active, now=now)

        pruned, capped = _model(entries, now - prune_days * DAY, max_entries, active)
        context = (round_, entries, max_entries, prune_days, active)
        assert {a.key for a in report.actions if a.action == "prune-stale"} == pruned, context
        assert {a.key for a in report.actions if a.action == "cap-overflow"} == capped, context
        assert (report.pruned, report.capped) == (len(pruned), len(capped))
        assert set(store.load_all()) == set(entries) - pruned - capped, context
        assert (report.beforeCount, report.afterCount) == (
            len(entries),
            len(entries) - len(pruned) - len(capped),
        )


def test_unknown_mode_is_refused(store: SessionStore) -> None:
    now = now_ms()
    add(store, "agent:main:old", now=now, age=60 * DAY)
    with pytest.raises(InvalidArgumentError, match="warn or enforce"):
        store.maintain(mode="loud")  # type: ignore[arg-type]
    assert sorted(store.load_all()) == ["agent:main:old"]


# --- transcripts of removed sessions ----------------------------------------------------


def test_transcripts_archived_only_when_no_remaining_entry_references_them(
    store: SessionStore,
) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    d = sdir(store)
    shared = add(store, "agent:main:old-shared", now=now, age=40 * DAY)
    add(store, "agent:main:fresh-shared", now=now, age=HOUR, sid=shared)
    lone = add(store, "agent:main:old-lone", now=now, age=40 * DAY)
    topic = add(store, "agent:main:old-topic", now=now, age=40 * DAY)
    write_file(d / f"{topic}-topic-7.jsonl", 50)
    both = add(store, "agent:main:old-both-1", now=now, age=40 * DAY)
    add(store, "agent:main:old-both-2", now=now, age=41 * DAY, sid=both)
    shared_bytes = (d / f"{shared}.jsonl").read_bytes()

    report = store.maintain()

    assert actions(report) == [
        (k, "prune-stale")
        for k in (
            "agent:main:old-both-1",
            "agent:main:old-both-2",
            "agent:main:old-lone",
            "agent:main:old-shared",
            "agent:main:old-topic",
        )
    ]
    assert sorted(unstamped(report.archived)) == sorted(
        str(d / f"{n}.deleted.<ts>")
        for n in (f"{lone}.jsonl", f"{topic}.jsonl", f"{topic}-topic-7.jsonl", f"{both}.jsonl")
    )
    for path in report.archived:
        assert Path(path).exists()
    assert (d / f"{shared}.jsonl").read_bytes() == shared_bytes
    assert not any(n.startswith(f"{shared}.jsonl.") for n in names(store))
    for sid in (lone, topic, both):
        assert not (d / f"{sid}.jsonl").exists()
    assert sorted(store.load_all()) == ["agent:main:fresh-shared"]


def test_session_files_outside_the_sessions_dir_are_never_touched(
    store: SessionStore, state_dir: Path
) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    outside = write_file(state_dir / "elsewhere" / "external.jsonl", 300)
    sibling_sid = str(uuid.uuid4())
    sibling = write_file(state_dir / "agents" / "other" / "sessions" / f"{sibling_sid}.jsonl", 400)
    nested = write_file(sdir(store) / "nested" / "inner.jsonl", 500)
    add(
        store,
        "agent:main:external",
        now=now,
        age=40 * DAY,
        sessionFile=str(outside),
        transcript=None,
    )
    add(
        store,
        "agent:main:sibling",
        now=now,
        age=40 * DAY,
        sid=sibling_sid,
        sessionFile=str(sibling),
        transcript=None,
    )
    add(store, "agent:main:nested", now=now, age=40 * DAY, sessionFile=str(nested), transcript=None)
    before = snapshot(state_dir)

    report = store.maintain()

    assert report.pruned == 3 and store.count() == 0
    assert report.archived == [] and report.removedFiles == []
    after = snapshot(state_dir)
    for path in (outside, sibling, nested):
        rel = str(path.relative_to(state_dir))
        assert after[rel] == before[rel]
    assert sorted(p.name for p in outside.parent.iterdir()) == ["external.jsonl"]
    assert sorted(p.name for p in sibling.parent.iterdir()) == [f"{sibling_sid}.jsonl"]
    assert sorted(p.name for p in nested.parent.iterdir()) == ["inner.jsonl"]


# --- archives aged out ------------------------------------------------------------------


def _archives(store: SessionStore, now: int, **ages: int) -> dict[str, Path]:
    d = sdir(store)
    out = {}
    for label, age in ages.items():
        kind, _, name = label.partition("_")
        if kind == "backup":
            path = d / f"sessions.json.bak.{now - age}"
        else:
            path = d / f"{name}.jsonl.{kind}.{stamp(now - age)}"
        out[label] = write_file(path, 100 + len(out))
    return out


def test_archives_are_aged_out_by_their_own_retention(store: SessionStore) -> None:
    configure(store, mode="enforce")  # pruneAfter 30d; resetArchiveRetention = pruneAfter
    now = now_ms()
    add(store, "agent:main:fresh", now=now, age=HOUR)
    files = _archives(
        store,
        now,
        deleted_old=31 * DAY,
        deleted_new=29 * DAY,
        reset_old=31 * DAY,
        reset_new=29 * DAY,
        bak_ancient=400 * DAY,
        backup_ancient=400 * DAY,
    )
    files["topic"] = write_file(sdir(store) / f"t-topic-3.jsonl.deleted.{stamp(now - 45 * DAY)}", 7)

    report = store.maintain()

    gone = ["deleted_old", "reset_old", "topic"]
    assert sorted(report.removedFiles) == sorted(str(files[k]) for k in gone)
    assert report.bytesFreed == 100 + 102 + 7  # deleted_old, reset_old, topic
    for label, path in files.items():
        assert path.exists() == (label not in gone), label
    assert report.actions == [] and report.applied and report.archived == []
    assert sorted(store.load_all()) == ["agent:main:fresh"]


def test_reset_archive_retention(store: SessionStore) -> None:
    configure(store, mode="enforce", reset_archive_retention_ms=10 * DAY)
    now = now_ms()
    files = _archives(
        store, now, reset_11d=11 * DAY, reset_9d=9 * DAY, deleted_11d=11 * DAY, bak_11d=11 * DAY
    )
    report = store.maintain()
    assert report.removedFiles == [str(files["reset_11d"])]
    assert sorted(p.name for p in files.values() if p.exists()) == sorted(
        files[k].name for k in ("reset_9d", "deleted_11d", "bak_11d")
    )


def test_reset_archives_kept_when_retention_is_false(store: SessionStore) -> None:
    configure(store, mode="enforce", reset_archive_retention_ms=None)
    now = now_ms()
    files = _archives(store, now, reset_old=400 * DAY, deleted_old=400 * DAY)
    # nothing archived and no reset retention: the archives are not even looked at (spec 6.4)
    report = store.maintain()
    assert report.removedFiles == [] and all(p.exists() for p in files.values())
    # once something is archived, .deleted. archives age out; .reset. ones still stay
    add(store, "agent:main:old", now=now, age=40 * DAY)
    report = store.maintain()
    assert report.pruned == 1 and len(report.archived) == 1
    assert report.removedFiles == [str(files["deleted_old"])]
    assert files["reset_old"].exists()


# --- rotation (sessions.json only) ---------------------------------------------------------


def test_json_rotation_copies_and_keeps_three_backups(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sessionstore.maintenance as maintenance

    store = sessionstore.open_store(state_dir=state_dir, store_type="json")
    with store:
        configure(store, mode="enforce", rotate_bytes=100)
        now = now_ms()
        for i in range(3):
            add(store, f"agent:main:fresh{i}", now=now, age=HOUR, label="x" * 50)
        add(store, "agent:main:old", now=now, age=40 * DAY)
        d = sdir(store)
        live = store.paths.json_path
        for off in (4000, 3000, 2000, 1000):
            write_file(d / f"sessions.json.bak.{now - off}", 10 + off // 1000)
        before = live.read_bytes()

        touched: list[tuple[str, str]] = []
        real_rename, real_unlink, real_write = os.rename, os.unlink, maintenance.atomic_write

        def rename(src: Any, dst: Any, *a: Any, **k: Any) -> None:
            touched.append(("rename", str(src)))
            real_rename(src, dst, *a, **k)

        def unlink(path: Any, *a: Any, **k: Any) -> None:
            touched.append(("unlink", str(path)))
            real_unlink(path, *a, **k)

        def write(path: Path, data: bytes, **k: Any) -> None:
            assert live.exists(), "the live sessions.json vanished during rotation"
            real_write(path, data, **k)

        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "unlink", unlink)
        monkeypatch.setattr(maintenance, "atomic_write", write)
        report = run_maintenance(StoreContext.of(store), now=now)
        monkeypatch.undo()

        backup = d / f"sessions.json.bak.{now}"
        assert report.rotatedTo == str(backup)
        assert backup.read_bytes() == before  # the store as it was, copied
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        assert sorted(report.removedFiles) == [
            str(d / f"sessions.json.bak.{now - 4000}"),
            str(d / f"sessions.json.bak.{now - 3000}"),
        ]
        assert sorted(n for n in names(store) if n.startswith("sessions.json.bak.")) == [
            f"sessions.json.bak.{now - 2000}",
            f"sessions.json.bak.{now - 1000}",
            f"sessions.json.bak.{now}",
        ]
        assert not any(str(live) == path for _, path in touched)
        assert live.read_bytes() == dumps_pretty(store.load_all())
        assert sorted(store.load_all()) == [f"agent:main:fresh{i}" for i in range(3)]

        # still over rotateBytes: the next run rotates again and still keeps three
        later = run_maintenance(StoreContext.of(store), now=now + 5)
        assert later.rotatedTo == str(d / f"sessions.json.bak.{now + 5}")
        assert later.removedFiles == [str(d / f"sessions.json.bak.{now - 2000}")]
        assert (d / f"sessions.json.bak.{now + 5}").read_bytes() == live.read_bytes()
        assert live.read_bytes() == dumps_pretty(store.load_all())


def test_sqlite_never_rotates(state_dir: Path) -> None:
    store = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    with store:
        configure(store, mode="enforce", rotate_bytes=1)
        now = now_ms()
        add(store, "agent:main:a", now=now, age=HOUR)
        add(store, "agent:main:old", now=now, age=40 * DAY)
        d = sdir(store)
        leftover = write_file(store.paths.json_path, 5000)  # e.g. the migration source
        for off in (4000, 3000, 2000, 1000):
            write_file(d / f"sessions.json.bak.{now - off}", 10)
        before = {n for n in names(store) if n.startswith("sessions.json")}
        report = run_maintenance(StoreContext.of(store), now=now)
        assert report.rotatedTo is None and report.removedFiles == []
        assert report.pruned == 1
        assert {n for n in names(store) if n.startswith("sessions.json")} == before
        assert leftover.stat().st_size == 5000


# --- disk budget ----------------------------------------------------------------------------


def test_disk_budget_deletes_artifacts_oldest_first_then_evicts_oldest_entries(
    store: SessionStore, state_dir: Path
) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    d = sdir(store)
    base = now / 1000 - 10 * 86400
    # referenced transcripts are the oldest files of all: mtime alone never makes them go
    sids = {
        name: add(
            store, f"agent:main:{name}", now=now, age=age, transcript=20_000, mtime=base - 500
        )
        for name, age in (("e0", 10 * DAY), ("e1", 3 * DAY), ("e2", 2 * DAY), ("e3", HOUR))
    }
    orphan = write_file(d / f"{uuid.uuid4()}.jsonl", 10_000, base + 10)
    deleted = write_file(d / f"gone.jsonl.deleted.{stamp(now - DAY)}", 10_000, base + 20)
    backup = write_file(d / f"sessions.json.bak.{now - DAY}", 10_000, base + 30)
    reset = write_file(d / f"prev.jsonl.reset.{stamp(now - DAY)}", 10_000, base + 40)
    notes = write_file(d / "notes.txt", 3000, base - 1000)  # never removed: not an artifact
    outside = [
        write_file(state_dir / "outside.bin", 50_000, base - 9000),
        write_file(d / "nested" / f"x.jsonl.deleted.{stamp(now - DAY)}", 50_000, base - 9000),
        write_file(state_dir / "agents" / "other" / "sessions" / "y.jsonl", 50_000, base - 9000),
    ]
    outside_before = {p: p.read_bytes() for p in outside}

    total = dir_total(store)
    configure(store, max_disk_bytes=10**12, high_water_bytes=8 * 10**11)
    calm = store.maintain(dry_run=True)
    assert calm.diskBudget == DiskBudgetReport(total, total, 0, 0, 0, 10**12, 8 * 10**11, False)
    assert calm.actions == [] and calm.removedFiles == []

    # step 1: two artifacts are enough, oldest mtime first; no entry is touched
    configure(store, max_disk_bytes=total - 1, high_water_bytes=total - 15_000)
    report = store.maintain(active_key="agent:main:e0")
    assert report.removedFiles == [str(orphan), str(deleted)]
    assert report.bytesFreed == 20_000
    assert report.diskBudget == DiskBudgetReport(
        total, total - 20_000, 2, 0, 20_000, total - 1, total - 15_000, True
    )
    assert report.actions == [] and report.evicted == 0
    assert store.count() == 4
    assert dir_total(store) == total - 20_000

    # step 2: the remaining artifacts go first, then the oldest entries but the active one
    total = dir_total(store)
    configure(store, max_disk_bytes=total - 1, high_water_bytes=total - 50_000)
    report = store.maintain(active_key="agent:main:e0")
    assert [(a.key, a.action) for a in report.actions] == [
        ("agent:main:e1", "evict-budget"),
        ("agent:main:e2", "evict-budget"),
    ]
    assert report.removedFiles == [
        str(backup),
        str(reset),
        str(d / f"{sids['e1']}.jsonl"),
        str(d / f"{sids['e2']}.jsonl"),
    ]
    assert report.bytesFreed == 60_000 and report.evicted == 2
    assert (report.beforeCount, report.afterCount) == (4, 2)
    budget = report.diskBudget
    assert budget is not None
    assert (budget.removedFiles, budget.removedEntries, budget.overBudget) == (4, 2, True)
    assert budget.totalBytesAfter == dir_total(store) <= total - 50_000
    assert budget.freedBytes == total - budget.totalBytesAfter
    assert sorted(store.load_all()) == ["agent:main:e0", "agent:main:e3"]
    assert (d / f"{sids['e0']}.jsonl").exists() and (d / f"{sids['e3']}.jsonl").exists()
    assert notes.exists() and report.archived == []
    assert {p: p.read_bytes() for p in outside} == outside_before


def test_disk_budget_deletes_a_transcript_when_its_last_reference_goes(
    store: SessionStore,
) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    d = sdir(store)
    shared = add(store, "agent:main:a", now=now, age=5 * DAY, transcript=30_000)
    add(store, "agent:main:b", now=now, age=4 * DAY, sid=shared)
    own = add(store, "agent:main:c", now=now, age=HOUR, transcript=1000)
    total = dir_total(store)
    configure(store, max_disk_bytes=total - 1, high_water_bytes=total - 10_000)

    report = store.maintain()

    assert [(a.key, a.action) for a in report.actions] == [
        ("agent:main:a", "evict-budget"),
        ("agent:main:b", "evict-budget"),
    ]
    assert report.removedFiles == [str(d / f"{shared}.jsonl")]
    assert sorted(store.load_all()) == ["agent:main:c"]
    assert (d / f"{own}.jsonl").exists()


def test_disk_budget_evicts_no_more_entries_than_needed(
    store: SessionStore, state_dir: Path, tmp_path: Path
) -> None:
    """Index-heavy sessions (no transcripts): the oldest go, and only as many as it takes
    to get under the high-water mark, as measured (sqlite frees whole pages)."""
    configure(store, mode="enforce")
    now = now_ms()
    for i in range(40):
        add(
            store,
            f"agent:main:e{i:02d}",
            now=now,
            age=(100 - i) * HOUR,
            transcript=None,
            # incompressible: the sqlite backend stores entries deflated
            notes=f"{i}:" + random.Random(i).randbytes(1500).hex(),
        )
    total = dir_total(store)
    high = total - 40_000
    # the minimum, found on a copy by deleting the oldest one at a time (on postgres, in a
    # transaction rolled back: the server is shared, there is no file to copy)
    store.close()
    if store.store_type == "postgres":
        with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as copy:

            def count_needed(txn: MaintenanceTxn) -> int:
                n = 0
                while txn.index_bytes() + other_files(copy) > high:
                    txn.remove([f"agent:main:e{n:02d}"])
                    n += 1
                return n

            needed = copy.index.maintenance(count_needed, commit=False)
    else:
        shutil.copytree(state_dir, tmp_path / "copy")
        with sessionstore.open_store(
            state_dir=tmp_path / "copy", store_type=store.store_type
        ) as copy:  # type: ignore[arg-type]
            needed = 0
            while dir_total(copy) > high:
                copy.delete(f"agent:main:e{needed:02d}")
                needed += 1
    store = sessionstore.open_store(state_dir=state_dir, store_type=store.store_type)  # type: ignore[arg-type]
    with store:
        configure(store, mode="enforce", max_disk_bytes=total - 1, high_water_bytes=high)

        report = store.maintain()

        assert 5 < needed < 35
        assert [(a.key, a.action) for a in report.actions] == [
            (f"agent:main:e{i:02d}", "evict-budget") for i in range(needed)
        ]
        assert store.count() == 40 - needed
        budget = report.diskBudget
        assert budget is not None and budget.removedEntries == needed
        assert budget.totalBytesAfter == dir_total(store) <= high


@pytest.mark.parametrize("backend", ["json", "sqlite"], indirect=True)  # files only
def test_disk_budget_counts_the_projected_index_not_a_stale_file(store: SessionStore) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    for i in range(3):
        add(store, f"agent:main:k{i}", now=now, age=(i + 1) * HOUR, transcript=1000)
    if store.store_type == "json":
        # the same store, serialised with 300 KB of trailing whitespace
        live = store.paths.json_path
        live.write_bytes(dumps_pretty(store.load_all()) + b" " * 300_000)
    else:
        # 1 MB of rows, deleted: free pages the file keeps until a VACUUM
        for i in range(200):
            store.put(f"agent:main:big{i}", {"notes": "n" * 5000})
        for i in range(200):
            store.delete(f"agent:main:big{i}")
    on_disk = sum(p.stat().st_size for p in sdir(store).iterdir() if p.is_file())
    projected = dir_total(store)
    assert on_disk > projected + 250_000
    configure(store, max_disk_bytes=projected + 100, high_water_bytes=projected)
    loaded = store.load_all()

    report = store.maintain()

    assert report.diskBudget == DiskBudgetReport(
        projected, projected, 0, 0, 0, projected + 100, projected, False
    )
    assert report.actions == [] and report.removedFiles == [] and report.warnings == []
    assert not report.applied and store.load_all() == loaded
    # a run that removes nothing writes nothing: not even a normalised sessions.json
    assert sum(p.stat().st_size for p in sdir(store).iterdir() if p.is_file()) == on_disk


def test_disk_budget_never_evicts_for_files_it_may_not_remove(store: SessionStore) -> None:
    configure(store, mode="enforce")
    now = now_ms()
    add(store, "agent:main:a", now=now, age=HOUR)
    d = sdir(store)
    artifact = write_file(d / f"x.jsonl.deleted.{stamp(now - DAY)}", 2000)
    write_file(d / "huge.bin", 100_000)
    configure(store, max_disk_bytes=50_000, high_water_bytes=40_000)

    report = store.maintain()

    assert report.removedFiles == [str(artifact)]
    assert report.actions == [] and store.count() == 1
    [warning] = report.warnings
    assert "never removes" in warning and "huge.bin" in warning


def test_warn_mode_reports_the_budget_but_changes_nothing(
    store: SessionStore, state_dir: Path
) -> None:
    now = now_ms()
    add(store, "agent:main:old", now=now, age=3 * DAY, transcript=20_000)
    add(store, "agent:main:new", now=now, age=HOUR, transcript=20_000)
    total = dir_total(store)
    configure(store, mode="warn", max_disk_bytes=total - 1, high_water_bytes=total - 1)
    before, loaded = snapshot(state_dir), store.load_all()

    report = store.maintain()

    assert snapshot(state_dir) == before and store.load_all() == loaded
    assert not report.applied
    assert [(a.key, a.action) for a in report.actions] == [("agent:main:old", "evict-budget")]
    budget = report.diskBudget
    assert budget is not None and budget.overBudget and budget.totalBytesBefore == total
    [warning] = report.warnings
    assert "over its budget" in warning and "nothing was removed" in warning


# --- warn mode and dry runs change nothing, and report what enforce does -------------------


def _rich_scenario(store: SessionStore, state_dir: Path, now: int) -> dict[str, str]:
    """Every kind of action at once; returns the sessionIds by name."""
    d = sdir(store)
    base = now / 1000 - 100_000
    sids = {
        # the stale transcript is the oldest file: archived, then deleted by the budget
        "stale": add(store, "agent:main:stale", now=now, age=40 * DAY, transcript=8000, mtime=base),
    }
    for i in range(1, 6):
        sids[f"fresh{i}"] = add(
            store, f"agent:main:fresh{i}", now=now, age=i * HOUR, transcript=1000, mtime=base + 50
        )
    sids["stale2"] = add(store, "agent:main:stale2", now=now, age=35 * DAY, sid=sids["fresh1"])
    sids["undated"] = add(store, "agent:main:undated", now=now, transcript=1000, mtime=base + 50)
    write_file(d / f"a.jsonl.deleted.{stamp(now - 40 * DAY)}", 300, base + 60)
    write_file(d / f"b.jsonl.reset.{stamp(now - 40 * DAY)}", 300, base + 60)
    write_file(d / f"c.jsonl.deleted.{stamp(now - DAY)}", 300, base + 60)
    write_file(d / f"d.jsonl.bak.{stamp(now - 90 * DAY)}", 300, base + 60)
    write_file(state_dir / "outside.bin", 5000, base - 100)
    if store.store_type == "json":
        for off in (4000, 3000, 2000, 1000):
            write_file(d / f"sessions.json.bak.{now - off}", 50, base + 70)
    configure(store, max_entries=3, rotate_bytes=100)
    return sids


def _same_plan(a: MaintenanceReport, b: MaintenanceReport) -> None:
    assert [vars(x) for x in a.actions] == [vars(x) for x in b.actions]
    for name in ("beforeCount", "afterCount", "missing", "pruned", "capped", "evicted"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("bytesFreed", "rotatedTo", "diskBudget"):
        assert getattr(a, name) == getattr(b, name), name
    assert unstamped(a.archived) == unstamped(b.archived)
    assert unstamped(a.removedFiles) == unstamped(b.removedFiles)


def test_warn_and_dry_run_change_nothing_and_report_what_enforce_does(
    store: SessionStore, state_dir: Path
) -> None:
    now = now_ms()
    sids = _rich_scenario(store, state_dir, now)
    active = "agent:main:fresh5"
    configure(store, max_disk_bytes=10**12, high_water_bytes=10**12)
    calm = run_maintenance(
        StoreContext.of(store), mode="enforce", dry_run=True, active_key=active, now=now
    )
    assert calm.diskBudget is not None
    budget = calm.diskBudget.totalBytesBefore
    configure(store, max_disk_bytes=budget - 1, high_water_bytes=budget - 1)
    before, loaded = snapshot(state_dir), store.load_all()

    warn = run_maintenance(StoreContext.of(store), mode="warn", active_key=active, now=now)
    assert snapshot(state_dir) == before and store.load_all() == loaded
    dry = run_maintenance(
        StoreContext.of(store), mode="enforce", dry_run=True, active_key=active, now=now
    )
    assert snapshot(state_dir) == before and store.load_all() == loaded
    done = run_maintenance(StoreContext.of(store), mode="enforce", active_key=active, now=now)

    assert (warn.applied, dry.applied, done.applied) == (False, False, True)
    assert (warn.mode, warn.dryRun, dry.mode, dry.dryRun) == ("warn", False, "enforce", True)
    assert len(warn.warnings) == 1 and "over its budget" in warn.warnings[0]
    _same_plan(warn, done)
    _same_plan(dry, done)

    d = sdir(store)
    assert actions(done) == [
        ("agent:main:fresh3", "cap-overflow"),
        ("agent:main:fresh4", "cap-overflow"),
        ("agent:main:stale", "prune-stale"),
        ("agent:main:stale2", "prune-stale"),
        ("agent:main:undated", "cap-overflow"),
    ]
    assert (done.beforeCount, done.afterCount, done.pruned, done.capped) == (8, 3, 2, 3)
    assert sorted(store.load_all()) == ["agent:main:fresh1", "agent:main:fresh2", active]
    assert sorted(unstamped(done.archived)) == sorted(
        str(d / f"{sids[k]}.jsonl.deleted.<ts>") for k in ("stale", "fresh3", "fresh4", "undated")
    )
    stale_archive = next(p for p in done.archived if Path(p).name.startswith(sids["stale"]))
    expected_removed = [
        str(d / f"a.jsonl.deleted.{stamp(now - 40 * DAY)}"),
        str(d / f"b.jsonl.reset.{stamp(now - 40 * DAY)}"),
    ]
    if store.store_type == "json":
        assert done.rotatedTo == str(d / f"sessions.json.bak.{now}")
        expected_removed += [
            str(d / f"sessions.json.bak.{now - 4000}"),
            str(d / f"sessions.json.bak.{now - 3000}"),
        ]
    else:
        assert done.rotatedTo is None
    expected_removed.append(stale_archive)  # the budget: oldest mtime first
    assert done.removedFiles == expected_removed
    assert done.bytesFreed == 300 + 300 + 8000 + (100 if store.store_type == "json" else 0)
    assert done.diskBudget is not None and done.diskBudget.removedFiles == 1
    assert not Path(stale_archive).exists()
    assert (d / f"{sids['fresh1']}.jsonl").exists()  # still referenced by fresh1
    assert (state_dir / "outside.bin").stat().st_size == 5000


def test_dry_run_in_enforce_mode_config_changes_nothing(
    store: SessionStore, state_dir: Path
) -> None:
    configure(store, mode="enforce", max_entries=1)
    now = now_ms()
    add(store, "agent:main:a", now=now, age=40 * DAY)
    add(store, "agent:main:b", now=now, age=2 * HOUR)
    add(store, "agent:main:c", now=now, age=HOUR)
    before, loaded = snapshot(state_dir), store.load_all()
    report = store.maintain(dry_run=True)
    assert snapshot(state_dir) == before and store.load_all() == loaded
    assert report.dryRun and not report.applied and report.would_mutate
    assert actions(report) == [("agent:main:a", "prune-stale"), ("agent:main:b", "cap-overflow")]
    doc = report.to_dict()
    assert doc["wouldMutate"] is True and doc["dryRun"] is True
    assert [a["action"] for a in doc["actions"]] == ["prune-stale", "cap-overflow"]
    assert set(doc) >= {
        "agentId",
        "storePath",
        "mode",
        "beforeCount",
        "afterCount",
        "missing",
        "pruned",
        "capped",
        "diskBudget",
        "archived",
        "removedFiles",
        "bytesFreed",
    }


# --- fix_missing ----------------------------------------------------------------------------


def test_fix_missing_removes_entries_without_a_transcript(
    store: SessionStore, state_dir: Path
) -> None:
    configure(store, mode="warn")
    now = now_ms()
    d = sdir(store)
    add(store, "agent:main:present", now=now, age=HOUR)
    add(store, "agent:main:custom", now=now, age=HOUR, sessionFile="renamed.jsonl", transcript=None)
    write_file(d / "renamed.jsonl", 10)
    lost = add(store, "agent:main:lost", now=now, age=2 * HOUR, transcript=None, messageCount=3)
    add(store, "agent:main:active-lost", now=now, age=3 * HOUR, transcript=None, messageCount=1)
    # created by put and never appended to: it claims no transcript, so none is missing
    add(store, "agent:main:just-created", now=now, age=HOUR, transcript=None)
    add(store, "agent:main:stale", now=now, age=40 * DAY)
    before, loaded = snapshot(state_dir), store.load_all()

    plan = store.maintain(dry_run=True, fix_missing=True, active_key="agent:main:active-lost")
    assert snapshot(state_dir) == before and store.load_all() == loaded
    assert plan.missing == 1 and not plan.applied
    assert actions(plan) == [
        ("agent:main:lost", "prune-missing"),
        ("agent:main:stale", "prune-stale"),
    ]

    # warn mode still applies fix_missing (as upstream); the rest is only reported
    report = store.maintain(fix_missing=True, active_key="agent:main:active-lost")
    assert report.applied and report.mode == "warn" and report.missing == 1
    assert [
        (a.key, a.action, a.sessionId) for a in report.actions if a.action == "prune-missing"
    ] == [("agent:main:lost", "prune-missing", lost)]
    assert actions(report) == actions(plan)
    assert (report.beforeCount, report.afterCount) == (6, 4)
    assert sorted(store.load_all()) == [
        "agent:main:active-lost",
        "agent:main:custom",
        "agent:main:just-created",
        "agent:main:present",
        "agent:main:stale",
    ]
    assert (d / "renamed.jsonl").exists() and store.get("agent:main:custom") is not None

    # enforce without fix_missing leaves entries without transcripts alone
    report = store.maintain(mode="enforce")
    assert actions(report) == [("agent:main:stale", "prune-stale")]
    report = store.maintain(mode="enforce", fix_missing=True)
    assert actions(report) == [("agent:main:active-lost", "prune-missing")]
    assert sorted(store.load_all()) == [
        "agent:main:custom",
        "agent:main:just-created",
        "agent:main:present",
    ]


# --- reap_cron: OpenClaw's cron run-session reaper -----------------------------------------


def _cron_sessions(store: SessionStore, now: int) -> dict[str, str]:
    """Cron runs and their neighbours, by role -> sessionId."""
    shared = str(uuid.uuid4())
    return {
        "old-run": add(store, "agent:main:cron:nightly:run:r1", now=now, age=25 * HOUR),
        "young-run": add(store, "agent:main:cron:nightly:run:r2", now=now, age=23 * HOUR),
        # the job's own session is not a run: only `...:cron:<job>:run:<id>` keys are reaped
        "job": add(store, "agent:main:cron:nightly", now=now, age=25 * HOUR),
        "other": add(store, "agent:main:telegram:direct:42", now=now, age=25 * HOUR),
        # a run whose transcript a live session still names is reaped, its file kept
        "shared-run": add(
            store, "agent:main:cron:hourly:run:r9", now=now, age=30 * HOUR, sid=shared
        ),
        "shared-live": add(store, "agent:main:shared-live", now=now, age=HOUR, sid=shared),
        # without a numeric updatedAt a run is kept, as upstream
        "timeless-run": add(store, "agent:main:cron:hourly:run:r0", now=now, age=None),
        "other-agent-run": add(store, "agent:ops:cron:nightly:run:r3", now=now, age=48 * HOUR),
    }


def test_reap_cron_removes_old_runs_and_archives_their_transcripts(
    store: SessionStore, state_dir: Path
) -> None:
    configure(store, mode="warn")
    now = now_ms()
    d = sdir(store)
    sids = _cron_sessions(store, now)
    before, loaded = snapshot(state_dir), store.load_all()
    reaped = [
        ("agent:main:cron:hourly:run:r9", "prune-cron"),
        ("agent:main:cron:nightly:run:r1", "prune-cron"),
        ("agent:ops:cron:nightly:run:r3", "prune-cron"),
    ]

    # without reap_cron nothing of it happens (all are younger than pruneAfter)
    assert store.maintain(mode="enforce", dry_run=True).actions == []

    plan = store.maintain(dry_run=True, reap_cron=True)
    assert snapshot(state_dir) == before and store.load_all() == loaded
    assert actions(plan) == reaped and plan.reaped == 3 and not plan.applied

    # warn mode applies it, as upstream runs the reaper whatever the maintenance mode
    report = store.maintain(reap_cron=True)
    assert report.applied and report.mode == "warn" and report.reaped == 3
    assert actions(report) == reaped
    assert (report.beforeCount, report.afterCount) == (8, 5)
    assert sorted(store.load_all()) == [
        "agent:main:cron:hourly:run:r0",
        "agent:main:cron:nightly",
        "agent:main:cron:nightly:run:r2",
        "agent:main:shared-live",
        "agent:main:telegram:direct:42",
    ]
    archived = sorted(unstamped(report.archived))
    assert archived == sorted(
        unstamped(
            [str(p) for p in d.iterdir() if p.name.startswith(f"{sids['old-run']}.jsonl.deleted.")]
            + [
                str(p)
                for p in d.iterdir()
                if p.name.startswith(f"{sids['other-agent-run']}.jsonl.deleted.")
            ]
        )
    )
    assert len(archived) == 2
    assert not (d / f"{sids['old-run']}.jsonl").exists()
    assert (d / f"{sids['shared-live']}.jsonl").exists()  # still named by a live session
    assert (d / f"{sids['young-run']}.jsonl").exists()
    assert store.maintain(dry_run=True, reap_cron=True).actions == []


@pytest.mark.parametrize(
    ("setting", "reaped"),
    [
        ("48", []),  # a bare number in a string means hours
        ("20h", ["agent:main:cron:nightly:run:r1", "agent:main:cron:nightly:run:r2"]),
        ("1d", ["agent:main:cron:nightly:run:r1"]),
        (False, []),  # the reaper is off
        ("soon", ["agent:main:cron:nightly:run:r1"]),  # not a duration: upstream's 24h
        (100, ["agent:main:cron:nightly:run:r1"]),  # numbers are not honoured: 24h
    ],
)
def test_reap_cron_follows_cron_session_retention(
    state_dir: Path, backend: str, setting: object, reaped: list[str]
) -> None:
    (state_dir / "openclaw.json").write_bytes(orjson.dumps({"cron": {"sessionRetention": setting}}))
    with sessionstore.open_store(agent="main", state_dir=state_dir, store_type=backend) as store:  # type: ignore[arg-type]
        now = now_ms()
        add(store, "agent:main:cron:nightly:run:r1", now=now, age=25 * HOUR)
        add(store, "agent:main:cron:nightly:run:r2", now=now, age=21 * HOUR)
        report = store.maintain(mode="enforce", reap_cron=True)
        assert sorted(a.key for a in report.actions) == reaped
        assert report.reaped == len(reaped)


_FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
_RUN_KEY = re.compile(r"^agent:[^:]+:cron:[^:]+:run:[^:]+$")


def _reaped_by_upstream(store_doc: dict[str, Any], now: int, retention: int) -> set[str]:
    """The keys OpenClaw's reaper deletes from ``store_doc`` (written from its source: keys
    matched trimmed and lowercased, a truthy numeric ``updatedAt`` older than the cutoff)."""
    return {
        key
        for key, entry in store_doc.items()
        if _RUN_KEY.match(key.strip().lower())
        and isinstance(entry.get("updatedAt"), (int, float))
        and not isinstance(entry.get("updatedAt"), bool)
        and entry["updatedAt"]
        and entry["updatedAt"] < now - retention
    }


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_reap_cron_on_a_store_openclaw_wrote(tmp_path: Path, kind: str) -> None:
    # sessions.json as the gateway writes it (JSON.stringify(store, null, 2)) from the
    # real-shaped fixtures, cron runs among them (one under a legacy mixed-case key), each
    # with a transcript the gateway wrote and the sessionFile it records.
    from gateway_files import GatewayWriter

    now = now_ms()
    base = next(iter(orjson.loads((_FIXTURES / "typical-entry.json").read_bytes()).values()))
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    ages = {
        "agent:main:cron:nightly:run:2026-12-01": 3 * DAY,
        "Agent:Main:Cron:Nightly:Run:Legacy": 2 * DAY,
        "agent:main:cron:nightly:run:fresh": HOUR,
        "agent:main:cron:nightly": 3 * DAY,
        "agent:main:telegram:direct:7": 3 * DAY,
    }
    doc: dict[str, Any] = {}
    for i, (key, age) in enumerate(ages.items()):
        sid = str(uuid.uuid4())
        path = sessions / f"{sid}.jsonl"
        writer = GatewayWriter(path, sid, seed=i)
        writer.write([writer.header(), writer.message("run")[1]])
        doc[key] = dict(base, sessionId=sid, sessionFile=str(path), updatedAt=now - age)
    (sessions / "sessions.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
    expected = _reaped_by_upstream(doc, now, 24 * HOUR)
    assert len(expected) == 2  # the model and the data agree on what the test is about

    with sessionstore.open_store(state_dir=tmp_path, store_type=kind) as store:  # type: ignore[arg-type]
        report = run_maintenance(StoreContext.of(store), reap_cron=True, now=now)
        assert {a.key.lower() for a in report.actions} == {k.lower() for k in expected}
        assert report.reaped == 2 and report.applied and report.mode == "warn"
        left = {k.lower() for k in store.load_all()}
    assert left == {k.lower() for k in doc} - {k.lower() for k in expected}
    for key in doc:
        sid = doc[key]["sessionId"]
        archived = list(sessions.glob(f"{sid}.jsonl.deleted.*"))
        assert (sessions / f"{sid}.jsonl").exists() == (key not in expected)
        assert len(archived) == (key in expected)


# --- sqlite at scale: SQL on indexed columns, no entry loaded --------------------------------


def _bulk_sessions(store: SessionStore, old: int, new: int, now: int) -> None:
    """``old`` sessions 40+ days old and ``new`` fresh ones, written in one transaction
    through the backend's own row encoding."""
    from sessionstore.index import sqlite as backend

    sql = f"INSERT INTO sessions ({backend._ROW_COLUMNS}) VALUES ({', '.join('?' * 30)})"

    def rows() -> Iterator[tuple[Any, ...]]:
        for i in range(old + new):
            updated = now - 40 * DAY - i if i < old else now - (i - old)
            entry = {"sessionId": f"bulk-{i:07d}", "updatedAt": updated}
            yield backend._encode(f"agent:main:bulk:{i:07d}", entry, now=now).params

    with store.index.write_transaction() as conn:  # type: ignore[attr-defined]
        conn.executemany(sql, rows())


@contextmanager
def _entries_never_loaded(store: SessionStore) -> Iterator[set[str]]:
    """Fail on any decode of an entry; collect the SQL that runs."""
    from sessionstore.index import sqlite as backend

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("an entry was loaded into Python during maintenance")

    class GuardedOrjson:
        def __getattr__(self, name: str) -> Any:
            return getattr(orjson, name)

        @staticmethod
        def loads(data: Any) -> Any:
            raw = data.encode() if isinstance(data, str) else bytes(data)
            if b'"sessionId"' in raw:
                refuse()
            return orjson.loads(data)

    def row_trace(_cursor: Any, row: Any) -> Any:
        for value in row:
            if isinstance(value, (bytes, memoryview)) or (
                isinstance(value, str) and '"sessionId"' in value
            ):
                refuse()
        return row

    statements: set[str] = set()

    def exec_trace(_cursor: Any, sql: str, _bindings: Any) -> bool:
        statements.add(sql)
        return True

    conn = store.index.connection()  # type: ignore[attr-defined]
    with pytest.MonkeyPatch.context() as mp:
        for name in ("_decode", "load_all", "materialize", "get", "list", "mutate", "modify"):
            mp.setattr(backend.SqliteIndex, name, refuse)
        mp.setattr(backend, "orjson", GuardedOrjson())
        conn.exec_trace, conn.row_trace = exec_trace, row_trace
        try:
            yield statements
        finally:
            conn.exec_trace = conn.row_trace = None


def _check_statements(store: SessionStore, statements: set[str], *, scans: bool = False) -> None:
    """No statement reads ``entry_json`` but for one field or its length, and (unless
    ``scans``) none walks a whole table or index."""
    conn = store.index.connection()  # type: ignore[attr-defined]
    for sql in statements:
        rest = sql.replace("entry_field(entry_json, 'sessionFile')", "").replace(
            "length(entry_json)", ""
        )
        assert "entry_json" not in rest and "SELECT *" not in sql.upper(), sql
        if scans or not re.match(r"\s*(SELECT|DELETE|UPDATE|INSERT)", sql, re.I):
            continue
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?")).fetchall()
        for row in plan:
            assert not str(row[-1]).startswith("SCAN"), (sql, plan)


def _prune_at_scale(state_dir: Path, total: int) -> None:
    old, new = total // 2, total - total // 2
    store = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    with store:
        now = now_ms()
        configure(store, mode="enforce", max_entries=10 * total)
        blob_x = {"skills": ["x" * 200], "version": 1}
        blob_y = {"skills": ["y" * 200], "version": 2}
        for key, age, fields in (
            ("agent:main:blob-old-1", 40 * DAY, {"skillsSnapshot": blob_x}),
            ("agent:main:blob-old-2", 41 * DAY, {"skillsSnapshot": blob_x}),
            ("agent:main:blob-old-3", 42 * DAY, {"skillsSnapshot": blob_y}),
            ("agent:main:blob-new", HOUR, {"skillsSnapshot": blob_x, "systemPromptReport": blob_y}),
        ):
            store.put(key, {"updatedAt": now - age, **fields})
        _bulk_sessions(store, old, new, now)
        assert store.count() == total + 4

        with _entries_never_loaded(store) as statements:
            report = store.maintain()

        _check_statements(store, statements)
        assert (report.beforeCount, report.afterCount) == (total + 4, new + 1)
        assert report.pruned == old + 3 and report.capped == 0 and len(report.actions) == old + 3
        assert store.count() == new + 1
        conn = store.index.connection()  # type: ignore[attr-defined]
        assert conn.execute("SELECT count(*) FROM sessions").fetchall() == [(new + 1,)]
        assert conn.execute(
            "SELECT count(*) FROM sessions WHERE updated_at < ?", (now - 30 * DAY,)
        ).fetchall() == [(0,)]
        blobs = dict(conn.execute("SELECT digest, refcount FROM blobs").fetchall())
        refs = dict(
            conn.execute(
                "SELECT j.value, count(*) FROM sessions, json_each(sessions.blob_refs) AS j"
                " WHERE blob_refs IS NOT NULL GROUP BY j.value"
            ).fetchall()
        )
        assert blobs == refs and sorted(blobs.values()) == [1, 1]
        entry = store.get("agent:main:blob-new")
        assert entry is not None
        assert entry["skillsSnapshot"] == blob_x and entry["systemPromptReport"] == blob_y


def test_sqlite_prunes_10000_of_20000_without_loading_entries(state_dir: Path) -> None:
    _prune_at_scale(state_dir, 20_000)


def test_sqlite_cap_and_budget_never_load_entries(state_dir: Path) -> None:
    old, new = 1000, 1000
    store = sessionstore.open_store(state_dir=state_dir, store_type="sqlite")
    with store:
        now = now_ms()
        _bulk_sessions(store, old, new, now)
        configure(store, mode="enforce", max_entries=500)
        configure(store, max_disk_bytes=10**12, high_water_bytes=10**12)
        calm = store.maintain(dry_run=True)
        assert calm.diskBudget is not None
        size = calm.diskBudget.totalBytesBefore
        configure(store, max_disk_bytes=size - 1, high_water_bytes=size - 20_000)

        with _entries_never_loaded(store) as statements:
            report = store.maintain()

        _check_statements(store, statements, scans=True)
        assert (report.pruned, report.capped) == (old, 500)
        evicted = [a.key for a in report.actions if a.action == "evict-budget"]
        assert 0 < len(evicted) < 500 and report.evicted == len(evicted)
        # the oldest of the 500 kept go first: the highest numbers among the newest
        assert evicted == [f"agent:main:bulk:{old + 499 - i:07d}" for i in range(len(evicted))]
        assert store.count() == report.afterCount == 500 - len(evicted)
        budget = report.diskBudget
        assert budget is not None and budget.totalBytesAfter == dir_total(store) <= size - 20_000
        kept = {r["key"] for r in store.list(limit=1000)}
        assert kept == {f"agent:main:bulk:{old + i:07d}" for i in range(500 - len(evicted))}


def _slow_selected(request: pytest.FixtureRequest) -> bool:
    expr = str(request.config.getoption("-m") or "")
    launch_env: dict[str, str] = request.getfixturevalue("launch_env")
    return ("slow" in expr and "not slow" not in expr) or bool(launch_env.get("SESSIONSTORE_SLOW"))


@pytest.mark.slow
def test_sqlite_prunes_100000_of_200000_without_loading_entries(
    state_dir: Path, request: pytest.FixtureRequest
) -> None:
    if not _slow_selected(request):
        pytest.skip("slow tier: select with -m slow (or SESSIONSTORE_SLOW=1)")
    _prune_at_scale(state_dir, 200_000)
