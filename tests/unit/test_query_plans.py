"""SQLite hot path: no operation scans the table, and work does not grow with the store.

Two stores are seeded identically except for the size of their bulk (N=100 and N=2000
sessions); a constant set of "special" sessions (other agent, channel, label, spawnedBy,
parentSessionKey) is spread evenly in time among the bulk, so a filter that walked the wrong
index would have to step over bulk rows. Each operation is traced with apsw's exec tracer
(statements and bindings) and ``trace_v2`` (rows returned, VM steps, full-scan steps), and
every statement it ran is re-checked with ``EXPLAIN QUERY PLAN``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore import SessionStore
from sessionstore.index.rowcodec import CODEC_DEFLATE_V1, unpack
from sessionstore.index.sqlite import _SqliteMaintenance

SIZES = (100, 2000)
SPECIAL = 60
BASE = 1_700_000_000_000
SKILLS = {"prompt": "You can use these skills.", "skills": [{"name": f"s{i}"} for i in range(20)]}
REPORT = {"source": "run", "systemPrompt": {"chars": 5000}, "tools": [{"name": "exec"}]}

PK_INDEX = "sqlite_autoindex_sessions_1"


def bulk_key(i: int) -> str:
    return f"agent:main:telegram:direct:{i:05d}"


def special_key(j: int) -> str:
    return f"agent:ops:discord:channel:c{j:03d}"


def _seed(store: SessionStore, n: int) -> None:
    spots = [j * n // SPECIAL for j in range(SPECIAL)]
    assert len(set(spots)) == SPECIAL

    def fill(st: dict[str, Any]) -> None:
        for i in range(n):
            st[bulk_key(i)] = {
                "sessionId": f"bulk-{i}",
                "updatedAt": BASE + i * 1000,
                "lastChannel": "telegram",
                "lastTo": str(i),
                "label": f"bulk {i}",
                "skillsSnapshot": SKILLS,
            }
        for j, i in enumerate(spots):
            entry: dict[str, Any] = {
                "sessionId": f"special-{j}",
                "updatedAt": BASE + i * 1000 + 1,
                "channel": "discord",
                "label": "needle",
                "systemPromptReport": REPORT,
            }
            entry["spawnedBy" if j % 2 else "parentSessionKey"] = "agent:main:main"
            st[special_key(j)] = entry
        st["global"] = {"sessionId": "g", "updatedAt": BASE + 5}
        st["unknown"] = {"sessionId": "u", "updatedAt": BASE + 6}
        for j in range(5):
            st[f"agent:main:cron:job{j}:run:r{j}"] = {"sessionId": f"c{j}", "updatedAt": BASE + 7}
        st["agent:main:main"] = {
            "sessionId": "main",
            "updatedAt": BASE + n * 500 + 2,  # no tie with a bulk row (i = n / 2)
            "skillsSnapshot": SKILLS,
            "systemPromptReport": REPORT,
            "model": "gpt-5",
        }

    store.mutate(fill)
    assert store.count() == n + SPECIAL + 2 + 5 + 1


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, SessionStore]]:
    opened: dict[int, SessionStore] = {}
    for n in SIZES:
        state = tmp_path_factory.mktemp(f"plans{n}")
        store = sessionstore.open_store(state_dir=state, store_type="sqlite")
        _seed(store, n)
        opened[n] = store
    try:
        yield opened
    finally:
        for store in opened.values():
            store.close()


@dataclass
class Trace:
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    rows: int = 0
    vm_steps: int = 0
    fullscan_steps: int = 0
    sorts: int = 0
    autoindex: int = 0
    changes: int = 0

    @property
    def sql(self) -> list[str]:
        return [s for s, _ in self.statements]

    def shape(self) -> tuple[Any, ...]:
        # everything that must not depend on the number of sessions
        return (self.sql, self.rows, self.vm_steps, self.sorts, self.changes)


def _bindings(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        raise AssertionError("named bindings are not expected")
    return tuple(value)


def run_traced(store: SessionStore, op: Callable[[SessionStore], Any]) -> tuple[Trace, Any]:
    conn = store.index.connection()  # type: ignore[attr-defined]
    trace = Trace()

    def exec_tracer(_cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        trace.statements.append((sql, _bindings(bindings)))
        return True

    def v2(event: dict[str, Any]) -> None:
        if event["code"] == apsw.SQLITE_TRACE_ROW:
            trace.rows += 1
        elif event["code"] == apsw.SQLITE_TRACE_PROFILE:
            status = event["stmt_status"]
            trace.vm_steps += status["SQLITE_STMTSTATUS_VM_STEP"]
            trace.fullscan_steps += status["SQLITE_STMTSTATUS_FULLSCAN_STEP"]
            trace.sorts += status["SQLITE_STMTSTATUS_SORT"]
            trace.autoindex += status["SQLITE_STMTSTATUS_AUTOINDEX"]

    before = conn.total_changes()
    conn.exec_trace = exec_tracer
    conn.trace_v2(apsw.SQLITE_TRACE_ROW | apsw.SQLITE_TRACE_PROFILE, v2, id="plans")
    try:
        result = op(store)
    finally:
        conn.exec_trace = None
        conn.trace_v2(0, None, id="plans")
    trace.changes = conn.total_changes() - before
    return trace, result


_NOT_A_QUERY = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA)\b", re.I)


def plans(store: SessionStore, trace: Trace) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of every statement the operation ran (with its bindings)."""
    conn = store.index.connection()  # type: ignore[attr-defined]
    out: dict[str, list[str]] = {}
    for sql, bindings in trace.statements:
        if _NOT_A_QUERY.match(sql):
            continue
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, bindings).fetchall()
        out[sql] = [r[3] for r in rows]
    return out


