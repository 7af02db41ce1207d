"""An independent model of OpenClaw's session-store rules, for the property tests.

Written from the behavioural spec (``spec/openclaw-session-store.md``, cited as "spec x.y")
and DESIGN.md's "API details", never from ``sessionstore``'s own code: this module imports
nothing from the library. Plain dicts, plain loops; every rule names its spec section so a
reviewer can check it line by line.

Conventions:
- A store is a dict ``{stored key: entry}`` in insertion order, as ``sessions.json`` is.
- ``None`` in a patch is JavaScript's ``undefined`` (DESIGN: "a None value in a patch deletes
  that field"); :func:`spread` mimics ``{...a, ...b}`` with that meaning.
- Time and randomness are arguments (``now``, ``new_id``), so a test can feed in the values
  the real store chose and check them separately (a UUID4, a time within bounds).
- Where the spec is silent ("SPEC SILENT") or open to two readings ("AMBIGUOUS"), the model
  follows the implementation's choice and says so. "DEVIATION" marks where the store differs
  from the spec on purpose or pending a decision outside the entry rules; the model follows
  the store there too, so the tests pin today's behaviour. Grep for the three words to get
  the list.
"""

from __future__ import annotations

import copy
import json
import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

Entry = dict[str, Any]
Store = dict[str, Entry]


class InvalidKey(ValueError):
    """The model's verdict that a key is invalid (the store raises ``InvalidKeyError``)."""


# --- JavaScript helpers -----------------------------------------------------------------------

