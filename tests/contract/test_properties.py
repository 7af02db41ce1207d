"""Property tests on every backend, against an independent model of OpenClaw's rules.

The expected values come from ``tests/model/openclaw_rules.py`` (written from the spec and
DESIGN's API details), never from ``sessionstore``'s own merge or normalisation code.

- Keys: any string is canonicalised (or refused) as the model says.
- Round trips: arbitrary JSON entries put, read back and reopened exactly (types, values,
  key order), one example of 1 MB.
- Load: a ``sessions.json`` written the way OpenClaw writes it, with legacy fields, messy
  routes and mixed-case key variants, reads back as spec 7.1 says.
- A state machine drives the real store and the model side by side through every operation
  and compares them after every step.

The default profile keeps these under a minute on 2 cores; each test has a ``_long`` twin
with ten times the examples, run with ``-m slow`` (or ``SESSIONSTORE_SLOW=1``).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from strict_json import assert_same

import sessionstore
from model import openclaw_rules as rules
from sessionstore import InvalidKeyError, SessionNotFoundError, SessionStore

AGENT = "main"
# Later than any "now" in a test run, so explicit updatedAt values win max(old, patch, now).
FUTURE = 4_000_000_000_000


def slow_selected(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr") or ""
    slow = bool(os.environ.get("SESSIONSTORE_SLOW"))
    return slow or ("slow" in expr and "not slow" not in expr)


def profile(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _slow_tier(request: pytest.FixtureRequest) -> None:
    """Each test marked ``slow`` is the long tier of a property test: skipped unless chosen."""
    if request.node.get_closest_marker("slow") and not slow_selected(request.config):
        pytest.skip("slow tier: select with -m slow (or SESSIONSTORE_SLOW=1)")


# --- helpers -------------------------------------------------------------------------------


def open_in(directory: str | Path, backend: str) -> SessionStore:
    """The store under test; the one place that turns a backend name into a store.

    A postgres store opened in a new directory is emptied first (each example starts from
    nothing, as a new directory does), and a seeded sessions.json is imported as ``migrate
    --to postgres`` does; opened again in the same directory it is the same store.
    """
    if backend != "postgres":
        return sessionstore.open_store(agent=AGENT, state_dir=directory, store_type=backend)  # type: ignore[arg-type]
    from pgtest import pg_empty
    from sessionstore.index.postgres import PostgresIndex
    from sessionstore.migrate_postgres import migrate_to_postgres

    marker = Path(directory) / ".postgres-example"
    fresh = not marker.exists()
    if fresh:
        pg_empty(os.environ["SESSIONSTORE_PG_SCHEMA"])
        marker.touch()
    store = sessionstore.open_store(agent=AGENT, state_dir=directory, store_type="postgres")
    if fresh and store.paths.json_path.exists():
        assert isinstance(store.index, PostgresIndex)
        migrate_to_postgres(store.paths, store.index)
    return store


def sessions_dir(directory: str | Path) -> Path:
    return Path(directory) / "agents" / AGENT / "sessions"


def seed_sessions_json(directory: str | Path, raw: dict[str, Any]) -> None:
    """Write ``sessions.json`` as an OpenClaw gateway does (spec 3.1)."""
    d = sessions_dir(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "sessions.json"
    path.write_text(rules.js_stringify(raw), encoding="utf-8")
    path.chmod(0o600)


def seeded_model(directory: str | Path, store: SessionStore) -> rules.ModelStore:
    """The model of ``store`` opened over a seeded sessions.json: read in place by the json
    backend, imported (variants folded) by a database backend."""
    written = json.loads((sessions_dir(directory) / "sessions.json").read_text("utf-8"))
    if store.store_type == "json":
        return rules.ModelStore(AGENT, written)
    return rules.ModelStore.imported(AGENT, written)


def now_bounds() -> int:
    return time.time_ns() // 1_000_000


def is_uuid4(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return str(parsed) == value and parsed.version == 4


class Clock:
    """The "now" and the new ids the store chose, fed to the model and checked on the side.

    ``now`` is the result's ``updatedAt`` when it lies within the call (the store stamped
    it), else the call's start (the model then must not pick it); ``new_id`` hands the
    model the result's ``sessionId`` and remembers that the model asked for a new one.
    """

    def __init__(self, result: dict[str, Any] | None, before: int, after: int) -> None:
        stamp = (result or {}).get("updatedAt")
        within = type(stamp) is int and before <= stamp <= after
        self.now = stamp if within else before
        self._session_id = (result or {}).get("sessionId")
        self.new_ids = 0

    def new_id(self) -> str:
        self.new_ids += 1
        return str(self._session_id)

    def check_new_id(self) -> None:
        if self.new_ids:
            assert is_uuid4(self._session_id), self._session_id


def timed(call: Callable[[], Any]) -> tuple[Any, int, int]:
    before = now_bounds()
    result = call()
    return result, before, now_bounds()


def sorted_row(row: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(row.items()))


def assert_same_store(
    store: SessionStore, actual: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Entries compared exactly; the order of keys only where it is OpenClaw's: sessions.json
    keeps insertion order (spec 3.1), a database's row order is specified nowhere."""
    if store.store_type != "json":
        actual, expected = dict(sorted(actual.items())), dict(sorted(expected.items()))
    assert_same(actual, expected)


