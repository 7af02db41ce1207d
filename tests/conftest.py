"""Shared fixtures: a hermetic environment, a temporary state dir and a store per backend."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

import sessionstore
from hermetic import PREFIXES
from pgtest import PG_DSN, PG_SKIP, pg_connect, pg_empty
from sessionstore import SessionStore

# PostgreSQL runs as a third backend when a server is given (.ci/run gives one and sets
# SESSIONSTORE_REQUIRE_PG, which turns a skipped postgres test into a failure).
PG_REQUIRE_ENV = "SESSIONSTORE_REQUIRE_PG"
PG_PARTITIONS_ENV = "SESSIONSTORE_TEST_PG_PARTITIONS"
BACKENDS = [
    "json",
    "sqlite",
    pytest.param(
        "postgres",
        marks=[pytest.mark.postgres] + ([] if PG_DSN else [pytest.mark.skip(reason=PG_SKIP)]),
    ),
]

# The environment pytest was started with, before it was cleaned (for run knobs such as
# SESSIONSTORE_SLOW); and the private HOME of the whole run.
_LAUNCH_ENV: dict[str, str] = {}
_RUN_HOME: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    # Module-level code and fixtures of wider scope than a test run before the autouse
    # fixture below: clean the whole process once, before collection. The xdist controller
    # runs no test: it keeps its environment for the workers it starts, each of which
    # then cleans its own here (after its conftest read the launch knobs, as without xdist).
    if getattr(config, "workerinput", None) is None and config.getoption("numprocesses", None):
        return
    _LAUNCH_ENV.update(os.environ)
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            del os.environ[name]
    home = tempfile.mkdtemp(prefix="sessionstore-test-home-")
    _RUN_HOME.append(home)
    os.environ["HOME"] = home


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and _LAUNCH_ENV.get(PG_REQUIRE_ENV)
        and item.get_closest_marker("postgres")
        and not item.get_closest_marker("slow")
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{PG_REQUIRE_ENV} is set but this postgres test was skipped: {report.longrepr}"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Tests of the .jsonl file engine (marked file_transcripts) do not run on postgres, whose
    # store keeps transcripts in a table: deselected, not skipped (a skipped postgres test
    # fails a run that requires postgres).
    dropped = [
        item
        for item in items
        if item.get_closest_marker("file_transcripts")
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("backend") == "postgres"  # type: ignore[attr-defined]
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _RUN_HOME:
        shutil.rmtree(home, ignore_errors=True)
    os.environ.update({k: v for k, v in _LAUNCH_ENV.items() if k.startswith(PREFIXES)})
    if "HOME" in _LAUNCH_ENV:
        os.environ["HOME"] = _LAUNCH_ENV["HOME"]


@pytest.fixture(autouse=True)
def _hermetic_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No inherited state dir, config or store type, and a private, empty HOME per test."""
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def launch_env() -> dict[str, str]:
    """The environment pytest was started with (read run knobs here, never settings)."""
    return dict(_LAUNCH_ENV)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def pg_schema() -> Iterator[str]:
    """A throwaway PostgreSQL schema for this test session, dropped afterwards."""
    if not PG_DSN:
        pytest.skip(PG_SKIP)
    name = f"sstest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    yield name
    conn = pg_connect(PG_DSN)
    try:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        conn.close()


@pytest.fixture
def pg_env(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``store_type="postgres"`` at the test schema, emptied; returns the DSN."""
    assert PG_DSN
    pg_empty(pg_schema)
    monkeypatch.setenv("SESSIONSTORE_PG_DSN", PG_DSN)
    monkeypatch.setenv("SESSIONSTORE_PG_SCHEMA", pg_schema)
    partitions = _LAUNCH_ENV.get(PG_PARTITIONS_ENV)
    if partitions:
        monkeypatch.setenv("SESSIONSTORE_PG_PARTITIONS", partitions)
    return PG_DSN


@pytest.fixture
def pg_transcript_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """A postgres store keeps .jsonl transcript files (``postgres.transcripts: files``).

    For tests of what maintenance and the doctor do with files; with the transcripts in
    the table they are tested in tests/postgres.
    """
    monkeypatch.setenv("SESSIONSTORE_PG_TRANSCRIPTS", "files")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("pg_env")
    return str(request.param)


@pytest.fixture
def store(state_dir: Path, backend: str) -> Iterator[SessionStore]:
    s = sessionstore.open_store(agent="main", state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]
    try:
        yield s
    finally:
        s.close()