def assert_no_scan(plan_map: dict[str, list[str]]) -> None:
    for sql, lines in plan_map.items():
        for line in lines:
            assert not re.match(r"^SCAN (sessions|blobs|stats|meta)\b(?! USING)", line), (
                f"table scan in {sql!r}: {lines}"
            )
            assert "AUTOMATIC" not in line, f"automatic index in {sql!r}: {lines}"


def indexes_used(plan_map: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for lines in plan_map.values():
        for line in lines:
            m = re.search(r"USING (?:COVERING )?INDEX (\w+)", line)
            if m:
                found.add(m.group(1))
            if re.search(r"USING (INTEGER )?PRIMARY KEY", line):
                found.add("<primary key>")
    return found


def compare(
    stores: dict[int, SessionStore], op: Callable[[SessionStore], Any]
) -> tuple[dict[int, Trace], dict[int, Any]]:
    traces: dict[int, Trace] = {}
    results: dict[int, Any] = {}
    for n, store in stores.items():
        traces[n], results[n] = run_traced(store, op)
        assert traces[n].fullscan_steps == 0, f"N={n}: full scan steps {traces[n]}"
        assert traces[n].autoindex == 0
        assert_no_scan(plans(store, traces[n]))
    small, large = (traces[n] for n in SIZES)
    assert small.sql == large.sql, "statement sequence depends on the store size"
    assert len(small.statements) == len(large.statements)
    assert small.shape() == large.shape(), f"work grows with the store: {small} vs {large}"
    return traces, results


# --- single-key operations -------------------------------------------------------------------


def test_get_is_one_indexed_lookup(stores: dict[int, SessionStore]) -> None:
    traces, results = compare(stores, lambda s: s.get("Agent:Main:Main"))
    for n in SIZES:
        assert results[n]["skillsSnapshot"] == SKILLS
        assert results[n]["systemPromptReport"] == REPORT
    trace = traces[SIZES[-1]]
    plan_map = plans(stores[SIZES[-1]], trace)
    assert any("idx_sessions_fold" in line for lines in plan_map.values() for line in lines)
    # the row through the fold index, then its two blobs (skillsSnapshot,
    # systemPromptReport) by primary key: the cache of this store was still empty
    assert len(trace.sql) == 3
    assert "FROM sessions" in trace.sql[0]
    assert all("FROM blobs WHERE digest = ?" in sql for sql in trace.sql[1:])
    # schema 7: the key's own row by primary key, legacy case variants through the partial
    # fold index (only the rows whose folded key differs from their key are in it)
    assert indexes_used(plan_map) == {PK_INDEX, "idx_sessions_fold", "<primary key>"}
    assert trace.changes == 0


def test_get_again_reads_blobs_from_the_cache(stores: dict[int, SessionStore]) -> None:
    for store in stores.values():
        store.get("agent:main:main")
    traces, results = compare(stores, lambda s: s.get("Agent:Main:Main"))
    for n in SIZES:
        assert results[n]["skillsSnapshot"] == SKILLS
        assert results[n]["systemPromptReport"] == REPORT
    assert len(traces[SIZES[-1]].sql) == 1  # the row only
    # every read parses its own copy: changing one changes no other
    store = stores[SIZES[-1]]
    first = store.get("agent:main:main")
    assert first is not None
    first["skillsSnapshot"]["prompt"] = "changed by the caller"
    again = store.get("agent:main:main")
    assert again is not None and again["skillsSnapshot"] == SKILLS


def test_get_missing_key(stores: dict[int, SessionStore]) -> None:
    traces, results = compare(stores, lambda s: s.get("agent:main:nothing-here"))
    assert results == {n: None for n in SIZES}
    assert traces[SIZES[0]].rows == 0


def test_update_with_patch(stores: dict[int, SessionStore]) -> None:
    key = bulk_key(50)
    traces, results = compare(stores, lambda s: s.update(key, {"status": "running"}))
    assert {n: r["status"] for n, r in results.items()} == {n: "running" for n in SIZES}
    trace = traces[SIZES[-1]]
    assert trace.sql[0] == "BEGIN IMMEDIATE"
    assert trace.sql[-1] == "COMMIT"
    assert trace.changes >= 1
    plan_map = plans(stores[SIZES[-1]], trace)
    assert "idx_sessions_fold" in indexes_used(plan_map)
    # an existing row: only the columns that change are set, so indexes over the others
    # (the key, its fold, the session id) are not rewritten
    (update,) = [s for s in trace.sql if s.startswith("UPDATE sessions SET")]
    assigned = {part.split(" = ")[0] for part in update[len("UPDATE sessions SET ") :].split(", ")}
    assert {"status", "updated_at", "entry_json"} <= assigned
    assert not assigned & {"session_key", "key_fold", "session_id", "created_at", "archived"}
    assert not any(s.startswith("INSERT INTO sessions") for s in trace.sql)


def test_update_with_function_and_model_change(stores: dict[int, SessionStore]) -> None:
    def bump(entry: Any) -> dict[str, Any]:
        return {"counter": (entry.get("counter") or 0) + 1, "model": "claude"}

    traces, results = compare(stores, lambda s: s.update("agent:main:main", bump))
    for r in results.values():
        assert r["model"] == "claude"
        assert r["skillsSnapshot"] == SKILLS
    assert "idx_sessions_fold" in indexes_used(plans(stores[SIZES[-1]], traces[SIZES[-1]]))


def test_update_missing_key_writes_nothing(stores: dict[int, SessionStore]) -> None:
    traces, results = compare(stores, lambda s: s.update("agent:main:absent", {"x": 1}))
    assert results == {n: None for n in SIZES}
    assert traces[SIZES[0]].changes == 0


def test_put_replaces_one_row(stores: dict[int, SessionStore]) -> None:
    entry = {"sessionId": "p", "updatedAt": BASE + 3, "label": "put", "skillsSnapshot": SKILLS}
    traces, _ = compare(stores, lambda s: s.put(bulk_key(60), entry))
    assert "idx_sessions_fold" in indexes_used(plans(stores[SIZES[-1]], traces[SIZES[-1]]))


def test_delete_uses_key_indexes(stores: dict[int, SessionStore]) -> None:
    key = bulk_key(70)
    traces, results = compare(stores, lambda s: s.delete(key))
    assert results == {n: True for n in SIZES}
    trace = traces[SIZES[-1]]
    plan_map = plans(stores[SIZES[-1]], trace)
    deletes = [s for s in trace.sql if s.startswith("DELETE FROM sessions")]
    assert len(deletes) == 1
    assert any(PK_INDEX in line for line in plan_map[deletes[0]])
    assert {"idx_sessions_fold", PK_INDEX} <= indexes_used(plan_map)
    for store in stores.values():
        assert store.get(key) is None


def test_delete_folds_legacy_case_variants(stores: dict[int, SessionStore]) -> None:
    # a legacy mixed-case key (as OpenClaw may have left it) is found through key_fold
    for store in stores.values():
        store.mutate(
            lambda st: st.update({"Agent:Main:Legacy": {"sessionId": "l", "updatedAt": 1}})
        )
    _, results = compare(stores, lambda s: s.delete("agent:main:legacy"))
    assert results == {n: True for n in SIZES}
    for store in stores.values():
        assert store.get("agent:main:legacy") is None


def test_count_reads_the_counter(stores: dict[int, SessionStore]) -> None:
    traces, results = compare(stores, lambda s: s.count())
    assert results[SIZES[1]] - results[SIZES[0]] == SIZES[1] - SIZES[0]
    assert traces[SIZES[0]].sql == ["SELECT row_count FROM stats WHERE id = 1"]


def test_count_triggers_use_the_primary_key(stores: dict[int, SessionStore]) -> None:
    conn = stores[SIZES[0]].index.connection()  # type: ignore[attr-defined]
    bodies = [
        sql.split("BEGIN", 1)[1].rsplit("END", 1)[0].strip().rstrip(";")
        for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'")
    ]
    assert len(bodies) == 2
    for body in bodies:
        lines = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + body)]
        assert lines and all("PRIMARY KEY" in line for line in lines), lines


