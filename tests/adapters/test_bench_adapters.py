"""bench/adapters.py's report: runs merge into one, every row lands in the markdown."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sessionstore.bench.adapters import AdapterRow, OverheadRow, merge, render


def _run(path: Path, sessions: int, overhead_us: float) -> Path:
    data = {
        "machine": f"m{sessions}",
        "version": "v",
        "overhead": [asdict(OverheadRow("sqlite", "get", 20.0, 20.0 + overhead_us, 90.0))],
        "adapters": [
            asdict(AdapterRow("google-adk", "ours", sessions, 1.5, 2.25, 3.0, 4.0)),
            asdict(AdapterRow("openai-agents", "peer", sessions, 5, 6, 7, None, "cannot list")),
        ],
    }
    path.write_text(json.dumps(data))
    return path


def test_merge_keeps_the_first_run_s_overhead_and_every_row(tmp_path: Path) -> None:
    merged = merge([_run(tmp_path / "a.json", 1000, 50), _run(tmp_path / "b.json", 10000, 70)])
    assert merged.machine == "m1000"
    assert [r.overhead_us for r in merged.overhead] == [50.0]
    assert [(r.backend, r.sessions) for r in merged.adapters] == [
        ("ours", 1000),
        ("peer", 1000),
        ("ours", 10000),
        ("peer", 10000),
    ]
    md = render(merged)
    assert "| sqlite | get | 20.0 | 70.0 | 50.0 | 90.0 |" in md
    assert "| google-adk | ours | 10,000 | 1.500 | 2.250 | 3.000 | 4.000 |  |" in md
    assert "| openai-agents | peer | 1,000 | 5.000 | 6.000 | 7.000 | — | cannot list |" in md


def test_a_later_run_replaces_the_same_rows_and_adds_its_own(tmp_path: Path) -> None:
    first = _run(tmp_path / "a.json", 1000, 50)
    later = tmp_path / "pg.json"
    later.write_text(
        json.dumps(
            {
                "machine": "pg",
                "version": "v",
                "overhead": [],  # a postgres-only run measures no overhead rows
                "adapters": [
                    asdict(AdapterRow("openai-agents", "peer", 1000, 1, 1, 1, None, "again")),
                    asdict(AdapterRow("google-adk", "ours on pg", 1000, 2, 2, 2, 2.0)),
                ],
            }
        )
    )
    merged = merge([first, later])
    assert merged.machine == "m1000" and len(merged.overhead) == 1
    assert [(r.framework, r.backend, r.note) for r in merged.adapters] == [
        ("google-adk", "ours", ""),
        ("google-adk", "ours on pg", ""),
        ("openai-agents", "peer", "again"),
    ]
