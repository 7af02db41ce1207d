"""StoreSessionService against Google ADK's BaseSessionService: its Runner end to end with a
fake model, and ADK's own session-service test cases (tests/unittests/sessions of
google/adk-python that a storage backend owes, rewritten here for this store)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("google.adk")

from google.adk.agents.llm_agent import LlmAgent
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.session import Session
from google.genai import types
from pydantic import Field

import sessionstore
from sessionstore import AsyncSessionStore, InvalidArgumentError, SessionStore
from sessionstore.adapters.adk import StoreSessionService, key_part


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=["sync", "async"])
def service(request: pytest.FixtureRequest, store: SessionStore) -> Iterator[StoreSessionService]:
    """Over conftest's store (every backend), given as it is or as its async face."""
    face = AsyncSessionStore(store) if request.param == "async" else None
    yield StoreSessionService(face or store, list_state=True)
    if face is not None:
        run(face.close())


def test_it_is_a_session_service(service: StoreSessionService) -> None:
    assert isinstance(service, BaseSessionService)
    with pytest.raises(InvalidArgumentError, match="SessionStore"):
        StoreSessionService(object())  # type: ignore[arg-type]


def test_key_parts_keep_ids_apart() -> None:
    ids = ["abc", "ABC", "Abc", "a:b", "a%3ab", "", "~", " x ", "ünï", "a b"]
    assert len({key_part(i) for i in ids}) == len(ids)
    assert key_part("0f3e-uuid_x.y") == "0f3e-uuid_x.y"
    assert key_part("Alice") == "%41lice"


def test_get_empty_session(service: StoreSessionService) -> None:
    assert run(service.get_session(app_name="my_app", user_id="u", session_id="123")) is None