# --- list ------------------------------------------------------------------------------------


def _list_plan_lines(store: SessionStore, trace: Trace) -> list[str]:
    plan_map = plans(store, trace)
    selects = [s for s in trace.sql if s.startswith("SELECT") and "FROM sessions" in s]
    assert selects
    return [line for s in selects for line in plan_map[s]]


def test_list_walks_the_list_index_in_order(stores: dict[int, SessionStore]) -> None:
    traces, results = compare(stores, lambda s: s.list(limit=50))
    for page in results.values():
        assert len(page.rows) == 50
        assert page.next_cursor is not None
        times = [r["updatedAt"] for r in page.rows]
        assert times == sorted(times, reverse=True)
        assert not any(":cron:" in r["key"] or r["key"] in ("global", "unknown") for r in page)
    trace = traces[SIZES[-1]]
    assert len(trace.statements) == 1
    assert trace.rows == 51  # one extra row to know whether a next page exists
    lines = _list_plan_lines(stores[SIZES[-1]], trace)
    # the list index holds the sort key only (schema 6): it is walked in order and the 51
    # table rows it points to are read; no sort
    assert any("USING INDEX idx_sessions_list" in line for line in lines), lines
    assert not any("TEMP B-TREE" in line for line in lines), lines
    assert trace.sorts == 0


