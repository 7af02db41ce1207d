"""Settings: ``sessionstore.json``, ``SESSIONSTORE_*`` variables, and OpenClaw's own keys.

OpenClaw validates ``openclaw.json`` strictly: a key it does not know under ``session`` makes
the gateway refuse to start (``INVALID_CONFIG``). So this library's own settings never live
there. They come, by precedence, from the arguments of ``open_store``, the ``SESSIONSTORE_*``
environment variables, ``<stateDir>/sessionstore.json`` (JSON5 accepted), and then the
``session`` keys of ``openclaw.json`` that OpenClaw itself defines (``store``,
``maintenance``, and ``storeType`` where a PR #58550 build has it); then the defaults. Our
keys found in ``openclaw.json`` (``durability``, ``maintainEvery``: from older versions of
this library) are still read, and the doctor reports them with the fix. A wrong value
raises ``ConfigError`` naming the file (or variable), the key, the value and the allowed
values: the schema and the code are this one module.
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

from .args import MAX_SAFE_INTEGER, as_number, json_type, show
from .errors import ConfigError
from .keys import DEFAULT_AGENT_ID, normalize_agent_id

__all__ = [
    "CRON_RETENTION_MS",
    "DURABILITIES",
    "ENV",
    "ENV_STORE_TYPE",
    "OPENCLAW_SESSION_KEYS",
    "SETTINGS_FILE",
    "STORE_TYPES",
    "MaintenanceConfig",
    "PostgresConfig",
    "SessionConfig",
    "load_config",
    "load_settings",
    "parse_byte_size",
    "parse_cron_retention",
    "parse_duration_ms",
    "resolve_store_type",
]

STORE_TYPES: Final = ("auto", "json", "sqlite", "postgres")
DURABILITIES: Final = ("normal", "power")
MAINTENANCE_MODES: Final = ("warn", "enforce")
ENV_STORE_TYPE: Final = "SESSIONSTORE_STORE_TYPE"
SETTINGS_FILE: Final = "sessionstore.json"
# Our settings, as written in sessionstore.json, and the variables that set them.
SETTINGS_KEYS: Final = (
    "storeType",
    "store",
    "durability",
    "maintainEvery",
    "maintenance",
    "postgres",
)
ENV: Final = {
    ENV_STORE_TYPE: "storeType",
    "SESSIONSTORE_STORE": "store",
    "SESSIONSTORE_DURABILITY": "durability",
    "SESSIONSTORE_MAINTAIN_EVERY": "maintainEvery",
}
# The PostgreSQL settings (`postgres: {dsn, schema, poolSize}`), one variable each.
ENV_POSTGRES: Final = {
    "SESSIONSTORE_PG_DSN": "dsn",
    "SESSIONSTORE_PG_SCHEMA": "schema",
    "SESSIONSTORE_PG_POOL_SIZE": "poolSize",
    "SESSIONSTORE_PG_PARTITIONS": "partitions",
    "SESSIONSTORE_PG_TRANSCRIPTS": "transcripts",
}
POSTGRES_KEYS: Final = ("dsn", "schema", "poolSize", "partitions", "transcripts")
PG_TRANSCRIPT_MODES: Final = ("table", "files")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The keys of OpenClaw's `session` schema (zod, `.strict()`: any other key makes the gateway
# refuse to start), as of OpenClaw 2026.x. `storeType` is known only to PR #58550 builds.
OPENCLAW_SESSION_KEYS: Final = frozenset(
    {
        "scope",
        "dmScope",
        "identityLinks",
        "resetTriggers",
        "idleMinutes",
        "reset",
        "resetByType",
        "resetByChannel",
        "store",
        "typingIntervalSeconds",
        "typingMode",
        "parentForkMaxTokens",
        "mainKey",
        "sendPolicy",
        "agentToAgent",
        "threadBindings",
        "maintenance",
    }
)
# What we read from openclaw.json's `session` section: OpenClaw's keys that concern the
# store, and ours that older versions of this library documented there.
_FROM_OPENCLAW: Final = (
    "store",
    "maintenance",
    "storeType",
    "durability",
    "maintainEvery",
    "postgres",
)

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


CRON_RETENTION_MS: Final = 24 * 3_600_000


def parse_cron_retention(raw: object) -> int | None:
    """``cron.sessionRetention`` as OpenClaw's cron reaper reads it.

    ``false`` disables the reaper (None). A string is a duration whose bare numbers mean
    hours (``"48"``, ``"2d"``, ``"36h"``). Anything else, including a string that is not a
    duration and a plain number, means the default of 24 hours: upstream falls back to it
    rather than failing, and a setting the gateway accepts must not stop this store either.
    """
    if raw is False:
        return None
    if isinstance(raw, str):
        try:
            return parse_duration_ms(raw, key="cron.sessionRetention", default_unit="h")
        except ConfigError:
            return CRON_RETENTION_MS
    return CRON_RETENTION_MS


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
        raise ConfigError(f"{where} must be a JSON object, not {json_type(raw)}")
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
class PostgresConfig:
    """The ``postgres`` settings.

    Attributes:
        dsn: The PostgreSQL conninfo or URL (``SESSIONSTORE_PG_DSN``); None when not set.
        schema: The PostgreSQL schema holding the store's tables (default ``sessionstore``).
        pool_size: Connections the store's pool keeps at most (default 4).
        partitions: Create the tables ``PARTITION BY HASH (agent_id)`` with this many
            partitions (default 0: plain tables); see docs/scaling.md.
        transcripts: Where ``store.transcript(key)`` keeps transcripts: ``table`` (the
            default: the ``transcripts`` table, shared by every host) or ``files``
            (``.jsonl`` files in the sessions dir, e.g. after ``migrate
            --keep-transcript-files``).
    """

    dsn: str | None = field(default=None, repr=False)  # may hold a password
    schema: str = "sessionstore"
    pool_size: int = 4
    partitions: int = 0
    transcripts: str = "table"


def parse_postgres(raw: Mapping[str, tuple[object, str]]) -> PostgresConfig:
    """Validate the ``postgres`` settings (key -> (value, where it came from)).

    Raises:
        ConfigError: A value of the wrong type or range; the message names where it came
            from (never the DSN itself, which may hold a password).
    """
    out: dict[str, Any] = {}
    if "dsn" in raw:
        dsn, where = raw["dsn"]
        if dsn is not None:
            if not isinstance(dsn, str) or not dsn.strip():
                raise ConfigError(f"{where} must be a non-empty PostgreSQL conninfo or URL")
            out["dsn"] = dsn.strip()
    if "schema" in raw:
        schema, where = raw["schema"]
        if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema):
            raise ConfigError(
                f"{where}: {show(schema)} is not a schema name this store uses (lowercase"
                " letters, digits and _, not starting with a digit, at most 63)"
            )
        out["schema"] = schema
    if "poolSize" in raw:
        size, where = raw["poolSize"]
        if isinstance(size, str) and size.strip().isdigit():
            size = int(size)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
            raise ConfigError(f"{where}: {show(size)} must be an integer from 1 to 1000")
        out["pool_size"] = size
    if "partitions" in raw:
        parts, where = raw["partitions"]
        if isinstance(parts, str) and parts.strip().isdigit():
            parts = int(parts)
        if isinstance(parts, bool) or not isinstance(parts, int) or not 0 <= parts <= 1024:
            raise ConfigError(f"{where}: {show(parts)} must be an integer from 0 to 1024")
        out["partitions"] = parts
    if "transcripts" in raw:
        mode, where = raw["transcripts"]
        if mode not in PG_TRANSCRIPT_MODES:
            raise ConfigError(f"{where}: {show(mode)} must be one of table, files")
        out["transcripts"] = mode
    return PostgresConfig(**out)


@dataclass(frozen=True)
class SessionConfig:
    """The settings of a state dir, merged from every source (see the module docstring).

    Attributes:
        path: ``openclaw.json``, when it exists.
        settings_path: ``sessionstore.json``, when it exists.
        store_type: ``storeType`` (default ``auto``).
        store: ``store``: a path or ``{agentId}`` template, or None.
        durability: ``durability`` (default ``normal``).
        maintenance: ``maintenance`` (OpenClaw's keys; sessionstore.json's override
            openclaw.json's one by one).
        maintain_every_ms: ``maintainEvery``: run maintenance after a write at most once
            per this interval (None, the default: only when asked).
        agents: Agent ids from ``agents.list[].id`` of openclaw.json, in order.
        default_agent: The agent marked ``default: true``, else the first, else ``main``.
        sources: Where each setting given anywhere came from (``SESSIONSTORE_STORE_TYPE``,
            ``sessionstore.json``, ``openclaw.json``).
        rejected_keys: Keys of openclaw.json's ``session`` section that upstream OpenClaw
            rejects (ours included), for the doctor.
        postgres: The ``postgres`` settings (DSN, schema, pool size).
        cron_session_retention_ms: openclaw.json's ``cron.sessionRetention``: cron run
            sessions idle longer than this are reaped (default 24 hours; None when the
            setting is ``false``). See :func:`parse_cron_retention`.
    """

    path: Path | None = None
    settings_path: Path | None = None
    store_type: str = "auto"
    store: str | None = None
    durability: str = "normal"
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    maintain_every_ms: int | None = None
    agents: tuple[str, ...] = ()
    default_agent: str = DEFAULT_AGENT_ID
    sources: Mapping[str, str] = field(default_factory=dict)
    rejected_keys: tuple[str, ...] = ()
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    cron_session_retention_ms: int | None = CRON_RETENTION_MS


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


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a JSON object, not {json_type(value)}")
    return value


def _settle(values: dict[str, tuple[object, str]], **base: Any) -> SessionConfig:
    """Validate merged raw settings; ``values`` maps a key to (value, where it came from)."""

    def where(key: str) -> str:
        return values[key][1]

    out: dict[str, Any] = {}
    if "storeType" in values:
        out["store_type"] = _choice(values["storeType"][0], STORE_TYPES, where("storeType"))
    if "store" in values:
        store = values["store"][0]
        if not isinstance(store, str) or not store.strip():
            raise ConfigError(f"{where('store')}: {show(store)} must be a non-empty path string")
        out["store"] = store.strip()
    if "durability" in values:
        out["durability"] = _choice(values["durability"][0], DURABILITIES, where("durability"))
    if "maintainEvery" in values:
        every = values["maintainEvery"][0]
        if every is not None and every is not False:
            out["maintain_every_ms"] = parse_duration_ms(every, key=where("maintainEvery"))
    if "maintenance" in values:
        raw, origin = values["maintenance"]
        out["maintenance"] = parse_maintenance(raw, where=origin)
    if "postgres" in values:
        out["postgres"] = parse_postgres(values["postgres"][0])  # type: ignore[arg-type]
    return SessionConfig(**base, **out)


def _source(label: str) -> str:
    """The file name or variable of an error label (``/x/sessionstore.json: store``)."""
    head = label.split(": ", 1)[0]
    return os.path.basename(head) if head.endswith(".json") else head


def parse_config(
    raw: object,
    path: Path | None = None,
    settings: object = None,
    settings_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> SessionConfig:
    """Merge and validate parsed documents and the environment (see :func:`load_settings`).

    Args:
        raw: The parsed ``openclaw.json`` (None when there is none).
        path: Its path, for messages.
        settings: The parsed ``sessionstore.json`` (None when there is none).
        settings_path: Its path, for messages.
        environ: The environment (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    openclaw_name = str(path) if path else "openclaw.json"
    values: dict[str, tuple[object, str]] = {}
    agents: tuple[str, ...] = ()
    default_agent = DEFAULT_AGENT_ID
    rejected: list[str] = []
    maintenance: dict[str, Any] = {}
    maintenance_from: list[str] = []
    postgres: dict[str, tuple[object, str]] = {}

    def take_postgres(value: object, where: str) -> None:
        if value is None:
            return
        for k, v in _object(value, where).items():
            if k not in POSTGRES_KEYS:
                raise ConfigError(
                    f"{where}: {k!r} is not a postgres setting; allowed: {', '.join(POSTGRES_KEYS)}"
                )
            postgres[k] = (v, f"{where}.{k}")

    cron_retention: int | None = CRON_RETENTION_MS
    if raw is not None:
        document = _object(raw, f"{openclaw_name}: the config")
        agents, default_agent = _agents(document)
        cron = document.get("cron")
        if isinstance(cron, Mapping):
            cron_retention = parse_cron_retention(cron.get("sessionRetention"))
        session = document.get("session")
        if session is not None:
            section = _object(session, f"{openclaw_name}: session")
            rejected = [k for k in section if k not in OPENCLAW_SESSION_KEYS]
            if "postgres" in section:
                take_postgres(section["postgres"], f"{openclaw_name}: session.postgres")
            for key in _FROM_OPENCLAW:
                if key in section and key not in ("maintenance", "postgres"):
                    values[key] = (section[key], f"{openclaw_name}: session.{key}")
            if section.get("maintenance") is not None:
                maintenance.update(
                    _object(section["maintenance"], f"{openclaw_name}: session.maintenance")
                )
                maintenance_from.append(f"{openclaw_name}: session.maintenance")
    if settings is not None:
        settings_name = str(settings_path) if settings_path else SETTINGS_FILE
        ours = _object(settings, f"{settings_name}: the settings")
        for key, value in ours.items():
            if key not in SETTINGS_KEYS:
                raise ConfigError(
                    f"{settings_name}: {key!r} is not a sessionstore setting; allowed:"
                    f" {', '.join(SETTINGS_KEYS)}"
                )
            if key == "postgres":
                take_postgres(value, f"{settings_name}: postgres")
            elif key == "maintenance":
                if value is not None:
                    maintenance.update(_object(value, f"{settings_name}: maintenance"))
                    maintenance_from.append(f"{settings_name}: maintenance")
            else:
                values[key] = (value, f"{settings_name}: {key}")
    for name, key in ENV.items():
        text = env.get(name, "").strip()
        if text:
            values[key] = (text, name)
    for name, key in ENV_POSTGRES.items():
        text = env.get(name, "").strip()
        if text:
            postgres[key] = (text, name)
    if maintenance_from:
        values["maintenance"] = (maintenance, " and ".join(maintenance_from))
    if postgres:
        values["postgres"] = (postgres, "postgres")
    return _settle(
        values,
        sources={k: _source(label) for k, (_, label) in values.items()},
        path=path,
        settings_path=settings_path,
        agents=agents,
        default_agent=default_agent,
        rejected_keys=tuple(rejected),
        cron_session_retention_ms=cron_retention,
    )


# Parsed documents by path, with the identity of the file they were parsed from.
_loaded: dict[str, tuple[tuple[int, ...], object]] = {}
_LOADED_MAX: Final = 32
# Settings merged from unchanged files and the same environment.
_merged: dict[tuple[Any, ...], SessionConfig] = {}
# File systems stamp times with a coarse clock (a few ms, up to 2 s on some): a file
# rewritten in place, at the same size, within the tick that stamped both its mtime and
# its ctime would keep its identity. Such a file is parsed on every load, not cached.
_SETTLED_NS: Final = 2_000_000_000


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_document(path: Path) -> tuple[bool, object, tuple[int, ...] | None]:
    """(exists, parsed document, identity) of a JSON/JSON5 file; empty parses as None.

    Plain JSON is parsed with orjson, JSON5 (comments, unquoted keys, ...) only when that
    fails. The result is cached by the file's identity (device, inode, size, mtime, ctime):
    reading an unchanged file again costs one ``stat``.
    """
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return False, None, None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    cached = _loaded.get(name)
    if cached is not None and cached[0] == _identity(st):
        return True, cached[1], cached[0]
    try:
        with open(name, "rb") as f:
            st = os.fstat(f.fileno())  # the identity of the bytes read, not of a later file
            data = f.read()
    except FileNotFoundError:
        return False, None, None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    document = _parse_document(data, path) if data.strip() else None
    if time.time_ns() - min(st.st_mtime_ns, st.st_ctime_ns) <= _SETTLED_NS:
        return True, document, None  # too fresh to be told apart from a rewrite: no cache
    if len(_loaded) >= _LOADED_MAX:
        _loaded.clear()
    _loaded[name] = (_identity(st), document)
    return True, document, _identity(st)


def load_config(
    path: Path,
    *,
    settings: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> SessionConfig:
    """Read ``openclaw.json`` (and ``sessionstore.json`` when given) into settings.

    Missing files mean defaults. Files are parsed once and kept until they change.

    Raises:
        ConfigError: A file does not parse, or a setting is invalid.
    """
    env = os.environ if environ is None else environ
    exists, raw, identity = _read_document(path)
    settings_exists, ours, settings_identity = (
        _read_document(settings) if settings is not None else (False, None, None)
    )
    key = (
        os.fspath(path),
        identity,
        os.fspath(settings) if settings is not None else None,
        settings_identity,
        tuple(env.get(name) for name in (*ENV, *ENV_POSTGRES)),
    )
    cacheable = (identity is not None or not exists) and (
        settings_identity is not None or not settings_exists
    )
    cached = _merged.get(key) if cacheable else None
    if cached is not None:
        return cached
    config = parse_config(
        raw, path if exists else None, ours, settings if settings_exists else None, env
    )
    if cacheable:
        if len(_merged) >= _LOADED_MAX:
            _merged.clear()
        _merged[key] = config
    return config


def load_settings(
    state_dir: Path, openclaw_config: Path, environ: Mapping[str, str] | None = None
) -> SessionConfig:
    """The settings of a state dir: ``<stateDir>/sessionstore.json``, env, openclaw.json.

    Args:
        state_dir: The state dir (``sessionstore.json`` is read from it).
        openclaw_config: ``openclaw.json`` (``OPENCLAW_CONFIG_PATH`` or in the state dir).
        environ: The environment (default ``os.environ``).
    """
    return load_config(openclaw_config, settings=state_dir / SETTINGS_FILE, environ=environ)


def _parse_document(data: bytes, path: Path) -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # not plain JSON: comments, unquoted keys, trailing commas, a BOM, ...
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: it is not UTF-8 text ({exc.reason})") from exc
    try:
        import json5  # a slow pure-Python parser: loaded only for a file that needs it

        return json5.loads(text)
    except Exception as exc:  # json5 raises ValueError subclasses with positions
        raise ConfigError(
            f"{path}:{_json5_position(exc)} {_json5_reason(exc)}; fix the file"
        ) from exc


def _json5_position(exc: Exception) -> str:
    """``line:column:`` of a json5 error (its message reads ``<string>:LINE Unexpected ...``)."""
    match = re.match(r"<string>:(\d+)", str(exc))
    column = re.search(r"at column (\d+)", str(exc))
    if not match:
        return ""
    return f"{match.group(1)}:" + (f"{column.group(1)}:" if column else "")


def _json5_reason(exc: Exception) -> str:
    text = re.sub(r"^<string>:\d+\s*", "", str(exc))
    text = re.sub(r"\s*at column \d+", "", text)
    return f"not valid JSON5 ({text})" if text else "not valid JSON5"


def resolve_store_type(
    explicit: str | None, config: SessionConfig, environ: Mapping[str, str] | None = None
) -> str:
    """Store type by precedence: the argument, then the settings, then ``auto``.

    The settings already hold ``SESSIONSTORE_STORE_TYPE``, ``sessionstore.json`` and
    ``openclaw.json``; ``environ`` is honoured for a config built without it (older callers).

    Raises:
        ConfigError: The chosen value is not a known store type.
    """
    if explicit is not None:
        return _choice(explicit, STORE_TYPES, "store_type")
    if environ is not None:
        from_env = environ.get(ENV_STORE_TYPE, "").strip()
        if from_env:
            return _choice(from_env, STORE_TYPES, ENV_STORE_TYPE)
    return config.store_type
