"""Settings that never break OpenClaw (issue 16 section 1).

Our settings live in ``<stateDir>/sessionstore.json`` and ``SESSIONSTORE_*`` variables;
``openclaw.json`` keeps only OpenClaw's own ``session`` keys. Precedence: arguments,
environment, sessionstore.json, openclaw.json, defaults - checked in every combination.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import ConfigError
from sessionstore.config import OPENCLAW_SESSION_KEYS, load_settings
from sessionstore.layout import config_path

DAY = 86_400_000


def write(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))


def settings_of(state: Path, env: dict[str, str] | None = None) -> Any:
    return load_settings(state, config_path(state, env or {}), env or {})


def test_sessionstore_json_beside_an_openclaw_json_that_only_has_openclaw_keys(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    openclaw = {
        "agents": {"list": [{"id": "main", "default": True}]},
        "session": {"dmScope": "per-channel-peer", "maintenance": {"mode": "warn"}},
    }
    write(state / "openclaw.json", openclaw)
    write(
        state / "sessionstore.json",
        """{
  // JSON5: comments and unquoted keys are fine here
  storeType: "json",
  durability: "power",
  maintainEvery: "1h",
  maintenance: { maxEntries: 7 },
}""",
    )
    before = (state / "openclaw.json").read_bytes()
    with sessionstore.open_store(state_dir=state) as store:
        assert store.store_type == "json"
        assert store.durability == "power"
        assert store.config.maintain_every_ms == 3_600_000
        assert store.config.maintenance.max_entries == 7
        assert store.config.maintenance.mode == "warn"  # OpenClaw's key, kept
        settings = store.info().settings
        assert settings["storeType"] == {"value": "json", "from": "sessionstore.json"}
        assert settings["durability"] == {"value": "power", "from": "sessionstore.json"}
        assert settings["settingsFile"] == str(state / "sessionstore.json")
        store.put("agent:main:main", {"sessionId": "s"})
        assert [f for f in store.check() if f.kind == "openclaw-config"] == []
    assert (state / "openclaw.json").read_bytes() == before  # never written
    assert set(openclaw["session"]) <= OPENCLAW_SESSION_KEYS


LAYERS = ("argument", "environment", "sessionstore.json", "openclaw.json")


@pytest.mark.parametrize(
    "present",
    list(itertools.product([False, True], repeat=4)),
    ids=lambda p: "".join("01"[x] for x in p),
)
def test_store_type_precedence_in_every_combination(
    tmp_path: Path, present: tuple[bool, ...]
) -> None:
    arg, env, ours, theirs = present
    state = tmp_path / "state"
    state.mkdir()
    values = dict(zip(LAYERS, ["json", "sqlite", "json", "sqlite"], strict=True))
    if ours:
        write(state / "sessionstore.json", {"storeType": values["sessionstore.json"]})
    if theirs:
        write(state / "openclaw.json", {"session": {"storeType": values["openclaw.json"]}})
    environ = {"SESSIONSTORE_STORE_TYPE": values["environment"]} if env else {}
    expected = next((values[name] for name, on in zip(LAYERS, present, strict=True) if on), "auto")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in environ.items():
            mp.setenv(k, v)
        store = sessionstore.open_store(
            state_dir=state,
            store_type=values["argument"] if arg else None,  # type: ignore[arg-type]
        )
    with store:
        assert store.configured_type == expected


@pytest.mark.parametrize(
    "present",
    list(itertools.product([False, True], repeat=3)),
    ids=lambda p: "".join("01"[x] for x in p),
)
def test_our_other_settings_precedence_in_every_combination(
    tmp_path: Path, present: tuple[bool, ...]
) -> None:
    """durability, maintainEvery and store: environment > sessionstore.json > openclaw.json."""
    env_on, ours_on, theirs_on = present
    state = tmp_path / "state"
    state.mkdir()
    layers = {
        "environment": {
            "durability": "power",
            "maintainEvery": "2h",
            "store": "/env/{agentId}.json",
        },
        "sessionstore.json": {
            "durability": "normal",
            "maintainEvery": "3h",
            "store": "/ours/x.json",
        },
        "openclaw.json": {"durability": "power", "maintainEvery": "4h", "store": "/theirs/x.json"},
    }
    if ours_on:
        write(state / "sessionstore.json", layers["sessionstore.json"])
    if theirs_on:
        write(state / "openclaw.json", {"session": layers["openclaw.json"]})
    environ = {}
    if env_on:
        environ = {
            "SESSIONSTORE_DURABILITY": "power",
            "SESSIONSTORE_MAINTAIN_EVERY": "2h",
            "SESSIONSTORE_STORE": "/env/{agentId}.json",
        }
    config = settings_of(state, environ)
    on = dict(zip(["environment", "sessionstore.json", "openclaw.json"], present, strict=True))
    winner = next((name for name, is_on in on.items() if is_on), None)
    if winner is None:
        assert (config.durability, config.maintain_every_ms, config.store) == ("normal", None, None)
        assert dict(config.sources) == {}
        return
    want = layers[winner]
    hours = int(str(want["maintainEvery"])[0])
    assert config.durability == want["durability"]
    assert config.maintain_every_ms == hours * 3_600_000
    assert config.store == want["store"]
    source = {"environment": "SESSIONSTORE_DURABILITY"}.get(winner, winner)
    assert config.sources["durability"] == source


def test_maintenance_keys_of_sessionstore_json_override_openclaws_one_by_one(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    write(
        state / "openclaw.json",
        {"session": {"maintenance": {"mode": "enforce", "maxEntries": 10, "pruneAfter": "2d"}}},
    )
    write(state / "sessionstore.json", {"maintenance": {"maxEntries": 3}})
    config = settings_of(state)
    assert config.maintenance.mode == "enforce"
    assert config.maintenance.max_entries == 3
    assert config.maintenance.prune_after_ms == 2 * DAY


def test_doctor_reports_session_keys_openclaw_rejects(tmp_path: Path) -> None:
    state = tmp_path / "state"
    session = {
        "dmScope": "main",
        "store": str(state / "agents" / "{agentId}" / "sessions" / "sessions.json"),
        "maintenance": {"mode": "warn"},
        "storeType": "sqlite",
        "durability": "power",
        "maintainEvery": "1h",
        "frobnicate": 1,
    }
    write(state / "openclaw.json", {"session": session})
    with sessionstore.open_store(state_dir=state) as store:
        assert store.configured_type == "sqlite"  # still read, for older setups
        assert store.durability == "power"
        found = {
            f.subject + "|" + f.message: f for f in store.check() if f.kind == "openclaw-config"
        }
    messages = list(found)
    assert len(messages) == 4
    by_key = {
        k: next(m for m in messages if f"session.{k} " in m)
        for k in ("storeType", "durability", "maintainEvery", "frobnicate")
    }
    for key in ("storeType", "durability", "maintainEvery"):
        assert "INVALID_CONFIG" in by_key[key]
        assert f"move it to {state / 'sessionstore.json'}" in by_key[key]
    assert "PR #58550" in by_key["storeType"]
    assert "remove it" in by_key["frobnicate"]
    assert all(f.unresolved and f.severity == "warning" for f in found.values())


def test_errors_name_the_file_the_line_and_the_key(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(state / "sessionstore.json", {"durability": "sometimes"})
    with pytest.raises(
        ConfigError,
        match=r"sessionstore\.json: durability: 'sometimes' is not one of normal, power",
    ):
        settings_of(state)
    write(state / "sessionstore.json", {"storeTyp": "json"})
    with pytest.raises(
        ConfigError, match=r"sessionstore\.json: 'storeTyp' is not a sessionstore setting"
    ):
        settings_of(state)
    write(state / "sessionstore.json", "{\n  storeType: 'json',\n  durability: ,\n}")
    with pytest.raises(ConfigError, match=r"sessionstore\.json:3:\d+: not valid JSON5"):
        settings_of(state)
    write(state / "sessionstore.json", "[1, 2]")
    with pytest.raises(
        ConfigError, match=r"sessionstore\.json: the settings must be a JSON object, not an array"
    ):
        settings_of(state)
    (state / "sessionstore.json").unlink()
    write(state / "openclaw.json", {"session": None, "agents": {}})
    settings_of(state)  # a null session section is no section
    write(state / "openclaw.json", {"session": ["x"]})
    with pytest.raises(
        ConfigError, match=r"openclaw\.json: session must be a JSON object, not an array"
    ):
        settings_of(state)
    with pytest.raises(ConfigError, match=r"SESSIONSTORE_DURABILITY: 'x' is not one of"):
        settings_of(tmp_path / "other", {"SESSIONSTORE_DURABILITY": "x"})