def test_create_get_delete(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(
            app_name="my_app", user_id="test_user", state={"key": "value"}
        )
        assert session.app_name == "my_app" and session.user_id == "test_user" and session.id
        assert session.state == {"key": "value"}
        assert session.last_update_time <= time.time()
        got = await service.get_session(
            app_name="my_app", user_id="test_user", session_id=session.id
        )
        assert got == session
        await service.delete_session(app_name="my_app", user_id="test_user", session_id=session.id)
        assert (
            await service.get_session(app_name="my_app", user_id="test_user", session_id=session.id)
            is None
        )

    run(main())


def test_create_and_list_sessions(service: StoreSessionService) -> None:
    async def main() -> None:
        ids = [f"session{i}" for i in range(5)]
        for sid in ids:
            await service.create_session(
                app_name="my_app", user_id="u", session_id=sid, state={"key": "value" + sid}
            )
        sessions = (await service.list_sessions(app_name="my_app", user_id="u")).sessions
        assert [s.id for s in sessions] == ids  # oldest update first
        for s in sessions:
            assert s.state == {"key": "value" + s.id} and s.events == []

    run(main())


def test_newest_first_lists_the_most_recent_update_first(service: StoreSessionService) -> None:
    async def main() -> None:
        for sid in ("a", "b", "c"):
            await service.create_session(app_name="my_app", user_id="u", session_id=sid)
        newest = StoreSessionService(service._store, newest_first=True)
        session = await newest.get_session(app_name="my_app", user_id="u", session_id="a")
        assert session is not None
        event = Event(invocation_id="i", author="user", timestamp=time.time() + 5)
        await newest.append_event(session, event)  # "a" is now the most recent
        listed = (await newest.list_sessions(app_name="my_app", user_id="u")).sessions
        assert [s.id for s in listed] == ["a", "c", "b"]
        oldest = (await service.list_sessions(app_name="my_app", user_id="u")).sessions
        assert [s.id for s in oldest] == ["b", "c", "a"]
        with pytest.raises(InvalidArgumentError, match="newest_first"):
            StoreSessionService(service._store, newest_first="yes")  # type: ignore[arg-type]

    run(main())


def test_list_sessions_all_users_and_metadata_only(
    service: StoreSessionService, state_dir: Path
) -> None:
    async def main() -> None:
        for user, sid in [("user1", "s1a"), ("user1", "s1b"), ("User:2", "S2a")]:
            await service.create_session(
                app_name="my_app", user_id=user, session_id=sid, state={"key": sid}
            )
        await service.create_session(app_name="other", user_id="user1", session_id="x")
        one = (await service.list_sessions(app_name="my_app", user_id="user1")).sessions
        assert {s.id: s.state for s in one} == {"s1a": {"key": "s1a"}, "s1b": {"key": "s1b"}}
        two = (await service.list_sessions(app_name="my_app", user_id="User:2")).sessions
        assert [(s.user_id, s.id, s.state) for s in two] == [("User:2", "S2a", {"key": "S2a"})]
        every = (await service.list_sessions(app_name="my_app")).sessions
        assert sorted((s.user_id, s.id) for s in every) == [
            ("User:2", "S2a"),
            ("user1", "s1a"),
            ("user1", "s1b"),
        ]
        bare = StoreSessionService(service._store)
        listed = (await bare.list_sessions(app_name="my_app")).sessions
        assert {s.id for s in listed} == {"s1a", "s1b", "S2a"}
        assert all(s.state == {} and s.events == [] for s in listed)

    run(main())


def test_app_state_is_shared_by_all_users_of_an_app(service: StoreSessionService) -> None:
    async def main() -> None:
        s1 = await service.create_session(
            app_name="my_app", user_id="u1", session_id="s1", state={"app:k1": "v1"}
        )
        event = Event(
            invocation_id="inv1",
            author="user",
            actions=EventActions(state_delta={"app:k2": "v2"}),
        )
        await service.append_event(session=s1, event=event)
        s2 = await service.create_session(app_name="my_app", user_id="u2", session_id="s2")
        assert s2.state == {"app:k1": "v1", "app:k2": "v2"}
        got = await service.get_session(app_name="my_app", user_id="u1", session_id="s1")
        assert got is not None and got.state == {"app:k1": "v1", "app:k2": "v2"}
        assert await service.get_app_state(app_name="my_app") == {"k1": "v1", "k2": "v2"}

    run(main())


def test_user_state_is_shared_only_by_the_user_s_sessions(service: StoreSessionService) -> None:
    async def main() -> None:
        s1 = await service.create_session(
            app_name="my_app", user_id="u1", session_id="s1", state={"user:k1": "v1"}
        )
        event = Event(
            invocation_id="inv1",
            author="user",
            actions=EventActions(state_delta={"user:k2": "v2"}),
        )
        await service.append_event(session=s1, event=event)
        s1b = await service.create_session(app_name="my_app", user_id="u1", session_id="s1b")
        assert s1b.state == {"user:k1": "v1", "user:k2": "v2"}
        s2 = await service.create_session(app_name="my_app", user_id="u2", session_id="s2")
        assert s2.state == {}
        assert await service.get_user_state(app_name="my_app", user_id="u1") == {
            "k1": "v1",
            "k2": "v2",
        }
        assert await service.get_user_state(app_name="my_app", user_id="nobody") == {}

    run(main())


def test_session_state_is_not_shared(service: StoreSessionService) -> None:
    async def main() -> None:
        s1 = await service.create_session(
            app_name="my_app", user_id="u1", session_id="s1", state={"sk1": "v1"}
        )
        event = Event(
            invocation_id="inv1", author="user", actions=EventActions(state_delta={"sk2": "v2"})
        )
        await service.append_event(session=s1, event=event)
        got = await service.get_session(app_name="my_app", user_id="u1", session_id="s1")
        assert got is not None and got.state == {"sk1": "v1", "sk2": "v2"}
        s1b = await service.create_session(app_name="my_app", user_id="u1", session_id="s1b")
        assert s1b.state == {}

    run(main())


def test_temp_state_is_never_stored(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(
            app_name="my_app", user_id="u1", session_id="s1", state={"temp:x": 1, "k": 0}
        )
        assert session.state == {"k": 0}
        event = Event(
            invocation_id="inv1",
            author="user",
            actions=EventActions(state_delta={"temp:k1": "v1", "sk": "v2"}),
        )
        await service.append_event(session=session, event=event)
        assert session.state["temp:k1"] == "v1" and session.state["sk"] == "v2"
        assert "temp:k1" not in event.actions.state_delta
        got = await service.get_session(app_name="my_app", user_id="u1", session_id="s1")
        assert got is not None and got.state == {"k": 0, "sk": "v2"}
        assert "temp:k1" not in got.events[0].actions.state_delta

    run(main())


def test_get_session_respects_the_user(service: StoreSessionService) -> None:
    async def main() -> None:
        s1 = await service.create_session(app_name="my_app", user_id="u1", session_id="s1")
        await service.append_event(s1, Event(invocation_id="inv1", author="user"))
        await service.create_session(app_name="my_app", user_id="u2", session_id="s1")
        got = await service.get_session(app_name="my_app", user_id="u2", session_id="s1")
        assert got is not None and got.user_id == "u2" and got.events == []

    run(main())


def test_ids_differing_in_case_are_different_sessions(service: StoreSessionService) -> None:
    async def main() -> None:
        await service.create_session(app_name="App", user_id="U", session_id="S", state={"a": 1})
        await service.create_session(app_name="app", user_id="u", session_id="s", state={"a": 2})
        upper = await service.get_session(app_name="App", user_id="U", session_id="S")
        lower = await service.get_session(app_name="app", user_id="u", session_id="s")
        assert upper is not None and upper.state == {"a": 1}
        assert lower is not None and lower.state == {"a": 2}

    run(main())


def test_create_with_an_existing_id_raises(service: StoreSessionService) -> None:
    async def main() -> None:
        await service.create_session(app_name="a", user_id="u", session_id="dup", state={"x": 1})
        with pytest.raises(AlreadyExistsError):
            await service.create_session(
                app_name="a", user_id="u", session_id="dup", state={"app:y": 2}
            )
        got = await service.get_session(app_name="a", user_id="u", session_id="dup")
        assert got is not None and got.state == {"x": 1}  # nothing of the refused call

    run(main())


def test_padded_session_ids_are_trimmed(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="a", user_id="u", session_id="  s1 ")
        assert session.id == "s1"
        assert await service.get_session(app_name="a", user_id="u", session_id=" s1") is not None
        await service.delete_session(app_name="a", user_id="u", session_id="s1  ")
        assert await service.get_session(app_name="a", user_id="u", session_id="s1") is None

    run(main())


def test_append_event_bytes_and_every_field_round_trip(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        content = types.Content(
            role="user", parts=[types.Part.from_bytes(data=b"image", mime_type="image/png")]
        )
        grounding = types.GroundingMetadata(
            search_entry_point=types.SearchEntryPoint(sdk_blob=b"blob")
        )
        await service.append_event(
            session,
            Event(invocation_id="i0", author="user", content=content, grounding_metadata=grounding),
        )
        event = Event(
            invocation_id="invocation",
            author="user",
            content=types.Content(role="user", parts=[types.Part(text="test_text")]),
            turn_complete=True,
            partial=False,
            actions=EventActions(
                artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True
            ),
            long_running_tool_ids={"tool1"},
            error_code="error_code",
            error_message="error_message",
            interrupted=True,
            grounding_metadata=types.GroundingMetadata(web_search_queries=["query1"]),
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=1, candidates_token_count=1, total_token_count=2
            ),
            citation_metadata=types.CitationMetadata(),
            custom_metadata={"custom_key": "custom_value"},
            timestamp=1700000000.123,
            input_transcription=types.Transcription(text="in", finished=True),
            output_transcription=types.Transcription(text="out", finished=True),
        )
        await service.append_event(session=session, event=event)
        got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert got == session
        assert got is not None and got.events[0].content == content
        assert got.events[0].grounding_metadata == grounding

    run(main())


def test_last_update_time_follows_the_event(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        original = session.last_update_time
        event = Event(invocation_id="i", author="user", timestamp=original + 10)
        await service.append_event(session=session, event=event)
        assert session.last_update_time == original + 10
        got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert got is not None and got.last_update_time == original + 10

    run(main())


def test_appending_to_a_stale_session_is_refused(service: StoreSessionService) -> None:
    async def main() -> None:
        now = time.time()
        original = await service.create_session(app_name="my_app", user_id="user")
        await service.append_event(
            original,
            Event(
                invocation_id="inv1",
                author="user",
                timestamp=now + 1,
                actions=EventActions(state_delta={"sk1": "v1"}),
            ),
        )
        updated = await service.get_session(
            app_name="my_app", user_id="user", session_id=original.id
        )
        assert updated is not None
        await service.append_event(
            updated,
            Event(
                invocation_id="inv2",
                author="user",
                timestamp=now + 2,
                actions=EventActions(state_delta={"sk2": "v2"}),
            ),
        )
        # The same float time as the stored one: only the revision tells them apart.
        original.last_update_time = updated.last_update_time
        with pytest.raises(StaleSessionError, match="modified in storage"):
            await service.append_event(
                original,
                Event(
                    invocation_id="inv3",
                    author="user",
                    timestamp=now + 3,
                    actions=EventActions(state_delta={"sk3": "v3"}),
                ),
            )
        final = await service.get_session(app_name="my_app", user_id="user", session_id=original.id)
        assert final is not None
        assert [e.invocation_id for e in final.events] == ["inv1", "inv2"]
        assert final.state == {"sk1": "v1", "sk2": "v2"}

    run(main())


def test_concurrent_writers_of_one_revision_one_wins(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        for i in range(8):
            latest = await service.get_session(
                app_name="my_app", user_id="user", session_id=session.id
            )
            assert latest is not None
            copies = [latest.model_copy(deep=True) for _ in range(2)]
            results = await asyncio.gather(
                *(
                    service.append_event(
                        c,
                        Event(
                            invocation_id=f"inv{i}-{n}",
                            author="user",
                            actions=EventActions(state_delta={f"sk{i}-{n}": n}),
                        ),
                    )
                    for n, c in enumerate(copies)
                ),
                return_exceptions=True,
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            assert len(errors) == 1 and isinstance(errors[0], StaleSessionError)
        final = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert final is not None and len(final.events) == 8
        for i in range(8):
            assert len({f"sk{i}-0", f"sk{i}-1"} & set(final.state)) == 1

    run(main())


def test_a_session_object_without_a_marker_is_checked_by_its_events(
    service: StoreSessionService,
) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="a", user_id="u", session_id="s1")
        await service.append_event(session, Event(invocation_id="inv1", author="user"))
        session._storage_update_marker = None
        session.last_update_time -= 0.0001
        await service.append_event(session, Event(invocation_id="inv2", author="user"))
        manual = Session(id="s1", app_name="a", user_id="u")  # no events: behind storage
        with pytest.raises(StaleSessionError):
            await service.append_event(manual, Event(invocation_id="inv3", author="user"))
        got = await service.get_session(app_name="a", user_id="u", session_id="s1")
        assert got is not None and [e.invocation_id for e in got.events] == ["inv1", "inv2"]

    run(main())


def test_appending_to_a_missing_session_raises(service: StoreSessionService) -> None:
    ghost = Session(id="ghost", app_name="a", user_id="u")
    with pytest.raises(SessionNotFoundError):
        run(service.append_event(ghost, Event(invocation_id="i", author="user")))


def test_get_session_with_config(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        for i in range(1, 6):
            await service.append_event(session, Event(author="user", timestamp=i))

        async def times(**config: Any) -> list[float]:
            got = await service.get_session(
                app_name="my_app",
                user_id="user",
                session_id=session.id,
                config=GetSessionConfig(**config) if config else None,
            )
            assert got is not None
            return [e.timestamp for e in got.events]

        assert await times() == [1, 2, 3, 4, 5]
        assert await times(num_recent_events=0) == []
        assert await times(num_recent_events=3) == [3, 4, 5]
        assert await times(num_recent_events=50) == [1, 2, 3, 4, 5]
        assert await times(after_timestamp=4.0) == [4, 5]
        assert await times(after_timestamp=50.0) == []
        assert await times(after_timestamp=4.0, num_recent_events=3) == [4, 5]
        assert await times(after_timestamp=2.0, num_recent_events=2) == [4, 5]

    run(main())


def test_partial_events_are_not_stored(service: StoreSessionService) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="my_app", user_id="user")
        await service.append_event(session, Event(author="user", partial=True))
        assert session.events == []
        got = await service.get_session(app_name="my_app", user_id="user", session_id=session.id)
        assert got is not None and got.events == []

    run(main())


def test_adk_sessions_are_listed_searched_and_checked_by_the_store(
    service: StoreSessionService, state_dir: Path, backend: str
) -> None:
    async def main() -> None:
        session = await service.create_session(app_name="shop", user_id="ann", session_id="c1")
        await service.append_event(session, Event(invocation_id="i", author="user"))

    run(main())
    with sessionstore.open_store(state_dir=state_dir, store_type=backend) as store:  # type: ignore[arg-type]
        keys = [r["key"] for r in store.list(channel="adk").rows]
        assert "agent:main:adk:shop:ann:c1" in keys
        assert store.transcript("agent:main:adk:shop:ann:c1").tail(5)[0]["role"] == "adk"
        assert not [f for f in store.check() if "adk" in str(f)]


# --- ADK's Runner, end to end, with a fake model --------------------------------------------


class EchoModel(BaseLlm):
    """Answers every turn with the turn number and how many contents it was sent."""

    model: str = "echo"
    requests: list[int] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(len(llm_request.contents))
        text = f"turn {len(self.requests)} saw {len(llm_request.contents)}"
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=text)]))


