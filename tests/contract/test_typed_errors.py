"""Every public call raises only ``SessionStoreError`` subclasses (issue 11, defect 13).

A sweep of the public API (``SessionStore`` methods and ``open_store`` arguments) with
wrong-typed and out-of-range arguments on both backends, of a damaged database read with
every call, and of configs with numbers too large to use. A value a parameter accepts may
succeed or raise a typed error; any other value must raise a typed error; nothing else may
escape, and a refused argument is named in the message. (``Transcript`` methods are swept
with the transcript work.)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

import sessionstore
from sessionstore import (
    ConfigError,
    CorruptStoreError,
    InvalidArgumentError,
    SessionStore,
    SessionStoreError,
)

KEY = "agent:main:main"


class BadRepr:
    """A caller's object whose ``repr`` fails: error messages must survive it."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _nested(depth: int) -> Any:
    value: Any = {}
    for _ in range(depth):
        value = {"a": value}
    return value


_cyclic: dict[str, Any] = {}
_cyclic["self"] = _cyclic

BAD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    123,
    10**30,
    3.5,
    1e308,
    float("nan"),
    float("inf"),
    -math.inf,
    "",
    "   ",
    "x",
    "5",
    "\x00",
    b"k",
    ["a"],
    ("a",),
    {"a": 1},
    {1: 2},
    object(),
    BadRepr(),
    _nested(2000),
    _cyclic,
    lambda *a: None,
]


