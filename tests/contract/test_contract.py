"""The contract every hot-index backend keeps, run against each one through ``store``.

Backends join by adding a param to the ``backend`` fixture in ``tests/conftest.py``; every
test in the ``Test*`` classes below that takes ``store`` then runs against it too. Classes
at the end cover what only one backend has (the ``sessions.json`` file layout, the SQLite
file and schema) and open their own stores.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest
from strict_json import assert_same

import sessionstore
from sessionstore import (
    CorruptStoreError,
    InvalidArgumentError,
    InvalidEntryError,
    InvalidKeyError,
    SessionStore,
    SessionStoreError,
    StoreClosedError,
)
from sessionstore.args import MAX_SAFE_INTEGER
from sessionstore.index.sqlite import SCHEMA_VERSION

# Later than any "now" these tests can meet (2096), so max(old, patch, now) is predictable.
FUTURE = 4_000_000_000_000

ROW_FIELDS = {
    "key",
    "agentId",
    "kind",
    "sessionId",
    "updatedAt",
    "channel",
    "lastChannel",
    "lastTo",
    "lastAccountId",
    "lastThreadId",
    "label",
    "displayName",
    "status",
    "model",
    "modelProvider",
    "totalTokens",
    "inputTokens",
    "outputTokens",
    "messageCount",
    "spawnedBy",
    "parentSessionKey",
}


# --- helpers -------------------------------------------------------------------------------


def assert_row(row: Any, expected: dict[str, Any]) -> None:
    """Rows compare strictly by value and type; their key order is not part of the contract."""
    assert set(row) == ROW_FIELDS
    assert_same(dict(sorted(row.items())), dict(sorted(expected.items())))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def reopen(store: SessionStore) -> SessionStore:
    """A second store on the same files as ``store``."""
    return sessionstore.open_store(
        agent=store.agent_id,
        state_dir=store.state_dir,
        store_type=store.store_type,  # type: ignore[arg-type]
    )


def disk_state(store: SessionStore) -> dict[str, tuple[int, int, bytes]]:
    """(inode, mtime, bytes) of every store file; lock files and the SQLite shm excluded.

    The shm file holds reader marks that change on reads; every committed SQLite write
    appends to the -wal file (or, after a checkpoint, changes the main file).
    """
    d = store.paths.sessions_dir
    if not d.exists():
        return {}
    out = {}
    for p in sorted(d.iterdir()):
        if not p.is_file() or p.name.endswith((".lock", "-shm")):
            continue
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns, p.read_bytes())
    return out


def add_raw(store: SessionStore, key: str, entry: dict[str, Any]) -> None:
    """Store ``entry`` under ``key`` exactly as given (no canonicalisation), like a legacy
    OpenClaw store holding a mixed-case key."""

    def fn(s: dict[str, Any]) -> None:
        s[key] = entry

    store.mutate(fn)


def is_uuid4(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return str(parsed) == value and parsed.version == 4


def keys_of(page: sessionstore.SessionPage) -> list[str]:
    return [row["key"] for row in page.rows]


def e(session_id: str, updated_at: int | float, **fields: Any) -> dict[str, Any]:
    return {"sessionId": session_id, "updatedAt": updated_at, **fields}


SNAPSHOT = {
    "prompt": "<available_skills>" + "x" * 40_000 + "</available_skills>",
    "skills": [{"name": "github", "primaryEnv": "GITHUB_TOKEN"}, {"name": "weather"}],
    "version": 3,
}
ACP = {
    "backend": "acpx",
    "agent": "codex",
    "runtimeSessionName": "rt-1",
    "mode": "persistent",
    "state": "idle",
    "lastActivityAt": 1_700_000_000_000,
}


# --- basics --------------------------------------------------------------------------------


class TestBasics:
    def test_store_type_is_the_backend(self, store: SessionStore, backend: str) -> None:
        assert store.store_type == backend

    def test_empty_store(self, store: SessionStore) -> None:
        assert store.get("agent:main:main") is None
        assert store.count() == 0
        assert store.load_all() == {}
        page = store.list()
        assert page.rows == []
        assert page.next_cursor is None

    def test_put_then_get_returns_the_entry_exactly(self, store: SessionStore) -> None:
        entry = {
            "zeta": "first",
            "updatedAt": 1_700_000_000_123,
            "counter": 1,
            "sessionId": "4f1e0c4e-8a43-4c7e-9d3e-5a1e2b3c4d5e",
            "ratio": 0.5,
            "flag": True,
            "nothing": None,
            "nested": {"b": [1, 2.5, "x", False, None, {"deep": {}}], "a": []},
            "big": 2**53,
            "neg": -(2**53),
            "unicode": 'héllo \U0001f600 \u2028 \x00 \\ "q"',
        }
        stored = store.put("agent:main:main", entry)
        assert_same(stored, entry)
        assert_same(store.get("agent:main:main"), entry)
        assert_same(store.load_all(), {"agent:main:main": entry})
        with reopen(store) as again:
            assert_same(again.get("agent:main:main"), entry)

    def test_put_stores_updated_at_exactly_as_given(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1111))
        assert_same(store.get("agent:main:a")["updatedAt"], 1111)  # type: ignore[index]
        store.put("agent:main:a", e("a", 5))  # older than before: put replaces, no max()
        assert_same(store.get("agent:main:a")["updatedAt"], 5)  # type: ignore[index]
        store.put("agent:main:a", e("a", 1234.5))
        assert_same(store.get("agent:main:a")["updatedAt"], 1234.5)  # type: ignore[index]
        store.put("agent:main:a", e("a", FUTURE))
        assert_same(store.get("agent:main:a")["updatedAt"], FUTURE)  # type: ignore[index]

    def test_put_without_updated_at_uses_now(self, store: SessionStore) -> None:
        before = now_ms()
        stored = store.put("agent:main:a", {"sessionId": "a"})
        after = now_ms()
        assert type(stored["updatedAt"]) is int
        assert before <= stored["updatedAt"] <= after
        assert_same(store.get("agent:main:a"), stored)

    def test_new_entries_get_a_uuid_session_id(self, store: SessionStore) -> None:
        a = store.put("agent:main:a", {"updatedAt": 1})
        b = store.put("agent:main:b", {"updatedAt": 1, "sessionId": None})
        c = store.update("agent:main:c", {"label": "c"}, create=True)
        assert c is not None
        ids = [a["sessionId"], b["sessionId"], c["sessionId"]]
        assert all(is_uuid4(i) for i in ids)
        assert len(set(ids)) == 3
        assert store.get("agent:main:a")["sessionId"] == a["sessionId"]  # type: ignore[index]
        given = store.put("agent:main:d", e("my-session", 1))
        assert given["sessionId"] == "my-session"

    def test_put_keeps_acp_when_replacing_an_entry_without_acp(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, acp=ACP, label="old"))
        stored = store.put("agent:main:a", e("a", 2, label="new"))
        assert_same(stored, e("a", 2, label="new", acp=ACP))
        assert_same(store.get("agent:main:a"), stored)
        other = {**ACP, "state": "running"}
        assert store.put("agent:main:a", e("a", 3, acp=other))["acp"] == other
        assert "acp" not in store.put("agent:main:b", e("b", 1))

    def test_returned_entries_are_independent_copies(self, store: SessionStore) -> None:
        entry = e("a", 1, origin={"label": "x", "list": [1]})
        stored = store.put("agent:main:a", entry)
        entry["origin"]["label"] = "changed-input"
        entry["origin"]["list"].append(2)
        stored["origin"]["label"] = "changed-result"
        got = store.get("agent:main:a")
        assert got is not None
        got["origin"]["label"] = "changed-get"
        got["extra"] = 1
        loaded = store.load_all()["agent:main:a"]
        loaded["origin"]["label"] = "changed-load-all"
        ref = store.mutate(lambda s: s["agent:main:a"])
        ref["origin"]["label"] = "changed-mutate-result"
        assert_same(store.get("agent:main:a"), e("a", 1, origin={"label": "x", "list": [1]}))

    def test_count_and_load_all_follow_puts_and_deletes(self, store: SessionStore) -> None:
        for name in ("a", "b", "c", "d"):
            store.put(f"agent:main:{name}", e(name, 10))
        store.update("agent:main:b", {"updatedAt": FUTURE})
        assert store.count() == 4
        assert store.delete("agent:main:a") is True
        store.put("agent:main:a", e("a2", 1))
        assert store.count() == 4
        assert list(store.load_all()) == [
            "agent:main:b",
            "agent:main:c",
            "agent:main:d",
            "agent:main:a",
        ]
        assert store.load_all()["agent:main:a"] == e("a2", 1)

    def test_data_survives_reopening(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, label="x"))
        store.update("agent:main:a", {"counter": 2})
        expected = store.load_all()
        with reopen(store) as again:
            assert_same(again.load_all(), expected)
            assert again.count() == 1


# --- delete --------------------------------------------------------------------------------


class TestDelete:
    def test_delete_existing(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1))
        store.put("agent:main:b", e("b", 2))
        assert store.delete("agent:main:a") is True
        assert store.get("agent:main:a") is None
        assert store.count() == 1
        assert list(store.load_all()) == ["agent:main:b"]
        assert keys_of(store.list()) == ["agent:main:b"]
        assert store.delete("agent:main:a") is False

    def test_delete_missing_returns_false_and_writes_nothing(self, store: SessionStore) -> None:
        assert store.delete("agent:main:nothing") is False
        store.put("agent:main:a", e("a", 1))
        before = disk_state(store)
        assert store.delete("agent:main:nothing") is False
        assert disk_state(store) == before
        assert store.count() == 1


# --- update --------------------------------------------------------------------------------


class TestUpdate:
    def test_merge_touches_activity(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("sid", 1111, label="keep", counter=1))
        before = now_ms()
        out = store.update("agent:main:a", {"counter": 2, "extra": "x"})
        after = now_ms()
        assert out is not None
        assert before <= out["updatedAt"] <= after
        assert_same(
            out,
            {
                "sessionId": "sid",
                "updatedAt": out["updatedAt"],
                "label": "keep",
                "counter": 2,
                "extra": "x",
            },
        )
        assert_same(store.get("agent:main:a"), out)

    def test_updated_at_is_max_of_old_patch_and_now(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", FUTURE))
        out = store.update("agent:main:a", {"x": 1})
        assert out is not None and out["updatedAt"] == FUTURE  # old wins over now
        out = store.update("agent:main:a", {"updatedAt": FUTURE + 5})
        assert out is not None and out["updatedAt"] == FUTURE + 5  # patch wins
        out = store.update("agent:main:a", {"updatedAt": 5})
        assert out is not None and out["updatedAt"] == FUTURE + 5  # never moves back
        store.put("agent:main:b", e("b", 10))
        before = now_ms()
        out = store.update("agent:main:b", {"updatedAt": 20})
        assert out is not None and before <= out["updatedAt"] <= now_ms()  # now wins

    def test_preserve_activity_keeps_old_updated_at(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1111))
        out = store.update("agent:main:a", {"subject": "s"}, preserve_activity=True)
        assert out is not None
        assert_same(out, e("a", 1111, subject="s"))
        out = store.update(
            "agent:main:a", {"updatedAt": FUTURE, "subject": "t"}, preserve_activity=True
        )
        assert out is not None and out["updatedAt"] == 1111
        assert store.get("agent:main:a")["updatedAt"] == 1111  # type: ignore[index]

    def test_preserve_activity_on_a_new_entry_is_a_normal_merge(self, store: SessionStore) -> None:
        # Spec 2.3/5.5: only an *existing* entry keeps its updatedAt; a new one gets
        # max(patch.updatedAt, now) like any merge.
        before = now_ms()
        out = store.update("agent:main:a", {"updatedAt": 777}, create=True, preserve_activity=True)
        assert out is not None and before <= out["updatedAt"] <= now_ms()
        out = store.update(
            "agent:main:b", {"updatedAt": FUTURE}, create=True, preserve_activity=True
        )
        assert out is not None and out["updatedAt"] == FUTURE
        before = now_ms()
        out = store.update("agent:main:c", {"x": 1}, create=True, preserve_activity=True)
        assert out is not None and before <= out["updatedAt"] <= now_ms()

    def test_none_in_patch_deletes_the_field(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, label="x", counter=3, nested={"k": 1}))
        out = store.update("agent:main:a", {"label": None, "nested": None, "absent": None})
        assert out is not None
        assert "label" not in out and "nested" not in out and "absent" not in out
        assert out["counter"] == 3
        assert_same(store.get("agent:main:a"), out)

    def test_nested_objects_are_replaced_whole(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, origin={"a": 1, "b": 2}, cliSessionIds={"x": "1"}))
        out = store.update("agent:main:a", {"origin": {"a": 3}})
        assert out is not None
        assert_same(out["origin"], {"a": 3})
        assert_same(out["cliSessionIds"], {"x": "1"})

    def test_session_id_kept_unless_patched(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("orig", 1))
        assert store.update("agent:main:a", {"x": 1})["sessionId"] == "orig"  # type: ignore[index]
        out = store.update("agent:main:a", {"sessionId": "next"})
        assert out is not None and out["sessionId"] == "next"

    def test_missing_without_create_returns_none_and_writes_nothing(
        self, store: SessionStore
    ) -> None:
        before = disk_state(store)
        calls: list[Any] = []

        def fn(entry: Any) -> dict[str, Any]:
            calls.append(entry)
            return {"x": 1}

        assert store.update("agent:main:a", {"label": "x"}) is None
        assert store.update("agent:main:a", fn) is None
        assert store.update("agent:main:a", {"label": "x"}, preserve_activity=True) is None
        assert calls == []
        assert store.count() == 0
        assert store.get("agent:main:a") is None
        assert disk_state(store) == before
        store.put("agent:main:other", e("o", 1))
        before = disk_state(store)
        assert store.update("agent:main:a", {"label": "x"}) is None
        assert disk_state(store) == before
        assert store.count() == 1

    def test_create_makes_a_new_entry(self, store: SessionStore) -> None:
        before = now_ms()
        out = store.update("agent:main:a", {"label": "new"}, create=True)
        assert out is not None
        assert is_uuid4(out["sessionId"])
        assert before <= out["updatedAt"] <= now_ms()
        assert out["label"] == "new"
        assert_same(store.get("agent:main:a"), out)
        assert store.count() == 1

    def test_callable_patch_gets_the_current_entry(self, store: SessionStore) -> None:
        entry = e("a", 1, skillsSnapshot=SNAPSHOT, counter=1, acp=ACP)
        store.put("agent:main:a", entry)
        seen: list[Any] = []

        def bump(current: Any) -> dict[str, Any]:
            seen.append(current)
            return {"counter": current["counter"] + 1}

        out = store.update("agent:main:a", bump)
        assert len(seen) == 1
        assert_same(seen[0], entry)
        assert out is not None and out["counter"] == 2
        assert_same(out["skillsSnapshot"], SNAPSHOT)

    def test_callable_gets_none_for_a_missing_entry_with_create(self, store: SessionStore) -> None:
        seen: list[Any] = []

        def fn(current: Any) -> dict[str, Any]:
            seen.append(current)
            return {"label": "made"}

        out = store.update("agent:main:a", fn, create=True)
        assert seen == [None]
        assert out is not None and out["label"] == "made"

    def test_callable_returning_none_writes_nothing(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1111, label="x", skillsSnapshot=SNAPSHOT))
        expected = store.get("agent:main:a")
        before = disk_state(store)
        out = store.update("agent:main:a", lambda current: None)
        assert_same(out, expected)
        assert disk_state(store) == before
        assert store.update("agent:main:b", lambda current: None, create=True) is None
        assert disk_state(store) == before
        assert store.count() == 1

    def test_bad_patches_raise_invalid_entry_and_write_nothing(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1))
        before = disk_state(store)
        for patch in ("x", ["label"], 5):
            with pytest.raises(InvalidEntryError):
                store.update("agent:main:a", patch)  # type: ignore[arg-type]
        with pytest.raises(InvalidEntryError):
            store.update("agent:main:a", lambda current: "not a dict")  # type: ignore[arg-type,return-value]
        with pytest.raises(InvalidEntryError):
            store.update("agent:main:a", {1: "x"})  # type: ignore[dict-item]
        assert disk_state(store) == before

    def test_exception_in_callable_propagates_and_writes_nothing(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1))
        before = disk_state(store)

        def boom(current: Any) -> dict[str, Any]:
            raise KeyError("boom")

        with pytest.raises(KeyError):
            store.update("agent:main:a", boom)
        assert disk_state(store) == before
        store.update("agent:main:a", {"after": True})  # the store still works (lock released)
        assert store.get("agent:main:a")["after"] is True  # type: ignore[index]


# --- model fields --------------------------------------------------------------------------


class TestModelFields:
    def test_stale_provider_guard_drops_provider_on_model_change(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, model="claude-opus", modelProvider="anthropic"))
        out = store.update("agent:main:a", {"model": "gpt-5"})
        assert out is not None
        assert out["model"] == "gpt-5"
        assert "modelProvider" not in out
        assert "modelProvider" not in store.get("agent:main:a")  # type: ignore[operator]

    def test_stale_provider_guard_keeps_provider_for_the_same_model(
        self, store: SessionStore
    ) -> None:
        store.put("agent:main:a", e("a", 1, model="claude-opus", modelProvider="anthropic"))
        out = store.update("agent:main:a", {"model": "  claude-opus  "})
        assert out is not None
        assert out["model"] == "claude-opus"
        assert out["modelProvider"] == "anthropic"

    def test_explicit_provider_with_new_model_is_kept(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, model="claude-opus", modelProvider="anthropic"))
        out = store.update("agent:main:a", {"model": "gpt-5", "modelProvider": "openai"})
        assert out is not None
        assert (out["model"], out["modelProvider"]) == ("gpt-5", "openai")

    def test_patch_without_model_keeps_provider(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, model="m", modelProvider="p"))
        out = store.update("agent:main:a", {"label": "x"})
        assert out is not None
        assert (out["model"], out["modelProvider"]) == ("m", "p")

    def test_model_fields_are_trimmed(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", e("a", 1, model="  gpt-5 ", modelProvider=" openai  "))
        assert (out["model"], out["modelProvider"]) == ("gpt-5", "openai")
        assert store.get("agent:main:a")["model"] == "gpt-5"  # type: ignore[index]
        out2 = store.update("agent:main:a", {"model": " o3 ", "modelProvider": " openai "})
        assert out2 is not None
        assert (out2["model"], out2["modelProvider"]) == ("o3", "openai")

    def test_blank_model_removes_model_and_provider(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", e("a", 1, model="   ", modelProvider="openai"))
        assert "model" not in out and "modelProvider" not in out
        store.put("agent:main:b", e("b", 1, model="m", modelProvider="p"))
        out2 = store.update("agent:main:b", {"model": " "})
        assert out2 is not None
        assert "model" not in out2 and "modelProvider" not in out2

    def test_blank_provider_is_removed(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", e("a", 1, model="m", modelProvider="  "))
        assert out["model"] == "m"
        assert "modelProvider" not in out

    def test_orphan_provider_is_removed(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", e("a", 1, modelProvider="openai"))
        assert "modelProvider" not in out
        assert "modelProvider" not in store.get("agent:main:a")  # type: ignore[operator]
        store.put("agent:main:b", e("b", 1, model="m", modelProvider="p"))
        out2 = store.update("agent:main:b", {"model": None})
        assert out2 is not None
        assert "model" not in out2 and "modelProvider" not in out2
        store.put("agent:main:c", e("c", 1))
        out3 = store.update("agent:main:c", {"modelProvider": "p"})
        assert out3 is not None and "modelProvider" not in out3


# --- delivery context ----------------------------------------------------------------------


class TestDeliveryContext:
    def test_route_fields_are_normalised_and_mirrored(self, store: SessionStore) -> None:
        out = store.put(
            "agent:main:a",
            e(
                "a",
                1,
                lastChannel="  Teams ",
                lastTo="  +15551234567 ",
                lastAccountId="  Work Account! ",
                lastThreadId=42.9,
            ),
        )
        route = {"channel": "msteams", "to": "+15551234567", "accountId": "work-account"}
        assert_same(
            out,
            {
                "sessionId": "a",
                "updatedAt": 1,
                "lastChannel": "msteams",
                "lastTo": "+15551234567",
                "lastAccountId": "work-account",
                "lastThreadId": 42,
                "deliveryContext": {**route, "threadId": 42},
            },
        )
        assert_same(store.get("agent:main:a"), out)

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("imsg", "imessage"),
            ("gchat", "googlechat"),
            ("Google-Chat", "googlechat"),
            ("internet-relay-chat", "irc"),
            ("Teams", "msteams"),
            ("BB", "bluebubbles"),
            ("lark", "feishu"),
            ("nc-talk", "nextcloud-talk"),
            ("nc", "nextcloud-talk"),
            ("twitch-chat", "twitch"),
            ("zl", "zalo"),
            ("ZLU", "zalouser"),
            ("WebChat", "webchat"),
            (" TeleGram ", "telegram"),
            ("SomethingNew", "somethingnew"),
        ],
    )
    def test_channel_aliases(self, store: SessionStore, given: str, expected: str) -> None:
        out = store.put("agent:main:a", e("a", 1, lastChannel=given))
        assert out["lastChannel"] == expected
        assert_same(out["deliveryContext"], {"channel": expected})

    def test_channel_only_entry_gains_last_channel(self, store: SessionStore) -> None:
        out = store.put("agent:main:slack:channel:c1", e("a", 1, channel="Slack"))
        assert out["channel"] == "Slack"  # the entry's own channel is left as given
        assert out["lastChannel"] == "slack"
        assert_same(out["deliveryContext"], {"channel": "slack"})

    def test_delivery_context_input_is_normalised(self, store: SessionStore) -> None:
        out = store.put(
            "agent:main:a",
            e(
                "a",
                1,
                deliveryContext={
                    "channel": " GChat ",
                    "to": " spaces/x ",
                    "accountId": "ACME",
                    "threadId": " 17 ",
                },
            ),
        )
        assert_same(
            out["deliveryContext"],
            {"channel": "googlechat", "to": "spaces/x", "accountId": "acme", "threadId": "17"},
        )
        assert (out["lastChannel"], out["lastTo"], out["lastAccountId"], out["lastThreadId"]) == (
            "googlechat",
            "spaces/x",
            "acme",
            "17",
        )

    def test_blank_values_are_removed(self, store: SessionStore) -> None:
        out = store.put(
            "agent:main:a",
            e("a", 1, lastChannel="telegram", lastTo="   ", lastAccountId=" ", lastThreadId=""),
        )
        assert_same(out, e("a", 1, lastChannel="telegram", deliveryContext={"channel": "telegram"}))

    def test_numeric_thread_id_stays_an_int(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", e("a", 1, lastChannel="telegram", lastThreadId=42))
        assert_same(out["lastThreadId"], 42)
        assert_same(store.get("agent:main:a")["lastThreadId"], 42)  # type: ignore[index]
        assert_same(store.load_all()["agent:main:a"]["lastThreadId"], 42)
        assert_same(store.list().rows[0]["lastThreadId"], 42)
        out = store.put("agent:main:b", e("b", 1, lastChannel="slack", lastThreadId="42"))
        assert_same(store.get("agent:main:b")["lastThreadId"], "42")  # type: ignore[index]
        out = store.put("agent:main:c", e("c", 1, lastChannel="telegram", lastThreadId=7.0))
        assert_same(out["lastThreadId"], 7)
        assert_same(store.get("agent:main:c")["lastThreadId"], 7)  # type: ignore[index]

    def test_origin_thread_id_leaks_into_last_thread_id(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", e("a", 1, lastChannel="telegram", origin={"threadId": 99}))
        assert_same(out["lastThreadId"], 99)
        assert_same(out["deliveryContext"], {"channel": "telegram", "threadId": 99})

    def test_conflicting_channels_take_route_only_from_the_winner(
        self, store: SessionStore
    ) -> None:
        out = store.put(
            "agent:main:a",
            e(
                "a",
                1,
                lastChannel="slack",
                deliveryContext={"channel": "telegram", "to": "123", "accountId": "bot"},
            ),
        )
        assert_same(out["deliveryContext"], {"channel": "slack"})
        assert "lastTo" not in out and "lastAccountId" not in out

    def test_blank_last_channel_falls_back_to_channel(self, store: SessionStore) -> None:
        # Normalisation must be idempotent, or an entry would read back differently after
        # a reload (the json backend normalises on load, as OpenClaw does).
        out = store.put("agent:main:a", e("a", 1, channel="Slack", lastChannel="  "))
        assert out == e(
            "a", 1, channel="Slack", lastChannel="slack", deliveryContext={"channel": "slack"}
        )
        assert_same(store.get("agent:main:a"), out)
        with reopen(store) as again:
            assert_same(again.get("agent:main:a"), out)

    def test_blank_thread_ids_fall_back(self, store: SessionStore) -> None:
        out = store.put(
            "agent:main:a",
            e(
                "a",
                1,
                lastChannel="telegram",
                lastThreadId=" ",
                deliveryContext={"threadId": ""},
                origin={"threadId": 3},
            ),
        )
        assert_same(out["lastThreadId"], 3)
        assert_same(out["deliveryContext"], {"channel": "telegram", "threadId": 3})
        with reopen(store) as again:
            assert_same(again.get("agent:main:a"), out)

    def test_update_normalises_the_merged_route(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, lastChannel="telegram", lastTo="1"))
        out = store.update("agent:main:a", {"lastChannel": "BB", "lastTo": " 2 "})
        assert out is not None
        assert (out["lastChannel"], out["lastTo"]) == ("bluebubbles", "2")
        assert_same(out["deliveryContext"], {"channel": "bluebubbles", "to": "2"})
        out = store.update("agent:main:a", {"lastThreadId": 5.5})
        assert out is not None
        assert_same(out["deliveryContext"], {"channel": "bluebubbles", "to": "2", "threadId": 5})


# --- round trips ---------------------------------------------------------------------------


class TestRoundTrip:
    def test_unknown_fields_and_key_order_round_trip(self, store: SessionStore) -> None:
        entry = {
            "zzz": 1,
            "counter": 7,
            "updatedAt": 5,
            "tag": ["a", "b"],
            "sessionId": "s",
            "aaa": {"z": 1, "a": 2, "m": {"y": None, "b": True}},
            "mixed": [1, 1.0, True, "1", None],
        }
        store.put("agent:main:a", entry)
        assert_same(store.get("agent:main:a"), entry)
        assert_same(store.load_all()["agent:main:a"], entry)
        out = store.update("agent:main:a", {"newField": 1, "zzz": 2}, preserve_activity=True)
        assert out is not None
        assert list(out) == [*entry.keys(), "newField"]
        with reopen(store) as again:
            assert list(again.get("agent:main:a")) == [*entry.keys(), "newField"]  # type: ignore[arg-type]

    def test_legacy_fields_read_back_as_written_after_reopening(self, store: SessionStore) -> None:
        # OpenClaw migrates provider/lastProvider/room on every load (spec 7.1), so what a
        # write returns must already be migrated: the same entry before and after a reload,
        # and on every backend.
        given = e("a", 1, provider="Teams", lastProvider="slack", room="#g", label="x")
        expected = e(
            "a",
            1,
            label="x",
            channel="Teams",
            lastChannel="slack",
            groupChannel="#g",
            deliveryContext={"channel": "slack"},
        )
        assert_same(store.put("agent:main:a", given), expected)
        store.put("agent:main:b", e("a", 1, label="x"))
        legacy = {"provider": "Teams", "lastProvider": "slack", "room": "#g"}
        patched = store.update("agent:main:b", legacy, preserve_activity=True)
        assert_same(patched, expected)
        with reopen(store) as again:
            assert_same(again.get("agent:main:a"), expected)
            assert_same(again.get("agent:main:b"), expected)

    def test_new_session_id_is_appended(self, store: SessionStore) -> None:
        out = store.put("agent:main:a", {"b": 1, "updatedAt": 3, "a": 2})
        assert list(out) == ["b", "updatedAt", "a", "sessionId"]
        assert list(store.get("agent:main:a")) == ["b", "updatedAt", "a", "sessionId"]  # type: ignore[arg-type]

    def test_large_blobs_round_trip(self, store: SessionStore) -> None:
        report = {"source": "run", "generatedAt": 1, "tools": {"entries": [{"name": "x"}] * 50}}
        entry = e("a", 1, skillsSnapshot=SNAPSHOT, label="l", systemPromptReport=report)
        store.put("agent:main:a", entry)
        assert_same(store.get("agent:main:a"), entry)
        assert_same(store.load_all(), {"agent:main:a": entry})

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
    def test_non_finite_numbers_are_rejected(self, store: SessionStore, bad: float) -> None:
        store.put("agent:main:a", e("a", 1))
        before = disk_state(store)
        with pytest.raises(InvalidEntryError):
            store.put("agent:main:a", e("a", 1, x=bad))
        with pytest.raises(InvalidEntryError):
            store.update("agent:main:a", {"nested": {"v": [bad]}})
        assert disk_state(store) == before
        assert_same(store.get("agent:main:a"), e("a", 1))

    def test_64_bit_integers_round_trip_exactly(self, store: SessionStore) -> None:
        entry = e("a", 2**62, counter=2**63 - 1, low=-(2**63), nested={"n": [2**53 + 1]})
        store.put("agent:main:a", entry)
        assert_same(store.get("agent:main:a"), entry)
        with reopen(store) as again:
            assert_same(again.get("agent:main:a"), entry)
            assert again.list().rows[0]["updatedAt"] == 2**62

    @pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**30], ids=repr)
    def test_integers_beyond_64_bits_are_rejected(self, store: SessionStore, big: int) -> None:
        with pytest.raises(InvalidEntryError):
            store.put("agent:main:a", e("a", 1, counter=big))
        with pytest.raises(InvalidEntryError):
            store.put("agent:main:a", e("a", 1, nested={"x": [big]}))
        assert store.count() == 0

    def test_huge_numbers_in_hot_fields_never_escape_as_other_errors(
        self, store: SessionStore
    ) -> None:
        for field in ("updatedAt", "totalTokens", "lastThreadId"):
            entry = e("a", 1, lastChannel="telegram", **{field: 2**63})
            try:
                stored = store.put("agent:main:a", entry)
            except InvalidEntryError:
                continue
            assert_same(stored[field], 2**63)
            assert_same(store.get("agent:main:a")[field], 2**63)  # type: ignore[index]

    def test_huge_float_thread_id_is_kept(self, store: SessionStore) -> None:
        # Math.trunc leaves an integral double as it is; int(1e300) would be an integer
        # no JSON reader gives back.
        out = store.put("agent:main:a", e("a", 1, lastChannel="telegram", lastThreadId=1e300))
        assert out["lastThreadId"] == 1e300
        with reopen(store) as again:
            got = again.get("agent:main:a")
            assert got is not None
            assert_same(got["lastThreadId"], out["lastThreadId"])
            assert_same(got["deliveryContext"]["threadId"], out["lastThreadId"])
            assert again.list().rows[0]["lastThreadId"] == 1e300

    def test_values_json_cannot_hold_are_rejected(self, store: SessionStore) -> None:
        with pytest.raises(InvalidEntryError):
            store.put("agent:main:a", e("a", 1, x=object()))
        with pytest.raises(InvalidEntryError):
            store.put("agent:main:a", e("a", 1, x={1: "int key"}))
        assert store.count() == 0


# --- keys ----------------------------------------------------------------------------------


INVALID_KEYS: list[Any] = [
    "",
    "   ",
    "\t\n",
    "a\x00b",
    "agent:main:\nx",
    "x\x7fy",
    "x\x9by",
    None,
    5,
    b"agent",
]


class TestKeys:
    def test_keys_are_canonicalised(self, store: SessionStore) -> None:
        store.put(" Agent:Main:X ", e("x", 1))
        assert list(store.load_all()) == ["agent:main:x"]
        for variant in ("agent:main:x", "AGENT:MAIN:X", "\tagent:main:X\n"):
            assert store.get(variant) == e("x", 1)
        out = store.update("AGENT:main:x ", {"label": "l"})
        assert out is not None and out["sessionId"] == "x"
        assert store.count() == 1
        assert keys_of(store.list()) == ["agent:main:x"]
        assert store.delete(" agent:MAIN:x") is True
        assert store.count() == 0

    @pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
    def test_invalid_keys_raise(self, store: SessionStore, key: Any) -> None:
        ops: list[Callable[[], object]] = [
            lambda: store.get(key),
            lambda: store.put(key, e("a", 1)),
            lambda: store.update(key, {"x": 1}, create=True),
            lambda: store.delete(key),
        ]
        for op in ops:
            with pytest.raises(InvalidKeyError) as info:
                op()
            assert isinstance(info.value, SessionStoreError)
        assert store.count() == 0

    @pytest.mark.parametrize("entry", ["x", ["a"], None, 5, 1.5, True, ("a", 1)], ids=repr)
    def test_non_dict_entries_raise(self, store: SessionStore, entry: Any) -> None:
        with pytest.raises(InvalidEntryError) as info:
            store.put("agent:main:a", entry)
        assert isinstance(info.value, SessionStoreError)
        assert store.count() == 0
        assert store.get("agent:main:a") is None

    def test_non_string_field_names_raise(self, store: SessionStore) -> None:
        with pytest.raises(InvalidEntryError):
            store.put("agent:main:a", {1: "x"})  # type: ignore[dict-item]
        assert store.count() == 0

    def test_sentinel_and_non_agent_keys_are_stored(self, store: SessionStore) -> None:
        store.put("GLOBAL", e("g", 1))
        store.put("Unknown", e("u", 1))
        store.put("hook:ABC", e("h", 1))
        assert list(store.load_all()) == ["global", "unknown", "hook:abc"]

    def test_keys_are_trimmed_like_javascript(self, store: SessionStore) -> None:
        # spec 3.4: trim() removes U+FEFF (a BOM pasted into a key), Python's strip() does not
        store.put("\ufeffAgent:Main:X\ufeff", e("x", 1))
        assert list(store.load_all()) == ["agent:main:x"]
        assert_same(store.get("agent:main:x"), e("x", 1))
        with pytest.raises(InvalidKeyError):
            store.put("\ufeff", e("y", 1))


class TestLegacyVariants:
    def _variants(self, store: SessionStore) -> None:
        add_raw(store, "Agent:Main:X", e("old", 10, label="old", skillsSnapshot=SNAPSHOT))
        add_raw(store, "AGENT:MAIN:X", e("fresh", 30, label="fresh", counter=1))
        add_raw(store, "agent:main:other", e("o", 5))

    def test_variants_are_stored_as_given_by_mutate(self, store: SessionStore) -> None:
        self._variants(store)
        assert list(store.load_all()) == ["Agent:Main:X", "AGENT:MAIN:X", "agent:main:other"]
        assert store.count() == 3

    def test_get_finds_the_freshest_variant(self, store: SessionStore) -> None:
        self._variants(store)
        assert_same(store.get("agent:main:x"), e("fresh", 30, label="fresh", counter=1))
        assert_same(store.get(" Agent:Main:X"), e("fresh", 30, label="fresh", counter=1))
        add_raw(store, "agent:main:x", e("canon", 20))
        assert store.get("agent:main:x")["sessionId"] == "fresh"  # type: ignore[index]
        add_raw(store, "agent:main:x", e("canon", 30))  # a tie: the canonical key wins
        assert store.get("agent:main:x")["sessionId"] == "canon"  # type: ignore[index]

    def test_put_folds_every_variant_into_the_canonical_key(self, store: SessionStore) -> None:
        self._variants(store)
        store.put("Agent:main:x", e("new", 1))
        assert list(store.load_all()) == ["agent:main:other", "agent:main:x"]
        assert store.count() == 2
        assert_same(store.get("agent:main:x"), e("new", 1))
        assert keys_of(store.list()) == ["agent:main:other", "agent:main:x"]

    def test_update_merges_into_the_freshest_and_folds(self, store: SessionStore) -> None:
        self._variants(store)
        out = store.update("agent:main:x", {"counter": 2}, preserve_activity=True)
        assert_same(out, e("fresh", 30, label="fresh", counter=2))
        assert list(store.load_all()) == ["agent:main:other", "agent:main:x"]
        assert_same(store.get("agent:main:x"), out)
        assert store.count() == 2

    def test_update_keeps_blobs_of_the_folded_variant(self, store: SessionStore) -> None:
        add_raw(store, "Agent:Main:B", e("b", 50, skillsSnapshot=SNAPSHOT))
        add_raw(store, "agent:main:b", e("b0", 10))
        out = store.update("agent:main:b", {"label": "x"}, preserve_activity=True)
        assert_same(out, e("b", 50, skillsSnapshot=SNAPSHOT, label="x"))
        assert_same(store.get("agent:main:b"), out)
        assert_same(store.load_all(), {"agent:main:b": out})
        with reopen(store) as again:
            assert_same(again.get("agent:main:b"), out)

    def test_delete_removes_every_variant(self, store: SessionStore) -> None:
        self._variants(store)
        add_raw(store, "agent:main:x", e("canon", 1))
        assert store.delete("AGENT:main:X") is True
        assert list(store.load_all()) == ["agent:main:other"]
        assert store.count() == 1
        assert store.get("agent:main:x") is None

    def test_delete_of_only_variants(self, store: SessionStore) -> None:
        self._variants(store)
        assert store.delete("agent:main:x") is True
        assert list(store.load_all()) == ["agent:main:other"]


# --- mutate --------------------------------------------------------------------------------


class TestMutate:
    def test_add_change_delete_in_place(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, counter=1))
        store.put("agent:main:b", e("b", 2))
        store.put("agent:main:c", e("c", 3, skillsSnapshot=SNAPSHOT))
        seen: dict[str, Any] = {}

        def fn(s: dict[str, Any]) -> str:
            seen.update(s)
            s["agent:main:a"]["counter"] += 1
            del s["agent:main:b"]
            s["agent:main:d"] = e("d", 4)
            return "result"

        assert store.mutate(fn) == "result"
        assert_same(seen["agent:main:c"], e("c", 3, skillsSnapshot=SNAPSHOT))
        assert_same(
            store.load_all(),
            {
                "agent:main:a": e("a", 1, counter=2),
                "agent:main:c": e("c", 3, skillsSnapshot=SNAPSHOT),
                "agent:main:d": e("d", 4),
            },
        )
        assert store.count() == 3
        assert keys_of(store.list()) == ["agent:main:d", "agent:main:c", "agent:main:a"]

    def test_exception_inside_fn_saves_nothing(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1))
        before = disk_state(store)
        expected = store.load_all()

        class Boom(Exception):
            pass

        def fn(s: dict[str, Any]) -> None:
            s["agent:main:a"]["label"] = "changed"
            s["agent:main:new"] = e("n", 1)
            del s["agent:main:a"]
            raise Boom

        with pytest.raises(Boom):
            store.mutate(fn)
        assert disk_state(store) == before
        assert_same(store.load_all(), expected)
        assert store.count() == 1
        store.put("agent:main:b", e("b", 1))  # lock released, store usable
        assert store.count() == 2

    def test_acp_dropped_by_fn_is_put_back(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, acp=ACP))
        store.put("agent:main:b", e("b", 1, acp=ACP))
        store.put("agent:main:c", e("c", 1, acp=ACP))

        def fn(s: dict[str, Any]) -> None:
            del s["agent:main:a"]["acp"]
            s["agent:main:b"] = e("b", 2)  # replaced whole, without acp
            del s["agent:main:c"]  # deleted entries stay deleted

        store.mutate(fn)
        assert_same(store.get("agent:main:a"), e("a", 1, acp=ACP))
        assert_same(store.get("agent:main:b"), e("b", 2, acp=ACP))
        assert store.get("agent:main:c") is None

    def test_changed_acp_is_kept(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, acp=ACP))
        store.mutate(lambda s: s["agent:main:a"].__setitem__("acp", {"state": "error"}))
        assert_same(store.get("agent:main:a"), e("a", 1, acp={"state": "error"}))

    def test_entries_written_by_mutate_are_normalised(self, store: SessionStore) -> None:
        def fn(s: dict[str, Any]) -> None:
            s["agent:main:a"] = e("a", 1, lastChannel=" Teams ", model=" m ", modelProvider="")

        store.mutate(fn)
        assert_same(
            store.get("agent:main:a"),
            e("a", 1, lastChannel="msteams", model="m", deliveryContext={"channel": "msteams"}),
        )

    def test_noop_mutate_writes_nothing(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, skillsSnapshot=SNAPSHOT))
        before = disk_state(store)
        assert store.mutate(lambda s: len(s)) == 1
        assert disk_state(store) == before

    @pytest.mark.parametrize("value", ["text", None, 5, ["a"]], ids=repr)
    def test_non_dict_entry_raises_and_saves_nothing(self, store: SessionStore, value: Any) -> None:
        store.put("agent:main:a", e("a", 1))
        before = disk_state(store)

        def fn(s: dict[str, Any]) -> None:
            s["agent:main:b"] = value

        with pytest.raises(InvalidEntryError):
            store.mutate(fn)
        assert disk_state(store) == before
        assert store.count() == 1
        assert list(store.load_all()) == ["agent:main:a"]


# --- list ----------------------------------------------------------------------------------


LIST_ENTRIES: dict[str, dict[str, Any]] = {
    "agent:main:main": e("s-main", 1000, displayName="Home Base", lastChannel="webchat"),
    "agent:main:telegram:direct:1": e("s-tg", 2000),
    "agent:main:discord:channel:c1": e(
        "s-dc", 3000, channel="Discord", lastChannel="slack", subject="Friends Of Claw"
    ),
    "agent:ops:slack:group:g1": e(
        "s-ops",
        4000,
        lastChannel="Teams",
        lastTo="c1",
        lastAccountId="Work",
        lastThreadId=9,
        label="ops room",
        displayName="Ops",
        status="done",
        model="gpt-5",
        modelProvider="openai",
        totalTokens=10,
        inputTokens=7,
        outputTokens=3,
        spawnedBy="agent:main:main",
        skillsSnapshot=SNAPSHOT,
    ),
    "agent:main:subagent:x": e(
        "Sub-XYZ", 5000, parentSessionKey="agent:main:main", label="worker", chatType="group"
    ),
    "agent:main:cron:job1": e("s-cron", 6000),
    "agent:main:cron:job1:run:abc": e("s-run", 7000),
    "global": e("s-global", 8000),
    "unknown": e("s-unknown", 500),
}
LISTED = [
    "agent:main:cron:job1",
    "agent:main:subagent:x",
    "agent:ops:slack:group:g1",
    "agent:main:discord:channel:c1",
    "agent:main:telegram:direct:1",
    "agent:main:main",
]


@pytest.fixture
def listed(store: SessionStore) -> SessionStore:
    for key, entry in LIST_ENTRIES.items():
        store.put(key, entry)
    return store


class TestList:
    def test_newest_first(self, store: SessionStore) -> None:
        for i, ts in enumerate([30, 10, 50, 20, 40]):
            store.put(f"agent:main:k{i}", e(f"s{i}", ts))
        assert [r["updatedAt"] for r in store.list().rows] == [50, 40, 30, 20, 10]

    def test_unfiltered_list_checks_its_arguments(self, store: SessionStore) -> None:
        for i in range(3):
            store.put(f"agent:main:k{i}", e(f"s{i}", 10 + i))
        assert keys_of(store.list(limit=2.9)) == ["agent:main:k2", "agent:main:k1"]
        assert len(store.list(limit=MAX_SAFE_INTEGER)) == 3
        store.put("agent:main:k3", e("s3", 20))
        # the same page size again: a fresh read, not the previous answer
        assert keys_of(store.list(limit=2)) == ["agent:main:k3", "agent:main:k2"]
        bad: list[dict[str, Any]] = [
            {"include_global": 0},
            {"include_global": None},
            {"include_unknown": 1},
            {"limit": MAX_SAFE_INTEGER + 1},
            {"limit": 2.0**53},
        ]
        for args in bad:
            with pytest.raises(InvalidArgumentError):
                store.list(**args)

    def test_rows_of_keys_without_an_agent_carry_the_stores_agent(
        self, store: SessionStore
    ) -> None:
        store.put("discord:group:x", e("a", 3))
        store.put("agent:ops:main", e("b", 2))
        store.put("legacy-key", e("c", 1))
        rows = store.list().rows
        assert [(r["key"], r["agentId"]) for r in rows] == [
            ("discord:group:x", "main"),
            ("agent:ops:main", "ops"),
            ("legacy-key", "main"),
        ]
        assert [r["agentId"] for r in store.list(limit=2).rows] == ["main", "ops"]

    def test_default_hides_sentinels_and_cron_runs(self, listed: SessionStore) -> None:
        assert keys_of(listed.list()) == LISTED
        assert listed.count() == len(LIST_ENTRIES)
        assert listed.get("agent:main:cron:job1:run:abc") == e("s-run", 7000)

    def test_include_global_and_unknown(self, listed: SessionStore) -> None:
        assert keys_of(listed.list(include_global=True)) == ["global", *LISTED]
        assert keys_of(listed.list(include_unknown=True)) == [*LISTED, "unknown"]
        both = keys_of(listed.list(include_global=True, include_unknown=True))
        assert both == ["global", *LISTED, "unknown"]
        assert "agent:main:cron:job1:run:abc" not in both

    def test_row_shape(self, listed: SessionStore) -> None:
        rows = {r["key"]: r for r in listed.list(include_global=True, include_unknown=True)}
        for row in rows.values():
            assert set(row) == ROW_FIELDS
        assert_row(
            rows["agent:ops:slack:group:g1"],
            {
                "key": "agent:ops:slack:group:g1",
                "agentId": "ops",
                "kind": "group",
                "sessionId": "s-ops",
                "updatedAt": 4000,
                "channel": "msteams",
                "lastChannel": "msteams",
                "lastTo": "c1",
                "lastAccountId": "work",
                "lastThreadId": 9,
                "label": "ops room",
                "displayName": "Ops",
                "status": "done",
                "model": "gpt-5",
                "modelProvider": "openai",
                "totalTokens": 10,
                "inputTokens": 7,
                "outputTokens": 3,
                "messageCount": None,
                "spawnedBy": "agent:main:main",
                "parentSessionKey": None,
            },
        )
        assert_row(
            rows["agent:main:telegram:direct:1"],
            {
                **dict.fromkeys(ROW_FIELDS),
                "key": "agent:main:telegram:direct:1",
                "agentId": "main",
                "kind": "direct",
                "sessionId": "s-tg",
                "updatedAt": 2000,
                "channel": "telegram",
            },
        )
        kinds = {k: r["kind"] for k, r in rows.items()}
        assert kinds == {
            "global": "global",
            "unknown": "unknown",
            "agent:main:cron:job1": "direct",
            "agent:main:subagent:x": "group",  # chatType group
            "agent:ops:slack:group:g1": "group",
            "agent:main:discord:channel:c1": "group",
            "agent:main:telegram:direct:1": "direct",
            "agent:main:main": "direct",
        }
        assert rows["global"]["agentId"] == "main"

    def test_agent_id_filter(self, listed: SessionStore) -> None:
        assert keys_of(listed.list(agent_id="ops")) == ["agent:ops:slack:group:g1"]
        assert keys_of(listed.list(agent_id=" OPS ")) == ["agent:ops:slack:group:g1"]
        main = [k for k in LISTED if k.startswith("agent:main:")]
        assert keys_of(listed.list(agent_id="main", include_global=True)) == main
        assert keys_of(listed.list(agent_id="nobody")) == []

    @pytest.mark.parametrize(
        ("channel", "expected"),
        [
            ("telegram", ["agent:main:telegram:direct:1"]),  # parsed from the key
            ("discord", ["agent:main:discord:channel:c1"]),  # entry channel beats lastChannel
            ("DISCORD", ["agent:main:discord:channel:c1"]),
            ("slack", []),  # lastChannel (Teams) beats the key's channel
            ("msteams", ["agent:ops:slack:group:g1"]),
            ("Teams", ["agent:ops:slack:group:g1"]),  # the parameter is de-aliased
            ("webchat", ["agent:main:main"]),
            ("irc", []),
        ],
    )
    def test_channel_filter(self, listed: SessionStore, channel: str, expected: list[str]) -> None:
        assert keys_of(listed.list(channel=channel)) == expected

    def test_channel_from_key_shapes(self, store: SessionStore) -> None:
        store.put("agent:main:telegram:default:direct:7", e("a", 3))
        store.put("agent:main:whatsapp:group:120363@g.us", e("b", 2))
        store.put("agent:main:direct:peer", e("c", 1))
        assert keys_of(store.list(channel="telegram")) == ["agent:main:telegram:default:direct:7"]
        assert keys_of(store.list(channel="whatsapp")) == ["agent:main:whatsapp:group:120363@g.us"]
        rows = {r["key"]: r for r in store.list()}
        assert rows["agent:main:direct:peer"]["channel"] is None

    def test_label_filter(self, listed: SessionStore) -> None:
        assert keys_of(listed.list(label="ops room")) == ["agent:ops:slack:group:g1"]
        assert keys_of(listed.list(label="  ops room ")) == ["agent:ops:slack:group:g1"]
        assert keys_of(listed.list(label="Ops Room")) == []
        assert keys_of(listed.list(label="ops")) == []

    @pytest.mark.parametrize(
        ("search", "expected"),
        [
            ("home", ["agent:main:main"]),  # displayName
            ("  FRIENDS of ", ["agent:main:discord:channel:c1"]),  # subject
            ("sub-xyz", ["agent:main:subagent:x"]),  # sessionId
            ("WORKER", ["agent:main:subagent:x"]),  # label
            ("ops room", ["agent:ops:slack:group:g1"]),
            ("telegram:DIRECT", ["agent:main:telegram:direct:1"]),  # key
            ("s-run", []),  # cron runs stay hidden
            ("nothing-matches", []),
        ],
    )
    def test_search(self, listed: SessionStore, search: str, expected: list[str]) -> None:
        assert keys_of(listed.list(search=search)) == expected

    def test_spawned_by(self, listed: SessionStore) -> None:
        assert keys_of(listed.list(spawned_by="agent:main:main")) == [
            "agent:main:subagent:x",
            "agent:ops:slack:group:g1",
        ]
        assert keys_of(listed.list(spawned_by="agent:main:other")) == []

    def test_filters_combine(self, listed: SessionStore) -> None:
        assert keys_of(listed.list(spawned_by="agent:main:main", agent_id="main")) == [
            "agent:main:subagent:x"
        ]
        assert keys_of(listed.list(label="worker", channel="telegram")) == []

    def test_active_minutes(self, store: SessionStore) -> None:
        now = now_ms()
        store.put("agent:main:recent", e("a", now - 5 * 60_000))
        store.put("agent:main:half", e("b", now - 30 * 60_000))
        store.put("agent:main:old", e("c", now - 120 * 60_000))
        assert keys_of(store.list(active_minutes=10)) == ["agent:main:recent"]
        assert keys_of(store.list(active_minutes=60)) == ["agent:main:recent", "agent:main:half"]
        assert len(store.list(active_minutes=24 * 60)) == 3
        for bad in (0, -5, True, "10"):
            with pytest.raises(InvalidArgumentError):
                store.list(active_minutes=bad)  # type: ignore[arg-type]

    def test_entries_without_updated_at_sort_last(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 5))
        add_raw(store, "agent:main:b", {"sessionId": "b"})
        rows = store.list().rows
        assert [r["key"] for r in rows] == ["agent:main:a", "agent:main:b"]
        assert rows[1]["updatedAt"] is None

    def test_row_message_count_follows_the_entry(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1, messageCount=5))
        assert store.list().rows[0]["messageCount"] == 5
        store.update("agent:main:a", {"messageCount": 6}, preserve_activity=True)
        assert store.list().rows[0]["messageCount"] == 6
        store.update("agent:main:a", {"messageCount": None}, preserve_activity=True)
        assert store.list().rows[0]["messageCount"] is None
        store.mutate(lambda s: s["agent:main:a"].__setitem__("messageCount", 9))
        assert store.list().rows[0]["messageCount"] == 9
        store.put("agent:main:a", e("a", 1, messageCount="not a number"))
        assert store.list().rows[0]["messageCount"] is None

    def test_rows_carry_no_blobs(self, listed: SessionStore) -> None:
        for row in listed.list():
            assert "skillsSnapshot" not in row
            assert "deliveryContext" not in row

    def _paged(self, store: SessionStore, limit: int, **filters: Any) -> list[str]:
        keys: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = store.list(limit=limit, cursor=cursor, **filters)
            assert len(page.rows) <= limit
            keys += keys_of(page)
            pages += 1
            assert pages <= 100
            if page.next_cursor is None:
                return keys
            assert len(page.rows) == limit
            cursor = page.next_cursor

    def test_pagination_with_ties(self, store: SessionStore) -> None:
        expected = []
        for i in range(23):
            key = f"agent:main:p{(i * 7) % 23:02d}"
            store.put(key, e(f"s{i}", 1000 + i // 4))  # groups of 4 share an updatedAt
            expected.append((1000 + i // 4, key))
        order = [k for _, k in sorted(expected, reverse=True)]
        assert keys_of(store.list()) == order
        for limit in (1, 4, 5, 22, 23, 50):
            got = self._paged(store, limit)
            assert got == order, f"limit {limit}"
        assert store.list(limit=23).next_cursor is None
        assert store.list(limit=22).next_cursor is not None

    def test_pagination_with_filters_and_sentinels(self, listed: SessionStore) -> None:
        full = keys_of(listed.list(include_global=True, include_unknown=True))
        assert self._paged(listed, 2, include_global=True, include_unknown=True) == full
        assert self._paged(listed, 1, agent_id="main") == keys_of(listed.list(agent_id="main"))

    def test_cursor_is_stable_when_newer_rows_arrive(self, store: SessionStore) -> None:
        for i in range(10):
            store.put(f"agent:main:k{i}", e(f"s{i}", 100 + i))
        first = store.list(limit=4)
        assert keys_of(first) == [f"agent:main:k{i}" for i in (9, 8, 7, 6)]
        store.put("agent:main:newest", e("n", 10_000))
        store.delete("agent:main:k9")
        rest = store.list(limit=100, cursor=first.next_cursor)
        assert keys_of(rest) == [f"agent:main:k{i}" for i in (5, 4, 3, 2, 1, 0)]

    @pytest.mark.parametrize(
        "cursor",
        [
            "not a cursor!!",
            "",
            "e30",  # base64 of {}
            base64.urlsafe_b64encode(b'["x","k"]').decode(),
            base64.urlsafe_b64encode(b"[1]").decode(),
            base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        ],
    )
    def test_bad_cursor_raises(self, store: SessionStore, cursor: str) -> None:
        store.put("agent:main:a", e("a", 1))
        with pytest.raises(InvalidArgumentError):
            store.list(limit=1, cursor=cursor)

    @pytest.mark.parametrize("limit", [0, -1, True, "5", float("nan")], ids=repr)
    def test_bad_limit_raises(self, store: SessionStore, limit: Any) -> None:
        with pytest.raises(InvalidArgumentError):
            store.list(limit=limit)


# --- closing -------------------------------------------------------------------------------


class TestClose:
    def test_use_after_close_raises(self, store: SessionStore) -> None:
        store.put("agent:main:a", e("a", 1))
        store.close()
        ops: list[Callable[[], object]] = [
            lambda: store.get("agent:main:a"),
            lambda: store.put("agent:main:a", e("a", 2)),
            lambda: store.update("agent:main:a", {"x": 1}),
            lambda: store.delete("agent:main:a"),
            store.count,
            store.load_all,
            store.list,
            lambda: store.mutate(lambda s: None),
        ]
        for op in ops:
            with pytest.raises(StoreClosedError):
                op()
        store.close()  # idempotent

    def test_context_manager_closes(self, store: SessionStore) -> None:
        with reopen(store) as other:
            other.put("agent:main:a", e("a", 1))
        with pytest.raises(StoreClosedError):
            other.get("agent:main:a")
        assert store.get("agent:main:a") == e("a", 1)


# --- sessions.json only --------------------------------------------------------------------


@pytest.fixture
def json_store(state_dir: Path) -> Any:
    s = sessionstore.open_store(agent="main", state_dir=state_dir, store_type="json")
    yield s
    s.close()


def json_path(state_dir: Path) -> Path:
    path = state_dir / "agents" / "main" / "sessions" / "sessions.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class TestJsonLegacyLoad:
    def test_legacy_fields_are_migrated_on_load(self, state_dir: Path) -> None:
        path = json_path(state_dir)
        path.write_text(
            json.dumps(
                {
                    "agent:main:a": {
                        "sessionId": "a",
                        "updatedAt": 1,
                        "provider": "telegram",
                        "lastProvider": "Telegram",
                        "room": "#general",
                    },
                    "agent:main:b": {
                        "sessionId": "b",
                        "updatedAt": 2,
                        "provider": "slack",
                        "channel": "discord",
                        "room": "#x",
                        "groupChannel": "#kept",
                    },
                }
            )
        )
        with sessionstore.open_store(agent="main", state_dir=state_dir, store_type="json") as s:
            a = s.get("agent:main:a")
            assert a is not None
            assert (a["channel"], a["lastChannel"], a["groupChannel"]) == (
                "telegram",
                "telegram",
                "#general",
            )
            assert "provider" not in a and "lastProvider" not in a and "room" not in a
            b = s.get("agent:main:b")
            assert b is not None
            assert (b["channel"], b["provider"], b["groupChannel"]) == ("discord", "slack", "#kept")
            assert "room" not in b
            assert s.load_all()["agent:main:a"] == a
            assert keys_of(s.list(channel="telegram")) == ["agent:main:a"]


class TestJsonFile:
    @pytest.mark.parametrize(
        ("content", "line"),
        [
            (b'{\n  "agent:main:a": {"sessionId": "a", "updatedAt": 1},\n  oops\n}', 3),
            (b'{"agent:main:a": {"sessionId": "a"', 1),
            (b'"just a string"', 1),
            (b"[1, 2]", 1),
            (b'[{"sessionId": "a"}]', 1),
            (b"42", 1),
            (b"null", 1),
        ],
    )
    def test_corrupt_file_raises_and_is_left_untouched(
        self, state_dir: Path, content: bytes, line: int
    ) -> None:
        path = json_path(state_dir)
        path.write_bytes(content)
        with sessionstore.open_store(agent="main", state_dir=state_dir, store_type="json") as s:
            with pytest.raises(CorruptStoreError) as info:
                s.get("agent:main:a")
            assert info.value.path == str(path)
            assert info.value.line == line
            ops: list[Callable[[], object]] = [
                lambda: s.put("agent:main:a", e("a", 1)),
                lambda: s.update("agent:main:a", {"x": 1}, create=True),
                lambda: s.delete("agent:main:a"),
                lambda: s.mutate(lambda store: store.clear()),
                s.count,
                s.load_all,
                s.list,
            ]
            for op in ops:
                with pytest.raises(CorruptStoreError):
                    op()
        assert path.read_bytes() == content
        assert sorted(p.name for p in path.parent.iterdir()) == ["sessions.json"]

    @pytest.mark.parametrize("content", [b"", b"  \n", b"[]", b"{}"])
    def test_empty_file_and_empty_array_are_an_empty_store(
        self, state_dir: Path, content: bytes
    ) -> None:
        path = json_path(state_dir)
        path.write_bytes(content)
        with sessionstore.open_store(agent="main", state_dir=state_dir, store_type="json") as s:
            assert s.count() == 0
            assert s.get("agent:main:a") is None
            assert s.load_all() == {}
            s.put("agent:main:a", e("a", 1))
        assert json.loads(path.read_bytes()) == {"agent:main:a": e("a", 1)}

    def test_file_layout(self, json_store: SessionStore) -> None:
        json_store.put(
            "agent:main:b",
            e(
                "b",
                2,
                nested={"z": [], "a": {}, "l": [1, "é", None, True]},
                text="\u00e9\U0001f600",
            ),
        )
        json_store.put("agent:main:a", e("a", 1, quote='say "hi"\n\ttab\x01'))
        path = json_store.paths.json_path
        raw = path.read_bytes()
        expected = json.dumps(json_store.load_all(), indent=2, ensure_ascii=False).encode("utf-8")
        assert raw == expected
        assert not raw.endswith(b"\n")
        assert raw.startswith(b'{\n  "agent:main:b": {\n    "sessionId": "b",\n')
        assert list(json.loads(raw)) == ["agent:main:b", "agent:main:a"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not (path.parent / "sessions.json.lock").exists()
        assert [p.name for p in path.parent.iterdir()] == ["sessions.json"]

    def test_mode_is_0600_even_with_a_permissive_umask(self, json_store: SessionStore) -> None:
        old = os.umask(0)
        try:
            json_store.put("agent:main:a", e("a", 1))
        finally:
            os.umask(old)
        assert stat.S_IMODE(json_store.paths.json_path.stat().st_mode) == 0o600

    def test_no_write_when_nothing_changed(self, json_store: SessionStore) -> None:
        path = json_store.paths.json_path
        json_store.put("agent:main:a", e("a", 1, label="x", skillsSnapshot=SNAPSHOT))
        first = path.stat()
        raw = path.read_bytes()

        def unchanged() -> None:
            st = path.stat()
            assert (st.st_ino, st.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
            assert path.read_bytes() == raw

        json_store.put("agent:main:a", e("a", 1, label="x", skillsSnapshot=SNAPSHOT))
        unchanged()
        json_store.update("agent:main:a", {"label": "x"}, preserve_activity=True)
        unchanged()
        json_store.update("agent:main:a", lambda current: None)
        unchanged()
        json_store.mutate(lambda s: None)
        unchanged()
        json_store.delete("agent:main:missing")
        unchanged()
        json_store.put("agent:main:a", e("a", 1, label="y", skillsSnapshot=SNAPSHOT))
        assert path.stat().st_ino != first.st_ino  # a real change is an atomic replace

    def test_nothing_is_created_before_the_first_write(self, json_store: SessionStore) -> None:
        json_store.get("agent:main:a")
        json_store.update("agent:main:a", {"x": 1})
        json_store.delete("agent:main:a")
        json_store.list()
        assert not json_store.paths.json_path.exists()

    def test_foreign_edits_are_seen(self, json_store: SessionStore) -> None:
        json_store.put("agent:main:a", e("a", 1))
        path = json_store.paths.json_path
        data = json.loads(path.read_bytes())
        data["agent:main:b"] = e("b", 2)
        data["agent:main:a"]["label"] = "edited by the gateway"
        path.write_text(json.dumps(data, indent=2))
        assert json_store.get("agent:main:a") == e("a", 1, label="edited by the gateway")
        assert json_store.count() == 2
        json_store.update("agent:main:b", {"x": 1})
        assert set(json.loads(path.read_bytes())) == {"agent:main:a", "agent:main:b"}

    def test_unknown_top_level_values_survive_writes(self, state_dir: Path) -> None:
        path = json_path(state_dir)
        path.write_text(json.dumps({"agent:main:a": e("a", 1), "weird": "not an entry"}))
        with sessionstore.open_store(agent="main", state_dir=state_dir, store_type="json") as s:
            assert s.count() == 1
            assert list(s.load_all()) == ["agent:main:a"]
            s.put("agent:main:b", e("b", 1))
        assert json.loads(path.read_bytes())["weird"] == "not an entry"


# --- sessions.sqlite only ------------------------------------------------------------------


@pytest.fixture
def sqlite_store(state_dir: Path) -> Any:
    s = sessionstore.open_store(agent="main", state_dir=state_dir, store_type="sqlite")
    yield s
    s.close()


PR_DDL = """
CREATE TABLE IF NOT EXISTS sessions (
  session_key TEXT PRIMARY KEY, session_id TEXT NOT NULL, updated_at INTEGER NOT NULL,
  created_at INTEGER, channel TEXT, last_channel TEXT, last_to TEXT, last_account_id TEXT,
  last_thread_id TEXT, label TEXT, display_name TEXT, status TEXT, model TEXT, model_provider TEXT,
  total_tokens INTEGER, input_tokens INTEGER, output_tokens INTEGER, message_count INTEGER,
  archived INTEGER DEFAULT 0, entry_json TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_sessions_updated_at   ON sessions(updated_at);
CREATE INDEX IF NOT EXISTS idx_sessions_channel      ON sessions(channel);
CREATE INDEX IF NOT EXISTS idx_sessions_status       ON sessions(status);
CREATE INDEX IF NOT EXISTS idx_sessions_last_channel ON sessions(last_channel);
CREATE INDEX IF NOT EXISTS idx_sessions_archived     ON sessions(archived);
"""


def pr_insert(conn: apsw.Connection, key: str, entry: dict[str, Any]) -> None:
    """Insert a row as PR #58550's ``bindSessionEntry`` did."""
    thread = entry.get("lastThreadId")
    conn.execute(
        "INSERT INTO sessions (session_key, session_id, updated_at, created_at, channel,"
        " last_channel, last_to, last_account_id, last_thread_id, label, display_name, status,"
        " model, model_provider, total_tokens, input_tokens, output_tokens, message_count,"
        " archived, entry_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            key,
            entry["sessionId"],
            entry["updatedAt"],
            entry.get("startedAt"),
            entry.get("channel"),
            entry.get("lastChannel"),
            entry.get("lastTo"),
            entry.get("lastAccountId"),
            None if thread is None else str(thread),
            entry.get("label"),
            entry.get("displayName"),
            entry.get("status"),
            entry.get("model"),
            entry.get("modelProvider"),
            entry.get("totalTokens"),
            entry.get("inputTokens"),
            entry.get("outputTokens"),
            None,
            0,
            json.dumps(entry, separators=(",", ":")),
        ),
    )


