"""Child events of one owner share a status refresh; other owners and later events do not."""

from __future__ import annotations

import asyncio
import threading

from inferops.handlers.coalesce import Coalescer


def test_a_burst_for_one_owner_runs_once_and_other_owners_run_apart() -> None:
    runs: list[str] = []

    async def burst() -> list[bool]:
        coalescer = Coalescer(0.05)
        calls = [coalescer.run("a", lambda: runs.append("a")) for _ in range(50)]
        calls += [coalescer.run("b", lambda: runs.append("b")) for _ in range(3)]
        return await asyncio.gather(*calls)

    results = asyncio.run(burst())
    assert sorted(runs) == ["a", "b"]
    assert results.count(True) == 2 and results.count(False) == 51


def test_an_event_during_a_refresh_gets_a_refresh_of_its_own() -> None:
    """The running refresh may have read the cluster before the event's change."""
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow_refresh() -> None:
        runs.append(len(runs))
        started.set()
        release.wait(5)

    async def scenario() -> tuple[bool, bool]:
        coalescer = Coalescer(0.01)
        first = asyncio.create_task(coalescer.run("a", slow_refresh))
        await asyncio.to_thread(started.wait, 5)  # the first refresh is running now
        second = asyncio.create_task(coalescer.run("a", lambda: runs.append(len(runs))))
        await asyncio.sleep(0.05)
        release.set()
        return await first, await second

    assert asyncio.run(scenario()) == (True, True)
    assert runs == [0, 1]


def test_a_failing_refresh_does_not_block_the_next() -> None:
    async def scenario() -> list[str]:
        coalescer = Coalescer(0.01)
        seen: list[str] = []

        def boom() -> None:
            raise RuntimeError("API down")

        try:
            await coalescer.run("a", boom)
        except RuntimeError as exc:
            seen.append(str(exc))
        await coalescer.run("a", lambda: seen.append("ran"))
        return seen

    assert asyncio.run(scenario()) == ["API down", "ran"]
