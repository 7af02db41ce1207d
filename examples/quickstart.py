"""Create a store in a temporary state dir, write a few sessions, list them."""

from __future__ import annotations

import tempfile

import sessionstore

with tempfile.TemporaryDirectory() as state_dir:
    with sessionstore.open_store(agent="main", state_dir=state_dir) as store:
        store.put("agent:main:main", {"label": "home", "chatType": "direct"})
        store.update(
            "agent:main:telegram:direct:8123456789",
            {"lastChannel": "Telegram", "lastTo": " 8123456789 ", "model": "claude-opus-4-6"},
            create=True,
        )
        store.update(
            "agent:main:slack:channel:c07abc123",
            {"displayName": "slack:acme#eng-oncall", "chatType": "channel"},
            create=True,
        )
        print(f"store: {store.store_type} at {store.paths.sqlite_path}")
        print(f"sessions: {store.count()}")
        for row in store.list(limit=10):
            print(f"  {row['kind']:<7} {row['key']:<42} channel={row['channel']}")
