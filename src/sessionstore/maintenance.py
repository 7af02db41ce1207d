"""Maintenance: prune, cap, archive, age out archives, rotate, and the disk budget.

The steps and their order are OpenClaw's (spec section 6), with two deliberate
differences: the active session passed by the caller is never pruned, capped or evicted,
and maintenance runs when asked (``store.maintain()``, ``sessionstore cleanup``, or at most
once per ``session.maintainEvery`` after a write) instead of on every save.

Everything that touches the index runs through the backend's
:meth:`IndexBackend.maintenance` and :class:`MaintenanceTxn`, whose SQL backends answer
from indexed columns without loading entries. The json backend runs it in one write
transaction; sqlite plans on a snapshot copy and postgres in one read-only snapshot, and
both apply the removals in short batches, keeping rows a writer changed since the plan
(``kept_keys`` of the planning object; :func:`_drop_kept` takes them out of the report and
the file plan). Dry runs and warn mode run the very same steps and change nothing, so they
report exactly what enforcing would do. File actions are planned against a model of the
sessions dir (and, for a postgres store, of the ``transcripts`` table's head rows) and
carried out only after the index change committed; only files directly inside the sessions
dir are ever touched, and transcript rows only of this store's agent.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .clock import now_ms
from .config import MaintenanceConfig
from .context import StoreContext
from .errors import InvalidArgumentError, SessionStoreError
from .files import atomic_write, fsync_dir, os_error
from .index.base import MaintenanceTxn, RowRef
from .keys import canonical_key, fold_key, is_cron_run_key
from .transcripts.naming import (
    TOPIC,
    archive_timestamp,
    claims_transcript,
    is_archive_artifact,
    is_primary_transcript,
    is_session_id,
    missing_transcript,
    parse_archive_name,
    parse_name,
    session_transcripts,
)

if TYPE_CHECKING:
    from .index.postgres import PostgresIndex
    from .transcripts.postgres import Head

__all__ = [
    "ACTIONS",
    "DiskBudgetReport",
    "KeyAction",
    "MaintenanceReport",
    "run_maintenance",
]

ACTIONS: Final = (
    "keep",
    "prune-missing",
    "prune-cron",
    "prune-stale",
    "cap-overflow",
    "evict-budget",
)
MODES: Final = ("warn", "enforce")
JSON_BACKUPS_KEPT: Final = 3
_MISSING: Final = frozenset({"missing"})
_MAIN: Final = frozenset({"main"})
_CRON: Final = frozenset({"cron"})


class _Referenced:
    """The session ids some remaining row references, as a container for naming.py."""

    def __init__(self, count: Callable[[str], int]) -> None:
        self._count = count

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and bool(session_id) and self._count(session_id) > 0


# --- reports ------------------------------------------------------------------------------------


@dataclass
class KeyAction:
    """What maintenance does (or would do) to one key.

    Attributes:
        key: The session key.
        action: One of ``prune-missing``, ``prune-cron``, ``prune-stale``,
            ``cap-overflow``, ``evict-budget`` (kept keys are not listed).
        updatedAt: The entry's ``updatedAt``.
        model: The entry's ``model``.
        sessionId: The entry's ``sessionId``.
    """

    key: str
    action: str
    updatedAt: int | float | None
    model: str | None
    sessionId: str


@dataclass
class DiskBudgetReport:
    """The disk budget step (OpenClaw's ``enforceSessionDiskBudget`` result).

    Attributes:
        totalBytesBefore: Bytes of the sessions dir, the index counted at its projected size.
        totalBytesAfter: The same after the step.
        removedFiles: Files deleted (unreferenced artifacts and transcripts).
        removedEntries: Entries evicted, oldest first.
        freedBytes: ``totalBytesBefore - totalBytesAfter``.
        maxBytes: The budget.
        highWaterBytes: The size eviction brings the dir down to.
        overBudget: Whether the dir was over the budget before the step.
    """

    totalBytesBefore: int
    totalBytesAfter: int
    removedFiles: int
    removedEntries: int
    freedBytes: int
    maxBytes: int
    highWaterBytes: int
    overBudget: bool


@dataclass
class MaintenanceReport:
    """What a maintenance run did, or would do.

    Attributes:
        agentId: The store's agent.
        storePath: The index file.
        storeType: The backend.
        mode: ``warn`` or ``enforce``.
        dryRun: Whether this was a dry run.
        applied: Whether changes were made (enforce mode, not a dry run; or
            ``fix_missing`` or ``reap_cron`` removals).
        beforeCount: Entries before.
        afterCount: Entries after (what they would be, when nothing was applied).
        missing: Entries removed because their transcript is missing.
        reaped: Cron run entries removed as older than ``cron.sessionRetention``.
        pruned: Entries removed as stale.
        capped: Entries removed over ``maxEntries``.
        evicted: Entries removed by the disk budget.
        archived: Transcripts archived as ``.deleted.<ts>``.
        removedFiles: Files deleted (aged-out archives, old backups, budget evictions).
        bytesFreed: Bytes of the deleted files.
        rotatedTo: The backup copy made of ``sessions.json``, if one was.
        diskBudget: The disk budget step, when ``maxDiskBytes`` is set.
        actions: One action per removed key.
        warnings: Things worth a look that maintenance did not change.
        errors: File actions that failed after the index change was committed.
    """

    agentId: str
    storePath: str
    storeType: str
    mode: str
    dryRun: bool
    applied: bool = False
    beforeCount: int = 0
    afterCount: int = 0
    missing: int = 0
    reaped: int = 0
    pruned: int = 0
    capped: int = 0
    evicted: int = 0
    archived: list[str] = field(default_factory=list)
    removedFiles: list[str] = field(default_factory=list)
    bytesFreed: int = 0
    rotatedTo: str | None = None
    diskBudget: DiskBudgetReport | None = None
    actions: list[KeyAction] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def would_mutate(self) -> bool:
        """Whether enforcing this plan changes anything."""
        return bool(self.actions or self.archived or self.removedFiles or self.rotatedTo)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``wouldMutate`` included)."""
        out = asdict(self)
        out["wouldMutate"] = self.would_mutate
        return out


# --- the sessions dir model ---------------------------------------------------------------


@dataclass
class _File:
    size: int
    mtime: float


@dataclass
class _Plan:
    """File actions, carried out after the index change committed."""

    archive: list[tuple[str, str]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    delete_bytes: int = 0
    # file name -> the session id of the removed row(s) it belongs to
    owner: dict[str, str] = field(default_factory=dict)
    # The time suffix of this run's archives.
    stamp: str = field(default_factory=archive_timestamp)
    # Session ids whose transcript rows (postgres table) are archived as .deleted.<ts>.
    archive_rows: list[str] = field(default_factory=list)
    # Transcripts in the table (by id) whose rows are deleted, in order.
    drop_rows: list[str] = field(default_factory=list)
    # table transcript id -> the session id of the removed row(s) it belongs to
    row_owner: dict[str, str] = field(default_factory=dict)


def _row_label(location: str, name: str) -> str:
    """How a transcript in the postgres table appears in the report's file lists."""
    return f"{location}: transcript {name}"


def _scan(directory: Path) -> dict[str, _File]:
    files: dict[str, _File] = {}
    try:
        with os.scandir(directory) as it:
            for item in it:
                try:
                    if not item.is_file(follow_symlinks=False):
                        continue
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                files[item.name] = _File(st.st_size, st.st_mtime)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise os_error(exc, "list", directory) from exc
    return files


class _Run:
    """One maintenance pass inside the backend's write transaction."""

    def __init__(
        self,
        ctx: StoreContext,
        txn: MaintenanceTxn,
        report: MaintenanceReport,
        *,
        cfg: MaintenanceConfig,
        protect: frozenset[str],
        apply: bool,
        now: int,
        in_table: Mapping[str, Head] | None = None,
        last_written: Callable[[list[str]], dict[str, int]] | None = None,
    ) -> None:
        self.ctx = ctx
        # A model of the transcripts in the postgres table (id -> head), changed as the
        # plan archives and deletes; None: transcripts are files.
        self.in_table = None if in_table is None else dict(in_table)
        # When the last line of each of these table transcripts was written (ms).
        self.last_written = last_written
        self._owned: dict[str, list[str]] | None = None  # see _table_names
        self.txn = txn
        self.report = report
        self.cfg = cfg
        self.protect = protect
        self.apply = apply
        self.now = now
        self.dir = ctx.paths.sessions_dir
        self.dirs = ctx.transcript_dirs
        self.index_names = frozenset(ctx.index.index_files())
        self.files = _scan(self.dir)
        # sessions.json.lock exists only while a writer (this run, for json stores) holds
        # it: not part of the dir's size, and never a file to remove.
        self.files.pop(f"{ctx.paths.json_path.name}.lock", None)
        self.plan = _Plan()

    # --- helpers ---

    def _remove(self, refs: Iterable[RowRef], action: str) -> list[RowRef]:
        done = list(refs)
        self.txn.remove(r.key for r in done)
        self.report.actions += [
            KeyAction(r.key, action, r.updated_at, r.model, r.session_id) for r in done
        ]
        return done

    def _transcript_names(self, ref: RowRef, claimed: _Referenced) -> list[str]:
        """Names of the session's transcripts (topics too) directly inside the sessions dir.

        ``claimed`` holds the sessions still referenced: a name one of them can claim too
        (a session id containing ``-topic-``) is theirs.
        """
        return session_transcripts(
            self.dirs, ref.session_id, ref.session_file, names=self.files, claimed=claimed
        )

    def _delete_file(self, name: str) -> int:
        size = self.files.pop(name).size
        self.plan.delete.append(name)
        self.plan.delete_bytes += size
        return size

    def _table_names(self, session_id: str) -> list[str]:
        """The session's live transcripts (its own and its topics') in the table model."""
        assert self.in_table is not None
        if self._owned is None:
            # Each live transcript under every session id it can belong to: itself, and
            # what precedes each -topic- in it (a lookup per session, not a scan).
            self._owned = {}
            for name in self.in_table:
                if is_archive_artifact(name):
                    continue
                self._owned.setdefault(name, []).append(name)
                at = name.find(TOPIC)
                while at > 0:
                    self._owned.setdefault(name[:at], []).append(name)
                    at = name.find(TOPIC, at + 1)
        return sorted(n for n in self._owned.get(session_id, ()) if n in self.in_table)

    def _drop_rows(self, name: str, owner: str | None = None) -> int:
        assert self.in_table is not None
        size = self.in_table.pop(name).bytes
        self.plan.drop_rows.append(name)
        self.plan.delete_bytes += size
        if owner is not None:
            self.plan.row_owner[name] = owner
        return size

    # --- steps ---

    def fix_missing(self) -> None:
        # The rule doctor's missing-transcript check uses too: only entries that claim a
        # transcript (sessionFile, messageCount > 0) and have none of spec 3.5's candidates.
        rows = list(self.txn.rows())
        ids = {ref.session_id for ref in rows if ref.session_id}
        if self.in_table is not None:
            table = self.in_table
            gone = [
                ref
                for ref in rows
                if fold_key(ref.key) not in self.protect
                and is_session_id(ref.session_id)
                and claims_transcript(ref.session_file, ref.message_count)
                and ref.session_id not in table
            ]
            self.report.missing = len(self._remove(gone, "prune-missing"))
            return
        missing = [
            ref
            for ref in rows
            if fold_key(ref.key) not in self.protect
            and missing_transcript(
                self.dirs,
                ref.session_id,
                ref.session_file,
                ref.message_count,
                names=self.files,
                claimed=ids,
            )
            is not None
        ]
        self.report.missing = len(self._remove(missing, "prune-missing"))

    def reap_cron(self, retention_ms: int) -> list[RowRef]:
        """OpenClaw's cron reaper: cron run entries (``…:cron:<job>:run:<id>``) idle too long.

        As upstream, an entry without a positive numeric ``updatedAt`` is kept, and the
        active session is not special (a run alias is never the active session anyway).
        """
        cutoff = self.now - retention_ms
        old = [
            ref
            for ref in self.txn.rows()
            if isinstance(ref.updated_at, (int, float))
            and 0 < ref.updated_at < cutoff
            and fold_key(ref.key) not in self.protect
            and is_cron_run_key(ref.key)
        ]
        done = self._remove(old, "prune-cron")
        self.report.reaped = len(done)
        return done

    def prune_and_cap(self) -> list[RowRef]:
        stale = self._remove(
            self.txn.stale(self.now - self.cfg.prune_after_ms, self.protect), "prune-stale"
        )
        capped = self._remove(self.txn.overflow(self.cfg.max_entries, self.protect), "cap-overflow")
        self.report.pruned, self.report.capped = len(stale), len(capped)
        return stale + capped

    def archive(self, removed: list[RowRef]) -> None:
        seen: set[str] = set()
        stamp = self.plan.stamp
        referenced = _Referenced(self.txn.reference_count)
        for ref in removed:
            if not ref.session_id or ref.session_id in seen:
                continue
            seen.add(ref.session_id)
            if ref.session_id in referenced:
                continue
            if self.in_table is not None:
                names = self._table_names(ref.session_id)
                if names:  # a session without rows in the table has nothing to archive
                    self.plan.archive_rows.append(ref.session_id)
                for name in names:
                    archived = f"{name}.deleted.{stamp}"
                    self.in_table[archived] = self.in_table.pop(name)
                    self.plan.row_owner[archived] = ref.session_id
                    self.report.archived.append(_row_label(self.ctx.index.location, archived))
                continue
            for name in self._transcript_names(ref, referenced):
                self.plan.owner[name] = ref.session_id
                archived = f"{name}.deleted.{stamp}"
                self.files[archived] = self.files.pop(name)
                self.plan.archive.append((name, archived))
                self.report.archived.append(str(self.dir / archived))

    def age_out(self) -> None:
        limits = {"deleted": self.cfg.prune_after_ms, "reset": self.cfg.reset_archive_retention_ms}

        def expired(name: str) -> bool:
            info = parse_archive_name(name)
            limit = limits.get(info[0]) if info is not None else None
            return info is not None and limit is not None and info[1] < self.now - limit

        for name in sorted(self.files):
            if expired(name):
                self._delete_file(name)
        # Archived transcripts in the table age out by the same rules.
        for name in sorted(self.in_table or ()):
            if expired(name):
                self._drop_rows(name)

    def rotate(self) -> None:
        live = self.ctx.paths.json_path
        current = self.files.get(live.name)
        if current is None or current.size <= self.cfg.rotate_bytes:
            return
        backup = live.with_name(f"{live.name}.bak.{self.now}")
        if self.apply:
            # A copy, not a rename: the live file never disappears (upstream's crash window).
            try:
                atomic_write(backup, live.read_bytes(), mode=0o600)
            except OSError as exc:
                raise os_error(exc, "back up", live) from exc
        self.files[backup.name] = _File(current.size, self.now / 1000)
        self.report.rotatedTo = str(backup)
        prefix = f"{live.name}.bak."
        backups = sorted(
            n for n in self.files if n.startswith(prefix) and n[len(prefix) :].isdigit()
        )
        for name in backups[:-JSON_BACKUPS_KEPT]:
            self._delete_file(name)

    def _total(self) -> int:
        """Bytes of the sessions dir, the index counted at its projected size."""
        files = sum(f.size for n, f in self.files.items() if n not in self.index_names)
        rows = sum(h.bytes for h in (self.in_table or {}).values())
        return self.txn.index_bytes() + files + rows

    def _table_candidates(self, live: _Referenced) -> list[tuple[float, str, bool]]:
        """Transcripts in the table the budget may delete: archives, then unreferenced ones.

        An archive's time is in its name; an unreferenced transcript's is when its last
        line was written (read for those only, one indexed row each).
        """
        if self.in_table is None:
            return []
        out: list[tuple[float, str, bool]] = []
        orphans = []
        for name in self.in_table:
            info = parse_archive_name(name)
            if info is not None:
                out.append((info[1] / 1000, name, True))
                continue
            parsed = parse_name(f"{name}.jsonl", live)
            if parsed is None or parsed.session_id not in live:
                orphans.append(name)
        if orphans:
            assert self.last_written is not None
            written = self.last_written(orphans)
            out += [(written.get(n, 0) / 1000, n, True) for n in orphans]
        return out

    def disk_budget(self) -> None:
        limit = self.cfg.max_disk_bytes
        if limit is None:
            return
        high = min(self.cfg.high_water_bytes or max(int(limit * 0.8), 1), limit)
        total = self._total()
        before, removed_entries = total, 0
        files_before = len(self.plan.delete)
        if total > limit:
            ids: Counter[str] = Counter()
            names: set[str] = set()
            for ref in self.txn.rows():
                ids[ref.session_id] += 1
                if ref.session_file:
                    names.add(os.path.basename(ref.session_file))

            live = _Referenced(ids.__getitem__)

            def referenced(name: str) -> bool:
                if name in names:
                    return True
                parsed = parse_name(name, live)
                return parsed is not None and parsed.session_id in live

            # (time, name, in the table): archives and unreferenced transcripts, oldest first.
            candidates = [
                (self.files[n].mtime, n, False)
                for n in self.files
                if n not in self.index_names
                and (is_archive_artifact(n) or (is_primary_transcript(n) and not referenced(n)))
            ]
            candidates += self._table_candidates(live)
            for _, name, row in sorted(candidates):
                if total <= high:
                    break
                total -= self._drop_rows(name) if row else self._delete_file(name)
            # Entries oldest first: each round removes what its size estimate says is
            # enough, then the index is measured again (blobs and pages free unevenly).
            fixed = {
                n: f.size
                for n, f in self.files.items()
                if n not in self.index_names
                and not is_primary_transcript(n)
                and not is_archive_artifact(n)
            }
            if sum(fixed.values()) >= high:
                largest = sorted(fixed, key=lambda n: -fixed[n])[:3]
                self.report.warnings.append(
                    f"{sum(fixed.values())} bytes of the sessions dir are files maintenance"
                    f" never removes (largest: {', '.join(largest)}), more than the"
                    f" {high}-byte high-water mark: no session was evicted; remove or move"
                    " those files, or raise maxDiskBytes"
                )
            rows = self.txn.oldest(self.protect)
            # SQLite frees whole pages, unevenly, so a row-size estimate can evict more
            # sessions than needed: measure the index (three PRAGMAs) after every eviction.
            # For sessions.json measuring means serialising the store; its estimate (the
            # entry's pretty-printed chunk) is exact, so rounds are batched there.
            one_by_one = self.ctx.store_type != "json"
            files_bytes = total - self.txn.index_bytes()
            while total > high and sum(fixed.values()) < high:
                victims: list[RowRef] = []
                for ref in rows:
                    victims.append(ref)
                    total -= ref.size
                    ids[ref.session_id] -= 1
                    if ref.session_id and ids[ref.session_id] <= 0 and self.in_table is not None:
                        for name in self._table_names(ref.session_id):
                            freed = self._drop_rows(name, ref.session_id)
                            total -= freed
                            files_bytes -= freed
                    elif ref.session_id and ids[ref.session_id] <= 0:
                        for name in self._transcript_names(ref, live):
                            self.plan.owner[name] = ref.session_id
                            freed = self._delete_file(name)
                            total -= freed
                            files_bytes -= freed
                    if one_by_one or total <= high:
                        break
                if not victims:
                    break
                removed_entries += len(self._remove(victims, "evict-budget"))
                total = self.txn.index_bytes() + files_bytes
        self.report.evicted = removed_entries
        self.report.diskBudget = DiskBudgetReport(
            totalBytesBefore=before,
            totalBytesAfter=total,
            removedFiles=len(self.plan.delete) - files_before,
            removedEntries=removed_entries,
            freedBytes=before - total,
            maxBytes=limit,
            highWaterBytes=high,
            overBudget=before > limit,
        )


_COUNTERS: Final = {
    "prune-missing": "missing",
    "prune-cron": "reaped",
    "prune-stale": "pruned",
    "cap-overflow": "capped",
    "evict-budget": "evicted",
}


def _drop_kept(kept: frozenset[str], plan: _Plan, report: MaintenanceReport) -> None:
    """Take rows a concurrent writer changed after the plan out of the report and file plan.

    The plan was made on a snapshot and applied in batches (sqlite); a row changed since
    it was planned is kept as it now is. Its action leaves the report (and its count), the
    entry count after is corrected, its transcripts stay, and a warning says how many.
    """
    if not kept:
        return
    ids = set()
    actions = []
    for action in report.actions:
        if action.key in kept:
            ids.add(action.sessionId)
            name = _COUNTERS[action.action]
            setattr(report, name, getattr(report, name) - 1)
        else:
            actions.append(action)
    dropped = len(report.actions) - len(actions)
    report.actions = actions
    report.afterCount += dropped
    if report.diskBudget is not None:
        report.diskBudget.removedEntries = report.evicted
    plan.archive = [(n, a) for n, a in plan.archive if plan.owner.get(n) not in ids]
    plan.delete = [n for n in plan.delete if plan.owner.get(n) not in ids]
    plan.archive_rows = [sid for sid in plan.archive_rows if sid not in ids]
    plan.drop_rows = [n for n in plan.drop_rows if plan.row_owner.get(n) not in ids]
    report.warnings.append(
        f"{dropped} session(s) changed by another writer while maintenance ran were kept"
        " (run maintenance again to judge them anew)"
    )


def _table(ctx: StoreContext) -> PostgresIndex:
    from .index.postgres import PostgresIndex

    assert isinstance(ctx.index, PostgresIndex)
    return ctx.index


def _archive_rows(ctx: StoreContext, plan: _Plan, report: MaintenanceReport) -> list[str]:
    """Archive the planned sessions' transcript rows; the report's names of the archives."""
    from .transcripts.postgres import PostgresTranscript

    index = _table(ctx)
    archived: list[str] = []
    for sid in plan.archive_rows:
        try:
            # Unless an entry references the session again (a writer since the plan).
            if PostgresTranscript(index, sid).archive(
                "deleted", stamp=plan.stamp, unreferenced=True
            ):
                archived += [
                    _row_label(index.location, name)
                    for name, owner in plan.row_owner.items()
                    if owner == sid and name.endswith(f".deleted.{plan.stamp}")
                ]
        except SessionStoreError as exc:
            report.errors.append(f"cannot archive the transcript of {sid}: {exc}")
    return archived


def _drop_row_sets(
    ctx: StoreContext, plan: _Plan, report: MaintenanceReport
) -> tuple[list[str], int]:
    """Delete the planned transcripts' rows; the report's names of them and their bytes."""
    from .transcripts.postgres import drop_transcript

    index = _table(ctx)
    removed: list[str] = []
    freed = 0
    for name in plan.drop_rows:
        try:
            dropped = drop_transcript(index, name, plan.row_owner.get(name, name))
        except SessionStoreError as exc:
            report.errors.append(f"cannot delete the transcript {name}: {exc}")
            continue
        if dropped is not None:
            removed.append(_row_label(index.location, name))
            freed += dropped
    return removed, freed


def _carry_out(ctx: StoreContext, plan: _Plan, report: MaintenanceReport) -> None:
    """Archive and delete the planned files (after the index change committed)."""
    directory = ctx.paths.sessions_dir
    archived = _archive_rows(ctx, plan, report) if plan.archive_rows else []
    removed: list[str] = []
    freed = 0
    for name, archive_name in plan.archive:
        path = directory / name
        target = directory / archive_name
        try:
            if target.exists():
                continue  # never overwrite an archive
            os.rename(path, target)
            archived.append(str(target))
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.errors.append(f"cannot archive {path}: {exc.strerror}")
    report.archived = archived
    for name in plan.delete:
        path = directory / name
        try:
            size = path.lstat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.errors.append(f"cannot delete {path}: {exc.strerror}")
            continue
        removed.append(str(path))
        freed += size
    if plan.drop_rows:  # after the archives: a row set archived above may be deleted here
        rows, rows_bytes = _drop_row_sets(ctx, plan, report)
        removed += rows
        freed += rows_bytes
    report.removedFiles, report.bytesFreed = removed, freed
    if archived or removed:
        with contextlib.suppress(SessionStoreError):
            fsync_dir(directory)


def _pass(
    ctx: StoreContext,
    report: MaintenanceReport,
    *,
    cfg: MaintenanceConfig,
    protect: frozenset[str],
    steps: frozenset[str],
    apply: bool,
    now: int,
) -> None:
    def body(txn: MaintenanceTxn) -> _Run:
        in_table: dict[str, Head] | None = None
        last_written = None
        if ctx.table_transcripts:
            from .index.postgres import _PgMaintenance
            from .transcripts.postgres import last_written_ms, transcript_heads

            index = _table(ctx)
            in_table = {}
            if isinstance(txn, _PgMaintenance):  # else the store has no tables yet
                conn = txn.connection
                in_table = transcript_heads(index, conn)

                def last_written(names: list[str]) -> dict[str, int]:
                    return last_written_ms(index, conn, names)

        run = _Run(
            ctx,
            txn,
            report,
            cfg=cfg,
            protect=protect,
            apply=apply,
            now=now,
            in_table=in_table,
            last_written=last_written,
        )
        report.beforeCount = txn.count()
        if "missing" in steps:
            run.fix_missing()
        if "cron" in steps and ctx.config.cron_session_retention_ms is not None:
            run.archive(run.reap_cron(ctx.config.cron_session_retention_ms))
        if "main" in steps:
            run.archive(run.prune_and_cap())
            if report.archived or cfg.reset_archive_retention_ms is not None:
                run.age_out()
            if ctx.store_type == "json":
                run.rotate()
            run.disk_budget()
        report.afterCount = txn.count()
        return run

    run = ctx.index.maintenance(body, commit=apply)
    if apply:
        # Backends that apply a snapshot's plan in batches (sqlite) name the rows they kept.
        _drop_kept(getattr(run.txn, "kept_keys", frozenset()), run.plan, report)
        _carry_out(ctx, run.plan, report)
    else:
        report.removedFiles = [str(ctx.paths.sessions_dir / n) for n in run.plan.delete] + [
            _row_label(ctx.index.location, n) for n in run.plan.drop_rows
        ]
        # From the plan's model, not the disk: a file archived and then deleted in the same
        # pass (or a backup not yet made) exists only there.
        report.bytesFreed = run.plan.delete_bytes


def run_maintenance(
    ctx: StoreContext,
    *,
    mode: str | None = None,
    dry_run: bool = False,
    active_key: str | None = None,
    fix_missing: bool = False,
    reap_cron: bool = False,
    now: int | None = None,
) -> MaintenanceReport:
    """Run maintenance on one store: what ``SessionStore.maintain()`` calls.

    Args:
        ctx: The store's context (``StoreContext.of(store)``).
        mode: ``warn`` or ``enforce``; default the configured ``session.maintenance.mode``.
        dry_run: Report what would happen; change nothing.
        active_key: A session that is never pruned, capped or evicted.
        fix_missing: Also remove entries whose transcript file does not exist (applied
            in warn mode too, unless ``dry_run``).
        reap_cron: Also run OpenClaw's cron reaper: remove cron run entries idle longer
            than ``cron.sessionRetention`` and archive their transcripts (applied in warn
            mode too, as upstream, unless ``dry_run``; nothing when the setting is false).
        now: The time in ms to judge ages against (default: now).

    Returns:
        The report. In warn mode, or with ``dry_run``, it describes what enforce would do.

    Raises:
        InvalidArgumentError: An unknown mode.
    """
    cfg = ctx.config.maintenance
    chosen = cfg.mode if mode is None else mode
    if chosen not in MODES:
        raise InvalidArgumentError(f"maintenance mode must be warn or enforce, got {chosen!r}")
    protect = frozenset({fold_key(canonical_key(active_key))} if active_key else ())
    at = now_ms() if now is None else now
    report = MaintenanceReport(
        agentId=ctx.agent_id,
        storePath=ctx.index.location,
        storeType=ctx.store_type,
        mode=chosen,
        dryRun=dry_run,
    )
    enforce = chosen == "enforce"
    always = (_MISSING if fix_missing else frozenset()) | (_CRON if reap_cron else frozenset())
    if always and not enforce and not dry_run:
        # Warn mode still removes entries with missing transcripts and reaps cron runs (as
        # upstream); the rest is only reported.
        first = MaintenanceReport(report.agentId, report.storePath, report.storeType, chosen, False)
        _pass(ctx, first, cfg=cfg, protect=protect, steps=always, apply=True, now=at)
        _pass(ctx, report, cfg=cfg, protect=protect, steps=_MAIN, apply=False, now=at)
        report.beforeCount = first.beforeCount
        report.missing, report.reaped = first.missing, first.reaped
        report.actions = first.actions + report.actions
        report.archived = first.archived + report.archived
        report.removedFiles = first.removedFiles + report.removedFiles
        report.errors = first.errors + report.errors
        report.applied = first.would_mutate
    else:
        apply = enforce and not dry_run
        _pass(ctx, report, cfg=cfg, protect=protect, steps=always | _MAIN, apply=apply, now=at)
        report.applied = apply and report.would_mutate
    budget = report.diskBudget
    if not enforce and budget is not None and budget.overBudget:
        report.warnings.append(
            f"{ctx.paths.sessions_dir} holds {budget.totalBytesBefore} bytes, over its budget"
            f" of {budget.maxBytes} (warn mode: nothing was removed)"
        )
    return report
