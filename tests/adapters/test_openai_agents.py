"""StoreSession against the OpenAI Agents SDK's Session protocol, its Runner and its own
session test cases (those of the SDK's tests/memory/test_session.py that apply to a
session backend, rewritten here for this store)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import Agent, RunConfig, Runner, SessionSettings, set_tracing_disabled
from agents.memory.session import Session
from agents.testing import ScriptedModel
from agents.testing.model import assistant_message

import sessionstore
from sessionstore import AsyncSessionStore, InvalidArgumentError, SessionStore
from sessionstore.adapters.openai_agents import ROLE, StoreSession, session_key

set_tracing_disabled(True)  # no trace export from tests


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=["sync", "async"])
def store(request: pytest.FixtureRequest, store: SessionStore) -> Iterator[Any]:
    """What StoreSession is given: conftest's store (every backend), or its async face."""
    if request.param == "sync":
        yield store
    else:
        face = AsyncSessionStore(store)
        yield face
        run(face.close())


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def contents(items: list[Any]) -> list[Any]:
    return [item.get("content") for item in items]


def test_it_is_a_session(store: Any) -> None:
    session = StoreSession("abc", store)
    assert isinstance(session, Session)
    assert session.session_id == "abc" and session.session_settings is None
    assert session.key == "agent:main:openai:abc"


@pytest.mark.parametrize("bad", ["", "  ", None, 3])
def test_session_id_must_be_a_string(store: Any, bad: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="session_id"):
        StoreSession(bad, store)


def test_store_must_be_a_store() -> None:
    with pytest.raises(InvalidArgumentError, match="SessionStore"):
        StoreSession("a", object())  # type: ignore[arg-type]


def test_direct_use(store: Any) -> None:
    async def main() -> None:
        session = StoreSession("direct", store)
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.add_items([user("Hello"), {"role": "assistant", "content": "Hi"}])
        await session.add_items([])
        assert contents(await session.get_items()) == ["Hello", "Hi"]
        await session.clear_session()
        assert await session.get_items() == []
        await session.clear_session()  # again: nothing to clear

    run(main())


def test_pop_item(store: Any) -> None:
    async def main() -> None:
        session = StoreSession("pop", store)
        await session.add_items([user("a"), user("b")])
        await session.add_items([user("c")])
        assert (await session.pop_item())["content"] == "c"  # type: ignore[index]
        assert contents(await session.get_items()) == ["a", "b"]
        assert (await session.pop_item())["content"] == "b"  # type: ignore[index]
        await session.add_items([user("d")])
        assert contents(await session.get_items()) == ["a", "d"]
        assert contents(await session.get_items(limit=1)) == ["d"]
        assert (await session.pop_item())["content"] == "d"  # type: ignore[index]
        assert (await session.pop_item())["content"] == "a"  # type: ignore[index]
        assert await session.pop_item() is None
        assert await session.get_items() == []

    run(main())


def test_pops_of_different_sessions_are_separate(store: Any) -> None:
    async def main() -> None:
        one, two = StoreSession("one", store), StoreSession("two", store)
        await one.add_items([user("1a"), user("1b")])
        await two.add_items([user("2a")])
        assert (await one.pop_item())["content"] == "1b"  # type: ignore[index]
        assert contents(await two.get_items()) == ["2a"]
        assert contents(await one.get_items()) == ["1a"]

    run(main())


def test_concurrent_pops_never_return_the_same_item(store: Any) -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        session = StoreSession("race", store)
        await session.add_items([user(str(i)) for i in range(30)])
        popped = await asyncio.gather(*(session.pop_item() for _ in range(24)))
        return contents(popped), contents(await session.get_items())

    popped, left = run(main())
    assert sorted(popped, key=int) == [str(i) for i in range(6, 30)]
    assert left == [str(i) for i in range(6)]


def test_get_items_limit(store: Any) -> None:
    async def main() -> None:
        session = StoreSession("limit", store)
        for i in range(10):
            await session.add_items([user(f"m{i}")])
        assert contents(await session.get_items(limit=3)) == ["m7", "m8", "m9"]
        assert contents(await session.get_items(limit=100)) == [f"m{i}" for i in range(10)]
        assert await session.get_items(limit=0) == []
        assert len(await session.get_items(limit=-1)) == 10
        assert len(await session.get_items()) == 10
        await session.pop_item()
        await session.pop_item()
        assert contents(await session.get_items(limit=3)) == ["m5", "m6", "m7"]

    run(main())


