"""Requests through the router: the seed's iris body, counted per answering backend."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp

from inferops.resources.nginx import VERSION_HEADER

SEED_BODY: dict[str, Any] = {
    "data": {"req_data": [{"input_1": 5.1, "input_2": 3.5, "input_3": 1.4, "input_4": 0.2}]}
}


@dataclass
class Traffic:
    statuses: Counter[int]
    backends: Counter[str]
    sample: Any  # (backend, prediction) of the first answer, None without one
    seconds: float


async def _send(url: str, total: int, concurrency: int) -> Traffic:
    statuses: Counter[int] = Counter()
    backends: Counter[str] = Counter()
    sample: Any = None
    remaining = total
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal remaining, sample
            while remaining > 0:
                remaining -= 1
                async with session.post(url, json=SEED_BODY) as response:
                    body = await response.read()
                    statuses[response.status] += 1
                    backends[response.headers.get(VERSION_HEADER, "?")] += 1
                    if sample is None and response.status == 200:
                        sample = (response.headers.get(VERSION_HEADER), json.loads(body))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
        return Traffic(statuses, backends, sample, time.perf_counter() - start)


def send(url: str, total: int, concurrency: int) -> Traffic:
    """POSTs SEED_BODY `total` times, `concurrency` at a time."""
    return asyncio.run(_send(url, total, concurrency))
