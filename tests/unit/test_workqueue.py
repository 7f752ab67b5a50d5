"""The work queue: each object at most once, one more pass when named during its pass,
namespaces served in turn, delayed adds keep the earliest."""

from __future__ import annotations

import asyncio

import pytest

from inferops.handlers.workqueue import FairQueue, Key, WorkQueue, work


def k(namespace: str, name: str) -> Key:
    return ("RealTimeService", namespace, name)


def drain(queue: FairQueue) -> list[Key]:
    found = []
    while (key := queue.pop()) is not None:
        found.append(key)
        queue.done(key)
    return found


def test_an_object_is_queued_once_however_often_it_is_named() -> None:
    queue = FairQueue()
    assert queue.add(k("a", "x"))
    assert not queue.add(k("a", "x"))
    assert len(queue) == 1
    assert drain(queue) == [k("a", "x")]


def test_named_during_its_pass_it_gets_exactly_one_more() -> None:
    queue = FairQueue()
    queue.add(k("a", "x"))
    key = queue.pop()
    assert key == k("a", "x")
    assert queue.pop() is None  # not handed to a second worker meanwhile
    assert queue.add(key)
    assert not queue.add(key)
    queue.done(key)
    assert drain(queue) == [k("a", "x")]


@pytest.mark.parametrize(
    ("adds", "order"),
    [
        # A noisy namespace queued first does not hold back the others: turns alternate.
        (
            [k("noisy", str(i)) for i in range(4)] + [k("b", "1"), k("c", "1")],
            [k("noisy", "0"), k("b", "1"), k("c", "1"), k("noisy", "1"), k("noisy", "2")],
        ),
        # Within a namespace: first named, first served.
        ([k("a", "2"), k("a", "1")], [k("a", "2"), k("a", "1")]),
    ],
)
def test_namespaces_take_turns(adds: list[Key], order: list[Key]) -> None:
    queue = FairQueue()
    for key in adds:
        queue.add(key)
    assert drain(queue)[: len(order)] == order


def test_a_noisy_namespace_delays_another_by_one_pass_per_worker() -> None:
    queue = FairQueue()
    for i in range(1000):
        queue.add(k("noisy", str(i)))
    for _ in range(3):  # three workers busy with the noisy namespace
        assert queue.pop() is not None
    queue.add(k("quiet", "x"))
    assert queue.pop() == k("noisy", "3")  # its turn was already due
    assert queue.pop() == k("quiet", "x")


def test_delayed_adds_keep_the_earliest_and_coalesce() -> None:
    async def scenario() -> list[Key]:
        queue = WorkQueue()
        assert queue.add_after(k("a", "x"), 0.05)
        assert not queue.add_after(k("a", "x"), 0.2)  # joins the earlier one
        assert queue.add_after(k("a", "y"), 0.2)
        assert queue.add_after(k("a", "y"), 0.01)  # sooner: replaces the later one
        seen: list[Key] = []

        async def handle(key: Key) -> None:
            seen.append(key)

        worker = asyncio.create_task(work(queue, handle))
        await asyncio.sleep(0.3)
        worker.cancel()
        queue.close()
        return seen

    assert asyncio.run(scenario()) == [k("a", "y"), k("a", "x")]


def test_workers_never_run_one_object_twice_at_once() -> None:
    async def scenario() -> tuple[int, int]:
        queue = WorkQueue()
        running: set[Key] = set()
        overlap = 0
        passes = 0

        async def handle(key: Key) -> None:
            nonlocal overlap, passes
            overlap += key in running
            running.add(key)
            passes += 1
            await asyncio.sleep(0.01)
            running.discard(key)

        workers = [asyncio.create_task(work(queue, handle)) for _ in range(4)]
        for _ in range(20):
            for i in range(3):
                queue.add(k("a", str(i)))
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.1)
        for w in workers:
            w.cancel()
        return overlap, passes

    overlap, passes = asyncio.run(scenario())
    assert overlap == 0
    assert 3 <= passes < 60  # coalesced: far fewer passes than the 60 names