def _label(value: Any) -> str:
    if value is _cyclic:
        return "<cyclic dict>"
    if isinstance(value, dict) and "a" in value and isinstance(value["a"], dict):
        return "<2000-deep dict>"
    if isinstance(value, BadRepr):
        return "<BadRepr>"
    return f"{type(value).__name__}:{repr(value)[:30]}"


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_key(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip()) and "\x00" not in v


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def opt(pred: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or pred(v)


def is_positive_number(v: Any) -> bool:
    return (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and 0 < v < 2**53
    )


def is_entry(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


def is_callable(v: Any) -> bool:
    return callable(v)


def never(v: Any) -> bool:
    return False


def anything(v: Any) -> bool:
    return True


Call = Callable[[SessionStore, Any], Any]


def _set_key(entries: dict[Any, Any], key: Any) -> None:
    try:
        entries[key] = {}
    except TypeError:  # unhashable: the caller's own mistake, not the store's
        entries["agent:main:unhashable"] = {}


# (name, call with the value, does the parameter accept the value?)
STORE_CALLS: list[tuple[str, Call, Callable[[Any], bool]]] = [
    ("get(key)", lambda s, v: s.get(v), is_key),
    ("put(key)", lambda s, v: s.put(v, {}), is_key),
    ("put(entry)", lambda s, v: s.put(KEY, v), is_entry),
    ("put(entry value)", lambda s, v: s.put(KEY, {"x": v}), anything),
    ("update(key)", lambda s, v: s.update(v, {}), is_key),
    ("update(patch)", lambda s, v: s.update(KEY, v), lambda v: is_entry(v) or callable(v)),
    ("update(patch value)", lambda s, v: s.update(KEY, {"label": v}), anything),
    ("update(fn returns)", lambda s, v: s.update(KEY, lambda e: v), opt(is_entry)),
    ("update(create)", lambda s, v: s.update("new", {}, create=v), is_bool),
    ("update(preserve_activity)", lambda s, v: s.update(KEY, {}, preserve_activity=v), is_bool),
    ("delete(key)", lambda s, v: s.delete(v), is_key),
    ("delete(archive_transcript)", lambda s, v: s.delete("none", archive_transcript=v), is_bool),
    ("reset(key)", lambda s, v: s.reset(v), is_key),
    ("list(agent_id)", lambda s, v: s.list(agent_id=v), opt(is_str)),
    ("list(channel)", lambda s, v: s.list(channel=v), opt(is_str)),
    ("list(label)", lambda s, v: s.list(label=v), opt(is_str)),
    ("list(search)", lambda s, v: s.list(search=v), opt(is_str)),
    ("list(spawned_by)", lambda s, v: s.list(spawned_by=v), opt(is_str)),
    ("list(active_minutes)", lambda s, v: s.list(active_minutes=v), opt(is_positive_number)),
    ("list(include_global)", lambda s, v: s.list(include_global=v), is_bool),
    ("list(include_unknown)", lambda s, v: s.list(include_unknown=v), is_bool),
    ("list(limit)", lambda s, v: s.list(limit=v), opt(lambda v: is_positive_number(v) and v >= 1)),
    ("list(cursor)", lambda s, v: s.list(cursor=v), opt(is_str)),
    ("mutate(fn)", lambda s, v: s.mutate(v), is_callable),
    ("mutate(entry)", lambda s, v: s.mutate(lambda st: st.__setitem__(KEY, v)), is_entry),
    # mutate stores keys as the function leaves them (OpenClaw's whole-store mutator)
    (
        "mutate(key)",
        lambda s, v: s.mutate(lambda st: _set_key(st, v)),
        lambda v: is_str(v) or not isinstance(v, Hashable),
    ),
    ("maintain(mode)", lambda s, v: s.maintain(mode=v, dry_run=True), opt(is_str)),
    ("maintain(dry_run)", lambda s, v: s.maintain(dry_run=v), is_bool),
    ("maintain(active_key)", lambda s, v: s.maintain(active_key=v, dry_run=True), opt(is_key)),
    ("maintain(fix_missing)", lambda s, v: s.maintain(fix_missing=v, dry_run=True), is_bool),
    ("check(fix)", lambda s, v: s.check(fix=v), is_bool),
]

OPEN_ARGS: list[tuple[str, Callable[[Any], bool]]] = [
    ("agent", is_str),
    ("state_dir", opt(is_key)),
    ("store_type", opt(is_str)),
    ("dsn", opt(is_str)),
    ("store", opt(is_key)),
    ("durability", opt(is_str)),
    ("lock_timeout_ms", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
]


def _outcome(call: Callable[[], Any]) -> BaseException | None:
    try:
        call()
    except BaseException as exc:
        return exc
    return None


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths given as arguments land in a temporary dir."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_store_methods_raise_only_typed_errors(store: SessionStore, in_tmp: Path) -> None:
    problems = []
    for name, call, accepts in STORE_CALLS:
        for value in BAD:
            store.put(KEY, {"sessionId": "s1", "label": "x"})
            exc = _outcome(lambda: call(store, value))  # noqa: B023 (called at once)
            if exc is not None and not isinstance(exc, SessionStoreError):
                problems.append(f"{name} {_label(value)}: {type(exc).__name__}: {exc}"[:200])
            elif exc is None and not accepts(value):
                problems.append(f"{name} {_label(value)}: accepted")
    assert problems == []


def test_open_store_arguments_raise_only_typed_errors(
    state_dir: Path, backend: str, in_tmp: Path
) -> None:
    problems = []
    for name, accepts in OPEN_ARGS:
        for value in BAD:
            args: dict[str, Any] = {"state_dir": state_dir, "store_type": backend}
            args[name] = value

            def call(args: dict[str, Any] = args) -> None:
                sessionstore.open_store(**args).close()

            exc = _outcome(call)
            if exc is not None and not isinstance(exc, SessionStoreError):
                problems.append(f"{name} {_label(value)}: {type(exc).__name__}: {exc}"[:200])
            elif exc is None and not accepts(value):
                problems.append(f"{name} {_label(value)}: accepted")
    assert problems == []


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        (lambda s: s.list(cursor=123), "123"),
        (lambda s: s.list(limit="5"), "'5'"),
        (lambda s: s.list(limit=10**30), "1000000"),
        (lambda s: s.list(agent_id=3), "3"),
        (lambda s: s.list(label=["x"]), "['x']"),
        (lambda s: s.list(active_minutes="x"), "'x'"),
        (lambda s: s.list(active_minutes=1e308), "1e+308"),
        (lambda s: s.list(include_global="no"), "'no'"),
        (lambda s: s.get(5), "5"),
        (lambda s: s.put(b"k", {}), "b'k'"),
        (lambda s: s.update(KEY, 7), "7"),
        (lambda s: s.update(KEY, {}, create="yes"), "'yes'"),
        (lambda s: s.delete(None), "None"),
        (lambda s: s.reset(1.5), "1.5"),
        (lambda s: s.mutate("fn"), "'fn'"),
        (lambda s: s.check(fix="false"), "'false'"),
        (lambda s: s.maintain(dry_run=1), "1"),
    ],
)
def test_a_refused_argument_is_named(
    store: SessionStore, call: Callable[[SessionStore], Any], shown: str
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        call(store)
    assert shown in str(info.value)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ({"agent": 3}, "3"),
        ({"state_dir": 123}, "123"),
        ({"state_dir": ""}, "''"),
        ({"store": ["x"]}, "['x']"),
        ({"lock_timeout_ms": "1000"}, "'1000'"),
        ({"lock_timeout_ms": 2**40}, str(2**40)),
        ({"lock_timeout_ms": None}, "None"),
    ],
)
def test_a_refused_open_argument_is_named(
    state_dir: Path, backend: str, args: dict[str, Any], shown: str, in_tmp: Path
) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        sessionstore.open_store(**{"state_dir": state_dir, "store_type": backend, **args})
    assert shown in str(info.value)


