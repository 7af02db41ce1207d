"""Scenario 6: open, fork, write from both, for 50 cycles, on each backend.

The parent opens one store and keeps it for the whole run. Each cycle it forks a child
that writes through the inherited store object (puts, a callback counter, a transcript
append) and through a store it opens itself, while the parent writes through its own
object; in every other cycle the child closes the inherited store before it ends (the
parent's must not notice). The fork happens in one of three situations, in turn:

- plain: no other thread is in the store;
- in a write: another parent thread is inside ``update`` (its callback waits), holding the
  write lock at the fork;
- holding internal locks: another parent thread holds every thread lock the store's index
  object keeps (its caches' guards), as a thread inside any store call may at a fork.

No child may hang (it is killed after a deadline, and that situation is not forked in
again: a hang costs the whole deadline; nor after two failed children);
every acknowledged write of both sides is there, the counter equals the acknowledged
increments, the transcript holds every acknowledged append, and at the end the files are
sound and ``store.check()`` is clean.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .harness import (
    Acks,
    Figures,
    error_text,
    integrity_problems,
    open_variant,
    read_jsonl,
    spawn,
    timed,
    unresolved,
    workdir,
)

NAME = "forks"
TITLE = "fork: open, fork, write from both"
VARIANTS = ("sqlite", "json")
SHORT_RUNS = 12
FULL_RUNS = 50
MODES = ("plain", "in a write", "holding internal locks")
WRITES = 3
COUNTER = "agent:main:fork:counter"
SHARED = "agent:main:fork:shared"
CHILD_DEADLINE = 10.0  # a child's cycle takes well under a second; past this it hangs
STOP_AFTER = 2  # failed children before a situation is dropped (a hang drops it at once)
# Writers wait at most this long for each other; every wait here is a few milliseconds.
LOCK_TIMEOUT_MS = 3_000
LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _internal_locks(store: Any) -> list[Any]:
    """The thread locks the store's index keeps, directly or in its own helper objects."""
    found = []
    for value in vars(store.index).values():
        if isinstance(value, LOCK_TYPES):
            found.append(value)
        elif type(value).__module__.startswith("sessionstore") and hasattr(value, "__dict__"):
            found += [v for v in vars(value).values() if isinstance(v, LOCK_TYPES)]
    return found


def _writes(
    store: Any, side: str, cycle: int, acks: Acks | None, out: list[dict[str, Any]]
) -> None:
    def ack(**rec: Any) -> None:
        if acks is not None:
            acks.send("ack", **rec)
        else:
            out.append(rec)

    for j in range(WRITES):
        key = f"agent:main:fork:c{cycle}:{side}:{j}"
        store.put(key, {"sessionId": f"fork-c{cycle}-{side}-{j}", "v": j})
        ack(op="put", key=key, v=j)
    store.update(COUNTER, lambda e: {"n": e["n"] + 1})
    ack(op="inc")
    content = f"c{cycle}-{side}"
    store.transcript(SHARED).append({"role": "user", "content": content})
    ack(op="append", content=content)


def _child(acks: Acks, store: Any, state_dir: Path, variant: str, cycle: int) -> None:
    try:
        _writes(store, "child", cycle, acks, [])
        with open_variant(state_dir, variant) as own:
            key = f"agent:main:fork:c{cycle}:child-own"
            own.put(key, {"sessionId": f"fork-c{cycle}-own", "v": -1})
            acks.send("ack", op="put", key=key, v=-1)
        if cycle % 2:
            store.close()  # the inherited object: the parent's connections must not notice
    except Exception as exc:
        acks.send("error", **error_text(exc))


class _Holder(threading.Thread):
    """A parent thread that is inside the store (or holds its locks) at the fork."""

    def __init__(self, store: Any, mode: str, cycle: int) -> None:
        super().__init__(daemon=True)
        self.store, self.mode, self.cycle = store, mode, cycle
        self.inside = threading.Event()
        self.release = threading.Event()
        self.acked: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.mode == "in a write":

                def wait(entry: Any) -> dict[str, Any]:
                    # Inside the write when the fork starts; the write ends on its own a
                    # moment later, while the fork waits for writes in flight to finish.
                    self.inside.set()
                    self.release.wait(0.3)
                    return {"n": entry["n"] + 1}

                self.store.update(COUNTER, wait)
                self.acked.append({"op": "inc"})
            else:
                locks = _internal_locks(self.store)
                for lock in locks:
                    lock.acquire()
                self.inside.set()
                self.release.wait(30)
                for lock in reversed(locks):
                    lock.release()
        except BaseException as exc:
            self.error = exc
            self.inside.set()


