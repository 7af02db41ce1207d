"""Where transcripts live, through the public API, on state shaped as OpenClaw leaves it.

Regression tests of issue 11: the read-side candidate order of spec 3.5 (defect 2),
``cleanup --fix-missing`` and doctor on live sessions (defect 4), ``sessionFile``
containment through symlinks (defect 11), session ids that cannot name a file (defect 12),
topic transcripts on delete and reset (defect 15), and names of session ids that contain
``-topic-``. The state is written the way the gateway writes it: ``sessions.json`` with
``JSON.stringify(store, null, 2)``, pi v3 transcripts, ``sessionFile`` as absolute paths;
a sqlite store imports that ``sessions.json`` on first open, as a user's migration does.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import sessionstore
from sessionstore import InvalidArgumentError, InvalidKeyError, SessionStore
from sessionstore.clock import now_ms
from sessionstore.context import StoreContext
from sessionstore.maintenance import run_maintenance

# The .jsonl file engine: a postgres store keeps its transcripts in its table (tested in
# tests/postgres/test_table_transcripts.py), so these run on the file-backed stores.
pytestmark = pytest.mark.file_transcripts

Opener = Callable[[], SessionStore]
KEY = "agent:main:telegram:direct:8123456789"
TOPIC_KEY = "agent:main:telegram:group:-1001234567890:topic:42"
NOW = now_ms()
DAY = 86_400_000


# --- state as OpenClaw writes it -----------------------------------------------------------


def _line(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":")) + "\n"


def gateway_transcript(path: Path, session_id: str, texts: list[str]) -> bytes:
    """A pi v3 transcript as the gateway writes it: header, then one message per text."""
    lines = [
        _line(
            {
                "type": "session",
                "version": 3,
                "id": session_id,
                "timestamp": "2026-03-31T09:14:02.118Z",
                "cwd": "/home/ana/.openclaw/workspace",
            }
        )
    ]
    parent = None
    for n, text in enumerate(texts):
        entry_id = f"{n:08x}"
        lines.append(
            _line(
                {
                    "type": "message",
                    "id": entry_id,
                    "parentId": parent,
                    "timestamp": "2026-03-31T09:14:03.000Z",
                    "message": {"role": "user", "content": text, "timestamp": NOW + n},
                }
            )
        )
        parent = entry_id
    data = "".join(lines).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return data


def write_sessions_json(sessions_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    """``sessions.json`` as ``saveSessionStore`` writes it (2-space indent, no newline)."""
    sessions_dir.mkdir(parents=True, exist_ok=True)
    path = sessions_dir / "sessions.json"
    path.write_text(json.dumps(entries, indent=2))
    os.chmod(path, 0o600)


def sessions_dir_of(state: Path, agent: str = "main") -> Path:
    return state / "agents" / agent / "sessions"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    sessions_dir_of(root).mkdir(parents=True)
    return root


@pytest.fixture(params=["json", "sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_(state: Path, backend: str, agent: str = "main") -> SessionStore:
    return sessionstore.open_store(agent=agent, state_dir=state, store_type=backend)  # type: ignore[arg-type]


@pytest.fixture
def opened(state: Path, backend: str) -> Iterator[Callable[[], SessionStore]]:
    """Opens a store over whatever OpenClaw state the test wrote before calling it."""
    stores: list[SessionStore] = []

    def make() -> SessionStore:
        stores.append(open_(state, backend))
        return stores[-1]

    yield make
    for s in stores:
        s.close()


def texts(store: SessionStore, key: str, topic_id: str | int | None = None) -> list[str]:
    return [m["content"] for m in store.transcript(key, topic_id).messages()]


def finding_kinds(store: SessionStore) -> list[tuple[str, str]]:
    return sorted((f.kind, f.subject) for f in store.check())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


# --- defect 2: spec 3.5's read-side order ----------------------------------------------------


def openclaw_reset_state(state: Path, *, derived: bool) -> tuple[str, str, Path]:
    """What OpenClaw's ``sessions.reset`` leaves: the new entry keeps the old ``sessionFile``
    (the hint), the old transcript is renamed ``.reset.<ts>``, and the new session's header
    is written at the old path. Returns (old id, new id, the old path)."""
    sd = sessions_dir_of(state)
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    old_path = sd / f"{old}.jsonl"
    gateway_transcript(sd / f"{old}.jsonl.reset.2026-03-31T12-34-56.789Z", old, ["before"])
    gateway_transcript(old_path, new, ["after reset"])
    if derived:
        gateway_transcript(sd / f"{new}.jsonl", new, ["in the derived file"])
    entry = {"sessionId": new, "updatedAt": NOW, "sessionFile": str(old_path), "messageCount": 1}
    write_sessions_json(sd, {KEY: entry})
    return old, new, old_path


def test_stale_session_file_that_exists_is_read_and_appended(state: Path, opened: Opener) -> None:
    _, new, old_path = openclaw_reset_state(state, derived=False)
    store = opened()
    sd = store.paths.sessions_dir
    transcript = store.transcript(KEY)
    assert transcript.path == old_path  # the only existing candidate wins
    assert texts(store, KEY) == ["after reset"]
    transcript.append(user("next"))
    assert texts(store, KEY) == ["after reset", "next"]
    assert not (sd / f"{new}.jsonl").exists()
    if store.store_type == "sqlite":  # json appends keep sessions.json as it is
        assert store.get(KEY)["messageCount"] == 2  # type: ignore[index]
    # doctor and --fix-missing judge the same file: nothing is missing or orphaned
    assert finding_kinds(store) == []
    report = store.maintain(fix_missing=True)
    assert report.missing == 0 and store.get(KEY) is not None
    # delete archives that file: it is the session's transcript
    assert store.delete(KEY)
    assert not old_path.exists()
    assert len([p for p in sd.iterdir() if p.name.startswith(f"{old_path.name}.deleted.")]) == 1


def test_derived_file_wins_over_a_stale_session_file(state: Path, opened: Opener) -> None:
    _, new, old_path = openclaw_reset_state(state, derived=True)
    store = opened()
    assert store.transcript(KEY).path == store.paths.sessions_dir / f"{new}.jsonl"
    assert texts(store, KEY) == ["in the derived file"]
    store.transcript(KEY).append(user("next"))
    assert texts(store, KEY) == ["in the derived file", "next"]
    assert old_path.read_bytes().count(b"\n") == 2  # untouched


def test_maintenance_archives_the_file_a_stale_session_file_names(
    state: Path, opened: Opener
) -> None:
    """Pruning the session archives the transcript reads use, not a derived path."""
    _, _, old_path = openclaw_reset_state(state, derived=False)
    store = opened()
    report = run_maintenance(StoreContext.of(store), mode="enforce", now=NOW + 40 * DAY)
    assert [(a.key, a.action) for a in report.actions] == [(KEY, "prune-stale")]
    assert not old_path.exists()
    [archived] = report.archived
    assert Path(archived).name.startswith(f"{old_path.name}.deleted.")


def test_a_topic_of_a_reset_session_is_its_own_file(state: Path, opened: Opener) -> None:
    """After a reset the entry's sessionFile names the primary transcript; a topic
    transcript must not be that file."""
    store = opened()
    store.put(KEY, {"label": "x"})
    entry = store.reset(KEY)
    sd = store.paths.sessions_dir
    store.transcript(KEY).append(user("main"))
    store.transcript(KEY, topic_id=7).append(user("topic"))
    assert store.transcript(KEY, topic_id=7).path == sd / f"{entry['sessionId']}-topic-7.jsonl"
    assert texts(store, KEY) == ["main"]
    assert texts(store, KEY, 7) == ["topic"]


def test_an_agent_default_dir_is_read_for_a_store_elsewhere(tmp_path: Path) -> None:
    """A ``session.store`` elsewhere: the agent's default dir is a later candidate."""
    state = tmp_path / "state"
    custom = tmp_path / "custom" / "sessions.json"
    sid = str(uuid.uuid4())
    default_file = sessions_dir_of(state) / f"{sid}.jsonl"
    gateway_transcript(default_file, sid, ["in the agent dir"])
    with sessionstore.open_store(state_dir=state, store=str(custom), store_type="sqlite") as s:
        s.put(KEY, {"sessionId": sid, "messageCount": 1})
        assert s.transcript(KEY).path == default_file
        assert texts(s, KEY) == ["in the agent dir"]
        assert s.maintain(fix_missing=True).missing == 0


