"""Unit tests for keys.py: canonical keys, agent ids, key parsing (spec 3.3, 3.4)."""

from __future__ import annotations

import pytest

from sessionstore.errors import InvalidArgumentError, InvalidKeyError, SessionStoreError
from sessionstore.keys import (
    DEFAULT_AGENT_ID,
    ParsedKey,
    canonical_key,
    channel_from_key,
    is_cron_run_key,
    is_sentinel_key,
    normalize_agent_id,
    parse_agent_session_key,
    session_kind,
)

# --- canonical_key -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("agent:main:main", "agent:main:main"),
        ("Agent:Main:Main", "agent:main:main"),
        ("  agent:main:telegram:direct:123  ", "agent:main:telegram:direct:123"),
        ("\tAGENT:OPS:Slack:Channel:C07ABC\n", "agent:ops:slack:channel:c07abc"),
        ("GLOBAL", "global"),
        ("hook:ABC-def", "hook:abc-def"),
        ("agent:main:ÄÖÜ", "agent:main:äöü"),
    ],
)
def test_canonical_key_trims_and_lowercases(raw: str, expected: str) -> None:
    assert canonical_key(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\ufeffAgent:Main:A\ufeff", "agent:main:a"),  # U+FEFF is JavaScript whitespace
        ("\u3000agent:main:a\u2029", "agent:main:a"),
    ],
)
def test_canonical_key_trims_like_javascript(raw: str, expected: str) -> None:
    # spec 3.4: normalizeStoreSessionKey is JavaScript's trim().toLowerCase()
    assert canonical_key(raw) == expected


@pytest.mark.parametrize("raw", ["\ufeff", "\ufeff \u3000"])
def test_canonical_key_rejects_javascript_whitespace_only(raw: str) -> None:
    with pytest.raises(InvalidKeyError, match="empty"):
        canonical_key(raw)


@pytest.mark.parametrize("raw", ["agent:main:a\x85", "\x1cagent:main:a"])
def test_canonical_key_keeps_what_javascript_does_not_trim(raw: str) -> None:
    # Python's str.strip removes U+0085 and U+001C; trim() does not, so they stay and,
    # being control characters, make the key invalid.
    with pytest.raises(InvalidKeyError, match="control characters"):
        canonical_key(raw)


def test_canonical_key_is_idempotent() -> None:
    once = canonical_key("  Agent:Main:WhatsApp:Group:1203@G.US ")
    assert canonical_key(once) == once


@pytest.mark.parametrize("raw", ["", " ", "   \t\n  "])
def test_canonical_key_rejects_blank(raw: str) -> None:
    with pytest.raises(InvalidKeyError, match="empty"):
        canonical_key(raw)


@pytest.mark.parametrize("raw", ["agent:main:a\x00b", "agent:\tmain:x", "a\x1bb", "a\x7fb"])
def test_canonical_key_rejects_control_characters(raw: str) -> None:
    with pytest.raises(InvalidKeyError, match="control characters"):
        canonical_key(raw)


@pytest.mark.parametrize("raw", [None, 123, b"agent:main:main", ["agent:main:main"]])
def test_canonical_key_rejects_non_strings(raw: object) -> None:
    with pytest.raises(InvalidKeyError, match="must be a string"):
        canonical_key(raw)


def test_invalid_key_error_is_in_the_hierarchy() -> None:
    with pytest.raises(SessionStoreError):
        canonical_key("")
    with pytest.raises(ValueError):
        canonical_key("")
    assert issubclass(InvalidKeyError, InvalidArgumentError)


# --- normalize_agent_id (spec 3.3) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("main", "main"),
        ("Main", "main"),
        ("  ops  ", "ops"),
        ("Main Bot", "main-bot"),
        ("main   bot", "main-bot"),  # a run of invalid characters becomes one dash
        ("a.b/c", "a-b-c"),
        ("  ", "main"),
        ("", "main"),
        ("--x--", "x"),
        ("-", "main"),
        ("!!!", "main"),
        ("_x", "_x"),  # underscore is a valid character; only dashes are stripped
        ("x_y-z9", "x_y-z9"),
        ("Émile", "mile"),
        ("@work!", "work"),
    ],
)
def test_normalize_agent_id(raw: str, expected: str) -> None:
    assert normalize_agent_id(raw) == expected


def test_normalize_agent_id_cuts_to_64_chars() -> None:
    raw = "a" * 70
    assert normalize_agent_id(raw) == "a" * 64
    # invalid characters make it take the slow path: still cut to 64
    raw2 = "B" * 35 + " " + "c" * 34
    out = normalize_agent_id(raw2)
    assert out == ("b" * 35 + "-" + "c" * 34)[:64]
    assert len(out) == 64


