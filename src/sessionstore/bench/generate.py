"""A deterministic generator of realistic OpenClaw state dirs (tests, benchmarks, demos).

``generate_state_dir`` writes ``<root>/agents/<agent>/sessions/sessions.json`` for each
agent exactly as OpenClaw writes it (2-space indent, no trailing newline, mode 0600), with
the key shapes of spec section 3.4 spread over several channels, typical entries of about
1.5 KB and bloated ones carrying a ~35-40 KB ``skillsSnapshot`` (a few catalogs shared by
many sessions, as in the field) plus a per-session ``systemPromptReport`` of 5-20 KB.
Optionally it adds legacy ``provider``/``lastProvider``/``room`` fields, mixed-case
duplicate keys and pi v3 transcripts.

Everything comes from one ``random.Random(seed)``: the same arguments (including
``now_ms``) produce byte-identical files.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from ..clock import iso_ms
from ..clock import now_ms as current_ms
from ..files import atomic_write, dumps_pretty, write_all
from ..keys import normalize_agent_id
from ..transcripts.naming import transcript_path

__all__ = [
    "GeneratedAgent",
    "GeneratedState",
    "SkillCatalog",
    "bloated_entry",
    "generate_state_dir",
    "mixed_case_variant",
    "skill_catalogs",
    "typical_entry",
    "write_transcripts",
]

Entry = dict[str, Any]

DAY_MS: Final = 86_400_000
SPREAD_MS: Final = 42 * DAY_MS  # updatedAt spread: six weeks before now
LEGACY_RATIO: Final = 0.15

# (shape, weight): the mix of session kinds in a generated store.
_SHAPES: Final = (
    ("direct_channel_peer", 26),
    ("direct_peer", 4),
    ("direct_account", 4),
    ("whatsapp_group", 10),
    ("discord_channel", 7),
    ("slack_channel", 7),
    ("slack_thread", 8),
    ("telegram_topic", 8),
    ("subagent", 10),
    ("cron", 5),
    ("cron_run", 6),
    ("dashboard", 5),
)
_SHAPE_NAMES: Final = tuple(s for s, _ in _SHAPES)
_SHAPE_CUM_WEIGHTS: Final = tuple(itertools.accumulate(w for _, w in _SHAPES))

_MODELS: Final = (
    ("anthropic", "claude-opus-4-6", 200_000),
    ("anthropic", "claude-sonnet-4-6", 200_000),
    ("openai", "gpt-5.4", 400_000),
    ("openai", "gpt-5.4-mini", 400_000),
    ("google", "gemini-3-pro-preview", 1_000_000),
)
_FIRST: Final = (
    "Ana", "Rui", "Maria", "João", "Lena", "Tom", "Priya", "Kenji", "Sofia", "Omar",
    "Chloé", "Lukas", "Amara", "Diego", "Ingrid", "Wei", "Noah", "Zara", "Mateo", "Yuki",
)  # fmt: skip
_LAST: Final = (
    "Silva", "Costa", "Müller", "Novak", "Okafor", "Tanaka", "García", "Kowalski",
    "Dubois", "Haddad", "Larsen", "Chen", "Rossi", "Ivanova", "Park", "Mendes",
)  # fmt: skip
_WORDS: Final = (
    "calendar", "events", "issues", "pull", "requests", "weather", "forecast", "notes",
    "search", "files", "summaries", "messages", "threads", "reminders", "tasks", "alerts",
    "deploys", "metrics", "dashboards", "logs", "incidents", "contacts", "email", "drafts",
    "playlists", "lights", "scenes", "recipes", "invoices", "expenses", "backups", "photos",
    "transcripts", "documents", "pages", "tickets", "builds", "releases", "queries", "feeds",
)  # fmt: skip
_VERBS: Final = (
    "Create", "List", "Read", "Update", "Search", "Summarize", "Manage", "Track", "Fetch",
    "Review", "Schedule", "Control", "Export", "Query", "Monitor", "Draft", "Sync", "Inspect",
)  # fmt: skip
_SKILL_NAMES: Final = (
    "weather", "github", "summarize", "gog", "pagerduty", "kubectl", "grafana", "notion",
    "slack", "discord", "spotify-player", "1password", "apple-notes", "apple-reminders",
    "himalaya", "obsidian", "trello", "openhue", "sonos", "camsnap", "video-frames",
    "openai-whisper", "nano-pdf", "bird", "blogwatcher", "goplaces", "gemini", "coding-agent",
    "tmux", "things-mac", "bear-notes", "imsg", "wacli", "sag", "session-logs", "healthcheck",
    "model-usage", "clawhub", "skill-creator", "canvas", "food-order", "eightctl", "blucli",
    "ordercli", "peekaboo", "songsee", "oracle", "mcporter", "xurl", "gh-issues",
)  # fmt: skip
_CORE_TOOLS: Final = (
    "read", "write", "edit", "apply_patch", "exec", "process", "browser", "canvas", "nodes",
    "cron", "message", "gateway", "agents_list", "sessions_list", "sessions_history",
    "sessions_send", "sessions_spawn", "session_status", "image", "web_search", "web_fetch",
    "memory_search", "memory_get", "tts",
)  # fmt: skip
_MCP_SERVERS: Final = ("github", "linear", "sentry", "postgres", "figma", "notion", "stripe")
_WORKSPACE_FILES: Final = (
    "AGENTS.md", "SOUL.md", "TOOLS.md", "IDENTITY.md", "USER.md", "HEARTBEAT.md", "MEMORY.md",
)  # fmt: skip
_GROUP_NAMES: Final = (
    "family", "eng-oncall", "general", "random", "book-club", "climbing", "ops-alerts",
    "release-train", "design-crit", "support", "standup", "homelab", "travel", "infra",
)  # fmt: skip
_CRON_JOBS: Final = (
    "daily-digest", "inbox-triage", "standup-reminder", "backup-check", "weekly-review",
    "price-watch", "news-brief", "habit-check",
)  # fmt: skip


# --- small random helpers ----------------------------------------------------------------------


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(rng: random.Random, n: int = 8) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10**n - 1))


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def _sentence(rng: random.Random, min_chars: int) -> str:
    words = [rng.choice(_VERBS)]
    length = len(words[0]) + 1
    while length < min_chars:
        words.append(rng.choice(_WORDS))
        length += len(words[-1]) + 1
    return " ".join(words)


def _cost(rng: random.Random, low: float, high: float) -> float:
    value = round(rng.uniform(low, high), 4)
    # JSON.stringify writes 2.0 as 2; keep costs non-integral so files read back identically
    return value + 0.0001 if value.is_integer() else value


def mixed_case_variant(key: str) -> str:
    """A legacy mixed-case spelling of a canonical key (``Agent:Main:Telegram:Direct:1``).

    Args:
        key: A lowercase key.

    Returns:
        The key with each ``:``-separated part capitalised; it folds back to ``key``.
    """
    return ":".join(part[:1].upper() + part[1:] for part in key.split(":"))


# --- skill catalogs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SkillCatalog:
    """One distinct ``skillsSnapshot`` (many sessions share one, as in the field).

    Attributes:
        snapshot: The ``skillsSnapshot`` value (prompt XML, skills, filter, resolved skills).
        block_chars: Skill name -> size of its ``<skill>`` block in the prompt (for
            ``systemPromptReport.skills``).
    """

    snapshot: Entry
    block_chars: dict[str, int]


def skill_catalogs(
    rng: random.Random, *, count: int = 4, workspace: str = "/home/user/.openclaw/workspace"
) -> list[SkillCatalog]:
    """Build ``count`` distinct skill catalogs of about 35-40 KB each (as stored in JSON).

    Args:
        rng: The random source.
        count: How many distinct catalogs.
        workspace: The workspace dir used in skill locations.

    Returns:
        The catalogs.
    """
    catalogs = []
    for _ in range(count):
        names = sorted(rng.sample(_SKILL_NAMES, rng.randint(36, 39)))
        blocks: list[str] = []
        block_chars: dict[str, int] = {}
        skills: list[Entry] = []
        resolved: list[Entry] = []
        for name in names:
            source = rng.choice(("workspace", "bundled", "managed"))
            base_dir = (
                f"{workspace}/skills/{name}"
                if source == "workspace"
                else f"/usr/lib/node_modules/openclaw/skills/{name}"
                if source == "bundled"
                else f"{workspace.rsplit('/', 1)[0]}/skills/{name}"
            )
            description = _sentence(rng, rng.randint(170, 250))
            block = (
                f"  <skill>\n    <name>{name}</name>\n"
                f"    <description>{description}</description>\n"
                f"    <location>{base_dir}/SKILL.md</location>\n  </skill>"
            )
            blocks.append(block)
            block_chars[name] = len(block)
            skill: Entry = {"name": name}
            if rng.random() < 0.35:
                env = name.upper().replace("-", "_") + "_TOKEN"
                skill["primaryEnv"] = env
                skill["requiredEnv"] = [env]
            skills.append(skill)
            resolved.append(
                {
                    "name": name,
                    "description": description,
                    "filePath": f"{base_dir}/SKILL.md",
                    "baseDir": base_dir,
                    "source": source,
                    "disableModelInvocation": False,
                }
            )
        prompt = (
            "\n\nThe following skills provide specialized instructions for specific tasks.\n"
            "Use the read tool to load a skill's file when the task matches its description.\n"
            "When a skill file references a relative path, resolve it against the skill"
            " directory.\n\n<available_skills>\n" + "\n".join(blocks) + "\n</available_skills>"
        )
        snapshot: Entry = {"prompt": prompt, "skills": skills}
        if rng.random() < 0.5:
            snapshot["skillFilter"] = [s["name"] for s in skills]
        snapshot["resolvedSkills"] = resolved
        snapshot["version"] = 1_774_900_000_000 + rng.randint(0, 10**8)
        catalogs.append(SkillCatalog(snapshot=snapshot, block_chars=block_chars))
    return catalogs


# --- routes: key shapes and where replies go ---------------------------------------------------


@dataclass
class _Route:
    key: str
    shape: str
    channel: str | None = None
    chat_type: str | None = None
    to: str | None = None
    account_id: str | None = "default"
    thread_id: str | int | None = None
    topic_id: int | None = None
    group_id: str | None = None
    group_channel: str | None = None
    space: str | None = None
    subject: str | None = None
    display_name: str | None = None
    origin_label: str | None = None
    origin_from: str | None = None
    origin_to: str | None = None
    native_channel_id: str | None = None
    extra: Entry = field(default_factory=dict)


@dataclass
class _AgentState:
    """Per-agent context while generating: ids in use, pools for related keys."""

    agent_id: str
    keys: set[str] = field(default_factory=set)
    parents: list[str] = field(default_factory=list)
    slack_channels: list[tuple[str, str]] = field(default_factory=list)
    cron_jobs: dict[str, str] = field(default_factory=dict)
    labels: set[str] = field(default_factory=set)
    # base -> the suffix to try first: every smaller one is taken (labels only grow)
    next_suffix: dict[str, int] = field(default_factory=dict)

    def label(self, base: str) -> str:
        """A label unique in this store (labels are unique per store upstream)."""
        label, n = base, self.next_suffix.get(base, 2)
        while label in self.labels:
            label, n = f"{base}-{n}", n + 1
        self.labels.add(label)
        if label != base:
            self.next_suffix[base] = n
        return label


def _person(rng: random.Random) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    handle = (first + last).lower().encode("ascii", "ignore").decode()
    return f"{first} {last}", handle


def _route(rng: random.Random, st: _AgentState, shape: str) -> _Route:
    a = st.agent_id
    if shape == "main":
        peer = _digits(rng, 10)
        name, handle = _person(rng)
        return _Route(
            key=f"agent:{a}:main",
            shape=shape,
            chat_type="direct",
            to=peer,
            channel="telegram",
            origin_label=f"{name} (@{handle}) id:{peer}",
            origin_from=f"telegram:{peer}",
            origin_to=f"telegram:{peer}",
        )
    if shape in ("direct_channel_peer", "direct_peer", "direct_account"):
        channel = (
            rng.choice(("telegram", "telegram", "whatsapp", "signal", "discord"))
            if shape == "direct_channel_peer"
            else "telegram"
        )
        if channel == "telegram":
            peer = _digits(rng, 10)
            to = peer
        elif channel == "discord":
            peer = _digits(rng, 18)
            to = f"user:{peer}"
        else:
            peer = "+" + rng.choice(("351", "49", "44", "1", "81")) + _digits(rng, 9)
            to = peer
        account = rng.choice(("default", "work", "personal")) if shape == "direct_account" else None
        if shape == "direct_channel_peer":
            key = f"agent:{a}:{channel}:direct:{peer}"
        elif shape == "direct_peer":
            key = f"agent:{a}:direct:{peer}"
        else:
            key = f"agent:{a}:{channel}:{account}:direct:{peer}"
        name, handle = _person(rng)
        return _Route(
            key=key.lower(),
            shape=shape,
            chat_type="direct",
            to=to,
            account_id=account or "default",
            origin_label=f"{name} (@{handle}) id:{peer}",
            origin_from=f"{channel}:{peer}",
            origin_to=f"{channel}:{peer}",
            channel=channel,
        )
    if shape == "whatsapp_group":
        jid = "1203630" + _digits(rng, 11) + "@g.us"
        group = rng.choice(_GROUP_NAMES)
        return _Route(
            key=f"agent:{a}:whatsapp:group:{jid}",
            shape=shape,
            channel="whatsapp",
            chat_type="group",
            to=jid,
            group_id=jid,
            subject=group.replace("-", " ").title(),
            display_name=f"whatsapp:g-{group}",
            origin_label=f"{group} id:{jid}",
            origin_from=f"whatsapp:group:{jid}",
            origin_to=jid,
        )
    if shape == "discord_channel":
        cid = _digits(rng, 19)
        guild = rng.choice(("acme", "homelab", "guild-of-devs", "study-group"))
        group = rng.choice(_GROUP_NAMES)
        return _Route(
            key=f"agent:{a}:discord:channel:{cid}",
            shape=shape,
            channel="discord",
            chat_type="channel",
            to=f"channel:{cid}",
            group_id=cid,
            group_channel=f"#{group}",
            space=guild,
            display_name=f"discord:{guild}#{group}",
            origin_label=f"#{group}",
            origin_from=f"discord:channel:{cid}",
            origin_to=f"channel:{cid}",
            native_channel_id=cid,
        )
    if shape == "slack_channel" or (shape == "slack_thread" and not st.slack_channels):
        native = "C0" + _alnum(rng, 8).upper()
        group = rng.choice(_GROUP_NAMES)
        st.slack_channels.append((native, group))
        return _slack_route(a, native, group, shape="slack_channel")
    if shape == "slack_thread":
        native, group = rng.choice(st.slack_channels)
        ts = f"{rng.randint(1_770_000_000, 1_776_000_000)}.{rng.randint(0, 999_999):06d}"
        route = _slack_route(a, native, group, shape=shape)
        route.key += f":thread:{ts}"
        route.thread_id = ts  # numeric-looking, but a string: it must stay one
        route.display_name = f"slack:acme#{group} thread"
        route.extra["forkedFromParent"] = True
        return route
    if shape == "telegram_topic":
        gid = "-100" + _digits(rng, 10)
        topic = rng.randint(2, 4000)
        group = rng.choice(_GROUP_NAMES)
        return _Route(
            key=f"agent:{a}:telegram:group:{gid}:topic:{topic}",
            shape=shape,
            channel="telegram",
            chat_type="group",
            to=f"telegram:{gid}",
            thread_id=topic,  # a number, as Telegram topics are
            topic_id=topic,
            group_id=gid,
            subject=group.replace("-", " ").title(),
            display_name=f"telegram:g-{group} topic {topic}",
            origin_label=f"{group} id:{gid} topic:{topic}",
            origin_from=f"telegram:group:{gid}",
            origin_to=f"telegram:{gid}",
        )
    if shape == "subagent":
        parent = rng.choice(st.parents) if st.parents else f"agent:{a}:main"
        return _Route(
            key=f"agent:{a}:subagent:{_uuid(rng)}",
            shape=shape,
            account_id=None,
            extra={"spawnedBy": parent, "spawnDepth": 1, "subagentRole": "leaf"},
        )
    if shape in ("cron", "cron_run"):
        name = rng.choice(_CRON_JOBS)
        job = st.cron_jobs.setdefault(name, _uuid(rng))
        job_key = f"agent:{a}:cron:{job}"
        if shape == "cron" and job_key not in st.keys:
            return _Route(key=job_key, shape="cron", account_id=None, extra={"label": name})
        return _Route(key=f"{job_key}:run:{_uuid(rng)}", shape="cron_run", account_id=None)
    if shape == "dashboard":
        return _Route(
            key=f"agent:{a}:dashboard:{_uuid(rng)}",
            shape=shape,
            channel="webchat",
            chat_type="direct",
            account_id=None,
            extra={"parentSessionKey": f"agent:{a}:main"} if rng.random() < 0.5 else {},
        )
    raise ValueError(f"unknown session shape {shape!r}")


def _slack_route(agent: str, native: str, group: str, *, shape: str) -> _Route:
    return _Route(
        key=f"agent:{agent}:slack:channel:{native.lower()}",
        shape=shape,
        channel="slack",
        chat_type="channel",
        to=f"channel:{native}",
        group_id=native.lower(),
        group_channel=f"#{group}",
        space="acme",
        display_name=f"slack:acme#{group}",
        origin_label=f"#{group}",
        origin_from=f"slack:channel:{native}",
        origin_to=f"channel:{native}",
        native_channel_id=native,
    )


def _next_route(rng: random.Random, st: _AgentState, index: int) -> _Route:
    while True:
        shape = (
            "main" if index == 0 else rng.choices(_SHAPE_NAMES, cum_weights=_SHAPE_CUM_WEIGHTS)[0]
        )
        route = _route(rng, st, shape)
        if route.key not in st.keys:
            break
        index = max(index, 1)  # a repeated key (rare): draw another shape
    st.keys.add(route.key)
    if route.shape not in ("subagent", "cron", "cron_run"):
        st.parents.append(route.key)
    return route


# --- entries -----------------------------------------------------------------------------------


def _entry(
    rng: random.Random,
    route: _Route,
    st: _AgentState,
    *,
    sessions_dir: Path,
    updated_at: int,
    bloated: bool,
) -> Entry:
    """One entry in OpenClaw's field order; routes already normalised as OpenClaw saves them."""
    sid = _uuid(rng)
    e: Entry = {"sessionId": sid, "updatedAt": updated_at}
    if rng.random() < 0.85 or route.topic_id is not None:
        e["sessionFile"] = str(transcript_path(sessions_dir, sid, route.topic_id))
    e["systemSent"] = True
    e["abortedLastRun"] = rng.random() < 0.05
    if route.chat_type:
        e["chatType"] = route.chat_type
    if route.chat_type in ("group", "channel"):
        e["channel"] = route.channel
        if route.group_id:
            e["groupId"] = route.group_id
        if route.subject:
            e["subject"] = route.subject
        if route.group_channel:
            e["groupChannel"] = route.group_channel
        if route.space:
            e["space"] = route.space
    if route.display_name:
        e["displayName"] = route.display_name
    for name, value in route.extra.items():
        e[name] = st.label(value) if name == "label" else value
    if "label" not in e and rng.random() < (0.5 if bloated else 0.12):
        if route.display_name:
            base = route.display_name.split(":")[-1].replace("#", "-").replace(" ", "-")
        elif route.origin_label:
            base = route.origin_label.split(" ")[0].lower() + "-dm"
        else:
            base = route.shape.replace("_", "-")
        e["label"] = st.label(base)
    if route.shape == "subagent":
        started = updated_at - rng.randint(20_000, 3_600_000)
        e["startedAt"] = started
        e["endedAt"] = updated_at
        e["runtimeMs"] = updated_at - started
        e["status"] = rng.choice(("done", "done", "done", "failed", "timeout", "killed"))
    e["thinkingLevel"] = rng.choice(("off", "low", "low", "medium", "high"))
    if bloated:
        e["verboseLevel"] = rng.choice(("on", "off"))
        e["reasoningLevel"] = "off"
        e["elevatedLevel"] = rng.choice(("ask", "on", "off"))
        e["responseUsage"] = rng.choice(("tokens", "full", "on"))
        if route.chat_type in ("group", "channel"):
            e["groupActivation"] = rng.choice(("mention", "always"))
        e["queueMode"] = rng.choice(("steer+backlog", "collect", "followup"))
        e["queueDebounceMs"] = rng.choice((500, 1000, 1500))
    else:
        if rng.random() < 0.3:
            e["verboseLevel"] = rng.choice(("on", "off"))
        if rng.random() < 0.3:
            e["responseUsage"] = rng.choice(("tokens", "full"))
    if rng.random() < 0.4:
        e["authProfileOverride"] = rng.choice(("anthropic:default", "openai:work"))
        e["authProfileOverrideSource"] = rng.choice(("auto", "user"))
    if route.channel is not None:
        ctx: Entry = {"channel": route.channel}
        if route.to is not None:
            ctx["to"] = route.to
        if route.account_id is not None:
            ctx["accountId"] = route.account_id
        if route.thread_id is not None:
            ctx["threadId"] = route.thread_id
        e["deliveryContext"] = ctx
        e["lastChannel"] = route.channel
        if route.to is not None:
            e["lastTo"] = route.to
        if route.account_id is not None:
            e["lastAccountId"] = route.account_id
        if route.thread_id is not None:
            e["lastThreadId"] = route.thread_id
    if route.origin_label is not None:
        origin: Entry = {
            "label": route.origin_label,
            "provider": route.channel,
            "surface": route.channel,
            "chatType": route.chat_type,
            "from": route.origin_from,
            "to": route.origin_to,
        }
        if route.native_channel_id:
            origin["nativeChannelId"] = route.native_channel_id
        if route.account_id is not None:
            origin["accountId"] = route.account_id
        if route.thread_id is not None:
            origin["threadId"] = route.thread_id
        e["origin"] = origin
    e["compactionCount"] = rng.randint(1, 6) if bloated else rng.choice((0, 0, 0, 1))
    if e["compactionCount"]:
        e["memoryFlushAt"] = updated_at - rng.randint(60_000, DAY_MS)
        e["memoryFlushCompactionCount"] = e["compactionCount"]
    provider, model, context = rng.choice(_MODELS)
    if rng.random() < 0.1:
        e["providerOverride"] = provider
        e["modelOverride"] = model
    e["modelProvider"] = provider
    e["model"] = model
    e["contextTokens"] = context
    scale = 60 if bloated else 1
    inp = rng.randint(2_000, 40_000) * scale
    out = rng.randint(100, 4_000) * scale
    e["inputTokens"] = inp
    e["outputTokens"] = out
    e["cacheRead"] = rng.randint(0, inp)
    e["cacheWrite"] = rng.randint(0, max(1, inp // 10))
    e["totalTokens"] = rng.randint(5_000, min(context, 190_000))
    e["totalTokensFresh"] = rng.random() < 0.9
    e["estimatedCostUsd"] = _cost(rng, 0.001, 9.0 if bloated else 0.6)
    if rng.random() < 0.1:
        selected = rng.choice(_MODELS)
        e["fallbackNoticeSelectedModel"] = f"{selected[0]}/{selected[1]}"
        e["fallbackNoticeActiveModel"] = f"{provider}/{model}"
        e["fallbackNoticeReason"] = rng.choice(("rate_limit", "overloaded", "timeout"))
    return e


def _bloat(
    rng: random.Random,
    e: Entry,
    key: str,
    catalog: SkillCatalog,
    *,
    workspace: str,
    sessions_dir: Path,
) -> None:
    """Add what long-running sessions carry: checkpoints, bindings, skills, prompt report."""
    sid = e["sessionId"]
    updated = int(e["updatedAt"])
    e["compactionCheckpoints"] = [
        {
            "checkpointId": f"cp-{updated - i * 3_600_000}-{_hex(rng, 4)}",
            "sessionKey": key,
            "sessionId": sid,
            "createdAt": updated - i * 3_600_000,
            "reason": rng.choice(("auto-threshold", "manual", "overflow-retry")),
            "tokensBefore": rng.randint(150_000, 190_000),
            "tokensAfter": rng.randint(20_000, 50_000),
            "summary": _sentence(rng, 80),
            "firstKeptEntryId": _hex(rng),
            "preCompaction": {
                "sessionId": sid,
                "sessionFile": str(transcript_path(sessions_dir, sid)),
                "leafId": _hex(rng),
            },
            "postCompaction": {"sessionId": sid, "entryId": _hex(rng)},
        }
        for i in range(1, min(3, int(e.get("compactionCount", 1))) + 1)
    ]
    e["memoryFlushContextHash"] = "sha256:" + _hex(rng, 16)
    cli_id = _uuid(rng)
    e["cliSessionIds"] = {"claude-cli": cli_id}
    e["cliSessionBindings"] = {
        "claude-cli": {
            "sessionId": cli_id,
            "authProfileId": "anthropic:default",
            "extraSystemPromptHash": _hex(rng, 12),
            "mcpConfigHash": _hex(rng, 12),
        }
    }
    if rng.random() < 0.4:
        e["lastHeartbeatText"] = "HEARTBEAT_OK"
        e["lastHeartbeatSentAt"] = updated - rng.randint(60_000, 3_600_000)
        e["heartbeatTaskState"] = {"check-inbox": updated - 600_000, "digest": updated - DAY_MS}
    e["skillsSnapshot"] = catalog.snapshot
    e["systemPromptReport"] = _prompt_report(rng, e, key, catalog, workspace=workspace)
    if rng.random() < 0.3:
        e["pluginDebugEntries"] = [
            {"pluginId": "lossless-claw", "lines": [f"LCM: {rng.randint(10, 900)} messages"]}
        ]
    if rng.random() < 0.15:
        e["acp"] = {
            "backend": "acpx",
            "agent": "codex",
            "runtimeSessionName": f"codex-{_hex(rng, 6)}",
            "mode": "persistent",
            "cwd": workspace,
            "state": "idle",
            "lastActivityAt": updated - rng.randint(0, 600_000),
        }


def _prompt_report(
    rng: random.Random, e: Entry, key: str, catalog: SkillCatalog, *, workspace: str
) -> Entry:
    """A per-session ``systemPromptReport`` of about 5-20 KB (tools dominate, as in #45718)."""
    tools = list(rng.sample(_CORE_TOOLS, rng.randint(14, len(_CORE_TOOLS))))
    for _ in range(rng.randint(0, 85)):
        tools.append(f"mcp__{rng.choice(_MCP_SERVERS)}__{_alnum(rng, 4)}_{rng.choice(_WORDS)}")
    files: list[Entry] = []
    for name in _WORKSPACE_FILES[: rng.randint(3, len(_WORKSPACE_FILES))]:
        raw = rng.randint(200, 26_000)
        files.append(
            {
                "name": name,
                "path": f"{workspace}/{name}",
                "missing": False,
                "rawChars": raw,
                "injectedChars": min(raw, 20_000),
                "truncated": raw > 20_000,
            }
        )
    project = sum(int(f["injectedChars"]) for f in files)
    non_project = rng.randint(20_000, 45_000)
    return {
        "source": "run",
        "generatedAt": int(e["updatedAt"]) - rng.randint(1_000, 120_000),
        "sessionId": e["sessionId"],
        "sessionKey": key,
        "provider": e.get("modelProvider"),
        "model": e.get("model"),
        "workspaceDir": workspace,
        "bootstrapMaxChars": 20_000,
        "bootstrapTotalMaxChars": 150_000,
        "bootstrapTruncation": {
            "warningMode": "once",
            "warningShown": any(f["truncated"] for f in files),
            "truncatedFiles": sum(1 for f in files if f["truncated"]),
            "nearLimitFiles": rng.randint(0, 2),
            "totalNearLimit": False,
        },
        "sandbox": {"mode": "off", "sandboxed": False},
        "systemPrompt": {
            "chars": project + non_project,
            "projectContextChars": project,
            "nonProjectContextChars": non_project,
        },
        "injectedWorkspaceFiles": files,
        "skills": {
            "promptChars": len(catalog.snapshot["prompt"]),
            "entries": [{"name": n, "blockChars": c} for n, c in catalog.block_chars.items()],
        },
        "tools": {
            "listChars": rng.randint(2_000, 9_000),
            "schemaChars": rng.randint(20_000, 90_000),
            "entries": [
                {
                    "name": name,
                    "summaryChars": rng.randint(40, 400),
                    "schemaChars": rng.randint(200, 4_000),
                    "propertiesCount": rng.randint(1, 14) if rng.random() < 0.9 else None,
                }
                for name in tools
            ],
        },
    }


def _legacy(rng: random.Random, e: Entry) -> Entry:
    """Rename new fields to their legacy names, as entries written by old versions have them."""
    out: Entry = {}
    drop_ctx = rng.random() < 0.6
    for name, value in e.items():
        if name == "channel":
            out["provider"] = value
        elif name == "lastChannel":
            out["lastProvider"] = value
        elif name == "groupChannel":
            out["room"] = value
        elif name == "deliveryContext" and drop_ctx:
            continue  # older versions had no deliveryContext
        else:
            out[name] = value
    return out


def _updated_at(rng: random.Random, now: int) -> int:
    # recent sessions are the busy ones: skew towards now, spread over six weeks
    return now - int(SPREAD_MS * rng.random() ** 2) - rng.randint(0, 999)


def typical_entry(
    rng: random.Random,
    *,
    agent_id: str = "main",
    sessions_dir: Path | None = None,
    now_ms: int | None = None,
) -> tuple[str, Entry]:
    """A random key and a typical (~1.5 KB) entry for it.

    Args:
        rng: The random source.
        agent_id: The agent the key belongs to.
        sessions_dir: Where ``sessionFile`` points (default ``/tmp/openclaw/...``).
        now_ms: The reference time; ``updatedAt`` lies up to six weeks before it.

    Returns:
        ``(key, entry)``.
    """
    st = _AgentState(normalize_agent_id(agent_id))
    route = _next_route(rng, st, 1)
    directory = sessions_dir or Path(f"/tmp/openclaw/agents/{st.agent_id}/sessions")
    now = current_ms() if now_ms is None else now_ms
    entry = _entry(
        rng, route, st, sessions_dir=directory, updated_at=_updated_at(rng, now), bloated=False
    )
    return route.key, entry


def bloated_entry(
    rng: random.Random,
    *,
    agent_id: str = "main",
    sessions_dir: Path | None = None,
    now_ms: int | None = None,
    catalog: SkillCatalog | None = None,
) -> tuple[str, Entry]:
    """A random key and a bloated entry (~45-60 KB: skills snapshot + prompt report).

    Args:
        rng: The random source.
        agent_id: The agent the key belongs to.
        sessions_dir: Where ``sessionFile`` points (default ``/tmp/openclaw/...``).
        now_ms: The reference time; ``updatedAt`` lies up to six weeks before it.
        catalog: The shared skill catalog to use (default: a new one).

    Returns:
        ``(key, entry)``.
    """
    st = _AgentState(normalize_agent_id(agent_id))
    route = _next_route(rng, st, 1)
    directory = sessions_dir or Path(f"/tmp/openclaw/agents/{st.agent_id}/sessions")
    workspace = "/tmp/openclaw/workspace"
    now = current_ms() if now_ms is None else now_ms
    entry = _entry(
        rng, route, st, sessions_dir=directory, updated_at=_updated_at(rng, now), bloated=True
    )
    chosen = catalog or skill_catalogs(rng, count=1, workspace=workspace)[0]
    _bloat(rng, entry, route.key, chosen, workspace=workspace, sessions_dir=directory)
    return route.key, entry


# --- transcripts -------------------------------------------------------------------------------


def _transcript_lines(rng: random.Random, e: Entry, *, cwd: str) -> list[Entry]:
    """A short pi v3 transcript: header, model change, a few user/assistant/tool turns."""
    provider = str(e.get("modelProvider", "anthropic"))
    model = str(e.get("model", "claude-opus-4-6"))
    api = "anthropic-messages" if provider == "anthropic" else "openai-responses"
    turns = rng.randint(1, 3)
    t = int(e["updatedAt"]) - turns * 15_000 - 2_000
    used: set[str] = set()

    def new_id() -> str:
        while True:
            value = _hex(rng)
            if value not in used:
                used.add(value)
                return value

    lines: list[Entry] = [
        {"type": "session", "version": 3, "id": e["sessionId"], "timestamp": iso_ms(t), "cwd": cwd}
    ]
    parent: str | None = None

    def add(kind: str, body: Entry) -> None:
        nonlocal parent, t
        t += rng.randint(1, 4_000)
        ident = new_id()
        lines.append(
            {"type": kind, "id": ident, "parentId": parent, "timestamp": iso_ms(t), **body}
        )
        parent = ident

    def assistant(content: list[Entry], stop: str) -> Entry:
        inp, out = rng.randint(2_000, 20_000), rng.randint(20, 1_500)
        cost_in, cost_out = round(inp * 5e-6, 4), round(out * 25e-6, 4)
        return {
            "role": "assistant",
            "content": content,
            "api": api,
            "provider": provider,
            "model": model,
            "usage": {
                "input": inp,
                "output": out,
                "cacheRead": 0,
                "cacheWrite": 0,
                "totalTokens": inp + out,
                "cost": {
                    "input": cost_in,
                    "output": cost_out,
                    "cacheRead": 0,
                    "cacheWrite": 0,
                    "total": round(cost_in + cost_out, 4),
                },
            },
            "stopReason": stop,
            "timestamp": t,
        }

    add("model_change", {"provider": provider, "modelId": model})
    for _ in range(turns):
        question = _sentence(rng, rng.randint(20, 90)) + "?"
        add(
            "message",
            {
                "message": {
                    "role": "user",
                    "content": [{"type": "text", "text": question}],
                    "timestamp": t,
                }
            },
        )
        if rng.random() < 0.5:
            call = f"toolu_{_alnum(rng, 14)}"
            command = f"gog {rng.choice(_WORDS)} list --json"
            add(
                "message",
                {
                    "message": assistant(
                        [
                            {
                                "type": "toolCall",
                                "id": call,
                                "name": "exec",
                                "arguments": {"command": command},
                            }
                        ],
                        "toolUse",
                    )
                },
            )
            add(
                "message",
                {
                    "message": {
                        "role": "toolResult",
                        "toolCallId": call,
                        "toolName": "exec",
                        "content": [{"type": "text", "text": f'[{{"id":{rng.randint(1, 99)}}}]'}],
                        "isError": False,
                        "timestamp": t,
                    }
                },
            )
        answer = _sentence(rng, rng.randint(30, 200)) + "."
        add("message", {"message": assistant([{"type": "text", "text": answer}], "stop")})
    return lines


def _write_transcript(path: Path, lines: list[Entry]) -> None:
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


# --- state dirs --------------------------------------------------------------------------------


@dataclass
class GeneratedAgent:
    """What was written for one agent.

    Attributes:
        agent_id: The (normalised) agent id.
        json_path: The ``sessions.json`` written.
        entries: Every key -> entry exactly as written (mixed-case variants included).
            Large nested blobs are shared between entries: treat them as read-only.
        variants: Mixed-case variant key -> its canonical key.
        transcripts: Transcript files written (with ``transcripts=True``).
    """

    agent_id: str
    json_path: Path
    entries: dict[str, Entry]
    variants: dict[str, str] = field(default_factory=dict)
    transcripts: list[Path] = field(default_factory=list)

    @property
    def sessions_dir(self) -> Path:
        """The agent's sessions dir."""
        return self.json_path.parent


@dataclass
class GeneratedState:
    """A generated state dir.

    Attributes:
        root: The state dir.
        now_ms: The reference time the ``updatedAt`` values lie before.
        agents: Agent id -> what was written for it, in the order given.
    """

    root: Path
    now_ms: int
    agents: dict[str, GeneratedAgent]

    @property
    def json_paths(self) -> dict[str, Path]:
        """Agent id -> its ``sessions.json``."""
        return {a: g.json_path for a, g in self.agents.items()}


def generate_state_dir(
    root: Path,
    *,
    sessions: int,
    agents: Sequence[str] = ("main",),
    bloated_ratio: float = 0.3,
    seed: int = 0,
    legacy_fields: bool = False,
    mixed_case_duplicates: int = 0,
    transcripts: bool = False,
    now_ms: int | None = None,
) -> GeneratedState:
    """Write a realistic OpenClaw state dir under ``root``.

    Args:
        root: The state dir (created if missing); existing ``sessions.json`` files of the
            given agents are replaced.
        sessions: Distinct sessions (canonical keys) per agent.
        agents: Agent ids (normalised like OpenClaw).
        bloated_ratio: Fraction of sessions carrying a ~35-40 KB ``skillsSnapshot`` (one of
            four shared catalogs) and a 5-20 KB ``systemPromptReport``.
        seed: Seed of the ``random.Random`` everything is drawn from.
        legacy_fields: Give some entries (about 15%, at least one with each field)
            ``provider``/``lastProvider``/``room`` instead of ``channel``/``lastChannel``/
            ``groupChannel``, as old versions wrote them.
        mixed_case_duplicates: Per agent, this many sessions also appear under a mixed-case
            variant key with a different ``updatedAt`` (some fresher, some older).
        transcripts: Also write a short pi v3 ``.jsonl`` transcript for every session.
        now_ms: The reference time (default: now); ``updatedAt`` values lie up to six
            weeks before it.

    Returns:
        What was written, per agent.

    Raises:
        ValueError: Invalid counts or ratio.
    """
    if sessions < 0:
        raise ValueError(f"sessions must be >= 0, got {sessions}")
    if not 0.0 <= bloated_ratio <= 1.0:
        raise ValueError(f"bloated_ratio must be between 0 and 1, got {bloated_ratio}")
    if not 0 <= mixed_case_duplicates <= sessions:
        raise ValueError(
            f"mixed_case_duplicates must be between 0 and sessions ({sessions}),"
            f" got {mixed_case_duplicates}"
        )
    rng = random.Random(seed)
    now = current_ms() if now_ms is None else now_ms
    root = Path(root)
    workspace = str(root / "workspace")
    catalogs = skill_catalogs(rng, count=4, workspace=workspace)
    out: dict[str, GeneratedAgent] = {}
    for raw_agent in agents:
        agent_id = normalize_agent_id(raw_agent)
        if agent_id in out:
            continue
        sessions_dir = root / "agents" / agent_id / "sessions"
        sessions_dir.mkdir(parents=True, exist_ok=True)
        st = _AgentState(agent_id)
        bloated = set(rng.sample(range(sessions), round(sessions * bloated_ratio)))
        pairs: list[tuple[str, Entry]] = []
        for i in range(sessions):
            route = _next_route(rng, st, i)
            e = _entry(
                rng,
                route,
                st,
                sessions_dir=sessions_dir,
                updated_at=_updated_at(rng, now),
                bloated=i in bloated,
            )
            if i in bloated:
                # skewed: a couple of catalogs are far more common than the others
                catalog = catalogs[min(int(rng.random() ** 2 * len(catalogs)), len(catalogs) - 1)]
                _bloat(rng, e, route.key, catalog, workspace=workspace, sessions_dir=sessions_dir)
            pairs.append((route.key, e))
        if legacy_fields:
            _apply_legacy(rng, pairs)
        variants = _add_variants(rng, pairs, mixed_case_duplicates, now, sessions_dir)
        entries = dict(pairs)
        json_path = sessions_dir / "sessions.json"
        atomic_write(json_path, dumps_pretty(entries), mode=0o600, durable=False)
        written: list[Path] = []
        if transcripts:
            for key, e in pairs:
                if key in variants:
                    continue
                path = Path(e.get("sessionFile") or transcript_path(sessions_dir, e["sessionId"]))
                _write_transcript(path, _transcript_lines(rng, e, cwd=workspace))
                written.append(path)
        out[agent_id] = GeneratedAgent(agent_id, json_path, entries, variants, written)
    return GeneratedState(root=root, now_ms=now, agents=out)


def write_transcripts(
    state: GeneratedState, agent_id: str, keys: Iterable[str], *, seed: int = 0
) -> list[Path]:
    """Write the pi v3 transcripts of only ``keys`` of a state generated without transcripts.

    For a store too large to write a transcript for every session (1,000,000 sessions
    would take most of an hour, almost all of it in transcripts): the benchmark writes
    those its timed operations touch. The files are where ``transcripts=True`` puts them,
    with the same shape of content (drawn from ``random.Random(seed)``, so not the same
    bytes), and are added to the agent's ``transcripts``.

    Args:
        state: What :func:`generate_state_dir` returned.
        agent_id: The (normalised) agent whose sessions get transcripts.
        keys: Keys of that agent's entries; mixed-case variants and repeats are skipped.
        seed: Seed of the transcripts' content.

    Returns:
        The files written, in the order of ``keys``.

    Raises:
        KeyError: A key is not one of the agent's entries.
    """
    agent = state.agents[agent_id]
    rng = random.Random(seed)
    workspace = str(state.root / "workspace")
    written: list[Path] = []
    seen: set[str] = set()
    for key in keys:
        e = agent.entries[key]
        if key in agent.variants or key in seen:
            continue
        seen.add(key)
        path = Path(e.get("sessionFile") or transcript_path(agent.sessions_dir, e["sessionId"]))
        _write_transcript(path, _transcript_lines(rng, e, cwd=workspace))
        written.append(path)
    agent.transcripts += written
    return written


def _apply_legacy(rng: random.Random, pairs: list[tuple[str, Entry]]) -> None:
    chosen = {i for i in range(len(pairs)) if rng.random() < LEGACY_RATIO}
    # at least one entry with each legacy field, when the store has such entries at all
    for name in ("groupChannel", "lastChannel"):
        if not any(name in pairs[i][1] for i in chosen):
            first = next((i for i, (_, e) in enumerate(pairs) if name in e), None)
            if first is not None:
                chosen.add(first)
    if not any("channel" in pairs[i][1] for i in chosen):
        first = next((i for i, (_, e) in enumerate(pairs) if "channel" in e), None)
        if first is not None:
            chosen.add(first)
    for i in sorted(chosen):
        key, e = pairs[i]
        pairs[i] = (key, _legacy(rng, e))


def _add_variants(
    rng: random.Random,
    pairs: list[tuple[str, Entry]],
    count: int,
    now: int,
    sessions_dir: Path,
) -> dict[str, str]:
    """Insert ``count`` mixed-case duplicates next to their canonical keys."""
    if count == 0:
        return {}
    picked = sorted(rng.sample(range(len(pairs)), count))
    variants: dict[str, str] = {}
    result: list[tuple[str, Entry]] = []
    picked_set = set(picked)
    for i, (key, e) in enumerate(pairs):
        if i not in picked_set:
            result.append((key, e))
            continue
        base = int(e["updatedAt"])
        delta = rng.randint(1_000, 5 * DAY_MS)
        fresher = rng.random() < 0.5
        updated = base + delta if fresher and base + delta <= now else base - delta
        variant = dict(e)
        variant["sessionId"] = _uuid(rng)
        variant["updatedAt"] = updated
        if "sessionFile" in variant:
            variant["sessionFile"] = str(transcript_path(sessions_dir, variant["sessionId"]))
        variant["thinkingLevel"] = rng.choice(("off", "minimal", "xhigh"))
        vkey = mixed_case_variant(key)
        variants[vkey] = key
        if rng.random() < 0.5:
            result += [(vkey, variant), (key, e)]
        else:
            result += [(key, e), (vkey, variant)]
    pairs[:] = result
    return variants
