"""Integration tests: sessions.json -> SQLite migration, export, auto-migration, kill -9.

The state dirs come from ``sessionstore.bench.generate`` (several agents, typical and ~40 KB
entries, legacy fields, mixed-case duplicate keys, numeric thread ids). What a migration
must produce is computed here independently of ``migrate.py`` and ``entry.py``: for each
canonical key, the freshest raw variant as the model of OpenClaw's rules loads it
(``tests/model/openclaw_rules.py``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import sessionstore
from hermetic import clean_env
from model.openclaw_rules import load_entry
from sessionstore.bench.generate import (
    GeneratedAgent,
    GeneratedState,
    bloated_entry,
    generate_state_dir,
    mixed_case_variant,
    skill_catalogs,
    typical_entry,
)
from sessionstore.entry import json_equal
from sessionstore.errors import MigrationError, SessionStoreError
from sessionstore.files import dumps_pretty
from sessionstore.index.sqlite import SqliteIndex
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import export_entries, migrate_agent, peek_database

Entry = dict[str, Any]
NOW = 1_775_000_000_000
AGENTS = ("main", "ops", "family")


# --- helpers -----------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and dir under root: name -> (content digest or "dir", mode)."""
    out: dict[str, tuple[str, int]] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        st = p.lstat()
        out[rel] = ("dir" if p.is_dir() else sha256(p), st.st_mode)
    return out


def expected_entries(agent: GeneratedAgent) -> dict[str, Entry]:
    """Canonical key -> the freshest raw variant as OpenClaw loads it (the rules' model)."""
    best: dict[str, Entry] = {}
    for key, entry in agent.entries.items():
        canonical = key.strip().lower()
        current = best.get(canonical)
        if current is not None:
            assert current["updatedAt"] != entry["updatedAt"], "generator made a tie"
        if current is None or entry["updatedAt"] > current["updatedAt"]:
            best[canonical] = entry
    return {k: load_entry(copy.deepcopy(e)) for k, e in best.items()}


def paths_of(root: Path, agent: str = "main") -> Any:
    return resolve_store_paths(root, agent)


def db_files(root: Path, agent: str = "main") -> list[Path]:
    sqlite = paths_of(root, agent).sqlite_path
    return [p for p in (sqlite, Path(f"{sqlite}-wal"), Path(f"{sqlite}-shm")) if p.exists()]


def load_sqlite(root: Path, agent: str = "main") -> dict[str, Entry]:
    with sessionstore.open_store(agent=agent, state_dir=root, store_type="sqlite") as store:
        assert store.store_type == "sqlite"
        return dict(store.load_all())  # type: ignore[arg-type]


def assert_same(got: dict[str, Entry], expected: dict[str, Entry]) -> None:
    assert sorted(got) == sorted(expected)
    different = [k for k in expected if not json_equal(got[k], expected[k])]
    assert not different, f"{len(different)} entries differ, e.g. {different[:3]}"


@pytest.fixture
def realistic(tmp_path: Path) -> GeneratedState:
    return generate_state_dir(
        tmp_path / "state",
        sessions=120,
        agents=AGENTS,
        bloated_ratio=0.3,
        seed=7,
        legacy_fields=True,
        mixed_case_duplicates=10,
        now_ms=NOW,
    )


# --- the generator itself (every test below relies on what it writes) ------------------------


def test_generator_writes_sessions_json_as_openclaw_does(realistic: GeneratedState) -> None:
    for agent_id, agent in realistic.agents.items():
        path = realistic.root / "agents" / agent_id / "sessions" / "sessions.json"
        assert agent.json_path == path
        raw = path.read_bytes()
        assert raw == dumps_pretty(agent.entries)  # 2-space indent, keys in order
        assert not raw.endswith(b"\n")
        assert raw.startswith(b'{\n  "agent:')
        assert path.stat().st_mode & 0o777 == 0o600
        assert list(orjson.loads(raw)) == list(agent.entries)
        assert len(expected_entries(agent)) == 120
        assert len(agent.entries) == 130