def test_a_legacy_transcript_counts_but_is_never_written(tmp_path: Path) -> None:
    """``<home>/.openclaw/sessions/<id>.jsonl`` is the last candidate, and read only."""
    home = Path(os.environ["HOME"])
    state = tmp_path / "state"
    sid = str(uuid.uuid4())
    legacy = home / ".openclaw" / "sessions" / f"{sid}.jsonl"
    data = gateway_transcript(legacy, sid, ["legacy"])
    with sessionstore.open_store(state_dir=state, store_type="sqlite") as s:
        s.put(KEY, {"sessionId": sid, "messageCount": 1})
        assert [f.kind for f in s.check()] == []  # found: not missing
        assert s.maintain(fix_missing=True).missing == 0
        transcript = s.transcript(KEY)
        assert transcript.path == s.paths.sessions_dir / f"{sid}.jsonl"
        transcript.append(user("new"))
    assert legacy.read_bytes() == data


# --- defect 4: --fix-missing and doctor share one rule ---------------------------------------


def test_fix_missing_keeps_live_sessions_and_agrees_with_doctor(
    state: Path, opened: Opener
) -> None:
    sd = sessions_dir_of(state)
    topic_sid, topic_counted, lost, lost_file = (str(uuid.uuid4()) for _ in range(4))
    gateway_transcript(sd / f"{topic_sid}-topic-42.jsonl", topic_sid, ["in topic 42"])
    gateway_transcript(sd / f"{topic_counted}-topic-7.jsonl", topic_counted, ["in topic 7"])
    write_sessions_json(
        sd,
        {
            # a topic session the gateway records without a sessionFile
            TOPIC_KEY: {"sessionId": topic_sid, "updatedAt": NOW},
            # a topic session with a count: its topic file is a candidate too
            "agent:main:telegram:group:-100:topic:7": {
                "sessionId": topic_counted,
                "updatedAt": NOW,
                "messageCount": 1,
            },
            "agent:main:lost-count": {"sessionId": lost, "updatedAt": NOW, "messageCount": 3},
            "agent:main:lost-file": {
                "sessionId": lost_file,
                "updatedAt": NOW,
                "sessionFile": str(sd / f"{lost_file}.jsonl"),
            },
        },
    )
    store = opened()
    store.put("agent:main:just-created", {"label": "no file until the first append"})
    doctor = sorted(f.subject for f in store.check() if f.kind == "missing-transcript")
    plan = store.maintain(dry_run=True, fix_missing=True)
    planned = sorted(a.key for a in plan.actions if a.action == "prune-missing")
    assert doctor == planned == ["agent:main:lost-count", "agent:main:lost-file"]
    report = store.maintain(fix_missing=True)
    assert report.missing == 2
    assert sorted(store.load_all()) == sorted(
        ["agent:main:just-created", "agent:main:telegram:group:-100:topic:7", TOPIC_KEY]
    )
    assert texts(store, TOPIC_KEY, 42) == ["in topic 42"]
    assert [f.kind for f in store.check()] == []


