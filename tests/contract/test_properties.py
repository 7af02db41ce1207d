"""Property tests run against every backend: exact round trips, and a stateful model.

The round-trip test puts arbitrary JSON entries (any Unicode, nesting, 64-bit-safe integers,
finite floats, one example of 1 MB) and reads them back with types, values and key order
intact. The state machine drives a store and a plain-dict model of OpenClaw's rules with
the same random operations and fails on the first divergence.
"""

from __future__ import annotations

import re
import tempfile
import time
import uuid
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from strict_json import assert_same

import sessionstore
from sessionstore import InvalidKeyError, SessionStore
from sessionstore.entry import merge_entry, replace_entry, settle_entry, sort_time
from sessionstore.index.base import derive_row
from sessionstore.keys import canonical_key, parse_agent_session_key

# Later than any "now" in a test run, so explicit updatedAt values win max(old, patch, now).
FUTURE = 4_000_000_000_000
BACKENDS = ("json", "sqlite")

# --- helpers -------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def is_uuid4(value: object) -> bool:
    try:
        parsed = uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str) and str(parsed) == value and parsed.version == 4


def open_in(directory: str, backend: str) -> SessionStore:
    return sessionstore.open_store(agent="main", state_dir=directory, store_type=backend)  # type: ignore[arg-type]


def valid_key(key: str) -> bool:
    try:
        canonical_key(key)
    except InvalidKeyError:
        return False
    return True


def expected_put(
    existing: dict[str, Any] | None,
    entry: dict[str, Any],
    stored: dict[str, Any],
    before: int,
    after: int,
) -> dict[str, Any]:
    """What ``put`` must store, taking the random sessionId and the clock from ``stored``."""
    fixed = dict(entry)
    if fixed.get("sessionId") is None:
        assert is_uuid4(stored["sessionId"]), stored
        fixed["sessionId"] = stored["sessionId"]
    now = None
    if entry.get("updatedAt") is None:
        now = stored["updatedAt"]
        assert type(now) is int and before <= now <= after, stored
    return replace_entry(existing, fixed, now=now)


# OpenClaw's session id rule (spec 3.5), as JavaScript applies it: no trailing newline.
SESSION_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}", re.IGNORECASE)


def refuses_session_id(existing: dict[str, Any] | None, entry: dict[str, Any]) -> bool:
    """A put is refused when it brings a sessionId that cannot name a transcript file
    (a missing or null one gets a UUID; the id the entry already has is let through)."""
    sid = entry.get("sessionId")
    if sid is None or (existing is not None and existing.get("sessionId") == sid):
        return False
    return not (isinstance(sid, str) and SESSION_ID.fullmatch(sid))


# --- strategies ----------------------------------------------------------------------------