# --- keys ----------------------------------------------------------------------------------

key_text = st.text(
    st.characters(codec="utf-8")
    | st.sampled_from(["\ufeff", "\u00a0", "\u2028", "\u3000", "\t", " ", "\x85", "İ", "Σ"]),
    max_size=12,
)


key_lists = st.lists(key_text, min_size=1, max_size=6)


@profile(150)
@given(keys=key_lists)
@example(keys=["\ufeffAgent:Main:A\ufeff", " \u3000agent:main:a"])
@example(keys=["\ufeff", "\u2028", "a\x85"])
def test_keys_are_canonicalised_as_openclaw_does(backend: str, keys: list[str]) -> None:
    check_keys(backend, keys)


@pytest.mark.slow
@profile(1500)
@given(keys=key_lists)
def test_keys_are_canonicalised_as_openclaw_does_long(backend: str, keys: list[str]) -> None:
    check_keys(backend, keys)


def check_keys(backend: str, keys: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d, open_in(d, backend) as store:
        model = rules.ModelStore(AGENT)
        for i, key in enumerate(keys):
            entry = {"sessionId": f"s{i}", "updatedAt": i}
            try:
                canonical = rules.canonical_key(key)
            except rules.InvalidKey:
                with pytest.raises(InvalidKeyError):
                    store.put(key, entry)
                continue
            clock = Clock(None, 0, 0)
            assert_same(store.put(key, entry), model.put(key, entry, now=0, new_id=clock.new_id))
            assert canonical in model.entries
        assert_same_store(store, store.load_all(), model.load_all())


# --- round trips ---------------------------------------------------------------------------

# Field names the rules look at, so generated entries go through the normalisation.
SPECIAL_FIELDS = [
    "provider",
    "lastProvider",
    "room",
    "model",
    "modelProvider",
    "channel",
    "lastChannel",
    "lastTo",
    "lastAccountId",
    "lastThreadId",
    "deliveryContext",
    "origin",
    "acp",
    "skillsSnapshot",
    "systemPromptReport",
    "label",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.text(max_size=12).filter(lambda f: f not in ("sessionId", "updatedAt")) | (
    st.sampled_from(SPECIAL_FIELDS)
)
# A sessionId must be able to name a transcript file (spec 3.5).
session_ids = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,20}\Z", fullmatch=True)
stamps = st.none() | st.integers(min_value=0, max_value=2**53) | st.floats(0, 2**53)


@st.composite
def put_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry = draw(st.dictionaries(field_names, json_values, max_size=8))
    session_id = draw(st.none() | session_ids)
    if session_id is not None:
        entry["sessionId"] = session_id
    stamp = draw(stamps)
    if stamp is not None:
        entry["updatedAt"] = stamp
    return entry


def valid_key(key: str) -> bool:
    try:
        rules.canonical_key(key)
    except rules.InvalidKey:
        return False
    return True


store_keys = st.text(min_size=1, max_size=24).filter(valid_key) | st.sampled_from(
    ["agent:main:main", "Agent:Main:Main", "global", "agent:main:cron:j:run:r"]
)
MB_STRING = "\u00e9\U0001f600ab" * (1_000_000 // 10)  # ~1 MB of UTF-8, multi-byte included


item_lists = st.lists(st.tuples(store_keys, put_entries()), min_size=1, max_size=5)


@profile(60)
@given(items=item_lists)
@example(items=[("agent:main:big", {"sessionId": "s", "updatedAt": 1, "text": MB_STRING})])
@example(
    items=[
        (
            "agent:main:big",
            {"skillsSnapshot": {"prompt": MB_STRING, "skills": [{"name": "x"}]}, "n": 1.0},
        ),
        ("agent:main:big2", {"skillsSnapshot": {"prompt": MB_STRING, "skills": [{"name": "x"}]}}),
    ]
)
def test_put_get_load_all_round_trip(backend: str, items: list[tuple[str, dict[str, Any]]]) -> None:
    check_round_trip(backend, items)


@pytest.mark.slow
@profile(600)
@given(items=item_lists)
def test_put_get_load_all_round_trip_long(
    backend: str, items: list[tuple[str, dict[str, Any]]]
) -> None:
    check_round_trip(backend, items)


def check_round_trip(backend: str, items: list[tuple[str, dict[str, Any]]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        model = rules.ModelStore(AGENT)
        with open_in(d, backend) as store:
            for key, entry in items:
                stored, before, after = timed(lambda k=key, e=entry: store.put(k, e))
                clock = Clock(stored, before, after)
                expected = model.put(key, entry, now=clock.now, new_id=clock.new_id)
                clock.check_new_id()
                assert_same(stored, expected)
                assert_same(store.get(key), expected)
            assert_same_store(store, store.load_all(), model.load_all())
            assert store.count() == model.count()
        with open_in(d, backend) as store:
            assert_same_store(store, store.load_all(), model.load_all())
            for key in model.entries:
                assert_same(store.get(key), model.get(key))


# --- values that exercise OpenClaw's rules --------------------------------------------------

channels = st.sampled_from([" Teams ", "telegram", "TELEGRAM", "", "  ", "slack", "Imsg", "x"])
route_values: dict[str, st.SearchStrategy[Any]] = {
    "channel": channels | st.just(5),
    "lastChannel": channels,
    "lastTo": st.sampled_from(["123", " 456 ", "", "  "]),
    "lastAccountId": st.sampled_from(["Default", " My Acct! ", "--x--", "", "a" * 70, "a_b"]),
    "lastThreadId": st.sampled_from([42, 7.9, -3.5, " 99 ", "", "ts.1", 0]),
}
delivery_contexts = st.fixed_dictionaries(
    {},
    optional={
        "channel": channels,
        "to": st.sampled_from(["c1", " c2 ", ""]),
        "accountId": st.sampled_from(["Work", "", "b"]),
        "threadId": st.sampled_from([5, 5.5, " t ", ""]),
        "extra": st.just("kept?"),
    },
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **route_values,
    "deliveryContext": delivery_contexts | st.just("not an object"),
    "origin": st.fixed_dictionaries(
        {}, optional={"threadId": st.sampled_from([9, " o ", ""]), "label": st.just("Ann")}
    ),
    "model": st.sampled_from(["gpt-5", " gpt-5 ", "claude", "", "  "]),
    "modelProvider": st.sampled_from(["openai", " anthropic ", "", "  "]),
    "provider": channels,
    "lastProvider": channels,
    "room": st.sampled_from(["#general", " #x "]),
    "groupChannel": st.sampled_from(["#ops"]),
    "acp": st.sampled_from([{"state": "idle", "agent": "codex"}, {"state": "running"}]),
    "skillsSnapshot": st.just({"prompt": "p" * 3000, "skills": [{"name": "s"}]}),
    "systemPromptReport": st.just({"source": "run", "generatedAt": 1}),
    "label": st.sampled_from(["home", " work ", "agent:main:a"]),
    "displayName": st.sampled_from(["Ann", "Group A"]),
    "subject": st.sampled_from(["Plans", "HOME stuff"]),
    "chatType": st.sampled_from(["direct", "group", "channel"]),
    "spawnedBy": st.sampled_from(["agent:main:a", "agent:main:b"]),
    "parentSessionKey": st.sampled_from(["agent:main:a", "agent:main:b"]),
    "status": st.sampled_from(["running", "done"]),
    "thinkingLevel": st.sampled_from(["high", "off"]),
    "compactionCount": st.integers(0, 3),
    "totalTokens": st.integers(0, 10),
    "inputTokens": st.integers(0, 10),
    "messageCount": st.integers(0, 3),
    "modelOverride": st.sampled_from(["gpt-5"]),
    "providerOverride": st.sampled_from(["openai"]),
    "modelOverrideSource": st.sampled_from(["user", "auto"]),
    "memoryFlushAt": st.integers(0, 3),
    "counter": st.integers(-3, 3) | st.floats(-2, 2) | st.booleans() | st.lists(st.integers(0, 2)),
}


@st.composite
def field_dicts(draw: st.DrawFn, max_size: int, allow_none: bool = False) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), unique=True, max_size=max_size))
    out: dict[str, Any] = {}
    for name in names:
        none = allow_none and draw(st.integers(0, 5)) == 0
        out[name] = None if none else draw(FIELD_VALUES[name])
    return out


# A store seeded as an OpenClaw gateway leaves it: mixed-case variants of one session, keys
# that only look like variants (spaces are not trimmed from stored keys, spec 5.5), sentinels.
SEED_KEYS = [
    "agent:main:a",
    "Agent:Main:A",
    "AGENT:MAIN:A",
    " Agent:Main:A",
    "agent:main:telegram:direct:1",
    "agent:MAIN:telegram:direct:1",
    "agent:main:slack:group:g",
    "agent:ops:discord:channel:c",
    "agent:main:cron:j:run:r",
    "global",
    "Unknown",
]
seed_times = st.sampled_from([1_000, 2_000, FUTURE, FUTURE + 1])
js_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)


