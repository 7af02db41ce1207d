from __future__ import annotations

import json
from pathlib import Path

import pytest

import sessionstore
from sessionstore.config import (
    CRON_RETENTION_MS,
    DAY_MS,
    SessionConfig,
    load_config,
    parse_byte_size,
    parse_cron_retention,
    parse_duration_ms,
    parse_maintenance,
    resolve_store_type,
)
from sessionstore.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30 * DAY_MS),
        ("30", 30 * DAY_MS),
        ("30d", 30 * DAY_MS),
        ("12h", 12 * 3_600_000),
        ("1h30m", 90 * 60_000),
        ("500ms", 500),
        ("45s", 45_000),
        ("1.5d", int(1.5 * DAY_MS)),
    ],
)
def test_durations(value: object, expected: int) -> None:
    assert parse_duration_ms(value, key="k") == expected


@pytest.mark.parametrize("value", ["", "abc", "10x", "-5d", 0, -1, True, None, "1h-30m"])
def test_bad_durations_name_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"session\.maintenance\.pruneAfter"):
        parse_duration_ms(value, key="session.maintenance.pruneAfter")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        ("10mb", 10 * 1024 * 1024),
        ("512kb", 512 * 1024),
        ("2g", 2 * 1024**3),
        ("1tb", 1024**4),
        ("100b", 100),
        ("100", 100),
    ],
)
def test_byte_sizes(value: object, expected: int) -> None:
    assert parse_byte_size(value, key="k") == expected


@pytest.mark.parametrize("value", ["10 parsecs", "mb", 0, -3, "", True])
def test_bad_byte_sizes(value: object) -> None:
    with pytest.raises(ConfigError, match="rotateBytes"):
        parse_byte_size(value, key="rotateBytes")


def test_maintenance_defaults_match_openclaw() -> None:
    m = parse_maintenance(None)
    assert m.mode == "warn"
    assert m.prune_after_ms == 30 * DAY_MS
    assert m.max_entries == 500
    assert m.rotate_bytes == 10 * 1024 * 1024
    assert m.reset_archive_retention_ms == m.prune_after_ms
    assert m.max_disk_bytes is None and m.high_water_bytes is None


