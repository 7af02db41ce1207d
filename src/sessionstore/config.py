"""The ``session`` section of ``openclaw.json`` (JSON5): parse and validate what we own.

Only ``session.storeType``, ``session.store``, ``session.durability``,
``session.maintainEvery`` and ``session.maintenance`` are ours; every other key of the file
(and of ``session``) belongs to OpenClaw and is ignored. A wrong value in ours raises
``ConfigError`` naming the key, the value and the allowed values: the schema and the code
are this one module.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from .args import MAX_SAFE_INTEGER, as_number, show
from .errors import ConfigError
from .keys import DEFAULT_AGENT_ID, normalize_agent_id

__all__ = [
    "DURABILITIES",
    "ENV_STORE_TYPE",
    "STORE_TYPES",
    "MaintenanceConfig",
    "SessionConfig",
    "load_config",
    "parse_byte_size",
    "parse_duration_ms",
    "resolve_store_type",
]

STORE_TYPES: Final = ("auto", "json", "sqlite")
DURABILITIES: Final = ("normal", "power")
MAINTENANCE_MODES: Final = ("warn", "enforce")
ENV_STORE_TYPE: Final = "SESSIONSTORE_STORE_TYPE"

DAY_MS: Final = 86_400_000
_DURATION_UNITS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
_BYTE_UNITS: Final = {
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([a-z]*)$")


def _bounded(amount: float, value: object, key: str, unit: str) -> float:
    """``amount``, or a ``ConfigError`` when it is beyond ``MAX_SAFE_INTEGER``."""
    if not amount <= MAX_SAFE_INTEGER:  # also catches infinity (and NaN)
        raise ConfigError(
            f"{key}: {show(value)} is too large; the most is {MAX_SAFE_INTEGER} {unit}"
            " (JavaScript's largest exact integer, as OpenClaw reads it)"
        )
    return amount


def parse_duration_ms(value: object, *, key: str, default_unit: str = "d") -> int:
    """Parse a duration like OpenClaw: ``30d``, ``12h``, ``1h30m``, ``500ms``.

    A bare number means ``default_unit`` (days).

    Raises:
        ConfigError: The value is not a positive duration.
    """
    number = as_number(value)
    if number is not None:
        if number <= 0:
            raise ConfigError(f"{key}: {number!r} must be a positive duration (e.g. 30d, 12h)")
        return round(_bounded(number * _DURATION_UNITS[default_unit], number, key, "ms"))
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            amount = float(text) * _DURATION_UNITS[default_unit]
            if amount > 0:
                return round(_bounded(amount, value, key, "ms"))
        elif text and _DURATION_PART.sub("", text) == "":
            total = sum(
                float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text)
            )
            if total > 0:
                return round(_bounded(total, value, key, "ms"))
    raise ConfigError(
        f"{key}: {show(value)} is not a duration; use a number of days or a string such as"
        " '30d', '12h', '1h30m', '500ms'"
    )


def parse_byte_size(value: object, *, key: str) -> int:
    """Parse a byte size like OpenClaw: ``10mb``, ``512kb``, ``2gb`` (1024-based).

    A bare number means bytes; units are ``b, k/kb, m/mb, g/gb, t/tb``.

    Raises:
        ConfigError: The value is not a positive size.
    """
    number = as_number(value)
    if number is not None:
        if number < 1:
            raise ConfigError(f"{key}: {number!r} must be a positive byte size (e.g. 10mb)")
        return math.floor(_bounded(number, number, key, "bytes"))
    if isinstance(value, str):
        match = _BYTES.match(value.strip().lower())
        if match and match.group(2) in ("", *_BYTE_UNITS):
            size = float(match.group(1)) * _BYTE_UNITS.get(match.group(2) or "b", 1)
            if size >= 1:
                return math.floor(_bounded(size, value, key, "bytes"))
    raise ConfigError(
        f"{key}: {show(value)} is not a byte size; use a number of bytes or a string such as"
        " '10mb', '512kb', '2gb'"
    )


@dataclass(frozen=True)
class MaintenanceConfig:
    """``session.maintenance`` with OpenClaw's defaults (spec section 6).

    Attributes:
        mode: ``warn`` (report only, the default) or ``enforce``.
        prune_after_ms: Entries idle longer than this are pruned (default 30 days).
        max_entries: At most this many entries are kept (default 500).
        rotate_bytes: ``sessions.json`` larger than this is rotated (default 10 MiB).
        reset_archive_retention_ms: Age after which ``.reset.`` archives are removed
            (default ``prune_after_ms``; None disables).
        max_disk_bytes: Per-agent sessions dir budget (None = off).
        high_water_bytes: Target size after budget eviction (default 80% of the budget).
    """

    mode: str = "warn"
    prune_after_ms: int = 30 * DAY_MS
    max_entries: int = 500
    rotate_bytes: int = 10 * 1024 * 1024
    reset_archive_retention_ms: int | None = 30 * DAY_MS
    max_disk_bytes: int | None = None
    high_water_bytes: int | None = None


_MAINTENANCE_KEYS: Final = (
    "mode",
    "pruneAfter",
    "pruneDays",
    "maxEntries",
    "rotateBytes",
    "resetArchiveRetention",
    "maxDiskBytes",
    "highWaterBytes",
)


def parse_maintenance(raw: object, *, where: str = "session.maintenance") -> MaintenanceConfig:
    """Validate ``session.maintenance`` (strict: unknown keys are errors, as upstream).

    Raises:
        ConfigError: An unknown key or a wrong value.
    """
    if raw is None:
        return MaintenanceConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an object, got {type(raw).__name__}")
    for k in raw:
        if k not in _MAINTENANCE_KEYS:
            raise ConfigError(
                f"{where}.{k} is not a maintenance setting; allowed: {', '.join(_MAINTENANCE_KEYS)}"
            )
    mode = raw.get("mode", "warn")
    if mode not in MAINTENANCE_MODES:
        raise ConfigError(
            f"{where}.mode: {show(mode)} is not one of {', '.join(MAINTENANCE_MODES)}"
        )
    if raw.get("pruneAfter") is not None:
        prune = parse_duration_ms(raw["pruneAfter"], key=f"{where}.pruneAfter")
    elif raw.get("pruneDays") is not None:
        days = raw["pruneDays"]
        if not (isinstance(days, int) and not isinstance(days, bool) and days > 0):
            raise ConfigError(f"{where}.pruneDays: {show(days)} must be a positive integer")
        prune = round(_bounded(days * DAY_MS, days, f"{where}.pruneDays", "ms"))
    else:
        prune = MaintenanceConfig.prune_after_ms
    max_entries = raw.get("maxEntries", MaintenanceConfig.max_entries)
    if not (isinstance(max_entries, int) and not isinstance(max_entries, bool) and max_entries > 0):
        raise ConfigError(f"{where}.maxEntries: {show(max_entries)} must be a positive integer")
    _bounded(max_entries, max_entries, f"{where}.maxEntries", "entries")
    rotate = (
        parse_byte_size(raw["rotateBytes"], key=f"{where}.rotateBytes")
        if raw.get("rotateBytes") is not None
        else MaintenanceConfig.rotate_bytes
    )
    retention_raw = raw.get("resetArchiveRetention")
    retention: int | None
    if retention_raw is False:
        retention = None
    elif retention_raw is None:
        retention = prune
    else:
        retention = parse_duration_ms(retention_raw, key=f"{where}.resetArchiveRetention")
    max_disk = (
        parse_byte_size(raw["maxDiskBytes"], key=f"{where}.maxDiskBytes")
        if raw.get("maxDiskBytes") is not None
        else None
    )
    high_water: int | None = None
    if max_disk is not None:
        if raw.get("highWaterBytes") is not None:
            high_water = parse_byte_size(raw["highWaterBytes"], key=f"{where}.highWaterBytes")
        else:
            high_water = max(1, (max_disk * 8) // 10)
        high_water = min(high_water, max_disk)
    return MaintenanceConfig(
        mode=str(mode),
        prune_after_ms=prune,
        max_entries=max_entries,
        rotate_bytes=rotate,
        reset_archive_retention_ms=retention,
        max_disk_bytes=max_disk,
        high_water_bytes=high_water,
    )


@dataclass(frozen=True)
class SessionConfig:
    """What we read from ``openclaw.json``.

    Attributes:
        path: The config file (it may not exist).
        store_type: ``session.storeType`` (default ``auto``).
        store: ``session.store``: a path or ``{agentId}`` template, or None.
        durability: ``session.durability`` (default ``normal``).
        maintenance: ``session.maintenance``.
        maintain_every_ms: ``session.maintainEvery``: run maintenance after a write at most
            once per this interval (None, the default: only when asked).
        agents: Agent ids from ``agents.list[].id``, in order.
        default_agent: The agent marked ``default: true``, else the first, else ``main``.
    """

    path: Path | None = None
    store_type: str = "auto"
    store: str | None = None
    durability: str = "normal"
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    maintain_every_ms: int | None = None
    agents: tuple[str, ...] = ()
    default_agent: str = DEFAULT_AGENT_ID


def _choice(value: object, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{key}: {show(value)} is not one of {', '.join(allowed)}")
    return str(value)


def _agents(raw: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    agents = raw.get("agents")
    listed = agents.get("list") if isinstance(agents, Mapping) else None
    ids: list[str] = []
    default = None
    if isinstance(listed, list):
        for item in listed:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                agent = normalize_agent_id(item["id"])
                if agent not in ids:
                    ids.append(agent)
                if item.get("default") is True and default is None:
                    default = agent
    return tuple(ids), default or (ids[0] if ids else DEFAULT_AGENT_ID)


def parse_config(raw: object, path: Path | None = None) -> SessionConfig:
    """Validate a parsed config document (see :func:`load_config`)."""
    where = str(path) if path else "config"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: the config must be a JSON object")
    agents, default_agent = _agents(raw)
    session = raw.get("session")
    if session is None:
        return SessionConfig(path=path, agents=agents, default_agent=default_agent)
    if not isinstance(session, Mapping):
        raise ConfigError(f"{where}: session must be an object, got {type(session).__name__}")
    store = session.get("store")
    if store is not None and (not isinstance(store, str) or not store.strip()):
        raise ConfigError(f"session.store: {show(store)} must be a non-empty path string")
    return SessionConfig(
        path=path,
        store_type=_choice(session.get("storeType", "auto"), STORE_TYPES, "session.storeType"),
        store=store.strip() if isinstance(store, str) else None,
        durability=_choice(session.get("durability", "normal"), DURABILITIES, "session.durability"),
        maintenance=parse_maintenance(session.get("maintenance")),
        maintain_every_ms=(
            None
            if session.get("maintainEvery") is None or session.get("maintainEvery") is False
            else parse_duration_ms(session["maintainEvery"], key="session.maintainEvery")
        ),
        agents=agents,
        default_agent=default_agent,
    )


# Parsed configs by path, with the identity of the file they were parsed from.
_loaded: dict[str, tuple[tuple[int, ...], SessionConfig]] = {}
_LOADED_MAX: Final = 32
# File systems stamp times with a coarse clock (a few ms, up to 2 s on some): a file
# rewritten in place, at the same size, within the tick that stamped both its mtime and
# its ctime would keep its identity. Such a file is parsed on every load, not cached.
_SETTLED_NS: Final = 2_000_000_000


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load_config(path: Path) -> SessionConfig:
    """Read ``openclaw.json`` (JSON5) and validate our part; a missing file means defaults.

    Plain JSON is parsed with orjson, JSON5 (comments, unquoted keys, ...) only when that
    fails. The result is cached by the file's identity (device, inode, size, mtime, ctime):
    loading an unchanged file again costs one ``stat``.

    Raises:
        ConfigError: The file does not parse or our settings are invalid.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return SessionConfig(path=None)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    cached = _loaded.get(name)
    if cached is not None and cached[0] == _identity(st):
        return cached[1]
    try:
        with open(name, "rb") as f:
            st = os.fstat(f.fileno())  # the identity of the bytes read, not of a later file
            data = f.read()
    except FileNotFoundError:
        return SessionConfig(path=None)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if data.strip():
        config = parse_config(_parse_document(data, path), path)
    else:
        config = SessionConfig(path=path)
    if time.time_ns() - min(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
        if len(_loaded) >= _LOADED_MAX:
            _loaded.clear()
        _loaded[name] = (_identity(st), config)
    return config


def _parse_document(data: bytes, path: Path) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # not plain JSON: comments, unquoted keys, trailing commas, a BOM, ...
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        import json5  # a slow pure-Python parser: loaded only for a file that needs it

        return json5.loads(text)
    except Exception as exc:  # json5 raises ValueError subclasses with positions
        raise ConfigError(f"{path} is not valid JSON5: {exc}; fix the file") from exc


def resolve_store_type(
    explicit: str | None, config: SessionConfig, environ: Mapping[str, str] | None = None
) -> str:
    """Store type by precedence: argument > ``SESSIONSTORE_STORE_TYPE`` > config > ``auto``.

    Raises:
        ConfigError: The chosen value is not a known store type.
    """
    if explicit is not None:
        return _choice(explicit, STORE_TYPES, "store_type")
    env = os.environ if environ is None else environ
    from_env = env.get(ENV_STORE_TYPE, "").strip()
    if from_env:
        return _choice(from_env, STORE_TYPES, ENV_STORE_TYPE)
    return config.store_type
