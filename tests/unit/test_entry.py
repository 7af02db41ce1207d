"""Unit tests for entry.py: merges, normalisation, legacy migrations, whole-entry replace."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from sessionstore.entry import (
    CHANNEL_ALIASES,
    apply_legacy_migrations,
    load_normalize,
    merge_entry,
    normalize_account_id,
    normalize_channel,
    normalize_entry,
    replace_entry,
    settle_entry,
    sort_time,
)

NOW = 1_700_000_000_000


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


# --- merge_entry: activity -------------------------------------------------------------------


def test_merge_new_entry_gets_uuid_and_now() -> None:
    out = merge_entry(None, {"label": "home"}, now=NOW)
    assert out["label"] == "home"
    assert out["updatedAt"] == NOW
    assert _is_uuid(out["sessionId"])
    other = merge_entry(None, {"label": "home"}, now=NOW)
    assert other["sessionId"] != out["sessionId"]


def test_merge_touch_moves_updated_at_to_now() -> None:
    existing = {"sessionId": "s1", "updatedAt": NOW - 60_000, "label": "a"}
    out = merge_entry(existing, {"label": "b"}, now=NOW)
    assert out == {"sessionId": "s1", "updatedAt": NOW, "label": "b"}


def test_merge_touch_never_moves_updated_at_backwards() -> None:
    existing = {"sessionId": "s1", "updatedAt": NOW + 5_000}
    assert merge_entry(existing, {"x": 1}, now=NOW)["updatedAt"] == NOW + 5_000
    # a patch's own updatedAt counts too, but only when it is the largest
    assert merge_entry(existing, {"updatedAt": NOW + 9_000}, now=NOW)["updatedAt"] == NOW + 9_000
    assert merge_entry(existing, {"updatedAt": 1}, now=NOW)["updatedAt"] == NOW + 5_000


def test_merge_touch_ignores_non_numeric_updated_at() -> None:
    existing = {"sessionId": "s1", "updatedAt": "yesterday"}
    assert merge_entry(existing, {"x": 1}, now=NOW)["updatedAt"] == NOW


def test_merge_preserve_activity_keeps_existing_updated_at() -> None:
    existing = {"sessionId": "s1", "updatedAt": NOW - 60_000}
    out = merge_entry(existing, {"displayName": "Ann"}, preserve_activity=True, now=NOW)
    assert out["updatedAt"] == NOW - 60_000
    assert out["displayName"] == "Ann"
    # even a patch that carries its own updatedAt does not move it
    out2 = merge_entry(existing, {"updatedAt": NOW + 1}, preserve_activity=True, now=NOW)
    assert out2["updatedAt"] == NOW - 60_000


def test_merge_preserve_activity_without_existing_time() -> None:
    existing = {"sessionId": "s1"}
    out = merge_entry(existing, {"updatedAt": 12345}, preserve_activity=True, now=NOW)
    assert out["updatedAt"] == 12345
    out2 = merge_entry(existing, {"label": "x"}, preserve_activity=True, now=NOW)
    assert out2["updatedAt"] == NOW


def test_merge_preserve_activity_on_new_entry_uses_now() -> None:
    out = merge_entry(None, {"label": "x"}, preserve_activity=True, now=NOW)
    assert out["updatedAt"] == NOW


def test_merge_without_now_uses_the_clock() -> None:
    import time

    before = time.time_ns() // 1_000_000
    out = merge_entry({"sessionId": "s", "updatedAt": 1}, {})
    after = time.time_ns() // 1_000_000
    assert before <= out["updatedAt"] <= after


# --- merge_entry: fields ---------------------------------------------------------------------


def test_merge_none_deletes_a_field() -> None:
    existing = {"sessionId": "s1", "updatedAt": 1, "label": "a", "status": "done"}
    out = merge_entry(existing, {"label": None}, now=NOW)
    assert "label" not in out
    assert out["status"] == "done"
    # deleting a field that does not exist is harmless
    assert "nope" not in merge_entry(existing, {"nope": None}, now=NOW)


def test_merge_session_id_from_patch_wins() -> None:
    existing = {"sessionId": "old", "updatedAt": 1}
    assert merge_entry(existing, {"sessionId": "new"}, now=NOW)["sessionId"] == "new"
    assert merge_entry(existing, {"label": "x"}, now=NOW)["sessionId"] == "old"


def test_merge_replaces_nested_objects_whole() -> None:
    existing = {"sessionId": "s", "updatedAt": 1, "origin": {"provider": "telegram", "from": "u"}}
    out = merge_entry(existing, {"origin": {"from": "v"}}, now=NOW)
    assert out["origin"] == {"from": "v"}


def test_merge_none_session_id_or_updated_at_keeps_their_place() -> None:
    # `{...existing, ...patch, sessionId, updatedAt}` (spec 2.3): an undefined sessionId or
    # updatedAt in the patch falls through (`??`) and the key keeps its position.
    existing = {"label": "a", "sessionId": "s1", "updatedAt": 1, "status": "done"}
    out = merge_entry(existing, {"sessionId": None, "updatedAt": None}, now=NOW)
    assert list(out) == ["label", "sessionId", "updatedAt", "status"]
    assert (out["sessionId"], out["updatedAt"]) == ("s1", NOW)
    new = merge_entry(None, {"updatedAt": None, "label": "x"}, now=NOW)
    assert list(new) == ["updatedAt", "label", "sessionId"]


def test_merge_keeps_unknown_fields_and_their_order() -> None:
    existing = {"sessionId": "s", "updatedAt": 1, "zzz": [1, {"a": None}], "custom": True}
    out = merge_entry(existing, {"label": "x"}, now=NOW)
    assert out["zzz"] == [1, {"a": None}]
    assert out["custom"] is True
    assert list(out) == ["sessionId", "updatedAt", "zzz", "custom", "label"]


# --- merge_entry: stale-provider guard -------------------------------------------------------


def _with_model(**extra: Any) -> dict[str, Any]:
    return {"sessionId": "s", "updatedAt": 1, "model": "gpt-5", "modelProvider": "openai", **extra}


def test_stale_provider_dropped_when_model_changes() -> None:
    out = merge_entry(_with_model(), {"model": "claude-opus"}, now=NOW)
    assert out["model"] == "claude-opus"
    assert "modelProvider" not in out


def test_provider_kept_when_model_is_the_same() -> None:
    out = merge_entry(_with_model(), {"model": "gpt-5"}, now=NOW)
    assert out["modelProvider"] == "openai"
    out2 = merge_entry(_with_model(), {"model": "  gpt-5 "}, now=NOW)  # same once trimmed
    assert out2["model"] == "gpt-5"
    assert out2["modelProvider"] == "openai"


def test_provider_from_patch_wins_with_new_model() -> None:
    out = merge_entry(_with_model(), {"model": "claude", "modelProvider": "anthropic"}, now=NOW)
    assert (out["model"], out["modelProvider"]) == ("claude", "anthropic")


def test_patch_without_model_keeps_provider() -> None:
    out = merge_entry(_with_model(), {"label": "x"}, now=NOW)
    assert (out["model"], out["modelProvider"]) == ("gpt-5", "openai")
    out2 = merge_entry(_with_model(), {"modelProvider": "azure"}, now=NOW)
    assert (out2["model"], out2["modelProvider"]) == ("gpt-5", "azure")


def test_deleting_model_drops_orphan_provider() -> None:
    out = merge_entry(_with_model(), {"model": None}, now=NOW)
    assert "model" not in out
    assert "modelProvider" not in out


def test_new_entry_keeps_model_and_provider() -> None:
    out = merge_entry(None, {"model": "gpt-5", "modelProvider": "openai"}, now=NOW)
    assert (out["model"], out["modelProvider"]) == ("gpt-5", "openai")


# --- runtime model fields --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"model": " gpt-5 ", "modelProvider": " openai "},
            {"model": "gpt-5", "modelProvider": "openai"},
        ),
        ({"model": "   ", "modelProvider": "openai"}, {}),
        ({"model": "", "modelProvider": "openai"}, {}),
        ({"model": None, "modelProvider": "openai"}, {}),
        ({"modelProvider": "openai"}, {}),  # orphan provider removed
        ({"model": "gpt-5", "modelProvider": "  "}, {"model": "gpt-5"}),
        ({"model": "gpt-5", "modelProvider": None}, {"model": "gpt-5"}),
        ({"model": "gpt-5"}, {"model": "gpt-5"}),
        ({"model": None}, {}),  # null is blank with or without a provider (spec 7.1)
    ],
)
def test_normalize_runtime_model_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    entry = {"sessionId": "s", "updatedAt": 1, **fields}
    out = normalize_entry(entry)
    assert {k: v for k, v in out.items() if k in ("model", "modelProvider")} == expected


# --- normalize_entry: delivery route ---------------------------------------------------------


def test_channel_only_entry_gains_last_channel_and_delivery_context() -> None:
    entry = {"sessionId": "s", "updatedAt": 1, "channel": "whatsapp"}
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {"channel": "whatsapp"}
    assert out["lastChannel"] == "whatsapp"
    assert out["channel"] == "whatsapp"
    # new fields are appended in OpenClaw's order; existing keys keep their place
    assert list(out) == ["sessionId", "updatedAt", "channel", "deliveryContext", "lastChannel"]


def test_last_fields_are_normalised_and_mirrored() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": " Telegram ",
        "lastTo": " 8123456789 ",
        "lastAccountId": " Work Account ",
        "lastThreadId": " 42 ",
    }
    out = normalize_entry(entry)
    assert out["lastChannel"] == "telegram"
    assert out["lastTo"] == "8123456789"
    assert out["lastAccountId"] == "work-account"
    assert out["lastThreadId"] == "42"
    assert out["deliveryContext"] == {
        "channel": "telegram",
        "to": "8123456789",
        "accountId": "work-account",
        "threadId": "42",
    }
    assert list(out["deliveryContext"]) == ["channel", "to", "accountId", "threadId"]


def test_last_channel_wins_over_channel() -> None:
    entry = {"sessionId": "s", "updatedAt": 1, "channel": "whatsapp", "lastChannel": "telegram"}
    out = normalize_entry(entry)
    assert out["lastChannel"] == "telegram"
    assert out["deliveryContext"] == {"channel": "telegram"}
    assert out["channel"] == "whatsapp"  # the entry's own channel is not rewritten


def test_blank_last_channel_does_not_fall_back_to_channel() -> None:
    # `lastChannel ?? channel`: an empty string is not nullish, so it is used (and dropped)
    entry = {"sessionId": "s", "updatedAt": 1, "channel": "telegram", "lastChannel": ""}
    out = normalize_entry(entry)
    assert "lastChannel" not in out
    assert "deliveryContext" not in out
    assert out["channel"] == "telegram"


def test_delivery_context_alone_fills_last_fields() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "deliveryContext": {"channel": "Slack", "to": "channel:C07ABC", "accountId": "T1"},
    }
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {"channel": "slack", "to": "channel:C07ABC", "accountId": "t1"}
    assert (out["lastChannel"], out["lastTo"], out["lastAccountId"]) == (
        "slack",
        "channel:C07ABC",
        "t1",
    )
    assert "lastThreadId" not in out


def test_same_channel_fills_missing_route_fields_from_delivery_context() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": "telegram",
        "lastThreadId": "   ",  # present but blank: not nullish, normalises to nothing
        "deliveryContext": {"channel": "Telegram", "to": "222", "accountId": "Acc", "threadId": 7},
    }
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {
        "channel": "telegram",
        "to": "222",
        "accountId": "acc",
        "threadId": 7,
    }
    assert (out["lastTo"], out["lastAccountId"], out["lastThreadId"]) == ("222", "acc", 7)


def test_channel_conflict_takes_route_fields_only_from_the_winner() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": "telegram",
        "lastTo": "111",
        "lastThreadId": "   ",
        "deliveryContext": {
            "channel": "discord",
            "to": "chan-9",
            "accountId": "acc",
            "threadId": 9,
        },
    }
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {"channel": "telegram", "to": "111"}
    assert out["lastChannel"] == "telegram"
    assert out["lastTo"] == "111"
    assert "lastAccountId" not in out
    assert "lastThreadId" not in out


def test_channel_conflict_without_winner_to_drops_the_loser_to() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": "telegram",
        "deliveryContext": {"channel": "discord", "to": "chan-9", "accountId": "acc"},
    }
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {"channel": "telegram"}
    assert "lastTo" not in out
    assert "lastAccountId" not in out


def test_alias_does_not_count_as_a_conflict() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": "teams",
        "deliveryContext": {"channel": "msteams", "to": "conv-1"},
    }
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {"channel": "msteams", "to": "conv-1"}
    assert out["lastTo"] == "conv-1"


def test_origin_thread_id_leaks_into_last_thread_id() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "channel": "telegram",
        "origin": {"provider": "telegram", "threadId": 42},
    }
    out = normalize_entry(entry)
    assert out["lastThreadId"] == 42
    assert out["deliveryContext"] == {"channel": "telegram", "threadId": 42}
    assert out["origin"] == {"provider": "telegram", "threadId": 42}


def test_thread_id_precedence_last_then_context_then_origin() -> None:
    base = {"sessionId": "s", "updatedAt": 1, "lastChannel": "slack", "origin": {"threadId": "o"}}
    with_ctx = {**base, "deliveryContext": {"channel": "slack", "threadId": "c"}}
    assert normalize_entry(base)["lastThreadId"] == "o"
    assert normalize_entry(with_ctx)["lastThreadId"] == "c"
    assert normalize_entry({**with_ctx, "lastThreadId": "l"})["lastThreadId"] == "l"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (42, 42),
        (42.9, 42),
        (-3.7, -3),
        (0, 0),
        (" 1712.5 ", "1712.5"),
        ("  ", None),
        (True, None),
        (float("nan"), None),
    ],
)
def test_thread_id_normalisation(raw: object, expected: object) -> None:
    out = normalize_entry(
        {"sessionId": "s", "updatedAt": 1, "lastChannel": "x", "lastThreadId": raw}
    )
    if expected is None:
        assert "lastThreadId" not in out
        assert "threadId" not in out["deliveryContext"]
    else:
        assert out["lastThreadId"] == expected
        assert type(out["lastThreadId"]) is type(expected)
        assert out["deliveryContext"]["threadId"] == expected


def test_blank_to_is_removed() -> None:
    out = normalize_entry({"sessionId": "s", "updatedAt": 1, "lastChannel": "x", "lastTo": "  "})
    assert "lastTo" not in out
    assert out["deliveryContext"] == {"channel": "x"}


def test_non_string_route_fields_are_dropped() -> None:
    out = normalize_entry(
        {"sessionId": "s", "updatedAt": 1, "lastChannel": "x", "lastTo": 5, "lastAccountId": 7}
    )
    assert "lastTo" not in out
    assert "lastAccountId" not in out
    assert out["deliveryContext"] == {"channel": "x"}


def test_entry_without_route_is_returned_as_is() -> None:
    entry = {"sessionId": "s", "updatedAt": 1, "label": "x"}
    assert normalize_entry(entry) is entry


def test_normalised_entry_is_returned_as_is() -> None:
    entry = normalize_entry(
        {
            "sessionId": "s",
            "updatedAt": 1,
            "lastChannel": "Telegram",
            "lastTo": "1",
            "model": " m ",
            "modelProvider": "p",
        }
    )
    assert normalize_entry(entry) is entry


def test_other_fields_in_delivery_context_survive_an_unchanged_route() -> None:
    # upstream compares only channel/to/accountId/threadId of deliveryContext
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": "slack",
        "lastTo": "c1",
        "deliveryContext": {"channel": "slack", "to": "c1", "note": {"k": 1}},
    }
    assert normalize_entry(entry) is entry
    empty_ctx = {"sessionId": "s", "updatedAt": 1, "deliveryContext": {}}
    assert normalize_entry(empty_ctx) is empty_ctx


def test_a_changed_route_rebuilds_delivery_context() -> None:
    entry = {
        "sessionId": "s",
        "updatedAt": 1,
        "lastChannel": "slack",
        "lastTo": " c2 ",
        "deliveryContext": {"channel": "slack", "to": "c1", "note": {"k": 1}},
    }
    out = normalize_entry(entry)
    assert out["deliveryContext"] == {"channel": "slack", "to": "c2"}
    assert out["lastTo"] == "c2"


def test_normalize_entry_is_idempotent_on_messy_input() -> None:
    messy = {
        "sessionId": "s",
        "updatedAt": 1,
        "channel": "IMSG",
        "lastAccountId": "--Work Acc--",
        "origin": {"threadId": 9.5},
        "deliveryContext": {"channel": "imessage", "to": " +15550100 "},
        "model": " x ",
    }
    once = normalize_entry(messy)
    assert normalize_entry(once) == once
    assert once["deliveryContext"] == {
        "channel": "imessage",
        "to": "+15550100",
        "accountId": "work-acc",
        "threadId": 9,
    }


# --- channel aliases and account ids ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("imsg", "imessage"),
        ("IMSG", "imessage"),
        ("gchat", "googlechat"),
        ("google-chat", "googlechat"),
        ("internet-relay-chat", "irc"),
        (" Teams ", "msteams"),
        ("bb", "bluebubbles"),
        ("lark", "feishu"),
        ("nc-talk", "nextcloud-talk"),
        ("nc", "nextcloud-talk"),
        ("twitch-chat", "twitch"),
        ("zl", "zalo"),
        ("zlu", "zalouser"),
        ("webchat", "webchat"),
        ("Telegram", "telegram"),
        ("SomeNewChannel", "somenewchannel"),
        ("\ufeffTeams\u3000", "msteams"),  # JavaScript's trim() removes U+FEFF (spec 7.1)
        ("   ", None),
        ("", None),
        (None, None),
        (5, None),
    ],
)
def test_normalize_channel(raw: object, expected: str | None) -> None:
    assert normalize_channel(raw) == expected


def test_every_alias_applies_inside_an_entry() -> None:
    for alias, target in CHANNEL_ALIASES.items():
        out = normalize_entry({"sessionId": "s", "updatedAt": 1, "lastChannel": alias.upper()})
        assert out["lastChannel"] == target
        assert out["deliveryContext"] == {"channel": target}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("default", "default"),
        (" Work ", "work"),
        ("Work Account", "work-account"),
        ("a.b@c", "a-b-c"),
        ("--x--", "x"),
        ("_team", "_team"),
        ("!!!", None),
        ("   ", None),
        ("", None),
        (None, None),
        (12, None),
        ("A" * 70, "a" * 64),
        ("a" * 64, "a" * 64),
    ],
)
def test_normalize_account_id(raw: object, expected: str | None) -> None:
    assert normalize_account_id(raw) == expected


def test_unusable_account_id_is_removed_from_entry() -> None:
    out = normalize_entry(
        {"sessionId": "s", "updatedAt": 1, "lastChannel": "x", "lastAccountId": "!!!"}
    )
    assert "lastAccountId" not in out
    assert "accountId" not in out["deliveryContext"]


# --- legacy migrations (spec 7.1 step 2) -----------------------------------------------------


def test_provider_becomes_channel() -> None:
    out = apply_legacy_migrations({"sessionId": "s", "provider": "telegram"})
    assert out == {"sessionId": "s", "channel": "telegram"}


def test_provider_and_channel_both_present_leaves_provider_in_place() -> None:
    entry = {"sessionId": "s", "provider": "telegram", "channel": "whatsapp"}
    out = apply_legacy_migrations(entry)
    assert out == {"sessionId": "s", "provider": "telegram", "channel": "whatsapp"}


def test_provider_replaces_a_non_string_channel() -> None:
    out = apply_legacy_migrations({"provider": "slack", "channel": None})
    assert out == {"channel": "slack"}


def test_non_string_provider_is_left_alone() -> None:
    assert apply_legacy_migrations({"provider": 5}) == {"provider": 5}


def test_last_provider_becomes_last_channel() -> None:
    assert apply_legacy_migrations({"lastProvider": "discord"}) == {"lastChannel": "discord"}
    both = {"lastProvider": "discord", "lastChannel": "slack"}
    assert apply_legacy_migrations(both) == both


def test_room_becomes_group_channel() -> None:
    assert apply_legacy_migrations({"room": "#general"}) == {"groupChannel": "#general"}


@pytest.mark.parametrize(
    "entry",
    [
        {"room": "#general", "groupChannel": "#random"},
        {"room": 5},
        {"room": None},
        {"room": {"id": "r"}, "groupChannel": "#random"},
    ],
)
def test_room_is_always_deleted(entry: dict[str, Any]) -> None:
    out = apply_legacy_migrations(entry)
    assert "room" not in out
    if "groupChannel" in entry:
        assert out["groupChannel"] == entry["groupChannel"]


def test_all_legacy_fields_at_once() -> None:
    out = apply_legacy_migrations(
        {"sessionId": "s", "provider": "telegram", "lastProvider": "telegram", "room": "r"}
    )
    assert out == {
        "sessionId": "s",
        "channel": "telegram",
        "lastChannel": "telegram",
        "groupChannel": "r",
    }


def test_entry_without_legacy_fields_is_returned_as_is() -> None:
    entry = {"sessionId": "s", "channel": "x"}
    assert apply_legacy_migrations(entry) is entry


def test_load_keeps_last_provider_when_the_file_has_a_string_last_channel() -> None:
    # Read from a file, the load migrates first: a blank but string lastChannel keeps
    # lastProvider; the load drops the blank, and the next save fills it from channel.
    raw = {"sessionId": "s", "updatedAt": 1, "channel": "slack", "lastChannel": ""}
    out = load_normalize({**raw, "lastProvider": "discord"})
    assert out["lastProvider"] == "discord"
    assert (out["lastChannel"], out["deliveryContext"]) == ("slack", {"channel": "slack"})
    assert settle_entry(out) == out


def test_load_normalize_migrates_then_normalises() -> None:
    out = load_normalize({"sessionId": "s", "updatedAt": 1, "lastProvider": "Teams"})
    assert out["lastChannel"] == "msteams"
    assert out["deliveryContext"] == {"channel": "msteams"}
    assert "lastProvider" not in out


# --- legacy fields at the write boundary -----------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"provider": "Teams", "room": "#g"},
            {
                "groupChannel": "#g",
                "channel": "Teams",
                "deliveryContext": {"channel": "msteams"},
                "lastChannel": "msteams",
            },
        ),
        # upstream saves first (the route comes from channel), then the next load migrates:
        # lastChannel is then a string, so lastProvider stays (spec 5.2, 5.1, 7.1)
        (
            {"channel": "slack", "lastProvider": "discord"},
            {
                "channel": "slack",
                "lastProvider": "discord",
                "deliveryContext": {"channel": "slack"},
                "lastChannel": "slack",
            },
        ),
        # a blank lastChannel is dropped by the save, so the next load migrates lastProvider
        (
            {"lastChannel": "  ", "lastProvider": "Lark"},
            {"lastChannel": "feishu", "deliveryContext": {"channel": "feishu"}},
        ),
        # ... before a later save could fill lastChannel from channel
        (
            {"channel": "slack", "lastChannel": "  ", "lastProvider": "discord"},
            {
                "channel": "slack",
                "lastChannel": "discord",
                "deliveryContext": {"channel": "discord"},
            },
        ),
    ],
)
def test_written_entries_hold_what_the_next_load_would_make_of_them(
    given: dict[str, Any], expected: dict[str, Any]
) -> None:
    base = {"sessionId": "s", "updatedAt": 1}
    put = replace_entry(None, {**base, **given})
    merged = merge_entry(dict(base), given, now=1, assume_settled=True)
    for out in (put, merged):
        assert {k: v for k, v in out.items() if k not in base} == expected
        assert load_normalize(out) == out


# --- replace_entry ---------------------------------------------------------------------------


def test_replace_preserves_acp_when_new_entry_has_none() -> None:
    acp = {"backend": "codex", "mode": "persistent", "state": "idle"}
    existing = {"sessionId": "s", "updatedAt": 5, "label": "old", "acp": acp}
    out = replace_entry(existing, {"sessionId": "s2", "updatedAt": 6}, now=NOW)
    assert out == {"sessionId": "s2", "updatedAt": 6, "acp": acp}


def test_replace_takes_the_new_acp_when_given() -> None:
    existing = {"sessionId": "s", "updatedAt": 5, "acp": {"state": "old"}}
    out = replace_entry(existing, {"sessionId": "s", "updatedAt": 5, "acp": {"state": "new"}})
    assert out["acp"] == {"state": "new"}


def test_replace_without_existing_adds_no_acp() -> None:
    out = replace_entry(None, {"sessionId": "s", "updatedAt": 5})
    assert out == {"sessionId": "s", "updatedAt": 5}


def test_replace_keeps_updated_at_exactly_even_if_older() -> None:
    existing = {"sessionId": "s", "updatedAt": NOW}
    out = replace_entry(existing, {"sessionId": "s", "updatedAt": 10}, now=NOW)
    assert out["updatedAt"] == 10
    out_f = replace_entry(existing, {"sessionId": "s", "updatedAt": 10.5}, now=NOW)
    assert out_f["updatedAt"] == 10.5


def test_replace_fills_missing_session_id_and_updated_at() -> None:
    out = replace_entry({"sessionId": "old", "updatedAt": 1}, {"label": "x"}, now=NOW)
    assert out["updatedAt"] == NOW
    assert _is_uuid(out["sessionId"])
    assert out["sessionId"] != "old"  # a whole replace does not inherit the old session id
    assert out["label"] == "x"


def test_replace_normalises() -> None:
    out = replace_entry(None, {"sessionId": "s", "updatedAt": 1, "channel": "Lark", "model": " "})
    assert out["lastChannel"] == "feishu"
    assert "model" not in out


# --- inputs are never mutated ----------------------------------------------------------------


def _messy_existing() -> dict[str, Any]:
    return {
        "sessionId": "s",
        "updatedAt": 100,
        "channel": " Telegram ",
        "lastChannel": "TEAMS",
        "lastTo": " 1 ",
        "lastAccountId": "Work Account",
        "origin": {"threadId": 4.5, "provider": "telegram"},
        "deliveryContext": {"channel": "discord", "to": " x ", "accountId": "A", "threadId": " t "},
        "model": " gpt ",
        "modelProvider": " openai ",
        "acp": {"state": "idle", "nested": {"k": [1, 2]}},
        "skillsSnapshot": {"prompt": "p", "skills": [{"name": "a"}]},
        "provider": "legacy",
        "lastProvider": "legacy",
        "room": "r",
    }


def test_no_function_mutates_its_inputs() -> None:
    existing = _messy_existing()
    patch = {
        "model": "other",
        "label": None,
        "deliveryContext": {"channel": " Slack ", "to": " c "},
        "origin": {"threadId": 7.2},
    }
    new = {"channel": "BB", "lastTo": "  z ", "origin": {"threadId": 1.5}}
    snap_existing = copy.deepcopy(existing)
    snap_patch = copy.deepcopy(patch)
    snap_new = copy.deepcopy(new)

    merge_entry(existing, patch, now=NOW)
    merge_entry(existing, patch, preserve_activity=True, now=NOW)
    merge_entry(None, patch, now=NOW)
    normalize_entry(existing)
    apply_legacy_migrations(existing)
    load_normalize(existing)
    replace_entry(existing, new, now=NOW)
    replace_entry(None, new, now=NOW)

    assert existing == snap_existing
    assert patch == snap_patch
    assert new == snap_new


def test_results_do_not_share_changed_nested_objects_with_inputs() -> None:
    existing = _messy_existing()
    out = normalize_entry(existing)
    out["deliveryContext"]["to"] = "changed"
    assert existing["deliveryContext"]["to"] == " x "
    merged = merge_entry(existing, {"label": "x"}, now=NOW)
    merged["deliveryContext"]["channel"] = "changed"
    assert existing["deliveryContext"]["channel"] == "discord"


# --- sort_time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (None, 0),
        ({}, 0),
        ({"updatedAt": 5}, 5),
        ({"updatedAt": 5.5}, 5.5),
        ({"updatedAt": "5"}, 0),
        ({"updatedAt": True}, 0),
        ({"updatedAt": float("inf")}, 0),
    ],
)
def test_sort_time(entry: dict[str, Any] | None, expected: float) -> None:
    assert sort_time(entry) == expected