def test_generator_is_deterministic(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> dict[str, str]:
        g = generate_state_dir(
            tmp_path / name,
            sessions=60,
            agents=("main", "ops"),
            seed=seed,
            legacy_fields=True,
            mixed_case_duplicates=5,
            transcripts=True,
            now_ms=NOW,
        )
        root = g.root
        digests = {}
        for p in sorted(root.rglob("*")):
            if p.is_file():
                # paths inside the files name the root: compare with it replaced
                text = p.read_bytes().replace(str(root).encode(), b"<root>")
                digests[str(p.relative_to(root))] = hashlib.sha256(text).hexdigest()
        return digests

    a, b, c = run("a", 1), run("b", 1), run("c", 2)
    assert a == b
    assert len(a) > 100  # two sessions.json files and transcripts
    assert a != c


def test_generator_entries_are_realistic(realistic: GeneratedState) -> None:
    main = realistic.agents["main"]
    entries = main.entries
    keys = list(entries)
    patterns = {
        "main": r"^agent:main:main$",
        "per-peer": r"^agent:main:direct:[^:]+$",
        "per-channel-peer": r"^agent:main:(telegram|whatsapp|signal|discord):direct:[^:]+$",
        "whatsapp group": r"^agent:main:whatsapp:group:\d+@g\.us$",
        "discord channel": r"^agent:main:discord:channel:\d+$",
        "slack channel": r"^agent:main:slack:channel:c0[a-z0-9]+$",
        "slack thread": r"^agent:main:slack:channel:c0[a-z0-9]+:thread:\d+\.\d{6}$",
        "telegram topic": r"^agent:main:telegram:group:-100\d+:topic:\d+$",
        "subagent": r"^agent:main:subagent:[0-9a-f-]{36}$",
        "cron job": r"^agent:main:cron:[0-9a-f-]{36}$",
        "cron run": r"^agent:main:cron:[0-9a-f-]{36}:run:[0-9a-f-]{36}$",
        "dashboard": r"^agent:main:dashboard:[0-9a-f-]{36}$",
    }
    for name, pattern in patterns.items():
        assert any(re.match(pattern, k) for k in keys), f"no {name} key"
    other = realistic.agents["ops"].entries
    assert all(k.lower().startswith("agent:ops:") for k in other)

    sizes = {k: len(dumps_pretty({k: e})) for k, e in entries.items() if k not in main.variants}
    bloated = [k for k in sizes if "skillsSnapshot" in entries[k]]
    typical = [k for k in sizes if k not in bloated]
    assert len(bloated) == 36  # 30% of 120
    assert 900 <= sum(sizes[k] for k in typical) / len(typical) <= 2_000
    # Skill paths hold the state dir: measured as if it were ~/.openclaw (the temporary
    # dir's length varies, e.g. under a pytest-xdist worker).
    home = str(realistic.root)
    for k in bloated:
        snap_text = dumps_pretty({k: {"skillsSnapshot": entries[k]["skillsSnapshot"]}})
        snap = len(snap_text.replace(home.encode(), b"/home/user/.openclaw"))
        report = len(dumps_pretty({k: {"systemPromptReport": entries[k]["systemPromptReport"]}}))
        assert 33_000 <= snap <= 42_000
        assert 4_000 <= report <= 25_000
    catalogs = {orjson.dumps(entries[k]["skillsSnapshot"]) for k in bloated}
    assert 2 <= len(catalogs) <= 4  # a few catalogs, shared by many sessions
    reports = {orjson.dumps(entries[k]["systemPromptReport"]) for k in bloated}
    assert len(reports) == len(bloated)  # per session

    times = [e["updatedAt"] for e in entries.values()]
    assert all(isinstance(t, int) for t in times)
    assert min(times) >= NOW - 43 * 86_400_000
    assert max(times) <= NOW
    assert max(times) - min(times) > 20 * 86_400_000
    threads = [e["lastThreadId"] for e in entries.values() if "lastThreadId" in e]
    assert any(type(t) is int for t in threads)
    assert any(isinstance(t, str) and re.fullmatch(r"\d+\.\d{6}", t) for t in threads)

    legacy = [e for e in entries.values() if {"provider", "lastProvider", "room"} & e.keys()]
    assert legacy and len(legacy) < len(entries) / 2
    for name in ("provider", "lastProvider", "room"):
        assert any(name in e for e in legacy), name

    assert len(main.variants) == 10
    for variant, canonical in main.variants.items():
        assert variant != canonical and variant.lower() == canonical
        assert variant == mixed_case_variant(canonical)
        assert entries[variant]["updatedAt"] != entries[canonical]["updatedAt"]
    fresher = [
        v for v, c in main.variants.items() if entries[v]["updatedAt"] > entries[c]["updatedAt"]
    ]
    assert 0 < len(fresher) < len(main.variants)

    # entries without legacy fields are already as OpenClaw saves them (normalised)
    plain = [e for e in entries.values() if e not in legacy]
    assert all(json_equal(load_entry(e), e) for e in plain)


def test_generator_transcripts_are_pi_v3(tmp_path: Path) -> None:
    g = generate_state_dir(tmp_path / "s", sessions=40, seed=3, transcripts=True, now_ms=NOW)
    agent = g.agents["main"]
    assert len(agent.transcripts) == 40
    by_id = {e["sessionId"]: e for e in agent.entries.values()}
    for path in agent.transcripts:
        assert path.parent == agent.sessions_dir
        assert path.stat().st_mode & 0o777 == 0o600
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        lines = [orjson.loads(line) for line in raw.splitlines()]
        header = lines[0]
        assert header["type"] == "session" and header["version"] == 3
        entry = by_id[header["id"]]
        assert path.name.startswith(header["id"])
        if "sessionFile" in entry:
            assert entry["sessionFile"] == str(path)
        assert lines[1]["type"] == "model_change" and lines[1]["parentId"] is None
        roles = []
        for prev, line in itertools.pairwise(lines[1:]):
            assert re.fullmatch(r"[0-9a-f]{8}", line["id"])
            assert line["parentId"] == prev["id"]
            roles.append(line["message"]["role"])
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert set(roles) <= {"user", "assistant", "toolResult"}
        assert len({line["id"] for line in lines[1:]}) == len(lines) - 1
    topic = [p for p in agent.transcripts if "-topic-" in p.name]
    assert topic


def test_generator_makes_as_many_sessions_as_asked(tmp_path: Path) -> None:
    g = generate_state_dir(tmp_path / "s", sessions=1_000, seed=5, now_ms=NOW)
    assert len(g.agents["main"].entries) == 1_000


def test_entry_helpers() -> None:
    rng = random.Random(3)
    key, entry = typical_entry(rng, agent_id="Ops Team", now_ms=NOW)
    assert key.startswith("agent:ops-team:")
    assert 400 <= len(dumps_pretty({key: entry})) <= 2_500
    assert "skillsSnapshot" not in entry
    assert json_equal(load_entry(entry), entry)
    assert NOW - 43 * 86_400_000 <= entry["updatedAt"] <= NOW
    catalog = skill_catalogs(rng, count=1)[0]
    key, entry = bloated_entry(rng, now_ms=NOW, catalog=catalog)
    assert entry["skillsSnapshot"] is catalog.snapshot
    assert entry["systemPromptReport"]["sessionKey"] == key
    assert 40_000 <= len(dumps_pretty({key: entry})) <= 70_000
    assert json_equal(load_entry(entry), entry)


def test_generator_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_state_dir(tmp_path, sessions=5, mixed_case_duplicates=6)
    with pytest.raises(ValueError):
        generate_state_dir(tmp_path, sessions=5, bloated_ratio=1.5)
    with pytest.raises(ValueError):
        generate_state_dir(tmp_path, sessions=-1)


# --- lossless migration ------------------------------------------------------------------------


def test_migration_is_lossless(realistic: GeneratedState) -> None:
    root = realistic.root
    for agent_id, agent in realistic.agents.items():
        expected = expected_entries(agent)
        assert any(type(e.get("lastThreadId")) is int for e in expected.values())
        result = migrate_agent(paths_of(root, agent_id))
        assert result.status == "migrated", result.message
        assert result.migratedCount == len(expected) == result.sourceEntries
        assert result.existingCount == 0
        assert "10 mixed-case duplicate keys folded" in result.message
        got = load_sqlite(root, agent_id)
        assert_same(got, expected)
        with sessionstore.open_store(agent=agent_id, state_dir=root) as store:  # auto -> sqlite
            assert store.store_type == "sqlite"
            assert store.count() == len(expected)
            for variant, canonical in agent.variants.items():
                # a lookup by the legacy spelling finds the folded, freshest entry
                assert json_equal(store.get(variant), expected[canonical])
            # legacy fields were migrated, not carried over
            assert not any({"provider", "lastProvider", "room"} & e.keys() for e in got.values())


def test_migration_of_a_bloated_store_stores_shared_blobs_once(tmp_path: Path) -> None:
    g = generate_state_dir(tmp_path / "s", sessions=400, bloated_ratio=0.5, seed=11, now_ms=NOW)
    expected = expected_entries(g.agents["main"])
    result = migrate_agent(paths_of(g.root))
    assert result.migratedCount == 400
    got = load_sqlite(g.root)
    assert_same(got, expected)
    # the shared skill catalogs are stored once, not once per session
    db = paths_of(g.root).sqlite_path.stat().st_size
    assert db < g.agents["main"].json_path.stat().st_size / 2


def test_dry_run_writes_nothing(realistic: GeneratedState) -> None:
    root = realistic.root
    before = tree_state(root)
    for agent_id, agent in realistic.agents.items():
        result = migrate_agent(paths_of(root, agent_id), dry_run=True)
        assert result.status == "would_migrate"
        assert result.migratedCount == len(expected_entries(agent))
    assert tree_state(root) == before
    assert not db_files(root)
    # a dry run against an existing (migrated) database writes nothing either
    migrate_agent(paths_of(root))
    before = tree_state(root)
    result = migrate_agent(paths_of(root), dry_run=True)
    assert result.status == "skipped"
    result = migrate_agent(paths_of(root), dry_run=True, force=True)
    assert result.status == "would_migrate"
    assert tree_state(root) == before


@pytest.mark.parametrize(
    "damage",
    [
        # A truncated file is tested on a small store: the JSON5 fallback parser needs
        # about 12 s per MB to reject it (reported as a performance problem).
        pytest.param(lambda raw: raw[: len(raw) - 40], id="truncated"),
        pytest.param(lambda raw: raw.replace(b'"updatedAt": ', b'"updatedAt" ', 1), id="syntax"),
        pytest.param(lambda raw: raw.replace(b"}", b"},", 1), id="trailing-comma-garbage"),
        pytest.param(lambda raw: b"[1, 2, 3]", id="array-root"),
        pytest.param(lambda raw: b'"just a string"', id="string-root"),
    ],
)
def test_corrupt_source_fails_and_creates_no_database(tmp_path: Path, damage: Any) -> None:
    g = generate_state_dir(
        tmp_path / "state",
        sessions=6,
        agents=("main", "ops"),
        bloated_ratio=0.0,
        seed=4,
        legacy_fields=True,
        mixed_case_duplicates=1,
        now_ms=NOW,
    )
    root = g.root
    source = paths_of(root).json_path
    source.write_bytes(damage(source.read_bytes()))
    digest = sha256(source)
    before = tree_state(root)
    with pytest.raises(MigrationError) as info:
        migrate_agent(paths_of(root))
    message = str(info.value)
    assert str(source) in message
    assert "\n" not in message
    assert not db_files(root)
    assert tree_state(root) == before
    assert sha256(source) == digest
    with pytest.raises(MigrationError):
        migrate_agent(paths_of(root), dry_run=True)
    assert tree_state(root) == before
    # the other agent still migrates
    assert migrate_agent(paths_of(root, "ops")).status == "migrated"


def test_corrupt_large_source_fails_fast_when_damage_is_early(
    realistic: GeneratedState,
) -> None:
    root = realistic.root
    source = paths_of(root).json_path
    source.write_bytes(source.read_bytes().replace(b'"updatedAt": ', b'"updatedAt" ', 1))
    before = tree_state(root)
    with pytest.raises(MigrationError, match=r"line 4"):
        migrate_agent(paths_of(root))
    assert tree_state(root) == before


def test_second_run_changes_nothing(realistic: GeneratedState) -> None:
    root = realistic.root
    first = migrate_agent(paths_of(root))
    assert first.status == "migrated"
    before = tree_state(root)
    count_before = peek_database(paths_of(root).sqlite_path)
    assert count_before is not None
    second = migrate_agent(paths_of(root))
    assert second.status == "skipped"
    assert second.migratedCount == 0
    assert second.existingCount == first.migratedCount
    assert second.sourceChanged is False
    assert tree_state(root) == before
    assert peek_database(paths_of(root).sqlite_path) == count_before


def test_changed_source_is_reported_and_force_reimports(realistic: GeneratedState) -> None:
    root = realistic.root
    paths = paths_of(root)
    agent = realistic.agents["main"]
    assert migrate_agent(paths).status == "migrated"
    with sessionstore.open_store(agent="main", state_dir=root) as store:
        info = store.info()
        assert info.sourceChangedSinceMigration is False
        assert info.migration is not None
        assert info.migration["sha256"] == sha256(paths.json_path)
        # a write made in SQLite after the migration (newer than anything in sessions.json)
        store.update("agent:main:main", {"label": "written-in-sqlite"})

    changed = dict(agent.entries)
    changed["agent:main:telegram:direct:4242"] = {"sessionId": "new-1", "updatedAt": NOW}
    target = next(k for k in changed if k != "agent:main:main" and k not in agent.variants)
    target_entry = dict(changed[target], label="changed-in-json", updatedAt=NOW + 1)
    changed[target] = target_entry
    changed["agent:main:main"] = dict(changed["agent:main:main"], label="stale-json")
    paths.json_path.write_bytes(dumps_pretty(changed))

    result = migrate_agent(paths)
    assert result.status == "skipped"
    assert result.sourceChanged is True
    assert "--force" in result.message
    with sessionstore.open_store(agent="main", state_dir=root) as store:
        assert store.info().sourceChangedSinceMigration is True
        assert store.get("agent:main:telegram:direct:4242") is None

    forced = migrate_agent(paths, force=True)
    assert forced.status == "migrated"
    assert forced.sourceChanged is False
    with sessionstore.open_store(agent="main", state_dir=root) as store:
        info = store.info()
        assert info.sourceChangedSinceMigration is False
        assert info.migration is not None and info.migration["sha256"] == sha256(paths.json_path)
        new = store.get("agent:main:telegram:direct:4242")
        assert new is not None and new["sessionId"] == "new-1"
        got_target = store.get(target)
        assert got_target is not None and got_target["label"] == "changed-in-json"
        main = store.get("agent:main:main")
        assert main is not None and main["label"] == "written-in-sqlite"  # newer one kept
        assert store.count() == len(expected_entries(agent)) + 1
    assert migrate_agent(paths).status == "skipped"


def test_sessions_json_is_never_modified(realistic: GeneratedState) -> None:
    root = realistic.root
    paths = paths_of(root)

    def fingerprint() -> tuple[str, int, int, int]:
        st = paths.json_path.stat()
        return sha256(paths.json_path), st.st_mtime_ns, st.st_mode, st.st_ino

    before = fingerprint()
    migrate_agent(paths, dry_run=True)
    migrate_agent(paths)
    migrate_agent(paths)
    migrate_agent(paths, force=True)
    with sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite") as store:
        store.put("agent:main:main", {"label": "x"})
        store.delete(next(iter(realistic.agents["main"].entries)))
    assert fingerprint() == before
    # and nothing is left beside it (no temp files, backups or locks)
    names = {p.name for p in paths.sessions_dir.iterdir()}
    assert names <= {
        "sessions.json",
        "sessions.sqlite",
        "sessions.sqlite-wal",
        "sessions.sqlite-shm",
    }


def test_export_then_migrate_round_trips(realistic: GeneratedState, tmp_path: Path) -> None:
    root = realistic.root
    migrate_agent(paths_of(root))
    first = load_sqlite(root)
    fresh = tmp_path / "fresh"
    out = fresh / "agents" / "main" / "sessions" / "sessions.json"
    assert export_entries(first, out) == len(first)
    assert out.stat().st_mode & 0o777 == 0o600
    raw = out.read_bytes()
    assert raw == dumps_pretty(first) and not raw.endswith(b"\n")
    with pytest.raises(SessionStoreError, match="already exists"):
        export_entries(first, out)
    assert out.read_bytes() == raw
    result = migrate_agent(paths_of(fresh))
    assert result.status == "migrated" and result.migratedCount == len(first)
    assert_same(load_sqlite(fresh), first)
    assert_same(first, expected_entries(realistic.agents["main"]))
    # the exported file is also readable by the json backend, unchanged
    with sessionstore.open_store(agent="main", state_dir=fresh, store_type="json") as store:
        assert_same(dict(store.load_all()), first)  # type: ignore[arg-type]


def test_empty_and_missing_sources(tmp_path: Path) -> None:
    root = tmp_path / "state"
    result = migrate_agent(paths_of(root))
    assert result.status == "no_data"
    assert not db_files(root)
    source = paths_of(root).json_path
    source.parent.mkdir(parents=True)
    for text in (b"", b"{}", b"[]"):
        source.write_bytes(text)
        assert migrate_agent(paths_of(root), dry_run=True).status == "no_data"
        assert not db_files(root)


def test_non_object_entries_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "state"
    source = paths_of(root).json_path
    source.parent.mkdir(parents=True)
    source.write_bytes(
        dumps_pretty(
            {
                "agent:main:main": {"sessionId": "s1", "updatedAt": NOW},
                "agent:main:broken": "not an entry",
            }
        )
    )
    result = migrate_agent(paths_of(root))
    assert result.status == "migrated" and result.migratedCount == 1
    assert "agent:main:broken" in result.message
    assert list(load_sqlite(root)) == ["agent:main:main"]


# --- auto-migration on open --------------------------------------------------------------------


def test_open_sqlite_migrates_sessions_json_on_first_open(realistic: GeneratedState) -> None:
    root = realistic.root
    paths = paths_of(root, "ops")
    digest = sha256(paths.json_path)
    expected = expected_entries(realistic.agents["ops"])
    # "auto" keeps using sessions.json when only it exists: nothing is created
    with sessionstore.open_store(agent="ops", state_dir=root) as store:
        assert store.store_type == "json"
        assert store.get("agent:ops:main") is not None
    assert not db_files(root, "ops")
    with sessionstore.open_store(agent="ops", state_dir=root, store_type="sqlite") as store:
        assert store.store_type == "sqlite"
        assert store.count() == len(expected)
        assert_same(dict(store.load_all()), expected)  # type: ignore[arg-type]
        record = store.info().migration
        assert record is not None and record["sha256"] == digest
    assert sha256(paths.json_path) == digest
    # the next open does not import again
    before = peek_database(paths.sqlite_path)
    with sessionstore.open_store(agent="ops", state_dir=root, store_type="sqlite") as store:
        assert store.count() == len(expected)
    assert peek_database(paths.sqlite_path) == before


def test_open_sqlite_with_corrupt_json_fails_until_fixed(realistic: GeneratedState) -> None:
    root = realistic.root
    paths = paths_of(root)
    good = paths.json_path.read_bytes()
    bad = good.replace(b'"sessionId": ', b'"sessionId" ', 1)  # line 3: found at once
    paths.json_path.write_bytes(bad)
    with pytest.raises(MigrationError, match=r"sessions\.json"):
        sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite")
    assert paths.json_path.read_bytes() == bad  # left untouched
    peek = peek_database(paths.sqlite_path)
    assert peek is None or peek == (0, None)  # nothing imported, nothing recorded
    with pytest.raises(MigrationError):  # the failure is not remembered as "done"
        sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite")
    paths.json_path.write_bytes(good)
    with sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite") as store:
        expected = expected_entries(realistic.agents["main"])
        assert store.count() == len(expected)
        assert_same(dict(store.load_all()), expected)  # type: ignore[arg-type]


def test_failed_auto_migration_does_not_hide_sessions_json_from_auto(tmp_path: Path) -> None:
    g = generate_state_dir(tmp_path / "state", sessions=10, seed=8, now_ms=NOW)
    source = g.agents["main"].json_path
    good = source.read_bytes()
    source.write_bytes(good.replace(b'"updatedAt": ', b'"updatedAt" ', 1))
    with pytest.raises(MigrationError):
        sessionstore.open_store(agent="main", state_dir=g.root, store_type="sqlite")
    source.write_bytes(good)
    with sessionstore.open_store(agent="main", state_dir=g.root) as store:
        assert store.count() == 10


def test_existing_database_without_record_needs_force(tmp_path: Path) -> None:
    g = generate_state_dir(tmp_path / "state", sessions=30, seed=9, now_ms=NOW)
    root = g.root
    paths = paths_of(root)
    source = paths.json_path.read_bytes()
    paths.json_path.unlink()
    first_key = next(iter(g.agents["main"].entries))
    with sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite") as store:
        store.put("agent:main:only-in-sqlite", {"sessionId": "db-1", "updatedAt": NOW})
        store.put(first_key, {"sessionId": "db-2", "updatedAt": NOW + 10})
    paths.json_path.write_bytes(source)
    before = tree_state(root)
    result = migrate_agent(paths)
    assert result.status == "skipped"
    assert result.existingCount == 2
    assert "--force" in result.message
    assert tree_state(root) == before
    with sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite") as store:
        assert store.count() == 2  # the sqlite store opened as is: no import behind its back
    result = migrate_agent(paths, force=True)
    assert result.status == "migrated"
    assert result.migratedCount == 29  # the entry newer in the database was kept
    with sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite") as store:
        assert store.count() == 31
        kept = store.get(first_key)
        assert kept is not None and kept["sessionId"] == "db-2"
        assert store.get("agent:main:only-in-sqlite") is not None


# --- kill -9 during a migration ----------------------------------------------------------------

CHILD = """
import os, signal, sys
from pathlib import Path
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent
paths = resolve_store_paths(Path(sys.argv[1]), "main")
kill_at = int(sys.argv[2])

def progress(done, total):
    # Forced kill points: inside the import, after `kill_at` entries were written.
    if done >= kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

result = migrate_agent(paths, progress=progress if kill_at >= 0 else None)
assert result.status == "migrated", result
"""


def test_kill_9_during_migration_then_rerun(tmp_path: Path) -> None:
    g = generate_state_dir(
        tmp_path / "state",
        sessions=2_000,
        seed=2026,
        legacy_fields=True,
        mixed_case_duplicates=25,
        now_ms=NOW,
    )
    root = g.root
    paths = paths_of(root)
    digest = sha256(paths.json_path)
    expected = expected_entries(g.agents["main"])
    # Killed inside the import at every progress step (500 entries each), then once not
    # at all: each kill leaves no database, or the whole verified import.
    for attempt, kill_at in enumerate([500, 1000, 1500, len(expected), -1]):
        for p in db_files(root):
            p.unlink()
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(root), str(kill_at)],
            capture_output=True,
            env=clean_env(),
            timeout=120,
        )
        if kill_at >= 0:
            assert child.returncode == -signal.SIGKILL, child.stderr.decode()
        else:
            assert child.returncode == 0, child.stderr.decode()
        peek = peek_database(paths.sqlite_path)
        if kill_at >= 0:
            assert peek is None, f"attempt {attempt}: a killed import left {peek}"
            assert [p.name for p in paths.sessions_dir.iterdir() if ".tmp" in p.name]
        else:
            assert peek is not None and peek[0] == len(expected)
        rerun = migrate_agent(paths)
        assert rerun.status in ("migrated", "skipped"), rerun.message
        assert sha256(paths.json_path) == digest
        with sessionstore.open_store(agent="main", state_dir=root, store_type="sqlite") as store:
            index = store.index
            assert isinstance(index, SqliteIndex)
            assert index.connection().execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert store.count() == len(expected)
            assert_same(dict(store.load_all()), expected)  # type: ignore[arg-type]
            assert store.info().sourceChangedSinceMigration is False
    assert os.stat(paths.json_path).st_mode & 0o777 == 0o600