@st.composite
def seed_stores(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(SEED_KEYS), unique=True, max_size=7))
    raw: dict[str, Any] = {}
    for i, key in enumerate(keys):
        entry: dict[str, Any] = {"sessionId": f"seed-{i}"}
        if draw(st.integers(0, 6)):  # now and then an entry without updatedAt
            entry["updatedAt"] = draw(seed_times)
        entry.update(draw(field_dicts(max_size=6)))
        if draw(st.booleans()):
            entry[draw(st.sampled_from(["tag", "x"]))] = draw(js_json_values)
        if draw(st.booleans()):
            entry = dict(draw(st.permutations(list(entry.items()))))
        raw[key] = entry
    return raw


@profile(60)
@given(raw=seed_stores())
def test_openclaw_written_store_loads_as_the_spec_says(backend: str, raw: dict[str, Any]) -> None:
    check_openclaw_written_store(backend, raw)


@pytest.mark.slow
@profile(600)
@given(raw=seed_stores())
def test_openclaw_written_store_loads_as_the_spec_says_long(
    backend: str, raw: dict[str, Any]
) -> None:
    check_openclaw_written_store(backend, raw)


def check_openclaw_written_store(backend: str, raw: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as d:
        seed_sessions_json(d, raw)
        with open_in(d, backend) as store:
            model = seeded_model(d, store)
            assert_same_store(store, store.load_all(), model.load_all())
            assert store.count() == model.count()
            for key in [*SEED_KEYS, "agent:main:A "]:
                assert_same(store.get(key), model.get(key))
            rows = store.list(include_global=True, include_unknown=True).rows
            now = now_bounds()
            expected = model.list(now=now, include_global=True, include_unknown=True)
            assert [sorted_row(r) for r in rows] == [sorted_row(r) for r in expected]


# --- the state machine ----------------------------------------------------------------------

API_KEYS = [
    "agent:main:a",
    "Agent:Main:A",
    " agent:main:b ",
    "agent:main:telegram:direct:1",
    "agent:ops:slack:group:g",
    "agent:main:cron:j",
    "agent:main:cron:j:run:r",
    "global",
    "unknown",
]
VARIANT_KEYS = [
    "Agent:Main:A",
    "AGENT:MAIN:A",
    " Agent:Main:A",
    "Agent:Main:B",
    "agent:MAIN:telegram:direct:1",
]
TIMES = [None, 5, FUTURE, FUTURE + 1]
LIST_LIMITS = st.none() | st.integers(min_value=1, max_value=4)


@st.composite
def list_filters(draw: st.DrawFn) -> dict[str, Any]:
    options: dict[str, st.SearchStrategy[Any]] = {
        "agent_id": st.sampled_from(["main", "ops", "MAIN"]),
        "channel": st.sampled_from(["telegram", "Teams", "slack", "x", "msteams"]),
        "label": st.sampled_from(["home", " work ", "work"]),
        "search": st.sampled_from(["A", "seed", "plans", "telegram", ""]),
        "spawned_by": st.sampled_from(["agent:main:a", "agent:main:b"]),
        "active_minutes": st.sampled_from([1, 60]),
        "include_global": st.booleans(),
        "include_unknown": st.booleans(),
    }
    names = draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=3))
    return {name: draw(options[name]) for name in names}


