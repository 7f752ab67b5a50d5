"""The operator's work queue: each object at most once, namespaces served in turn.

Every event only names an object that needs a pass; a fixed number of workers take the
names from this queue. An object is queued once however many events name it (a burst of
child events is one pass), an object named again while its pass runs gets one more pass
after it, and the queue hands out namespaces round-robin, so a namespace with a thousand
queued objects delays another namespace's object by at most one pass per worker. The
length is bounded by the number of objects; the concurrency by the number of workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)
# (kind, namespace, name)
Key = tuple[str, str, str]


class FairQueue:
    """The bookkeeping, free of asyncio (see `WorkQueue`)."""

    def __init__(self) -> None:
        self._ready: dict[str, deque[Key]] = {}  # namespace -> its keys, oldest first
        self._turns: deque[str] = deque()  # namespaces with ready keys, in serving order
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._again: set[Key] = set()  # added while active: one more pass after this one

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def active(self) -> int:
        return len(self._active)

    def add(self, key: Key) -> bool:
        """False when the key was already waiting (this add joins it)."""
        if key in self._active:
            if key in self._again:
                return False
            self._again.add(key)
            return True
        if key in self._queued:
            return False
        self._queued.add(key)
        namespace = key[1]
        if namespace not in self._ready:
            self._ready[namespace] = deque()
            self._turns.append(namespace)
        self._ready[namespace].append(key)
        return True

    def pop(self) -> Key | None:
        """The next key, from the namespace whose turn it is; it is active until `done`."""
        if not self._turns:
            return None
        namespace = self._turns.popleft()
        keys = self._ready[namespace]
        key = keys.popleft()
        if keys:
            self._turns.append(namespace)
        else:
            del self._ready[namespace]
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Key) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)


class WorkQueue:
    """`FairQueue` on the event loop, with delayed adds (retries, coalescing, deadlines)."""

    def __init__(self) -> None:
        self.fair = FairQueue()
        self._ready = asyncio.Event()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}

    def __len__(self) -> int:
        return len(self.fair) + len(self._timers)

    def add(self, key: Key) -> bool:
        added = self.fair.add(key)
        if len(self.fair):
            self._ready.set()
        return added

    def add_after(self, key: Key, delay: float) -> bool:
        """Queues `key` in `delay` seconds; False when it is already waiting sooner."""
        if delay <= 0:
            return self.add(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= when:
                return False
            pending[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))
        return True

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Key:
        while True:
            key = self.fair.pop()
            if key is not None:
                return key
            self._ready.clear()
            await self._ready.wait()

    def done(self, key: Key) -> None:
        self.fair.done(key)
        if len(self.fair):
            self._ready.set()

    def close(self) -> None:
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


async def work(queue: WorkQueue, handle: Callable[[Key], Awaitable[None]]) -> None:
    """One worker: takes keys until cancelled; `handle` decides about retries (an
    exception it lets through is logged and the worker goes on)."""
    while True:
        key = await queue.get()
        try:
            await handle(key)
        except Exception:
            logger.exception("%s %s/%s: pass failed", *key)
        finally:
            queue.done(key)
