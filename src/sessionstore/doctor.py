"""The doctor: consistency checks over one store, and the repairs that are safe.

Each check yields :class:`Finding` records. ``fix=True`` repairs only what can be repaired
without losing anything: counters and derived data are recomputed, a torn transcript tail
is cut off with the cut bytes kept beside it, dead owners' lock and temp files are removed.
User data (entries, transcripts, archives) is never deleted; what cannot be repaired safely
is reported with what to do.
"""

from __future__ import annotations

import contextlib
import os
import time
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from .config import SETTINGS_FILE, SETTINGS_KEYS
from .context import StoreContext
from .errors import CorruptStoreError, SessionStoreError
from .files import abandoned_build
from .index.rowcodec import unpack
from .keys import canonical_key
from .lockfile import lock_is_stale, remove_stale_lock
from .transcripts.jsonl import Transcript
from .transcripts.naming import (
    claims_transcript,
    file_names,
    is_archive_artifact,
    is_session_id,
    locate_transcript,
    missing_transcript,
    parse_name,
)

if TYPE_CHECKING:
    import apsw

__all__ = ["FINDING_KINDS", "Finding", "run_checks"]

FINDING_KINDS: Final = (
    "integrity",
    "blob-refcount",
    "blob-missing",
    "count-drift",
    "missing-transcript",
    "orphan-transcript",
    "torn-tail",
    "message-count-drift",
    "split-store",
    "openclaw-db-not-imported",
    "stale-temp-file",
    "stale-lock",
    "wal-size",
    "sqlite-version",
    "network-filesystem",
    "openclaw-config",
)
WAL_WARN_BYTES: Final = 64 * 1024 * 1024
TEMP_STALE_SECONDS: Final = 60.0
SQLITE_WAL_RESET_FIX: Final = (3, 51, 3)
NETWORK_FILESYSTEMS: Final = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "fuse.sshfs",
        "fuse.rclone",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "davfs",
        "fuse.davfs2",
    }
)