def test_limit_must_be_an_integer(store: Any) -> None:
    session = StoreSession("x", store)
    with pytest.raises(InvalidArgumentError, match="limit"):
        run(session.get_items(limit="3"))  # type: ignore[arg-type]


def _append_raw(store: Any, session: StoreSession, line: bytes) -> None:
    sync = store.sync if isinstance(store, AsyncSessionStore) else store
    path = sync.transcript(session.key).path
    with open(path, "ab") as f:
        f.write(line)


@pytest.mark.file_transcripts  # writes raw bytes into the .jsonl file
def test_corrupt_newest_records_are_skipped_and_not_counted(store: Any) -> None:
    async def main() -> StoreSession:
        session = StoreSession("corrupt", store)
        await session.add_items([user("a"), user("b"), user("c")])
        return session

    session = run(main())
    _append_raw(store, session, b'{"type":"message","id":"deadbeef","message":{not json}\n')
    _append_raw(
        store,
        session,
        b'{"type":"message","id":"0badf00d","parentId":null,"message":'
        b'{"role":"' + ROLE.encode() + b'","items":"not a list"}}\n',
    )

    async def after() -> None:
        await session.add_items([user("d"), 7, user("e")])  # type: ignore[list-item]
        assert contents(await session.get_items(limit=3)) == ["c", "d", "e"]
        assert contents(await session.get_items()) == ["a", "b", "c", "d", "e"]
        limited = StoreSession("corrupt", store, session_settings=SessionSettings(limit=2))
        assert contents(await limited.get_items()) == ["d", "e"]
        assert (await session.pop_item())["content"] == "e"  # type: ignore[index]
        assert (await session.pop_item())["content"] == "d"  # type: ignore[index]
        assert (await session.pop_item())["content"] == "c"  # type: ignore[index]

    run(after())


def test_session_settings(store: Any) -> None:
    async def main() -> None:
        assert StoreSession("s", store).session_settings is None
        session = StoreSession("s", store, session_settings=SessionSettings(limit=3))
        as_dict = StoreSession("s", store, session_settings={"limit": 0})
        assert isinstance(as_dict.session_settings, SessionSettings)
        assert as_dict.session_settings.limit == 0
        await session.add_items([user(f"m{i}") for i in range(5)])
        assert contents(await session.get_items()) == ["m2", "m3", "m4"]
        assert contents(await session.get_items(limit=1)) == ["m4"]  # explicit beats settings
        assert contents(await session.get_items(limit=5)) == [f"m{i}" for i in range(5)]
        assert await as_dict.get_items() == []
        with pytest.raises(TypeError, match="limitt"):
            StoreSession("s", store, session_settings={"limitt": 1})

    run(main())


def test_unicode_and_special_characters(store: Any) -> None:
    texts = [
        "こんにちは",
        "😊👍",
        "Привет",
        "'; DROP TABLE sessions; --",
        'quote " \\ \n tab\t',
        "\u2028",
    ]

    async def main() -> list[Any]:
        session = StoreSession("unicodé 😊", store)
        await session.add_items([user(t) for t in texts])
        return contents(await session.get_items())

    assert run(main()) == texts


def test_concurrent_adds_lose_nothing(store: Any) -> None:
    async def main() -> list[Any]:
        session = StoreSession("many", store)
        await asyncio.gather(*(session.add_items([user(f"{i}")]) for i in range(40)))
        return contents(await session.get_items())

    assert sorted(run(main()), key=int) == [str(i) for i in range(40)]


def test_another_process_sees_the_items_and_the_store_lists_them(
    store: Any, state_dir: Path, backend: str
) -> None:
    run(StoreSession("Visible", store).add_items([user("x")]))
    with sessionstore.open_store(state_dir=state_dir, store_type=backend) as other:  # type: ignore[arg-type]
        assert contents(run(StoreSession("Visible", other).get_items())) == ["x"]
        rows = other.list(channel="openai").rows
        assert [r["key"] for r in rows] == [session_key("main", "visible")]
        assert rows[0]["displayName"] == "Visible"
        assert [r["key"] for r in other.list(search="visible").rows] == [rows[0]["key"]]


