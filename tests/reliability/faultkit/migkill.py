"""Scenario 8: a migration killed at 100 random points on a 5,000-entry store, then re-run.

The source is a ``sessions.json`` as OpenClaw writes it (``generate_state_dir``: legacy
fields, mixed-case duplicate keys, bloated entries, a transcript per session). Every point
starts without a database and runs ``migrate_agent`` in a child that is killed: at a random
moment of the migration (uniform over the time a whole migration takes), or, for every
other point, by itself at a random I/O event of the migration (uniform over all of them),
so kills land in the import transaction, its commit and the checkpoint at close by
construction.

After each kill the database is the old state (none, or no entries and no migration
record) or the new one (every entry, with the record), never in between. The re-run then
succeeds and the index equals the source, as the json backend reads it; the source's
sha256 and mtime never change. At the end the store checks clean.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import sessionstore
from sessionstore.bench.generate import generate_state_dir
from sessionstore.files import sha256_hex
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

from . import shims
from .harness import (
    Acks,
    Figures,
    complete_transcripts,
    fresh_dir,
    integrity_problems,
    sessions_dir,
    source_view,
    spawn,
    timed,
    unresolved,
    workdir,
)

NAME = "migkill"
TITLE = "migration killed at random points"
VARIANTS = ("sqlite",)
SHORT_RUNS = 8
FULL_RUNS = 100
SHORT_SESSIONS = 500
FULL_SESSIONS = 5_000
SHORT_KWARGS = {"sessions": SHORT_SESSIONS}  # what the short tier changes besides runs
DB_FILES = (
    "sessions.sqlite",
    "sessions.sqlite-wal",
    "sessions.sqlite-shm",
    "sessions.sqlite-journal",
)


def _migrate(acks: Acks, state_dir: Path, kill_at: int, count: bool) -> None:
    plan = None
    if kill_at or count:
        shims.install(sessions_dir(state_dir))
        plan = shims.arm(shims.FaultPlan(at=kill_at or None, action="kill"))
    acks.send("start")
    result = migrate_agent(resolve_store_paths(state_dir, "main"))
    acks.send(
        "done", status=result.status, count=result.migratedCount, events=plan.seen if plan else 0
    )


def _view(state_dir: Path, scratch: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Entries and the migration record's sha256, read from a copy of the database files."""
    files = sessions_dir(state_dir)
    if not (files / "sessions.sqlite").exists() or (files / "sessions.sqlite").stat().st_size == 0:
        return None, None
    copy = sessions_dir(fresh_dir(scratch))
    copy.mkdir(parents=True)
    for name in DB_FILES:
        if (files / name).exists():
            shutil.copy2(files / name, copy / name)
    with sessionstore.open_store(state_dir=scratch, store_type="auto") as store:
        record = store.index.migration_record()
        return store.load_all(), (record or {}).get("sha256")


def _classify(
    seen: tuple[dict[str, Any] | None, str | None], source: dict[str, Any], sha: str
) -> str:
    entries, record = seen
    if entries is None or (not entries and record is None):
        return "old"
    if entries == source and record == sha:
        return "new"
    kept = "present" if record else "missing"
    return f"mixed: {len(entries)} of {len(source)} entries, migration record {kept}"


def _source_id(path: Path) -> tuple[str, int]:
    return sha256_hex(path.read_bytes()), os.stat(path).st_mtime_ns


def run(
    variant: str,
    *,
    seed: int = 0,
    runs: int = FULL_RUNS,
    base: Path | None = None,
    sessions: int | None = None,
) -> Figures:
    """Kill ``runs`` migrations of a ``sessions``-entry store; each re-run must be whole."""
    fig = Figures(NAME, variant, seed)
    size = sessions or FULL_SESSIONS
    rnd = random.Random(f"{NAME}-{seed}")
    with timed(fig), workdir(base) as root:
        state_dir = root / "migkill"
        fresh_dir(state_dir)
        generate_state_dir(
            state_dir,
            sessions=size,
            bloated_ratio=0.05,
            seed=seed,
            transcripts=True,
            legacy_fields=True,
            mixed_case_duplicates=max(1, size // 100),
        )
        complete_transcripts(state_dir)
        files = sessions_dir(state_dir)
        source_path = files / "sessions.json"
        source = source_view(state_dir)
        sha, mtime = _source_id(source_path)
        scratch = root / "scratch"
        fig.count("entries in the source", len(source))

        def reset() -> None:
            for name in DB_FILES:
                (files / name).unlink(missing_ok=True)

        # Calibration: how long a whole migration takes, and how many I/O events it has.
        reset()
        with spawn(_migrate, state_dir, 0, False) as timer:
            started = timer.wait_for("start", 60)
            begin = time.monotonic()
            timer.join(600)
            duration = time.monotonic() - begin
        reset()
        with spawn(_migrate, state_dir, 0, True) as counter:
            counter.join(600)
        done = counter.wait_for("done", 0)
        if started is None or done is None:
            fig.fail(f"the calibration migration failed: {counter.crash}")
            return fig
        events = int(done["events"])
        fig.count("I/O events in a migration", events)
        for point in range(runs):
            reset()
            by_event = point % 2 == 1
            kill_at = rnd.randint(1, events) if by_event else 0
            where = f"point {point} (" + (f"event {kill_at})" if by_event else "in time)")
            with spawn(_migrate, state_dir, kill_at, False) as child:
                if child.wait_for("start", 60) is None:
                    fig.fail(f"{where}: the migration did not start: {child.crash}")
                    continue
                if not by_event:
                    child.kill_after(rnd.uniform(0.0, duration))
                child.join(600)
            fig.runs += 1
            if child.status == 0:
                fig.count("completed before the kill")
            elif child.status != -9:
                fig.fail(f"{where}: the migration crashed ({child.status}): {child.crash}")
            state = _classify(_view(state_dir, scratch), source, sha)
            fig.count(f"after the kill: {state if state in ('old', 'new') else 'mixed'}")
            if state not in ("old", "new"):
                fig.fail(f"{where}: {state}")
            with spawn(_migrate, state_dir, 0, False) as rerun:
                rerun.join(600)
            done = rerun.wait_for("done", 0)
            if rerun.status != 0 or done is None:
                fig.fail(f"{where}: the re-run failed ({rerun.status}): {rerun.crash}")
                continue
            fig.count(f"re-run: {done['status']}")
            if _classify(_view(state_dir, scratch), source, sha) != "new":
                fig.fail(f"{where}: after the re-run the index does not equal the source")
            else:
                fig.acked += 1  # the acknowledged re-run, checked entry by entry
                fig.count("entries checked", len(source))
            if _source_id(source_path) != (sha, mtime):
                fig.fail(f"{where}: the source sessions.json changed")
        with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as store:
            for problem in integrity_problems(store):
                fig.fail(problem)
            for problem in unresolved(store):
                fig.fail(f"check(): {problem}")
    return fig