# ECMAScript String.prototype.trim: WhiteSpace (TAB, VT, FF, ZWNBSP, every Zs) and
# LineTerminator (LF, CR, LS, PS). Python's str.strip differs (no U+FEFF; adds U+001C-U+001F
# and U+0085), so keys are trimmed with this set (spec 3.4 "trim()").
_JS_SPACE = frozenset(
    "\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)


def js_trim(text: str) -> str:
    """``text.trim()`` as JavaScript does it."""
    start, end = 0, len(text)
    while start < end and text[start] in _JS_SPACE:
        start += 1
    while end > start and text[end - 1] in _JS_SPACE:
        end -= 1
    return text[start:end]


def is_number(value: object) -> bool:
    """``typeof value === "number"`` (a Python bool is not a JSON number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# JavaScript's ``undefined`` while an object is being built: the key keeps its place, and
# vanishes when the entry is serialised.
_UNDEFINED = object()


def spread(base: Mapping[str, Any] | None, patch: Mapping[str, Any], **assigned: Any) -> Entry:
    """``{...base, ...patch, k: v}`` where a None in ``patch`` is ``undefined``.

    Keys keep the position where they first appeared (also a key the patch left
    ``undefined`` and an assignment then set again); ``undefined`` keys vanish at the end.
    A None (JSON null) in ``base`` is a real value and stays.
    """
    out: dict[str, Any] = dict(base or {})
    for key, value in patch.items():
        out[key] = _UNDEFINED if value is None else value
    out.update(assigned)
    return {k: v for k, v in out.items() if v is not _UNDEFINED}


def json_same(a: object, b: object) -> bool:
    """Equality of JSON values with their Python types (1, 1.0 and True differ).

    SPEC SILENT: JavaScript has one number type (``7 === 7.0``); in Python a float 7.0 and
    an int 7 are different JSON values, and the store treats them as different.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(json_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(json_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def assign(entry: Entry, key: str, value: Any) -> None:
    """``entry[key] = value`` where None is ``undefined`` (the key vanishes)."""
    if value is None:
        entry.pop(key, None)
    else:
        entry[key] = value


def js_stringify(store: Mapping[str, Any]) -> str:
    """``JSON.stringify(store, null, 2)``: how OpenClaw writes sessions.json (spec 3.1):
    2-space indent, no trailing newline, non-ASCII unescaped, and, JavaScript having one
    number type, an integral float written as an integer (``7.0`` -> ``7``)."""

    def js(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        if isinstance(value, dict):
            return {k: js(v) for k, v in value.items()}
        if isinstance(value, list):
            return [js(v) for v in value]
        return value

    return json.dumps(js(dict(store)), indent=2, ensure_ascii=False)


# --- keys (spec 3.4, 5.5; DESIGN "Invalid keys") ----------------------------------------------


def canonical_key(key: str) -> str:
    """``normalizeStoreSessionKey = trim().toLowerCase()`` (spec 3.4).

    DESIGN: empty or whitespace-only keys, or keys with control characters, are invalid.
    SPEC SILENT whether control characters that ``trim()`` removes (TAB, LF, ...) count:
    they do not; the check looks at the trimmed key.
    """
    trimmed = js_trim(key)
    if not trimmed or any(unicodedata.category(ch) == "Cc" for ch in trimmed):
        raise InvalidKey(key)
    return trimmed.lower()


def fold(stored_key: str) -> str:
    """The canonical key a stored key is a variant of.

    Spec 5.5 matches a stored key whose *lowercase* equals the canonical key; spec 7.3's
    canonicalisation, which OpenClaw runs over every store at gateway startup, also trims
    stored keys. AMBIGUOUS: the store folds like 7.3 (trim, then lowercase), so a stored
    `` Agent:Main:A`` is a variant of ``agent:main:a``; the model follows it.
    """
    return js_trim(stored_key).lower()


def updated_at(entry: Mapping[str, Any]) -> int | float:
    """``entry.updatedAt ?? 0``, the value compared when variants compete (spec 5.5) and the
    sort key of lists (spec 8.1 "null = 0"). SPEC SILENT on a non-number ``updatedAt``:
    the model counts it as 0 (tests only store numbers)."""
    value = entry.get("updatedAt")
    return value if is_number(value) else 0


def resolve(store: Store, key: str) -> tuple[str, str | None, list[str]]:
    """``resolveSessionStoreEntry`` (spec 5.5): (normalizedKey, key of the winner, variants).

    ``existing`` starts at the entry under the lowercase key; then every stored key that
    folds to it (:func:`fold`) competes, and the highest ``updatedAt`` wins. ``variants``
    are the matching stored keys other than the canonical one.

    SPEC SILENT on ties: a tie keeps the canonical key, else the first variant in store
    order. (The spec's "else the exact trimmed key" start would make the winner of a tie
    depend on how the caller spelled the key; the store canonicalises the key first, so
    it cannot, and the spec never says how ties break.)
    """
    normalized = canonical_key(key)
    winner = normalized if normalized in store else None
    variants: list[str] = []
    for candidate in store:
        if candidate == normalized or fold(candidate) != normalized:
            continue
        variants.append(candidate)
        if winner is None or updated_at(store[candidate]) > updated_at(store[winner]):
            winner = candidate
    return normalized, winner, variants


def parse_agent_key(key: str) -> tuple[str, str] | None:
    """``parseAgentSessionKey`` (spec 3.4): lowercase, split on ``:``, drop empty parts;
    valid with at least 3 parts, ``agent`` first and a non-empty agent id. Returns
    ``(agentId, rest)``. A stored key is folded first (see :func:`fold`)."""
    parts = [p for p in fold(key).split(":") if p]
    if len(parts) < 3 or parts[0] != "agent" or not parts[1]:
        return None
    return parts[1], ":".join(parts[2:])


# --- normalisation (spec 7.1) -----------------------------------------------------------------

# spec 7.1: aliases from the bundled channel-plugin manifests; unknown ids stay lowercase.
CHANNEL_ALIASES = {
    "imsg": "imessage",
    "gchat": "googlechat",
    "google-chat": "googlechat",
    "internet-relay-chat": "irc",
    "teams": "msteams",
    "bb": "bluebubbles",
    "lark": "feishu",
    "nc-talk": "nextcloud-talk",
    "nc": "nextcloud-talk",
    "twitch-chat": "twitch",
    "zl": "zalo",
    "zlu": "zalouser",
}


def normalize_channel(value: object) -> str | None:
    """Channel: trim + lowercase + alias map; empty is no channel (spec 7.1).
    SPEC SILENT on non-strings: no channel."""
    if not isinstance(value, str):
        return None
    lowered = js_trim(value).lower()
    if not lowered:
        return None
    return CHANNEL_ALIASES.get(lowered, lowered)


_ACCOUNT_VALID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ACCOUNT_INVALID = re.compile(r"[^a-z0-9_-]+")


def normalize_account_id(value: object) -> str | None:
    """accountId: trim, lowercase; invalid characters become ``-``, edge dashes stripped,
    at most 64 characters; empty is removed (spec 7.1, the agent-id grammar of spec 3.3).

    SPEC SILENT whether a run of invalid characters becomes one dash or one per character:
    one per run, as the implementation does. Non-strings: removed.
    """
    if not isinstance(value, str):
        return None
    lowered = js_trim(value).lower()
    if not lowered:
        return None
    if _ACCOUNT_VALID.match(lowered):
        return lowered
    cleaned = _ACCOUNT_INVALID.sub("-", lowered).strip("-")[:64]
    return cleaned or None


def normalize_thread_id(value: object) -> int | str | None:
    """threadId: numbers truncated to integers; strings trimmed, empty removed (spec 7.1)."""
    if is_number(value):
        assert isinstance(value, (int, float))
        if isinstance(value, float) and abs(value) >= 2**53:
            # SPEC SILENT: such a float is already integral, and as a Python int it could
            # exceed what JSON stores carry (64 bits); it stays a float.
            return value if math.isfinite(value) else None
        return math.trunc(value)
    if isinstance(value, str):
        return js_trim(value) or None
    return None


def normalize_to(value: object) -> str | None:
    """``to``: trimmed, empty removed (spec 7.1). SPEC SILENT on non-strings: removed."""
    if not isinstance(value, str):
        return None
    return js_trim(value) or None


def normalize_delivery_context(ctx: object) -> Entry | None:
    """One route, normalised field by field; an empty route is no route (spec 7.1)."""
    if not isinstance(ctx, Mapping):
        return None
    out: Entry = {}
    for field, fn in (
        ("channel", normalize_channel),
        ("to", normalize_to),
        ("accountId", normalize_account_id),
        ("threadId", normalize_thread_id),
    ):
        value = fn(ctx.get(field))
        if value is not None:
            out[field] = value
    return out or None


def merge_delivery_context(primary: Entry | None, fallback: Entry | None) -> Entry | None:
    """spec 7.1: the primary (last*) route wins field by field; when both name a channel and
    the channels differ, ``to``/``accountId``/``threadId`` come only from the primary."""
    if primary is None and fallback is None:
        return None
    p, f = primary or {}, fallback or {}
    conflict = "channel" in p and "channel" in f and p["channel"] != f["channel"]
    merged: Entry = {"channel": p.get("channel", f.get("channel"))}
    for field in ("to", "accountId", "threadId"):
        merged[field] = p.get(field) if conflict else p.get(field, f.get(field))
    return normalize_delivery_context({k: v for k, v in merged.items() if v is not None})


_LAST_FIELDS = (
    ("lastChannel", "channel"),
    ("lastTo", "to"),
    ("lastAccountId", "accountId"),
    ("lastThreadId", "threadId"),
)


def normalize_delivery(entry: Entry) -> Entry:
    """``normalizeSessionEntryDelivery`` (spec 7.1).

    The route built from the last* fields (``lastChannel ?? channel``; thread from
    ``lastThreadId ?? deliveryContext.threadId ?? origin.threadId``) is merged over the
    existing ``deliveryContext``, and the result is written back to ``deliveryContext`` and
    the four last* fields; the entry is replaced only if something changed.
    """
    ctx = entry.get("deliveryContext")
    ctx_map = ctx if isinstance(ctx, Mapping) else {}
    origin = entry.get("origin")
    origin_map = origin if isinstance(origin, Mapping) else {}

    def first(*values: Any) -> Any:  # a ?? b ?? c
        return next((v for v in values if v is not None), None)

    primary = normalize_delivery_context(
        {
            "channel": first(entry.get("lastChannel"), entry.get("channel")),
            "to": entry.get("lastTo"),
            "accountId": entry.get("lastAccountId"),
            "threadId": first(
                entry.get("lastThreadId"), ctx_map.get("threadId"), origin_map.get("threadId")
            ),
        }
    )
    merged = merge_delivery_context(primary, normalize_delivery_context(ctx))
    route = merged or {}
    # SPEC SILENT on what "changed" compares: the four route fields of deliveryContext (a
    # null one counts as missing) and the four last* fields (a null one is a change), so
    # other keys in a deliveryContext, or one that is not an object, stay as they are until
    # the route changes.
    same_ctx = all(json_same(ctx_map.get(f), route.get(f)) for _, f in _LAST_FIELDS)
    same_last = all(
        json_same(entry.get(last, _UNDEFINED), route.get(f, _UNDEFINED)) for last, f in _LAST_FIELDS
    )
    if same_ctx and same_last:
        return entry
    out = dict(entry)
    assign(out, "deliveryContext", merged)
    for last, field in _LAST_FIELDS:
        assign(out, last, route.get(field))
    return out


def normalize_runtime_model(entry: Entry) -> Entry:
    """``normalizeSessionRuntimeModelFields`` (spec 2.3, 7.1): trim ``model`` and
    ``modelProvider``; a blank model (empty after trimming, null, or missing) deletes both;
    a blank provider is deleted.

    SPEC SILENT on other non-strings (a number, an object): they are not blank and stay.
    """
    out = dict(entry)
    model = out.get("model")
    if isinstance(model, str):
        model = js_trim(model)
    if model is None or model == "":
        out.pop("model", None)
        out.pop("modelProvider", None)
        return out
    if "model" in out:
        out["model"] = model
    provider = out.get("modelProvider")
    if isinstance(provider, str):
        provider = js_trim(provider)
    if provider is None or provider == "":
        out.pop("modelProvider", None)
    elif "modelProvider" in out:
        out["modelProvider"] = provider
    return out


def normalize_entry(entry: Entry) -> Entry:
    """``normalizeSessionStore`` for one entry, before every save (spec 5.2 step 1, 7.1 step 3)."""
    return normalize_delivery(normalize_runtime_model(entry))


def migrate_legacy_fields(entry: Entry) -> Entry:
    """``applySessionStoreMigrations`` for one entry, on load (spec 7.1 step 2).

    ``provider`` -> ``channel`` and ``lastProvider`` -> ``lastChannel`` when the target is not
    a string (else the legacy field stays); a string ``room`` -> ``groupChannel`` when that is
    not a string. AMBIGUOUS: "room is always deleted" is read as whatever its type.
    """
    out = dict(entry)
    for legacy, target in (("provider", "channel"), ("lastProvider", "lastChannel")):
        if isinstance(out.get(legacy), str) and not isinstance(out.get(target), str):
            out[target] = out.pop(legacy)
    if "room" in out:
        room = out.pop("room")
        if isinstance(room, str) and not isinstance(out.get("groupChannel"), str):
            out["groupChannel"] = room
    return out


def save_entry(entry: Entry) -> Entry:
    """What a save writes: ``normalizeSessionStore`` once (spec 5.2 step 1)."""
    return normalize_entry(entry)


def load_once(entry: Entry) -> Entry:
    """What one load returns: migrations, then normalisation (spec 5.1 step 4, 7.1)."""
    return normalize_entry(migrate_legacy_fields(entry))


def converge(entry: Entry) -> Entry:
    """Save after save and load after load until nothing changes.

    One round is not always enough: a blank ``lastChannel`` is used (``??``) and dropped,
    and only the next save falls back to ``channel`` (or the next load migrates
    ``lastProvider``). OpenClaw reaches the same entry over its next saves and loads;
    DESIGN: the store keeps the converged entry at once, and every read returns it.
    """
    for _ in range(10):
        nxt = load_once(save_entry(entry))
        if json_same(nxt, entry):
            return entry
        entry = nxt
    raise AssertionError(f"the rules do not converge on {entry!r}")


def load_entry(entry: Entry) -> Entry:
    """An entry of an OpenClaw-written sessions.json as the store reads it."""
    return converge(load_once(entry))


def settle(entry: Entry) -> Entry:
    """What a write leaves behind as every later read sees it: saved, then loaded."""
    return converge(load_once(save_entry(entry)))


def load_store(raw: Mapping[str, Any]) -> Store:
    """``loadSessionStore`` of a parsed sessions.json: entries migrated and normalised, keys
    kept as stored (spec 7.1 step 4: keys are not renamed on load)."""
    return {k: load_entry(dict(v)) for k, v in raw.items()}


# --- merges (spec 2.3; DESIGN "API details") --------------------------------------------------


def merge(
    existing: Entry | None,
    patch: Mapping[str, Any],
    *,
    now: int,
    new_id: Callable[[], str],
    preserve_activity: bool = False,
) -> Entry:
    """``mergeSessionEntry`` / ``mergeSessionEntryPreserveActivity`` (spec 2.3).

    A None in ``patch`` deletes the field (DESIGN); ``sessionId`` and ``updatedAt`` use
    ``??``, so a None there falls through to the existing value.
    """
    session_id = patch.get("sessionId")
    if session_id is None and existing is not None:
        session_id = existing.get("sessionId")
    if session_id is None:
        session_id = new_id()
    if existing is not None and preserve_activity:
        stamp = existing.get("updatedAt")
        if stamp is None:
            stamp = patch.get("updatedAt")
        if stamp is None:
            stamp = now
    else:
        stamp = max(updated_at(existing or {}), updated_at(patch), now)
    if existing is None:
        return normalize_runtime_model(spread(None, patch, sessionId=session_id, updatedAt=stamp))
    out = spread(existing, patch, sessionId=session_id, updatedAt=stamp)
    # Stale-provider guard: the patch sets model but not modelProvider, and the trimmed new
    # model differs from the old one.
    if "model" in patch and "modelProvider" not in patch:
        new_model, old_model = patch["model"], existing.get("model")
        new_t = js_trim(new_model) if isinstance(new_model, str) else new_model
        old_t = js_trim(old_model) if isinstance(old_model, str) else old_model
        if new_t != old_t:
            out.pop("modelProvider", None)
    return normalize_runtime_model(out)


def replace(
    existing: Entry | None, entry: Mapping[str, Any], *, now: int, new_id: Callable[[], str]
) -> Entry:
    """``put``: the entry replaced whole (DESIGN).

    ``updatedAt`` exactly as given (now if missing), a new UUID ``sessionId`` if missing, and
    the old ``acp`` block kept when the new entry has none (spec 5.4's ACP preservation).
    SPEC SILENT on which old entry "the old acp" is when legacy variants exist: the one
    :func:`resolve` returns; and on what "has none" means: the field is absent (an explicit
    null is kept). SPEC SILENT on None in a put (DESIGN's "None deletes" is about patches):
    it is JSON null and stored as such, except that ``sessionId`` and ``updatedAt`` use
    ``??`` like a merge.
    """
    out = dict(entry)
    if out.get("sessionId") is None:
        out["sessionId"] = new_id()
    if out.get("updatedAt") is None:
        out["updatedAt"] = now
    if existing is not None and "acp" in existing and "acp" not in out:
        out["acp"] = existing["acp"]
    return out


# --- reset (spec 5.7) -------------------------------------------------------------------------

RESET_CARRY_OVER = (
    "thinkingLevel",
    "fastMode",
    "verboseLevel",
    "traceLevel",
    "reasoningLevel",
    "elevatedLevel",
    "ttsAuto",
    "execHost",
    "execSecurity",
    "execAsk",
    "execNode",
    "responseUsage",
    "groupActivation",
    "groupActivationNeedsSystemIntro",
    "chatType",
    "contextTokens",
    "compactionCount",
    "compactionCheckpoints",
    "sendPolicy",
    "queueMode",
    "queueDebounceMs",
    "queueCap",
    "queueDrop",
    # "spawn lineage fields": the five that spec 2.1 calls immutable once set, and
    # AMBIGUOUS: parentSessionKey, the explicit parent link (spec 5.9 names only the five
    # as lineage; the store keeps the link, so a reset does not detach a child session).
    "spawnedBy",
    "spawnedWorkspaceDir",
    "parentSessionKey",
    "spawnDepth",
    "subagentRole",
    "subagentControlScope",
    "label",
    "displayName",
    "channel",
    "groupId",
    "subject",
    "groupChannel",
    "space",
    "origin",
    "deliveryContext",
    "cliSessionBindings",
    "cliSessionIds",
    "claudeCliSessionId",
    "lastChannel",
    "lastTo",
    "lastAccountId",
    "lastThreadId",
    "skillsSnapshot",
    "acp",
)


RESET_OVERRIDES = (
    ("modelOverrideSource", ("providerOverride", "modelOverride", "modelOverrideSource")),
    (
        "authProfileOverrideSource",
        ("authProfileOverride", "authProfileOverrideSource", "authProfileOverrideCompactionCount"),
    ),
)


def reset(existing: Entry, *, session_id: str, now: int) -> Entry:
    """``sessions.reset`` (spec 5.7): a new entry with a new ``sessionId``, ``updatedAt = now``,
    fresh counters and flags, and only the carried-over fields; everything else is dropped.

    The model's ``model``/``modelProvider`` are "recomputed from the defaults"; a store has
    no configured defaults, so they are dropped. "Fallback-pinned overrides cleared, user
    overrides kept": AMBIGUOUS which overrides and what a missing source means; the store
    clears an override only when its source is ``"auto"`` (a missing source is a legacy
    user choice), for the model override and the auth-profile override alike.
    SPEC SILENT on key order: new fields, then the carried ones in the list's order.
    """
    out: Entry = {
        "sessionId": session_id,
        "updatedAt": now,
        "systemSent": False,
        "abortedLastRun": False,
        "inputTokens": 0,
        "outputTokens": 0,
        "totalTokens": 0,
        "totalTokensFresh": True,
    }
    for field in RESET_CARRY_OVER:
        if field in existing:
            out[field] = copy.deepcopy(existing[field])
    for source, fields in RESET_OVERRIDES:
        if existing.get(source) != "auto":
            for field in fields:
                if field in existing:
                    out[field] = existing[field]
    return normalize_entry(out)


# --- list rows (spec 8.1, 8.2; DESIGN "list() rows") -------------------------------------------

ROW_FIELDS = (
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
)
_CRON_RUN = re.compile(r"^cron:[^:]+:run:[^:]+$")


def is_cron_run(key: str) -> bool:
    """Cron run aliases ``…:cron:<job>:run:<id>`` are never listed (spec 8.1)."""
    parsed = parse_agent_key(key)
    return parsed is not None and bool(_CRON_RUN.match(parsed[1]))


def key_channel(key: str) -> str | None:
    """The channel a key names.

    spec 8.2 reads ``<channel>:<group|channel>:<id>``. AMBIGUOUS: DESIGN's row channel is
    "the one parsed from the key", and the store also reads the DM shapes of spec 3.4's
    table (``<channel>:direct:<peer>``, ``<channel>:<account>:direct:<peer>``) and keys
    without the ``agent:<id>:`` prefix; the model follows it.
    """
    parsed = parse_agent_key(key)
    parts = (parsed[1] if parsed else fold(key)).split(":")
    if len(parts) >= 3 and parts[1] in ("group", "channel", "direct"):
        return parts[0]
    if len(parts) >= 4 and parts[2] == "direct":
        return parts[0]
    return None


def kind(key: str, entry: Entry) -> str:
    """spec 8.2: global/unknown by key; group if chatType is group/channel or the key has
    ``:group:``/``:channel:``; else direct."""
    folded = fold(key)
    if folded in ("global", "unknown"):
        return folded
    if entry.get("chatType") in ("group", "channel"):
        return "group"
    if ":group:" in folded or ":channel:" in folded:
        return "group"
    return "direct"


def row_channel(key: str, entry: Entry) -> str | None:
    """DESIGN: the entry's channel, else its last channel, else the key's.

    SPEC SILENT (DESIGN widens spec 8.2): each candidate is normalised like a route channel
    (spec 7.1) and a blank or non-string one is skipped, so ``channel=`` compares channels
    in one form.
    """
    for candidate in (entry.get("channel"), entry.get("lastChannel"), key_channel(key)):
        channel = normalize_channel(candidate)
        if channel is not None:
            return channel
    return None


def _typed(value: Any, *types: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, types):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def row(key: str, entry: Entry, store_agent: str) -> Entry:
    """One ``list()`` row: key, agentId, kind and the hot fields (DESIGN).

    SPEC SILENT (DESIGN lists the fields, not their types): a hot field of an unexpected
    type shows as None (strings; numbers for tokens and ``updatedAt``; a string or number
    ``lastThreadId``; an integer ``messageCount``), a non-string ``sessionId`` as ``""``,
    and a key that is not ``agent:<id>:…`` belongs to the store's agent.
    """
    parsed = parse_agent_key(key)
    out: Entry = {
        "key": key,
        "agentId": parsed[0] if parsed else store_agent,
        "kind": kind(key, entry),
    }
    for field in ROW_FIELDS:
        value = entry.get(field)
        if field in ("updatedAt", "totalTokens", "inputTokens", "outputTokens"):
            value = _typed(value, int, float)
        elif field == "lastThreadId":
            value = _typed(value, str, int, float)
        elif field == "messageCount":
            value = _typed(value, int)
        else:
            value = _typed(value, str)
        out[field] = value
    out["sessionId"] = out["sessionId"] or ""
    out["channel"] = row_channel(key, entry)
    return out


def normalize_agent_id(agent_id: str) -> str:
    """spec 3.3: trim, lowercase; a valid id as is; else invalid characters become ``-``,
    edge dashes stripped, cut to 64; empty falls back to ``main``. (A run of invalid
    characters is one dash, as for account ids.)"""
    value = js_trim(agent_id).lower()
    if _ACCOUNT_VALID.match(value):
        return value
    return _ACCOUNT_INVALID.sub("-", value).strip("-")[:64] or "main"


def list_rows(
    store: Store,
    *,
    store_agent: str,
    now: int,
    agent_id: str | None = None,
    channel: str | None = None,
    label: str | None = None,
    search: str | None = None,
    spawned_by: str | None = None,
    active_minutes: int | None = None,
    include_global: bool = False,
    include_unknown: bool = False,
) -> list[Entry]:
    """``sessions.list`` over one store, every page at once (spec 8.1): cron run keys dropped,
    sentinels only when asked for, filters, newest first.

    SPEC SILENT on ties in ``updatedAt``: the greater key first (keyset order).
    DEVIATION: the gateway's list canonicalises every stored key (``agent:<id>:<key>``) and
    merges duplicates, the newer ``updatedAt`` winning and the older filling gaps (spec 8.1);
    the store lists each stored key as it is, so a legacy mixed-case variant is a row of its
    own until a write folds it. (A change in every index backend, not in the entry rules.)
    """
    rows: list[tuple[int | float, str, Entry]] = []
    for key, entry in store.items():
        lowered = fold(key)
        if is_cron_run(key):
            continue
        if lowered == "global" and not include_global:
            continue
        if lowered == "unknown" and not include_unknown:
            continue
        parsed = parse_agent_key(key)
        if agent_id is not None and (
            parsed is None or normalize_agent_id(parsed[0]) != normalize_agent_id(agent_id)
        ):
            continue
        if spawned_by is not None and (
            lowered in ("global", "unknown")
            or spawned_by not in (entry.get("spawnedBy"), entry.get("parentSessionKey"))
        ):
            continue
        if label is not None and entry.get("label") != js_trim(label):
            continue
        r = row(key, entry, store_agent)
        if channel is not None and r["channel"] != normalize_channel(channel):
            continue
        if search is not None:
            needle = js_trim(search).lower()
            hay = [entry.get(f) for f in ("displayName", "label", "subject", "sessionId")]
            hay.append(key)
            if not any(isinstance(h, str) and needle in h.lower() for h in hay):
                continue
        if active_minutes is not None and updated_at(entry) < now - active_minutes * 60_000:
            continue
        rows.append((updated_at(entry), key, r))
    rows.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [r for _, _, r in rows]


# --- the store as a whole -----------------------------------------------------------------------


class ModelStore:
    """One agent's store as OpenClaw's rules (plus DESIGN's API details) define it.

    ``entries`` holds every stored key, legacy mixed-case variants included, in insertion
    order, with every entry as a read would return it.
    """

    def __init__(self, agent: str = "main", entries: Mapping[str, Any] | None = None) -> None:
        self.agent = agent
        self.entries: Store = load_store(entries or {})

    @classmethod
    def imported(cls, agent: str, raw: Mapping[str, Any]) -> ModelStore:
        """The store after a migration imported ``raw`` (a database backend's first open).

        SPEC SILENT (the PR's migration copies keys as they are, spec 10.4): the store's
        import folds the variants of a key as spec 7.3's canonicalisation does: the newer
        ``updatedAt`` wins; on a tie the already-canonical key, then the first seen. The
        folded key keeps the place where its first variant stood.
        """
        out: Store = {}
        origin: dict[str, str] = {}
        for key, value in raw.items():
            entry = load_entry(dict(value))
            canonical = fold(key)
            if canonical in out:
                newer = updated_at(entry) > updated_at(out[canonical])
                tie = updated_at(entry) == updated_at(out[canonical])
                if not (newer or (tie and key == canonical and origin[canonical] != canonical)):
                    continue
            out[canonical] = entry
            origin[canonical] = key
        store = cls(agent)
        store.entries = out
        return store

    def get(self, key: str) -> Entry | None:
        """spec 5.5: the entry under the key or its freshest variant; reading writes nothing."""
        _, winner, _ = resolve(self.entries, key)
        return None if winner is None else self.entries[winner]

    def _store(self, key: str, entry: Entry) -> Entry:
        """spec 5.5: stored at the lowercase key (keeping its place if present, else
        appended), every variant deleted."""
        normalized, _, variants = resolve(self.entries, key)
        for variant in variants:
            del self.entries[variant]
        self.entries[normalized] = settle(entry)
        return self.entries[normalized]

    def put(
        self, key: str, entry: Mapping[str, Any], *, now: int, new_id: Callable[[], str]
    ) -> Entry:
        """DESIGN ``put``: replace whole; variants folded into the canonical key."""
        return self._store(key, replace(self.get(key), entry, now=now, new_id=new_id))

    def update(
        self,
        key: str,
        patch: Mapping[str, Any] | None,
        *,
        now: int,
        new_id: Callable[[], str],
        create: bool = False,
        preserve_activity: bool = False,
    ) -> Entry | None:
        """spec 5.5 ``updateSessionStoreEntry`` (and 5.6 create with ``create``): missing ->
        None and nothing written; a None patch -> the entry unchanged, nothing written;
        else the merge, stored at the lowercase key with the variants deleted."""
        existing = self.get(key)
        if existing is None and not create:
            return None
        if patch is None:
            return existing
        merged = merge(existing, patch, now=now, new_id=new_id, preserve_activity=preserve_activity)
        return self._store(key, merged)

    def delete(self, key: str) -> bool:
        """spec 5.8: the key and all its variants go; True when anything was there."""
        _, winner, variants = resolve(self.entries, key)
        normalized = canonical_key(key)
        self.entries.pop(normalized, None)
        for variant in variants:
            del self.entries[variant]
        return winner is not None

    def reset(self, key: str, *, session_id: str, now: int, extra: Mapping[str, Any]) -> Entry:
        """spec 5.7 (``extra``: the fields the store adds about the new transcript)."""
        existing = self.get(key)
        if existing is None:
            raise KeyError(key)
        fresh = reset(existing, session_id=session_id, now=now)
        fresh.update(extra)
        return self._store(key, fresh)

    def mutate(self, fn: Callable[[Store], Any]) -> Any:
        """spec 5.4 ``updateSessionStore``: the mutator edits the whole store; an ``acp``
        block a surviving key lost is put back; the store is normalised and saved."""
        working = copy.deepcopy(self.entries)
        before = {k: v["acp"] for k, v in working.items() if "acp" in v}
        result = fn(working)
        for key, acp in before.items():
            # As in put: "lost it" is read as the field being absent.
            if key in working and "acp" not in working[key]:
                working[key]["acp"] = acp
        self.entries = {k: settle(v) for k, v in working.items()}
        return result

    def count(self) -> int:
        """Every stored key, variants included (DESIGN "number of entries")."""
        return len(self.entries)

    def load_all(self) -> Store:
        """The whole store as loaded (spec 5.1): stored keys, variants included."""
        return self.entries

    def list(self, *, now: int, **filters: Any) -> list[Entry]:
        """Every row ``list()`` pages through, in order."""
        return list_rows(self.entries, store_agent=self.agent, now=now, **filters)
