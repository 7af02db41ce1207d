"""The transcript commands of the ``sessionstore`` CLI (history, reset, delete), end to end.

The CLI runs as a real process (the console-script entry point), against stores written
through the library on both backends.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from hermetic import clean_env
from sessionstore import SessionStore

# The .jsonl file engine: a postgres store keeps its transcripts in its table (tested in
# tests/postgres/test_table_transcripts.py), so these run on the file-backed stores.
pytestmark = pytest.mark.file_transcripts

KEY = "agent:main:telegram:direct:8123456789"
ARCHIVE_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d{3})?Z$")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "hello there", "timestamp": 1_774_948_442_100},
    {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi Ana."}],
        "stopReason": "stop",
        "timestamp": 1_774_948_443_100,
    },
    {
        "role": "user",
        "content": [{"type": "text", "text": "What's on my calendar tomorrow?"}],
        "timestamp": 1_774_948_444_100,
    },
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me check."},
            {
                "type": "toolCall",
                "id": "toolu_01",
                "name": "exec",
                "arguments": {"command": "gog calendar list --from tomorrow"},
            },
        ],
        "stopReason": "toolUse",
        "timestamp": 1_774_948_446_905,
    },
    {
        "role": "toolResult",
        "toolCallId": "toolu_01",
        "toolName": "exec",
        "content": [{"type": "text", "text": "09:30 Dentist; 14:00 1:1 with Rui"}],
        "isError": False,
        "timestamp": 1_774_948_448_400,
    },
]


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from sessionstore.cli import main; sys.argv[0] = 'sessionstore'; main()",
            *args,
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _reopen(state_dir: Path, backend: str) -> SessionStore:
    return sessionstore.open_store(state_dir=state_dir, store_type=backend)  # type: ignore[arg-type]


def _assert_one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.endswith("\n")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def conversation(store: SessionStore) -> Path:
    """KEY holds the five-message CONVERSATION; returns its transcript path."""
    store.put(KEY, {"sessionId": "sess-cli", "label": "Ana"})
    t = store.transcript(KEY)
    for message in CONVERSATION:
        t.append(message)
    return t.path


def test_history_tail_text(state_dir: Path, conversation: Path) -> None:
    result = _cli(state_dir, "history", KEY, "--tail", "2")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"Transcript: {conversation}"
    heads = [line for line in lines if line.startswith("#")]
    assert [h.split()[:2] for h in heads] == [["#4", "assistant"], ["#5", "tool:exec"]]
    body = lines[1:]
    i_assistant = body.index(heads[0])
    i_tool = body.index(heads[1])
    assert body[i_assistant + 1 : i_tool] == ["Let me check.", "[call exec]"]
    assert body[i_tool + 1 :] == ["09:30 Dentist; 14:00 1:1 with Rui"]
    assert "hello there" not in result.stdout
    assert "calendar tomorrow" not in result.stdout


def test_history_json(state_dir: Path, backend: str, conversation: Path) -> None:
    result = _cli(state_dir, "history", f"  {KEY.upper()} ", "--tail", "2", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) == {"key", "agentId", "path", "skipped", "messages"}
    assert doc["key"] == KEY
    assert doc["path"] == str(conversation)
    assert doc["skipped"] == 0
    assert [(m["role"], m["__openclaw"]["seq"]) for m in doc["messages"]] == [
        ("assistant", 4),
        ("toolResult", 5),
    ]
    with _reopen(state_dir, backend) as store:
        assert doc["messages"] == store.transcript(KEY).tail(2)
    expected = [{k: v for k, v in m.items() if k != "__openclaw"} for m in doc["messages"]]
    assert expected == CONVERSATION[-2:]


def test_history_json_counts_skipped(state_dir: Path, backend: str, conversation: Path) -> None:
    with open(conversation, "ab") as fh:
        fh.write(b"{not json\n")
    with _reopen(state_dir, backend) as store:
        store.transcript(KEY).append({"role": "user", "content": "after garbage"})
    result = _cli(state_dir, "history", KEY, "--tail", "2", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["skipped"] == 1
    assert [(m["role"], m["__openclaw"]["seq"]) for m in doc["messages"]] == [
        ("toolResult", 5),
        ("user", 6),
    ]
    text = _cli(state_dir, "history", KEY, "--tail", "2")
    assert text.returncode == 0
    assert text.stderr.strip() == f"warning: 1 malformed line skipped in {conversation}"


def test_history_without_transcript(state_dir: Path, store: SessionStore) -> None:
    store.put(KEY, {"sessionId": "sess-empty"})
    result = _cli(state_dir, "history", KEY)
    assert result.returncode == 0, result.stderr
    sd = store.paths.sessions_dir
    assert result.stdout.splitlines() == [f"Transcript: {sd / 'sess-empty.jsonl'}", "No messages."]
    assert not (sd / "sess-empty.jsonl").exists()


def test_reset_command(state_dir: Path, backend: str, conversation: Path) -> None:
    old_bytes = conversation.read_bytes()
    result = _cli(state_dir, "reset", KEY)
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(rf"Reset {re.escape(KEY)}: new session ({UUID.pattern})\n", result.stdout)
    assert match, result.stdout
    new_id = match.group(1)
    sd = conversation.parent
    assert not conversation.exists()
    archived = [p for p in sd.iterdir() if p.name.startswith("sess-cli.jsonl.reset.")]
    assert len(archived) == 1
    assert ARCHIVE_TS.match(archived[0].name[len("sess-cli.jsonl.reset.") :])
    assert archived[0].read_bytes() == old_bytes
    with _reopen(state_dir, backend) as store:
        entry = store.get(KEY)
        assert entry is not None
        assert entry["sessionId"] == new_id
        assert entry["label"] == "Ana"
        assert entry["messageCount"] == 0
        t = store.transcript(KEY)
        assert t.path == sd / f"{new_id}.jsonl"
        lines = t.path.read_text().splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["id"] == new_id
    history = _cli(state_dir, "history", KEY, "--json")
    assert json.loads(history.stdout)["messages"] == []


def test_reset_json(state_dir: Path, backend: str, conversation: Path) -> None:
    result = _cli(state_dir, "reset", KEY, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["key"] == KEY
    with _reopen(state_dir, backend) as store:
        assert doc["entry"] == store.get(KEY)


def test_delete_command(state_dir: Path, backend: str, conversation: Path) -> None:
    data = conversation.read_bytes()
    result = _cli(state_dir, "delete", KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Deleted {KEY}\n"
    assert not conversation.exists()
    archived = [p for p in conversation.parent.iterdir() if ".jsonl.deleted." in p.name]
    assert [p.name[: len("sess-cli.jsonl.deleted.")] for p in archived] == [
        "sess-cli.jsonl.deleted."
    ]
    assert ARCHIVE_TS.match(archived[0].name[len("sess-cli.jsonl.deleted.") :])
    assert archived[0].read_bytes() == data
    with _reopen(state_dir, backend) as store:
        assert store.get(KEY) is None
    _assert_one_line_error(_cli(state_dir, "delete", KEY))


def test_delete_keep_transcript(state_dir: Path, backend: str, conversation: Path) -> None:
    data = conversation.read_bytes()
    result = _cli(state_dir, "delete", KEY, "--keep-transcript")
    assert result.returncode == 0, result.stderr
    assert conversation.read_bytes() == data
    assert not [p for p in conversation.parent.iterdir() if ".deleted." in p.name]
    with _reopen(state_dir, backend) as store:
        assert store.get(KEY) is None


@pytest.mark.parametrize("command", ["history", "reset", "delete"])
def test_missing_key_is_one_line_error(state_dir: Path, store: SessionStore, command: str) -> None:
    store.put(KEY, {"sessionId": "sess-there"})
    before = sorted(p.name for p in store.paths.sessions_dir.iterdir())
    result = _cli(state_dir, command, "agent:main:nobody")
    _assert_one_line_error(result)
    assert "agent:main:nobody" in result.stderr
    assert store.get(KEY) is not None
    after = sorted(p.name for p in store.paths.sessions_dir.iterdir() if ".jsonl" in p.name)
    assert after == [n for n in before if ".jsonl" in n] == []