@dataclass
class Finding:
    """One problem (or notable fact) the doctor found.

    Attributes:
        kind: One of :data:`FINDING_KINDS`.
        subject: The file or session key concerned.
        message: What is wrong, and what to do when it was not repaired.
        severity: ``error`` (data at risk), ``warning`` (needs attention) or ``info``.
        fixed: Whether ``fix=True`` repaired it.
    """

    kind: str
    subject: str
    message: str
    severity: str = "warning"
    fixed: bool = False

    @property
    def unresolved(self) -> bool:
        """A problem that remains (not repaired, and more than information)."""
        return not self.fixed and self.severity != "info"

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-ready dict."""
        return asdict(self)


class _Doctor:
    def __init__(self, ctx: StoreContext, fix: bool) -> None:
        self.ctx = ctx
        self.fix = fix
        self.dir = ctx.paths.sessions_dir
        self.findings: list[Finding] = []
        self.index_trusted = True  # False once the index failed its integrity check

    def add(
        self, kind: str, subject: object, message: str, *, severity: str = "warning"
    ) -> Finding:
        finding = Finding(kind, str(subject), message, severity)
        self.findings.append(finding)
        return finding

    # --- the index --------------------------------------------------------------------

    def sqlite(self) -> None:
        from .index.sqlite import SqliteIndex

        index = self.ctx.index
        if not isinstance(index, SqliteIndex) or not index.exists():
            return
        conn = index.connection()
        path = index.path
        try:
            problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)")]
        except Exception as exc:  # apsw raises CorruptError and friends
            problems = [str(exc)]
        if problems != ["ok"]:
            self.index_trusted = False
            self.add(
                "integrity",
                path,
                "SQLite integrity_check failed: "
                + "; ".join(problems[:5])
                + " - `sessionstore recover` rebuilds it from what is readable plus"
                " sessions.json (the damaged file is kept)",
                severity="error",
            )
            return  # the checks below read the database they would not trust
        try:
            self._blobs(index, conn)
            self._counter(index, conn)
            self._wal(index, conn)
        except (SessionStoreError, sqlite_error()) as exc:
            # integrity_check passes a database whose tables no longer look like ours
            # (a column renamed by hand, say): what cannot be read is itself the finding.
            self.index_trusted = False
            self.add(
                "integrity",
                path,
                f"the database's tables are not what sessionstore writes ({exc}) -"
                " `sessionstore recover` rebuilds it from what is readable plus sessions.json",
                severity="error",
            )
            return
        version = tuple(int(p) for p in str(_sqlite_version()).split(".")[:3])
        if version < SQLITE_WAL_RESET_FIX:
            self.add(
                "sqlite-version",
                path,
                f"SQLite {'.'.join(map(str, version))} predates 3.51.3 and carries the WAL-reset"
                " bug that can corrupt a database under concurrent writers and checkpoints;"
                " upgrade apsw (`pip install -U apsw`)",
            )

    def postgres(self) -> None:
        """The blob references of a postgres store, checked (and recounted) in SQL."""
        if self.ctx.store_type != "postgres":
            return
        from .index.postgres import PostgresIndex

        index = self.ctx.index
        assert isinstance(index, PostgresIndex)
        missing, drift = index.blob_drift()
        for digest, n in sorted(missing.items()):
            self.add(
                "blob-missing",
                f"blob {digest}",
                f"{n} session(s) reference a blob that is gone; those entries cannot be read"
                " whole - restore the database from a backup",
                severity="error",
            )
        if not drift:
            return
        finding = self.add(
            "blob-refcount",
            index.location,
            f"{len(drift)} blob reference count(s) disagree with the sessions referencing"
            " them (derived data; `doctor --fix` recounts them)",
        )
        if self.fix:
            index.fix_blob_refcounts(drift)
            finding.fixed = True

    def _blobs(self, index: Any, conn: apsw.Connection) -> None:
        actual: Counter[str] = Counter()
        unreadable = False
        for key, refs in conn.execute(
            "SELECT session_key, blob_refs FROM sessions WHERE blob_refs IS NOT NULL"
        ):
            try:
                digests = orjson.loads(refs)
            except orjson.JSONDecodeError:
                digests = None
            if not isinstance(digests, dict) or not all(
                isinstance(d, str) for d in digests.values()
            ):
                unreadable = True
                self.add(
                    "integrity",
                    key,
                    f"the blob references of this session cannot be read ({refs!r:.80});"
                    " restore the database from a backup",
                    severity="error",
                )
                continue
            actual.update(digests.values())
        stored = {d: n for d, n in conn.execute("SELECT digest, refcount FROM blobs")}
        missing = sorted(d for d in actual if d not in stored)
        for digest in missing:
            self.add(
                "blob-missing",
                f"blob {digest}",
                f"{actual[digest]} session(s) reference a blob that is gone; those entries"
                " cannot be read whole - restore the database from a backup",
                severity="error",
            )
        drift = {d: actual.get(d, 0) for d, n in stored.items() if n != actual.get(d, 0)}
        if not drift or unreadable:  # recounting without every reference would drop blobs
            return
        finding = self.add(
            "blob-refcount",
            index.path,
            f"{len(drift)} blob reference count(s) disagree with the sessions referencing"
            " them (derived data; `doctor --fix` recounts them)",
        )
        if self.fix:
            with index.write_transaction() as txn:
                for digest, n in drift.items():
                    if n == 0:
                        txn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
                    else:
                        txn.execute("UPDATE blobs SET refcount = ? WHERE digest = ?", (n, digest))
            finding.fixed = True

    def _counter(self, index: Any, conn: apsw.Connection) -> None:
        (real,) = conn.execute("SELECT count(*) FROM sessions").fetchall()[0]
        kept = conn.execute("SELECT row_count FROM stats WHERE id = 1").fetchall()
        if kept and kept[0][0] == real:
            return
        finding = self.add(
            "count-drift",
            index.path,
            f"the session counter says {kept[0][0] if kept else 'nothing'}, the table holds"
            f" {real} rows (`doctor --fix` recounts)",
        )
        if self.fix:
            with index.write_transaction() as txn:
                txn.execute(
                    "INSERT OR REPLACE INTO stats(id, row_count)"
                    " VALUES (1, (SELECT count(*) FROM sessions))"
                )
            finding.fixed = True

    def _wal(self, index: Any, conn: apsw.Connection) -> None:
        wal = Path(f"{index.path}-wal")
        try:
            size = wal.stat().st_size
        except OSError:
            return
        if size <= WAL_WARN_BYTES:
            return
        finding = self.add(
            "wal-size",
            wal,
            f"the write-ahead log is {size} bytes: a long-running reader keeps checkpoints"
            " from finishing; close idle readers, then `sessionstore vacuum`",
        )
        if self.fix:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0]
            with contextlib.suppress(OSError):
                finding.fixed = busy == 0 and wal.stat().st_size <= WAL_WARN_BYTES

    def split(self) -> None:
        from .migrate import split_warning

        ctx = self.ctx
        try:
            record = ctx.index.migration_record() if ctx.store_type == "sqlite" else None
        except CorruptStoreError as exc:
            self.add("integrity", exc.path, str(exc), severity="error")
            return
        warning = split_warning(ctx.paths, ctx.store_type, record)
        if warning:
            subject = ctx.paths.json_path if ctx.store_type == "sqlite" else ctx.paths.sqlite_path
            self.add("split-store", subject, warning)

    def openclaw_db(self) -> None:
        from .openclaw_import import import_record, openclaw_db_status, openclaw_db_warning

        ctx = self.ctx
        status = openclaw_db_status(ctx.state_dir, ctx.agent_id, import_record(ctx.index))
        warning = openclaw_db_warning(status)
        if status is not None and warning:
            self.add("openclaw-db-not-imported", status["path"], warning)

    # --- transcripts ------------------------------------------------------------------

    def _entries(self) -> dict[str, dict[str, Any]] | None:
        """Every entry, without its large blobs (an entry whose blob is gone still counts)."""
        from .index.sqlite import SqliteIndex

        index = self.ctx.index
        if isinstance(index, SqliteIndex) and not index.exists():
            return {}
        if isinstance(index, SqliteIndex):
            entries: dict[str, dict[str, Any]] = {}
            for key, session_id, entry_json in index.connection().execute(
                "SELECT session_key, session_id, entry_json FROM sessions ORDER BY rowid"
            ):
                try:
                    entry = orjson.loads(unpack(entry_json))
                except (ValueError, zlib.error) as exc:
                    entry = None
                    problem = str(exc)
                else:
                    problem = "not a JSON object"
                if not isinstance(entry, dict):
                    self.add(
                        "integrity",
                        key,
                        f"the stored entry cannot be read ({problem}); restore the database"
                        " from a backup",
                        severity="error",
                    )
                    entry = {"sessionId": session_id}  # its transcript is still its own
                entries[str(key)] = entry
            return entries
        try:
            return index.load_all()
        except CorruptStoreError as exc:  # sessions.json that does not parse: report it
            self.add("integrity", exc.path, str(exc), severity="error")
            return None

    def transcripts(self) -> None:
        entries = self._entries()
        if entries is None:
            return  # without the entries every transcript would look orphaned
        if self.ctx.table_transcripts:
            self._table_transcripts(entries)
            return
        dirs = self.ctx.transcript_dirs
        names = file_names(self.dir)
        ids = {e["sessionId"] for e in entries.values() if isinstance(e.get("sessionId"), str)}
        referenced_names: set[str] = set()
        for key, entry in entries.items():
            sid, session_file = entry.get("sessionId"), entry.get("sessionFile")
            count, size = entry.get("messageCount"), entry.get("transcriptBytes")
            lost = missing_transcript(dirs, sid, session_file, count, names=names, claimed=ids)
            if lost is not None:
                self.add(
                    "missing-transcript",
                    key,
                    f"the transcript {lost.path} is missing; restore it, or drop such entries"
                    " with `sessionstore cleanup --fix-missing`",
                )
                continue
            if not isinstance(sid, str):
                continue
            try:
                location = locate_transcript(dirs, sid, session_file)
            except SessionStoreError:
                continue  # a sessionId that cannot name a file: nothing to check
            referenced_names.update(
                c.path.name for c in location.candidates if c.path.parent == self.dir
            )
            path = location.path
            if not path.exists():
                continue
            self._torn(Transcript(path, sid))
            # Only an index that keeps counts (appends update them) can drift; sessions.json
            # is not rewritten by appends, so there messageCount is not kept at all.
            counted = self.ctx.index.transcript_checkpoints().in_index
            if counted and isinstance(count, int) and not isinstance(count, bool):
                self._drift(key, sid, path, count, size)
        self._orphans(names, ids, referenced_names)

    def _table_transcripts(self, entries: dict[str, dict[str, Any]]) -> None:
        """Entries against the postgres ``transcripts`` table (heads only, no line read).

        An entry that claims a transcript the table lacks is reported (never repaired); a
        ``messageCount`` that differs from the table's count, or a ``transcriptBytes``
        above the table's bytes (the rule files follow), is recounted by ``--fix``.
        Transcripts no entry references (archives aside) are reported, and ``--fix``
        archives them as ``.deleted.<ts>``: never deleted.
        """
        from .index.postgres import PostgresIndex
        from .transcripts.postgres import transcript_heads

        index = self.ctx.index
        assert isinstance(index, PostgresIndex)
        heads = transcript_heads(index)
        ids: set[str] = set()
        for key, entry in entries.items():
            sid, count = entry.get("sessionId"), entry.get("messageCount")
            if isinstance(sid, str):
                ids.add(sid)
            if not is_session_id(sid):
                continue
            assert isinstance(sid, str)
            head = heads.get(sid)
            if head is None:
                if claims_transcript(entry.get("sessionFile"), count):
                    self.add(
                        "missing-transcript",
                        key,
                        f"the transcript of session {sid} is not in {index.location}; import"
                        " it (`sessionstore migrate --to postgres`), or drop such entries with"
                        " `sessionstore cleanup --fix-missing`",
                    )
                continue
            size = entry.get("transcriptBytes")
            if not isinstance(count, int) or isinstance(count, bool):
                continue
            if count != head.messages or (isinstance(size, int) and size > head.bytes):
                self._recount(key, sid, count, head.messages, head.bytes)
        self._table_orphans(index, heads, ids)

    def _table_orphans(self, index: Any, heads: Mapping[str, Any], ids: set[str]) -> None:
        from .transcripts.postgres import PostgresTranscript

        archived: set[str] = set()
        for name in sorted(heads):
            if is_archive_artifact(name):
                continue
            parsed = parse_name(f"{name}.jsonl", ids)
            if parsed is not None and parsed.session_id in ids:
                continue
            owner = parsed.session_id if parsed is not None and parsed.session_id else name
            finding = self.add(
                "orphan-transcript",
                f"{index.location}: transcript {name}",
                "no session references this transcript (`doctor --fix` archives it as"
                " .deleted.<ts>; nothing is deleted)",
                severity="info",
            )
            if not self.fix:
                continue
            # Its topics go with it, unless a session references it by now.
            if owner not in archived and PostgresTranscript(index, owner).archive(
                "deleted", unreferenced=True
            ):
                archived.add(owner)
            finding.fixed = owner in archived

    def _torn(self, transcript: Transcript) -> None:
        cut = transcript.torn_bytes()
        if not cut:
            return
        finding = self.add(
            "torn-tail",
            transcript.path,
            f"the last {cut} bytes are an incomplete line (a write cut short by a crash); the"
            " next append cuts them off, `doctor --fix` does it now and keeps them in a"
            " .torn.<ts> file",
        )
        if self.fix:
            finding.fixed = transcript.repair_tail() is not None

    def _drift(self, key: str, sid: str, path: Path, count: int, size: object) -> None:
        transcript = Transcript(path, sid)
        actual = transcript.message_count()
        actual_size = path.stat().st_size
        if actual == count and (not isinstance(size, int) or size <= actual_size):
            return
        self._recount(key, sid, count, actual, actual_size)

    def _recount(
        self, key: str, sid: str, count: int, actual: int, actual_size: int | None
    ) -> None:
        """Report a drifted ``messageCount`` and, with ``fix``, store the actual count."""
        finding = self.add(
            "message-count-drift",
            key,
            f"messageCount says {count}, the transcript holds {actual} messages"
            " (`doctor --fix` recounts)",
        )
        if not self.fix:
            return

        def recount(existing: dict[str, Any] | None) -> dict[str, Any] | None:
            if existing is None or existing.get("sessionId") != sid:
                return None
            out = {**existing, "messageCount": actual}
            if actual_size is not None:
                out["transcriptBytes"] = actual_size
            return out

        try:
            _, written = self.ctx.index.modify(
                canonical_key(key), recount, needs_blobs=False, full_result=False
            )
        except SessionStoreError as exc:  # e.g. a blob of the entry is gone (blob-missing)
            finding.message += f"; not recounted: {exc}"
            return
        finding.fixed = written

    def _orphans(self, names: set[str], ids: set[str], referenced: set[str]) -> None:
        for name in sorted(names):
            parsed = parse_name(name, ids)
            if parsed is None or parsed.kind != "primary" or name in referenced:
                continue
            if parsed.session_id in ids:
                continue
            self.add(
                "orphan-transcript",
                self.dir / name,
                "no session references this transcript; it was left alone (archive or delete"
                " it yourself if it is not needed)",
                severity="info",
            )

    # --- files ------------------------------------------------------------------------

    def files(self) -> None:
        lock = self.ctx.paths.json_path.with_name(self.ctx.paths.json_path.name + ".lock")
        now = time.time()
        for name in sorted(file_names(self.dir)):
            path = self.dir / name
            if name.endswith(".lock"):
                stale, payload = lock_is_stale(path, 30_000, own_pid=-1)
                if not stale:
                    continue
                finding = self.add(
                    "stale-lock",
                    path,
                    f"lock file of a dead owner (pid {payload.get('pid', '?')}); writers wait"
                    " for it until it is judged stale (`doctor --fix` removes it)",
                )
                if self.fix:
                    finding.fixed = remove_stale_lock(path)
            elif ".lock.stale." in name or name.endswith(".tmp"):
                try:
                    age = now - path.stat().st_mtime
                except OSError:
                    continue
                if name.startswith(f"{self.ctx.paths.sqlite_path.name}.") and name.endswith(".tmp"):
                    # A database built under an flock: abandoned or not, we can tell now.
                    if not abandoned_build(path, TEMP_STALE_SECONDS):
                        continue
                elif age < TEMP_STALE_SECONDS or (name.endswith(".tmp") and _lock_held(lock)):
                    continue  # possibly a write in flight
                finding = self.add(
                    "stale-temp-file",
                    path,
                    "temporary file of an interrupted write (never part of the store);"
                    " `doctor --fix` removes it",
                )
                if self.fix:
                    with contextlib.suppress(OSError):
                        path.unlink()
                        finding.fixed = True

    def settings(self) -> None:
        """Keys in openclaw.json's ``session`` section that make OpenClaw refuse to start."""
        config = self.ctx.config
        if config.path is None:
            return
        ours = set(SETTINGS_KEYS)
        for key in config.rejected_keys:
            if key in ours:
                fix = (
                    f"move it to {self.ctx.state_dir / SETTINGS_FILE}, where this library reads"
                    " it and OpenClaw does not look"
                )
                if key == "storeType":
                    fix += " (only a build of OpenClaw's PR #58550 accepts session.storeType)"
            else:
                fix = "remove it (or check the spelling against OpenClaw's documentation)"
            self.add(
                "openclaw-config",
                config.path,
                f"session.{key} is not a key of OpenClaw's session settings: an OpenClaw"
                f" gateway refuses to start with this openclaw.json (INVALID_CONFIG); {fix}",
            )

    def filesystem(self) -> None:
        fstype = _filesystem_type(self.dir)
        if fstype in NETWORK_FILESYSTEMS or (fstype or "").startswith("nfs"):
            self.add(
                "network-filesystem",
                self.dir,
                f"the store is on a network file system ({fstype}): SQLite locking and WAL"
                " are not safe there; move the state dir to a local disk",
                severity="error" if self.ctx.store_type == "sqlite" else "warning",
            )