# --- numbers too large in openclaw.json ------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("maintainEvery", 1e308),
        ("maintainEvery", "9" * 400 + "d"),
        ("maintenance.pruneAfter", "1e400d"),
        ("maintenance.pruneAfter", 1e308),
        ("maintenance.pruneAfter", 2**60),
        ("maintenance.pruneAfter", "9" * 400),
        ("maintenance.pruneDays", 2**60),
        ("maintenance.maxEntries", 2**60),
        ("maintenance.rotateBytes", "9" * 400 + "mb"),
        ("maintenance.maxDiskBytes", 1e308),
        ("maintenance.resetArchiveRetention", 1e308),
    ],
)
def test_a_number_too_large_in_the_config_is_a_config_error(
    state_dir: Path, backend: str, setting: str, value: Any
) -> None:
    session: dict[str, Any] = {"maintenance": {"mode": "enforce"}}
    if setting.startswith("maintenance."):
        session["maintenance"][setting.split(".", 1)[1]] = value
    else:
        session[setting] = value
    (state_dir / "openclaw.json").write_text(json.dumps({"session": session}))
    with pytest.raises(ConfigError) as info:
        sessionstore.open_store(state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]
    assert setting in str(info.value)
    assert str(value)[:20] in str(info.value)


def test_the_largest_usable_numbers_in_the_config_work(state_dir: Path, backend: str) -> None:
    maintenance = {"mode": "enforce", "pruneAfter": "100000d", "maxEntries": 2**53 - 1}
    session = {"maintainEvery": "1ms", "maintenance": maintenance}
    (state_dir / "openclaw.json").write_text(json.dumps({"session": session}))
    with sessionstore.open_store(state_dir=state_dir, store_type=backend) as s:  # type: ignore[arg-type]
        s.put(KEY, {"sessionId": "s", "updatedAt": 1})
        report = s.maintain()
        assert report.pruned == 0 and s.count() == 1


# --- a damaged database ----------------------------------------------------------------------

ENTRY_OF_B = "UPDATE sessions SET entry_json = CAST({} AS BLOB) WHERE session_key = 'b'"
DAMAGE = {
    "entry not JSON": ENTRY_OF_B.format("'{oops'"),
    "entry a list": ENTRY_OF_B.format("'[1]'"),
    "entry a number": ENTRY_OF_B.format("'5'"),
    "blob refs not JSON": "UPDATE sessions SET blob_refs = '{oops' WHERE session_key = 'b'",
    "blob refs a list": "UPDATE sessions SET blob_refs = '[1]' WHERE session_key = 'b'",
    "blob refs digest a number": (
        "UPDATE sessions SET blob_refs = '{\"skillsSnapshot\": 5}' WHERE session_key = 'b'"
    ),
    "migration record not JSON": (
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('migration', '{oops')"
    ),
    "migration record a number": (
        "INSERT OR REPLACE INTO meta(key, value) VALUES ('migration', '5')"
    ),
    "blob not JSON": "UPDATE blobs SET data = CAST('{oops' AS BLOB)",
    "blob not zlib": "UPDATE blobs SET codec = 1",
    "counter not a number": "UPDATE stats SET row_count = 'x'",
    "counter gone": "DELETE FROM stats",
    "updated_at text": "UPDATE sessions SET updated_at = 'x' WHERE session_key = 'b'",
}

