"""Reading openclaw.json: plain JSON without the JSON5 parser, cached by file identity.

Issue 11, defect 10: the pure-Python json5 parser took a second for a 64 KB config, on
every open and twice per CLI command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hermetic import clean_env
from sessionstore.config import load_config

SECOND_NS = 1_000_000_000


def big_config(store_type: str = "json") -> str:
    """A 64 KB plain-JSON openclaw.json, mostly OpenClaw's own settings."""
    agents = [{"id": f"agent-{i}", "workspace": f"/srv/agents/{i}" + "x" * 40} for i in range(600)]
    doc = {
        "gateway": {"port": 18789, "bind": "loopback"},
        "agents": {"list": agents},
        "session": {"storeType": store_type, "maintenance": {"mode": "warn"}},
    }
    text = json.dumps(doc, indent=2)
    assert len(text) >= 64 * 1024
    return text


def set_mtime(path: Path, seconds_ago: float) -> None:
    when = time.time_ns() - int(seconds_ago * SECOND_NS)
    os.utime(path, ns=(when, when))


def test_a_plain_json_config_is_read_without_json5(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "openclaw.json").write_text(big_config())
    child = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import sessionstore
        from sessionstore.config import load_config

        config = load_config(Path(sys.argv[1]) / "openclaw.json")
        with sessionstore.open_store(state_dir=sys.argv[1]) as store:
            store.put("k", {"sessionId": "s"})
            print(config.store_type, len(config.agents), store.store_type, "json5" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["json", "600", "json", "False"]


def test_a_json5_config_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text("{\n  // a comment\n  session: {storeType: 'sqlite',},\n}\n")
    assert load_config(path).store_type == "sqlite"


def test_an_unchanged_config_is_parsed_once(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(big_config())
    set_mtime(path, 10)
    first = load_config(path)
    assert first.store_type == "json" and len(first.agents) == 600
    assert load_config(path) is first


def test_a_config_changed_in_place_with_the_same_size_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(big_config("json"))
    set_mtime(path, 10)
    inode, size = path.stat().st_ino, path.stat().st_size
    assert load_config(path).store_type == "json"
    with open(path, "r+b") as f:  # same inode, same size: only the times tell
        f.write(big_config("auto").encode())
    set_mtime(path, 5)
    assert (path.stat().st_ino, path.stat().st_size) == (inode, size)
    assert load_config(path).store_type == "auto"


def test_a_config_replaced_by_rename_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(big_config("json"))
    set_mtime(path, 10)
    assert load_config(path).store_type == "json"
    new = tmp_path / "openclaw.json.tmp"
    new.write_text(big_config("auto"))
    set_mtime(new, 10)
    os.replace(new, path)
    assert load_config(path).store_type == "auto"


def test_a_config_written_just_now_is_not_cached(tmp_path: Path) -> None:
    # A file system stamps times with a coarse clock: a second write within the same tick,
    # same size, in place, would look unchanged. A file that recent is parsed every time.
    path = tmp_path / "openclaw.json"
    path.write_text(big_config())
    first = load_config(path)
    second = load_config(path)
    assert second == first and second is not first


def test_a_removed_config_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(big_config())
    set_mtime(path, 10)
    assert load_config(path).store_type == "json"
    path.unlink()
    assert load_config(path).store_type == "auto"