def test_second_page_uses_the_cursor_range(stores: dict[int, SessionStore]) -> None:
    cursors = {n: s.list(limit=50).next_cursor for n, s in stores.items()}
    traces: dict[int, Trace] = {}
    for n, store in stores.items():
        traces[n], page = run_traced(store, lambda s, c=cursors[n]: s.list(limit=50, cursor=c))
        assert len(page.rows) == 50
        assert traces[n].fullscan_steps == 0
    assert traces[SIZES[0]].shape() == traces[SIZES[1]].shape()
    lines = _list_plan_lines(stores[SIZES[-1]], traces[SIZES[-1]])
    assert any("idx_sessions_list" in line and "updated_at" in line for line in lines), lines
    assert not any("TEMP B-TREE" in line for line in lines), lines


def test_list_with_sentinels(stores: dict[int, SessionStore]) -> None:
    traces, results = compare(stores, lambda s: s.list(include_global=True, limit=50))
    for page in results.values():
        assert len(page.rows) == 50
    lines = _list_plan_lines(stores[SIZES[-1]], traces[SIZES[-1]])
    assert all("idx_sessions_list" in line for line in lines), lines


@pytest.mark.parametrize(
    ("kwargs", "index", "expected_rows"),
    [
        ({"agent_id": "ops"}, "idx_sessions_agent", SPECIAL),
        ({"agent_id": "main"}, "idx_sessions_agent", None),
        ({"channel": "discord"}, "idx_sessions_channel", SPECIAL),
        ({"label": "needle"}, "idx_sessions_label", SPECIAL),
        ({"spawned_by": "agent:main:main"}, "idx_sessions_spawned_by", SPECIAL),
    ],
)
def test_list_filters_use_their_indexes(
    stores: dict[int, SessionStore],
    kwargs: dict[str, Any],
    index: str,
    expected_rows: int | None,
) -> None:
    traces, results = compare(stores, lambda s: s.list(limit=50, **kwargs))
    for page in results.values():
        assert len(page.rows) == 50
        assert page.next_cursor is not None
        times = [r["updatedAt"] for r in page.rows]
        assert times == sorted(times, reverse=True)
    if expected_rows is not None:
        for store in stores.values():
            assert len(store.list(**kwargs).rows) == expected_rows
    lines = _list_plan_lines(stores[SIZES[-1]], traces[SIZES[-1]])
    used = {m.group(1) for line in lines for m in [re.search(r"INDEX (\w+)", line)] if m}
    assert index in used, lines
    if "spawned_by" in kwargs:
        assert "idx_sessions_parent" in used, lines
        assert "idx_sessions_list" not in used, lines
    if index in ("idx_sessions_agent", "idx_sessions_channel"):
        # schema 7: these indexes end in updated_at (no key): the walk is in time order,
        # and only rows of the same updated_at are sorted by key as they are read
        assert not any("TEMP B-TREE FOR ORDER BY" in line for line in lines), lines
        assert any("TEMP B-TREE FOR LAST TERM OF ORDER BY" in line for line in lines), lines
        assert traces[SIZES[-1]].rows <= 51 + 1


