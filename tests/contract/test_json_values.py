"""Values that are not JSON are refused, by one rule, on every backend and every write path.

orjson writes ``datetime``, ``date``, ``time`` and dataclasses by itself (as strings and
objects), so ``update()`` used to hand back the datetime it was given while ``get()`` gave a
string. Now put, update (patch or function), mutate and transcript appends refuse them with
an ``InvalidEntryError`` that names the field and the type, and nothing is written.

``uuid.UUID`` and ``enum.Enum`` members are different: orjson converts them with no way to
refuse them, and finding them would take a walk over every value on every write. They are
stored as orjson writes them (the UUID's string, the member's value), which is what
``get()``, ``list()``, ``load_all()`` and transcript reads return, on every backend.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from strict_json import assert_same

import sessionstore
from gateway_files import GatewayWriter
from sessionstore import InvalidEntryError, SessionStore

KEY = "agent:main:telegram:direct:42"
SID = "0f6c4a52-5a4e-4d36-9d0b-3b9b3e3c8a11"
BASE = {"sessionId": SID, "updatedAt": 1_774_948_442_000, "label": "ops", "a": {"keep": 1}}


@dataclasses.dataclass
class Point:
    x: int = 1
    y: int = 2


class Color(enum.Enum):
    RED = "red"


NOT_JSON: list[tuple[Any, str]] = [
    (datetime.datetime(2026, 3, 31, 12, 0, tzinfo=datetime.timezone.utc), "datetime"),
    (datetime.datetime(2026, 3, 31, 12, 0), "datetime"),
    (datetime.date(2026, 3, 31), "date"),
    (datetime.time(12, 30), "time"),
    (Point(), "dataclass Point"),
]
IDS = ["aware-datetime", "naive-datetime", "date", "time", "dataclass"]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of the sessions dir but locks and the SQLite shm (reader marks)."""
    if not path.exists():
        return {}
    return {
        p.name: p.read_bytes()
        for p in sorted(path.iterdir())
        if p.is_file() and not p.name.endswith((".lock", "-shm"))
    }


def writes(value: Any) -> dict[str, Callable[[SessionStore], object]]:
    """Each write path, putting ``value`` at field ``a.b`` of the entry under KEY."""

    def mutate(store: SessionStore) -> None:
        def fn(entries: dict[str, Any]) -> None:
            entries[KEY]["a"]["b"] = value

        store.mutate(fn)

    return {
        "put": lambda s: s.put(KEY, {**BASE, "a": {"b": value}}),
        "update": lambda s: s.update(KEY, {"a": {"b": value}}),
        "update-fn": lambda s: s.update(KEY, lambda old: {"a": {**(old or {})["a"], "b": value}}),
        "update-create": lambda s: s.update("agent:main:new", {"a": {"b": value}}, create=True),
        "mutate": mutate,
    }


@pytest.mark.parametrize(("value", "named"), NOT_JSON, ids=IDS)
@pytest.mark.parametrize("op", ["put", "update", "update-fn", "update-create", "mutate"])
def test_entries_refuse_values_that_are_not_json(
    store: SessionStore, value: Any, named: str, op: str
) -> None:
    store.put(KEY, BASE)
    before = snapshot(store.paths.sessions_dir)
    with pytest.raises(InvalidEntryError) as info:
        writes(value)[op](store)
    message = str(info.value)
    assert f"field 'a.b': {named} is not a JSON value" in message, message
    assert ("isoformat()" if "dataclass" not in named else "dataclasses.asdict") in message
    assert snapshot(store.paths.sessions_dir) == before  # nothing written
    assert_same(store.get(KEY), BASE)
    assert store.get("agent:main:new") is None
    assert store.count() == 1


@pytest.mark.parametrize(("value", "named"), NOT_JSON, ids=IDS)
def test_a_large_blob_field_names_its_path(store: SessionStore, value: Any, named: str) -> None:
    # skillsSnapshot is stored apart on sqlite (by content hash): the same rule, the same words.
    snapshot_field = {"prompt": "x" * 5_000, "skills": [{"name": "github"}, {"at": value}]}
    with pytest.raises(InvalidEntryError) as info:
        store.put(KEY, {**BASE, "skillsSnapshot": snapshot_field})
    assert f"entry {KEY!r} field 'skillsSnapshot.skills[1].at': {named} is not" in str(info.value)
    assert store.count() == 0


@pytest.mark.parametrize(("value", "named"), NOT_JSON, ids=IDS)
def test_transcript_appends_refuse_values_that_are_not_json(
    store: SessionStore, value: Any, named: str
) -> None:
    store.put(KEY, BASE)
    path = store.paths.sessions_dir / f"{SID}.jsonl"
    if store.table_transcripts:  # postgres: the transcript is in the table
        store.transcript(KEY).append(
            {"role": "user", "content": [{"type": "text", "text": "hello"}]}
        )
    else:  # a transcript the gateway wrote, as it writes them
        writer = GatewayWriter(path, SID)
        writer.write([writer.header(), writer.message("hello")[1]])
    before = store.transcript(KEY).entries()
    transcript = store.transcript(KEY)
    message = {"role": "user", "content": [{"type": "text", "text": "hi", "at": value}]}
    with pytest.raises(InvalidEntryError) as info:
        transcript.append(message)
    assert f"transcript message field 'content[0].at': {named} is not a JSON value" in str(
        info.value
    )
    assert transcript.entries() == before
    assert [m["content"][0]["text"] for m in transcript.messages()] == ["hello"]


def test_other_python_objects_are_refused_the_same_way(store: SessionStore) -> None:
    for value, named in [({1, 2}, "set"), (b"\x00", "bytes"), (object(), "object")]:
        with pytest.raises(InvalidEntryError, match=f"field 'a.b': {named} is not a JSON value"):
            store.put(KEY, {**BASE, "a": {"b": value}})
    with pytest.raises(InvalidEntryError, match=r"field 'a\[1\]': nan is not finite"):
        store.put(KEY, {**BASE, "a": [1, float("nan")]})
    assert store.count() == 0


def test_uuids_and_enum_members_are_stored_as_orjson_writes_them(
    store: SessionStore, state_dir: Path, backend: str
) -> None:
    # Documented, not refused: orjson converts them with no opt-out, and refusing them would
    # take a walk over every value of every write. Every read gives the converted form.
    u = uuid.UUID("6f1d7a0e-3b1c-4c5e-9a57-3c2d9c1f4e20")
    store.put(KEY, {**BASE, "a": {"id": u, "color": Color.RED}})
    store.update(KEY, {"b": [u]})
    expected = {**BASE, "a": {"id": str(u), "color": "red"}, "b": [str(u)]}
    got = store.get(KEY)
    assert got is not None
    assert_same(_without_time(dict(got)), _without_time(expected))
    assert_same(store.load_all()[KEY]["a"], expected["a"])
    with sessionstore.open_store(state_dir=state_dir, store_type=backend) as again:  # type: ignore[arg-type]
        assert_same(again.get(KEY)["a"], expected["a"])  # type: ignore[index]
    transcript = store.transcript(KEY)
    transcript.append({"role": "user", "content": [{"type": "text", "text": "x", "ref": u}]})
    assert transcript.messages()[-1]["content"][0]["ref"] == str(u)


def _without_time(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "updatedAt"}