def _lock_held(lock: Path) -> bool:
    if not lock.exists():
        return False
    stale, _ = lock_is_stale(lock, 30_000, own_pid=-1)
    return not stale


def sqlite_error() -> type[Exception]:
    """The SQLite driver's error class (apsw is imported only where a store is checked)."""
    import apsw

    return apsw.Error


def _sqlite_version() -> str:
    import apsw

    return str(apsw.sqlite_lib_version())


def _filesystem_type(path: Path) -> str | None:
    """The type of the file system holding ``path`` (from /proc/self/mountinfo)."""
    try:
        real = os.path.realpath(path)
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, fstype = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, right.split()[0]
    return fstype


def run_checks(ctx: StoreContext, *, fix: bool = False) -> list[Finding]:
    """Run every check on one store: what ``SessionStore.check()`` calls.

    Args:
        ctx: The store's context (``StoreContext.of(store)``).
        fix: Repair what is safe to repair.

    Returns:
        The findings, in the order found.
    """
    doctor = _Doctor(ctx, fix)
    doctor.sqlite()
    doctor.postgres()
    # Dead owners' locks first: a repair that writes sessions.json would otherwise remove
    # such a lock by itself, and the finding would go unreported.
    doctor.files()
    if doctor.index_trusted:  # the checks below read (and their repairs write) the index
        doctor.split()
        doctor.openclaw_db()
        doctor.transcripts()
    doctor.filesystem()
    doctor.settings()
    return doctor.findings
