"""One operation on a seeded state, and the views that tell its old state from its new.

Shared by the crash-point sweep (scenario 2) and the disk-full scenario (3). A
:class:`Case` is one operation (``put``, ``update``, transcript ``append``, ``migrate``,
``export``, ``delete``) on one backend, in a fixed state dir: the starting state is written the way
OpenClaw writes it (``generate_state_dir``: gateway transcripts, absolute ``sessionFile``
paths, mixed-case duplicate keys, legacy fields) and migrated for a sqlite store, and every
point of a scenario restores that state into the same directory (the absolute paths stay
valid). A :class:`View` is what a new opener sees, read from a copy of the files so that
reading performs no recovery on the originals.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

import sessionstore
from sessionstore.bench.generate import generate_state_dir
from sessionstore.files import sha256_hex
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import export_entries, migrate_agent

from .harness import (
    complete_transcripts,
    fresh_dir,
    open_variant,
    read_jsonl,
    sessions_dir,
    source_view,
)

__all__ = [
    "PROBE",
    "Case",
    "View",
    "apply",
    "classify",
    "open_for",
    "recover",
    "restore",
    "seed",
    "source_sha",
    "view",
]

SEED_SESSIONS = 10
MIGRATE_SESSIONS = 40
VOLATILE = ("updatedAt", "transcriptBytes")
NEW_SNAPSHOT = {"prompt": "n" * 3000, "version": "new"}
HELPERS = "agent:main:faultkit:"  # keys the scenarios write besides the operation's own
PROBE = HELPERS + "probe"


@dataclass
class Case:
    """One operation on one backend.

    Attributes:
        op: ``put``, ``update``, ``append``, ``delete``, ``migrate`` or ``export``.
        backend: ``sqlite``, ``sqlite-power`` or ``json``.
        state: The fixed state dir every point works in.
        target: The key a put, update or append writes.
        source: migrate: the source's entries, read through the json backend.
        sha: The sha256 of ``sessions.json`` at the start (the migration source).
    """

    op: str
    backend: str
    state: Path
    target: str = ""
    source: dict[str, Any] | None = None
    sha: str = ""

    @classmethod
    def of(cls, variant: str, state: Path) -> Case:
        """``<op>:<backend>``, e.g. ``append:sqlite-power``."""
        op, _, backend = variant.partition(":")
        return cls(op, backend, state)

    @property
    def files(self) -> Path:
        """The sessions dir."""
        return sessions_dir(self.state)

    @property
    def export_path(self) -> Path:
        """Where an ``export`` writes (outside the sessions dir)."""
        return self.state / "export" / "sessions.json"


@dataclass
class View:
    """What a new opener sees.

    Attributes:
        index: Entries, the target's volatile fields dropped (None: no database yet, for
            a migration; no export file, for an export).
        record: migrate: the sha256 in the migration record.
        messages: append: the contents of the transcript's complete message lines.
        torn: append: bytes after the last complete line.
    """

    index: dict[str, Any] | None
    record: str | None = None
    messages: tuple[str, ...] = ()
    torn: bool = False


# --- the starting state ---------------------------------------------------------------------


def seed(case: Case, seed: int) -> Path:
    """Write the starting state and keep a template of it; returns the template."""
    fresh_dir(case.state)
    migrating = case.op == "migrate"
    generated = generate_state_dir(
        case.state,
        sessions=MIGRATE_SESSIONS if migrating else SEED_SESSIONS,
        bloated_ratio=0.3,
        seed=seed,
        transcripts=True,
        legacy_fields=True,
        mixed_case_duplicates=2,
    )
    complete_transcripts(case.state)
    case.sha = sha256_hex((case.files / "sessions.json").read_bytes())
    if migrating:
        case.source = source_view(case.state)
    else:
        _choose_target(case, {p.name for p in generated.agents["main"].transcripts})
    template = case.state.parent / f"{case.state.name}-template"
    fresh_dir(template)
    shutil.copytree(case.state, template, dirs_exist_ok=True)
    return template


def _choose_target(case: Case, gateway_written: set[str]) -> None:
    with open_variant(case.state, case.backend) as store:  # sqlite: the first open migrates
        for key, entry in store.load_all().items():
            if case.op == "append":
                # a transcript the gateway wrote, named by an absolute sessionFile
                fits = bool(entry.get("sessionFile")) and (
                    store.transcript(key).path.name in gateway_written
                )
            else:
                fits = "skillsSnapshot" in entry  # a write that moves a blob
            if fits:
                case.target = key
                return
    raise RuntimeError(f"no key fits a {case.op} in the generated state")


def source_sha(case: Case) -> str:
    """The sha256 of ``sessions.json`` now."""
    return sha256_hex((case.files / "sessions.json").read_bytes())


def restore(case: Case, template: Path) -> None:
    """Put the starting state back (into the same directory)."""
    fresh_dir(case.state)
    shutil.copytree(template, case.state, dirs_exist_ok=True)


# --- the operations (in children) -----------------------------------------------------------


def open_for(case: Case) -> Any:
    """The store the operation works on (None for a migration, which opens its own)."""
    return None if case.op == "migrate" else open_variant(case.state, case.backend)


def apply(case: Case, store: Any, tag: str) -> Any:
    """Run the operation once (``tag`` marks what it writes)."""
    if case.op == "migrate":
        paths = resolve_store_paths(case.state, "main")
        durability = "power" if case.backend.endswith("power") else "normal"
        return migrate_agent(paths, durability=durability).status
    if case.op == "export":
        return export_entries(store.load_all(), case.export_path, overwrite=True)
    if case.op == "put":
        entry = store.get(case.target)
        return store.put(
            case.target,
            {
                "sessionId": entry["sessionId"],
                "updatedAt": 1_800_000_000_000,
                "label": f"put-{tag}",
                "skillsSnapshot": {**NEW_SNAPSHOT, "tag": tag},
            },
        )["label"]
    if case.op == "update":
        return store.update(
            case.target,
            lambda e: {"label": f"update-{tag}", "sweepCount": (e.get("sweepCount") or 0) + 1},
        )["sweepCount"]
    if case.op == "append":
        return store.transcript(case.target).append({"role": "user", "content": tag})
    if case.op == "delete":
        return store.delete(case.target)
    raise ValueError(f"unknown operation {case.op!r}")


def recover(case: Case, tag: str) -> Any:
    """Reopen and write again: the next append, a probe put, a re-run of a migration."""
    if case.op == "migrate":
        return apply(case, None, tag)
    with open_variant(case.state, case.backend) as store:
        if case.op in ("append", "export"):
            return apply(case, store, tag)
        return store.put(PROBE, {"sessionId": "probe", "tag": tag})["tag"]


# --- views (in the parent) ------------------------------------------------------------------


def _project(case: Case, entries: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, entry in entries.items():
        if key.startswith(HELPERS):
            continue
        if key == case.target:
            entry = {k: v for k, v in entry.items() if k not in VOLATILE}
        out[key] = entry
    return out


def view(case: Case, scratch: Path, files: Path | None = None) -> View:
    """The state as a new opener would see it, read from a copy (the original untouched).

    Args:
        case: The operation.
        scratch: Where to put the copy.
        files: The sessions dir to read (default: the state's own).

    Raises:
        ValueError: A complete transcript line, or the export, does not parse.
    """
    if case.op == "export":
        try:
            data = case.export_path.read_bytes()
        except FileNotFoundError:
            return View(None)
        try:
            return View(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the export does not parse: {exc}") from exc
    files = files or case.files
    fresh_dir(scratch)
    copy = scratch / "state"
    shutil.copytree(files, sessions_dir(copy))
    if case.op == "migrate":
        db = sessions_dir(copy) / "sessions.sqlite"
        if not db.exists() or db.stat().st_size == 0:
            return View(None)
        with sessionstore.open_store(state_dir=copy, store_type="auto") as store:
            record = store.index.migration_record()
            return View(store.load_all(), record.get("sha256") if record else None)
    with open_variant(copy, case.backend) as store:
        index = _project(case, store.load_all())
        if case.op != "append":
            return View(index)
        name = store.transcript(case.target).path.name
    records, torn = read_jsonl(files / name)  # the original, raw
    messages = tuple(
        str(r["message"].get("content")) for r in records if r.get("type") == "message"
    )
    return View(index, messages=messages, torn=bool(torn))


def classify(case: Case, seen: View, old: View, new: View) -> str:
    """``old``, ``new``, or what is mixed about the state."""
    if case.op == "migrate":
        if seen.index is None or (not seen.index and seen.record is None):
            return "old"
        if seen.index == case.source and seen.record == case.sha:
            return "new"
        return (
            f"mixed: {len(seen.index)} of {len(case.source or {})} entries imported,"
            f" migration record {'present' if seen.record else 'missing'}"
        )
    if case.op == "export":
        if seen.index is None:
            return "old"
        return "new" if seen.index == new.index else "mixed: the export differs from the store"
    if case.op != "append":
        if seen.index == old.index:
            return "old"
        if seen.index == new.index:
            return "new"
        return "mixed: " + _diff(seen.index or {}, old.index or {}, new.index or {})
    return _classify_append(case, seen, old)


def _classify_append(case: Case, seen: View, old: View) -> str:
    """The transcript keeps its old records and adds, in order, at most ``new`` and a
    recovery's record; the index counts no record the file lacks; nothing else changes."""
    before = len(old.messages)
    added = list(seen.messages[before:])
    if seen.messages[:before] != old.messages:
        return "mixed: an old transcript record changed"
    rest = [tag for tag in ("new", "recover-B", "recover-C") if tag in added]
    if added != rest:
        return f"mixed: the transcript adds {added} to the old records"
    index, previous = dict(seen.index or {}), dict(old.index or {})
    entry = dict(index.pop(case.target, None) or {})
    count = entry.pop("messageCount", None)
    base = dict(previous.pop(case.target, None) or {})
    old_count = base.pop("messageCount", None)  # None: a gateway-written entry, never counted
    if index != previous or entry != base:
        return "mixed: " + _diff(seen.index or {}, old.index or {}, old.index or {})
    if not case.backend.startswith("sqlite"):
        # A sessions.json store is not rewritten by appends: no count to compare.
        return "new" if "new" in added else "old"
    if count == old_count:
        return "old"
    if not isinstance(count, int) or not before <= count <= len(seen.messages):
        held = len(seen.messages)
        return f"mixed: the index counts {count} messages, the transcript holds {held}"
    return "new" if "new" in added else "old"


def _diff(seen: dict[str, Any], old: dict[str, Any], new: dict[str, Any]) -> str:
    for key in sorted(set(seen) | set(old) | set(new)):
        mine, before = seen.get(key) or {}, old.get(key) or {}
        if seen.get(key) not in (old.get(key), new.get(key)):
            fields = sorted(f for f in set(mine) | set(before) if mine.get(f) != before.get(f))
            return f"{key}: {fields[:6]} differ from both the old and the new entry"
    return "some entries are old, others new"
