"""What a ``sessionstore list`` or ``show`` process loads, and the plain output beside rich.

The two commands' whole-process time is a benchmark target (within 1.5x of ``python -c
"import typer, rich"``): every module they import that they do not need is start-up cost.
``LazyConsole`` writes the lines rich would not change without importing rich's console; the
tests below check that it does so, and that what it writes is what rich writes.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionstore.bench.generate import generate_state_dir
from sessionstore.cli.common import LazyConsole
from sessionstore.layout import resolve_store_paths
from sessionstore.migrate import migrate_agent

REPO = Path(__file__).resolve().parents[2]

HEAVY = (
    # other commands and what only they use
    "sessionstore.bench",
    "sessionstore.cli.demo",
    "sessionstore.cli.migration",
    "sessionstore.cli.upkeep",
    "sessionstore.cli.info",
    "sessionstore.doctor",
    "sessionstore.maintenance",
    "sessionstore.migrate_postgres",
    "sessionstore.openclaw_import",
    "sessionstore.aio",
    "asyncio",
    "psycopg",
    # what opening and reading an existing store does not need
    "sessionstore.migrate",
    "sessionstore.index.json",
    "sessionstore.lockfile",
    "sessionstore.context",
    "sessionstore.storeinfo",
    "sessionstore.transcripts.naming",
    "sessionstore.transcripts.jsonl",
    "logging",
    "hypothesis",
    # rich beyond the package itself: piped output and errors need none of it
    "rich.console",
    "rich.table",
    "rich.text",
    "rich.progress",
)


def _loaded_by(
    argv: list[str], env_extra: dict[str, str] | None = None, code: int = 0
) -> tuple[list[str], str]:
    """Run ``sessionstore ARGV`` in a fresh interpreter (stdout piped): heavy modules loaded."""
    probe = (
        "import sys\n"
        "from sessionstore.cli import main\n"
        f"sys.argv = ['sessionstore', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n"
        f"    assert exc.code == {code}, exc.code\n"
        f"print('LOADED', ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("LOADED ")
    loaded = [m for m in last.removeprefix("LOADED ").split(",") if m]
    return loaded, proc.stdout


def test_list_and_show_load_no_heavy_module(tmp_path: Path) -> None:
    """A piped ``list`` (with its next-page footer) and ``show`` import none of HEAVY.

    On a sqlite store, as the benchmark times them (a json store needs its lock file code).
    """
    state = generate_state_dir(tmp_path, sessions=30, seed=3)
    assert migrate_agent(resolve_store_paths(tmp_path, "main", None)).status == "migrated"
    key = sorted(state.agents["main"].entries)[0]
    loaded, stdout = _loaded_by(["list", "--limit", "5", "--state-dir", str(tmp_path)])
    assert loaded == []
    assert len(stdout.splitlines()) == 6  # five rows, then the probe's line
    loaded, stdout = _loaded_by(["show", key, "--state-dir", str(tmp_path)])
    assert loaded == []
    assert '"sessionId"' in stdout
    # an error line needs no rich either
    loaded, _ = _loaded_by(["show", "nosuchkey", "--state-dir", str(tmp_path)], code=1)
    assert loaded == []


def test_forced_colour_goes_through_rich(tmp_path: Path) -> None:
    """With FORCE_COLOR rich decides what a terminal is: the console is made."""
    generate_state_dir(tmp_path, sessions=3, seed=3)
    loaded, _ = _loaded_by(["list", "--state-dir", str(tmp_path)], env_extra={"FORCE_COLOR": "1"})
    assert "rich.console" in loaded


def _through_lazy(text: str, markup: bool | None, stderr: bool) -> tuple[str, bool]:
    """What LazyConsole writes for ``text`` on a non-terminal stream, and if rich was made."""
    console = LazyConsole(stderr=stderr)
    buffer = io.StringIO()
    saved = sys.stderr if stderr else sys.stdout
    try:
        if stderr:
            sys.stderr = buffer
        else:
            sys.stdout = buffer
        console.print(text, markup=markup)
    finally:
        if stderr:
            sys.stderr = saved
        else:
            sys.stdout = saved
    return buffer.getvalue(), console._console is not None


def _through_rich(text: str, markup: bool | None, stderr: bool) -> str:
    """What the real console writes for ``text`` (the one LazyConsole makes)."""
    console = LazyConsole(stderr=stderr).console
    buffer = io.StringIO()
    console.file = buffer
    console.print(text, markup=markup)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _no_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("20 sessions shown, 89,025 more; next page: sessionstore list --cursor Wz", True),
        ("error: no session x in agent main's store (/tmp/a b)", True),
        ("", True),
        ("x" * 400, True),  # longer than any width: one line all the same
        ("error: key agent:main:x", False),  # `:main:` is no emoji, but only rich knows
        ("a :smile: b", False),
        ("[bold]x[/]", None),  # plain only with markup off
        ("tab\there", False),
        ("carriage\rreturn", False),
        ("two\nlines", False),
        ("naïve", False),
    ],
)
@pytest.mark.parametrize("markup", [None, False])
@pytest.mark.parametrize("stderr", [False, True])
def test_plain_lines_are_written_as_rich_writes_them(
    text: str, plain: bool | None, markup: bool | None, stderr: bool
) -> None:
    written, made = _through_lazy(text, markup, stderr)
    assert written == _through_rich(text, markup, stderr)
    if plain is None:
        plain = markup is False
    assert made is not plain  # plain: written directly, rich's console not needed


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(min_codepoint=0, max_codepoint=0x2FF), max_size=300),
    markup=st.sampled_from([None, False]),
)
def test_any_text_is_written_as_rich_writes_it(text: str, markup: bool | None) -> None:
    written, _ = _through_lazy(text, markup, stderr=True)
    assert written == _through_rich(text, markup, stderr=True)


def test_console_is_made_for_what_it_alone_can_print() -> None:
    console = LazyConsole()
    buffer = io.StringIO()
    saved = sys.stdout
    sys.stdout = buffer
    try:
        console.print("a", "b")  # several objects: rich joins them
        assert console._console is not None
    finally:
        sys.stdout = saved
    assert buffer.getvalue() == "a b\n"
    assert console.width == 240  # not a terminal: whole lines
