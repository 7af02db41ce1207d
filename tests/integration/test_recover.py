"""Recovery of a damaged sessions.sqlite (issue 11, defect 19).

Real damage: a truncated file, a page overwritten with garbage, a row whose entry no longer
decodes. The expected result is computed from a model (the entries written before the
damage and the sessions.json beside the store), never from the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore.layout import resolve_store_paths
from sessionstore.recover import recover_store

COUNT = 120


def _entry(i: int, updated: int) -> dict[str, Any]:
    return {"sessionId": f"s-{i}", "updatedAt": updated, "label": f"l{i}", "pad": "x" * 1500}


def build(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """A sqlite store of COUNT entries, and a sessions.json beside it as OpenClaw left it."""
    state = tmp_path / "state"
    original = {f"agent:main:k{i:03d}": _entry(i, 10_000 + i) for i in range(COUNT)}
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        for key, entry in original.items():
            store.put(key, entry)
        store.put(
            "agent:main:big",
            {"sessionId": "big", "updatedAt": 5, "skillsSnapshot": {"p": "q" * 3000}},
        )
        original["agent:main:big"] = store.get("agent:main:big")  # type: ignore[assignment]
    # sessions.json: older copies of some keys, newer copies of others, and keys of its own.
    legacy: dict[str, dict[str, Any]] = {}
    for i in range(0, COUNT, 3):
        legacy[f"agent:main:k{i:03d}"] = _entry(i, 5_000 + i)  # older than the database
    for i in range(1, COUNT, 10):
        legacy[f"agent:main:k{i:03d}"] = {**_entry(i, 20_000 + i), "label": "json-newer"}
    legacy["agent:main:json-only"] = _entry(999, 30_000)
    sessions = state / "agents" / "main" / "sessions"
    (sessions / "sessions.json").write_text(json.dumps(legacy, indent=2))
    conn = apsw.Connection(str(sessions / "sessions.sqlite"))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return state, original, legacy


def expected_after(
    original: dict[str, Any], legacy: dict[str, Any], salvaged_keys: set[str]
) -> dict[str, Any]:
    out = {k: original[k] for k in salvaged_keys}
    for key, entry in legacy.items():
        if key not in out or entry["updatedAt"] > out[key]["updatedAt"]:
            out[key] = entry
    return out


def damage_truncate(db: Path) -> None:
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        fh.truncate(size * 55 // 100)


def damage_page(db: Path) -> None:
    page = 4096
    pages = db.stat().st_size // page
    with open(db, "r+b") as fh:  # two pages of session rows, in the middle of the file
        fh.seek(page * (pages // 2))
        fh.write(os.urandom(page * 2))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionstore", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("damage", [damage_truncate, damage_page])
def test_recover_salvages_merges_json_and_keeps_the_damaged_file(
    tmp_path: Path, damage: Any
) -> None:
    state, original, legacy = build(tmp_path)
    paths = resolve_store_paths(state, "main")
    damage(paths.sqlite_path)
    damaged_bytes = paths.sqlite_path.read_bytes()
    json_bytes = paths.json_path.read_bytes()

    # Before: the doctor reports the damage and names the way out (exit 1, no traceback).
    doctor = run_cli("doctor", "--state-dir", str(state))
    assert doctor.returncode == 1
    assert "Traceback" not in doctor.stderr + doctor.stdout
    # (the table wraps long messages: compare words)
    assert "sessionstore recover" in " ".join((doctor.stdout + doctor.stderr).split())

    dry = recover_store(paths, dry_run=True)
    assert dry.status == "would_recover"
    assert paths.sqlite_path.read_bytes() == damaged_bytes  # a dry run changes nothing

    report = recover_store(paths)
    assert report.status == "recovered"
    assert report.damagedPath is not None
    assert Path(report.damagedPath).read_bytes() == damaged_bytes  # kept, never deleted
    assert paths.json_path.read_bytes() == json_bytes
    with sessionstore.open_store(state_dir=state) as store:
        got = store.load_all()
        # Whatever came from the database is exactly what was written before the damage.
        from_db = {k for k in got if k in original and got[k] == original[k]}
        expected = expected_after(original, legacy, from_db)
        assert got == expected
        assert report.sessionCount == len(got)
        assert report.fromJson == sum(1 for k in got if k in legacy and got[k] == legacy[k])
        assert report.salvaged == len(got) - report.fromJson
        # A lost row is one that was written and is now in neither readable source; rows
        # that sessions.json overrides (newer there) may or may not have been salvaged.
        gone = set(original) - set(got)
        overridden = {k for k in original if k in got and got[k] != original[k]}
        assert len(gone) <= report.lost <= len(gone) + len(overridden)
        assert len(from_db) < len(original)  # the damage really lost rows
        assert set(report.lostKeys) <= set(original)
        assert gone <= set(report.lostKeys) or len(report.lostKeys) < report.lost
        assert [f for f in store.check() if f.kind == "integrity"] == []
        store.put("agent:main:after", {"sessionId": "a"})
    assert dry.sessionCount == report.sessionCount
    assert (dry.salvaged, dry.fromJson, dry.lost) == (
        report.salvaged,
        report.fromJson,
        report.lost,
    )


def test_a_row_that_no_longer_decodes_is_restored_from_sessions_json(tmp_path: Path) -> None:
    state, original, legacy = build(tmp_path)
    paths = resolve_store_paths(state, "main")
    conn = apsw.Connection(str(paths.sqlite_path))
    conn.execute(
        "UPDATE sessions SET entry_json = X'7b7b7b' WHERE session_key IN (?, ?)",
        ("agent:main:k000", "agent:main:k002"),
    )
    conn.close()
    report = recover_store(paths)
    assert report.status == "recovered"
    assert report.lost == 2
    with sessionstore.open_store(state_dir=state) as store:
        got = store.load_all()
    assert "agent:main:k002" not in got  # in neither readable source
    assert got["agent:main:k000"] == legacy["agent:main:k000"]  # only sessions.json has it
    assert got == expected_after(
        original, legacy, set(original) - {"agent:main:k000", "agent:main:k002"}
    )


def test_a_healthy_database_is_left_alone(tmp_path: Path) -> None:
    state, _, _ = build(tmp_path)
    paths = resolve_store_paths(state, "main")
    before = paths.sqlite_path.read_bytes()
    assert recover_store(paths).status == "healthy"
    assert paths.sqlite_path.read_bytes() == before
    assert recover_store(resolve_store_paths(tmp_path / "none", "main")).status == "no_database"


def test_recover_cli(tmp_path: Path) -> None:
    state, _, _ = build(tmp_path)
    paths = resolve_store_paths(state, "main")
    damage_truncate(paths.sqlite_path)
    run = run_cli("recover", "--state-dir", str(state), "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "recovered" and doc["sessionCount"] > 0
    human = run_cli("recover", "--state-dir", str(state))
    assert human.returncode == 0 and "nothing to recover" in human.stdout
    listed = run_cli("list", "--state-dir", str(state), "--json")
    assert listed.returncode == 0