# --- defect 11: symlinks cannot lead a sessionFile out ---------------------------------------


def _outside(tmp_path: Path) -> tuple[Path, bytes]:
    target = tmp_path / "outside" / "elsewhere" / "x.jsonl"
    data = gateway_transcript(target, "victim", ["not yours"])
    return target, data


def _escape(state: Path, tmp_path: Path, level: str) -> str:
    """A sessionFile whose unresolved path looks acceptable but whose real path is outside."""
    elsewhere = tmp_path / "outside" / "elsewhere"
    agents = state / "agents"
    if level == "file":
        link = sessions_dir_of(state) / "link.jsonl"
        link.symlink_to(elsewhere / "x.jsonl")
        return str(link)
    if level == "directory":  # a sibling agent's sessions dir is a symlink
        (agents / "other").mkdir(parents=True)
        (agents / "other" / "sessions").symlink_to(elsewhere)
        return str(agents / "other" / "sessions" / "x.jsonl")
    if level == "sibling-agent":  # a sibling agent dir is a symlink
        (tmp_path / "outside" / "sessions").symlink_to(elsewhere)
        (agents / "other").symlink_to(tmp_path / "outside")
        return str(agents / "other" / "sessions" / "x.jsonl")
    if level == "state-root":  # another state root whose agents dir is a symlink
        root = tmp_path / "root2"
        root.mkdir()
        (tmp_path / "outside" / "a").mkdir()
        (tmp_path / "outside" / "a" / "sessions").symlink_to(elsewhere)
        (root / "agents").symlink_to(tmp_path / "outside")
        return str(root / "agents" / "a" / "sessions" / "x.jsonl")
    raise AssertionError(level)


@pytest.mark.parametrize("level", ["file", "directory", "sibling-agent", "state-root"])
def test_session_file_cannot_escape_through_a_symlink(
    state: Path, backend: str, tmp_path: Path, level: str
) -> None:
    target, data = _outside(tmp_path)
    session_file = _escape(state, tmp_path, level)
    assert Path(session_file).read_bytes() == data  # the unresolved path reaches the file
    sid = str(uuid.uuid4())
    entry = {"sessionId": sid, "updatedAt": NOW, "sessionFile": session_file}
    write_sessions_json(sessions_dir_of(state), {KEY: entry})
    with open_(state, backend) as store:
        transcript = store.transcript(KEY)
        assert transcript.path == store.paths.sessions_dir / f"{sid}.jsonl"
        assert transcript.messages() == []
        transcript.append(user("mine"))
        assert texts(store, KEY) == ["mine"]
        assert store.delete(KEY)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.jsonl"]