def blob_rows(store: SessionStore) -> int:
    conn = store.index.connection()  # type: ignore[attr-defined]
    return int(conn.execute("SELECT count(*) FROM blobs").fetchall()[0][0])


class TestSqliteFile:
    def test_file_and_dir_modes(self, sqlite_store: SessionStore) -> None:
        sqlite_store.put("agent:main:a", e("a", 1))
        path = sqlite_store.paths.sqlite_path
        assert path.name == "sessions.sqlite"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                assert stat.S_IMODE(side.stat().st_mode) == 0o600
        assert not sqlite_store.paths.json_path.exists()

    def test_pr_58550_database_is_upgraded_in_place(self, state_dir: Path) -> None:
        sessions_dir = state_dir / "agents" / "main" / "sessions"
        sessions_dir.mkdir(parents=True)
        db = sessions_dir / "sessions.sqlite"
        entries = {
            "agent:main:telegram:direct:1": e(
                "s1",
                1000,
                lastChannel="telegram",
                lastTo="1",
                lastThreadId=42,
                deliveryContext={"channel": "telegram", "to": "1", "threadId": 42},
                label="dm",
                skillsSnapshot=SNAPSHOT,
                totalTokens=100,
            ),
            "agent:main:slack:channel:c1": e(
                "s2",
                3000,
                channel="slack",
                lastChannel="slack",
                lastThreadId="1712345678.000100",
                deliveryContext={"channel": "slack", "threadId": "1712345678.000100"},
                origin={"label": "#general"},
            ),
            "agent:main:main": e("s3", 2000, model="gpt-5", modelProvider="openai", counter=1),
        }
        conn = apsw.Connection(str(db))
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute(PR_DDL).fetchall()
        for key, entry in entries.items():
            pr_insert(conn, key, entry)
        conn.close()

        with sessionstore.open_store(agent="main", state_dir=state_dir) as s:  # auto
            assert s.store_type == "sqlite"
            assert s.count() == 3
            for key, entry in entries.items():
                assert_same(s.get(key), entry)
            assert_same(s.get("agent:main:telegram:direct:1")["lastThreadId"], 42)  # type: ignore[index]
            assert keys_of(s.list()) == [
                "agent:main:slack:channel:c1",
                "agent:main:main",
                "agent:main:telegram:direct:1",
            ]
            rows = {r["key"]: r for r in s.list()}
            assert_same(rows["agent:main:telegram:direct:1"]["lastThreadId"], 42)
            assert_same(rows["agent:main:telegram:direct:1"]["totalTokens"], 100)
            assert keys_of(s.list(channel="slack")) == ["agent:main:slack:channel:c1"]
            assert s.info().backend["schemaVersion"] == SCHEMA_VERSION
            assert blob_rows(s) == 1
            s.put("agent:main:new", e("s4", 4000))
            s.update("agent:main:main", {"counter": 2})
            assert s.count() == 4
        with sessionstore.open_store(agent="main", state_dir=state_dir, store_type="sqlite") as s:
            assert s.count() == 4
            assert_same(
                s.get("agent:main:telegram:direct:1"), entries["agent:main:telegram:direct:1"]
            )
            assert s.get("agent:main:main")["counter"] == 2  # type: ignore[index]

    def test_shared_blobs_are_stored_once(self, sqlite_store: SessionStore) -> None:
        for i in range(50):
            sqlite_store.put(f"agent:main:k{i}", e(f"s{i}", i, skillsSnapshot=SNAPSHOT))
        assert blob_rows(sqlite_store) == 1
        assert_same(sqlite_store.get("agent:main:k7")["skillsSnapshot"], SNAPSHOT)  # type: ignore[index]
        sqlite_store.update("agent:main:k0", {"label": "x"})
        assert blob_rows(sqlite_store) == 1
        other = {**SNAPSHOT, "version": 4}
        sqlite_store.update("agent:main:k1", {"skillsSnapshot": other})
        assert blob_rows(sqlite_store) == 2
        sqlite_store.update("agent:main:k1", {"skillsSnapshot": None})
        assert blob_rows(sqlite_store) == 1
        for i in range(50):
            assert sqlite_store.delete(f"agent:main:k{i}") is True
        assert sqlite_store.count() == 0
        assert blob_rows(sqlite_store) == 0

    def test_blobs_released_by_mutate_and_put(self, sqlite_store: SessionStore) -> None:
        for i in range(5):
            sqlite_store.put(f"agent:main:k{i}", e(f"s{i}", i, skillsSnapshot=SNAPSHOT))
        sqlite_store.put("agent:main:k0", e("s0", 0))
        assert blob_rows(sqlite_store) == 1
        sqlite_store.mutate(lambda s: s.clear())
        assert blob_rows(sqlite_store) == 0
        assert sqlite_store.count() == 0