# What check() must report for each (it reads the damaged parts).
FINDING = {
    "entry not JSON": "integrity",
    "entry a list": "integrity",
    "entry a number": "integrity",
    "blob refs not JSON": "integrity",
    "blob refs a list": "integrity",
    "blob refs digest a number": "integrity",
    "migration record not JSON": "integrity",
    "migration record a number": "integrity",
    "counter not a number": "count-drift",
    "counter gone": "count-drift",
}

READ_AND_WRITE: list[tuple[str, Callable[[SessionStore], Any]]] = [
    ("get", lambda s: s.get("b")),
    ("get other", lambda s: s.get("a")),
    ("list", lambda s: s.list()),
    ("list filtered", lambda s: s.list(label="L", limit=1)),
    ("list with sentinels", lambda s: s.list(include_global=True, include_unknown=True)),
    ("count", lambda s: s.count()),
    ("load_all", lambda s: s.load_all()),
    ("info", lambda s: s.info()),
    ("check", lambda s: s.check()),
    ("maintain", lambda s: s.maintain(dry_run=True)),
    ("update", lambda s: s.update("b", {"x": 1})),
    ("update fn", lambda s: s.update("b", lambda e: {"y": 1})),
    ("put", lambda s: s.put("b", {"z": 1})),
    ("mutate", lambda s: s.mutate(lambda st: None)),
    ("reset", lambda s: s.reset("b")),
    ("maintain enforce", lambda s: s.maintain(mode="enforce")),
    ("check fix", lambda s: s.check(fix=True)),
    ("vacuum", lambda s: s.vacuum()),
    ("delete", lambda s: s.delete("b")),
]


@pytest.fixture
def damaged(state_dir: Path, request: pytest.FixtureRequest) -> Iterator[SessionStore]:
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        s.put("a", {"sessionId": "s1"})
        s.put("b", {"sessionId": "s2", "label": "L", "skillsSnapshot": {"prompt": "p" * 100}})
        s.put("global", {"sessionId": "s3"})
        path = s.index.path
    conn = apsw.Connection(str(path))
    conn.execute(DAMAGE[request.param])
    conn.close()
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        yield s


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_a_damaged_database_raises_only_typed_errors(damaged: SessionStore) -> None:
    problems = []
    for name, call in READ_AND_WRITE:
        exc = _outcome(lambda: call(damaged))  # noqa: B023 (called at once)
        if exc is not None and not isinstance(exc, SessionStoreError):
            problems.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
    assert problems == []


@pytest.mark.parametrize("damaged", list(FINDING), indirect=True)
def test_check_reports_the_damage_instead_of_failing(
    damaged: SessionStore, request: pytest.FixtureRequest
) -> None:
    kind = FINDING[request.node.callspec.params["damaged"]]
    findings = damaged.check()
    assert kind in {f.kind for f in findings if f.unresolved}, findings


def test_a_damaged_schema_version_is_a_corrupt_store(state_dir: Path) -> None:
    with sessionstore.open_store(state_dir=state_dir, store_type="sqlite") as s:
        s.put("a", {"sessionId": "s1"})
        path = s.index.path
    conn = apsw.Connection(str(path))
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', 'x')")
    conn.close()
    with pytest.raises(CorruptStoreError, match="schema version"):
        sessionstore.open_store(state_dir=state_dir, store_type="sqlite")


@pytest.mark.parametrize("content", [b"G", b"SQLite", b"no database, longer than a page" * 200])
@pytest.mark.parametrize("store_type", ["sqlite", "auto"])
def test_a_file_that_is_no_database_is_refused_and_left_as_it_was(
    state_dir: Path, content: bytes, store_type: str
) -> None:
    # SQLite itself takes a file shorter than a page for an empty database and writes a
    # new one over it.
    path = state_dir / "agents" / "main" / "sessions" / "sessions.sqlite"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(CorruptStoreError, match="not a valid SQLite database") as caught:
        sessionstore.open_store(state_dir=state_dir, store_type=store_type)  # type: ignore[arg-type]
    assert caught.value.path == str(path)
    assert path.read_bytes() == content
    assert sorted(p.name for p in path.parent.iterdir()) == ["sessions.sqlite"]