@pytest.mark.parametrize("name", ["sessions.json", "sessions.sqlite", "notes.txt"])
def test_session_file_never_names_a_store_file(state: Path, backend: str, name: str) -> None:
    """Only ``*.jsonl`` files are transcripts: an append never writes into the index."""
    sd = sessions_dir_of(state)
    sid = str(uuid.uuid4())
    entry = {"sessionId": sid, "updatedAt": NOW, "sessionFile": str(sd / name)}
    write_sessions_json(sd, {KEY: entry})
    (sd / "notes.txt").write_text("notes")
    with open_(state, backend) as store:
        before = {n: (sd / n).read_bytes() for n in ("sessions.json", "notes.txt")}
        transcript = store.transcript(KEY)
        assert transcript.path == sd / f"{sid}.jsonl"
        transcript.append(user("mine"))
        assert texts(store, KEY) == ["mine"]
        if backend == "sqlite":
            assert store.check() == []  # the database is intact
        assert (sd / "notes.txt").read_bytes() == before["notes.txt"]
        # sqlite never writes sessions.json; json appends do not rewrite it either
        assert (sd / "sessions.json").read_bytes() == before["sessions.json"]


def test_a_symlinked_state_dir_still_holds_its_own_files(tmp_path: Path, backend: str) -> None:
    """Symlinks that stay inside are fine: a state dir reached through a link, and an
    agents dir moved to another disk under another name with its agents side by side."""
    real = tmp_path / "disk" / "oc-agents"
    sibling_sid = str(uuid.uuid4())
    sibling_file = real / "other" / "sessions" / f"{sibling_sid}.jsonl"
    gateway_transcript(sibling_file, sibling_sid, ["sibling"])
    (real / "main" / "sessions").mkdir(parents=True)
    state = tmp_path / "real-state"
    state.mkdir()
    (state / "agents").symlink_to(real)
    link = tmp_path / "state-link"
    link.symlink_to(state)
    sid = str(uuid.uuid4())
    own = link / "agents" / "main" / "sessions" / "custom.jsonl"
    with open_(link, backend) as store:
        store.put(KEY, {"sessionId": sid, "sessionFile": str(own)})
        store.transcript(KEY).append(user("own"))
        assert (real / "main" / "sessions" / "custom.jsonl").is_file()
        store.put("agent:main:x", {"sessionId": sibling_sid, "sessionFile": str(sibling_file)})
        via_link = link / "agents" / "other" / "sessions" / sibling_file.name
        store.put("agent:main:y", {"sessionId": sibling_sid, "sessionFile": str(via_link)})
        assert texts(store, "agent:main:x") == ["sibling"]
        assert texts(store, "agent:main:y") == ["sibling"]
        assert texts(store, KEY) == ["own"]


# --- defect 12: a sessionId that cannot name a file is refused at write time ---------------


BAD_IDS = ["../../x", "", "a/b", ".hidden", "abc\n", 123, None, ["x"]]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_put_refuses_a_session_id_that_cannot_name_a_file(
    state: Path, opened: Opener, bad: object
) -> None:
    store = opened()
    if bad is not None:  # put gives a missing (None) sessionId a fresh UUID, as upstream
        with pytest.raises(InvalidKeyError, match="Invalid session ID") as caught:
            store.put(KEY, {"sessionId": bad})
        assert isinstance(caught.value, InvalidArgumentError)
        assert repr(bad) in str(caught.value)
        assert store.get(KEY) is None
    store.put(KEY, {"label": "good"})
    good = store.get(KEY)
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        store.update(KEY, {"sessionId": bad} if bad is not None else lambda _: {"sessionId": ""})
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        store.update("agent:main:new", {"sessionId": bad or "../y"}, create=True)

    def mutator(entries: dict[str, Any]) -> None:
        entries[KEY]["label"] = "changed"
        entries["agent:main:other"] = {"sessionId": bad, "updatedAt": NOW}

    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        store.mutate(mutator)
    assert store.load_all() == {KEY: good}
    assert sorted(p.name for p in store.paths.sessions_dir.iterdir() if ".jsonl" in p.name) == []


