"""Names loaded on first use stay the same objects, and the lazy logger names its caller."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

import sessionstore
import sessionstore.store
from sessionstore.logs import log

REPO = Path(__file__).resolve().parents[2]


def test_lazy_public_names_are_the_defining_modules_objects() -> None:
    from sessionstore.entry import SessionEntry
    from sessionstore.index.base import SessionPage, SessionRow
    from sessionstore.storeinfo import StoreInfo
    from sessionstore.transcripts.jsonl import Transcript

    assert sessionstore.StoreInfo is sessionstore.store.StoreInfo is StoreInfo
    assert sessionstore.open_store is sessionstore.store.open_store
    assert sessionstore.SessionStore is sessionstore.store.SessionStore
    assert sessionstore.Transcript is Transcript
    assert sessionstore.SessionEntry is SessionEntry
    assert (sessionstore.SessionPage, sessionstore.SessionRow) == (SessionPage, SessionRow)
    assert set(sessionstore.__all__) <= set(dir(sessionstore))
    with pytest.raises(AttributeError):
        _ = sessionstore.no_such_name  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        _ = sessionstore.store.no_such_name  # type: ignore[attr-defined]


def test_import_sessionstore_loads_no_store_until_asked() -> None:
    probe = (
        "import sys, sessionstore\n"
        "before = 'sessionstore.store' in sys.modules\n"
        "from sessionstore import *\n"
        "print(before, 'sessionstore.store' in sys.modules, open_store.__module__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src")},
        check=True,
    )
    assert proc.stdout.split() == ["False", "True", "sessionstore.store"]


def test_lazy_logger_logs_to_the_sessionstore_logger_naming_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="sessionstore"):
        log.warning("w %s", 1)
        log.info("i %s", 2)
    got = [(r.name, r.levelname, r.getMessage(), r.funcName) for r in caplog.records]
    caller = "test_lazy_logger_logs_to_the_sessionstore_logger_naming_the_caller"
    assert got == [
        ("sessionstore", "WARNING", "w 1", caller),
        ("sessionstore", "INFO", "i 2", caller),
    ]
    assert {r.pathname for r in caplog.records} == {__file__}
