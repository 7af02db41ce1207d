"""SessionEntry and OpenClaw's entry rules: merges, normalisation, legacy field migration.

Entries are plain dicts with OpenClaw's camelCase field names, exactly as they sit in
``sessions.json``. Unknown fields round-trip untouched. None of these functions mutate
their inputs: they return new dicts (nested objects that change are replaced, not edited).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any, TypedDict

from .args import as_number, json_type, show
from .clock import now_ms
from .errors import InvalidEntryError
from .keys import js_trim

__all__ = [
    "CHANNEL_ALIASES",
    "SessionEntry",
    "json_equal",
    "apply_legacy_migrations",
    "merge_entry",
    "new_session_id",
    "normalize_account_id",
    "normalize_channel",
    "normalize_entry",
    "replace_entry",
    "reset_entry",
    "settle_entry",
    "sort_time",
]

Entry = dict[str, Any]


class SessionEntry(TypedDict, total=False):
    """The documented fields of an OpenClaw session entry (spec section 2).

    Only ``sessionId`` and ``updatedAt`` are required by OpenClaw; every other field is
    optional, and fields not listed here are kept as they are.
    """

    sessionId: str
    updatedAt: int | float
    sessionFile: str
    spawnedBy: str
    spawnedWorkspaceDir: str
    parentSessionKey: str
    spawnDepth: int
    status: str
    chatType: str
    thinkingLevel: str
    providerOverride: str
    modelOverride: str
    inputTokens: int
    outputTokens: int
    totalTokens: int
    totalTokensFresh: bool
    modelProvider: str
    model: str
    contextTokens: int
    compactionCount: int
    label: str
    displayName: str
    channel: str
    groupId: str
    subject: str
    groupChannel: str
    space: str
    origin: dict[str, Any]
    deliveryContext: dict[str, Any]
    lastChannel: str
    lastTo: str
    lastAccountId: str
    lastThreadId: str | int
    skillsSnapshot: dict[str, Any]
    systemPromptReport: dict[str, Any]
    acp: dict[str, Any]


CHANNEL_ALIASES: dict[str, str] = {
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

_VALID_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_INVALID_ACCOUNT_CHARS = re.compile(r"[^a-z0-9_-]+")
_DELIVERY_FIELDS = ("deliveryContext", "lastChannel", "lastTo", "lastAccountId", "lastThreadId")
_LEGACY_FIELDS = ("provider", "lastProvider", "room")
# The fields settle_entry reads: a patch touching none of them leaves a settled entry
# settled, so merging it skips the normalisation passes (the hot path of update()).
_NORMALIZED_FIELDS = frozenset(
    {*_DELIVERY_FIELDS, *_LEGACY_FIELDS, "channel", "origin", "model", "modelProvider"}
)
# The fields a merge assigns after applying the patch (`{...existing, ...patch, sessionId,
# updatedAt}`): a None for them in the patch falls through (`??`) and the key keeps its place.
_ASSIGNED_FIELDS = frozenset({"sessionId", "updatedAt"})


def new_session_id() -> str:
    """A fresh session id (a random UUID, like ``crypto.randomUUID()``)."""
    return str(uuid.uuid4())


def sort_time(entry: Mapping[str, Any] | None) -> int | float:
    """The ``updatedAt`` used for ordering: the number, or 0 when missing or not a number."""
    if entry is None:
        return 0
    value = as_number(entry.get("updatedAt"))
    return 0 if value is None else value


def as_entry(value: object) -> Entry:
    """Check that ``value`` is a JSON object with string keys and return a shallow copy."""
    if not isinstance(value, Mapping):
        raise InvalidEntryError(
            f"a session entry must be a JSON object (dict), got {show(value)} ({json_type(value)})"
        )
    for k in value:
        if not isinstance(k, str):
            raise InvalidEntryError(f"entry field names must be strings, got {show(k)}")
    return dict(value)


# --- normalisation -------------------------------------------------------------------------


def normalize_channel(value: object) -> str | None:
    """Trim, lowercase and de-alias a channel id; None when blank or not a string."""
    if not isinstance(value, str):
        return None
    channel = js_trim(value).lower()
    if not channel:
        return None
    return CHANNEL_ALIASES.get(channel, channel)


def normalize_account_id(value: object) -> str | None:
    """Normalise an account id like OpenClaw's ``normalizeAccountId``; None when empty."""
    if not isinstance(value, str):
        return None
    account = js_trim(value).lower()
    if not account:
        return None
    if _VALID_ACCOUNT.match(account):
        return account
    account = _INVALID_ACCOUNT_CHARS.sub("-", account).strip("-")[:64]
    return account or None