def test_a_store_already_holding_bad_ids_still_loads(state: Path, opened: Opener) -> None:
    entries = {
        "agent:main:a": {"sessionId": "../../x", "updatedAt": NOW},
        "agent:main:b": {"sessionId": "", "updatedAt": NOW - 1},
        "agent:main:c": {"sessionId": "fine", "updatedAt": NOW - 2},
    }
    write_sessions_json(sessions_dir_of(state), entries)
    store = opened()
    assert store.load_all() == entries
    assert store.get("agent:main:a") == entries["agent:main:a"]
    assert [r["key"] for r in store.list().rows] == ["agent:main:a", "agent:main:b", "agent:main:c"]
    # an entry keeps its (old) id through unrelated writes; no file is ever named by it
    assert store.update("agent:main:a", {"label": "kept"})["sessionId"] == "../../x"  # type: ignore[index]
    store.mutate(lambda d: d["agent:main:b"].__setitem__("label", "kept"))
    with pytest.raises(InvalidKeyError, match="Invalid session ID"):
        store.transcript("agent:main:a")
    store.check()
    store.maintain(fix_missing=True, dry_run=True)
    assert store.delete("agent:main:a")


# --- defect 15: delete and reset archive topic transcripts too -------------------------------


@pytest.mark.parametrize("operation", ["delete", "reset"])
def test_delete_and_reset_archive_every_transcript_of_the_session(
    state: Path, opened: Opener, operation: str
) -> None:
    sd = sessions_dir_of(state)
    sid = str(uuid.uuid4())
    files = {
        f"{sid}.jsonl": gateway_transcript(sd / f"{sid}.jsonl", sid, ["main"]),
        f"{sid}-topic-42.jsonl": gateway_transcript(sd / f"{sid}-topic-42.jsonl", sid, ["42"]),
        f"{sid}-topic-a%20b.jsonl": gateway_transcript(
            sd / f"{sid}-topic-a%20b.jsonl", sid, ["ab"]
        ),
    }
    other = str(uuid.uuid4())
    other_bytes = gateway_transcript(sd / f"{other}-topic-42.jsonl", other, ["other"])
    write_sessions_json(
        sd,
        {
            KEY: {"sessionId": sid, "updatedAt": NOW, "sessionFile": str(sd / f"{sid}.jsonl")},
            "agent:main:other": {"sessionId": other, "updatedAt": NOW},
        },
    )
    store = opened()
    if operation == "delete":
        assert store.delete(KEY)
        reason = "deleted"
    else:
        store.reset(KEY)
        reason = "reset"
    for name, data in files.items():
        assert not (sd / name).exists(), name
        [archived] = [p for p in sd.iterdir() if p.name.startswith(f"{name}.{reason}.")]
        assert archived.read_bytes() == data
    assert (sd / f"{other}-topic-42.jsonl").read_bytes() == other_bytes


# --- session ids containing -topic- ----------------------------------------------------------


def test_a_session_id_containing_topic_is_its_own_session(state: Path, opened: Opener) -> None:
    """``abc-topic-7.jsonl`` is the primary transcript of session ``abc-topic-7``, not a
    topic of ``abc``: no orphan, not deleted by the disk budget, not archived with ``abc``."""
    sd = sessions_dir_of(state)
    own = gateway_transcript(sd / "abc-topic-7.jsonl", "abc-topic-7", ["mine"])
    os.utime(sd / "abc-topic-7.jsonl", (1, 1))  # the oldest file in the dir
    archive = sd / "old.jsonl.bak.2026-01-01T00-00-00.000Z"
    archive.write_bytes(b"x" * 4096)
    entry = {"sessionId": "abc-topic-7", "updatedAt": NOW, "messageCount": 1}
    write_sessions_json(sd, {"agent:main:odd": entry})
    store = opened()
    assert [f.kind for f in store.check()] == []
    assert texts(store, "agent:main:odd") == ["mine"]

    def budget(limit: int) -> None:
        settings = replace(store.config.maintenance, max_disk_bytes=limit, high_water_bytes=limit)
        store.config = replace(store.config, maintenance=settings)

    budget(1 << 40)
    measured = store.maintain(mode="enforce", dry_run=True).diskBudget
    assert measured is not None
    budget(measured.totalBytesBefore - 2048)
    report = store.maintain(mode="enforce", active_key="agent:main:odd")
    assert report.removedFiles == [str(archive)]
    assert (sd / "abc-topic-7.jsonl").read_bytes() == own

    store.put("agent:main:abc", {"sessionId": "abc"})
    store.transcript("agent:main:abc").append(user("abc"))
    assert store.delete("agent:main:abc")
    assert (sd / "abc-topic-7.jsonl").read_bytes() == own
    assert texts(store, "agent:main:odd") == ["mine"]
