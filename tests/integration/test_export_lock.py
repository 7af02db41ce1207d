"""``export`` onto a live ``sessions.json`` takes its lock and replaces it atomically (issue 16)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sessionstore
from sessionstore import LockTimeoutError
from sessionstore.bench.generate import generate_state_dir
from sessionstore.files import dumps_pretty
from sessionstore.migrate import export_entries

SCRIPT = Path(sys.executable).parent / "sessionstore"

# A gateway holding sessions.json.lock as OpenClaw writes it: {"pid", "createdAt"}. On a
# line from stdin it writes the store (atomically, as OpenClaw does), then lets go.
_GATEWAY = textwrap.dedent(
    """
    import json, os, sys
    from datetime import datetime, timezone
    target = sys.argv[1]
    lock = target + ".lock"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, json.dumps({"pid": os.getpid(), "createdAt": now}).encode())
    os.close(fd)
    print("held", flush=True)
    sys.stdin.readline()
    with open(target + ".gw.tmp", "w") as fh:
        fh.write(json.dumps({"agent:main:gateway": {"sessionId": "g", "updatedAt": 1}}, indent=2))
    os.replace(target + ".gw.tmp", target)
    os.unlink(lock)
    print("released", flush=True)
    """
)


@contextlib.contextmanager
def _gateway_holding(target: Path) -> Iterator[subprocess.Popen[str]]:
    gateway = subprocess.Popen(
        [sys.executable, "-c", _GATEWAY, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert gateway.stdout is not None
        assert gateway.stdout.readline().strip() == "held"
        yield gateway
    finally:
        if gateway.poll() is None:
            gateway.kill()
        gateway.wait(30)


def _release(gateway: subprocess.Popen[str]) -> None:
    assert gateway.stdin is not None and gateway.stdout is not None
    gateway.stdin.write("go\n")
    gateway.stdin.flush()
    assert gateway.stdout.readline().strip() == "released"


def _queued_on(directory: Path) -> bool:
    """True while a writer of this library waits in the directory's kernel queue."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also lets go of the probe's own flock
    return False


def test_export_onto_a_locked_sessions_json_times_out_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "agents" / "main" / "sessions" / "sessions.json"
    target.parent.mkdir(parents=True)
    target.write_bytes(b'{\n  "agent:main:live": {\n    "sessionId": "l"\n  }\n}')
    before = target.read_bytes()
    with _gateway_holding(target) as gateway:
        lock_before = (target.parent / "sessions.json.lock").read_bytes()
        with pytest.raises(LockTimeoutError, match=rf"pid={gateway.pid}"):
            export_entries(
                {"agent:main:x": {"sessionId": "x"}}, target, overwrite=True, lock_timeout_ms=300
            )
        assert target.read_bytes() == before
        assert (target.parent / "sessions.json.lock").read_bytes() == lock_before
    assert not [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]


def test_cli_export_force_waits_for_the_lock_then_replaces_the_file(tmp_path: Path) -> None:
    source = generate_state_dir(tmp_path / "source", sessions=12, seed=3)
    with sessionstore.open_store(state_dir=source.root, store_type="sqlite") as store:
        expected = dumps_pretty(store.load_all())  # what export writes (migrated on open)
    target = tmp_path / "live" / "agents" / "main" / "sessions" / "sessions.json"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"{}")
    command = [SCRIPT, "export", "--state-dir", source.root, "--out", target, "--force", "--json"]
    with _gateway_holding(target) as gateway:
        export = subprocess.Popen(
            [str(a) for a in command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Until the export waits in the queue (or, without a lock, has already finished).
            deadline = time.monotonic() + 60
            while export.poll() is None and not _queued_on(target.parent):
                assert time.monotonic() < deadline, "export neither waited nor finished"
                time.sleep(0.01)
            # The gateway writes while it holds the lock, then lets go: the export must come
            # after it, not before (and never in between).
            _release(gateway)
            out, err = export.communicate(timeout=60)
        finally:
            if export.poll() is None:
                export.kill()
                export.wait()
    assert export.returncode == 0, err
    assert json.loads(out)["exports"][0]["count"] == 12
    assert target.read_bytes() == expected, "the export did not wait for the gateway's lock"
    assert not (target.parent / "sessions.json.lock").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["sessions.json"]