def test_runner_keeps_the_conversation_across_turns(service: StoreSessionService) -> None:
    async def main() -> None:
        model = EchoModel(requests=[])
        agent = LlmAgent(name="echo", model=model, output_key="last_reply")
        runner = Runner(app_name="chat", agent=agent, session_service=service)
        session = await service.create_session(app_name="chat", user_id="ann", session_id="c1")
        replies = []
        for turn in range(3):
            message = types.Content(role="user", parts=[types.Part(text=f"hello {turn}")])
            async for event in runner.run_async(
                user_id="ann", session_id=session.id, new_message=message
            ):
                if event.is_final_response() and event.content and event.content.parts:
                    replies.append(event.content.parts[0].text)
        assert model.requests == [1, 3, 5]  # each turn saw the conversation so far
        assert replies == ["turn 1 saw 1", "turn 2 saw 3", "turn 3 saw 5"]
        stored = await service.get_session(app_name="chat", user_id="ann", session_id="c1")
        assert stored is not None
        texts = [e.content.parts[0].text for e in stored.events if e.content and e.content.parts]
        assert texts == [
            "hello 0",
            "turn 1 saw 1",
            "hello 1",
            "turn 2 saw 3",
            "hello 2",
            "turn 3 saw 5",
        ]
        assert stored.state["last_reply"] == "turn 3 saw 5"

    run(main())
