"""``fields=``: a projection of what get/put/update/reset return, never of what is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strict_json import assert_same

import sessionstore
from model import openclaw_rules as rules
from sessionstore import InvalidArgumentError, SessionStore, SessionStoreError

KEY = "agent:main:telegram:direct:5"
SNAPSHOT = {"prompt": "p" * 2000, "skills": [{"name": "a"}, {"name": "b"}]}
REPORT = {"tools": [{"name": "x", "chars": 10}], "workspaceDir": "/w"}


def full(label: str = "L") -> dict[str, Any]:
    return {
        "sessionId": "fields-1",
        "updatedAt": 1_000,
        "label": label,
        "model": "m",
        "skillsSnapshot": SNAPSHOT,
        "systemPromptReport": REPORT,
    }


def test_get_returns_only_the_fields_that_exist(store: SessionStore) -> None:
    stored = store.put(KEY, full())
    assert store.get(KEY, fields=("label", "model")) == {"label": "L", "model": "m"}
    assert store.get(KEY, fields=["label", "nope"]) == {"label": "L"}
    assert store.get(KEY, fields=("skillsSnapshot",)) == {"skillsSnapshot": SNAPSHOT}
    assert store.get(KEY, fields=("systemPromptReport", "sessionId")) == {
        "systemPromptReport": REPORT,
        "sessionId": "fields-1",
    }
    assert store.get(KEY, fields=()) == {}
    assert store.get("agent:main:missing", fields=()) is None
    assert store.get("Agent:Main:Telegram:Direct:5", fields=iter(["label"])) == {"label": "L"}
    assert store.get(KEY) == stored  # the whole entry, as before


def test_writes_return_the_projection_and_store_everything(store: SessionStore) -> None:
    assert store.put(KEY, full(), fields=("label",)) == {"label": "L"}
    assert store.update(KEY, {"label": "M"}, fields=("label", "updatedAt"))["label"] == "M"  # type: ignore[index]
    assert store.update(KEY, {"thinkingLevel": "low"}, fields=()) == {}
    assert store.update("agent:main:missing", {"x": 1}, fields=()) is None
    created = store.update("agent:main:new", {"x": 1}, create=True, fields=("x",))
    assert created == {"x": 1}
    whole = store.get(KEY)
    assert whole is not None
    assert whole["skillsSnapshot"] == SNAPSHOT and whole["systemPromptReport"] == REPORT
    assert whole["label"] == "M" and whole["thinkingLevel"] == "low"
    fresh = store.reset(KEY, fields=("sessionId", "skillsSnapshot"))
    assert set(fresh) <= {"sessionId", "skillsSnapshot"}
    assert fresh["sessionId"] != "fields-1"
    got = store.get(KEY, fields=("sessionId",))
    assert got == {"sessionId": fresh["sessionId"]}


@pytest.mark.parametrize("bad", ["label", b"label", 3, [1], ("ok", None)])
def test_fields_must_be_names(store: SessionStore, bad: object) -> None:
    store.put(KEY, full())
    for call in (
        lambda: store.get(KEY, fields=bad),  # type: ignore[arg-type]
        lambda: store.put(KEY, full(), fields=bad),  # type: ignore[arg-type]
        lambda: store.update(KEY, {"x": 1}, fields=bad),  # type: ignore[arg-type]
        lambda: store.reset(KEY, fields=bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgumentError, match="fields"):
            call()


# The hot fields, any of which a backend may answer from its columns: every JSON type,
# missing, null, '' and 1.0 vs 1 included, so that a column that is not the field's exact
# value shows.
HOT = rules.ROW_FIELDS
MISSING = object()
_values = st.one_of(
    st.just(MISSING),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", " telegram ", "Telegram", "12", "1.0"]),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
)


@given(
    values=st.fixed_dictionaries({name: _values for name in HOT}),
    names=st.lists(st.sampled_from((*HOT, "thinkingLevel", "skillsSnapshot")), max_size=5),
    key=st.sampled_from([KEY, "agent:main:global", "Agent:Main:Mixed:Case"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_projection_is_the_entry_s_fields_exactly(
    store: SessionStore, values: dict[str, Any], names: list[str], key: str
) -> None:
    entry = {name: v for name, v in values.items() if v is not MISSING}
    entry["thinkingLevel"] = "low"
    try:
        store.put(key, entry)
    except SessionStoreError:
        return  # a value the entry rules refuse (e.g. a non-string sessionId)
    whole = store.get(key)
    assert whole is not None
    got = store.get(key, fields=names)
    assert got is not None
    expected = {name: whole[name] for name in names if name in whole}
    assert_same(got, expected)
    assert list(got) == list(expected)


FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def test_projection_of_a_store_openclaw_wrote(tmp_path: Path) -> None:
    # sessions.json as the gateway writes it (JSON.stringify(store, null, 2)), from the
    # real-shaped fixtures, with a legacy mixed-case variant; imported on first open.
    entries: dict[str, Any] = {}
    for name in ("typical-entry.json", "bloated-entry.json"):
        doc = json.loads((FIXTURES / name).read_text())
        entries.update(doc)
    key, entry = next(iter(entries.items()))
    variant = dict(entry, sessionId="legacy-variant", updatedAt=entry["updatedAt"] + 1)
    entries[key.replace("agent:main", "Agent:Main")] = variant
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text(json.dumps(entries, indent=2, ensure_ascii=False))
    with sessionstore.open_store(state_dir=tmp_path, store_type="sqlite") as store:
        for stored_key in entries:
            whole = store.get(stored_key)
            assert whole is not None
            for names in (HOT, *((n,) for n in HOT), ("sessionId", "label", "thinkingLevel")):
                got = store.get(stored_key, fields=names)
                assert got is not None
                assert_same(got, {n: whole[n] for n in names if n in whole})
        # the freshest case variant answers the canonical key, from columns as from the entry
        assert store.get(key, fields=("sessionId",)) == {"sessionId": "legacy-variant"}
