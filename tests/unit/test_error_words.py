"""Errors speak JSON, not Python (issue 12 item 6): ``null``, ``an array``, not NoneType."""

from __future__ import annotations

from pathlib import Path

import pytest

import sessionstore
from sessionstore import CorruptStoreError, InvalidEntryError


@pytest.mark.parametrize(
    ("text", "words"),
    [("null", "null"), ("[1, 2]", "an array"), ('"x"', "a string"), ("7", "a number")],
)
def test_a_sessions_json_that_is_not_an_object(tmp_path: Path, text: str, words: str) -> None:
    sessions = tmp_path / "agents" / "main" / "sessions"
    sessions.mkdir(parents=True)
    (sessions / "sessions.json").write_text(text)
    with (
        sessionstore.open_store(state_dir=tmp_path, store_type="json") as store,
        pytest.raises(CorruptStoreError) as caught,
    ):
        store.get("agent:main:main")
    message = str(caught.value)
    assert f"found {words};" in message
    assert "NoneType" not in message and "list" not in message


@pytest.mark.parametrize(("value", "words"), [(None, "null"), ([1], "an array"), ("s", "a string")])
def test_an_entry_that_is_not_an_object(
    store: sessionstore.SessionStore, value: object, words: str
) -> None:
    with pytest.raises(InvalidEntryError) as caught:
        store.put("agent:main:main", value)  # type: ignore[arg-type]
    assert f"({words})" in str(caught.value)
    assert "NoneType" not in str(caught.value)