def test_maintenance_values() -> None:
    m = parse_maintenance(
        {
            "mode": "enforce",
            "pruneAfter": "7d",
            "maxEntries": 50,
            "rotateBytes": "1mb",
            "resetArchiveRetention": False,
            "maxDiskBytes": "100mb",
        }
    )
    assert m.mode == "enforce"
    assert m.prune_after_ms == 7 * DAY_MS
    assert m.max_entries == 50
    assert m.rotate_bytes == 1024 * 1024
    assert m.reset_archive_retention_ms is None
    assert m.max_disk_bytes == 100 * 1024 * 1024
    assert m.high_water_bytes == (100 * 1024 * 1024 * 8) // 10
    assert parse_maintenance({"pruneDays": 3}).prune_after_ms == 3 * DAY_MS
    capped = parse_maintenance({"maxDiskBytes": 1000, "highWaterBytes": 5000})
    assert capped.high_water_bytes == 1000


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"mode": "loud"}, "mode"),
        ({"maxEntries": 0}, "maxEntries"),
        ({"maxEntries": "5"}, "maxEntries"),
        ({"pruneDays": 1.5}, "pruneDays"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_maintenance_errors(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_maintenance(raw)


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_json5_config_with_foreign_keys(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "openclaw.json",
        """{
          // OpenClaw's own settings are ignored
          gateway: {port: 18789},
          agents: {list: [{id: "Main"}, {id: "ops", default: true}]},
          session: {dmScope: "per-peer", storeType: "json", durability: "power",
                    store: "~/x/{agentId}/sessions.json", maintenance: {mode: "enforce"},},
        }""",
    )
    c = load_config(cfg)
    assert c.store_type == "json"
    assert c.durability == "power"
    assert c.store == "~/x/{agentId}/sessions.json"
    assert c.maintenance.mode == "enforce"
    assert c.agents == ("main", "ops")
    assert c.default_agent == "ops"


def test_missing_and_empty_config_are_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "nope.json") == SessionConfig()
    empty = write_config(tmp_path / "e.json", "  \n")
    assert load_config(empty).store_type == "auto"


@pytest.mark.parametrize(
    ("session", "needle"),
    [
        ({"storeType": "mongo"}, r"session.storeType: 'mongo' is not one of auto, json, sqlite"),
        ({"durability": "max"}, "session.durability"),
        ({"store": ""}, "session.store"),
        ({"store": 5}, "session.store"),
        ({"maintenance": {"mode": 1}}, "session.maintenance.mode"),
    ],
)
def test_invalid_values_name_key_value_and_choices(
    tmp_path: Path, session: dict[str, object], needle: str
) -> None:
    cfg = write_config(tmp_path / "openclaw.json", json.dumps({"session": session}))
    with pytest.raises(ConfigError, match=needle):
        load_config(cfg)


def test_unparseable_config(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "openclaw.json", "{session: ")
    with pytest.raises(ConfigError, match="not valid JSON5"):
        load_config(cfg)


def test_precedence_argument_env_config_default() -> None:
    cfg = SessionConfig(store_type="json")
    env = {"SESSIONSTORE_STORE_TYPE": "sqlite"}
    assert resolve_store_type("auto", cfg, env) == "auto"
    assert resolve_store_type(None, cfg, env) == "sqlite"
    assert resolve_store_type(None, cfg, {}) == "json"
    assert resolve_store_type(None, SessionConfig(), {}) == "auto"
    with pytest.raises(ConfigError, match="SESSIONSTORE_STORE_TYPE"):
        resolve_store_type(None, cfg, {"SESSIONSTORE_STORE_TYPE": "nosql"})


def test_open_store_follows_config_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENCLAW_CONFIG_PATH", raising=False)
    monkeypatch.delenv("SESSIONSTORE_STORE_TYPE", raising=False)
    state = tmp_path / "state"
    write_config(state / "openclaw.json", json.dumps({"session": {"storeType": "json"}}))
    with sessionstore.open_store(state_dir=state) as s:
        assert s.store_type == "json"
        assert s.info().storeType == "json"
    monkeypatch.setenv("SESSIONSTORE_STORE_TYPE", "sqlite")
    with sessionstore.open_store(state_dir=state) as s:
        assert s.store_type == "sqlite"
    with sessionstore.open_store(state_dir=state, store_type="json") as s:
        assert s.store_type == "json"
    monkeypatch.setenv("SESSIONSTORE_STORE_TYPE", "bogus")
    with pytest.raises(ConfigError, match="SESSIONSTORE_STORE_TYPE"):
        sessionstore.open_store(state_dir=state)


def test_open_store_rejects_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        sessionstore.open_store(state_dir=tmp_path, store_type="mongo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="postgres"):
        sessionstore.open_store(state_dir=tmp_path, store_type="postgres")


def test_config_store_template_and_durability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SESSIONSTORE_STORE_TYPE", raising=False)
    state = tmp_path / "state"
    template = str(tmp_path / "custom" / "{agentId}" / "sessions.json")
    write_config(
        state / "openclaw.json",
        json.dumps({"session": {"store": template, "durability": "power"}}),
    )
    monkeypatch.setenv("OPENCLAW_CONFIG_PATH", str(state / "openclaw.json"))
    with sessionstore.open_store(agent="Ops Bot", state_dir=state) as s:
        s.put("agent:ops-bot:main", {"label": "x"})
        assert s.paths.sqlite_path == tmp_path / "custom" / "ops-bot" / "sessions.sqlite"
        assert s.durability == "power"
        sync = s.index.connection().execute("PRAGMA synchronous").fetchall()[0][0]  # type: ignore[attr-defined]
        assert sync == 2  # FULL
    assert (tmp_path / "custom" / "ops-bot" / "sessions.sqlite").exists()


HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, CRON_RETENTION_MS),
        (False, None),
        (True, CRON_RETENTION_MS),
        ("48", 48 * HOUR_MS),  # bare numbers in a string are hours here, not days
        ("2d", 2 * DAY_MS),
        ("90m", 90 * 60_000),
        (" 36h ", 36 * HOUR_MS),
        (72, CRON_RETENTION_MS),  # numbers are not honoured upstream
        ("soon", CRON_RETENTION_MS),  # nor strings that are no duration
        ("-5h", CRON_RETENTION_MS),
        ({"hours": 3}, CRON_RETENTION_MS),
    ],
)
def test_cron_session_retention_as_upstream_reads_it(raw: object, expected: int | None) -> None:
    assert CRON_RETENTION_MS == 24 * HOUR_MS
    assert parse_cron_retention(raw) == expected


def test_cron_session_retention_from_openclaw_json(tmp_path: Path) -> None:
    assert SessionConfig().cron_session_retention_ms == 24 * HOUR_MS
    (tmp_path / "openclaw.json").write_text(json.dumps({"cron": {"sessionRetention": "6h"}}))
    assert load_config(tmp_path / "openclaw.json").cron_session_retention_ms == 6 * HOUR_MS
    # a cron section that is not an object, or no setting, leaves the default
    (tmp_path / "openclaw.json").write_text(json.dumps({"cron": "yes"}))
    assert load_config(tmp_path / "openclaw.json").cron_session_retention_ms == 24 * HOUR_MS
    (tmp_path / "openclaw.json").write_text(json.dumps({"cron": {"sessionRetention": False}}))
    assert load_config(tmp_path / "openclaw.json").cron_session_retention_ms is None