# Field names OpenClaw's rules look at, so generated entries go through the normalisation.
SPECIAL_FIELDS = [
    "sessionId",
    "updatedAt",
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
    | st.integers(min_value=-(2**53), max_value=2**53)
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
field_names = st.text(max_size=12) | st.sampled_from(SPECIAL_FIELDS)
entries = st.dictionaries(field_names, json_values, max_size=8)
store_keys = st.text(min_size=1, max_size=24).filter(valid_key) | st.sampled_from(
    ["agent:main:main", "Agent:Main:Main", "global", "agent:main:cron:j:run:r"]
)

MB_STRING = "\u00e9\U0001f600ab" * (1_000_000 // 10)  # ~1 MB of UTF-8, multi-byte included


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(items=st.lists(st.tuples(store_keys, entries), min_size=1, max_size=5))
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
    with tempfile.TemporaryDirectory() as d:
        model: dict[str, dict[str, Any]] = {}
        with open_in(d, backend) as store:
            for key, entry in items:
                canonical = canonical_key(key)
                if refuses_session_id(model.get(canonical), entry):
                    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
                        store.put(key, entry)
                    continue
                before = now_ms()
                stored = store.put(key, entry)
                after = now_ms()
                expected = expected_put(model.get(canonical), entry, stored, before, after)
                assert_same(stored, expected)
                assert_same(store.get(key), expected)
                model[canonical] = expected
            assert_same(store.load_all(), model)
            assert store.count() == len(model)
        with open_in(d, backend) as store:
            assert_same(store.load_all(), model)
            for key, expected in model.items():
                assert_same(store.get(key), expected)


# --- the stateful model --------------------------------------------------------------------

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
VARIANT_KEYS = ["Agent:Main:A", "AGENT:MAIN:A", "Agent:Main:B", "agent:MAIN:telegram:direct:1"]
TIMES = [FUTURE + i for i in range(4)]

FIELDS = [
    "label",
    "displayName",
    "counter",
    "model",
    "modelProvider",
    "channel",
    "lastChannel",
    "lastTo",
    "lastThreadId",
    "spawnedBy",
    "parentSessionKey",
    "messageCount",
    "totalTokens",
    "origin",
    "acp",
    "skillsSnapshot",
    "systemPromptReport",
]
small_values = (
    st.sampled_from(["x", " Teams ", "telegram", "gpt-5", " gpt-5 ", "", "agent:main:a"])
    | st.integers(min_value=-3, max_value=3)
    | st.sampled_from([1.5, 7.0, True, False])
    | st.sampled_from([{"prompt": "p" * 2000, "skills": []}, {"state": "idle"}, {"threadId": 4}])
    | st.lists(st.integers(min_value=0, max_value=2), max_size=2)
)
put_entries = st.dictionaries(st.sampled_from(FIELDS), small_values, max_size=6)
patches = st.dictionaries(st.sampled_from(FIELDS), st.none() | small_values, max_size=4)
maybe_time = st.none() | st.sampled_from(TIMES)
maybe_session = st.none() | st.sampled_from(["s1", "s2"])


def with_meta(entry: dict[str, Any], session_id: str | None, updated_at: int | None) -> dict:
    out = dict(entry)
    if session_id is not None:
        out["sessionId"] = session_id
    if updated_at is not None:
        out["updatedAt"] = updated_at
    return out


def fold(key: str) -> str:
    return key.strip().lower()


_CRON_RUN = re.compile(r"^cron:[^:]+:run:[^:]+$")


class StoreModel(RuleBasedStateMachine):
    """Drive one store and a model of its contract with the same operations."""

    backend: ClassVar[str] = "json"

    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        self.store = open_in(self._dir.name, self.backend)
        # Keys as stored (legacy mixed-case variants included), in insertion order.
        self.raw: dict[str, dict[str, Any]] = {}

    def teardown(self) -> None:
        self.store.close()
        self._dir.cleanup()

    # --- the model ------------------------------------------------------------------------

    def resolve(self, canonical: str) -> tuple[str | None, list[str]]:
        """Spec 5.5: the freshest of the key and its case variants; the canonical key wins
        a tie, then the earliest stored."""
        matches = [k for k in self.raw if fold(k) == canonical]
        winner = None
        for k in matches:
            t = sort_time(self.raw[k])
            if (
                winner is None
                or t > sort_time(self.raw[winner])
                or (t == sort_time(self.raw[winner]) and k == canonical)
            ):
                winner = k
        return winner, matches

    def store_under(self, canonical: str, entry: dict[str, Any], matches: list[str]) -> None:
        for k in matches:
            if k != canonical:
                del self.raw[k]
        self.raw[canonical] = entry

    def existing(self, canonical: str) -> dict[str, Any] | None:
        winner, _ = self.resolve(canonical)
        return None if winner is None else self.raw[winner]

    # --- rules ----------------------------------------------------------------------------

    @rule(
        key=st.sampled_from(API_KEYS),
        entry=put_entries,
        session_id=maybe_session,
        updated_at=maybe_time,
    )
    def put(
        self, key: str, entry: dict[str, Any], session_id: str | None, updated_at: int | None
    ) -> None:
        entry = with_meta(entry, session_id, updated_at)
        canonical = canonical_key(key)
        winner, matches = self.resolve(canonical)
        before = now_ms()
        stored = self.store.put(key, entry)
        after = now_ms()
        existing = None if winner is None else self.raw[winner]
        expected = expected_put(existing, entry, stored, before, after)
        assert_same(stored, expected)
        self.store_under(canonical, expected, matches)

    def _check_update(
        self,
        key: str,
        patch: dict[str, Any] | None,
        result: dict[str, Any] | None,
        create: bool,
        preserve_activity: bool,
        before: int,
        after: int,
    ) -> None:
        canonical = canonical_key(key)
        winner, matches = self.resolve(canonical)
        existing = None if winner is None else self.raw[winner]
        if existing is None and not create:
            assert result is None
            return
        if patch is None:
            assert_same(result, existing)
            return
        assert result is not None
        stamp = result.get("updatedAt")
        now = stamp if type(stamp) is int and before <= stamp <= after else before
        expected = merge_entry(existing, patch, preserve_activity=preserve_activity, now=now)
        if patch.get("sessionId") is None and (existing or {}).get("sessionId") is None:
            assert is_uuid4(result["sessionId"]), result
            expected["sessionId"] = result["sessionId"]
        assert_same(result, expected)
        self.store_under(canonical, expected, matches)

    @rule(
        key=st.sampled_from(API_KEYS),
        patch=patches,
        updated_at=maybe_time,
        session_id=maybe_session,
        create=st.booleans(),
        preserve_activity=st.booleans(),
    )
    def update(
        self,
        key: str,
        patch: dict[str, Any],
        updated_at: int | None,
        session_id: str | None,
        create: bool,
        preserve_activity: bool,
    ) -> None:
        patch = with_meta(patch, session_id, updated_at)
        before = now_ms()
        result = self.store.update(key, patch, create=create, preserve_activity=preserve_activity)
        after = now_ms()
        self._check_update(key, patch, result, create, preserve_activity, before, after)

    @rule(
        key=st.sampled_from(API_KEYS),
        patch=st.none() | patches,
        create=st.booleans(),
    )
    def update_with_callable(self, key: str, patch: dict[str, Any] | None, create: bool) -> None:
        seen: list[Any] = []
        expected_arg = self.existing(canonical_key(key))

        def fn(current: Any) -> dict[str, Any] | None:
            seen.append(current)
            return patch

        before = now_ms()
        result = self.store.update(key, fn, create=create)
        after = now_ms()
        if expected_arg is None and not create:
            assert seen == []
        else:
            assert len(seen) == 1
            assert_same(seen[0], expected_arg)
        self._check_update(key, patch, result, create, False, before, after)

    @rule(key=st.sampled_from(API_KEYS))
    def delete(self, key: str) -> None:
        _, matches = self.resolve(canonical_key(key))
        assert self.store.delete(key) is bool(matches)
        for k in matches:
            del self.raw[k]

    @rule(
        variant=st.sampled_from(VARIANT_KEYS),
        entry=put_entries,
        updated_at=maybe_time,
    )
    def add_legacy_variant(
        self, variant: str, entry: dict[str, Any], updated_at: int | None
    ) -> None:
        entry = with_meta(entry, "legacy", updated_at)

        def fn(s: dict[str, Any]) -> int:
            s[variant] = dict(entry)
            return len(s)

        assert self.store.mutate(fn) == len(self.raw | {variant: {}})
        expected = dict(entry)
        old = self.raw.get(variant)
        if old is not None and "acp" in old and "acp" not in expected:
            expected["acp"] = old["acp"]
        self.raw[variant] = settle_entry(expected)

    @rule(key=st.sampled_from(API_KEYS + VARIANT_KEYS))
    def get(self, key: str) -> None:
        assert_same(self.store.get(key), self.existing(canonical_key(key)))

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = open_in(self._dir.name, self.backend)

    @rule()
    def load_all(self) -> None:
        assert_same(self.store.load_all(), self.raw)

    @rule(
        limit=st.none() | st.integers(min_value=1, max_value=4),
        include_global=st.booleans(),
        include_unknown=st.booleans(),
        agent_id=st.none() | st.sampled_from(["main", "ops"]),
        channel=st.none() | st.sampled_from(["telegram", "msteams", "slack", "x"]),
    )
    def list_pages(
        self,
        limit: int | None,
        include_global: bool,
        include_unknown: bool,
        agent_id: str | None,
        channel: str | None,
    ) -> None:
        wanted = []
        for key, entry in self.raw.items():
            folded = fold(key)
            parsed = parse_agent_session_key(key)
            if parsed is not None and _CRON_RUN.match(parsed.rest):
                continue
            if folded in ("global", "unknown"):
                if agent_id is not None:
                    continue
                if not (include_global if folded == "global" else include_unknown):
                    continue
            if agent_id is not None and (parsed is None or parsed.agent_id != agent_id):
                continue
            row = derive_row(key, entry, "main")
            if channel is not None and row["channel"] != channel:
                continue
            wanted.append((sort_time(entry), key, row))
        wanted.sort(key=lambda w: (w[0], w[1]), reverse=True)

        rows: list[Any] = []
        cursor = None
        for _ in range(len(wanted) + 2):
            page = self.store.list(
                limit=limit,
                cursor=cursor,
                include_global=include_global,
                include_unknown=include_unknown,
                agent_id=agent_id,
                channel=channel,
            )
            if limit is not None:
                assert len(page.rows) <= limit
            rows += page.rows
            cursor = page.next_cursor
            if cursor is None:
                break
        assert cursor is None, "pagination did not end"
        assert [r["key"] for r in rows] == [w[1] for w in wanted]
        for row, (_, _, expected) in zip(rows, wanted, strict=True):
            assert_same(dict(sorted(row.items())), dict(sorted(expected.items())))

    @invariant()
    def count_matches(self) -> None:
        assert self.store.count() == len(self.raw)

    @precondition(lambda self: bool(self.raw))
    @invariant()
    def freshest_is_found(self) -> None:
        canonical = fold(next(iter(self.raw)))
        assert_same(self.store.get(canonical), self.existing(canonical))


class JsonStoreModel(StoreModel):
    backend = "json"


class SqliteStoreModel(StoreModel):
    backend = "sqlite"


MACHINE_SETTINGS = settings(max_examples=100, deadline=None, stateful_step_count=40)
TestJsonStoreModel = JsonStoreModel.TestCase
TestJsonStoreModel.settings = MACHINE_SETTINGS
TestSqliteStoreModel = SqliteStoreModel.TestCase
TestSqliteStoreModel.settings = MACHINE_SETTINGS
