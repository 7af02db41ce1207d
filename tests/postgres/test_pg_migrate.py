"""``migrate --to postgres --from json|sqlite`` and ``export`` back, through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import sessionstore
from hermetic import clean_env
from sessionstore.entry import json_equal
from sessionstore.index.postgres import PostgresIndex
from sessionstore.transcripts.postgres import PostgresTranscript

SNAPSHOT = {"prompt": "p" * 2000, "skills": [{"name": "x", "files": list(range(50))}]}


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    extra = {k: v for k, v in os.environ.items() if k.startswith("SESSIONSTORE_PG_")}
    return subprocess.run(
        [sys.executable, "-m", "sessionstore", *args],
        env=clean_env(HOME=os.environ["HOME"], **extra, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fill(store: sessionstore.SessionStore) -> None:
    for i in range(12):
        store.put(
            f"agent:{store.agent_id}:telegram:direct:{i}",
            {
                "sessionId": f"00000000-0000-4000-8000-{i:012d}",
                "updatedAt": 1_700_000_000_000 + i,
                "label": f"l{i}",
                "thread": 2**60 + i,
                "skillsSnapshot": SNAPSHOT,
            },
        )
    t = store.transcript(f"agent:{store.agent_id}:telegram:direct:3")
    t.append({"role": "user", "content": "hello"})
    t.append({"role": "assistant", "content": [{"type": "text", "text": "hi"}]})


def _lines(path: Path) -> list[Any]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


@pytest.mark.parametrize("source", ["json", "sqlite"])
def test_migrate_to_postgres_then_export_back(
    source: str, pg_env: str, state_dir: Path, tmp_path: Path
) -> None:
    agent = "main" if source == "json" else "ops"
    with sessionstore.open_store(agent=agent, state_dir=state_dir, store_type=source) as src:  # type: ignore[arg-type]
        _fill(src)
        before = src.load_all()
        sid = before[f"agent:{agent}:telegram:direct:3"]["sessionId"]
        transcript_file = src.paths.sessions_dir / f"{sid}.jsonl"
        file_lines = _lines(transcript_file)

    done = _cli(
        "migrate",
        "--to",
        "postgres",
        "--from",
        source,
        "--state-dir",
        str(state_dir),
        "--agent",
        agent,
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    assert report["success"] and report["results"][0]["status"] == "migrated"
    assert report["results"][0]["migratedCount"] == 12
    assert "password" not in done.stdout or "***" in done.stdout

    with sessionstore.open_store(agent=agent, state_dir=state_dir, store_type="postgres") as pg:
        after = pg.load_all()
        assert list(after) == list(before)
        assert all(json_equal(after[k], before[k]) for k in before)
        assert pg.index.migration_record()["entryCount"] == 12  # type: ignore[attr-defined]
        index = pg.index
        assert isinstance(index, PostgresIndex)
        assert PostgresTranscript(index, sid).entries() == file_lines

    again = _cli(
        "migrate",
        "--to",
        "postgres",
        "--from",
        source,
        "--state-dir",
        str(state_dir),
        "--agent",
        agent,
        "--json",
    )
    assert orjson.loads(again.stdout)["results"][0]["status"] == "skipped"

    out = tmp_path / "export" / "sessions.json"
    out.parent.mkdir()
    exported = _cli(
        "export",
        "--out",
        str(out),
        "--state-dir",
        str(state_dir),
        "--agent",
        agent,
        SESSIONSTORE_STORE_TYPE="postgres",
    )
    assert exported.returncode == 0, exported.stderr
    back = orjson.loads(out.read_bytes())
    assert list(back) == list(before)
    assert all(json_equal(back[k], before[k]) for k in before)
    assert _lines(out.parent / f"{sid}.jsonl") == file_lines


def test_keep_transcript_files_leaves_them_out_of_the_table(
    pg_env: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="json") as src:
        _fill(src)
        sid = src.get("agent:main:telegram:direct:3")["sessionId"]  # type: ignore[index]
    done = _cli(
        "migrate",
        "--to",
        "postgres",
        "--state-dir",
        str(state_dir),
        "--keep-transcript-files",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as pg:
        assert pg.count() == 12
        index = pg.index
        assert isinstance(index, PostgresIndex)
        assert PostgresTranscript(index, sid).entries() == []
        assert pg.transcript("agent:main:telegram:direct:3").messages() == []  # the table
    monkeypatch.setenv("SESSIONSTORE_PG_TRANSCRIPTS", "files")
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as pg:
        assert len(pg.transcript("agent:main:telegram:direct:3").messages()) == 2  # the file


def test_store_info_shows_the_server_and_counts(pg_env: str, state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="postgres") as pg:
        pg.put("agent:main:a", {"sessionId": "a"})
    shown = _cli(
        "store-info", "--state-dir", str(state_dir), "--json", SESSIONSTORE_STORE_TYPE="postgres"
    )
    assert shown.returncode == 0, shown.stderr
    info = orjson.loads(shown.stdout)
    backend = info["backend"]
    assert info["effectiveStoreType"] == "postgres" and info["sessionCount"] == 1
    assert backend["serverVersion"] and backend["schema"] == os.environ["SESSIONSTORE_PG_SCHEMA"]
    assert backend["poolSize"] == 4 and backend["schemaVersion"] >= 1
