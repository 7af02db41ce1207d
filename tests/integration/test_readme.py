"""The README's examples run as written, and touch nothing outside their scratch dirs.

Every ```python block of README.md runs, in order, in one fresh interpreter (later blocks
use the names earlier ones defined). Every ```sh block runs, in order, in one
``bash -euo pipefail`` script with this interpreter's ``bin`` dir first on ``PATH`` (where
``sessionstore`` is installed), except the installation commands: blocks containing
``pip install`` or ``python3 -m venv`` (the two commands, whose second one is this very test
run, and the benchmark's, which runs for half an hour). Both run with a private, empty
``HOME``, a temporary working directory and no ``OPENCLAW_*``/``SESSIONSTORE_*`` variables;
afterwards ``$HOME/.openclaw`` must not exist, so an example that would act on a reader's
real state dir fails here. Error lines point at README.md's own line numbers.

The other tests keep the README's statements true: every relative link of README.md and
docs/ leads to a file (and heading), the layout section names every module of the package,
and every store command takes the options the README says they all take.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import typer

from hermetic import clean_env
from sessionstore.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INSTALL_MARKERS = ("pip install", "python3 -m venv")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# Runs the README's Python blocks from a JSON file, each compiled with README.md's line
# numbers (the block padded with blank lines), so a traceback names the README line.
PYTHON_DRIVER = """
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1], encoding="utf-8")):
    source = "\\n" * (block["line"] - 1) + block["source"]
    exec(compile(source, "README.md", "exec"), namespace)
"""


def blocks(language: str) -> list[tuple[int, str]]:
    """The README's fenced blocks of ``language``: (first code line number, code)."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) == language:
            line = text.count("\n", 0, match.start(2)) + 1
            found.append((line, match.group(2)))
    return found


def is_install(code: str) -> bool:
    return any(marker in code for marker in INSTALL_MARKERS)


def run(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(HOME=str(home))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {done.returncode}\n--- stdout (end) ---\n{done.stdout[-4000:]}"
        f"\n--- stderr (end) ---\n{done.stderr[-4000:]}"
    )


def test_python_blocks_run(tmp_path: Path) -> None:
    code = blocks("python")
    assert len(code) >= 3, "the README's Python examples were not found"
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    source = tmp_path / "blocks.json"
    source.write_text(json.dumps([{"line": n, "source": c} for n, c in code]), encoding="utf-8")
    done = run([sys.executable, "-c", PYTHON_DRIVER, str(source)], work, home)
    assert done.returncode == 0, explain(done)
    assert not (home / ".openclaw").exists(), "a Python example wrote to ~/.openclaw"


def test_shell_blocks_run(tmp_path: Path) -> None:
    code = blocks("sh")
    installs = [c for _, c in code if is_install(c)]
    runnable = [(n, c) for n, c in code if not is_install(c)]
    assert len(installs) >= 2, "the README's install commands were not found"
    assert len(runnable) >= 3, "the README's shell examples were not found"
    # One script whose line numbers are README.md's: each block at its own lines.
    lines = [
        "set -euo pipefail",
        "trap 'echo \"README.md line $LINENO failed (exit $?)\" >&2' ERR",
    ]
    for start, body in runnable:
        assert start > len(lines), "the README's first shell example starts too early"
        lines += [""] * (start - 1 - len(lines))
        lines += body.rstrip("\n").split("\n")
    script = tmp_path / "readme.sh"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    done = run(["bash", "-euo", "pipefail", str(script)], work, home)
    assert done.returncode == 0, explain(done)
    assert not (home / ".openclaw").exists(), "a shell example wrote to ~/.openclaw"


def test_ci_runs_the_readme_test_command() -> None:
    """The README's second command is the CI's contract: `.ci/run` runs it verbatim."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [c.strip() for _, c in blocks("sh") if "pytest" in c and is_install(c)]
    assert commands, "the README's test command was not found"
    assert commands[0] in ci


def anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_resolve() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = FENCE.sub("", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            name, _, fragment = target.partition("#")
            linked = (page.parent / name).resolve() if name else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
                continue
            if fragment and linked.suffix == ".md":
                headings = re.findall(r"(?m)^#+ (.+)$", FENCE.sub("", linked.read_text("utf-8")))
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_layout_names_every_module() -> None:
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 1)]
    package = ROOT / "src" / "sessionstore"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if "__pycache__" not in path.parts
        and (path.name != "__init__.py" or path.parent == package)
        and path.name not in layout
    ]
    assert not missing, f"README's layout does not mention {missing}"


def test_store_commands_take_the_shared_options() -> None:
    """README: every command except demo and bench takes these five options."""
    shared = {"--state-dir", "--agent", "--all-agents", "--store", "--json"}
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    lacking = {}
    for name, command in group.commands.items():
        options = {opt for param in command.params for opt in param.opts}
        if name in ("demo", "bench"):
            assert not shared <= options, f"{name} now takes them all: update the README"
        elif not shared <= options:
            lacking[name] = sorted(shared - options)
    assert not lacking, lacking
