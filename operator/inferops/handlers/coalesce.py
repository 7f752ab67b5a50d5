"""One status refresh for a burst of child events of the same owner.

A rollout sends an event for every change of every Pod and Deployment of a service, and a
refresh reads the service, its applications, its Deployments and its Pods. A refresh reads
the cluster when it starts, so the events that arrive while one is waiting to start add
nothing to it: they are counted and dropped. An event during a refresh schedules the next
one, because the refresh may have read the state from before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from inferops.handlers.metrics import REFRESHES


class Coalescer:
    """Runs `fn` after `delay` seconds, once for all calls with the same key meanwhile."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._waiting: set[Hashable] = set()

    async def run(self, key: Hashable, fn: Callable[[], None]) -> bool:
        """False when a run for `key` was already waiting (this call joins it)."""
        if key in self._waiting:
            return False
        self._waiting.add(key)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self._waiting.discard(key)
        await asyncio.to_thread(fn)  # the reconcilers do blocking API calls
        return True


async def refresh(coalescer: Coalescer, kind: str, key: Hashable, fn: Callable[[], None]) -> None:
    """A coalesced status refresh, counted in inferops_status_refreshes_total."""
    ran = await coalescer.run(key, fn)
    REFRESHES.labels(kind, "run" if ran else "coalesced").inc()
