"""Scenario 7: a long reader holds a snapshot while 20,000 writes commit.

A child opens ``sessions.sqlite`` with its own connection, reads inside ``BEGIN`` and keeps
that snapshot open (a backup tool, a ``sqlite3`` shell, a dashboard). Meanwhile another
child commits the writes (``update`` of 200 sessions in turn), acknowledging each. No
checkpoint can get past the reader's snapshot, so the WAL grows.

Then the doctor (``store.check()``) must report the growth (a ``wal-size`` finding: its
threshold is ``doctor.WAL_WARN_BYTES``, 64 MiB, which 2,000 of these writes exceed today;
the threshold is not lowered); ``vacuum()`` while the reader still holds its snapshot must not
claim a checkpoint it could not make; once the reader is gone, ``vacuum()`` checkpoints
and truncates the WAL, the finding is gone, ``store.check()`` is clean and every
acknowledged write is there.
"""

from __future__ import annotations

from pathlib import Path

import apsw

from sessionstore.doctor import WAL_WARN_BYTES

from .harness import (
    Acks,
    Figures,
    Gate,
    integrity_problems,
    open_variant,
    spawn,
    timed,
    unresolved,
    workdir,
)

NAME = "walgrowth"
TITLE = "a long reader while 20,000 writes commit"
VARIANTS = ("sqlite",)
SHORT_RUNS = 4_000  # ~160 MB of WAL today: a margin over the 64 MiB threshold
FULL_RUNS = 20_000
SESSIONS = 200


def _key(i: int) -> str:
    return f"agent:main:wal:{i % SESSIONS:03d}"


def _reader(acks: Acks, db: Path, gate: Gate) -> None:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    conn.execute("BEGIN")
    (count,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
    acks.send("holding", count=count)
    gate.wait(3600)
    conn.execute("COMMIT")
    conn.close()


def _writer(acks: Acks, state_dir: Path, writes: int) -> None:
    with open_variant(state_dir, "sqlite") as store:
        for i in range(writes):
            store.update(_key(i), {"n": i})
            acks.send("ack", i=i)


def run(variant: str, *, seed: int = 0, runs: int = FULL_RUNS, base: Path | None = None) -> Figures:
    """``runs`` writes under a held snapshot; the doctor sees the WAL, vacuum recovers it."""
    fig = Figures(NAME, variant, seed)
    with timed(fig), workdir(base) as root:
        state_dir = root / "walgrowth"
        with open_variant(state_dir, variant) as store:
            for i in range(SESSIONS):
                store.put(_key(i), {"sessionId": f"wal-{i}", "n": -1})
            db = store.paths.sqlite_path
        wal = Path(f"{db}-wal")
        gate = Gate()
        with spawn(_reader, db, gate) as reader:
            held = reader.wait_for("holding", 60)
            if held is None or held["count"] != SESSIONS:
                fig.fail(f"the reader did not get its snapshot: {held} {reader.crash}")
                return fig
            with spawn(_writer, state_dir, runs) as writer:
                writer.join(max(300.0, runs / 20))
            acks = writer.of("ack")
            fig.runs = runs
            fig.acked = len(acks)
            if writer.status != 0 or len(acks) != runs:
                fig.fail(f"the writer failed after {len(acks)} writes: {writer.crash}")
            grown = wal.stat().st_size
            fig.count("WAL bytes with the reader holding", grown)
            with open_variant(state_dir, variant) as store:
                findings = [f for f in store.check() if f.kind == "wal-size"]
                if grown > WAL_WARN_BYTES and not any(f.unresolved for f in findings):
                    fig.fail(f"the doctor did not report a {grown}-byte WAL")
                elif grown <= WAL_WARN_BYTES:
                    fig.fail(f"the WAL grew to {grown} bytes only: the scenario proves nothing")
                else:
                    fig.count("wal-size reported")
                held_vacuum = store.vacuum()
                fig.count("vacuum with the reader: checkpointed", int(held_vacuum["checkpointed"]))
                if held_vacuum["checkpointed"] and wal.stat().st_size > WAL_WARN_BYTES:
                    fig.fail(f"vacuum claims a checkpoint the reader prevented: {held_vacuum}")
            gate.open()
            reader.join(60)
            if reader.status != 0:
                fig.fail(f"the reader failed ({reader.status}): {reader.crash}")
        with open_variant(state_dir, variant) as store:
            result = store.vacuum()
            fig.count("WAL bytes after vacuum", wal.stat().st_size if wal.exists() else 0)
            if not result["checkpointed"] or (wal.exists() and wal.stat().st_size > 0):
                fig.fail(f"vacuum did not recover the WAL once the reader was gone: {result}")
            last = {_key(rec["i"]): rec["i"] for rec in acks}
            everything = store.load_all()
            lost = [k for k, n in last.items() if (everything.get(k) or {}).get("n") != n]
            if lost:
                fig.fail(f"{len(lost)} acknowledged writes are not there, e.g. {lost[:3]}")
            for problem in integrity_problems(store):
                fig.fail(problem)
            for problem in unresolved(store):
                fig.fail(f"check(): {problem}")
    return fig