def test_clear_keeps_the_old_transcript_as_a_reset_archive(store: Any) -> None:
    session = StoreSession("cleared", store)
    run(session.add_items([user("x")]))
    sync: SessionStore = store.sync if isinstance(store, AsyncSessionStore) else store
    old = sync.transcript(session.key).path
    run(session.clear_session())
    if old is not None:  # a file (a postgres store archives rows: tests/postgres)
        archived = list(old.parent.glob(old.name + ".reset.*"))
        assert len(archived) == 1 and b'"x"' in archived[0].read_bytes()
    assert run(session.get_items()) == []
    run(session.add_items([user("y")]))
    assert contents(run(session.get_items())) == ["y"]


# --- the SDK's Runner, end to end, with its scripted model ---------------------------------


async def _run_agent(method: str, agent: Agent[Any], text: str, **kw: Any) -> Any:
    if method == "run":
        return await Runner.run(agent, text, **kw)
    if method == "run_sync":
        return await asyncio.to_thread(lambda: Runner.run_sync(agent, text, **kw))
    result = Runner.run_streamed(agent, text, **kw)
    async for _ in result.stream_events():
        pass
    return result


@pytest.mark.parametrize("method", ["run", "run_sync", "run_streamed"])
def test_runner_keeps_the_conversation_across_turns(store: Any, method: str) -> None:
    async def main() -> None:
        session = StoreSession("runner", store)
        model = ScriptedModel()
        agent = Agent(name="test", model=model)
        answers = ["San Francisco", "California", "USA"]
        questions = ["Which city has the Golden Gate Bridge?", "Which state?", "Which country?"]
        for turn, (question, answer) in enumerate(zip(questions, answers, strict=True)):
            model.enqueue([assistant_message(answer)])
            result = await _run_agent(method, agent, question, session=session)
            assert result.final_output == answer
            sent = model.calls[-1].input
            assert isinstance(sent, list) and len(sent) == 2 * turn + 1  # history + question
            assert sent[-1]["content"] == question
        items = await session.get_items()
        assert len(items) == 6
        assert [i.get("content") for i in items[0::2]] == questions
        other = StoreSession("runner-2", store)
        model.enqueue([assistant_message("fresh")])
        await _run_agent(method, agent, "hello", session=other)
        assert len(model.calls[-1].input) == 1  # a different session shares nothing

    run(main())


def test_run_config_session_settings_override_the_session_s(store: Any) -> None:
    async def main() -> None:
        session = StoreSession("override", store, session_settings=SessionSettings(limit=100))
        await session.add_items([user(f"Turn {i}") for i in range(10)])
        model = ScriptedModel()
        agent = Agent(name="test", model=model)
        model.enqueue([assistant_message("Got it")])
        await Runner.run(
            agent,
            "New question",
            session=session,
            run_config=RunConfig(session_settings=SessionSettings(limit=2)),
        )
        sent = model.calls[-1].input
        assert [i["content"] for i in sent] == ["Turn 8", "Turn 9", "New question"]

    run(main())


@pytest.mark.file_transcripts
def test_get_items_with_a_limit_reads_the_end_of_the_file_only(store: Any) -> None:
    """The newest n items cost what they weigh, not the file: a 2.4 MB transcript is read in
    full for get_items(), in a few 64 KiB blocks from its end for get_items(limit=3)."""
    if isinstance(store, AsyncSessionStore):
        pytest.skip("the same reads as through a SessionStore; the file is slow to build")

    async def main() -> tuple[int, int]:
        session = StoreSession("long", store)
        for i in range(300):
            await session.add_items([user(f"message number {i} " + "x" * 8000)])
        for _ in range(3):
            await session.pop_item()
        assert contents(await session.get_items(limit=3))[0].startswith("message number 294 ")
        limited = session.bytes_read
        assert len(await session.get_items()) == 297
        return limited, session.bytes_read

    limited, everything = run(main())
    sync = store.sync if isinstance(store, AsyncSessionStore) else store
    size = sync.transcript(StoreSession("long", store).key).path.stat().st_size
    assert everything >= size
    assert 0 < limited < size // 5
