"""Open-time fallback: only when SQLite cannot be used at all, never per operation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sessionstore
from hermetic import clean_env

# A real import failure of the driver, in a child process: apsw is made unimportable
# before sessionstore is imported.
CHILD = r"""
import json, sys
sys.modules["apsw"] = None
import sessionstore
state, store_type, action = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    s = sessionstore.open_store(state_dir=state, store_type=store_type)
except sessionstore.SessionStoreError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    sys.exit(0)
if action == "write":
    s.put("agent:main:main", {"label": "fallback"})
info = s.info()
print(json.dumps({"type": s.store_type, "configured": info.storeType,
                  "reason": info.fallbackReason, "available": info.sqliteAvailable,
                  "count": s.count()}))
"""


def run_child(state: Path, store_type: str, action: str = "write") -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(state), store_type, action],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=clean_env(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_new_store_falls_back_to_json_with_reason(tmp_path: Path) -> None:
    result = run_child(tmp_path, "sqlite")
    assert result["type"] == "json"
    assert result["configured"] == "sqlite"
    assert result["available"] is False
    assert "apsw" in str(result["reason"])
    sessions = tmp_path / "agents" / "main" / "sessions"
    assert (sessions / "sessions.json").exists()
    assert not (sessions / "sessions.sqlite").exists()


def test_existing_database_never_falls_back(tmp_path: Path) -> None:
    with sessionstore.open_store(state_dir=tmp_path, store_type="sqlite") as s:
        s.put("agent:main:main", {"label": "in sqlite"})
    result = run_child(tmp_path, "auto")
    assert result["error"] == "BackendUnavailableError"
    assert "split the store" in str(result["message"])
    assert not (tmp_path / "agents" / "main" / "sessions" / "sessions.json").exists()
