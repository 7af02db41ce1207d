"""How ``sessions.entry_json`` is stored: compact JSON, deflated with a preset dictionary.

A typical entry is ~1 KB of compact JSON whose keys and many values (channel names,
``deliveryContext``/``origin`` shapes, model names) repeat in every row; deflate alone cannot
exploit that inside one small value, a preset dictionary of those strings can (to about a
quarter of the size, measured in docs/storage-format.md). A stored value is either:

- compact JSON (it starts with ``{``): every row of schema version 5 and earlier, and a
  value written by hand;
- one :data:`CODEC_DEFLATE_V1` byte, then raw deflate (window 2^13) with :data:`DICTIONARY_V1`.

The dictionary is part of the file format: never change it. A new one gets a new codec byte
and the old one stays readable.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["CODEC_DEFLATE_V1", "DICTIONARY_V1", "pack", "unpack"]

CODEC_DEFLATE_V1: Final = 0x01

# OpenClaw's entry keys in their usual order and values common to many entries (from the
# shape of the spec's typical entry, not from benchmark data). Deflate looks back at most
# 8 KB; the most frequent strings go last (closest to the data).
DICTIONARY_V1: Final = (
    b'"systemPromptReport":0,"skillsSnapshot":0,"spawnedBy":"agent:main:","parentSessionKey":'
    b'"agent:main:","subagentRole":"","label":"","displayName":"","status":"running","done",'
    b'"failed","groupId":"","groupChannel":"","subject":"","space":"","room":"","topicId":'
    b'"lastThreadId":"","elevatedLevel":"","reasoningLevel":"","ttsAuto":false,"sendPolicy":'
    b'"queueMode":"","groupActivation":"","providerOverride":"openai","modelOverride":"gpt-5",'
    b'"anthropic","claude-opus-4-6","claude-sonnet-4-5","google","gemini-3-pro-preview",'
    b'"openrouter","authProfileOverride":"","authProfileOverrideSource":"auto","user",'
    b'"responseUsage":"full","off","tokens","verboseLevel":"on","chatType":"group","channel",'
    b'"slack","discord","whatsapp","signal","imessage","webchat","cron","heartbeat",'
    b'"memoryFlushAt":1774948529731,"memoryFlushCompactionCount":1,"compactionCount":0,'
    b'"cacheRead":15120,"cacheWrite":2310,"totalTokensFresh":true,"estimatedCostUsd":0.1931}'
    b'{"sessionId":"6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44","updatedAt":1774948529731,'
    b'"systemSent":true,"abortedLastRun":false,"thinkingLevel":"low","chatType":"direct",'
    b'"deliveryContext":{"channel":"telegram","to":"8123456789","accountId":"default"},'
    b'"lastChannel":"telegram","lastTo":"8123456789","lastAccountId":"default",'
    b'"origin":{"label":"Ana Silva (@anasilva) id:8123456789","provider":"telegram",'
    b'"surface":"telegram","chatType":"direct","from":"telegram:8123456789",'
    b'"to":"telegram:8123456789","accountId":"default"},'
    b'"sessionFile":"/home/ana/.openclaw/agents/main/sessions/'
    b'6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44.jsonl","compactionCount":0,"skillsSnapshot":0,'
    b'"modelProvider":"anthropic","model":"claude-opus-4-6","contextTokens":200000,'
    b'"inputTokens":18234,"outputTokens":1422,"cacheRead":15120,"cacheWrite":2310,'
    b'"totalTokens":24105,"totalTokensFresh":true,"estimatedCostUsd":0.1931}'
)
_WBITS: Final = 13
_LEVEL: Final = 6
_MEM_LEVEL: Final = 4
_PREFIX: Final = bytes([CODEC_DEFLATE_V1])
# Setting up a deflate state with a dictionary costs more than deflating 1 KB: copy a
# prepared one instead (copies are independent; the prepared states are never used).
_COMPRESSOR: Final = zlib.compressobj(
    _LEVEL, zlib.DEFLATED, -_WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY_V1
)
_DECOMPRESSOR: Final = zlib.decompressobj(-_WBITS, DICTIONARY_V1)


def pack(data: bytes) -> bytes:
    """The stored form of an entry's compact JSON ``data``."""
    c = _COMPRESSOR.copy()
    return _PREFIX + c.compress(data) + c.flush()


def unpack(stored: bytes | str) -> bytes | str:
    """The compact JSON of a stored value (as it is when it was stored as JSON).

    Raises:
        zlib.error: A value marked as deflated does not inflate (damage).
        ValueError: A value starts with a codec byte this version does not know.
    """
    if isinstance(stored, str) or not stored or stored[0] == 0x7B:  # "{"
        return stored
    if stored[0] == CODEC_DEFLATE_V1:
        d = _DECOMPRESSOR.copy()
        out = d.decompress(memoryview(stored)[1:]) + d.flush()
        if not d.eof:
            raise zlib.error("truncated deflate stream")
        return out
    if stored[0] < 0x20:  # a codec byte, never the first byte of JSON text
        raise ValueError(f"unknown entry codec {stored[0]}; upgrade sessionstore")
    return stored