def test_old_databases_upgrade_in_place_to_deflated_entries(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        for i in range(20):
            store.put(f"agent:main:k{i}", {"sessionId": f"s{i}", "updatedAt": 1_000 + i})
        before = {k: store.get(k) for k in (f"agent:main:k{i}" for i in range(20))}
        conn = store.index.connection()  # type: ignore[attr-defined]
        # what schema version 3 had: the list index without the row's columns, and (as
        # before version 6) every entry as plain JSON
        for rowid, stored in conn.execute("SELECT rowid, entry_json FROM sessions").fetchall():
            conn.execute(
                "UPDATE sessions SET entry_json = ? WHERE rowid = ?", (unpack(stored), rowid)
            )
        conn.execute(
            "DROP INDEX idx_sessions_list;"
            " CREATE INDEX idx_sessions_list ON sessions(vis, updated_at, session_key);"
            " UPDATE meta SET value = '3' WHERE key = 'schema_version'"
        )
        assert all(
            bytes(r[0]).startswith(b"{")
            for r in conn.execute("SELECT entry_json FROM sessions").fetchall()
        )
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as store:
        assert store.info().backend["schemaVersion"] == 7  # v4, v5, v6, then v7
        conn = store.index.connection()  # type: ignore[attr-defined]
        (sql,) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'idx_sessions_list'"
        ).fetchone()
        assert "message_count" not in sql  # v6: the sort key only
        stored = [bytes(r[0]) for r in conn.execute("SELECT entry_json FROM sessions")]
        assert all(b[0] == CODEC_DEFLATE_V1 for b in stored)
        assert {k: store.get(k) for k in before} == before
        page = store.list(limit=5)
        assert [r["key"] for r in page.rows] == [f"agent:main:k{i}" for i in range(19, 14, -1)]
        assert store.count() == 20


# --- maintenance -----------------------------------------------------------------------------


def test_maintenance_walks_rows_in_time_order_through_indexes(
    stores: dict[int, SessionStore],
) -> None:
    # schema 7 has no index of every row in updatedAt order: the visible rows come from the
    # list index and the hidden ones (sentinels, cron runs) from a partial index, merged
    protect = frozenset({"agent:main:main"})

    def op(store: SessionStore) -> tuple[list[str], list[str], list[str]]:
        txn = _SqliteMaintenance(store.index, store.index.connection())  # type: ignore[attr-defined]
        stale = [r.key for r in txn.stale(BASE + 10, protect)]
        over = [r.key for r in txn.overflow(store.count() - 3, protect)]
        oldest = [r.key for _, r in zip(range(12), txn.oldest(protect), strict=False)]
        return stale, over, oldest

    # (not compare(): overflow's OFFSET and the walk of the hidden rows grow with the store)
    for store in stores.values():
        conn = store.index.connection()  # type: ignore[attr-defined]
        ordered = [
            (key, t)
            for key, t in conn.execute(
                "SELECT session_key, updated_at FROM sessions NOT INDEXED"
                " ORDER BY updated_at, session_key"
            )
            if key not in protect
        ]
        trace, (stale, over, oldest) = run_traced(store, op)
        assert stale == [k for k, t in ordered if t < BASE + 10]
        assert {"global", "unknown", "agent:main:cron:job0:run:r0"} <= set(stale)
        assert over == [k for k, _ in reversed(ordered[:3])]
        assert oldest == [k for k, _ in ordered[:12]]
        assert trace.sorts == 0 and trace.autoindex == 0
    plan_map = plans(stores[SIZES[-1]], trace)
    assert_no_scan(plan_map)
    lines = [line for s in trace.sql if "FROM sessions" in s for line in plan_map[s]]
    assert {"idx_sessions_list", "idx_sessions_hidden"} <= indexes_used(plan_map), lines
    assert any("MERGE (UNION ALL)" in line for line in lines), lines
    assert not any("TEMP B-TREE" in line for line in lines), lines