def _verify(fig: Figures, store: Any, acked: list[dict[str, Any]], where: str, check: bool) -> None:
    everything = store.load_all()
    for rec in acked:
        if rec["op"] == "put" and (everything.get(rec["key"]) or {}).get("v") != rec["v"]:
            fig.fail(f"{where}: acknowledged {rec['key']} is not there")
    increments = sum(1 for r in acked if r["op"] == "inc")
    if (everything.get(COUNTER) or {}).get("n") != increments:
        fig.fail(f"{where}: counter {everything.get(COUNTER)}, {increments} increments acked")
    records, torn = read_jsonl(store.transcript(SHARED).path)
    contents = [str(r["message"].get("content")) for r in records if r.get("type") == "message"]
    wanted = [r["content"] for r in acked if r["op"] == "append"]
    if sorted(contents) != sorted(wanted) or torn:
        fig.fail(f"{where}: transcript holds {len(contents)} records, {len(wanted)} acked")
    count = (everything.get(SHARED) or {}).get("messageCount")
    if store.store_type == "sqlite" and count != len(contents):  # json keeps no count
        fig.fail(f"{where}: messageCount {everything.get(SHARED, {}).get('messageCount')}")
    if check:
        for problem in integrity_problems(store):
            fig.fail(f"{where}: {problem}")
        for problem in unresolved(store):
            fig.fail(f"{where}: check(): {problem}")


def run(
    variant: str,
    *,
    seed: int = 0,
    runs: int = FULL_RUNS,
    base: Path | None = None,
    modes: tuple[str, ...] = MODES,
) -> Figures:
    """``runs`` fork cycles, the situations of ``modes`` in turn."""
    fig = Figures(NAME, variant, seed)
    with timed(fig), workdir(base) as root:
        state_dir = root / f"forks-{variant}"
        store = open_variant(state_dir, variant, lock_timeout_ms=LOCK_TIMEOUT_MS)
        acked: list[dict[str, Any]] = []
        try:
            store.put(COUNTER, {"sessionId": "fork-counter", "n": 0})
            store.put(SHARED, {"sessionId": "fork-shared"})
            broken: dict[str, int] = {}
            active = list(modes)
            for cycle in range(runs):
                if not active:
                    break
                mode = active[cycle % len(active)]
                where = f"cycle {cycle} ({mode})"
                _writes(store, "parent", cycle, None, acked)
                holder = None
                if mode != "plain":
                    holder = _Holder(store, mode, cycle)
                    holder.start()
                    if not holder.inside.wait(30):
                        fig.fail(f"{where}: the parent thread never got inside the store")
                with spawn(_child, store, state_dir, variant, cycle) as child:
                    if holder is not None:
                        holder.release.set()
                    try:
                        _writes(store, "parent", cycle + 10_000, None, acked)
                    except Exception as exc:
                        fig.fail(f"{where}: the parent's write after the fork failed: {exc!r}")
                    child.join(CHILD_DEADLINE)
                if holder is not None:
                    holder.join(30)
                    acked += holder.acked
                    if holder.error is not None:
                        fig.fail(f"{where}: the parent thread failed: {holder.error!r}")
                fig.runs += 1
                acked += [r for r in child.of("ack")]
                fig.count(f"forks {mode}")
                if child.hung:
                    fig.count(f"children hung {mode}")
                    fig.fail(f"{where}: the child hung (killed after {CHILD_DEADLINE:.0f}s)")
                for rec in child.of("error"):
                    fig.count(f"children failed {mode}")
                    fig.fail(f"{where}: the child failed: {rec['type']}: {rec['message']}")
                if child.status != 0 and not child.hung:
                    fig.fail(f"{where}: the child crashed ({child.status}): {child.crash}")
                if child.hung or child.of("error") or child.status != 0:
                    broken[mode] = broken.get(mode, 0) + 1
                    if child.hung or broken[mode] >= STOP_AFTER:
                        fig.fail(f"{mode}: no more forks so after {broken[mode]} failed child(ren)")
                        active.remove(mode)
                    continue
                _verify(fig, store, acked, where, check=False)
            fig.acked = len(acked)
        finally:
            store.close()
        with open_variant(state_dir, variant) as fresh:
            _verify(fig, fresh, acked, "at the end", check=True)
    return fig