class StoreMachine(RuleBasedStateMachine):
    """The real store and the model, driven by the same operations, compared at every step."""

    backend = "json"

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.dir = self._dir.name
        self.store: SessionStore | None = None
        self.model = rules.ModelStore(AGENT)
        # A page in progress: (filters, limit, cursor, sort position of its last row).
        self.paging: tuple[dict[str, Any], int, str, tuple[Any, str]] | None = None

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
        self._dir.cleanup()

    @property
    def s(self) -> SessionStore:
        assert self.store is not None
        return self.store

    @initialize(raw=st.none() | seed_stores())
    def open(self, raw: dict[str, Any] | None) -> None:
        if raw is not None:
            seed_sessions_json(self.dir, raw)
        self.store = open_in(self.dir, self.backend)
        if raw is not None:
            self.model = seeded_model(self.dir, self.store)

    # --- writes -----------------------------------------------------------------------------

    @rule(
        key=st.sampled_from(API_KEYS),
        entry=field_dicts(max_size=6, allow_none=True),
        session_id=st.none() | st.sampled_from(["s1", "s2"]),
        stamp=st.sampled_from(TIMES),
        explicit_none=st.booleans(),
    )
    def put(
        self,
        key: str,
        entry: dict[str, Any],
        session_id: str | None,
        stamp: Any,
        explicit_none: bool,
    ) -> None:
        for field, value in (("sessionId", session_id), ("updatedAt", stamp)):
            if value is not None or explicit_none:
                entry[field] = value
        stored, before, after = timed(lambda: self.s.put(key, copy.deepcopy(entry)))
        clock = Clock(stored, before, after)
        expected = self.model.put(key, entry, now=clock.now, new_id=clock.new_id)
        clock.check_new_id()
        assert_same(stored, expected)

    @rule(
        key=st.sampled_from(API_KEYS),
        patch=field_dicts(max_size=4, allow_none=True),
        session_id=st.sampled_from([None, None, "s1", "s2"]),
        stamp=st.sampled_from(TIMES),
        create=st.booleans(),
        preserve_activity=st.booleans(),
        explicit_none=st.booleans(),
    )
    def update(
        self,
        key: str,
        patch: dict[str, Any],
        session_id: str | None,
        stamp: Any,
        create: bool,
        preserve_activity: bool,
        explicit_none: bool,
    ) -> None:
        for field, value in (("sessionId", session_id), ("updatedAt", stamp)):
            if value is not None or explicit_none:
                patch[field] = value
        result, before, after = timed(
            lambda: self.s.update(
                key, copy.deepcopy(patch), create=create, preserve_activity=preserve_activity
            )
        )
        clock = Clock(result, before, after)
        expected = self.model.update(
            key,
            patch,
            now=clock.now,
            new_id=clock.new_id,
            create=create,
            preserve_activity=preserve_activity,
        )
        clock.check_new_id()
        assert_same(result, expected)

    @rule(
        key=st.sampled_from(API_KEYS),
        patch=st.none() | field_dicts(max_size=3, allow_none=True),
        create=st.booleans(),
    )
    def update_with_callable(self, key: str, patch: dict[str, Any] | None, create: bool) -> None:
        seen: list[Any] = []
        current = copy.deepcopy(self.model.get(key))

        def fn(entry: Any) -> dict[str, Any] | None:
            seen.append(copy.deepcopy(entry))
            return copy.deepcopy(patch)

        result, before, after = timed(lambda: self.s.update(key, fn, create=create))
        if current is None and not create:
            assert seen == []  # spec 5.5: a missing entry is not offered to the updater
        else:
            assert len(seen) == 1
            assert_same(seen[0], current)
        clock = Clock(result, before, after)
        expected = self.model.update(key, patch, now=clock.now, new_id=clock.new_id, create=create)
        clock.check_new_id()
        assert_same(result, expected)

    @rule(key=st.sampled_from(API_KEYS + VARIANT_KEYS))
    def delete(self, key: str) -> None:
        assert self.s.delete(key) is self.model.delete(key)

    @rule(key=st.sampled_from(API_KEYS))
    def reset(self, key: str) -> None:
        old = self.model.get(key)
        if old is None:
            with pytest.raises(SessionNotFoundError):
                self.s.reset(key)
            return
        result, before, after = timed(lambda: self.s.reset(key))
        session_id = result["sessionId"]
        assert is_uuid4(session_id) and session_id != old.get("sessionId")
        assert before <= result["updatedAt"] <= after
        # DESIGN: reset writes the new transcript's header; the store records the file
        # (on postgres the header is a row of the transcript table, which has no size).
        path = sessions_dir(self.dir) / f"{session_id}.jsonl"
        extra: dict[str, Any] = {"sessionFile": str(path), "messageCount": 0}
        if self.s.table_transcripts:
            assert self.s.transcript(key).entries()[0]["id"] == session_id
        else:
            extra["transcriptBytes"] = path.stat().st_size
        expected = self.model.reset(
            key, session_id=session_id, now=result["updatedAt"], extra=extra
        )
        assert_same(result, expected)

    @rule(
        ops=st.lists(
            st.one_of(
                st.tuples(
                    st.just("set"),
                    st.sampled_from(VARIANT_KEYS + API_KEYS),
                    field_dicts(max_size=4, allow_none=True),
                    st.sampled_from(TIMES),
                ),
                st.tuples(st.just("del"), st.sampled_from(VARIANT_KEYS + API_KEYS)),
                st.tuples(st.just("drop_acp"), st.sampled_from(VARIANT_KEYS + API_KEYS)),
                st.tuples(
                    st.just("field"),
                    st.sampled_from(VARIANT_KEYS + API_KEYS),
                    field_dicts(max_size=2, allow_none=True),
                ),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def mutate(self, ops: list[tuple[Any, ...]]) -> None:
        seen: list[Any] = []

        def fn(s: dict[str, Any]) -> list[str]:
            seen.append(copy.deepcopy(s))
            for op in ops:
                if op[0] == "set":
                    entry = {"sessionId": "legacy", **op[2]}
                    if op[3] is not None:
                        entry["updatedAt"] = op[3]
                    s[op[1]] = entry
                elif op[0] == "del":
                    s.pop(op[1], None)
                elif op[0] == "drop_acp":
                    if op[1] in s:
                        s[op[1]].pop("acp", None)
                elif op[1] in s:
                    s[op[1]].update(op[2])
            return sorted(s)

        result = self.s.mutate(fn)
        assert len(seen) == 1
        assert_same_store(self.s, seen[0], self.model.load_all())
        assert result == self.model.mutate(fn)

    @rule()
    def reopen(self) -> None:
        self.s.close()
        self.store = open_in(self.dir, self.backend)

    # --- reads ------------------------------------------------------------------------------

    @rule(key=st.sampled_from(API_KEYS + VARIANT_KEYS + ["agent:main:A "]))
    def get(self, key: str) -> None:
        assert_same(self.s.get(key), self.model.get(key))

    @rule(filters=list_filters(), limit=LIST_LIMITS)
    def list_every_page(self, filters: dict[str, Any], limit: int | None) -> None:
        rows: list[Any] = []
        cursor = None
        now = now_bounds()
        for _ in range(self.model.count() + 2):
            page = self.s.list(limit=limit, cursor=cursor, **filters)
            if limit is not None:
                assert len(page.rows) <= limit
            rows += page.rows
            cursor = page.next_cursor
            if cursor is None:
                break
        assert cursor is None, "pagination did not end"
        expected = self.model.list(now=now, **filters)
        assert [sorted_row(r) for r in rows] == [sorted_row(r) for r in expected]

    @rule(filters=list_filters(), limit=st.integers(min_value=1, max_value=3))
    def list_first_page(self, filters: dict[str, Any], limit: int) -> None:
        """Keep a cursor across the next steps: keyset pages resume after the last row."""
        page = self.s.list(limit=limit, **filters)
        expected = self.model.list(now=now_bounds(), **filters)
        assert [sorted_row(r) for r in page.rows] == [sorted_row(r) for r in expected[:limit]]
        assert (page.next_cursor is None) == (len(expected) <= limit)
        if page.next_cursor is not None:
            last = page.rows[-1]
            position = (rules.updated_at(last), last["key"])
            self.paging = (filters, limit, page.next_cursor, position)

    @precondition(lambda self: self.paging is not None)
    @rule()
    def list_next_page(self) -> None:
        assert self.paging is not None
        filters, limit, cursor, position = self.paging
        page = self.s.list(limit=limit, cursor=cursor, **filters)
        every = self.model.list(now=now_bounds(), **filters)
        rest = [r for r in every if (rules.updated_at(r), r["key"]) < position]
        assert [sorted_row(r) for r in page.rows] == [sorted_row(r) for r in rest[:limit]]
        assert (page.next_cursor is None) == (len(rest) <= limit)
        self.paging = None
        if page.next_cursor is not None:
            last = page.rows[-1]
            self.paging = (filters, limit, page.next_cursor, (rules.updated_at(last), last["key"]))

    # --- after every step ---------------------------------------------------------------------

    @invariant()
    def same_store(self) -> None:
        if self.store is None:
            return
        assert self.s.count() == self.model.count()
        assert_same_store(self.s, self.s.load_all(), self.model.load_all())


FAST = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
LONG = settings(FAST, max_examples=400, stateful_step_count=60)


def run_machine(backend: str, profile: settings) -> None:
    machine = type(f"StoreMachine_{backend}", (StoreMachine,), {"backend": backend})
    run_state_machine_as_test(machine, settings=profile)


def test_store_matches_the_model(backend: str) -> None:
    run_machine(backend, FAST)


@pytest.mark.slow
def test_store_matches_the_model_long(backend: str) -> None:
    run_machine(backend, LONG)
