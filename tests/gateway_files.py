"""Transcripts written the way OpenClaw's gateway (pi) writes them, not through this library.

pi appends each entry with ``appendFileSync(JSON.stringify(entry) + "\\n")``: compact JSON,
non-ASCII characters as they are, keys in insertion order. ``style="python"`` writes what
Python's ``json.dumps`` writes by default (``", "``/``": "`` separators, ``\\uXXXX`` escapes),
as a file edited or produced by another tool would look.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

TS = "2026-03-31T09:14:02.118Z"


def dumps(entry: dict[str, Any], style: str = "compact") -> bytes:
    """One line of a transcript, without its newline."""
    if style == "compact":
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()
    assert style == "python"
    return json.dumps(entry).encode()


class GatewayWriter:
    """Writes a pi v3 transcript line by line, as the gateway does.

    Args:
        path: The transcript file.
        session_id: The session id of the header.
        seed: Seeds the 8-hex entry ids.
        style: ``compact`` (``JSON.stringify``) or ``python`` (``json.dumps`` defaults).
    """

    def __init__(self, path: Path, session_id: str, *, seed: int = 1, style: str = "compact"):
        self.path = path
        self.session_id = session_id
        self.style = style
        self.rng = random.Random(seed)
        self.leaf: str | None = None
        self.messages = 0
        self.ids: list[str] = []

    def _id(self) -> str:
        return f"{self.rng.getrandbits(32):08x}"

    def header(self) -> bytes:
        return dumps(
            {
                "type": "session",
                "version": 3,
                "id": self.session_id,
                "timestamp": TS,
                "cwd": "/home/ana/workspace",
            },
            self.style,
        )

    def entry(self, kind: str, **fields: Any) -> tuple[str, bytes]:
        entry_id = self._id()
        entry = {"type": kind, "id": entry_id, "parentId": self.leaf, "timestamp": TS, **fields}
        self.leaf = entry_id
        self.ids.append(entry_id)
        if kind == "message":
            self.messages += 1
        return entry_id, dumps(entry, self.style)

    def message(self, text: str, *, role: str = "user", **extra: Any) -> tuple[str, bytes]:
        msg: dict[str, Any] = {
            "role": role,
            "content": [{"type": "text", "text": text}],
            "timestamp": 1_774_948_442_100 + self.messages,
            **extra,
        }
        return self.entry("message", message=msg)

    def write(self, lines: list[bytes], *, newline_at_end: bool = True) -> None:
        """Append ``lines`` (one ``appendFileSync`` each in pi; here one write)."""
        data = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
        with open(self.path, "ab") as fh:
            fh.write(data)

    def fill(self, target_bytes: int, *, text_bytes: int = 2000) -> None:
        """Write a header and a mix of messages and other entries until ``target_bytes``."""
        lines = [self.header()]
        size = len(lines[0]) + 1
        n = 0
        while size < target_bytes:
            if n % 7 == 6:
                _, line = self.entry("custom", customType="openclaw.cache-ttl", data={"n": n})
            else:
                role = "user" if n % 2 else "assistant"
                _, line = self.message(f"turn {n} " + "é" * 8 + "x" * text_bytes, role=role)
            lines.append(line)
            size += len(line) + 1
            n += 1
        self.write(lines)