def test_normalize_agent_id_valid_64_is_kept() -> None:
    raw = "a" + "b" * 63
    assert normalize_agent_id(raw) == raw


@pytest.mark.parametrize("raw", [None, 5, ["main"]])
def test_normalize_agent_id_never_raises(raw: object) -> None:
    assert normalize_agent_id(raw) == DEFAULT_AGENT_ID


def test_normalize_agent_id_is_idempotent() -> None:
    for raw in ("Main Bot", "--x--", "a" * 70, "  ", "Émile", "A.B.C"):
        once = normalize_agent_id(raw)
        assert normalize_agent_id(once) == once


# --- parse_agent_session_key -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "agent", "rest"),
    [
        ("agent:main:main", "main", "main"),
        ("Agent:Main:Main", "main", "main"),
        ("agent:main:telegram:direct:8123456789", "main", "telegram:direct:8123456789"),
        (
            "agent:main:telegram:group:-1001234567890:topic:42",
            "main",
            "telegram:group:-1001234567890:topic:42",
        ),
        (
            "agent:codex:acp:binding:discord:default:feedface",
            "codex",
            "acp:binding:discord:default:feedface",
        ),
        ("agent::main:x", "main", "x"),  # empty parts are dropped
        ("agent:ops::cron::job1", "ops", "cron:job1"),
        ("  agent:main:main  ", "main", "main"),
    ],
)
def test_parse_agent_session_key(key: str, agent: str, rest: str) -> None:
    assert parse_agent_session_key(key) == ParsedKey(agent_id=agent, rest=rest)


@pytest.mark.parametrize(
    "key",
    ["global", "unknown", "main", "agent:main", "agent:main:", "agent::main", "hook:abc", ""],
)
def test_parse_agent_session_key_rejects_other_shapes(key: str) -> None:
    assert parse_agent_session_key(key) is None


# --- cron run keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:main:cron:job1:run:r1", True),
        ("AGENT:Main:Cron:Job1:Run:R1", True),
        ("agent:ops:cron:nightly-report:run:2f9c", True),
        ("agent:main:cron:job1", False),
        ("agent:main:cron:job1:run", False),
        ("agent:main:cron:job1:run:r1:extra", False),
        ("agent:main:cron:job1:runs:r1", False),
        ("cron:job1:run:r1", False),  # not agent-prefixed
        ("agent:main:subagent:cron:job1:run:r1", False),
        ("global", False),
    ],
)
def test_is_cron_run_key(key: str, expected: bool) -> None:
    assert is_cron_run_key(key) is expected


def test_is_sentinel_key() -> None:
    assert is_sentinel_key("global")
    assert is_sentinel_key("unknown")
    assert not is_sentinel_key("agent:main:global")
    assert not is_sentinel_key("main")


# --- channel_from_key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:main:telegram:direct:8123456789", "telegram"),
        ("agent:main:whatsapp:group:120363041234567890@g.us", "whatsapp"),
        ("agent:main:discord:channel:1234567890123", "discord"),
        ("agent:main:slack:channel:c07abc123:thread:1712.5", "slack"),
        ("agent:main:telegram:group:-1001234567890:topic:42", "telegram"),
        ("agent:main:telegram:default:direct:8123456789", "telegram"),  # per-account
        ("Agent:Main:Telegram:Direct:1", "telegram"),
        ("agent:main:main", None),
        ("agent:main:direct:peer42", None),  # per-peer DM names no channel
        ("agent:main:subagent:3f2a", None),
        ("agent:main:cron:job1:run:r1", None),
        ("agent:main:dashboard:5b1c", None),
        ("global", None),
        ("unknown", None),
    ],
)
def test_channel_from_key(key: str, expected: str | None) -> None:
    assert channel_from_key(key) == expected


# --- session_kind ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "entry", "expected"),
    [
        ("global", None, "global"),
        ("unknown", None, "unknown"),
        ("global", {"chatType": "group"}, "global"),
        ("agent:main:main", None, "direct"),
        ("agent:main:main", {}, "direct"),
        ("agent:main:telegram:direct:1", {"chatType": "direct"}, "direct"),
        ("agent:main:whatsapp:group:1@g.us", None, "group"),
        ("agent:main:discord:channel:123", {}, "group"),
        ("agent:main:main", {"chatType": "group"}, "group"),
        ("agent:main:main", {"chatType": "channel"}, "group"),
        ("agent:main:main", {"chatType": "dm"}, "direct"),
        ("agent:main:subagent:abc", None, "direct"),
    ],
)
def test_session_kind(key: str, entry: dict[str, object] | None, expected: str) -> None:
    assert session_kind(key, entry) == expected