def _normalize_thread_id(value: object) -> str | int | float | None:
    number = as_number(value)
    if number is not None:
        if isinstance(number, float):
            if abs(number) >= 2**53:
                return number  # already integral; int(1e300) would be an int JSON cannot carry
            return int(number)  # Math.trunc
        return number
    if isinstance(value, str):
        trimmed = js_trim(value)
        return trimmed or None
    return None


def _normalize_trimmed(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return js_trim(value) or None


def _normalize_delivery_context(ctx: Mapping[str, Any] | None) -> Entry | None:
    if not isinstance(ctx, Mapping):
        return None
    out: Entry = {}
    channel = normalize_channel(ctx.get("channel"))
    to = _normalize_trimmed(ctx.get("to"))
    account = normalize_account_id(ctx.get("accountId"))
    thread = _normalize_thread_id(ctx.get("threadId"))
    if channel is not None:
        out["channel"] = channel
    if to is not None:
        out["to"] = to
    if account is not None:
        out["accountId"] = account
    if thread is not None:
        out["threadId"] = thread
    return out or None


def _merge_delivery(primary: Entry | None, fallback: Entry | None) -> Entry | None:
    if primary is None and fallback is None:
        return None
    p = primary or {}
    f = fallback or {}
    conflict = bool(p.get("channel") and f.get("channel") and p["channel"] != f["channel"])

    def pick(field: str) -> Any:
        if conflict:
            return p.get(field)
        return p[field] if p.get(field) is not None else f.get(field)

    return _normalize_delivery_context(
        {
            "channel": p.get("channel") if p.get("channel") is not None else f.get("channel"),
            "to": pick("to"),
            "accountId": pick("accountId"),
            "threadId": pick("threadId"),
        }
    )


def _normalize_delivery(entry: Entry) -> Entry:
    """``normalizeSessionEntryDelivery``: route fields and deliveryContext kept in step."""
    origin = entry.get("origin")
    existing_ctx = entry.get("deliveryContext")
    ctx_thread = existing_ctx.get("threadId") if isinstance(existing_ctx, Mapping) else None
    origin_thread = origin.get("threadId") if isinstance(origin, Mapping) else None
    last_thread = entry.get("lastThreadId")
    if last_thread is None:
        last_thread = ctx_thread if ctx_thread is not None else origin_thread
    last_channel = entry.get("lastChannel")
    merged = _merge_delivery(
        _normalize_delivery_context(
            {
                "channel": last_channel if last_channel is not None else entry.get("channel"),
                "to": entry.get("lastTo"),
                "accountId": entry.get("lastAccountId"),
                "threadId": last_thread,
            }
        ),
        _normalize_delivery_context(existing_ctx if isinstance(existing_ctx, Mapping) else None),
    )
    wanted: dict[str, Any] = {
        "deliveryContext": merged,
        "lastChannel": merged.get("channel") if merged else None,
        "lastTo": merged.get("to") if merged else None,
        "lastAccountId": merged.get("accountId") if merged else None,
        "lastThreadId": merged.get("threadId") if merged else None,
    }
    # As upstream, deliveryContext counts as unchanged when its four route fields are, so
    # other fields in it survive until the route itself changes.
    ctx = existing_ctx if isinstance(existing_ctx, Mapping) else {}
    same_ctx = all(
        json_equal(ctx.get(f), (merged or {}).get(f))
        for f in ("channel", "to", "accountId", "threadId")
    )
    if same_ctx and all(
        json_equal(entry.get(f), wanted[f]) and (f in entry) == (wanted[f] is not None)
        for f in _DELIVERY_FIELDS[1:]
    ):
        return entry
    out = dict(entry)
    for field in _DELIVERY_FIELDS:
        value = wanted[field]
        if value is None:
            out.pop(field, None)
        else:
            out[field] = value
    return out


def json_equal(a: object, b: object) -> bool:
    """JSON equality that tells 1 from True and 1 from 1.0 (types must survive round trips)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _normalize_runtime_model(entry: Entry) -> Entry:
    """``normalizeSessionRuntimeModelFields``: trim model fields, drop blank ones."""
    if "model" not in entry and "modelProvider" not in entry:
        return entry
    model = entry.get("model")
    provider = entry.get("modelProvider")
    out = entry
    if "model" in entry:
        # A null model is blank like an empty one: both it and the provider go.
        trimmed = js_trim(model) if isinstance(model, str) else model
        if trimmed == "" or trimmed is None:
            out = dict(entry)
            out.pop("model", None)
            out.pop("modelProvider", None)
            return out
        if trimmed != model:
            out = dict(entry)
            out["model"] = trimmed
    elif "modelProvider" in entry:
        # An orphan provider without a model is removed at the write boundary.
        out = dict(entry)
        out.pop("modelProvider", None)
        return out
    if "modelProvider" in out:
        trimmed_p = js_trim(provider) if isinstance(provider, str) else provider
        if trimmed_p == "" or trimmed_p is None:
            out = dict(out) if out is entry else out
            out.pop("modelProvider", None)
        elif trimmed_p != provider:
            out = dict(out) if out is entry else out
            out["modelProvider"] = trimmed_p
    return out


def normalize_entry(entry: Entry) -> Entry:
    """Apply ``normalizeSessionStore``'s per-entry rules (model fields, delivery route).

    Returns the same object when nothing changes, else a new dict.
    """
    return _normalize_delivery(_normalize_runtime_model(entry))


def settle_entry(entry: Entry) -> Entry:
    """What a write leaves behind as every later load sees it (the entry to store).

    Upstream normalises an entry when it saves it (spec 5.2), migrates the legacy
    ``provider``/``lastProvider``/``room`` fields and normalises again when it next loads
    it (spec 5.1, 7.1), and so on at every save and load until nothing changes: one round
    is not idempotent (a blank ``lastChannel`` is used by ``??`` and dropped, and only the
    next save falls back to ``channel`` or the next load migrates ``lastProvider``; blank
    thread ids and ``origin.threadId`` behave alike). Settling at the write and load
    boundaries stores the converged entry at once, so an entry reads back exactly as it was
    stored, on every backend and after every reload.
    """
    return _converge(normalize_entry(entry))


def _converge(saved: Entry) -> Entry:
    """Load, save, load, ... from an entry as saved (normalised) until nothing changes."""
    entry = saved
    for _ in range(8):  # each changing round drops a blank field or migrates a legacy one
        migrated = apply_legacy_migrations(entry)
        loaded = normalize_entry(migrated)
        if loaded is migrated and migrated is entry:
            break  # the load changed nothing, so neither will the next save and load
        entry = normalize_entry(loaded)  # the next save
        if entry is loaded and apply_legacy_migrations(entry) is entry:
            break
    return entry


def apply_legacy_migrations(entry: Entry) -> Entry:
    """Migrate legacy ``provider``/``lastProvider``/``room`` fields (``store-migrations.ts``).

    Returns the same object when nothing changes, else a new dict.
    """
    provider = entry.get("provider")
    last_provider = entry.get("lastProvider")
    if not (
        "room" in entry
        or (isinstance(provider, str) and not isinstance(entry.get("channel"), str))
        or (isinstance(last_provider, str) and not isinstance(entry.get("lastChannel"), str))
    ):
        return entry
    out = dict(entry)
    if isinstance(provider, str) and not isinstance(out.get("channel"), str):
        out["channel"] = provider
        del out["provider"]
    if isinstance(last_provider, str) and not isinstance(out.get("lastChannel"), str):
        out["lastChannel"] = last_provider
        del out["lastProvider"]
    if "room" in out:
        room = out.pop("room")  # always deleted, whatever its type (as upstream)
        if isinstance(room, str) and not isinstance(out.get("groupChannel"), str):
            out["groupChannel"] = room
    return out


def load_normalize(entry: Entry) -> Entry:
    """An entry of an OpenClaw-written store as a load returns it.

    Legacy migrations, then normalisation, converged like :func:`settle_entry`.
    """
    migrated = apply_legacy_migrations(entry)
    loaded = normalize_entry(migrated)
    return loaded if loaded is migrated else _converge(normalize_entry(loaded))


# --- merges --------------------------------------------------------------------------------


def _apply_patch(base: Entry, patch: Mapping[str, Any]) -> Entry:
    out = dict(base)
    for field, value in patch.items():
        if value is None:
            if field in _ASSIGNED_FIELDS:
                out.setdefault(field, None)  # assigned next: the key keeps its place
            else:
                out.pop(field, None)  # JSON has no `undefined`: None deletes the field
        else:
            out[field] = value
    return out


def merge_entry(
    existing: Entry | None,
    patch: Mapping[str, Any],
    *,
    preserve_activity: bool = False,
    now: int | None = None,
    assume_settled: bool = False,
) -> Entry:
    """Merge a patch into an entry (``mergeSessionEntry`` / ``...PreserveActivity``).

    Args:
        existing: The current entry, or None for a new one.
        patch: Fields to set; a None value deletes that field. Nested objects are replaced
            whole.
        preserve_activity: Keep the existing ``updatedAt`` (inbound-metadata writes) instead
            of moving it to at least now.
        now: The current time in ms (for tests).
        assume_settled: ``existing`` is known to be normalised (read from a store): a
            patch that touches no field the normalisation reads then skips it. The result
            may share nested objects with ``existing``.

    Returns:
        The merged, normalised entry.
    """
    current = now_ms() if now is None else now
    patch_id = patch.get("sessionId")
    existing_id = existing.get("sessionId") if existing else None
    session_id = patch_id if patch_id is not None else existing_id
    if session_id is None:
        session_id = new_session_id()
    patch_time = patch.get("updatedAt")
    if existing is not None and preserve_activity:
        existing_time = existing.get("updatedAt")
        if existing_time is not None:
            updated_at: Any = existing_time
        else:
            updated_at = patch_time if patch_time is not None else current
    else:
        updated_at = max(sort_time(existing), sort_time({"updatedAt": patch_time}), current)

    merged = _apply_patch(existing or {}, patch)
    merged["sessionId"] = session_id
    merged["updatedAt"] = updated_at

    if existing is not None and patch.get("model") is not None and "modelProvider" not in patch:
        new_model = patch["model"].strip() if isinstance(patch["model"], str) else patch["model"]
        old = existing.get("model")
        old_model = old.strip() if isinstance(old, str) else old
        if new_model != old_model:
            merged.pop("modelProvider", None)  # stale-provider guard
    if assume_settled and existing is not None and _NORMALIZED_FIELDS.isdisjoint(patch):
        return merged  # stored entries are settled, and the patch touched nothing it reads
    return settle_entry(merged)


def replace_entry(existing: Entry | None, new: Entry, *, now: int | None = None) -> Entry:
    """Prepare ``new`` to replace ``existing`` whole (``put``).

    ``updatedAt`` is kept exactly as given (now when missing), a missing ``sessionId`` gets a
    fresh UUID, and the ``acp`` block of the existing entry is preserved when the new entry
    has none (as ``updateSessionStore`` does).
    """
    out = dict(new)
    if out.get("sessionId") is None:
        out["sessionId"] = new_session_id()
    if out.get("updatedAt") is None:
        out["updatedAt"] = now_ms() if now is None else now
    if existing is not None and "acp" in existing and "acp" not in out:
        out["acp"] = existing["acp"]
    return settle_entry(out)


# Fields a reset carries over to the new session (spec 5.7); everything else is dropped.
RESET_CARRY_OVER: tuple[str, ...] = (
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
_USER_OVERRIDES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("modelOverrideSource", ("providerOverride", "modelOverride", "modelOverrideSource")),
    (
        "authProfileOverrideSource",
        ("authProfileOverride", "authProfileOverrideSource", "authProfileOverrideCompactionCount"),
    ),
)


def reset_entry(existing: Entry, session_id: str, *, now: int | None = None) -> Entry:
    """The entry a reset (``/new``, ``/reset``, ``sessions.reset``) leaves behind.

    A new ``sessionId``, ``updatedAt`` now, counters cleared, the carry-over fields of spec
    5.7 kept, runtime model fields dropped, and model/auth overrides kept only when the
    user chose them (a ``source`` of ``"auto"`` marks a fallback pin, which is cleared).
    """
    out: Entry = {
        "sessionId": session_id,
        "updatedAt": now_ms() if now is None else now,
        "systemSent": False,
        "abortedLastRun": False,
        "inputTokens": 0,
        "outputTokens": 0,
        "totalTokens": 0,
        "totalTokensFresh": True,
    }
    for field in RESET_CARRY_OVER:
        if field in existing:
            out[field] = existing[field]
    for source_field, fields in _USER_OVERRIDES:
        if existing.get(source_field) != "auto":
            for field in fields:
                if field in existing:
                    out[field] = existing[field]
    return normalize_entry(out)
