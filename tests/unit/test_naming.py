"""The transcript file-name grammar and spec 3.5's path choice (``transcripts/naming.py``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sessionstore import InvalidArgumentError, InvalidKeyError
from sessionstore.transcripts.naming import (
    TranscriptDirs,
    TranscriptName,
    accepted_path,
    archive_name,
    archive_timestamp,
    archive_transcript,
    claims_transcript,
    encode_topic,
    file_names,
    is_archive_artifact,
    is_primary_transcript,
    is_usage_counted,
    locate_transcript,
    missing_transcript,
    other_owners,
    parse_archive_name,
    parse_name,
    resolve_transcript_path,
    session_transcripts,
    transcript_dirs,
    transcript_name,
    transcript_path,
)

SID = "6f1c2b9e-4d7a-4b1e-9a53-2f8e0c7d1a44"
OTHER = "0b7e1c2d-3f4a-4b5c-8d9e-0f1a2b3c4d5e"
STAMP = "2026-03-31T12-34-56.789Z"
MS = int(datetime(2026, 3, 31, 12, 34, 56, 789_000, tzinfo=timezone.utc).timestamp() * 1000)


def touch(path: Path, data: bytes = b"{}\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def sd(tmp_path: Path) -> Path:
    d = tmp_path / "state" / "agents" / "main" / "sessions"
    d.mkdir(parents=True)
    return d


# --- names -------------------------------------------------------------------------------------


def test_transcript_names() -> None:
    assert transcript_name(SID) == f"{SID}.jsonl"
    assert transcript_name(SID, 42) == f"{SID}-topic-42.jsonl"
    assert transcript_name(SID, "a b/c?d") == f"{SID}-topic-a%20b%2Fc%3Fd.jsonl"
    assert encode_topic("x-_.!~*'()é") == "x-_.!~*'()%C3%A9"
    assert transcript_path(Path("/d"), "s", "7") == Path("/d/s-topic-7.jsonl")
    for bad in ("../x", "", ".a", "a/b", "abc\n", "a" * 129, 5, None):
        with pytest.raises(InvalidKeyError, match="Invalid session ID"):
            transcript_name(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (f"{SID}.jsonl", TranscriptName(f"{SID}.jsonl", "primary", SID)),
        (f"{SID}-topic-42.jsonl", TranscriptName(f"{SID}-topic-42.jsonl", "primary", SID, "42")),
        (
            f"{SID}-topic-a%20b.jsonl",
            TranscriptName(f"{SID}-topic-a%20b.jsonl", "primary", SID, "a%20b"),
        ),
        (
            f"2026-03-31T12-34-56-789Z_{SID}.jsonl",
            TranscriptName(
                f"2026-03-31T12-34-56-789Z_{SID}.jsonl",
                "primary",
                SID,
                forked_at="2026-03-31T12-34-56-789Z",
            ),
        ),
        ("notes.jsonl", TranscriptName("notes.jsonl", "primary", "notes")),
        (".hidden.jsonl", TranscriptName(".hidden.jsonl", "primary")),
        (
            f"{SID}-topic-7.jsonl.deleted.{STAMP}",
            TranscriptName(
                f"{SID}-topic-7.jsonl.deleted.{STAMP}",
                "archive",
                SID,
                "7",
                reason="deleted",
                time_ms=MS,
                archived=f"{SID}-topic-7.jsonl",
            ),
        ),
        (
            f"{SID}.jsonl.torn.{STAMP}",
            TranscriptName(
                f"{SID}.jsonl.torn.{STAMP}",
                "archive",
                SID,
                reason="torn",
                time_ms=MS,
                archived=f"{SID}.jsonl",
            ),
        ),
        (
            f"{SID}.jsonl.reset.{STAMP}.deleted.{STAMP}",
            TranscriptName(
                f"{SID}.jsonl.reset.{STAMP}.deleted.{STAMP}",
                "archive",
                SID,
                reason="deleted",
                time_ms=MS,
                archived=f"{SID}.jsonl.reset.{STAMP}",
            ),
        ),
        (
            "sessions.json.bak.1774948529731",
            TranscriptName(
                "sessions.json.bak.1774948529731",
                "store-backup",
                reason="bak",
                time_ms=1774948529731,
            ),
        ),
    ],
)
def test_parse_name(name: str, expected: TranscriptName) -> None:
    assert parse_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "sessions.json",
        "sessions.sqlite",
        "sessions.sqlite-wal",
        f"{SID}.jsonl.lock",
        f"{SID}.jsonl.0123abcd.tmp",
        "sessions.json.lock",
        f"{SID}.jsonl.deleted.yesterday",
        f"{SID}.jsonl.deleted.2026-13-45T12-34-56Z",
        f"{SID}.jsonl.gone.{STAMP}",
        "sessions.json.bak.",
    ],
)
def test_names_that_are_neither_transcripts_nor_archives(name: str) -> None:
    assert parse_name(name) is None
    assert not is_primary_transcript(name) and not is_archive_artifact(name)
    assert parse_archive_name(name) is None


def test_classification_of_spec_4a() -> None:
    primary = f"{SID}-topic-1.jsonl"
    reset, deleted = f"{SID}.jsonl.reset.{STAMP}", f"{SID}.jsonl.deleted.{STAMP}"
    bak, torn = f"{SID}.jsonl.bak.{STAMP}", f"{SID}.jsonl.torn.{STAMP}"
    backup = "sessions.json.bak.17"
    assert is_primary_transcript(primary) and not is_archive_artifact(primary)
    for name in (reset, deleted, bak, torn, backup):
        assert is_archive_artifact(name) and not is_primary_transcript(name), name
    assert [is_usage_counted(n) for n in (primary, reset, deleted, bak, torn, backup)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert parse_archive_name(reset) == ("reset", MS)
    assert parse_archive_name(torn) == ("torn", MS)
    assert parse_archive_name(backup) == ("bak", 17)
    assert parse_archive_name(primary) is None


def test_a_session_id_containing_topic_is_resolved_by_the_known_ids() -> None:
    def read(name: str, known: set[str] | None) -> tuple[str | None, str | None]:
        parsed = parse_name(name, known)
        assert parsed is not None
        return parsed.session_id, parsed.topic

    assert read("abc-topic-7.jsonl", None) == ("abc", "7")  # as OpenClaw names topics
    assert read("abc-topic-7.jsonl", {"abc-topic-7"}) == ("abc-topic-7", None)
    assert read("abc-topic-7.jsonl", {"abc"}) == ("abc", "7")
    assert read("abc-topic-7.jsonl", {"abc", "abc-topic-7"}) == ("abc-topic-7", None)
    assert read("abc-topic-7.jsonl", {"unrelated"}) == ("abc", "7")
    assert read("a-topic-b-topic-c.jsonl", None) == ("a", "b-topic-c")
    assert read("a-topic-b-topic-c.jsonl", {"a-topic-b"}) == ("a-topic-b", "c")
    assert read("a-topic-b-topic-c.jsonl", {"a"}) == ("a", "b-topic-c")
    forked = "2026-03-31T12-34-56-789Z_abc.jsonl"
    assert read(forked, None) == ("abc", None)
    assert read(forked, {"2026-03-31T12-34-56-789Z_abc"}) == ("2026-03-31T12-34-56-789Z_abc", None)
    archived = parse_name(f"abc-topic-7.jsonl.deleted.{STAMP}", {"abc-topic-7"})
    assert archived is not None and archived.session_id == "abc-topic-7"


def test_archive_names_and_times() -> None:
    stamp = archive_timestamp(MS)
    assert stamp == STAMP
    assert parse_archive_name(archive_name("x.jsonl", "bak", stamp)) == ("bak", MS)
    fresh = parse_archive_name(archive_name("x.jsonl", "reset"))
    assert fresh is not None and fresh[0] == "reset"
    with pytest.raises(InvalidArgumentError, match="archive reason"):
        archive_name("x.jsonl", "gone")


def test_archive_transcript_stays_inside_and_never_overwrites(sd: Path, tmp_path: Path) -> None:
    path = touch(sd / f"{SID}.jsonl", b"a\n")
    target = archive_transcript(path, "deleted", sessions_dir=sd, stamp=STAMP)
    assert target == sd / f"{SID}.jsonl.deleted.{STAMP}" and target.read_bytes() == b"a\n"
    touch(path, b"b\n")
    assert archive_transcript(path, "deleted", sessions_dir=sd, stamp=STAMP) is None
    assert path.read_bytes() == b"b\n" and target.read_bytes() == b"a\n"
    outside = touch(tmp_path / "outside" / "x.jsonl")
    assert archive_transcript(outside, "deleted", sessions_dir=sd) is None
    link = sd / "link.jsonl"
    link.symlink_to(outside)
    assert archive_transcript(link, "deleted", sessions_dir=sd) is None
    assert outside.exists() and link.is_symlink()
    assert archive_transcript(sd / "gone.jsonl", "deleted") is None
    assert file_names(sd) == {f"{SID}.jsonl", target.name}  # the symlink is not a file here


# --- containment ---------------------------------------------------------------------------


def test_accepted_path(sd: Path, tmp_path: Path) -> None:
    state = sd.parent.parent.parent
    touch(sd / "a.jsonl")
    assert accepted_path("a.jsonl", sd) == sd / "a.jsonl"
    assert accepted_path(f"  {sd / 'a.jsonl'}  ", sd) == sd / "a.jsonl"
    assert accepted_path("new.jsonl", sd) == sd / "new.jsonl"  # need not exist yet
    sibling = state / "agents" / "ops" / "sessions" / "s.jsonl"
    assert accepted_path(str(sibling), sd) == sibling
    other_root = tmp_path / "root2" / "agents" / "x" / "sessions" / "s.jsonl"
    assert accepted_path(str(other_root), sd) == other_root
    touch(tmp_path / "outside" / "o.jsonl")
    (sd / "inner.jsonl").symlink_to(sd / "a.jsonl")
    assert accepted_path("inner.jsonl", sd) == sd / "a.jsonl"  # the real file
    for refused in (
        None,
        5,
        "",
        "   ",
        "a\x00.jsonl",
        "../a.jsonl",
        "nested/a.jsonl",
        str(sd / ".." / "sessions" / "a.jsonl"),
        str(tmp_path / "outside" / "o.jsonl"),
        "sessions.json",  # never a store file
        "sessions.sqlite",
        str(state / "agents" / "ops" / "sessions" / "nested" / "s.jsonl"),
    ):
        assert accepted_path(refused, sd) is None, refused


# --- spec 3.5's candidates ---------------------------------------------------------------------


def test_candidate_order_and_choice(sd: Path, tmp_path: Path) -> None:
    agent_dir = tmp_path / "state2" / "agents" / "main" / "sessions"
    legacy = tmp_path / "home" / ".openclaw" / "sessions"
    dirs = TranscriptDirs(sd, agent_dir, legacy)
    stale = sd / f"{OTHER}.jsonl"
    loc = locate_transcript(dirs, SID, str(stale))
    assert [(c.source, c.path, c.writable) for c in loc.candidates] == [
        ("derived", sd / f"{SID}.jsonl", True),
        ("staleSessionFile", stale, True),
        ("agentDir", agent_dir / f"{SID}.jsonl", True),
        ("legacyDir", legacy / f"{SID}.jsonl", False),
    ]
    assert not loc.exists and loc.path == loc.create_path == sd / f"{SID}.jsonl"
    touch(legacy / f"{SID}.jsonl")  # read only: never the path to write
    loc = locate_transcript(dirs, SID, str(stale))
    assert loc.exists and loc.found is not None and loc.found.source == "legacyDir"
    assert loc.path == sd / f"{SID}.jsonl"
    touch(agent_dir / f"{SID}.jsonl")
    assert locate_transcript(dirs, SID, str(stale)).path == agent_dir / f"{SID}.jsonl"
    touch(stale)
    assert locate_transcript(dirs, SID, str(stale)).path == stale
    touch(sd / f"{SID}.jsonl")
    assert locate_transcript(dirs, SID, str(stale)).path == sd / f"{SID}.jsonl"
    custom = sd / "custom.jsonl"
    loc = locate_transcript(dirs, SID, str(custom))
    assert loc.candidates[0].source == "sessionFile" and loc.create_path == custom
    assert loc.path == sd / f"{SID}.jsonl"  # the explicit file does not exist: next one
    touch(custom)
    assert resolve_transcript_path(dirs, SID, "custom.jsonl") == custom
    assert resolve_transcript_path(sd, SID, "custom.jsonl") == custom


def test_stale_means_another_generated_id(sd: Path) -> None:
    for name in (
        f"{OTHER}.jsonl",
        f"{OTHER}-topic-3.jsonl",
        f"2026-03-31T12-34-56-789Z_{OTHER}.jsonl",
    ):
        loc = locate_transcript(sd, SID, name)
        assert [c.source for c in loc.candidates] == ["derived", "staleSessionFile"], name
    for name in ("custom.jsonl", f"{SID}-topic-3.jsonl", f"2026-03-31T12-34-56-789Z_{SID}.jsonl"):
        loc = locate_transcript(sd, SID, name)
        assert [c.source for c in loc.candidates] == ["sessionFile", "derived"], name
        assert loc.create_path == sd / name


def test_topic_candidates(sd: Path) -> None:
    topic = sd / f"{SID}-topic-7.jsonl"
    # a sessionFile naming the primary is not the topic's file
    loc = locate_transcript(sd, SID, str(sd / f"{SID}.jsonl"), 7)
    assert [(c.source, c.path) for c in loc.candidates] == [("derived", topic)]
    # one naming this topic is (OpenClaw's topic entries record their topic file)
    named = sd / f"2026-03-31T12-34-56-789Z_{SID}-topic-7.jsonl"
    loc = locate_transcript(sd, SID, str(named), "7")
    assert [c.source for c in loc.candidates] == ["sessionFile", "derived"]
    # a stale one only for the same topic
    loc = locate_transcript(sd, SID, f"{OTHER}-topic-7.jsonl", 7)
    assert [c.source for c in loc.candidates] == ["derived", "staleSessionFile"]
    loc = locate_transcript(sd, SID, f"{OTHER}-topic-8.jsonl", 7)
    assert [c.source for c in loc.candidates] == ["derived"]


def test_transcript_dirs_leave_out_the_stores_own(sd: Path, tmp_path: Path) -> None:
    state = sd.parent.parent.parent
    home = tmp_path / "home"
    assert transcript_dirs(sd, state_dir=state, agent_id="main", home=home) == TranscriptDirs(
        sd, None, home / ".openclaw" / "sessions"
    )
    custom = tmp_path / "custom"
    dirs = transcript_dirs(custom, state_dir=state, agent_id="main", home=state.parent)
    assert dirs == TranscriptDirs(custom, sd, state.parent / ".openclaw" / "sessions")
    assert transcript_dirs(home / ".openclaw" / "sessions", home=home).legacy_dir is None


# --- a session's files and the missing rule --------------------------------------------------


def test_session_transcripts_and_their_other_owners(sd: Path) -> None:
    names = {
        "abc.jsonl",
        "abc-topic-1.jsonl",
        "abc-topic-x%20y.jsonl",
        "2026-03-31T12-34-56-789Z_abc.jsonl",
        "abc-topic-1.jsonl.deleted." + STAMP,
        "abcd.jsonl",
        "other-topic-1.jsonl",
        "sessions.json",
    }
    for name in names:
        touch(sd / name)
    mine = [
        "2026-03-31T12-34-56-789Z_abc.jsonl",
        "abc-topic-1.jsonl",
        "abc-topic-x%20y.jsonl",
        "abc.jsonl",
    ]
    assert session_transcripts(sd, "abc", names=names) == mine
    assert other_owners(sd, "abc", names=names) == {
        "abc-topic-1",
        "2026-03-31T12-34-56-789Z_abc",
    }
    # a live session "abc-topic-1" keeps its primary transcript
    assert session_transcripts(sd, "abc", names=names, claimed={"abc-topic-1"}) == [
        n for n in mine if n != "abc-topic-1.jsonl"
    ]
    assert session_transcripts(sd, "abc-topic-1", names=names, claimed={"abc"}) == [
        "abc-topic-1.jsonl"
    ]
    assert session_transcripts(sd, "../x", names=names) == []


def test_stale_session_file_of_a_live_session_is_not_claimed(sd: Path) -> None:
    touch(sd / f"{OTHER}.jsonl")
    names = file_names(sd)
    assert session_transcripts(sd, SID, f"{OTHER}.jsonl", names=names) == [f"{OTHER}.jsonl"]
    assert other_owners(sd, SID, f"{OTHER}.jsonl", names=names) == {OTHER}
    assert session_transcripts(sd, SID, f"{OTHER}.jsonl", names=names, claimed={OTHER}) == []
    touch(sd / f"{SID}.jsonl")  # the derived file wins: the stale one is another's
    names = file_names(sd)
    assert session_transcripts(sd, SID, f"{OTHER}.jsonl", names=names) == [f"{SID}.jsonl"]


def test_missing_transcript_rule(sd: Path) -> None:
    assert not claims_transcript(None, None)
    assert not claims_transcript("  ", 0)
    assert not claims_transcript(None, True)
    assert claims_transcript("x.jsonl", None) and claims_transcript(None, 2)
    sid = str(uuid.uuid4())

    def missing(session_file: object, count: object, sid: object = sid) -> bool:
        return missing_transcript(sd, sid, session_file, count, names=file_names(sd)) is not None

    assert not missing(None, None)  # just created: claims nothing
    assert missing(None, 3) and missing(f"{sid}.jsonl", None)
    assert not missing("../../etc/passwd.jsonl", 3, "../x")  # an id that names no file
    touch(sd / f"{sid}-topic-9.jsonl")
    assert not missing(None, 3)  # a topic transcript exists
    lost = missing_transcript(sd, "lost", "lost-custom.jsonl", None, names=file_names(sd))
    assert lost is not None and lost.path == lost.create_path == sd / "lost-custom.jsonl"
    assert [c.path.name for c in lost.candidates] == ["lost-custom.jsonl", "lost.jsonl"]
